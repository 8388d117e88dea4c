//! Where Redis is and how to log in, read from `REDIS_URL` once, by this one
//! parser (`env.redis_url` reports its result), the way the API's driver reads
//! it: node-redis 6 (`createClient({ url })`, `parseURL` in
//! `packages/client/lib/client/index.ts`):
//! - `redis://` or `rediss://` (TLS, certificate always verified against Node's
//!   roots and the URL's host); a fragment (`#insecure`) and query parameters are
//!   ignored;
//! - `redis://word@host` is the user `word` with *no* password: no AUTH is sent
//!   (node-redis 4 and 5 sent `AUTH word ""` and failed with WRONGPASS);
//!   `redis://:pw@host` logs in as `default` (`HELLO 3 AUTH default pw`);
//! - `/N` selects database N; `unix:///path/redis.sock[?db=N]` a Unix socket (6.x).

use std::path::PathBuf;

use crate::probe::url::{Secret, percent_decode};
use crate::probe::{Cause, EnvLookup, Failure, net, tls};

const FORM_HINT: &str = "use the form redis://[:<password>@]<host>[:<port>][/<db>] (or rediss:// for TLS)";

/// Whether and how the connection is encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTls {
    /// `redis://`
    Off,
    /// `rediss://`: the certificate must chain to Node's roots (plus
    /// `NODE_EXTRA_CA_CERTS`), or to `ca` alone when the API's code passes one
    /// (`REDIS_CA_CERT`), and name the host.
    Verify { ca: Option<PathBuf> },
}

/// Where Redis is and how to log in. The password is a [`Secret`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    pub host: String,
    pub port: u16,
    /// `unix:///path`: the socket file (then `host`/`port` are unused).
    pub socket: Option<PathBuf>,
    /// ACL user (`redis://user:pass@…`); `None` logs in as `default`.
    pub username: Option<String>,
    pub(in crate::probe) password: Option<Secret>,
    pub db: i64,
    pub tls: RedisTls,
    /// What node-redis ignores in this URL, in words (`#insecure`, query parameters).
    pub ignored: Vec<String>,
    /// `NODE_EXTRA_CA_CERTS`, which Node adds to its roots.
    pub(in crate::probe) extra_ca: Option<tls::PemFile>,
}

impl RedisTarget {
    /// `REDIS_URL` as node-redis 6 reads it; `REDIS_CA_CERT` is the CA the API's
    /// code passes as `socket.ca` (node-redis itself reads no such variable).
    pub fn from_env(get: EnvLookup) -> Result<RedisTarget, Failure> {
        let var = |name: &str| get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let raw = var("REDIS_URL").ok_or_else(|| {
            Failure::new("REDIS_URL is not set")
                .with_hint(
                    "set REDIS_URL, e.g. REDIS_URL=redis://localhost:6379 (MockMate caches interview sessions there)",
                )
                .because(Cause::Unset("REDIS_URL".into()))
        })?;
        let parsed = if raw.starts_with("unix:") { unix_url(&raw) } else { tcp_url(&raw) };
        let mut target = parsed.map_err(|f| f.because(Cause::Malformed("REDIS_URL".into())))?;
        target.extra_ca = tls::node_extra_ca(get);
        if let RedisTls::Verify { ca } = &mut target.tls {
            *ca = var("REDIS_CA_CERT").map(PathBuf::from);
        }
        Ok(target)
    }

    /// `host:port` (brackets around an IPv6 address), or the socket's path.
    pub fn addr(&self) -> String {
        match &self.socket {
            Some(path) => path.display().to_string(),
            None => net::endpoint(&self.host, self.port),
        }
    }

    /// Whether REDIS_URL carries a password.
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// `redis://word@host`: a user name and no password, so no AUTH at all.
    pub fn user_without_password(&self) -> bool {
        self.username.is_some() && self.password.is_none()
    }

    pub(in crate::probe) fn scheme(&self) -> &'static str {
        match self.tls {
            RedisTls::Off => "redis",
            RedisTls::Verify { .. } => "rediss",
        }
    }

    /// The TLS `rediss://` asks for: the chain and the host name, against Node's
    /// roots (and `NODE_EXTRA_CA_CERTS`), or the API's own `ca` alone.
    pub fn tls_setup(&self) -> Option<tls::Setup> {
        let trust = match &self.tls {
            RedisTls::Off => return None,
            RedisTls::Verify { ca: Some(ca) } => {
                tls::Trust { public: false, file: Some(tls::PemFile { path: ca.clone(), origin: "REDIS_CA_CERT" }) }
            }
            RedisTls::Verify { ca: None } => tls::Trust { public: true, file: self.extra_ca.clone() },
        };
        Some(tls::Setup { verify: tls::Verify::ChainAndName, trust, identity: None })
    }
}

/// `redis://` and `rediss://` URLs, as node-redis's `parseURL`.
fn tcp_url(raw: &str) -> Result<RedisTarget, Failure> {
    // url's errors never echo the input, so the password cannot leak here.
    let url = url::Url::parse(raw).map_err(|e| {
        let message = match e {
            url::ParseError::EmptyHost => "REDIS_URL has no host".to_owned(),
            e => format!("REDIS_URL is not a valid URL: {e}"),
        };
        Failure::new(message).with_hint(FORM_HINT)
    })?;
    let tls = match url.scheme() {
        "redis" => RedisTls::Off,
        "rediss" => RedisTls::Verify { ca: None },
        other => {
            return Err(Failure::new(format!(
                "REDIS_URL scheme '{other}://' is not supported (node-redis: not a valid Redis protocol)"
            ))
            .with_hint("use redis://host:6379, or rediss://host:6380 for TLS"));
        }
    };
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => {
            // node-redis 6.3's maintenance handshake looks the bracketed name up.
            return Err(Failure::new(format!(
                "REDIS_URL names the IPv6 address [{ip}]: node-redis 6.3 cannot connect to it (its handshake looks up \
                 \"[{ip}]\" as a host name: ENOTFOUND)"
            ))
            .with_hint(
                "give the server a host name (an /etc/hosts entry will do), or pass maintNotifications: 'disabled' to \
                 createClient",
            ));
        }
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
        _ => return Err(Failure::new("REDIS_URL has no host").with_hint(FORM_HINT)),
    };
    let port = url.port().unwrap_or(6379);
    let username = Some(decode_userinfo(url.username(), "user name")?).filter(|u| !u.is_empty());
    let password = match url.password() {
        Some(p) => Some(decode_userinfo(p, "password")?).filter(|p| !p.is_empty()).map(Secret::new),
        None => None,
    };
    let db = database(url.path().trim_start_matches('/'))?;
    let mut ignored = Vec::new();
    if let Some(fragment) = url.fragment() {
        ignored.push(format!("#{fragment} (node-redis ignores fragments: the certificate is verified all the same)"));
    }
    if url.query().is_some_and(|q| !q.is_empty()) {
        ignored.push("query parameters (node-redis reads only the URL's user, password, host, port and /db)".into());
    }
    Ok(RedisTarget { host, port, socket: None, username, password, db, tls, ignored, extra_ca: None })
}

/// `unix:///path/redis.sock[?db=N]` (node-redis 6).
fn unix_url(raw: &str) -> Result<RedisTarget, Failure> {
    let unix_hint = "use unix:///path/to/redis.sock (three slashes), with ?db=N for a database";
    let Some(rest) = raw.strip_prefix("unix://") else {
        return Err(
            Failure::new("REDIS_URL is not a valid unix URL (node-redis: Invalid unix URL)").with_hint(unix_hint)
        );
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = path.split('#').next().unwrap_or(path);
    if !path.starts_with('/') {
        // `unix://user:pw@/path` parses in node-redis 6.3 but its handshake then
        // fails (`new URL(...).hostname` of a URL with userinfo and no host).
        return Err(Failure::new(
            "REDIS_URL is a unix URL with credentials: node-redis 6.3 accepts it but fails at connect (Invalid URL)",
        )
        .with_hint("use unix:///path/to/redis.sock and pass username/password to createClient, or set RESP: 2"));
    }
    let db = match query.split('&').find_map(|kv| kv.strip_prefix("db=")) {
        Some(db) => database(db)?,
        None => 0,
    };
    let socket = PathBuf::from(decode(path, "socket path")?);
    Ok(RedisTarget {
        host: String::new(),
        port: 0,
        socket: Some(socket),
        username: None,
        password: None,
        db,
        tls: RedisTls::Off,
        ignored: Vec::new(),
        extra_ca: None,
    })
}

fn database(text: &str) -> Result<i64, Failure> {
    if text.is_empty() {
        return Ok(0);
    }
    text.parse::<i64>().ok().filter(|db| *db >= 0).ok_or_else(|| {
        Failure::new(format!("REDIS_URL database '/{text}' is not a database number (node-redis: Invalid pathname)"))
            .with_hint("end REDIS_URL with /0 … /15, or with no path for database 0")
    })
}

/// The user name or password, decoded as node-redis does (`decodeURIComponent`,
/// which throws on a stray `%`); `what` names the part, never its value.
fn decode_userinfo(text: &str, what: &str) -> Result<String, Failure> {
    if crate::probe::url::has_stray_percent(text) {
        return Err(Failure::new(format!(
            "REDIS_URL {what} has a '%' that starts no %XX escape: node-redis throws URI malformed at createClient"
        ))
        .with_hint("percent-encode the password: a literal % is %25 (and # is %23, @ is %40, / is %2F)"));
    }
    decode(text, what)
}

/// Decodes `%XX` escapes; `what` names the part in the error, never its value.
fn decode(text: &str, what: &str) -> Result<String, Failure> {
    percent_decode(text).map_err(|_| {
        Failure::new(format!("REDIS_URL {what} is not valid UTF-8 after percent-decoding"))
            .with_hint("percent-encode each byte of a UTF-8 string (e.g. %C3%A9 for é)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(vars: &[(&str, &str)]) -> Result<RedisTarget, Failure> {
        RedisTarget::from_env(&crate::probe::failure::lookup(vars))
    }

    fn url(u: &str) -> Result<RedisTarget, Failure> {
        target(&[("REDIS_URL", u)])
    }

    #[test]
    fn plain_url_defaults_to_port_6379_and_db_0() {
        let t = url("redis://cache.internal").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.db), ("cache.internal", 6379, 0));
        assert_eq!((t.username.clone(), t.has_password()), (None, false));
        assert_eq!(t.tls, RedisTls::Off);
    }

    /// As node-redis 6.3.1 reads them (observed).
    #[test]
    fn url_forms() {
        // (REDIS_URL, host, port, user, password, db, tls)
        let cases: &[(&str, &str, u16, Option<&str>, Option<&str>, i64, RedisTls)] = &[
            ("redis://localhost:6380/2", "localhost", 6380, None, None, 2, RedisTls::Off),
            ("redis://:s3cret@10.0.0.5:6379", "10.0.0.5", 6379, None, Some("s3cret"), 0, RedisTls::Off),
            ("redis://app:pw@h/0", "h", 6379, Some("app"), Some("pw"), 0, RedisTls::Off),
            ("redis://:p%40ss%3Aw%2Fd%25@h", "h", 6379, None, Some("p@ss:w/d%"), 0, RedisTls::Off),
            ("redis://us%65r:x@h", "h", 6379, Some("user"), Some("x"), 0, RedisTls::Off),
            ("rediss://h:6380", "h", 6380, None, None, 0, RedisTls::Verify { ca: None }),
            // The fragment is ignored: verified all the same.
            ("rediss://:pw@h:6380/1#insecure", "h", 6380, None, Some("pw"), 1, RedisTls::Verify { ca: None }),
            // A user name and no password: no AUTH at all.
            ("redis://word@h", "h", 6379, Some("word"), None, 0, RedisTls::Off),
        ];
        for (u, host, port, user, password, db, tls) in cases {
            let t = url(u).unwrap_or_else(|f| panic!("{u}: {f:?}"));
            assert_eq!(t.host, *host, "{u}");
            assert_eq!(t.port, *port, "{u}");
            assert_eq!(t.username.as_deref(), *user, "{u}");
            assert_eq!(t.password.as_ref().map(Secret::expose), *password, "{u}");
            assert_eq!(t.db, *db, "{u}");
            assert_eq!(&t.tls, tls, "{u}");
        }
        assert!(url("redis://word@h").unwrap().user_without_password());
        assert_eq!(url("rediss://h#insecure").unwrap().ignored.len(), 1);
    }

    #[test]
    fn unix_sockets() {
        let t = url("unix:///var/run/redis/redis.sock?db=3").unwrap();
        assert_eq!((t.socket.as_deref(), t.db), (Some(std::path::Path::new("/var/run/redis/redis.sock")), 3));
        assert_eq!(t.addr(), "/var/run/redis/redis.sock");
        assert!(url("unix:/var/run/redis.sock").unwrap_err().message.contains("Invalid unix URL"));
        assert!(url("unix://u:pw@/var/run/redis.sock").unwrap_err().message.contains("credentials"));
    }

    #[test]
    fn the_apis_ca_replaces_nodes_roots_and_node_extra_ca_certs_adds_to_them() {
        let t = target(&[("REDIS_URL", "rediss://h"), ("REDIS_CA_CERT", "/etc/ca.pem")]).unwrap();
        assert_eq!(t.tls, RedisTls::Verify { ca: Some(PathBuf::from("/etc/ca.pem")) });
        assert!(!t.tls_setup().expect("TLS").trust.public);
        let t = target(&[("REDIS_URL", "redis://h"), ("REDIS_CA_CERT", "/etc/ca.pem")]).unwrap();
        assert_eq!(t.tls, RedisTls::Off);
        let t = target(&[("REDIS_URL", "rediss://h"), ("NODE_EXTRA_CA_CERTS", "/etc/extra.pem")]).unwrap();
        let trust = t.tls_setup().expect("TLS").trust;
        assert!(trust.public && trust.file.is_some());
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        // (REDIS_URL, words the message must contain)
        let cases: &[(&str, &str)] = &[
            ("http://:pw@h:6379", "scheme 'http://'"),
            ("redis://", "no host"),
            ("redis://:pw@/0", "no host"),
            ("redis:h:6379", "no host"),
            ("localhost:6379", "scheme 'localhost://'"),
            ("redis://h/abc", "'/abc' is not a database number"),
            ("redis://h/-1", "'/-1'"),
            ("redis://h:99999", "not a valid URL"),
            ("redis://[::1]:7000/", "IPv6"),
            ("redis://:%FF%FE@h", "password is not valid UTF-8"),
            ("redis://:100%@h", "password has a '%' that starts no %XX escape"),
            ("redis://us%er:pw@h", "user name has a '%'"),
        ];
        for (u, words) in cases {
            let f = url(u).expect_err(u);
            assert!(f.message.contains(words), "{u}: {}", f.message);
            assert!(f.hint.is_some(), "{u} has no hint");
        }
    }

    #[test]
    fn missing_url_is_a_failure_with_a_hint() {
        let f = target(&[]).unwrap_err();
        assert_eq!(f.message, "REDIS_URL is not set");
        assert!(f.hint.unwrap().contains("redis://"));
        assert_eq!(url("  ").unwrap_err().cause, Some(Cause::Unset("REDIS_URL".into())));
    }

    #[test]
    fn every_failure_names_its_cause() {
        assert_eq!(target(&[]).unwrap_err().cause, Some(Cause::Unset("REDIS_URL".into())));
        for bad in ["http://h", "redis://", "redis://h/abc", "redis://:%FF@h", "unix:/tmp/redis.sock"] {
            assert_eq!(url(bad).unwrap_err().cause, Some(Cause::Malformed("REDIS_URL".into())), "{bad}");
        }
    }

    #[test]
    fn password_never_shows_in_debug_or_failures() {
        let t = url("redis://app:hunter2-sentinel@h:6379").unwrap();
        let debug = format!("{t:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"));
        for u in ["http://:hunter2-sentinel@h", "redis://:hunter2-sentinel@h/x", "redis://:hunter2-sentinel@h:9x"] {
            let f = url(u).unwrap_err();
            assert!(!format!("{f:?}").contains("hunter2"), "{u}: {f:?}");
        }
    }

    #[test]
    fn addr_brackets_ipv6_and_names_sockets() {
        assert_eq!(net::endpoint("::1", 7000), "[::1]:7000");
        assert_eq!(url("redis://h").unwrap().addr(), "h:6379");
    }
}
