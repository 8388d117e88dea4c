//! `DATABASE_URL` read the way the API's driver reads it: pg-connection-string
//! 2.x (node-postgres 8), `parse()` in `packages/pg-connection-string/index.js`.
//! Only the reading of the string is here; what its TLS keys mean is in `ssl`.
//!
//! What it does, and so what this does:
//! - a string starting with `/` is `host database` (a socket directory and a name);
//! - otherwise it is a WHATWG URL — the userinfo ends at the *last* `@` (a raw `@`
//!   in a password works; libpq splits at the first), a raw `#` or `/` in the
//!   password makes it invalid, the scheme is not checked;
//! - a `%` not followed by two hex digits, or a space, is taken literally;
//! - `socket:` URLs name a socket directory (`socket:/dir?db=NAME`,
//!   `socket://user:pw@/dir?db=NAME`) and take no TLS keys;
//! - every query parameter is a setting; `user`, `password`, `host`, `port` in the
//!   query win over the URL's own;
//! - the database is `decodeURI`d (so `%2F`, `%40`, `%23` … stay encoded).

use crate::probe::url::percent_decode;

/// What a connection string says, before defaults and the environment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnString {
    pub user: Option<String>,
    pub password: Option<String>,
    /// A host name, an address, or a socket directory (starts with `/`).
    pub host: Option<String>,
    pub port: Option<String>,
    pub database: Option<String>,
    /// `socket:` URL: a socket directory; TLS keys in it are ignored.
    pub socket: bool,
    /// The scheme as written (`postgres`, `postgresql`, `socket` …).
    pub scheme: String,
    /// Every query parameter, in order (later ones win when read).
    pub params: Vec<(String, String)>,
    /// Several `@` in the userinfo: node-postgres splits at the last, libpq at the first.
    pub raw_at_in_userinfo: bool,
}

impl ConnString {
    /// The last value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn has(&self, key: &str) -> bool {
        self.param(key).is_some()
    }
}

/// Why a connection string cannot be read (never quoting it: it may hold a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// WHATWG URL refuses it (node-postgres: `TypeError: Invalid URL`).
    InvalidUrl(String),
    /// A component is not UTF-8 once percent-decoded.
    NotUtf8(&'static str),
}

/// pg-connection-string's first step: a string with a space or a `%` that
/// starts no escape goes through `encodeURI`, after which `%25` followed by two
/// decimal digits is put back. So in such a string every other `%`, a valid
/// `%2F` or `%3a` included, is a literal `%` (`p%2Fw` stays `p%2Fw`).
fn encode_like_pg(raw: &str) -> std::borrow::Cow<'_, str> {
    let b = raw.as_bytes();
    let not_hex = |i: usize| b.get(i).is_some_and(|c| !c.is_ascii_hexdigit());
    let rewrite = (0..b.len())
        .any(|i| b[i] == b' ' || (b[i] == b'%' && (not_hex(i + 1) || (b.get(i + 1).is_some() && not_hex(i + 2)))));
    if !rewrite {
        return std::borrow::Cow::Borrowed(raw);
    }
    // encodeURI keeps these, and escapes every other byte of the UTF-8 form.
    const KEPT: &[u8] = b";,/?:@&=+$-_.!~*'()#";
    let mut out = String::with_capacity(raw.len() + 16);
    for &c in b {
        if c.is_ascii_alphanumeric() || KEPT.contains(&c) {
            out.push(char::from(c));
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    let mut restored = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find("%25") {
        restored.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        if after.len() >= 2 && after.as_bytes()[..2].iter().all(u8::is_ascii_digit) {
            restored.push('%');
        } else {
            restored.push_str("%25");
        }
        rest = after;
    }
    restored.push_str(rest);
    std::borrow::Cow::Owned(restored)
}

/// Reads `raw` as pg-connection-string 2.x does.
pub fn parse(raw: &str) -> Result<ConnString, ParseError> {
    if let Some(rest) = raw.strip_prefix('/') {
        // `host database`: a socket directory, then the database after a space.
        let (dir, db) = rest.split_once(' ').unwrap_or((rest, ""));
        return Ok(ConnString {
            host: Some(format!("/{dir}")),
            database: Some(db.to_string()).filter(|d| !d.is_empty()),
            scheme: String::new(),
            ..ConnString::default()
        });
    }
    let encoded = encode_like_pg(raw);
    let (url, dummy_host) = match url::Url::parse(&encoded) {
        Ok(url) => (url, false),
        // pg-connection-string retries once with a dummy host for `user:pw@/db?host=/dir`.
        Err(first) => match url::Url::parse(&encoded.replacen("@/", "@___DUMMY___/", 1)) {
            Ok(url) if encoded.contains("@/") => (url, true),
            _ => return Err(ParseError::InvalidUrl(first.to_string())),
        },
    };
    let params: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let query = |key: &str| params.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let decode = |s: &str, what: &'static str| percent_decode(s).map_err(|_| ParseError::NotUtf8(what));
    let user = match query("user") {
        Some(u) => Some(u),
        None => Some(decode(url.username(), "the user name")?).filter(|u| !u.is_empty()),
    };
    let password = match query("password") {
        Some(p) => Some(p),
        None => match url.password() {
            Some(p) => Some(decode(p, "the password")?).filter(|p| !p.is_empty()),
            None => None,
        },
    };
    let raw_at_in_userinfo = raw
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or("").matches('@').count() > 1)
        .unwrap_or(false);
    if url.scheme() == "socket" {
        // `socket:/dir?db=NAME`: the path is the directory (decodeURI), no TLS keys.
        let dir = decode_uri(url.path()).map_err(|_| ParseError::NotUtf8("the socket directory"))?;
        return Ok(ConnString {
            user,
            password,
            host: Some(dir),
            port: query("port"),
            database: query("db"),
            socket: true,
            scheme: "socket".into(),
            params,
            raw_at_in_userinfo,
        });
    }
    let host = match query("host") {
        Some(h) => Some(h),
        None if dummy_host => None,
        None => match url.host() {
            Some(url::Host::Domain(d)) => Some(decode(d, "the host")?).filter(|h| !h.is_empty()),
            Some(url::Host::Ipv4(ip)) => Some(ip.to_string()),
            Some(url::Host::Ipv6(ip)) => Some(ip.to_string()),
            None => None,
        },
    };
    let port = query("port").or_else(|| url.port().map(|p| p.to_string()));
    let path = url.path().strip_prefix('/').unwrap_or(url.path());
    let database =
        Some(decode_uri(path).map_err(|_| ParseError::NotUtf8("the database name"))?).filter(|d| !d.is_empty());
    Ok(ConnString {
        user,
        password,
        host,
        port,
        database,
        socket: false,
        scheme: url.scheme().to_string(),
        params,
        raw_at_in_userinfo,
    })
}

/// JavaScript's `decodeURI`: decodes escapes except those of the reserved set
/// (`; / ? : @ & = + $ , #`), which stay encoded.
fn decode_uri(s: &str) -> Result<String, crate::probe::url::NotUtf8> {
    const RESERVED: &[&str] = &["%3B", "%2F", "%3F", "%3A", "%40", "%26", "%3D", "%2B", "%24", "%2C", "%23"];
    // Protect the reserved escapes (either case), decode the rest, put them back.
    let mut protected = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        protected.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).unwrap_or("");
        if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(esc)) {
            protected.push_str("%25");
            protected.push_str(&esc[1..]);
            rest = &rest[i + 3..];
        } else {
            protected.push('%');
            rest = &rest[i + 1..];
        }
    }
    protected.push_str(rest);
    percent_decode(&protected)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases observed with pg-connection-string 2.14.1 (node-postgres 8.23.1).
    #[test]
    fn reads_urls_as_node_postgres_does() {
        // (input, user, password, host, port, database)
        type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>, Option<&'a str>, Option<&'a str>);
        let cases: &[Case] = &[
            (
                "postgres://app:pw@db.example:5432/mm",
                Some("app"),
                Some("pw"),
                Some("db.example"),
                Some("5432"),
                Some("mm"),
            ),
            ("postgres://db.example/mm", None, None, Some("db.example"), None, Some("mm")),
            ("postgres://app@db.example", Some("app"), None, Some("db.example"), None, None),
            ("postgres://app:pw@db.example:5432/", Some("app"), Some("pw"), Some("db.example"), Some("5432"), None),
            (
                "postgres://app:p%40ss%23w%2Frd%3A%25@db.example/mm",
                Some("app"),
                Some("p@ss#w/rd:%"),
                Some("db.example"),
                None,
                Some("mm"),
            ),
            // A space or a stray % makes pg-connection-string encodeURI the whole
            // string first: then only %25 + two digits is an escape (node-verified).
            ("postgres://app:p%2Fw@h/my db", Some("app"), Some("p%2Fw"), Some("h"), None, Some("my db")),
            ("postgres://app:p%2Fw@h/mydb", Some("app"), Some("p/w"), Some("h"), None, Some("mydb")),
            ("postgres://app:100%@h/db", Some("app"), Some("100%"), Some("h"), None, Some("db")),
            ("postgres://app:p%20w%3a@h/db x", Some("app"), Some("p w%3a"), Some("h"), None, Some("db x")),
            ("postgres://app:pw@h/caf\u{e9} db", Some("app"), Some("pw"), Some("h"), None, Some("caf\u{e9} db")),
            ("postgres://app:p%C3%A9 @h/db", Some("app"), Some("p%C3%A9 "), Some("h"), None, Some("db")),
            // The last @ splits (libpq would split at the first).
            ("postgres://app:p@ss@db.example/mm", Some("app"), Some("p@ss"), Some("db.example"), None, Some("mm")),
            (
                "postgres://app:p@ss/word@db.example/mm",
                Some("app"),
                Some("p"),
                Some("ss"),
                None,
                Some("word@db.example/mm"),
            ),
            ("postgres://app:p:ss@db.example/mm", Some("app"), Some("p:ss"), Some("db.example"), None, Some("mm")),
            ("postgres://app:p%zzss@db.example/mm", Some("app"), Some("p%zzss"), Some("db.example"), None, Some("mm")),
            (
                "postgres://app:pw@db.example/my%2Fdb",
                Some("app"),
                Some("pw"),
                Some("db.example"),
                None,
                Some("my%2Fdb"),
            ),
            ("postgres://app:pw@db.example/my%20db", Some("app"), Some("pw"), Some("db.example"), None, Some("my db")),
            ("postgres://app:pw@[::1]:5432/mm", Some("app"), Some("pw"), Some("::1"), Some("5432"), Some("mm")),
            (
                "postgres://app:pw@db.example/mm?user=other&password=pw2",
                Some("other"),
                Some("pw2"),
                Some("db.example"),
                None,
                Some("mm"),
            ),
            (
                "postgres://app:pw@db.example/mm?port=6543&host=other",
                Some("app"),
                Some("pw"),
                Some("other"),
                Some("6543"),
                Some("mm"),
            ),
            (
                "postgres://app:pw@/mm?host=/var/run/postgresql",
                Some("app"),
                Some("pw"),
                Some("/var/run/postgresql"),
                None,
                Some("mm"),
            ),
            ("postgres:///mm?host=/var/run/postgresql", None, None, Some("/var/run/postgresql"), None, Some("mm")),
            (
                "postgres://app:pw@%2Fvar%2Frun%2Fpostgresql/mm",
                Some("app"),
                Some("pw"),
                Some("/var/run/postgresql"),
                None,
                Some("mm"),
            ),
            ("socket:/var/run/postgresql?db=mm", None, None, Some("/var/run/postgresql"), None, Some("mm")),
            (
                "socket://app:pw@/var/run/postgresql?db=mm",
                Some("app"),
                Some("pw"),
                Some("/var/run/postgresql"),
                None,
                Some("mm"),
            ),
            (
                "socket:/var/run/postgresql?db=mm&user=app&password=pw",
                Some("app"),
                Some("pw"),
                Some("/var/run/postgresql"),
                None,
                Some("mm"),
            ),
            ("/var/run/postgresql mm", None, None, Some("/var/run/postgresql"), None, Some("mm")),
            ("mysql://app:pw@db.example/mm", Some("app"), Some("pw"), Some("db.example"), None, Some("mm")),
        ];
        for (input, user, password, host, port, database) in cases {
            let c = parse(input).unwrap_or_else(|e| panic!("{input}: {e:?}"));
            assert_eq!(c.user.as_deref(), *user, "{input}");
            assert_eq!(c.password.as_deref(), *password, "{input}");
            assert_eq!(c.host.as_deref(), *host, "{input}");
            assert_eq!(c.port.as_deref(), *port, "{input}");
            assert_eq!(c.database.as_deref(), *database, "{input}");
        }
    }

    #[test]
    fn what_node_postgres_refuses_is_refused() {
        for input in
            ["postgres://app:p#ss@db.example/mm", "postgres://app:pw@h1:5432,h2:5433/mm", "postgres://app:x/y@h/mm"]
        {
            assert!(matches!(parse(input), Err(ParseError::InvalidUrl(_))), "{input}");
        }
    }

    #[test]
    fn socket_urls_ignore_tls_keys_and_raw_at_signs_are_noticed() {
        let c = parse("socket:/var/run/postgresql?db=mm&sslmode=require").unwrap();
        assert!(c.socket && c.has("sslmode"));
        assert!(parse("postgres://at:p@ss@h/mm").unwrap().raw_at_in_userinfo);
        assert!(!parse("postgres://at:p%40ss@h/mm").unwrap().raw_at_in_userinfo);
    }
}
