//! Where and as whom to connect to PostgreSQL, read from `DATABASE_URL` or
//! `DB_*` once, by this one parser: the `env.*` checks report its result.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::probe::url::{Secret, percent_decode};
use crate::probe::{Cause, EnvLookup, Failure, net, tls};

const DEFAULT_PORT: u16 = 5432;

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

/// Which configuration a target came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgSource {
    DatabaseUrl,
    DbVars,
}

impl PgSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PgSource::DatabaseUrl => "DATABASE_URL",
            PgSource::DbVars => "DB_*",
        }
    }
}

impl fmt::Display for PgSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where and as whom to connect. The password is a [`Secret`]: it is only ever
/// sent to the server, never printed.
#[derive(Debug, Clone)]
pub struct PgTarget {
    /// Host name, IP address, or a Unix socket directory (starts with `/`).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    pub(in crate::probe) password: Option<Secret>,
    pub sslmode: SslMode,
    pub sslrootcert: Option<PathBuf>,
    pub source: PgSource,
}

impl PgTarget {
    /// `DATABASE_URL` (`postgres://` or `postgresql://`), else `DB_HOST`, `DB_PORT`
    /// (default 5432), `DB_USER`, `DB_PASSWORD`, `DB_NAME`. `sslmode` comes from the
    /// URL's query or `PGSSLMODE` (default `prefer`, like libpq); `sslrootcert` from
    /// the URL's query or `PGSSLROOTCERT`. Empty variables count as unset.
    pub fn from_env(get: EnvLookup) -> Result<PgTarget, Failure> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        match var("DATABASE_URL") {
            Some(url) => {
                PgTarget::from_url(url.trim(), get).map_err(|f| f.because(Cause::Malformed("DATABASE_URL".into())))
            }
            None => PgTarget::from_db_vars(get),
        }
    }

    /// Parses a libpq-style URL; `get` supplies the `PG*` fallbacks.
    pub fn from_url(url: &str, get: EnvLookup) -> Result<PgTarget, Failure> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        const ENCODE_HINT: &str = "the form is postgresql://<user>:<password>@<host>:<port>/<database>; \
             percent-encode special characters in the password (# as %23, / as %2F, @ as %40)";
        // Only the scheme is echoed: the rest may hold the password.
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        if scheme != "postgres" && scheme != "postgresql" {
            let shown = if scheme.is_empty() || scheme.len() > 20 {
                String::new()
            } else {
                format!(" (it starts with {scheme}://)")
            };
            return Err(Failure::new(format!("DATABASE_URL is not a PostgreSQL URL{shown}"))
                .with_hint("it must start with postgresql:// or postgres://"));
        }
        let parsed = url::Url::parse(url)
            .map_err(|e| Failure::new(format!("DATABASE_URL is not a valid URL: {e}")).with_hint(ENCODE_HINT))?;
        if parsed.fragment().is_some() {
            return Err(Failure::new("DATABASE_URL contains '#', which cuts the URL short").with_hint(ENCODE_HINT));
        }

        let (mut q_host, mut q_port, mut q_user, mut q_password, mut q_dbname) = (None, None, None, None, None);
        let (mut q_sslmode, mut q_rootcert) = (None, None);
        for (key, value) in parsed.query_pairs() {
            let value = value.into_owned();
            match key.as_ref() {
                "host" => q_host = Some(value),
                "port" => q_port = Some(value),
                "user" => q_user = Some(value),
                "password" => q_password = Some(value),
                "dbname" => q_dbname = Some(value),
                "sslmode" => q_sslmode = Some(value),
                "sslrootcert" => q_rootcert = Some(value),
                // Other libpq/node-postgres options do not change where we connect.
                _ => {}
            }
        }

        let host = match parsed.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => decode(d, "the host")?,
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => q_host.unwrap_or_else(|| "localhost".to_string()),
        };
        if host.contains(',') {
            return Err(Failure::new("DATABASE_URL names several hosts")
                .with_hint("name one host: mockmate-diag checks a single server"));
        }
        let port = match (parsed.port(), q_port) {
            (Some(p), _) => p,
            (None, Some(p)) => parse_port(&p, "the port in DATABASE_URL")?,
            (None, None) => DEFAULT_PORT,
        };
        let user = match decode(parsed.username(), "the user name")? {
            u if !u.is_empty() => u,
            _ => q_user.or_else(|| var("PGUSER")).ok_or_else(|| {
                Failure::new("DATABASE_URL has no user name")
                    .with_hint("add it: postgresql://<user>:<password>@<host>:<port>/<database>")
            })?,
        };
        let password = match parsed.password() {
            Some(p) => Some(decode(p, "the password")?),
            None => q_password.or_else(|| var("PGPASSWORD")),
        }
        .map(Secret::new);
        let dbname = match decode(parsed.path().trim_start_matches('/'), "the database name")? {
            d if !d.is_empty() => d,
            // libpq's default: the database named after the user.
            _ => q_dbname.unwrap_or_else(|| user.clone()),
        };
        let (sslmode, sslrootcert) = tls_settings(q_sslmode, q_rootcert, get)?;
        Ok(PgTarget { host, port, user, dbname, password, sslmode, sslrootcert, source: PgSource::DatabaseUrl })
    }

    fn from_db_vars(get: EnvLookup) -> Result<PgTarget, Failure> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let require = |name: &str| {
            var(name).map(|v| v.trim().to_string()).ok_or_else(|| {
                Failure::new(format!("neither DATABASE_URL nor {name} is set")).with_hint(
                    "set DATABASE_URL=postgresql://<user>:<password>@<host>:<port>/<database>, \
                     or DB_HOST, DB_PORT, DB_USER, DB_PASSWORD and DB_NAME",
                )
            })
        };
        let require = |name: &str| require(name).map_err(|f| f.because(Cause::Unset(name.to_string())));
        let host = require("DB_HOST")?;
        let port = match var("DB_PORT") {
            Some(p) => parse_port(p.trim(), "DB_PORT").map_err(|f| f.because(Cause::Malformed("DB_PORT".into())))?,
            None => DEFAULT_PORT,
        };
        let user = require("DB_USER")?;
        let dbname = require("DB_NAME")?;
        // A password may legitimately be empty-looking; only unset means none.
        let password = get("DB_PASSWORD").filter(|p| !p.is_empty()).map(Secret::new);
        let (sslmode, sslrootcert) = tls_settings(None, None, get)?;
        Ok(PgTarget { host, port, user, dbname, password, sslmode, sslrootcert, source: PgSource::DbVars })
    }

    /// Loopback address, `localhost`, or a Unix socket.
    pub fn is_local(&self) -> bool {
        self.is_unix_socket()
            || self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// The host is a socket directory (libpq: a host starting with `/`).
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
            PgSource::DatabaseUrl => format!("the {what} in DATABASE_URL"),
            PgSource::DbVars => match what {
                "password" => "DB_PASSWORD",
                "user" => "DB_USER",
                "database name" => "DB_NAME",
                _ => "DB_HOST/DB_PORT",
            }
            .to_string(),
        }
    }

    /// The TLS this target asks for (libpq's sslmode), `None` for none at all.
    /// libpq: `require` with a root certificate verifies the chain like
    /// `verify-ca`; a Unix socket is never encrypted.
    pub fn tls(&self) -> Option<tls::Setup> {
        let verify = match self.sslmode {
            _ if self.is_unix_socket() => return None,
            SslMode::Disable => return None,
            SslMode::Prefer => tls::Verify::Nothing,
            SslMode::Require if self.sslrootcert.is_some() => tls::Verify::Chain,
            SslMode::Require => tls::Verify::Nothing,
            SslMode::VerifyCa => tls::Verify::Chain,
            SslMode::VerifyFull => tls::Verify::ChainAndName,
        };
        // No file (or libpq's `sslrootcert=system`): the public web PKI.
        let file = self
            .sslrootcert
            .as_deref()
            .filter(|f| *f != Path::new("system"))
            .map(|f| tls::PemFile { path: f.to_path_buf(), origin: "sslrootcert" });
        Some(tls::Setup { verify, trust: tls::Trust { public: file.is_none(), file }, identity: None })
    }
}

fn tls_settings(
    url_sslmode: Option<String>,
    url_rootcert: Option<String>,
    get: EnvLookup,
) -> Result<(SslMode, Option<PathBuf>), Failure> {
    let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    let sslmode = match (url_sslmode, var("PGSSLMODE")) {
        (Some(m), _) => m.trim().parse().map_err(|f: Failure| in_origin(f, "DATABASE_URL"))?,
        (None, Some(m)) => m.trim().parse().map_err(|f: Failure| in_origin(f, "PGSSLMODE"))?,
        (None, None) => SslMode::Prefer,
    };
    let rootcert = url_rootcert.or_else(|| var("PGSSLROOTCERT")).map(|p| PathBuf::from(p.trim()));
    Ok((sslmode, rootcert))
}

fn in_origin(f: Failure, origin: &str) -> Failure {
    Failure { message: format!("{} in {origin}", f.message), ..f }.because(Cause::Malformed(origin.to_string()))
}

pub fn parse_port(value: &str, what: &str) -> Result<u16, Failure> {
    match value.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(Failure::new(format!("{what} is not a port number: \"{value}\""))
            .with_hint("use a number from 1 to 65535 (PostgreSQL's default is 5432)")),
    }
}

/// Percent-decodes one URL component. Never echoes the input (it may be a password).
/// Percent-decodes one URL component. Never echoes the input (it may be a password).
fn decode(s: &str, what: &str) -> Result<String, Failure> {
    percent_decode(s).map_err(|_| Failure::new(format!("DATABASE_URL: {what} is not valid UTF-8 once percent-decoded")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(vars: &[(&str, &str)]) -> Result<PgTarget, Failure> {
        PgTarget::from_env(&crate::probe::lookup(vars))
    }

    fn url(u: &str) -> Result<PgTarget, Failure> {
        target(&[("DATABASE_URL", u)])
    }

    #[test]
    fn url_with_everything() {
        let t = url("postgres://us%20er:p%40ss@db.internal:5433/my%20db?sslmode=verify-full&sslrootcert=/etc/ca.pem")
            .unwrap();
        assert_eq!(t.host, "db.internal");
        assert_eq!(t.port, 5433);
        assert_eq!(t.user, "us er");
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("p@ss"));
        assert_eq!(t.dbname, "my db");
        assert_eq!(t.sslmode, SslMode::VerifyFull);
        assert_eq!(t.sslrootcert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(t.source, PgSource::DatabaseUrl);
        assert!(!t.is_local());
    }

    #[test]
    fn url_defaults_like_libpq() {
        let t = url("postgresql://app@localhost").unwrap();
        assert_eq!((t.port, t.dbname.as_str(), t.sslmode), (5432, "app", SslMode::Prefer));
        assert!(t.password.is_none());
        assert!(t.is_local());
    }

    #[test]
    fn unencoded_at_sign_in_password_still_parses() {
        let t = url("postgresql://app:pa@ss@127.0.0.1/db").unwrap();
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("pa@ss"));
        assert_eq!(t.host, "127.0.0.1");
    }

    #[test]
    fn ipv6_host() {
        let t = url("postgresql://app@[::1]:6000/db").unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(t.endpoint(), "[::1]:6000");
        assert!(t.is_local());
    }

    #[test]
    fn unix_socket_hosts() {
        let t = url("postgresql://u@%2Fvar%2Frun%2Fpostgresql/db").unwrap();
        assert_eq!(t.host, "/var/run/postgresql");
        assert!(t.is_unix_socket() && t.is_local());
        assert_eq!(t.endpoint(), "/var/run/postgresql/.s.PGSQL.5432");
        let t = url("postgresql:///db?host=/var/run/postgresql&user=u&port=5433").unwrap();
        assert_eq!((t.host.as_str(), t.user.as_str(), t.port), ("/var/run/postgresql", "u", 5433));
    }

    #[test]
    fn sslmode_from_url_wins_over_pgsslmode() {
        let t =
            target(&[("DATABASE_URL", "postgresql://u@h/db?sslmode=disable"), ("PGSSLMODE", "verify-full")]).unwrap();
        assert_eq!(t.sslmode, SslMode::Disable);
        let t =
            target(&[("DATABASE_URL", "postgresql://u@h/db"), ("PGSSLMODE", "require"), ("PGSSLROOTCERT", "/ca.pem")])
                .unwrap();
        assert_eq!(t.sslmode, SslMode::Require);
        assert_eq!(t.sslrootcert, Some(PathBuf::from("/ca.pem")));
    }

    #[test]
    fn sslmode_round_trips_through_display() {
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            assert_eq!(mode.to_string().parse::<SslMode>(), Ok(mode));
        }
    }

    #[test]
    fn unknown_sslmode_is_named() {
        let f = url("postgresql://u@h/db?sslmode=verify_full").unwrap_err();
        assert_eq!(f.message, "unknown sslmode \"verify_full\" in DATABASE_URL");
        assert!(f.hint.unwrap().contains("verify-full"));
        let f = target(&[("DATABASE_URL", "postgresql://u@h/db"), ("PGSSLMODE", "on")]).unwrap_err();
        assert_eq!(f.message, "unknown sslmode \"on\" in PGSSLMODE");
        assert!("allow".parse::<SslMode>().is_err());
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
            (&[("DATABASE_URL", "mysql://u:p@h/db")], "DATABASE_URL is not a PostgreSQL URL (it starts with mysql://)"),
            (
                &[("DATABASE_URL", "postgresql://u:p@h:99999/db")],
                "DATABASE_URL is not a valid URL: invalid port number",
            ),
            (&[("DATABASE_URL", "postgresql://h1,h2/db")], "DATABASE_URL names several hosts"),
            (&[("DATABASE_URL", "postgresql://h/db")], "DATABASE_URL has no user name"),
            (&[("DATABASE_URL", "postgresql://u:p@h/db#x")], "DATABASE_URL contains '#', which cuts the URL short"),
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
            format!("postgresql://u:{sentinel}@h/db?sslmode=nope"),
            format!("pg://u:{sentinel}@h/db"),
        ] {
            let f = url(&bad).unwrap_err();
            assert!(!format!("{f:?}").contains(sentinel), "{f:?}");
        }
    }
}
