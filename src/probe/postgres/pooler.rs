//! Knowing when a pooler stands between us and PostgreSQL.
//!
//! At startup the server announces a cancel key (BackendKeyData) whose first
//! half is the backend's pid. A pooler such as PgBouncer answers the startup
//! itself and announces a key of its own, while `pg_backend_pid()` names the
//! server process that actually runs our statements. So the two differ exactly
//! when something answers in PostgreSQL's place — found with no round trip, from
//! values the run already has. tokio-postgres keeps the key inside its cancel
//! token; [`announced_pid`] has the token write its cancel request into an
//! in-memory pipe (nothing reaches the network) and reads the pid back.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio_postgres::Client;
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};

/// The `SSLRequest` code a cancel token sends first when the connection used TLS.
const SSL_REQUEST: u32 = 80_877_103;
/// The `CancelRequest` code.
const CANCEL_REQUEST: u32 = 80_877_102;

/// The pid in `client`'s BackendKeyData, or `None` if it cannot be read.
pub async fn announced_pid(client: &Client) -> Option<i32> {
    let (ours, mut theirs) = tokio::io::duplex(64);
    let token = client.cancel_token();
    let write = token.cancel_query_raw(ours, Plain);
    let read = async {
        let mut head = [0u8; 8];
        theirs.read_exact(&mut head).await.ok()?;
        let code = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        let mut request = [0u8; 16];
        if code == SSL_REQUEST {
            // "TLS" over the pipe is the identity (see `Plain`).
            theirs.write_all(b"S").await.ok()?;
            theirs.read_exact(&mut request).await.ok()?;
        } else {
            request[..8].copy_from_slice(&head);
            theirs.read_exact(&mut request[8..]).await.ok()?;
        }
        let code = u32::from_be_bytes([request[4], request[5], request[6], request[7]]);
        (code == CANCEL_REQUEST).then(|| i32::from_be_bytes([request[8], request[9], request[10], request[11]]))
    };
    let (_, pid) = futures::join!(write, read);
    pid
}

/// Linux never gives a process a pid above 2^22 (`PID_MAX_LIMIT`), and no pid is
/// 0 or negative; PgBouncer's cancel key is random, so its first half is outside
/// that range 99.9 % of the time.
const PID_MAX_LIMIT: i32 = 4_194_304;

/// A cancel key whose pid half cannot be a server process's: something else (a
/// pooler) answered the startup. Known with no statement, so it tells even when
/// the first statement never gets an answer.
pub fn announced_by_a_pooler(announced: Option<i32>) -> bool {
    announced.is_some_and(|pid| !(1..=PID_MAX_LIMIT).contains(&pid))
}

/// Where our statements really run, and what stands in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The pid the startup announced (BackendKeyData).
    pub announced_pid: Option<i32>,
    /// `pg_backend_pid()`: the server process that ran our statement.
    pub backend_pid: i32,
    pub path: Path,
}

/// The statement that tells the route: the backend's pid and where it listens.
pub const ROUTE_SQL: &str = "SELECT pg_backend_pid(), host(inet_server_addr()), inet_server_port()";

/// What the pid and addresses say about the path to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// The server answered the startup itself.
    Direct,
    /// Something else answered it and relays our statements to a backend.
    Pooler {
        /// `inet_server_addr():inet_server_port()` as the backend sees its own
        /// connection (`None` when the pooler reaches it by a Unix socket).
        backend: Option<String>,
    },
}

/// Judges the path from the announced pid, the backend's pid and where the
/// backend says it listens.
pub fn path(announced: Option<i32>, backend_pid: i32, server_addr: Option<&str>, server_port: Option<i32>) -> Path {
    match announced {
        Some(pid) if pid != backend_pid => Path::Pooler {
            backend: server_addr.map(|addr| match server_port.and_then(|p| u16::try_from(p).ok()) {
                Some(port) => crate::probe::net::endpoint(addr, port),
                None => addr.to_string(),
            }),
        },
        _ => Path::Direct,
    }
}

/// A "TLS" connector that keeps the stream as it is: the cancel request only
/// needs writing into the pipe.
struct Plain;

impl TlsConnect<DuplexStream> for Plain {
    type Stream = PlainStream;
    type Error = io::Error;
    type Future = futures::future::Ready<Result<PlainStream, io::Error>>;

    fn connect(self, stream: DuplexStream) -> Self::Future {
        futures::future::ready(Ok(PlainStream(stream)))
    }
}

struct PlainStream(DuplexStream);

impl TlsStream for PlainStream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for PlainStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PlainStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_key_that_is_no_pid_is_a_poolers() {
        assert!(announced_by_a_pooler(Some(-91)) && announced_by_a_pooler(Some(1_234_567_890)));
        assert!(!announced_by_a_pooler(Some(4242)) && !announced_by_a_pooler(None));
    }

    #[test]
    fn a_different_pid_means_something_answered_in_the_servers_place() {
        assert_eq!(path(Some(42), 42, Some("10.0.0.5"), Some(5432)), Path::Direct);
        assert_eq!(path(None, 42, None, None), Path::Direct);
        assert_eq!(
            path(Some(7), 42, Some("10.0.0.5"), Some(5432)),
            Path::Pooler { backend: Some("10.0.0.5:5432".into()) }
        );
        assert_eq!(path(Some(7), 42, None, None), Path::Pooler { backend: None });
    }
}
