//! Opening a PostgreSQL connection: TCP (or a Unix socket), TLS as the target
//! asks, startup and authentication — all under one deadline, with the phase a
//! timeout interrupted named in the failure.
//!
//! We connect the socket ourselves and hand it to tokio-postgres's `connect_raw`,
//! so we know which phase a timeout hit, and we do TLS policy ourselves
//! (tokio-postgres knows neither `verify-ca`/`verify-full` nor `sslrootcert`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::Client;
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};

use super::failure::{Stopped, connect_failure, resolve_failure, socket_failure, timeout_failure};
use super::lost::{self, Ended};
use super::psql;
use super::ssl::{ClientKind, TlsMode};
use super::target::{PgSource, PgTarget};
use crate::probe::net::{self, Phase, PhaseCell};
use crate::probe::{Failure, tls};

/// A connection just opened: what it found out, before it is given a role.
pub struct Connection {
    pub(super) client: Client,
    /// Why the connection ended, once it has (kept by its task).
    pub(super) ended: Arc<Ended>,
    pub info: PgInfo,
    pub(super) target: PgTarget,
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
    /// Whose reading of the settings this connection followed.
    pub client: ClientKind,
    /// The TLS the driver asked for: `verify-full`, `no-verify`, `disable` …
    pub tls_mode: &'static str,
    /// What decided it: `sslmode=require in DATABASE_URL`, `PGSSLMODE=…` …
    pub tls_origin: String,
    /// The configured `sslmode`, when one is.
    pub sslmode: Option<String>,
    /// Where psql (libpq) would decide otherwise on these settings.
    pub libpq_note: Option<String>,
    /// pg 9 will change what the configured `sslmode` means.
    pub pg9_change: bool,
    pub source: PgSource,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    pub local: bool,
    /// The server's chain and the sslrootcert CA, as the handshake saw them.
    pub certificates: crate::probe::certs::Certificates,
}

/// Connects and authenticates under `deadline`. The connection carries no
/// session state: what it is used for decides how (see [`super::session`]).
pub async fn connect(target: &PgTarget, deadline: Duration) -> Result<Connection, Failure> {
    connect_in(target, deadline, &PhaseCell::new(Phase::Resolve)).await
}

/// [`connect`], saying which phase it is in through `phase`.
pub async fn connect_in(target: &PgTarget, deadline: Duration, phase: &PhaseCell) -> Result<Connection, Failure> {
    let seen = tls::Seen::default();
    // Built before any network traffic: a bad sslrootcert is a configuration error.
    let config = match target.tls_setup() {
        Some(setup) => Some(tls::client_config(setup, &seen)?),
        None => None,
    };
    let logged_in = Arc::new(AtomicBool::new(false));
    let attempt = establish(target, config, phase, &seen, &logged_in);
    match tokio::time::timeout(deadline, attempt).await {
        Ok(result) => result,
        Err(_) => {
            let stopped = Stopped { phase: phase.get(), logged_in: logged_in.load(Ordering::SeqCst) };
            Err(timeout_failure(target, deadline, stopped))
        }
    }
}

async fn establish(
    target: &PgTarget,
    tls: Option<rustls::ClientConfig>,
    phase: &PhaseCell,
    seen: &tls::Seen,
    logged_in: &Arc<AtomicBool>,
) -> Result<Connection, Failure> {
    let started = Instant::now();
    let mut config = tokio_postgres::Config::new();
    // No application_name at startup: behind a pooler it would stay on the server
    // connection for the API's next transaction. Each unit sets it LOCAL instead.
    config.user(&target.user).dbname(&target.dbname).ssl_mode(match &target.tls.mode {
        TlsMode::Off => tokio_postgres::config::SslMode::Disable,
        TlsMode::Prefer(_) => tokio_postgres::config::SslMode::Prefer,
        TlsMode::Require(_) => tokio_postgres::config::SslMode::Require,
    });
    if target.direct_tls {
        config.ssl_negotiation(tokio_postgres::config::SslNegotiation::Direct);
    }
    // The URL's startup options, as the API sends them (a pooler may refuse them).
    if let Some(options) = &target.options {
        config.options(options);
    }
    if let Some(password) = &target.password {
        config.password(password.expose().as_bytes());
    }
    let tls = PgTls {
        config: tls.map(Arc::new),
        host: target.host.clone(),
        phase: phase.clone(),
        seen: seen.clone(),
        logged_in: logged_in.clone(),
    };

    let (client, server_version, ended) = if target.is_unix_socket() {
        phase.set(Phase::Connect);
        let stream =
            tokio::net::UnixStream::connect(target.socket_path()).await.map_err(|e| socket_failure(target, &e))?;
        startup(target, &config, Sniff::new(stream, logged_in), tls, phase, logged_in).await?
    } else {
        let addrs = net::resolve(&target.host, target.port).await.map_err(|e| resolve_failure(target, &e))?;
        phase.set(Phase::Connect);
        let stream = net::connect_any(&addrs).await.map_err(|e| socket_failure(target, &e))?;
        startup(target, &config, Sniff::new(stream, logged_in), tls, phase, logged_in).await?
    };
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(Connection {
        client,
        ended,
        target: target.clone(),
        info: PgInfo {
            server_version,
            tls: seen.version(),
            latency_ms,
            client: target.client,
            tls_mode: target.tls.label,
            tls_origin: target.tls.origin.clone(),
            sslmode: target.tls.sslmode.clone(),
            libpq_note: psql::libpq_on_success(target),
            pg9_change: target.tls.pg9_change,
            source: target.source,
            host: target.host.clone(),
            port: target.port,
            user: target.user.clone(),
            dbname: target.dbname.clone(),
            local: target.is_local(),
            certificates: seen.certificates(),
        },
    })
}

/// TLS negotiation, startup and authentication over a connected socket; spawns the
/// connection task. Returns the client, the `server_version` the server reported
/// at startup (every PostgreSQL since 7.4 does; "unknown" if it did not) and where
/// the connection's task keeps why it ended.
async fn startup<S>(
    target: &PgTarget,
    config: &tokio_postgres::Config,
    stream: S,
    tls: PgTls,
    phase: &PhaseCell,
    logged_in: &Arc<AtomicBool>,
) -> Result<(Client, String, Arc<Ended>), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    phase.set(Phase::Reply("startup"));
    let connected = config.connect_raw(stream, tls).await;
    // Startup is over: the sniffers stop looking.
    logged_in.store(true, Ordering::SeqCst);
    let (client, connection) = connected.map_err(|e| connect_failure(target, &e))?;
    let server_version = connection.parameter("server_version").unwrap_or("unknown").to_string();
    // Ends when the server hangs up or the last user drops the client, keeping
    // what the server said as it hung up.
    let ended = Arc::new(Ended::default());
    tokio::spawn(lost::drive(connection, ended.clone()));
    Ok((client, server_version, ended))
}

/// Sends PostgreSQL's cancel request for `client`'s backend (a connection of its
/// own to `target`: TCP or the Unix socket, TLS as the session's, through the
/// probe's one handshake). The server answers nothing: the caller bounds it.
pub(super) async fn cancel(target: &PgTarget, client: &Client) -> Result<(), Failure> {
    let token = client.cancel_token();
    let seen = tls::Seen::default();
    let config = match target.tls_setup() {
        Some(setup) => Some(Arc::new(tls::client_config(setup, &seen)?)),
        None => None,
    };
    let tls = PgTls {
        config,
        host: target.host.clone(),
        phase: PhaseCell::new(Phase::Connect),
        seen,
        logged_in: Arc::new(AtomicBool::new(true)),
    };
    let sent = if target.is_unix_socket() {
        let stream =
            tokio::net::UnixStream::connect(target.socket_path()).await.map_err(|e| socket_failure(target, &e))?;
        token.cancel_query_raw(stream, tls).await
    } else {
        let addrs = net::resolve(&target.host, target.port).await.map_err(|e| resolve_failure(target, &e))?;
        let stream = net::connect_any(&addrs).await.map_err(|e| socket_failure(target, &e))?;
        token.cancel_query_raw(stream, tls).await
    };
    sent.map_err(|e| Failure::new(format!("the cancel request failed: {}", super::failure::describe(&e))))
}

/// tokio-postgres's TLS hook: the probe's one handshake ([`tls::handshake`]),
/// with the phase recorded and the login sniffed above TLS. `config` is `None`
/// when the target asks for no TLS (tokio-postgres then never calls it).
struct PgTls {
    config: Option<Arc<rustls::ClientConfig>>,
    host: String,
    phase: PhaseCell,
    seen: tls::Seen,
    logged_in: Arc<AtomicBool>,
}

impl<S> TlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Sniff<PgTlsStream<S>>;
    type Error = io::Error;
    type Future = BoxFuture<'static, io::Result<Sniff<PgTlsStream<S>>>>;

    fn connect(self, stream: S) -> Self::Future {
        self.phase.set(Phase::TlsHandshake);
        Box::pin(async move {
            let config = self.config.ok_or_else(|| io::Error::other("TLS was not configured for this connection"))?;
            let stream = tls::handshake(config, &self.host, stream, &self.seen).await;
            self.phase.set(Phase::Reply("startup"));
            stream.map(|s| Sniff::new(PgTlsStream(s), &self.logged_in))
        })
    }
}

/// A TLS stream as tokio-postgres takes it. No channel binding: node-postgres
/// does not bind either unless the API's code enables it, so SCRAM is judged as
/// the API logs in.
struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for PgTlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// The length of an authentication message's head: type `R`, int32 length, int32 code.
const AUTH_HEAD: usize = 9;

/// An authentication message that says the login was accepted: AuthenticationOk
/// (`R`, length 8, code 0), or the SCRAM exchange's last step (AuthenticationSASLFinal,
/// code 12), which only follows a verified password. PostgreSQL sends AuthenticationOk
/// right after it; PgBouncer sends it only with the session's parameters, once it
/// has a server connection (so with the database behind it down, SASLFinal is the
/// last thing a client hears).
fn accepted(head: &[u8]) -> bool {
    matches!(head, [b'R', 0, 0, 0, 8, 0, 0, 0, 0] | [b'R', 0, 0, _, _, 0, 0, 0, 12])
}

/// A stream that notes when the server's bytes say the login was accepted (see
/// [`accepted`]). Sniffed below TLS too (for plain connections), where the
/// patterns occur in ciphertext by chance alone (seven fixed bytes of nine), and
/// above it (for TLS ones). It looks no further once seen,
/// nor after startup.
struct Sniff<S> {
    inner: S,
    logged_in: Arc<AtomicBool>,
    /// The last bytes read, for a pattern split across reads.
    tail: Vec<u8>,
    done: bool,
}

impl<S> Sniff<S> {
    fn new(inner: S, logged_in: &Arc<AtomicBool>) -> Sniff<S> {
        Sniff { inner, logged_in: logged_in.clone(), tail: Vec::new(), done: false }
    }

    fn look(&mut self, fresh: &[u8]) {
        // Set by the sniffer of the other layer, or once startup is over.
        if !self.done && self.logged_in.load(Ordering::Relaxed) {
            self.done = true;
            self.tail = Vec::new();
        }
        if self.done || fresh.is_empty() {
            return;
        }
        self.tail.extend_from_slice(fresh);
        if self.tail.windows(AUTH_HEAD).any(accepted) {
            self.logged_in.store(true, Ordering::SeqCst);
            self.done = true;
            self.tail = Vec::new();
            return;
        }
        let keep = self.tail.len().saturating_sub(AUTH_HEAD - 1);
        self.tail.drain(..keep);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniff<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf));
        if result.is_ok() {
            this.look(&buf.filled()[before..]);
        }
        Poll::Ready(result)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniff<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: TlsStream + Unpin> TlsStream for Sniff<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authentication_ok_is_seen_across_reads_and_only_it() {
        let flag = Arc::new(AtomicBool::new(false));
        let mut s = Sniff::new((), &flag);
        // AuthenticationSASL ('R', code 10) is not it.
        s.look(&[b'R', 0, 0, 0, 23, 0, 0, 0, 10, b'S', b'C']);
        assert!(!flag.load(Ordering::SeqCst));
        s.look(&[b'x', b'R', 0, 0, 0]);
        s.look(&[8, 0, 0]);
        assert!(!flag.load(Ordering::SeqCst));
        s.look(&[0, 0, b'S']);
        assert!(flag.load(Ordering::SeqCst));
        // PgBouncer, its database down: the SCRAM exchange ends, nothing follows.
        let flag = Arc::new(AtomicBool::new(false));
        let mut s = Sniff::new((), &flag);
        s.look(&[b'R', 0, 0, 0, 23, 0, 0, 0, 11, b'r', b'=']);
        assert!(!flag.load(Ordering::SeqCst));
        s.look(&[b'R', 0, 0, 0, 54, 0, 0, 0, 12, b'v', b'=']);
        assert!(flag.load(Ordering::SeqCst));
    }
}
