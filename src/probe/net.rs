//! The network layer both services share: addresses, TCP under the caller's
//! deadline, the step a connect is in (so a timeout can name it), and walking
//! an error's causes.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::TcpStream;

/// `host:port`, with brackets around an IPv6 address (`[::1]:5432`).
pub fn endpoint(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// Resolves `host` (no deadline of its own: the caller's connect deadline covers it).
pub async fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    Ok(tokio::net::lookup_host((host, port)).await?.collect())
}

/// Connects to the first address that accepts, in order; the last error otherwise
/// (`NotFound` when there was no address at all). Nagle is off: the protocols
/// exchange small request/reply messages, and latency is what we measure.
pub async fn connect_any(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no addresses")))
}

/// The step a connect is in, so that a timeout says where it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Resolve,
    Connect,
    TlsHandshake,
    /// Waiting for the reply to this request (`startup`, `AUTH`, `PING` …).
    Reply(&'static str),
}

/// A [`Phase`] shared with code that runs inside a driver (a TLS connector).
#[derive(Debug, Clone)]
pub struct PhaseCell(Arc<Mutex<Phase>>);

impl PhaseCell {
    pub fn new(phase: Phase) -> PhaseCell {
        PhaseCell(Arc::new(Mutex::new(phase)))
    }

    pub fn set(&self, phase: Phase) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = phase;
    }

    pub fn get(&self) -> Phase {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The error and its causes, looking inside `io::Error`s (whose `source()` skips
/// the error they wrap, e.g. a rustls error).
pub fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| match e.downcast_ref::<io::Error>() {
        Some(io) => match io.get_ref() {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        },
        None => e.source(),
    })
}

/// The first cause of type `T` in `e`'s chain.
pub fn find_cause<'a, T: std::error::Error + 'static>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    causes(e).find_map(|c| c.downcast_ref::<T>())
}

/// The peer went away: EOF, reset, aborted, broken pipe.
pub fn is_disconnect(e: &(dyn std::error::Error + 'static)) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_bracket_ipv6() {
        assert_eq!(endpoint("::1", 6000), "[::1]:6000");
        assert_eq!(endpoint("db.internal", 5432), "db.internal:5432");
    }

    #[test]
    fn causes_look_inside_io_errors() {
        let io = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert_eq!(causes(&io).count(), 2);
        assert!(find_cause::<rustls::Error>(&io).is_some());
        assert!(is_disconnect(&io::Error::from(io::ErrorKind::UnexpectedEof)));
    }

    #[tokio::test]
    async fn connect_any_reports_the_last_error_or_no_address() {
        let e = connect_any(&[]).await.expect_err("no address");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
