//! Where and as whom to connect to PostgreSQL, read from `DATABASE_URL` or
//! `DB_*` once, by this one parser (the `env.*` checks report its result), the
//! way the API's driver reads them: node-postgres by default (see `conn_string`
//! and `ssl`), libpq when the manifest says the client is libpq. What libpq would
//! make of the same settings is kept beside, so a verdict can say where psql differs.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::conn_string::{self, ConnString, ParseError};
use super::ssl::{self, ApiClient, ClientKind, Libpq, SslMode, TlsChoice, TlsMode};
use crate::probe::url::Secret;
use crate::probe::{Cause, EnvLookup, Failure, net, tls};

/// PostgreSQL's port when nothing names one.
pub const DEFAULT_PORT: u16 = 5432;

/// Which configuration a target came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgSource {
    DatabaseUrl,
    /// PgBouncer's admin console (`PGBOUNCER_URL`), not the API's database.
    PgBouncerUrl,
    DbVars,
}

impl PgSource {
    /// The variable an operator edits (`DB_*` for the set).
    pub fn as_str(self) -> &'static str {
        match self {
            PgSource::DatabaseUrl => "DATABASE_URL",
            PgSource::PgBouncerUrl => "PGBOUNCER_URL",
            PgSource::DbVars => "DB_*",
        }
    }
}

/// The `DB_*` variables, read once: how the API's code configures the database
/// when `DATABASE_URL` is absent. The one reading `env.required`,
/// `env.database_url` and the target share.
#[derive(Debug, Clone)]
pub struct DbVars {
    pub host: Option<String>,
    /// `DB_PORT` as written (see [`DbVars::port`]).
    port: Option<String>,
    pub user: Option<String>,
    password: Option<Secret>,
    pub name: Option<String>,
}

impl DbVars {
    /// The set `env.required` asks for when `DATABASE_URL` is absent.
    pub const REQUIRED: [&'static str; 4] = ["DB_HOST", "DB_USER", "DB_PASSWORD", "DB_NAME"];

    /// Reads them; blank counts as unset (a password only when empty).
    pub fn read(get: EnvLookup) -> DbVars {
        let env = |name: &str| get(name).filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_string());
        DbVars {
            host: env("DB_HOST"),
            port: env("DB_PORT"),
            user: env("DB_USER"),
            // A password may legitimately be empty-looking; only unset means none.
            password: get("DB_PASSWORD").filter(|p| !p.is_empty()).map(Secret::new),
            name: env("DB_NAME"),
        }
    }

    /// `DB_PORT` as a port number, PostgreSQL's default when unset.
    pub fn port(&self) -> Result<u16, Failure> {
        match &self.port {
            Some(p) => parse_port(p, "DB_PORT").map_err(|f| f.because(Cause::Malformed("DB_PORT".into()))),
            None => Ok(DEFAULT_PORT),
        }
    }

    /// Those of [`DbVars::REQUIRED`] that are unset or blank.
    pub fn missing(&self) -> Vec<&'static str> {
        let set = [self.host.is_some(), self.user.is_some(), self.password.is_some(), self.name.is_some()];
        DbVars::REQUIRED.iter().zip(set).filter(|(_, set)| !set).map(|(name, _)| *name).collect()
    }
}

impl fmt::Display for PgSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where and as whom to connect, and how the API's driver encrypts it. The
/// password is a [`Secret`]: only ever sent to the server, never printed.
#[derive(Debug, Clone)]
pub struct PgTarget {
    /// Host name, IP address, or a Unix socket directory (starts with `/`).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    pub(in crate::probe) password: Option<Secret>,
    pub source: PgSource,
    /// Whose reading this is (node-postgres unless the manifest says libpq).
    pub client: ClientKind,
    /// The driver's TLS decision.
    pub tls: TlsChoice,
    /// What libpq (psql) would make of the same settings.
    pub libpq: Libpq,
    /// Startup `options` from the URL (`-c search_path=…`), sent as the API sends them.
    pub options: Option<String>,
    /// `sslnegotiation=direct`: TLS from the first byte, no SSLRequest.
    pub direct_tls: bool,
    /// The URL has a raw `@` in its userinfo: libpq would read another host.
    pub raw_at: bool,
    /// The URL's scheme (node-postgres does not check it).
    pub scheme: String,
}

/// The hint for malformed URLs: how to write one, and what to encode.
const ENCODE_HINT: &str = "the form is postgresql://<user>:<password>@<host>:<port>/<database>; \
     percent-encode special characters in the password (# as %23, / as %2F, @ as %40)";

impl PgTarget {
    /// `DATABASE_URL`, else `DB_HOST`, `DB_PORT` (default 5432), `DB_USER`,
    /// `DB_PASSWORD`, `DB_NAME`, read as node-postgres reads them. Empty variables
    /// count as unset.
    pub fn from_env(get: EnvLookup) -> Result<PgTarget, Failure> {
        PgTarget::from_env_for(get, &ApiClient::default())
    }

    /// [`PgTarget::from_env`] with what the API's code sets (`[postgres]` in a manifest).
    pub fn from_env_for(get: EnvLookup, api: &ApiClient) -> Result<PgTarget, Failure> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        match var("DATABASE_URL") {
            Some(url) => PgTarget::from_url_as(url.trim(), PgSource::DatabaseUrl, get, api)
                .map_err(|f| f.because(Cause::Malformed("DATABASE_URL".into()))),
            None => PgTarget::from_db_vars(&DbVars::read(get), get, api),
        }
    }

    /// Parses the URL in `source`'s variable (`DATABASE_URL`, `PGBOUNCER_URL`).
    pub fn from_url_as(raw: &str, source: PgSource, get: EnvLookup, api: &ApiClient) -> Result<PgTarget, Failure> {
        let var = source.as_str();
        let env = |name: &str| get(name).filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_string());
        let url = conn_string::parse(raw).map_err(|e| match e {
            // Only what went wrong is said, never the URL: it may hold the password.
            ParseError::InvalidUrl(why) => {
                // A raw `#` is the usual culprit: name it, not only what it broke.
                let hash = if raw.contains('#') {
                    " (the '#' in it starts the URL's fragment: the URL ends before it; percent-encode it as %23)"
                } else {
                    ""
                };
                Failure::new(format!("{var} is not a valid URL: {why}{hash}"))
                    .with_hint(format!("node-postgres throws \"Invalid URL\" for it too; {ENCODE_HINT}"))
            }
            ParseError::NotUtf8(what) => Failure::new(format!("{var}: {what} is not valid UTF-8 once percent-decoded")),
        })?;
        if url.database.as_deref().is_some_and(|d| d.contains('@')) {
            // `postgres://app:p@ss/word@db/x` parses, with the wrong host: never quote it.
            return Err(Failure::new(format!(
                "{var} is malformed: its database name contains '@' (an unescaped '/' in the password?)"
            ))
            .with_hint(ENCODE_HINT));
        }
        let host = url.host.clone().or_else(|| env("PGHOST")).unwrap_or_else(|| "localhost".to_string());
        if host.contains(',') {
            return Err(Failure::new(format!("{var} names several hosts"))
                .with_hint("name one host: node-postgres connects to a single server"));
        }
        let port = match url.port.clone().or_else(|| env("PGPORT")) {
            Some(p) => parse_port(&p, &format!("the port in {var}"))?,
            None => DEFAULT_PORT,
        };
        let user = url.user.clone().or_else(|| env("PGUSER")).ok_or_else(|| {
            Failure::new(format!("{var} has no user name")).with_hint(
                "add it: postgresql://<user>:<password>@<host>:<port>/<database> (without it node-postgres \
                 logs in as PGUSER, or as the OS user running the API)",
            )
        })?;
        let password = url.password.clone().or_else(|| get("PGPASSWORD").filter(|p| !p.is_empty())).map(Secret::new);
        let dbname = url.database.clone().or_else(|| env("PGDATABASE")).unwrap_or_else(|| user.clone());
        let unix_socket = host.starts_with('/');
        let lookup = |name: &str| env(name);
        let libpq = ssl::libpq(Some(&url), &lookup, unix_socket);
        let tls = match api.client {
            ClientKind::NodePostgres => ssl::node_postgres(Some(&url), api, &lookup, var)
                .map_err(|r| Failure::new(r.message).with_hint(r.hint))?,
            ClientKind::Libpq => libpq_choice(&libpq, Some(&url), &lookup, var)?,
        };
        Ok(PgTarget {
            host,
            port,
            user,
            dbname,
            password,
            source,
            client: api.client,
            tls,
            libpq,
            options: url.param("options").map(str::to_string),
            direct_tls: url.param("sslnegotiation") == Some("direct"),
            raw_at: url.raw_at_in_userinfo,
            scheme: url.scheme.clone(),
        })
    }

    /// The target of the `DB_*` set: host, user and database are needed (the
    /// password may come from the server's trust or `~/.pgpass`, as for the API).
    fn from_db_vars(db: &DbVars, get: EnvLookup, api: &ApiClient) -> Result<PgTarget, Failure> {
        let env = |name: &str| get(name).filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_string());
        let require = |value: &Option<String>, name: &str| {
            value.clone().ok_or_else(|| {
                Failure::new(format!("neither DATABASE_URL nor {name} is set"))
                    .with_hint(
                        "set DATABASE_URL=postgresql://<user>:<password>@<host>:<port>/<database>, \
                         or DB_HOST, DB_PORT, DB_USER, DB_PASSWORD and DB_NAME",
                    )
                    .because(Cause::Unset(name.to_string()))
            })
        };
        let host = require(&db.host, "DB_HOST")?;
        let port = db.port()?;
        let user = require(&db.user, "DB_USER")?;
        let dbname = require(&db.name, "DB_NAME")?;
        let password = db.password.clone();
        let unix_socket = host.starts_with('/');
        let lookup = |name: &str| env(name);
        let libpq = ssl::libpq(None, &lookup, unix_socket);
        let tls = match api.client {
            ClientKind::NodePostgres => {
                ssl::node_postgres(None, api, &lookup, "DB_*").map_err(|r| Failure::new(r.message).with_hint(r.hint))?
            }
            ClientKind::Libpq => libpq_choice(&libpq, None, &lookup, "DB_*")?,
        };
        Ok(PgTarget {
            host,
            port,
            user,
            dbname,
            password,
            source: PgSource::DbVars,
            client: api.client,
            tls,
            libpq,
            options: None,
            direct_tls: false,
            raw_at: false,
            scheme: String::new(),
        })
    }

    /// The variable an operator edits to change this target (`DB_*` for the set).
    pub fn var(&self) -> &'static str {
        self.source.as_str()
    }

    /// Loopback address, `localhost`, or a Unix socket.
    pub fn is_local(&self) -> bool {
        self.is_unix_socket()
            || self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// The host is a socket directory (a host starting with `/`).
    pub fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/')
    }

    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// `host:port` (`[::1]:5432`), or the socket file's path.
    pub fn endpoint(&self) -> String {
        if self.is_unix_socket() {
            self.socket_path().display().to_string()
        } else {
            net::endpoint(&self.host, self.port)
        }
    }

    pub(in crate::probe) fn socket_path(&self) -> PathBuf {
        Path::new(&self.host).join(format!(".s.PGSQL.{}", self.port))
    }

    /// The variable an operator edits to fix `what` ("password", "host" …).
    pub(in crate::probe) fn var_for(&self, what: &str) -> String {
        match self.source {
            PgSource::DatabaseUrl | PgSource::PgBouncerUrl => format!("the {what} in {}", self.source),
            PgSource::DbVars => match what {
                "password" => "DB_PASSWORD",
                "user" => "DB_USER",
                "database name" => "DB_NAME",
                _ => "DB_HOST/DB_PORT",
            }
            .to_string(),
        }
    }

    /// The TLS the driver asks for, `None` for none at all.
    pub fn tls_setup(&self) -> Option<&tls::Setup> {
        match &self.tls.mode {
            TlsMode::Off => None,
            TlsMode::Prefer(setup) | TlsMode::Require(setup) => Some(setup),
        }
    }
}

/// libpq's own TLS decision (the manifest says the client is libpq): `prefer`
/// falls back to plain, `require` does not verify (unless a root certificate is
/// given), the verifying modes trust `sslrootcert` or the public roots; never
/// TLS over a Unix socket.
fn libpq_choice(
    libpq: &Libpq,
    url: Option<&ConnString>,
    var: ssl::Lookup,
    origin_var: &str,
) -> Result<TlsChoice, Failure> {
    let sslmode = match libpq {
        Libpq::Refuses(why) => {
            return Err(Failure::new(format!("libpq refuses {origin_var}: {why}"))
                .with_hint("use one of disable, prefer, require, verify-ca, verify-full"));
        }
        Libpq::Reads { sslmode, .. } => *sslmode,
    };
    let rootcert = url.and_then(|u| u.param("sslrootcert").map(str::to_string)).or_else(|| var("PGSSLROOTCERT"));
    let origin = match url.and_then(|u| u.param("sslmode")) {
        Some(m) => format!("sslmode={m} in {origin_var}"),
        None => match var("PGSSLMODE") {
            Some(m) => format!("PGSSLMODE={m}"),
            None => "libpq's default (sslmode=prefer)".to_string(),
        },
    };
    let file = rootcert
        .as_deref()
        .filter(|f| *f != "system")
        .map(|f| tls::PemFile { path: PathBuf::from(f), origin: "sslrootcert" });
    let trust = tls::Trust { public: file.is_none(), file: file.clone() };
    let setup = |verify| tls::Setup { verify, trust: trust.clone(), identity: None };
    let (mode, label) = match sslmode {
        SslMode::Disable => (TlsMode::Off, "disable"),
        SslMode::Prefer => (TlsMode::Prefer(setup(tls::Verify::Nothing)), "prefer"),
        SslMode::Require if file.is_some() => (TlsMode::Require(setup(tls::Verify::Chain)), "require"),
        SslMode::Require => (TlsMode::Require(setup(tls::Verify::Nothing)), "require"),
        SslMode::VerifyCa => (TlsMode::Require(setup(tls::Verify::Chain)), "verify-ca"),
        SslMode::VerifyFull => (TlsMode::Require(setup(tls::Verify::ChainAndName)), "verify-full"),
    };
    Ok(TlsChoice { mode, label, origin, sslmode: Some(sslmode.to_string()), pg9_change: false })
}

pub fn parse_port(value: &str, what: &str) -> Result<u16, Failure> {
    match value.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(Failure::new(format!("{what} is not a port number: \"{value}\""))
            .with_hint("use a number from 1 to 65535 (PostgreSQL's default is 5432)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(vars: &[(&str, &str)]) -> Result<PgTarget, Failure> {
        PgTarget::from_env(&crate::probe::failure::lookup(vars))
    }

    fn url(u: &str) -> Result<PgTarget, Failure> {
        target(&[("DATABASE_URL", u)])
    }

    fn libpq_client(vars: &[(&str, &str)]) -> Result<PgTarget, Failure> {
        let api = ApiClient { client: ClientKind::Libpq, ..ApiClient::default() };
        PgTarget::from_env_for(&crate::probe::failure::lookup(vars), &api)
    }

    #[test]
    fn url_with_everything() {
        let t =
            url("postgres://us%20er:p%40ss@db.internal:5433/my%20db?sslmode=verify-full&options=-c%20search_path%3Dmm")
                .unwrap();
        assert_eq!(t.host, "db.internal");
        assert_eq!(t.port, 5433);
        assert_eq!(t.user, "us er");
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("p@ss"));
        assert_eq!(t.dbname, "my db");
        assert_eq!((t.tls.label, t.tls.origin.as_str()), ("verify-full", "sslmode=verify-full in DATABASE_URL"));
        assert_eq!(t.options.as_deref(), Some("-c search_path=mm"));
        assert_eq!(t.source, PgSource::DatabaseUrl);
        assert!(!t.is_local());
    }

    #[test]
    fn without_tls_settings_node_postgres_connects_in_plain_text() {
        let t = url("postgresql://app@localhost").unwrap();
        assert_eq!((t.port, t.dbname.as_str(), t.tls.label), (5432, "app", "disable"));
        assert_eq!(t.tls.mode, TlsMode::Off);
        assert!(t.password.is_none());
        assert!(t.is_local());
        // libpq would try TLS first.
        assert_eq!(t.libpq, Libpq::Reads { sslmode: SslMode::Prefer, sslrootcert: false });
    }

    #[test]
    fn unencoded_at_sign_in_password_splits_at_the_last_as_node_does() {
        let t = url("postgresql://app:pa@ss@127.0.0.1/db").unwrap();
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("pa@ss"));
        assert_eq!(t.host, "127.0.0.1");
        assert!(t.raw_at, "libpq would split at the first @");
    }

    #[test]
    fn ipv6_host() {
        let t = url("postgresql://app@[::1]:6000/db").unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(t.endpoint(), "[::1]:6000");
        assert!(t.is_local());
    }

    #[test]
    fn unix_socket_forms() {
        for u in [
            "postgresql://u@%2Fvar%2Frun%2Fpostgresql/db",
            "postgresql://u:pw@/db?host=/var/run/postgresql",
            "socket://u:pw@/var/run/postgresql?db=db",
            "socket:/var/run/postgresql?db=db&user=u",
        ] {
            let t = url(u).unwrap_or_else(|f| panic!("{u}: {f:?}"));
            assert_eq!(
                (t.host.as_str(), t.user.as_str(), t.dbname.as_str()),
                ("/var/run/postgresql", "u", "db"),
                "{u}"
            );
            assert!(t.is_unix_socket() && t.is_local(), "{u}");
            assert_eq!(t.endpoint(), "/var/run/postgresql/.s.PGSQL.5432", "{u}");
        }
        let t = url("postgresql:///db?host=/var/run/postgresql&user=u&port=5433").unwrap();
        assert_eq!((t.host.as_str(), t.user.as_str(), t.port), ("/var/run/postgresql", "u", 5433));
    }

    #[test]
    fn the_url_decides_tls_else_pgsslmode() {
        let t =
            target(&[("DATABASE_URL", "postgresql://u@h/db?sslmode=disable"), ("PGSSLMODE", "verify-full")]).unwrap();
        assert_eq!(t.tls.label, "disable");
        let t = target(&[("DATABASE_URL", "postgresql://u@h/db"), ("PGSSLMODE", "require")]).unwrap();
        assert_eq!((t.tls.label, t.tls.origin.as_str()), ("verify-full", "PGSSLMODE=require"));
        // PGSSLROOTCERT is never read by node-postgres; libpq reads it.
        let t = target(&[("DATABASE_URL", "postgresql://u@h/db?sslmode=verify-full"), ("PGSSLROOTCERT", "/ca.pem")])
            .unwrap();
        assert_eq!(t.tls_setup().and_then(|s| s.trust.file.clone()), None);
    }

    #[test]
    fn a_libpq_client_reads_libpq_meanings() {
        let t = libpq_client(&[("DATABASE_URL", "postgresql://u@h/db")]).unwrap();
        assert_eq!((t.tls.label, &t.tls.mode), ("prefer", &TlsMode::Prefer(t.tls_setup().unwrap().clone())));
        let t = libpq_client(&[("DATABASE_URL", "postgresql://u@h/db?sslmode=require&sslrootcert=/ca.pem")]).unwrap();
        assert_eq!(t.tls_setup().map(|s| s.verify), Some(tls::Verify::Chain));
        let f = libpq_client(&[("DATABASE_URL", "postgresql://u@h/db?sslmode=no-verify")]).unwrap_err();
        assert!(f.message.contains("invalid sslmode value"), "{f:?}");
    }

    #[test]
    fn sslmode_round_trips_through_display() {
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            assert_eq!(mode.to_string().parse::<SslMode>(), Ok(mode));
        }
    }

    #[test]
    fn db_vars() {
        let t = target(&[("DB_HOST", "db"), ("DB_USER", "app"), ("DB_PASSWORD", "secret"), ("DB_NAME", "mockmate")])
            .unwrap();
        assert_eq!((t.host.as_str(), t.port, t.user.as_str(), t.dbname.as_str()), ("db", 5432, "app", "mockmate"));
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("secret"));
        assert_eq!(t.source, PgSource::DbVars);
        let t = target(&[("DB_HOST", "db"), ("DB_PORT", "6543"), ("DB_USER", "a"), ("DB_NAME", "d")]).unwrap();
        assert_eq!(t.port, 6543);
        assert!(!t.has_password());
    }

    #[test]
    fn empty_database_url_falls_back_to_db_vars() {
        let t = target(&[("DATABASE_URL", ""), ("DB_HOST", "h"), ("DB_USER", "u"), ("DB_NAME", "d")]).unwrap();
        assert_eq!(t.source, PgSource::DbVars);
    }

    #[test]
    fn bad_inputs_say_what_is_wrong() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "neither DATABASE_URL nor DB_HOST is set"),
            (&[("DB_HOST", "h"), ("DB_NAME", "d")], "neither DATABASE_URL nor DB_USER is set"),
            (
                &[("DB_HOST", "h"), ("DB_USER", "u"), ("DB_NAME", "d"), ("DB_PORT", "54x")],
                "DB_PORT is not a port number: \"54x\"",
            ),
            (
                &[("DATABASE_URL", "postgresql://u:p@h:99999/db")],
                "DATABASE_URL is not a valid URL: invalid port number",
            ),
            (&[("DATABASE_URL", "postgresql://h1,h2/db")], "DATABASE_URL names several hosts"),
            (&[("DATABASE_URL", "postgresql://h/db")], "DATABASE_URL has no user name"),
            (
                &[("DATABASE_URL", "postgresql://u:p#x@h/db")],
                "DATABASE_URL is not a valid URL: invalid port number (the '#' in it starts the URL's fragment: the \
                 URL ends before it; percent-encode it as %23)",
            ),
        ];
        for (vars, message) in cases {
            assert_eq!(target(vars).unwrap_err().message, *message, "{vars:?}");
        }
    }

    #[test]
    fn password_never_shows() {
        let sentinel = "S3NT1NEL-pw";
        for t in [
            url(&format!("postgresql://u:{sentinel}@h/db")).unwrap(),
            target(&[("DB_HOST", "h"), ("DB_USER", "u"), ("DB_NAME", "d"), ("DB_PASSWORD", sentinel)]).unwrap(),
        ] {
            assert!(t.has_password());
            assert!(!format!("{t:?}").contains(sentinel));
        }
        for bad in [
            format!("postgresql://u:{sentinel}#@h/db"),
            format!("postgresql://u:{sentinel}@h:0x/db"),
            format!("postgresql://u:{sentinel}@h/db?ssl=false"),
            format!("postgresql://u:{sentinel}@h/db?sslmode=require&sslrootcert=/nonexistent"),
        ] {
            let f = url(&bad).unwrap_err();
            assert!(!format!("{f:?}").contains(sentinel), "{f:?}");
        }
    }
}
