//! Redis probe: the one connection to Redis per run, plus what the server says
//! about itself (INFO) and how fast it answers (PING).
//!
//! MockMate caches interview sessions in Redis, so the checks built on this
//! probe report a non-fatal failure; the probe itself only says what broke.
//!
//! We open TCP (and TLS) ourselves and hand the finished stream to the redis
//! crate instead of letting `redis::Client` connect, for three reasons:
//! - every step has its own name, so a timeout says *where* it stopped
//!   (TCP connect, TLS handshake, AUTH, PING);
//! - the TLS config is built with an explicit ring provider, so nothing
//!   depends on a process-wide rustls provider being installed;
//! - AUTH is sent by us, so a rejection carries the server's own words
//!   (`WRONGPASS …`) rather than the crate's generic "authentication failed".
//!
//! The TLS connector is `tokio-postgres-rustls`, already a dependency for the
//! PostgreSQL probe; it is a plain tokio-rustls wrapper over any async stream.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo, RedisError, Value};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{EnvLookup, Failure};

/// How many PINGs measure latency. They travel in one pipelined round.
const PINGS: usize = 5;

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

/// Where Redis is and how to log in, read from `REDIS_URL`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    pub host: String,
    pub port: u16,
    /// ACL user (`redis://user:pass@…`); `None` logs in as `default`.
    pub username: Option<String>,
    /// Private so it cannot be printed by accident; see `Debug`.
    password: Option<String>,
    pub db: i64,
    pub tls: RedisTls,
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .field("tls", &self.tls)
            .finish()
    }
}

impl RedisTarget {
    /// From REDIS_URL: redis:// or rediss://, optional user:password@ (ACL) or :password@, optional /db,
    /// `rediss://…#insecure` skips certificate checks; REDIS_CA_CERT (PEM path) adds a private CA.
    pub fn from_env(get: EnvLookup) -> Result<RedisTarget, Failure> {
        let raw = get("REDIS_URL").map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).ok_or_else(|| {
            Failure::new("REDIS_URL is not set").with_hint(
                "set REDIS_URL, e.g. REDIS_URL=redis://localhost:6379 (MockMate caches interview sessions there)",
            )
        })?;
        // url's errors never echo the input, so the password cannot leak here.
        let url = url::Url::parse(&raw).map_err(|e| {
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

        let username = Some(percent_decode(url.username(), "user name")?).filter(|u| !u.is_empty());
        let password = match url.password() {
            Some(p) => Some(percent_decode(p, "password")?).filter(|p| !p.is_empty()),
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
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Whether REDIS_URL carries a password.
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// The decoded password, only for registering it with the redactor.
    pub fn password_for_redaction(&self) -> Option<&str> {
        self.password.as_deref()
    }

    fn scheme(&self) -> &'static str {
        match self.tls {
            RedisTls::Off => "redis",
            RedisTls::Verify { .. } | RedisTls::Insecure => "rediss",
        }
    }

    /// Removes the password from text that came from outside (errors, replies).
    fn scrub(&self, text: String) -> String {
        match &self.password {
            Some(p) if text.contains(p.as_str()) => text.replace(p.as_str(), "<redacted>"),
            _ => text,
        }
    }
}

/// Decodes `%XX` escapes; `what` names the part in the error, never its value.
fn percent_decode(text: &str, what: &str) -> Result<String, Failure> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
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
    String::from_utf8(out).map_err(|_| {
        Failure::new(format!("REDIS_URL {what} is not valid UTF-8 after percent-decoding"))
            .with_hint("percent-encode each byte of a UTF-8 string (e.g. %C3%A9 for é)")
    })
}

/// A live connection and what the server said about itself.
pub struct RedisSession {
    pub conn: MultiplexedConnection,
    pub info: RedisInfo,
    /// Parsed `INFO all`: field → value, sections flattened. Fetched in the same
    /// pipelined round as the PINGs, so it is as fresh as the run: checks judge
    /// from it instead of sending more commands.
    pub info_fields: HashMap<String, String>,
    /// Where we connected, for messages and for scrubbing the password.
    target: RedisTarget,
    deadline: Duration,
}

/// One command's answer in a [`RedisSession::round`]: the value, or the server's
/// error in its own words (`READONLY You can't write against a read only replica.`).
pub type Reply = Result<Value, String>;

impl RedisSession {
    /// `host:port` of the server.
    pub fn addr(&self) -> String {
        self.target.addr()
    }

    /// One field of the connect-time `INFO all`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.info_fields.get(name).map(String::as_str)
    }

    /// A fresh `INFO <section>` (read-only), parsed.
    pub async fn info_section(&self, section: &str) -> Result<HashMap<String, String>, Failure> {
        let mut cmd = redis::cmd("INFO");
        cmd.arg(section);
        let reply = send(self.conn.clone(), cmd)
            .await
            .map_err(|e| self.scrubbed(command_failure(&self.target, &e, "INFO", self.deadline)))?;
        Ok(parse_info(&info_text(&self.target, reply)?))
    }

    /// Sends `pipe` as one write and waits for every reply. A server error is that
    /// command's `Err`; a broken or silent connection is the round's `Failure`.
    /// Every command is on the wire before any reply is awaited, so a later one
    /// (a clean-up `DEL`) runs whatever an earlier one answers.
    pub async fn round(&self, pipe: &redis::Pipeline, what: &'static str) -> Result<Vec<Reply>, Failure> {
        let count = pipe.cmd_iter().count();
        let mut conn = self.conn.clone();
        let values = conn.send_packed_commands(pipe, 0, count).await.map_err(|e| {
            self.scrubbed(if is_transport(&e) {
                transport_failure(&self.target, &e, what, self.deadline)
            } else {
                Failure::new(format!("{what} failed: {}", server_words(&e)))
            })
        })?;
        Ok(values
            .into_iter()
            .map(|v| match v {
                Value::ServerError(e) => Err(self.target.scrub(server_words(&RedisError::from(e)))),
                v => Ok(v),
            })
            .collect())
    }

    fn scrubbed(&self, f: Failure) -> Failure {
        Failure { message: self.target.scrub(f.message), hint: f.hint.map(|h| self.target.scrub(h)) }
    }
}

impl fmt::Debug for RedisSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSession")
            .field("info", &self.info)
            .field("info_fields", &self.info_fields.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedisInfo {
    pub version: String,
    /// `master` or `slave`, as INFO spells it.
    pub role: String,
    pub tls: bool,
    /// `standalone`, `cluster` or `sentinel`.
    pub mode: String,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
}

/// The step in progress, so that a timeout can say where it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Resolve,
    TcpConnect,
    TlsHandshake,
    /// Waiting for the reply to this command.
    Reply(&'static str),
}

/// Connect, AUTH, PING (a connection without AUTH "succeeds" and only the first command says NOAUTH), INFO, all under `deadline`.
pub async fn connect(target: &RedisTarget, deadline: Duration) -> Result<RedisSession, Failure> {
    let mut phase = Phase::Resolve;
    let outcome = tokio::time::timeout(deadline, connect_steps(target, deadline, &mut phase)).await;
    match outcome {
        Ok(result) => {
            result.map_err(|f| Failure { message: target.scrub(f.message), hint: f.hint.map(|h| target.scrub(h)) })
        }
        Err(_) => Err(timeout_failure(target, deadline, phase)),
    }
}

async fn connect_steps(target: &RedisTarget, deadline: Duration, phase: &mut Phase) -> Result<RedisSession, Failure> {
    let addr = target.addr();
    // Built before any network traffic: a bad REDIS_CA_CERT is a config error.
    let tls_config = match &target.tls {
        RedisTls::Off => None,
        RedisTls::Verify { ca } => Some(verifying_config(ca.as_deref())?),
        RedisTls::Insecure => Some(insecure_config()?),
    };

    *phase = Phase::Resolve;
    let addrs: Vec<_> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| {
            Failure::new(format!("cannot resolve Redis host '{}': {e}", target.host))
                .with_hint("check the host name in REDIS_URL and this machine's DNS")
        })?
        .collect();

    *phase = Phase::TcpConnect;
    let tcp = tcp_connect(&addrs, &addr).await?;

    // The crate's defaults (1 s connect, 0.5 s response) would cut a slow but
    // healthy server short. Its connection timeout only governs dialling, which
    // we do ourselves under the outer timeout; set it anyway so the config never
    // carries the default.
    let config =
        AsyncConnectionConfig::new().set_connection_timeout(Some(deadline)).set_response_timeout(Some(deadline));
    let conn = match tls_config {
        None => redis_over(tcp, config, &addr).await?,
        Some(tls_config) => {
            *phase = Phase::TlsHandshake;
            let mut maker = MakeRustlsConnect::new(tls_config);
            let connector = match MakeTlsConnect::<TcpStream>::make_tls_connect(&mut maker, &target.host) {
                Ok(c) => c,
                Err(never) => match never {},
            };
            let stream = connector.connect(tcp).await.map_err(|e| tls_failure(target, &e))?;
            redis_over(stream, config, &addr).await?
        }
    };

    if target.password.is_some() || target.db != 0 {
        *phase = Phase::Reply(if target.password.is_some() { "AUTH" } else { "SELECT" });
        login(target, &conn, deadline).await?;
    }

    *phase = Phase::Reply("PING");
    let (latencies, info_text) = ping_and_info(target, &conn, deadline).await?;

    let info_fields = parse_info(&info_text);
    let field = |name: &str| info_fields.get(name).cloned();
    let info = RedisInfo {
        version: field("redis_version").unwrap_or_else(|| "unknown".to_owned()),
        role: field("role").unwrap_or_else(|| "unknown".to_owned()),
        tls: target.tls != RedisTls::Off,
        mode: field("redis_mode").or_else(|| field("server_mode")).unwrap_or_else(|| "standalone".to_owned()),
        latency_p50_ms: percentile(&latencies, 0.50),
        latency_p99_ms: percentile(&latencies, 0.99),
    };
    Ok(RedisSession { conn, info, info_fields, target: target.clone(), deadline })
}

/// Tries each resolved address in turn; the last error is reported.
async fn tcp_connect(addrs: &[std::net::SocketAddr], addr: &str) -> Result<TcpStream, Failure> {
    let mut last: Option<io::Error> = None;
    for a in addrs {
        match TcpStream::connect(a).await {
            Ok(s) => {
                // Latency is what we measure; Nagle would only blur it.
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        None => Failure::new(format!("no address found for {addr}")).with_hint("check the host name in REDIS_URL"),
        Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Failure::new(format!("connection refused at {addr}"))
                .with_hint(format!("start Redis on {addr}, or point REDIS_URL at the host and port where it listens"))
        }
        Some(e) => Failure::new(format!("cannot connect to {addr}: {e}"))
            .with_hint("check that this machine can reach the Redis host (firewall, security group, VPN)"),
    })
}

/// Wraps an established stream. With no password and database 0 in the
/// connection info the crate sends nothing here: login is ours (see module doc).
async fn redis_over<S>(stream: S, config: AsyncConnectionConfig, addr: &str) -> Result<MultiplexedConnection, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = RedisConnectionInfo::default().set_skip_set_lib_name();
    let (conn, driver) = MultiplexedConnection::new_with_config(&info, stream, config)
        .await
        .map_err(|e| Failure::new(format!("cannot start a Redis session with {addr}: {e}")))?;
    // The driver ends by itself once every clone of `conn` is dropped.
    tokio::spawn(driver);
    Ok(conn)
}

/// AUTH (when REDIS_URL has a password) and SELECT (when it names a database).
async fn login(target: &RedisTarget, conn: &MultiplexedConnection, deadline: Duration) -> Result<(), Failure> {
    let addr = target.addr();
    let auth = async {
        let Some(password) = &target.password else { return Ok(Value::Okay) };
        let mut cmd = redis::cmd("AUTH");
        if let Some(user) = &target.username {
            cmd.arg(user);
        }
        cmd.arg(password);
        send(conn.clone(), cmd).await
    };
    let select = async {
        if target.db == 0 {
            return Ok(Value::Okay);
        }
        let mut cmd = redis::cmd("SELECT");
        cmd.arg(target.db);
        send(conn.clone(), cmd).await
    };
    // Both go out in one round; AUTH is queued first, so SELECT runs logged in.
    let (auth, select) = futures::join!(auth, select);

    if let Err(e) = auth {
        let words = server_words(&e);
        let code = e.code().unwrap_or_default();
        let user_hint = if target.username.is_some() {
            "check the ACL user and password in REDIS_URL (ACL LIST on the server shows the users)"
        } else {
            "check the password in REDIS_URL; if the server uses ACL users, put the user too: redis://<user>:<password>@host"
        };
        return Err(match code {
            "WRONGPASS" => Failure::new(words).with_hint(user_hint),
            _ if is_transport(&e) => transport_failure(target, &e, "AUTH", deadline),
            _ if words.contains("without any password configured") => Failure::new(words).with_hint(format!(
                "the server at {addr} has no password: remove it from REDIS_URL, or set requirepass on the server"
            )),
            _ => Failure::new(format!("AUTH failed: {words}")).with_hint(user_hint),
        });
    }
    if let Err(e) = select {
        if is_transport(&e) {
            return Err(transport_failure(target, &e, "SELECT", deadline));
        }
        return Err(noauth_failure(target, &e).unwrap_or_else(|| {
            Failure::new(format!("SELECT {} failed: {}", target.db, server_words(&e))).with_hint(
                "use a database number the server has (the `databases` setting; managed and cluster Redis only have 0)",
            )
        }));
    }
    Ok(())
}

/// PINGs for latency and INFO, all in one pipelined round.
async fn ping_and_info(
    target: &RedisTarget,
    conn: &MultiplexedConnection,
    deadline: Duration,
) -> Result<(Vec<f64>, String), Failure> {
    let pings = (0..PINGS).map(|_| {
        let conn = conn.clone();
        async move {
            let started = Instant::now();
            send(conn, redis::cmd("PING")).await.map(|_| started.elapsed().as_secs_f64() * 1000.0)
        }
    });
    let mut info_cmd = redis::cmd("INFO");
    info_cmd.arg("all");
    let (pings, info) = futures::join!(futures::future::join_all(pings), send(conn.clone(), info_cmd));

    let mut latencies = Vec::with_capacity(PINGS);
    for ping in pings {
        match ping {
            Ok(ms) => latencies.push(ms),
            Err(e) => return Err(command_failure(target, &e, "PING", deadline)),
        }
    }
    let info = info.map_err(|e| command_failure(target, &e, "INFO", deadline))?;
    Ok((latencies, info_text(target, info)?))
}

fn info_text(target: &RedisTarget, reply: Value) -> Result<String, Failure> {
    match reply {
        Value::BulkString(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => Ok(text),
        other => Err(Failure::new(format!("INFO from {} returned an unexpected reply: {other:?}", target.addr()))),
    }
}

/// Sends one command; a server error reply becomes `Err` either way the crate hands it over.
async fn send(mut conn: MultiplexedConnection, cmd: redis::Cmd) -> Result<Value, RedisError> {
    match conn.send_packed_command(&cmd).await? {
        Value::ServerError(e) => Err(e.into()),
        v => Ok(v),
    }
}

/// `CODE: detail`, as the server said it.
fn server_words(e: &RedisError) -> String {
    match (e.code(), e.detail()) {
        // Plain ERR carries no information beyond its text.
        (Some("ERR"), Some(detail)) => detail.to_owned(),
        (Some(code), Some(detail)) => format!("{code}: {detail}"),
        (Some(code), None) => code.to_owned(),
        _ => e.to_string(),
    }
}

fn is_transport(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped()
}

// Placeholders in hints are `<password>`, not `PASSWORD`: the redaction layer
// masks anything shaped like a URL password, and `redis://:****@host` would read
// as if REDIS_URL already had one.
fn noauth_failure(target: &RedisTarget, e: &RedisError) -> Option<Failure> {
    (e.code() == Some("NOAUTH")).then(|| {
        Failure::new("NOAUTH: the server requires a password and REDIS_URL has none").with_hint(format!(
            "set the password in REDIS_URL as {}://:<password>@{}",
            target.scheme(),
            target.addr()
        ))
    })
}

fn command_failure(target: &RedisTarget, e: &RedisError, command: &'static str, deadline: Duration) -> Failure {
    if let Some(f) = noauth_failure(target, e) {
        return f;
    }
    if is_transport(e) {
        return transport_failure(target, e, command, deadline);
    }
    // States in which Redis refuses even PING; their own texts run to several sentences.
    match e.code() {
        Some("MISCONF") => Failure::new(format!(
            "{command} refused: MISCONF (Redis cannot persist to disk, so it refuses writes and PING)"
        ))
        .with_hint(
            "read the Redis log for the save error (disk full, permissions on Redis's dir), fix it and run BGSAVE; \
             a pure cache can run without snapshots: CONFIG SET save \"\"",
        ),
        Some("LOADING") => Failure::new(format!("{command} refused: LOADING (Redis is loading its dataset)"))
            .with_hint("wait until Redis has loaded its data (INFO persistence: loading:0), then run again"),
        Some("MASTERDOWN") => Failure::new(format!(
            "{command} refused: MASTERDOWN (a replica that lost its primary, with replica-serve-stale-data no)"
        ))
        .with_hint("restore the replica's link to its primary, or point REDIS_URL at the primary"),
        _ => Failure::new(format!("{command} failed: {}", server_words(e))).with_hint(
            "the server refused a read-only command; check its state and the ACL rules of the REDIS_URL user",
        ),
    }
}

/// The connection broke or stalled while a command was in flight.
fn transport_failure(target: &RedisTarget, e: &RedisError, command: &'static str, deadline: Duration) -> Failure {
    let addr = target.addr();
    // The crate's response timeout is the deadline too and may fire first:
    // report it exactly like the outer timeout.
    if e.is_timeout() {
        return timeout_failure(target, deadline, Phase::Reply(command));
    }
    let plain_hint = match target.tls {
        RedisTls::Off => "if the server only accepts TLS, use rediss:// in REDIS_URL",
        _ => "check the server log; it may have hit maxclients or closed idle connections",
    };
    Failure::new(format!("connection to {addr} broke waiting for {command} reply: {e}")).with_hint(plain_hint)
}

fn silent_server_hint(target: &RedisTarget) -> String {
    let addr = target.addr();
    match target.tls {
        RedisTls::Off => format!(
            "{addr} accepted the connection but did not answer: check that it is Redis, not a TLS port (then use rediss://), and that it is not overloaded"
        ),
        _ => format!("{addr} accepted the TLS session but did not answer: check that Redis is not overloaded"),
    }
}

fn timeout_failure(target: &RedisTarget, deadline: Duration, phase: Phase) -> Failure {
    let addr = target.addr();
    let after = humantime::format_duration(deadline);
    match phase {
        Phase::Resolve => Failure::new(format!("timed out after {after} resolving host '{}'", target.host))
            .with_hint("check this machine's DNS resolver and the host name in REDIS_URL"),
        Phase::TcpConnect => Failure::new(format!("timed out after {after} during TCP connect to {addr}"))
            .with_hint("packets to the port are dropped: check firewall rules, security groups and the port in REDIS_URL"),
        Phase::TlsHandshake => Failure::new(format!("timed out after {after} during TLS handshake with {addr}"))
            .with_hint(format!(
                "{addr} accepted TCP but did not complete TLS: if it is a plain-text Redis port, use redis:// instead of rediss://"
            )),
        Phase::Reply(command) => {
            Failure::new(format!("timed out after {after} waiting for {command} reply from {addr}"))
                .with_hint(silent_server_hint(target))
        }
    }
}

/// Says which part of the handshake failed, in words.
fn tls_failure(target: &RedisTarget, e: &io::Error) -> Failure {
    let addr = target.addr();
    let rustls_error = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let ca_hint = match &target.tls {
        RedisTls::Verify { ca: Some(ca) } => format!(
            "the server certificate is not signed by REDIS_CA_CERT ({}): point it at the CA that signed the server certificate",
            ca.display()
        ),
        _ => "set REDIS_CA_CERT to the PEM file of the CA that signed the server certificate (or use rediss://…#insecure to skip the check, never in production)".to_owned(),
    };
    let plain_hint = format!("{addr} does not speak TLS: use redis:// or the server's TLS port (often 6380)");
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(cert)) => match cert {
            CertificateError::UnknownIssuer => Failure::new(format!(
                "TLS handshake with {addr} failed: certificate not trusted (signed by an unknown CA)"
            ))
            .with_hint(ca_hint),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => Failure::new(
                format!("TLS handshake with {addr} failed: certificate is not valid for '{}'", target.host),
            )
            .with_hint("use a host name the certificate lists (its subject alternative names) in REDIS_URL"),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                Failure::new(format!("TLS handshake with {addr} failed: certificate expired"))
                    .with_hint("renew the Redis server certificate")
            }
            other => Failure::new(format!("TLS handshake with {addr} failed: certificate not trusted ({other:?})"))
                .with_hint(ca_hint),
        },
        Some(
            err @ (rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. }),
        ) => Failure::new(format!("TLS handshake with {addr} failed: the server did not answer in TLS ({err})"))
            .with_hint(plain_hint),
        Some(err) => Failure::new(format!("TLS handshake with {addr} failed: {err}")).with_hint(
            "compare the server's TLS settings (versions, ciphers, client certificates) with a TLS 1.2/1.3 client",
        ),
        None if matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset) => {
            Failure::new(format!("TLS handshake with {addr} failed: the server closed the connection"))
                .with_hint(plain_hint)
        }
        None => Failure::new(format!("TLS handshake with {addr} failed: {e}")).with_hint(plain_hint),
    }
}

fn ring() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn verifying_config(ca: Option<&Path>) -> Result<ClientConfig, Failure> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca {
        let shown = path.display();
        let pem = std::fs::read(path).map_err(|e| {
            Failure::new(format!("cannot read REDIS_CA_CERT {shown}: {e}"))
                .with_hint("set REDIS_CA_CERT to a readable PEM file with the CA certificate")
        })?;
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| Failure::new(format!("REDIS_CA_CERT {shown} is not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(Failure::new(format!("REDIS_CA_CERT {shown} holds no certificate"))
                .with_hint("the file must contain -----BEGIN CERTIFICATE----- blocks"));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| Failure::new(format!("REDIS_CA_CERT {shown} holds an unusable certificate: {e}")))?;
        }
    }
    Ok(ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::new(format!("cannot set up TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn insecure_config() -> Result<ClientConfig, Failure> {
    let provider = ring();
    Ok(ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::new(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth())
}

/// `#insecure`: accepts any certificate, but still checks the handshake
/// signatures so the session is at least bound to the presented key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Nearest-rank percentile of `samples` (milliseconds); 0 when empty.
fn percentile(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Parse an INFO reply into field → value.
pub fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
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
            assert_eq!(t.password.as_deref(), *password, "{u}");
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
        assert!(url("  ").is_err());
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
    fn connect_can_run_on_any_worker_thread() {
        fn assert_send<T: Send>(_: &T) {}
        let t = url("redis://h").unwrap();
        assert_send(&connect(&t, Duration::from_secs(1)));
    }

    #[test]
    fn addr_brackets_ipv6() {
        assert_eq!(url("redis://[::1]:7000").unwrap().addr(), "[::1]:7000");
        assert_eq!(url("redis://h").unwrap().addr(), "h:6379");
    }

    #[test]
    fn info_parses_fields_across_sections() {
        let text = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n\r\n# Replication\r\nrole:master\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\n";
        let info = parse_info(text);
        assert_eq!(info["redis_version"], "7.0.15");
        assert_eq!(info["role"], "master");
        assert_eq!(info["db0"], "keys=3,expires=1,avg_ttl=0");
        assert_eq!(info.len(), 4);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&samples, 0.50), 3.0);
        assert_eq!(percentile(&samples, 0.99), 5.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
