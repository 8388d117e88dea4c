//! What both services' URLs share: one percent-decoder and a password that
//! cannot be printed by accident.

use std::fmt;

/// Decodes `%XX` escapes in one URL component. A `%` not followed by two hex
/// digits stays as it is (as libpq and Node's URL parser leave it). `Err` when
/// the decoded bytes are not UTF-8; the caller names the component, never its
/// value (it may be a password).
pub fn percent_decode(text: &str) -> Result<String, NotUtf8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| NotUtf8)
}

/// A `%` that starts no `%XX` escape: [`percent_decode`] keeps it, as libpq
/// and pg-connection-string do, but JavaScript's `decodeURIComponent` (which
/// node-redis applies to REDIS_URL's user and password) throws `URI malformed`.
pub fn has_stray_percent(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'%' && !bytes.get(i + 1..i + 3).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)))
}

/// The decoded bytes of a URL component are not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUtf8;

/// A password: sent to the server, never printed. `Debug` shows `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends it (and the redactor's tests).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_keeps_stray_percent_signs() {
        assert_eq!(percent_decode("p%40ss%3Aw%2Fd%25"), Ok("p@ss:w/d%".to_string()));
        assert_eq!(percent_decode("us%65r"), Ok("user".to_string()));
        assert_eq!(percent_decode("100%"), Ok("100%".to_string()));
        assert_eq!(percent_decode("%zz%4"), Ok("%zz%4".to_string()));
        assert_eq!(percent_decode("%C3%A9"), Ok("é".to_string()));
        assert_eq!(percent_decode("%FF%FE"), Err(NotUtf8));
        // A multi-byte character right after '%' is not an escape (and not a panic).
        assert_eq!(percent_decode("%é1"), Ok("%é1".to_string()));
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(s.expose(), "hunter2");
    }
}
