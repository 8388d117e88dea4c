//! A TCP listener with a cap on open connections: memory stays bounded however
//! many clients connect (the next one waits in the kernel's backlog until one
//! closes), and the open count is a gauge in `/metrics`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// At most this many HTTP connections at once: Prometheus needs one per target
/// and scrape in flight, a Kubernetes kubelet one or two.
pub const MAX_CONNECTIONS: usize = 64;

pub struct Capped {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    open: Gauge,
}

impl Capped {
    pub fn new(inner: TcpListener, max: usize, open: Gauge) -> Capped {
        Capped { inner, permits: Arc::new(Semaphore::new(max)), open }
    }
}

impl axum::serve::Listener for Capped {
    type Io = Held;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Held, SocketAddr) {
        // The semaphore is never closed; were it, no cap would be better than no server.
        let permit = self.permits.clone().acquire_owned().await.ok();
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        self.open.inc();
        (Held { stream, _permit: permit, open: self.open.clone() }, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// An accepted connection holding its place under the cap until it closes.
pub struct Held {
    stream: TcpStream,
    _permit: Option<OwnedSemaphorePermit>,
    open: Gauge,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl AsyncRead for Held {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Held {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::serve::Listener;

    #[tokio::test]
    async fn the_cap_holds_until_a_connection_closes() {
        let inner = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = inner.local_addr().expect("addr");
        let open = Gauge::default();
        let mut capped = Capped::new(inner, 1, open.clone());
        let _a = TcpStream::connect(addr).await.expect("connect");
        let _b = TcpStream::connect(addr).await.expect("connect");
        let (first, _) = capped.accept().await;
        assert_eq!(open.get(), 1);
        let second = tokio::time::timeout(std::time::Duration::from_millis(200), capped.accept()).await;
        assert!(second.is_err(), "a second connection was accepted over the cap");
        drop(first);
        assert_eq!(open.get(), 0);
        let (_second, _) = tokio::time::timeout(std::time::Duration::from_secs(2), capped.accept())
            .await
            .expect("accepted once the first closed");
        assert_eq!(open.get(), 1);
    }
}
