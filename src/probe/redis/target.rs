//! Where Redis is and how to log in, read from `REDIS_URL` once, by this one
//! parser: `env.redis_url` reports its result.

use std::path::PathBuf;

use crate::probe::url::{Secret, percent_decode};
use crate::probe::{Cause, EnvLookup, Failure, net, tls};

/// Whether and how the connection is encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTls {
    /// `redis://`
    Off,
    /// `rediss://`: the certificate must chain to a public root or to `ca`
    /// (`REDIS_CA_CERT`).
    Verify { ca: Option<PathBuf> },
    /// `rediss://…#insecure`: encrypted, but any certificate is accepted.
    Insecure,
}

/// Where Redis is and how to log in. The password is a [`Secret`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    pub host: String,
    pub port: u16,
    /// ACL user (`redis://user:pass@…`); `None` logs in as `default`.
    pub username: Option<String>,
    pub(in crate::probe) password: Option<Secret>,
    pub db: i64,
    pub tls: RedisTls,
}

impl RedisTarget {
    /// From REDIS_URL: redis:// or rediss://, optional user:password@ (ACL) or :password@, optional /db,
    /// `rediss://…#insecure` skips certificate checks; REDIS_CA_CERT (PEM path) adds a private CA.
    pub fn from_env(get: EnvLookup) -> Result<RedisTarget, Failure> {
        let raw = get("REDIS_URL").map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).ok_or_else(|| {
            Failure::new("REDIS_URL is not set")
                .with_hint(
                    "set REDIS_URL, e.g. REDIS_URL=redis://localhost:6379 (MockMate caches interview sessions there)",
                )
                .because(Cause::Unset("REDIS_URL".into()))
        })?;
        RedisTarget::parse(&raw, get).map_err(|f| f.because(Cause::Malformed("REDIS_URL".into())))
    }

    /// Reads a set `REDIS_URL`; every failure is a malformed URL.
    fn parse(raw: &str, get: EnvLookup) -> Result<RedisTarget, Failure> {
        // url's errors never echo the input, so the password cannot leak here.
        let url = url::Url::parse(raw).map_err(|e| {
            let message = match e {
                url::ParseError::EmptyHost => "REDIS_URL has no host".to_owned(),
                e => format!("REDIS_URL is not a valid URL: {e}"),
            };
            Failure::new(message).with_hint("use the form redis://[<user>:<password>@]<host>[:<port>][/<db>]")
        })?;

        let encrypted = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => {
                return Err(Failure::new(format!("REDIS_URL scheme '{other}://' is not supported"))
                    .with_hint("use redis://host:6379, or rediss://host:6380 for TLS"));
            }
        };

        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            _ => {
                return Err(Failure::new("REDIS_URL has no host")
                    .with_hint("use the form redis://[<user>:<password>@]<host>[:<port>][/<db>]"));
            }
        };
        let port = url.port().unwrap_or(6379);

        let username = Some(decode(url.username(), "user name")?).filter(|u| !u.is_empty());
        let password = match url.password() {
            Some(p) => Some(decode(p, "password")?).filter(|p| !p.is_empty()).map(Secret::new),
            None => None,
        };

        let db_text = url.path().trim_start_matches('/');
        let db = if db_text.is_empty() {
            0
        } else {
            db_text.parse::<i64>().ok().filter(|db| *db >= 0).ok_or_else(|| {
                Failure::new(format!("REDIS_URL database '/{db_text}' is not a database number"))
                    .with_hint("end REDIS_URL with /0 … /15, or with no path for database 0")
            })?
        };

        let tls = match (encrypted, url.fragment()) {
            (false, None) => RedisTls::Off,
            (true, None) => RedisTls::Verify {
                ca: get("REDIS_CA_CERT").filter(|p| !p.trim().is_empty()).map(|p| PathBuf::from(p.trim())),
            },
            (true, Some("insecure")) => RedisTls::Insecure,
            (false, Some("insecure")) => {
                return Err(Failure::new("REDIS_URL has #insecure but uses redis://, which has no TLS to relax")
                    .with_hint("use rediss://…#insecure for TLS without certificate checks, or drop #insecure"));
            }
            (_, Some(other)) => {
                return Err(Failure::new(format!("REDIS_URL fragment '#{other}' is not supported"))
                    .with_hint("the only fragment understood is #insecure, on rediss:// URLs"));
            }
        };

        Ok(RedisTarget { host, port, username, password, db, tls })
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub fn addr(&self) -> String {
        net::endpoint(&self.host, self.port)
    }

    /// Whether REDIS_URL carries a password.
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    pub(in crate::probe) fn scheme(&self) -> &'static str {
        match self.tls {
            RedisTls::Off => "redis",
            RedisTls::Verify { .. } | RedisTls::Insecure => "rediss",
        }
    }

    /// Removes the password from text that came from outside (errors, replies).
    pub(in crate::probe) fn scrub(&self, text: String) -> String {
        match &self.password {
            Some(p) if text.contains(p.expose()) => text.replace(p.expose(), "<redacted>"),
            _ => text,
        }
    }

    /// The TLS `rediss://` asks for: the chain to a public root or to
    /// `REDIS_CA_CERT`, and the host name; `#insecure` checks neither.
    pub fn tls_setup(&self) -> Option<tls::Setup> {
        let (verify, file) = match &self.tls {
            RedisTls::Off => return None,
            RedisTls::Verify { ca } => (
                tls::Verify::ChainAndName,
                ca.as_ref().map(|path| tls::PemFile { path: path.clone(), origin: "REDIS_CA_CERT" }),
            ),
            RedisTls::Insecure => (tls::Verify::Nothing, None),
        };
        Some(tls::Setup { verify, trust: tls::Trust { public: true, file }, identity: None })
    }
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
        RedisTarget::from_env(&crate::probe::lookup(vars))
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

    #[test]
    fn url_forms() {
        // (REDIS_URL, host, port, user, password, db, tls)
        let cases: &[(&str, &str, u16, Option<&str>, Option<&str>, i64, RedisTls)] = &[
            ("redis://localhost:6380/2", "localhost", 6380, None, None, 2, RedisTls::Off),
            ("redis://:s3cret@10.0.0.5:6379", "10.0.0.5", 6379, None, Some("s3cret"), 0, RedisTls::Off),
            ("redis://app:pw@h/0", "h", 6379, Some("app"), Some("pw"), 0, RedisTls::Off),
            ("redis://:p%40ss%3Aw%2Fd%25@h", "h", 6379, None, Some("p@ss:w/d%"), 0, RedisTls::Off),
            ("redis://us%65r:x@h", "h", 6379, Some("user"), Some("x"), 0, RedisTls::Off),
            ("redis://[::1]:7000/", "::1", 7000, None, None, 0, RedisTls::Off),
            ("rediss://h:6380", "h", 6380, None, None, 0, RedisTls::Verify { ca: None }),
            ("rediss://:pw@h:6380/1#insecure", "h", 6380, None, Some("pw"), 1, RedisTls::Insecure),
            ("redis://user@h", "h", 6379, Some("user"), None, 0, RedisTls::Off),
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
    }

    #[test]
    fn ca_cert_applies_to_rediss_only() {
        let t = target(&[("REDIS_URL", "rediss://h"), ("REDIS_CA_CERT", "/etc/ca.pem")]).unwrap();
        assert_eq!(t.tls, RedisTls::Verify { ca: Some(PathBuf::from("/etc/ca.pem")) });
        let t = target(&[("REDIS_URL", "redis://h"), ("REDIS_CA_CERT", "/etc/ca.pem")]).unwrap();
        assert_eq!(t.tls, RedisTls::Off);
        let t = target(&[("REDIS_URL", "rediss://h#insecure"), ("REDIS_CA_CERT", "/etc/ca.pem")]).unwrap();
        assert_eq!(t.tls, RedisTls::Insecure);
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        // (REDIS_URL, words the message must contain)
        let cases: &[(&str, &str)] = &[
            ("http://:pw@h:6379", "scheme 'http://'"),
            ("unix:///tmp/redis.sock", "scheme 'unix://'"),
            ("redis://", "no host"),
            ("redis://:pw@/0", "no host"),
            ("redis:h:6379", "no host"),
            ("localhost:6379", "scheme 'localhost://'"),
            ("redis://h/abc", "'/abc' is not a database number"),
            ("redis://h/-1", "'/-1'"),
            ("redis://h:99999", "not a valid URL"),
            ("redis://h#insecure", "#insecure but uses redis://"),
            ("rediss://h#verify", "'#verify' is not supported"),
            ("redis://:%FF%FE@h", "password is not valid UTF-8"),
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
        for bad in ["http://h", "redis://", "redis://h/abc", "redis://:%FF@h", "rediss://h#verify"] {
            assert_eq!(url(bad).unwrap_err().cause, Some(Cause::Malformed("REDIS_URL".into())), "{bad}");
        }
    }

    #[test]
    fn password_never_shows_in_debug_or_failures() {
        let t = url("redis://app:hunter2-sentinel@h:6379").unwrap();
        let debug = format!("{t:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"));
        for u in ["http://:hunter2-sentinel@h", "redis://:hunter2-sentinel@h/x", "redis://:hunter2-sentinel@h#x"] {
            let f = url(u).unwrap_err();
            assert!(!format!("{f:?}").contains("hunter2"), "{u}: {f:?}");
        }
        assert_eq!(t.scrub("echo hunter2-sentinel".into()), "echo <redacted>");
    }

    #[test]
    fn addr_brackets_ipv6() {
        assert_eq!(url("redis://[::1]:7000").unwrap().addr(), "[::1]:7000");
        assert_eq!(url("redis://h").unwrap().addr(), "h:6379");
    }
}
