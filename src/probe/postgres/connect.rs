//! Opening a PostgreSQL connection: TCP (or a Unix socket), TLS as the target
//! asks, startup and authentication — all under one deadline, with the phase a
//! timeout interrupted named in the failure.
//!
//! We connect the socket ourselves and hand it to tokio-postgres's `connect_raw`,
//! so we know which phase a timeout hit, and we do TLS policy ourselves
//! (tokio-postgres knows neither `verify-ca`/`verify-full` nor `sslrootcert`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::Client;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::failure::{connect_failure, resolve_failure, socket_failure, timeout_failure};
use super::session::{PgInfo, PgSession, send_setup};
use super::target::{PgTarget, SslMode};
use crate::probe::net::{self, Phase, PhaseCell};
use crate::probe::{Failure, tls};

/// What the server sees as our `application_name` (visible in `pg_stat_activity`).
pub const APPLICATION_NAME: &str = "mockmate-diag";

/// Connects and authenticates under `deadline`, and sends the session setup
/// without waiting for its reply (see [`super::session`]).
pub async fn connect(target: &PgTarget, deadline: Duration) -> Result<PgSession, Failure> {
    let phase = PhaseCell::new(Phase::Resolve);
    let seen = tls::Seen::default();
    let setup = target.tls();
    // Built before any network traffic: a bad sslrootcert is a configuration error.
    let config = match &setup {
        Some(setup) => Some(tls::client_config(setup, &seen)?),
        None => None,
    };
    let attempt = establish(target, deadline, config, &phase, &seen);
    match tokio::time::timeout(deadline, attempt).await {
        Ok(result) => result,
        Err(_) => Err(timeout_failure(target, deadline, phase.get())),
    }
}

async fn establish(
    target: &PgTarget,
    deadline: Duration,
    tls: Option<rustls::ClientConfig>,
    phase: &PhaseCell,
    seen: &tls::Seen,
) -> Result<PgSession, Failure> {
    let started = Instant::now();
    let mut config = tokio_postgres::Config::new();
    config.user(&target.user).dbname(&target.dbname).application_name(APPLICATION_NAME).ssl_mode(match &tls {
        None => tokio_postgres::config::SslMode::Disable,
        Some(_) if target.sslmode == SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        Some(_) => tokio_postgres::config::SslMode::Require,
    });
    if let Some(password) = &target.password {
        config.password(password.expose().as_bytes());
    }
    // With TLS off the connector is never asked to connect; it still has to exist.
    let mut make = match tls {
        Some(tls) => MakeRustlsConnect::new(tls),
        None => MakeRustlsConnect::new(tls::client_config(&disabled(), seen)?),
    };

    let (client, server_version) = if target.is_unix_socket() {
        phase.set(Phase::Connect);
        let stream =
            tokio::net::UnixStream::connect(target.socket_path()).await.map_err(|e| socket_failure(target, &e))?;
        startup(target, &config, stream, &mut make, phase, seen).await?
    } else {
        let addrs = net::resolve(&target.host, target.port).await.map_err(|e| resolve_failure(target, &e))?;
        phase.set(Phase::Connect);
        let stream = net::connect_any(&addrs).await.map_err(|e| socket_failure(target, &e))?;
        startup(target, &config, stream, &mut make, phase, seen).await?
    };
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let setup = send_setup(&client, deadline).await?;
    Ok(PgSession {
        client,
        setup,
        info: PgInfo {
            server_version,
            tls: seen.version(),
            latency_ms,
            sslmode: target.sslmode,
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

/// A configuration for a connection that never starts TLS.
fn disabled() -> tls::Setup {
    tls::Setup { verify: tls::Verify::Nothing, trust: tls::Trust { public: false, file: None }, identity: None }
}

/// TLS negotiation, startup and authentication over a connected socket; spawns the
/// connection task. Returns the client and the `server_version` the server reported
/// at startup (every PostgreSQL since 7.4 does; "unknown" if it did not).
async fn startup<S>(
    target: &PgTarget,
    config: &tokio_postgres::Config,
    stream: S,
    make: &mut MakeRustlsConnect,
    phase: &PhaseCell,
    seen: &tls::Seen,
) -> Result<(Client, String), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    phase.set(Phase::Reply("startup"));
    let tls = tracked::<S>(make, &target.host, phase, seen);
    let (client, connection) = config.connect_raw(stream, tls).await.map_err(|e| connect_failure(target, &e))?;
    let server_version = connection.parameter("server_version").unwrap_or("unknown").to_string();
    // Ends (with the error, if any, already seen by the client's callers) when the
    // server hangs up or the last user drops the client.
    tokio::spawn(connection);
    Ok((client, server_version))
}

/// tokio-postgres-rustls's connector, wrapped to record when the TLS handshake runs.
struct Tracked<T> {
    inner: T,
    phase: PhaseCell,
    seen: tls::Seen,
}

fn tracked<S>(
    make: &mut MakeRustlsConnect,
    host: &str,
    phase: &PhaseCell,
    seen: &tls::Seen,
) -> Tracked<<MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let inner = match MakeTlsConnect::<S>::make_tls_connect(make, host) {
        Ok(inner) => inner,
        Err(never) => match never {},
    };
    Tracked { inner, phase: phase.clone(), seen: seen.clone() }
}

impl<S, T: TlsConnect<S>> TlsConnect<S> for Tracked<T> {
    type Stream = T::Stream;
    type Error = T::Error;
    type Future = Handshake<T::Future>;

    fn connect(self, stream: S) -> Self::Future {
        self.phase.set(Phase::TlsHandshake);
        Handshake { inner: Box::pin(self.inner.connect(stream)), phase: self.phase, seen: self.seen }
    }
}

struct Handshake<F> {
    inner: Pin<Box<F>>,
    phase: PhaseCell,
    seen: tls::Seen,
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
            this.seen.completed();
        }
        this.phase.set(Phase::Reply("startup"));
        Poll::Ready(result)
    }
}
