//! What the TLS settings mean — to the API's driver (node-postgres 8), and to
//! libpq (psql, pg_dump, migrations run with psql), which often disagree.
//!
//! node-postgres (pg-connection-string 2.x, `pg/lib/connection-parameters.js`):
//! - TLS keys in the URL (`ssl`, `sslmode`, `sslrootcert`, `sslcert`, `sslkey`,
//!   `sslnegotiation=direct`) decide alone — they *replace* the `ssl` the code
//!   passes to `new Pool`; without them the Pool's `ssl` decides; without that,
//!   `PGSSLMODE`; without that, plain TCP (no TLS attempt at all);
//! - `sslmode=prefer|require|verify-ca|verify-full` (and unknown values) verify the
//!   chain *and* the host name; none of them falls back to plain text;
//!   `no-verify` encrypts without checking; `disable` is plain;
//! - `ssl=true|1` verifies, `ssl=0` is plain, any other string (`ssl=false`!) is a
//!   truthy string: TLS is asked for, and the driver crashes against a TLS server;
//! - `sslrootcert`/`sslcert`/`sslkey` are files read when the URL is parsed; the
//!   CA replaces Node's roots (Mozilla's, plus `NODE_EXTRA_CA_CERTS`);
//! - `uselibpqcompat=true` gives libpq's meanings, except that `prefer` still never
//!   falls back to plain;
//! - a Unix socket still gets an SSLRequest when TLS is asked for (and fails).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::conn_string::ConnString;
use crate::probe::{Failure, tls};

/// Whose reading of the settings the verdict is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub enum ClientKind {
    /// node-postgres 8.x, what the MockMate API runs (the default).
    #[default]
    #[serde(rename = "node-postgres")]
    NodePostgres,
    /// libpq (psql): today's libpq semantics, for tools that use libpq.
    #[serde(rename = "libpq")]
    Libpq,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::NodePostgres => "node-postgres",
            ClientKind::Libpq => "libpq",
        }
    }
}

/// The `ssl` the API's code passes to `new Pool({ ssl })`, declared in a manifest
/// (`[postgres] ssl = …`), since the environment cannot show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoolSsl {
    /// `ssl: true` (or `{ ca }`): verify the chain and the host name.
    VerifyFull,
    /// `ssl: { rejectUnauthorized: false }`: encrypt, check nothing.
    NoVerify,
    /// `ssl: false`.
    Disable,
}

/// What the API's code sets that the environment cannot show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiClient {
    pub client: ClientKind,
    pub ssl: Option<PoolSsl>,
    /// `ssl: { ca: fs.readFileSync(PATH) }`.
    pub ca: Option<PathBuf>,
}

/// How the connection will be encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    Off,
    /// TLS if the server offers it, else plain (libpq's `prefer` only).
    Prefer(tls::Setup),
    /// TLS or nothing.
    Require(tls::Setup),
}

/// The driver's TLS decision, with the words that explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsChoice {
    pub mode: TlsMode,
    /// `verify-full`, `no-verify`, `disable`, `prefer`, `require`, `verify-ca`.
    pub label: &'static str,
    /// What decided it: `sslmode=require in DATABASE_URL`, `PGSSLMODE=no-verify`,
    /// `the Pool's ssl (manifest)`, `no TLS setting`.
    pub origin: String,
    /// The configured `sslmode`, if any (for the report).
    pub sslmode: Option<String>,
    /// pg 9 will change what this setting means (pg-connection-string's warning).
    pub pg9_change: bool,
}

/// Why the driver cannot even try (the driver throws before connecting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub hint: String,
}

const TLS_KEYS: &[&str] = &["ssl", "sslmode", "sslrootcert", "sslcert", "sslkey"];

/// Environment lookup for the `PG*` fallbacks and `NODE_EXTRA_CA_CERTS`.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// node-postgres's TLS decision for a URL (`url`, `None` for `DB_*`), the
/// manifest's Pool settings and the environment.
pub fn node_postgres(
    url: Option<&ConnString>,
    api: &ApiClient,
    var: Lookup,
    origin_var: &str,
) -> Result<TlsChoice, Refusal> {
    let node_roots = || tls::Trust { public: true, file: tls::node_extra_ca(var) };
    let url_decides = url.is_some_and(|u| {
        !u.socket && (TLS_KEYS.iter().any(|k| u.has(k)) || u.param("sslnegotiation") == Some("direct"))
    });
    if let Some(u) = url.filter(|_| url_decides) {
        return url_tls(u, origin_var, node_roots());
    }
    if let Some(ssl) = api.ssl.or(api.ca.as_ref().map(|_| PoolSsl::VerifyFull)) {
        let trust = match &api.ca {
            Some(ca) => {
                tls::Trust { public: false, file: Some(tls::PemFile { path: ca.clone(), origin: "the manifest's ca" }) }
            }
            None => node_roots(),
        };
        let origin = "the Pool's ssl (declared in the manifest's [postgres] table)".to_string();
        return Ok(match ssl {
            PoolSsl::Disable => choice(TlsMode::Off, "disable", origin, None),
            PoolSsl::NoVerify => choice(require(tls::Verify::Nothing, trust), "no-verify", origin, None),
            PoolSsl::VerifyFull => choice(require(tls::Verify::ChainAndName, trust), "verify-full", origin, None),
        });
    }
    if let Some(mode) = var("PGSSLMODE").map(|m| m.trim().to_string()).filter(|m| !m.is_empty()) {
        let origin = format!("PGSSLMODE={mode}");
        return Ok(match mode.as_str() {
            "prefer" | "require" | "verify-ca" | "verify-full" => {
                choice(require(tls::Verify::ChainAndName, node_roots()), "verify-full", origin, Some(mode))
            }
            "no-verify" => choice(require(tls::Verify::Nothing, node_roots()), "no-verify", origin, Some(mode)),
            // `disable`, and anything else (`allow`, typos): plain.
            _ => choice(TlsMode::Off, "disable", origin, Some(mode)),
        });
    }
    let origin = if url.is_some_and(|u| u.socket) {
        "a socket: URL, whose TLS keys node-postgres ignores".to_string()
    } else {
        format!("no TLS setting in {origin_var}, the Pool or PGSSLMODE")
    };
    Ok(choice(TlsMode::Off, "disable", origin, None))
}

fn choice(mode: TlsMode, label: &'static str, origin: String, sslmode: Option<String>) -> TlsChoice {
    TlsChoice { mode, label, origin, sslmode, pg9_change: false }
}

fn require(verify: tls::Verify, trust: tls::Trust) -> TlsMode {
    TlsMode::Require(tls::Setup { verify, trust, identity: None })
}

/// The URL's TLS keys, in pg-connection-string's order.
fn url_tls(u: &ConnString, origin_var: &str, node_roots: tls::Trust) -> Result<TlsChoice, Refusal> {
    let file = |key: &str, origin: &'static str| -> Result<Option<tls::PemFile>, Refusal> {
        let Some(path) = u.param(key) else { return Ok(None) };
        // Read when the URL is parsed: a missing file is thrown from pool.connect().
        std::fs::metadata(path).map_err(|e| Refusal {
            message: format!(
                "node-postgres cannot read {key}={path} from {origin_var}: {e} (it throws from pool.connect())"
            ),
            hint: format!("point {key} at a file the API can read, or remove it"),
        })?;
        Ok(Some(tls::PemFile { path: PathBuf::from(path), origin }))
    };
    let ca = file("sslrootcert", "sslrootcert")?;
    let cert = file("sslcert", "sslcert")?;
    let key = file("sslkey", "sslkey")?;
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some(tls::Identity { cert, key }),
        _ => None,
    };
    let trust = match ca {
        Some(ca) => tls::Trust { public: false, file: Some(ca) },
        None => node_roots,
    };
    let with =
        |verify: tls::Verify| TlsMode::Require(tls::Setup { verify, trust: trust.clone(), identity: identity.clone() });
    let sslmode = u.param("sslmode").map(str::to_string);
    let files_or_mode = sslmode.is_some() || ["sslrootcert", "sslcert", "sslkey"].iter().any(|k| u.has(k));
    if !files_or_mode {
        // Only `ssl=` (or sslnegotiation=direct).
        let origin = format!(
            "{} in {origin_var}",
            u.param("ssl").map_or("sslnegotiation=direct".to_string(), |v| format!("ssl={v}"))
        );
        return match u.param("ssl") {
            Some("true" | "1") | None => Ok(choice(with(tls::Verify::ChainAndName), "verify-full", origin, None)),
            Some("0") => Ok(choice(TlsMode::Off, "disable", origin, None)),
            Some("no-verify") => Ok(choice(with(tls::Verify::Nothing), "no-verify", origin, None)),
            Some(other) => Err(Refusal {
                message: format!(
                    "{origin_var} has ssl={other}, which node-postgres keeps as the string \"{other}\": a truthy value, \
                     so it asks for TLS — and against a TLS server it crashes (TypeError: Cannot use 'in' operator \
                     to search for 'key' in {other}); against a plain one it fails (The server does not support SSL connections)"
                ),
                hint: "for no TLS write sslmode=disable (or ssl=0); for TLS, sslmode=verify-full or sslmode=no-verify"
                    .into(),
            }),
        };
    }
    let mode = sslmode.clone().unwrap_or_default();
    let origin = if mode.is_empty() {
        format!("sslrootcert/sslcert in {origin_var} (they turn verified TLS on)")
    } else {
        format!("sslmode={mode} in {origin_var}")
    };
    let compat = u.param("uselibpqcompat") == Some("true");
    if compat {
        return Ok(match mode.as_str() {
            "disable" => choice(TlsMode::Off, "disable", origin, sslmode),
            "prefer" => choice(with(tls::Verify::Nothing), "prefer (no plain fallback)", origin, sslmode),
            "require" if u.has("sslrootcert") => choice(with(tls::Verify::Chain), "verify-ca", origin, sslmode),
            "require" => choice(with(tls::Verify::Nothing), "require", origin, sslmode),
            "verify-ca" if !u.has("sslrootcert") => {
                return Err(Refusal {
                    message: "node-postgres refuses sslmode=verify-ca with uselibpqcompat=true and no sslrootcert \
                              (it throws: SECURITY WARNING: Using sslmode=verify-ca requires specifying a CA with sslrootcert)"
                        .to_string(),
                    hint: "add sslrootcert=/path/to/ca.pem to DATABASE_URL, or use sslmode=verify-full".into(),
                });
            }
            "verify-ca" => choice(with(tls::Verify::Chain), "verify-ca", origin, sslmode),
            // verify-full, and no-verify (which compat mode does not know): verify.
            _ => choice(with(tls::Verify::ChainAndName), "verify-full", origin, sslmode),
        });
    }
    Ok(match mode.as_str() {
        "disable" => choice(TlsMode::Off, "disable", origin, sslmode),
        "no-verify" => choice(with(tls::Verify::Nothing), "no-verify", origin, sslmode),
        // prefer, require, verify-ca, verify-full, unknown values, and files alone.
        _ => TlsChoice {
            pg9_change: matches!(mode.as_str(), "prefer" | "require" | "verify-ca"),
            ..choice(with(tls::Verify::ChainAndName), "verify-full", origin, sslmode)
        },
    })
}

/// libpq's `sslmode`, minus `allow` (plain first, TLS as a fallback), which nobody
/// should want and tokio-postgres cannot do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = Failure;

    fn from_str(s: &str) -> Result<SslMode, Failure> {
        match s {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            "allow" => {
                Err(Failure::new("sslmode \"allow\" is not supported").with_hint("use sslmode=prefer (or disable)"))
            }
            other => Err(Failure::new(format!("unknown sslmode \"{other}\""))
                .with_hint("use one of disable, prefer, require, verify-ca, verify-full")),
        }
    }
}

/// What libpq (psql) would do with the same settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Libpq {
    /// libpq refuses the settings outright (an unknown parameter or sslmode value).
    Refuses(String),
    /// It reads them, with this sslmode.
    Reads { sslmode: SslMode, sslrootcert: bool },
}

/// libpq's reading of a URL's TLS keys (or, for `DB_*`, of the environment alone).
pub fn libpq(url: Option<&ConnString>, var: Lookup, unix_socket: bool) -> Libpq {
    if let Some(u) = url {
        if u.socket {
            return Libpq::Refuses("libpq has no socket: URL scheme; it takes ?host=/dir".into());
        }
        for key in ["uselibpqcompat", "db"] {
            if u.has(key) {
                return Libpq::Refuses(format!("invalid URI query parameter: \"{key}\""));
            }
        }
    }
    // libpq reads the query in order, a later key replacing an earlier one, and
    // takes `ssl=true` (exactly) as `sslmode=require`, for JDBC's sake; any other
    // `ssl` value is an unknown parameter.
    let mut from_url: Option<String> = None;
    for (key, value) in url.map(|u| u.params.as_slice()).unwrap_or_default() {
        match (key.as_str(), value.as_str()) {
            ("ssl", "true") => from_url = Some("require".into()),
            ("ssl", _) => return Libpq::Refuses("invalid URI query parameter: \"ssl\"".into()),
            ("sslmode", mode) => from_url = Some(mode.into()),
            _ => {}
        }
    }
    let mode = from_url.or_else(|| var("PGSSLMODE"));
    let sslmode = match mode.as_deref().map(str::trim) {
        None | Some("") => SslMode::Prefer,
        Some(m) => match m.parse::<SslMode>() {
            Ok(mode) => mode,
            Err(_) if m == "allow" => SslMode::Prefer,
            Err(_) => return Libpq::Refuses(format!("invalid sslmode value: \"{m}\"")),
        },
    };
    let sslrootcert = url.and_then(|u| u.param("sslrootcert").map(str::to_string)).or_else(|| var("PGSSLROOTCERT"));
    let sslmode = if unix_socket { SslMode::Disable } else { sslmode };
    Libpq::Reads { sslmode, sslrootcert: sslrootcert.is_some_and(|p| Path::new(&p).exists()) }
}

impl Libpq {
    /// libpq's words for its reading: `sslmode=prefer (TLS if offered, no verification)`.
    pub fn describe(&self) -> String {
        match self {
            Libpq::Refuses(why) => format!("refuses the settings ({why})"),
            Libpq::Reads { sslmode, sslrootcert } => {
                let what = match (sslmode, sslrootcert) {
                    (SslMode::Disable, _) => "plain text",
                    (SslMode::Prefer, _) => "TLS if the server offers it, else plain; no verification",
                    (SslMode::Require, false) => "TLS, no verification",
                    (SslMode::Require, true) | (SslMode::VerifyCa, _) => "TLS, the chain verified, not the name",
                    (SslMode::VerifyFull, _) => "TLS, chain and name verified",
                };
                format!("sslmode={sslmode}: {what}")
            }
        }
    }

    /// Whether libpq checks the certificate's chain / name.
    pub fn verifies(&self) -> (bool, bool) {
        match self {
            Libpq::Reads { sslmode, sslrootcert } => match sslmode {
                SslMode::Disable | SslMode::Prefer => (false, false),
                SslMode::Require => (*sslrootcert, false),
                SslMode::VerifyCa => (true, false),
                SslMode::VerifyFull => (true, true),
            },
            Libpq::Refuses(_) => (false, false),
        }
    }

    /// Whether libpq falls back to (or stays with) plain text when the server has no TLS.
    pub fn accepts_plain(&self) -> bool {
        matches!(self, Libpq::Reads { sslmode: SslMode::Disable | SslMode::Prefer, .. })
    }

    /// Whether libpq tries TLS at all.
    pub fn tries_tls(&self) -> bool {
        matches!(self, Libpq::Reads { sslmode, .. } if *sslmode != SslMode::Disable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::postgres::conn_string::parse;

    fn none(_: &str) -> Option<String> {
        None
    }

    fn node(url: &str) -> Result<TlsChoice, Refusal> {
        node_postgres(Some(&parse(url).expect("parses")), &ApiClient::default(), &none, "DATABASE_URL")
    }

    fn verify(c: &TlsChoice) -> Option<tls::Verify> {
        match &c.mode {
            TlsMode::Off => None,
            TlsMode::Prefer(s) | TlsMode::Require(s) => Some(s.verify),
        }
    }

    /// The observed verdicts of pg 8.23.1 (SPEC §5), by what they ask of TLS.
    #[test]
    fn node_postgres_meanings() {
        use tls::Verify::*;
        let cases: &[(&str, Option<tls::Verify>, &str)] = &[
            ("postgres://a:b@h/d", None, "disable"),
            ("postgres://a:b@h/d?sslmode=disable", None, "disable"),
            ("postgres://a:b@h/d?sslmode=prefer", Some(ChainAndName), "verify-full"),
            ("postgres://a:b@h/d?sslmode=require", Some(ChainAndName), "verify-full"),
            ("postgres://a:b@h/d?sslmode=verify-ca", Some(ChainAndName), "verify-full"),
            ("postgres://a:b@h/d?sslmode=verify-full", Some(ChainAndName), "verify-full"),
            ("postgres://a:b@h/d?sslmode=bogus", Some(ChainAndName), "verify-full"),
            ("postgres://a:b@h/d?sslmode=no-verify", Some(Nothing), "no-verify"),
            ("postgres://a:b@h/d?ssl=true", Some(ChainAndName), "verify-full"),
            ("postgres://a:b@h/d?ssl=1", Some(ChainAndName), "verify-full"),
            ("postgres://a:b@h/d?ssl=0", None, "disable"),
            ("postgres://a:b@h/d?ssl=no-verify", Some(Nothing), "no-verify"),
            ("postgres://a:b@h/d?ssl=true&sslmode=disable", None, "disable"),
            ("postgres://a:b@h/d?ssl=0&sslmode=require", Some(ChainAndName), "verify-full"),
            ("postgres://a:b@h/d?uselibpqcompat=true&sslmode=prefer", Some(Nothing), "prefer (no plain fallback)"),
            ("postgres://a:b@h/d?uselibpqcompat=true&sslmode=require", Some(Nothing), "require"),
            ("postgres://a:b@h/d?uselibpqcompat=true&sslmode=no-verify", Some(ChainAndName), "verify-full"),
            ("postgres://a:b@h/d?uselibpqcompat=1&sslmode=require", Some(ChainAndName), "verify-full"),
            ("socket:/var/run/postgresql?db=mm&sslmode=require", None, "disable"),
        ];
        for (url, want, label) in cases {
            let c = node(url).unwrap_or_else(|r| panic!("{url}: {r:?}"));
            assert_eq!((verify(&c), c.label), (*want, *label), "{url}");
        }
        assert!(node("postgres://a:b@h/d?sslmode=require").unwrap().pg9_change);
        assert!(!node("postgres://a:b@h/d?sslmode=verify-full").unwrap().pg9_change);
    }

    #[test]
    fn what_node_postgres_throws_is_a_refusal() {
        assert!(node("postgres://a:b@h/d?ssl=false").unwrap_err().message.contains("truthy"));
        assert!(
            node("postgres://a:b@h/d?sslmode=require&sslrootcert=/nonexistent/ca.pem")
                .unwrap_err()
                .message
                .contains("cannot read sslrootcert")
        );
        assert!(node("postgres://a:b@h/d?uselibpqcompat=true&sslmode=verify-ca").is_err());
    }

    #[test]
    fn the_url_replaces_the_pools_ssl_and_pgsslmode_only_fills_in() {
        let pool = ApiClient { ssl: Some(PoolSsl::NoVerify), ..ApiClient::default() };
        let url = parse("postgres://a:b@h/d?sslmode=require").unwrap();
        let c = node_postgres(Some(&url), &pool, &none, "DATABASE_URL").unwrap();
        assert_eq!(c.label, "verify-full");
        let plain = parse("postgres://a:b@h/d").unwrap();
        assert_eq!(node_postgres(Some(&plain), &pool, &none, "DATABASE_URL").unwrap().label, "no-verify");
        let env = |k: &str| (k == "PGSSLMODE").then(|| "require".to_string());
        assert_eq!(
            node_postgres(Some(&plain), &ApiClient::default(), &env, "DATABASE_URL").unwrap().label,
            "verify-full"
        );
        let disabled = ApiClient { ssl: Some(PoolSsl::Disable), ..ApiClient::default() };
        assert_eq!(node_postgres(Some(&plain), &disabled, &env, "DATABASE_URL").unwrap().label, "disable");
    }

    #[test]
    fn libpq_reads_the_same_settings_its_own_way() {
        let read = |url: &str| libpq(Some(&parse(url).unwrap()), &none, false);
        assert_eq!(read("postgres://a:b@h/d"), Libpq::Reads { sslmode: SslMode::Prefer, sslrootcert: false });
        assert!(matches!(read("postgres://a:b@h/d?sslmode=no-verify"), Libpq::Refuses(_)));
        // JDBC's ssl=true is libpq's require; any other ssl value is refused.
        assert_eq!(read("postgres://a:b@h/d?ssl=true"), Libpq::Reads { sslmode: SslMode::Require, sslrootcert: false });
        assert_eq!(
            read("postgres://a:b@h/d?ssl=true&sslmode=disable"),
            Libpq::Reads { sslmode: SslMode::Disable, sslrootcert: false }
        );
        assert!(matches!(read("postgres://a:b@h/d?ssl=1"), Libpq::Refuses(_)));
        assert!(matches!(read("postgres://a:b@h/d?ssl=false"), Libpq::Refuses(_)));
        assert!(read("postgres://a:b@h/d?sslmode=require").tries_tls());
        assert!(!libpq(Some(&parse("postgres://a:b@h/d?sslmode=require").unwrap()), &none, true).tries_tls());
    }
}
