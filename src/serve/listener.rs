//! Connections: the accept loop and what each connection may cost, so that no
//! number of silent or slow clients keeps a scrape from being answered.
//!
//! - a listen backlog of [`BACKLOG`] (the kernel's default of 128 drops
//!   connections when a few hundred clients arrive at once);
//! - at most [`MAX_CONNECTIONS`] open; when full, an idle connection (no
//!   request in flight) is closed to make room, so a new client is always
//!   accepted while any connection is idle: first those that never completed a
//!   request (silent, still sending their headers, stuck in the TLS handshake),
//!   oldest first, then the keep-alive connection idle longest — so clients
//!   that never finish a request cannot churn Prometheus's keep-alive
//!   connection away. Connections with a request in flight are never closed;
//!   each request is bounded (`http::REQUEST_DEADLINE`);
//! - hyper's own HTTP/1 timer: a request's headers must arrive within
//!   [`HEADER_READ_TIMEOUT`] of waiting for them, which is also how long a
//!   connection may sit idle between requests; a TLS handshake has as long.
//!
//! Shutdown: no new connection is accepted, idle ones are closed, and those
//! with a request in flight answer it and close.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, oneshot, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// The listen backlog asked of the kernel (Linux caps it at `net.core.somaxconn`, 4096 by default).
pub const BACKLOG: u32 = 1024;
/// At most this many connections at once: Prometheus needs one per target and
/// scrape in flight, a kubelet one or two; the rest is room for idle clients.
pub const MAX_CONNECTIONS: usize = 256;
/// How long a client has to send a request's headers once the connection
/// waits for them (after it opened, or after the last response): slow and
/// silent clients are closed after it. A TLS handshake has as long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head read (hyper's buffer; a scrape's is a few hundred bytes).
const MAX_HEAD: usize = 16 * 1024;

/// Binds `addr` with [`BACKLOG`] (inside a runtime).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // A restarted serve can bind while the old one's connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// What every connection is served with.
#[derive(Clone)]
pub struct Serving {
    pub router: Router,
    pub tls: Option<TlsAcceptor>,
}

/// Accepts connections until `stop` turns true, then waits for the open ones
/// to close (the caller bounds how long).
pub async fn serve(listener: TcpListener, serving: Serving, conns: Arc<Conns>, mut stop: watch::Receiver<bool>) {
    loop {
        let stream = tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: pause rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let conn = tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            conn = conns.admit() => conn,
        };
        tokio::spawn(serve_connection(stream, conn, serving.clone(), stop.clone()));
    }
    drop(listener);
    conns.stop();
    conns.closed().await;
}

/// Resolves once `stop` is true.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

async fn serve_connection(stream: TcpStream, mut conn: Conn, serving: Serving, mut stop: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let mut close = conn.close.take();
    let closed = async {
        match close.as_mut() {
            Some(rx) => {
                let _ = rx.await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(closed);
    let io: Box<dyn Io> = match serving.tls {
        None => Box::new(stream),
        Some(acceptor) => {
            let handshake = tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream));
            tokio::select! {
                () = &mut closed => return,
                done = handshake => match done {
                    Ok(Ok(tls)) => Box::new(tls),
                    // A failed or slow handshake: rustls has sent its alert, if any.
                    _ => return,
                },
            }
        }
    };
    let handle = conn.handle();
    let router = serving.router;
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        // Busy from the request's head until its response is ready: not to be shed.
        let busy = handle.busy();
        let response = router.clone().oneshot(request);
        async move {
            let response = response.await;
            drop(busy);
            Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
        }
    });
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(MAX_HEAD);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => break,
            // Shed to make room, or idle at shutdown: closed now.
            () = &mut closed => break,
            () = stopped(&mut stop), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
    drop(conn);
}

/// The open connections: how many, which are idle and since when.
pub struct Conns {
    state: Mutex<State>,
    /// A connection closed or went idle: room may have been made.
    room: Notify,
    max: usize,
    open: Gauge,
    shed: Counter,
}

#[derive(Default)]
struct State {
    next: u64,
    open: HashMap<u64, Entry>,
}

struct Entry {
    /// Whether a request on it has been answered (a keep-alive client).
    served: bool,
    /// Requests in flight (0 or 1 with HTTP/1).
    busy: usize,
    /// When it last went idle (or opened).
    idle_since: Instant,
    close: Option<oneshot::Sender<()>>,
}

impl Conns {
    pub fn new(max: usize, open: Gauge, shed: Counter) -> Arc<Conns> {
        Arc::new(Conns { state: Mutex::default(), room: Notify::new(), max, open, shed })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a new connection: at once while there is room or an idle
    /// connection to close for it, else when a request in flight ends.
    pub async fn admit(self: &Arc<Self>) -> Conn {
        loop {
            {
                let mut state = self.state();
                if state.open.len() >= self.max {
                    let oldest = state
                        .open
                        .iter()
                        .filter(|(_, e)| e.busy == 0)
                        .min_by_key(|(_, e)| (e.served, e.idle_since))
                        .map(|(id, _)| *id);
                    if let Some(entry) = oldest.and_then(|id| state.open.remove(&id)) {
                        if let Some(close) = entry.close {
                            let _ = close.send(());
                        }
                        self.shed.inc();
                    }
                }
                if state.open.len() < self.max {
                    let (tx, rx) = oneshot::channel();
                    state.next += 1;
                    let id = state.next;
                    state
                        .open
                        .insert(id, Entry { served: false, busy: 0, idle_since: Instant::now(), close: Some(tx) });
                    self.open.set(state.open.len() as i64);
                    return Conn { handle: Handle { conns: self.clone(), id }, close: Some(rx) };
                }
            }
            // notify_one keeps a permit when nobody waits: no wake-up is lost.
            self.room.notified().await;
        }
    }

    /// Shutdown: idle connections are closed now, busy ones when their request ends.
    pub fn stop(&self) {
        let mut state = self.state();
        for entry in state.open.values_mut().filter(|e| e.busy == 0) {
            if let Some(close) = entry.close.take() {
                let _ = close.send(());
            }
        }
    }

    /// Resolves once no connection is open.
    pub async fn closed(&self) {
        loop {
            if self.state().open.is_empty() {
                return;
            }
            self.room.notified().await;
        }
    }

    fn forget(&self, id: u64) {
        let mut state = self.state();
        state.open.remove(&id);
        self.open.set(state.open.len() as i64);
        drop(state);
        self.room.notify_one();
    }

    /// A request starts or ends on connection `id`. It counts as idle once its
    /// response is ready: a client that does not read its response can be shed.
    /// (At shutdown hyper closes a connection after its response: graceful.)
    fn set_busy(&self, id: u64, busy: bool) {
        let mut state = self.state();
        let Some(entry) = state.open.get_mut(&id) else { return };
        if busy {
            entry.busy += 1;
            return;
        }
        entry.busy = entry.busy.saturating_sub(1);
        entry.served = true;
        if entry.busy == 0 {
            entry.idle_since = Instant::now();
        }
        drop(state);
        self.room.notify_one();
    }
}

/// An admitted connection's place; given back when dropped.
pub struct Conn {
    handle: Handle,
    /// Fires when the connection is to be closed (shed, or idle at shutdown).
    close: Option<oneshot::Receiver<()>>,
}

impl Conn {
    fn handle(&self) -> Handle {
        self.handle.clone()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.handle.conns.forget(self.handle.id);
    }
}

#[derive(Clone)]
struct Handle {
    conns: Arc<Conns>,
    id: u64,
}

impl Handle {
    fn busy(&self) -> Busy {
        self.conns.set_busy(self.id, true);
        Busy(self.clone())
    }
}

/// A request in flight on a connection.
struct Busy(Handle);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.conns.set_busy(self.0.id, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conns(max: usize) -> Arc<Conns> {
        Conns::new(max, Gauge::default(), Counter::default())
    }

    async fn closes(conn: &mut Conn) -> bool {
        let rx = conn.close.as_mut().expect("a close receiver");
        tokio::time::timeout(Duration::from_millis(200), rx).await.is_ok()
    }

    #[tokio::test]
    async fn when_full_the_connection_idle_longest_is_closed_to_make_room() {
        let conns = conns(2);
        let mut first = conns.admit().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut second = conns.admit().await;
        assert_eq!(conns.open.get(), 2);
        let _third = conns.admit().await;
        assert!(closes(&mut first).await, "the oldest idle connection was kept");
        assert!(!closes(&mut second).await, "a younger idle connection was closed");
        assert_eq!((conns.open.get(), conns.shed.get()), (2, 1));
    }

    #[tokio::test]
    async fn connections_that_never_completed_a_request_go_before_a_keep_alive_client() {
        let conns = conns(2);
        let mut keep_alive = conns.admit().await;
        drop(keep_alive.handle().busy());
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut silent = conns.admit().await;
        let _third = conns.admit().await;
        assert!(closes(&mut silent).await, "a younger silent connection was kept");
        assert!(!closes(&mut keep_alive).await, "the keep-alive client was shed first");
    }

    #[tokio::test]
    async fn a_connection_with_a_request_in_flight_is_never_shed() {
        let conns = conns(2);
        let mut busy = conns.admit().await;
        let _request = busy.handle().busy();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut idle = conns.admit().await;
        let _third = conns.admit().await;
        assert!(!closes(&mut busy).await, "a busy connection was shed");
        assert!(closes(&mut idle).await);
    }

    #[tokio::test]
    async fn all_busy_means_the_next_waits_until_a_request_ends() {
        let conns = conns(1);
        let only = conns.admit().await;
        let request = only.handle().busy();
        let waiting = tokio::time::timeout(Duration::from_millis(100), conns.admit()).await;
        assert!(waiting.is_err(), "admitted over the cap with every connection busy");
        drop(request);
        let next = tokio::time::timeout(Duration::from_secs(2), conns.admit()).await;
        assert!(next.is_ok(), "not admitted once the request ended");
    }

    #[tokio::test]
    async fn stop_closes_the_idle_and_waits_for_the_busy() {
        let conns = conns(4);
        let mut idle = conns.admit().await;
        let busy = conns.admit().await;
        let request = busy.handle().busy();
        conns.stop();
        assert!(closes(&mut idle).await);
        drop(idle);
        assert!(tokio::time::timeout(Duration::from_millis(100), conns.closed()).await.is_err());
        drop(request);
        drop(busy);
        assert!(tokio::time::timeout(Duration::from_secs(1), conns.closed()).await.is_ok());
    }
}
