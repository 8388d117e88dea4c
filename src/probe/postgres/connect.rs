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
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::Client;
use tokio_postgres::tls::{ChannelBinding, TlsConnect};

use super::failure::{connect_failure, resolve_failure, socket_failure, timeout_failure};
use super::psql;
use super::session::{Connection, PgInfo};
use super::ssl::TlsMode;
use super::target::PgTarget;
use crate::probe::net::{self, Phase, PhaseCell};
use crate::probe::{Failure, tls};

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
    let attempt = establish(target, config, phase, &seen);
    match tokio::time::timeout(deadline, attempt).await {
        Ok(result) => result,
        Err(_) => Err(timeout_failure(target, deadline, phase.get())),
    }
}

async fn establish(
    target: &PgTarget,
    tls: Option<rustls::ClientConfig>,
    phase: &PhaseCell,
    seen: &tls::Seen,
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
    let tls = PgTls { config: tls.map(Arc::new), host: target.host.clone(), phase: phase.clone(), seen: seen.clone() };

    let (client, server_version) = if target.is_unix_socket() {
        phase.set(Phase::Connect);
        let stream =
            tokio::net::UnixStream::connect(target.socket_path()).await.map_err(|e| socket_failure(target, &e))?;
        startup(target, &config, stream, tls, phase).await?
    } else {
        let addrs = net::resolve(&target.host, target.port).await.map_err(|e| resolve_failure(target, &e))?;
        phase.set(Phase::Connect);
        let stream = net::connect_any(&addrs).await.map_err(|e| socket_failure(target, &e))?;
        startup(target, &config, stream, tls, phase).await?
    };
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(Connection {
        client,
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
/// connection task. Returns the client and the `server_version` the server reported
/// at startup (every PostgreSQL since 7.4 does; "unknown" if it did not).
async fn startup<S>(
    target: &PgTarget,
    config: &tokio_postgres::Config,
    stream: S,
    tls: PgTls,
    phase: &PhaseCell,
) -> Result<(Client, String), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    phase.set(Phase::Reply("startup"));
    let (client, connection) = config.connect_raw(stream, tls).await.map_err(|e| connect_failure(target, &e))?;
    let server_version = connection.parameter("server_version").unwrap_or("unknown").to_string();
    // Ends (with the error, if any, already seen by the client's callers) when the
    // server hangs up or the last user drops the client.
    tokio::spawn(connection);
    Ok((client, server_version))
}

/// tokio-postgres's TLS hook: the probe's one handshake ([`tls::handshake`]),
/// with the phase recorded. `config` is `None` when the target asks for no TLS
/// (tokio-postgres then never calls it).
struct PgTls {
    config: Option<Arc<rustls::ClientConfig>>,
    host: String,
    phase: PhaseCell,
    seen: tls::Seen,
}

impl<S> TlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = io::Error;
    type Future = BoxFuture<'static, io::Result<PgTlsStream<S>>>;

    fn connect(self, stream: S) -> Self::Future {
        self.phase.set(Phase::TlsHandshake);
        Box::pin(async move {
            let config = self.config.ok_or_else(|| io::Error::other("TLS was not configured for this connection"))?;
            let stream = tls::handshake(config, &self.host, stream, &self.seen).await;
            self.phase.set(Phase::Reply("startup"));
            stream.map(PgTlsStream)
        })
    }
}

/// A TLS stream as tokio-postgres takes it. No channel binding: node-postgres
/// does not bind either unless the API's code enables it, so SCRAM is judged as
/// the API logs in.
struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for PgTlsStream<S> {
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
