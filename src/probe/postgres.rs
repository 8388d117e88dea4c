//! PostgreSQL probe: the one shared connection per run.
//!
//! `PgTarget::from_env` reads where to connect the way the MockMate API and libpq
//! would; `connect` opens and authenticates under a single deadline, queues the
//! read-only session setup ahead of every later query, and turns every way that can
//! fail into a `Failure` naming the layer (TCP, TLS, startup/auth, setup) and the
//! SQLSTATE.
//!
//! We connect the socket ourselves and hand it to tokio-postgres's `connect_raw`, so
//! we know which phase a timeout hit, and we do TLS policy ourselves (tokio-postgres
//! knows neither `verify-ca`/`verify-full` nor `sslrootcert`).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, TryStreamExt};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::Client;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{EnvLookup, Failure};

/// What the server sees as our `application_name` (visible in `pg_stat_activity`).
pub const APPLICATION_NAME: &str = "mockmate-diag";

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

/// Where and as whom to connect. The password stays private: it is only ever sent
/// to the server, never printed (`Debug` leaves it out).
#[derive(Clone)]
pub struct PgTarget {
    /// Host name, IP address, or a Unix socket directory (starts with `/`).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    password: Option<String>,
    pub sslmode: SslMode,
    pub sslrootcert: Option<PathBuf>,
    /// Which configuration it came from: `"DATABASE_URL"` or `"DB_*"`.
    pub source: &'static str,
}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("source", &self.source)
            .finish()
    }
}

impl PgTarget {
    /// `DATABASE_URL` (`postgres://` or `postgresql://`), else `DB_HOST`, `DB_PORT`
    /// (default 5432), `DB_USER`, `DB_PASSWORD`, `DB_NAME`. `sslmode` comes from the
    /// URL's query or `PGSSLMODE` (default `prefer`, like libpq); `sslrootcert` from
    /// the URL's query or `PGSSLROOTCERT`. Empty variables count as unset.
    pub fn from_env(get: EnvLookup) -> Result<PgTarget, Failure> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        match var("DATABASE_URL") {
            Some(url) => PgTarget::from_url(url.trim(), get),
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
        };
        let dbname = match decode(parsed.path().trim_start_matches('/'), "the database name")? {
            d if !d.is_empty() => d,
            // libpq's default: the database named after the user.
            _ => q_dbname.unwrap_or_else(|| user.clone()),
        };
        let (sslmode, sslrootcert) = tls_settings(q_sslmode, q_rootcert, get)?;
        Ok(PgTarget { host, port, user, dbname, password, sslmode, sslrootcert, source: "DATABASE_URL" })
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
        let host = require("DB_HOST")?;
        let port = match var("DB_PORT") {
            Some(p) => parse_port(p.trim(), "DB_PORT")?,
            None => DEFAULT_PORT,
        };
        let user = require("DB_USER")?;
        let dbname = require("DB_NAME")?;
        // A password may legitimately be empty-looking; only unset means none.
        let password = get("DB_PASSWORD").filter(|p| !p.is_empty());
        let (sslmode, sslrootcert) = tls_settings(None, None, get)?;
        Ok(PgTarget { host, port, user, dbname, password, sslmode, sslrootcert, source: "DB_*" })
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
        } else if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn socket_path(&self) -> PathBuf {
        Path::new(&self.host).join(format!(".s.PGSQL.{}", self.port))
    }

    /// The variable an operator edits to fix `what` ("password", "host" …).
    fn var_for(&self, what: &str) -> String {
        if self.source == "DATABASE_URL" {
            format!("the {what} in DATABASE_URL")
        } else {
            let var = match what {
                "password" => "DB_PASSWORD",
                "user" => "DB_USER",
                "database name" => "DB_NAME",
                _ => "DB_HOST/DB_PORT",
            };
            var.to_string()
        }
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
    Failure { message: format!("{} in {origin}", f.message), hint: f.hint }
}

fn parse_port(value: &str, what: &str) -> Result<u16, Failure> {
    match value.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(Failure::new(format!("{what} is not a port number: \"{value}\""))
            .with_hint("use a number from 1 to 65535 (PostgreSQL's default is 5432)")),
    }
}

/// Percent-decodes one URL component. Never echoes the input (it may be a password).
fn decode(s: &str, what: &str) -> Result<String, Failure> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| Failure::new(format!("DATABASE_URL: {what} is not valid UTF-8 once percent-decoded")))
}

/// The shared session. Callers hold it in an `Arc` and issue queries on `client`
/// concurrently; tokio-postgres pipelines them over the one connection.
///
/// Every query sent on `client` runs after the session setup (see [`connect`]):
/// inside read-only transactions and the server-side timeouts, or, if the setup
/// failed, not at all (SQLSTATE 25P02). [`PgSession::setup`] says which.
pub struct PgSession {
    pub client: Client,
    pub info: PgInfo,
    setup: Shared<BoxFuture<'static, Result<(), Failure>>>,
}

impl PgSession {
    /// The session setup's result. Its reply comes before the reply to any query
    /// sent on this session, so awaiting this after a query costs nothing; before
    /// one, it costs the round trip [`connect`] saved.
    pub async fn setup(&self) -> Result<(), Failure> {
        self.setup.clone().await
    }
}

impl fmt::Debug for PgSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSession").field("info", &self.info).finish_non_exhaustive()
    }
}

/// What the connection found out, for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct PgInfo {
    /// The server's `server_version` as it reported it at startup (ParameterStatus),
    /// e.g. `15.20 (Debian 15.20-0+deb12u1)`.
    pub server_version: String,
    /// The negotiated TLS version (`TLSv1.3`), `None` when unencrypted.
    pub tls: Option<String>,
    /// Wall time of TCP + TLS + startup + authentication, in milliseconds.
    pub latency_ms: f64,
    pub sslmode: SslMode,
    pub source: &'static str,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    pub local: bool,
}

// Connection phases, for saying what a timeout interrupted.
const PHASE_TCP: u8 = 0;
const PHASE_STARTUP: u8 = 1;
const PHASE_TLS: u8 = 2;

// What the TLS layer saw: no handshake, a handshake of unknown version, or the version.
const TLS_NONE: u8 = 0;
const TLS_ON: u8 = 1;
const TLS_12: u8 = 12;
const TLS_13: u8 = 13;

/// Connects and authenticates under `deadline`, and sends the session setup
/// (read-only transactions, `statement_timeout`, `lock_timeout`) without waiting
/// for its reply: see [`send_setup`].
pub async fn connect(target: &PgTarget, deadline: Duration) -> Result<PgSession, Failure> {
    let phase = Arc::new(AtomicU8::new(PHASE_TCP));
    let tls_state = Arc::new(AtomicU8::new(TLS_NONE));
    let tls = tls_config(target, tls_state.clone())?;
    let attempt = establish(target, deadline, tls, phase.clone(), tls_state);
    match tokio::time::timeout(deadline, attempt).await {
        Ok(result) => result,
        Err(_) => Err(timeout_failure(target, deadline, phase.load(Ordering::SeqCst))),
    }
}

async fn establish(
    target: &PgTarget,
    deadline: Duration,
    tls: rustls::ClientConfig,
    phase: Arc<AtomicU8>,
    tls_state: Arc<AtomicU8>,
) -> Result<PgSession, Failure> {
    let started = Instant::now();
    let mut config = tokio_postgres::Config::new();
    config.user(&target.user).dbname(&target.dbname).application_name(APPLICATION_NAME).ssl_mode(
        match target.sslmode {
            // libpq never uses TLS over Unix sockets.
            _ if target.is_unix_socket() => tokio_postgres::config::SslMode::Disable,
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        },
    );
    if let Some(password) = &target.password {
        config.password(password.as_bytes());
    }
    let mut make = MakeRustlsConnect::new(tls);

    let (client, server_version) = if target.is_unix_socket() {
        let stream =
            tokio::net::UnixStream::connect(target.socket_path()).await.map_err(|e| socket_failure(target, &e))?;
        startup(target, &config, stream, &mut make, &phase, &tls_state).await?
    } else {
        let stream = tcp_connect(target).await?;
        startup(target, &config, stream, &mut make, &phase, &tls_state).await?
    };
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let setup = send_setup(&client, deadline).await?;
    let tls = match tls_state.load(Ordering::SeqCst) {
        TLS_NONE => None,
        TLS_12 => Some("TLSv1.2".to_string()),
        TLS_13 => Some("TLSv1.3".to_string()),
        _ => Some("on".to_string()),
    };
    Ok(PgSession {
        client,
        setup,
        info: PgInfo {
            server_version,
            tls,
            latency_ms,
            sslmode: target.sslmode,
            source: target.source,
            host: target.host.clone(),
            port: target.port,
            user: target.user.clone(),
            dbname: target.dbname.clone(),
            local: target.is_local(),
        },
    })
}

/// TLS negotiation, startup and authentication over a connected socket; spawns the
/// connection task. Returns the client and the `server_version` the server reported
/// at startup (every PostgreSQL since 7.4 does; "unknown" if it did not).
async fn startup<S>(
    target: &PgTarget,
    config: &tokio_postgres::Config,
    stream: S,
    make: &mut MakeRustlsConnect,
    phase: &Arc<AtomicU8>,
    tls_state: &Arc<AtomicU8>,
) -> Result<(Client, String), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    phase.store(PHASE_STARTUP, Ordering::SeqCst);
    let tls = tracked::<S>(make, &target.host, phase, tls_state);
    let (client, connection) = config.connect_raw(stream, tls).await.map_err(|e| connect_failure(target, &e))?;
    let server_version = connection.parameter("server_version").unwrap_or("unknown").to_string();
    // Ends (with the error, if any, already seen by the client's callers) when the
    // server hangs up or the last user drops the client.
    tokio::spawn(connection);
    Ok((client, server_version))
}

/// The session setup, one simple-query message. The `BEGIN … COMMIT` makes it fail
/// closed: if any statement fails, PostgreSQL skips the rest of the message, COMMIT
/// included, and leaves the session in an aborted transaction block, where every
/// later statement fails with 25P02 until a ROLLBACK — so nothing we send after it,
/// a user's SQL included, runs without the read-only default and the timeouts.
/// (Without the block, a failed `SET lock_timeout` would roll the earlier `SET …
/// READ ONLY` back with it and leave a writable session behind.) On success the
/// SETs are committed and last for the session; RESET returns them to the server's
/// defaults, which is what `postgres.writable` and the dry run rely on.
pub fn setup_sql(statement_timeout: Duration) -> String {
    format!(
        "BEGIN; SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; \
         SET statement_timeout = {}; SET lock_timeout = '500ms'; COMMIT",
        statement_timeout.as_millis()
    )
}

/// Queues the session setup on `client` and returns its result as a shared future,
/// without waiting for the server's reply.
///
/// Waiting cost a round trip before any check could query. It is not needed for the
/// guarantees: tokio-postgres writes requests in the order they are sent (the
/// setup's is in the connection's queue when this returns) and PostgreSQL runs one
/// session's messages in order, so every later query runs after the setup — within
/// its limits, or not at all (see [`setup_sql`]).
///
/// Startup `options` (`-c default_transaction_read_only=on …`) would also be free,
/// but PgBouncer and some managed poolers refuse them (a fallback costs a whole
/// reconnect), and they become the session's RESET value: `postgres.writable` reads
/// `pg_settings.reset_val` to tell the database's default from ours, and the dry
/// run RESETs to get the API's default.
///
/// The reply is read by a task of its own: the connection delivers replies in order
/// and would stall every later one if nobody took it. It is bounded by `deadline`.
async fn send_setup(
    client: &Client,
    deadline: Duration,
) -> Result<Shared<BoxFuture<'static, Result<(), Failure>>>, Failure> {
    // Leave the caller's deadline room to report a slow query as a timeout of its own.
    let statement_timeout = deadline.saturating_sub(Duration::from_millis(250)).max(Duration::from_millis(100));
    // Enqueues the message and returns; no network wait.
    let replies = client.simple_query_raw(&setup_sql(statement_timeout)).await.map_err(|e| setup_failure(&e))?;
    let task = tokio::spawn(async move {
        match tokio::time::timeout(deadline, replies.try_collect::<Vec<_>>()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(setup_failure(&e)),
            Err(_) => Err(Failure::new(format!(
                "timed out after {} waiting for the server's reply to the session setup",
                humantime::format_duration(deadline)
            ))
            .with_hint("the server logged us in but does not answer queries: is it overloaded?")),
        }
    });
    let result = async move {
        match task.await {
            Ok(result) => result,
            Err(e) => Err(Failure::new(format!("internal error during the session setup: {e}"))),
        }
    };
    Ok(result.boxed().shared())
}

fn setup_failure(e: &tokio_postgres::Error) -> Failure {
    Failure::new(format!("session setup failed: {}", describe(e))).with_hint(
        "the server accepted the login but refused a plain SET (is this PostgreSQL, or a pooler's \
         admin console?); every query on the session is refused (25P02) rather than run outside read-only",
    )
}

async fn tcp_connect(target: &PgTarget) -> Result<tokio::net::TcpStream, Failure> {
    let addrs: Vec<_> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| {
            Failure::new(format!("cannot resolve host \"{}\": {e}", target.host))
                .with_hint(format!("check {}", target.var_for("host")))
        })?
        .collect();
    let mut last = None;
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => {
                // Small request/reply messages: don't let Nagle hold them back.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no addresses"));
    Err(socket_failure(target, &e))
}

fn socket_failure(target: &PgTarget, e: &io::Error) -> Failure {
    let at = target.endpoint();
    let check = target.var_for("host");
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Failure::new(format!("connection refused at {at}"))
            .with_hint(format!("is PostgreSQL running and listening on {at}? check {check}")),
        io::ErrorKind::NotFound if target.is_unix_socket() => Failure::new(format!("no PostgreSQL socket at {at}"))
            .with_hint(format!("is PostgreSQL running with this socket directory and port? check {check}")),
        io::ErrorKind::PermissionDenied => Failure::new(format!("permission denied at {at}"))
            .with_hint("the socket's directory or file does not let this user in"),
        _ => Failure::new(format!("cannot connect to {at}: {e}"))
            .with_hint(format!("check {check} and that the network path to the server is open")),
    }
}

fn timeout_failure(target: &PgTarget, deadline: Duration, phase: u8) -> Failure {
    let after = humantime::format_duration(deadline);
    let at = target.endpoint();
    match phase {
        PHASE_TCP => Failure::new(format!("timed out after {after} connecting to {at}")).with_hint(format!(
            "nothing answered: a firewall may be dropping packets; check {} and network access",
            target.var_for("host")
        )),
        PHASE_TLS => Failure::new(format!("timed out after {after} during the TLS handshake with {at}"))
            .with_hint("the server accepted TLS but stalled; check its load and TLS configuration"),
        _ => Failure::new(format!("timed out after {after} waiting for the server's reply to startup")).with_hint(
            format!(
                "something at {at} accepts connections but does not answer like PostgreSQL \
             (overloaded server, proxy, or the wrong port)"
            ),
        ),
    }
}

/// Turns a failed startup (TLS, authentication, database selection) into a Failure.
fn connect_failure(target: &PgTarget, e: &tokio_postgres::Error) -> Failure {
    if let Some(db) = e.as_db_error() {
        return db_failure(target, db);
    }
    if let Some(tls) = chain(e).find_map(|c| c.downcast_ref::<rustls::Error>()) {
        return tls_failure(target, tls);
    }
    let text = describe(e);
    if text.contains("server does not support TLS") {
        return Failure::new(format!("server does not support TLS but sslmode={}", target.sslmode)).with_hint(
            "enable ssl on the server, or (on a trusted network only) use sslmode=prefer \
             in DATABASE_URL or PGSSLMODE",
        );
    }
    if text.contains("password missing") {
        return Failure::new("the server asks for a password but none is configured")
            .with_hint(format!("set {}", target.var_for("password")));
    }
    if e.is_closed() || chain(e).any(is_disconnect) {
        return Failure::new(format!("the server at {} closed the connection during startup", target.endpoint()))
            .with_hint("is this port really PostgreSQL? the server's log may say why it hung up");
    }
    // tokio-postgres's words for bytes that are not PostgreSQL messages.
    if text.starts_with("unexpected message")
        || text.starts_with("error parsing response")
        || text.contains("bytes remaining on stream")
    {
        return Failure::new(format!(
            "the server at {} does not speak the PostgreSQL protocol ({text})",
            target.endpoint()
        ))
        .with_hint(format!("check {}: is this the right port?", target.var_for("host")));
    }
    Failure::new(format!("startup failed: {text}"))
}

fn is_disconnect(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<io::Error>().is_some_and(|io| {
        matches!(
            io.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
        )
    })
}

fn db_failure(target: &PgTarget, db: &tokio_postgres::error::DbError) -> Failure {
    let code = db.code().code();
    let message = db.message();
    let base = format!("{message} ({code})");
    match code {
        "28000" if message.contains("no encryption") => Failure::new(format!("server requires TLS: {base}"))
            .with_hint("set sslmode=require in DATABASE_URL or PGSSLMODE"),
        "28000" if message.contains("role") && message.contains("does not exist") => {
            Failure::new(base).with_hint(format!("create the role or fix {}", target.var_for("user")))
        }
        "28000" => Failure::new(base).with_hint(
            "the server's pg_hba.conf lets no rule match this host, user and database: \
             add one, or connect as an allowed user",
        ),
        "28P01" => Failure::new(base).with_hint(format!("check {}", target.var_for("password"))),
        "3D000" => Failure::new(base)
            .with_hint(format!("create the database or fix the database name ({})", target.var_for("database name"))),
        "42501" => Failure::new(base)
            .with_hint(format!("GRANT CONNECT ON DATABASE \"{}\" TO \"{}\"", target.dbname, target.user)),
        "53300" => Failure::new(base).with_hint(
            "the server is out of connection slots: find who holds them \
             (pg_stat_activity), or raise max_connections",
        ),
        "57P03" => {
            Failure::new(base).with_hint("the server is starting up, shutting down or in recovery: retry shortly")
        }
        _ => Failure::new(base),
    }
}

fn tls_failure(target: &PgTarget, e: &rustls::Error) -> Failure {
    let untrusted = |why: String| Failure::new(format!("TLS: certificate not trusted ({why})"));
    match e {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => {
                let hint = match &target.sslrootcert {
                    Some(root) => format!(
                        "the server's certificate does not chain to {}: point sslrootcert at \
                         the CA that signed it",
                        root.display()
                    ),
                    None => "the server's certificate is not from a public CA: set sslrootcert \
                             (in DATABASE_URL or PGSSLROOTCERT) to its CA certificate"
                        .to_string(),
                };
                untrusted("unknown issuer".to_string()).with_hint(hint)
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                let presented = match cert {
                    CertificateError::NotValidForNameContext { presented, .. } => {
                        format!("; it names {}", presented.join(", "))
                    }
                    _ => String::new(),
                };
                untrusted(format!("name mismatch: not valid for \"{}\"{presented}", target.host))
                    .with_hint("connect with a host name the certificate lists, or use sslmode=verify-ca")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                untrusted("expired".to_string()).with_hint("renew the server's certificate")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                untrusted("not valid yet".to_string())
                    .with_hint("check the clocks of this machine and of the certificate's issuer")
            }
            other => untrusted(format!("{other:?}")).with_hint("check the server's certificate and sslrootcert"),
        },
        rustls::Error::AlertReceived(alert) => {
            Failure::new(format!("TLS handshake failed: the server sent alert {alert:?}"))
                .with_hint("the server rejected our handshake; check its TLS settings (ssl_min_protocol_version)")
        }
        other => {
            Failure::new(format!("TLS handshake failed: {other}")).with_hint("check the server's TLS configuration")
        }
    }
}

/// Describes a tokio-postgres error with its layer and SQLSTATE, e.g.
/// `password authentication failed for user "app" (28P01)` or
/// `error connecting to server: Connection refused (os error 111)`.
/// (tokio-postgres's own Display is just "db error".)
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut text = String::new();
    for cause in chain(e) {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// The error and its causes, looking inside `io::Error`s (whose `source()` skips
/// the error they wrap, e.g. a rustls error).
fn chain<'a>(e: &'a (dyn std::error::Error + 'static)) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| match e.downcast_ref::<io::Error>() {
        Some(io) => match io.get_ref() {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        },
        None => e.source(),
    })
}

// ---- TLS -----------------------------------------------------------------

/// The rustls configuration libpq's sslmode asks for. Roots are loaded only when a
/// verifying mode needs them.
fn tls_config(target: &PgTarget, state: Arc<AtomicU8>) -> Result<rustls::ClientConfig, Failure> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // libpq: `require` with a root certificate behaves like `verify-ca`.
    let (verify_chain, verify_name) = match target.sslmode {
        SslMode::Disable | SslMode::Prefer => (false, false),
        SslMode::Require => (target.sslrootcert.is_some(), false),
        SslMode::VerifyCa => (true, false),
        SslMode::VerifyFull => (true, true),
    };
    let chain = if verify_chain && !target.is_unix_socket() {
        let roots = load_roots(target.sslrootcert.as_deref())?;
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| Failure::new(format!("TLS: cannot use the root certificates: {e}")))?;
        Some(verifier)
    } else {
        None
    };
    let verifier = Verifier { chain, verify_name, provider: provider.clone(), state };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::new(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}

fn load_roots(file: Option<&Path>) -> Result<RootCertStore, Failure> {
    let Some(file) = file.filter(|f| *f != Path::new("system")) else {
        // No file (or libpq's `sslrootcert=system`): the public web PKI.
        return Ok(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() });
    };
    let hint = "set sslrootcert (DATABASE_URL or PGSSLROOTCERT) to the CA certificate (PEM) \
                that signed the server's certificate";
    let pem = std::fs::read(file)
        .map_err(|e| Failure::new(format!("cannot read sslrootcert {}: {e}", file.display())).with_hint(hint))?;
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut pem.as_slice()).filter_map(Result::ok).collect();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(
            Failure::new(format!("sslrootcert {} holds no usable PEM certificate", file.display())).with_hint(hint)
        );
    }
    Ok(roots)
}

/// Checks the server's certificate as the sslmode asks (or not at all), always checks
/// the handshake signatures, and notes the TLS version it saw them for.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    verify_name: bool,
    provider: Arc<CryptoProvider>,
    state: Arc<AtomicU8>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            // webpki checks the name last, so the chain is good (verify-ca).
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.verify_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.state.store(TLS_12, Ordering::SeqCst);
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.state.store(TLS_13, Ordering::SeqCst);
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// tokio-postgres-rustls's connector, wrapped to record when the TLS handshake runs.
struct Tracked<T> {
    inner: T,
    phase: Arc<AtomicU8>,
    state: Arc<AtomicU8>,
}

fn tracked<S>(
    make: &mut MakeRustlsConnect,
    host: &str,
    phase: &Arc<AtomicU8>,
    state: &Arc<AtomicU8>,
) -> Tracked<<MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let inner = match MakeTlsConnect::<S>::make_tls_connect(make, host) {
        Ok(inner) => inner,
        Err(never) => match never {},
    };
    Tracked { inner, phase: phase.clone(), state: state.clone() }
}

impl<S, T: TlsConnect<S>> TlsConnect<S> for Tracked<T> {
    type Stream = T::Stream;
    type Error = T::Error;
    type Future = Handshake<T::Future>;

    fn connect(self, stream: S) -> Self::Future {
        self.phase.store(PHASE_TLS, Ordering::SeqCst);
        Handshake { inner: Box::pin(self.inner.connect(stream)), phase: self.phase, state: self.state }
    }
}

struct Handshake<F> {
    inner: Pin<Box<F>>,
    phase: Arc<AtomicU8>,
    state: Arc<AtomicU8>,
}

impl<F, S, E> Future for Handshake<F>
where
    F: Future<Output = Result<S, E>>,
{
    type Output = Result<S, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let result = std::task::ready!(this.inner.as_mut().poll(cx));
        if result.is_ok() {
            // The verifier recorded the version; `on` if it somehow did not.
            let _ = this.state.compare_exchange(TLS_NONE, TLS_ON, Ordering::SeqCst, Ordering::SeqCst);
        }
        this.phase.store(PHASE_STARTUP, Ordering::SeqCst);
        Poll::Ready(result)
    }
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
        assert_eq!(t.password.as_deref(), Some("p@ss"));
        assert_eq!(t.dbname, "my db");
        assert_eq!(t.sslmode, SslMode::VerifyFull);
        assert_eq!(t.sslrootcert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(t.source, "DATABASE_URL");
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
        assert_eq!(t.password.as_deref(), Some("pa@ss"));
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
        assert_eq!(t.password.as_deref(), Some("secret"));
        assert_eq!(t.source, "DB_*");
        let t = target(&[("DB_HOST", "db"), ("DB_PORT", "6543"), ("DB_USER", "a"), ("DB_NAME", "d")]).unwrap();
        assert_eq!(t.port, 6543);
        assert!(!t.has_password());
    }

    #[test]
    fn empty_database_url_falls_back_to_db_vars() {
        let t = target(&[("DATABASE_URL", ""), ("DB_HOST", "h"), ("DB_USER", "u"), ("DB_NAME", "d")]).unwrap();
        assert_eq!(t.source, "DB_*");
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

    #[test]
    fn describe_chain_skips_nothing_and_repeats_nothing() {
        let io = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        let causes: Vec<String> = chain(&io).map(|c| c.to_string()).collect();
        assert_eq!(causes.len(), 2);
        assert!(chain(&io).any(|c| c.downcast_ref::<rustls::Error>().is_some()));
    }

    #[test]
    fn timeouts_name_the_phase() {
        let t = url("postgresql://u@10.0.0.5/db").unwrap();
        let f = timeout_failure(&t, Duration::from_secs(5), PHASE_STARTUP);
        assert_eq!(f.message, "timed out after 5s waiting for the server's reply to startup");
        let f = timeout_failure(&t, Duration::from_millis(500), PHASE_TCP);
        assert_eq!(f.message, "timed out after 500ms connecting to 10.0.0.5:5432");
    }
}
