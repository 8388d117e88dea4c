//! Benchmark helper (`bench/run`): a TCP proxy that adds a fixed one-way delay in
//! each direction, so loopback servers behave like a database across a real network
//! (`tc netem` is not available on our machines). With `--tarpit` it instead accepts
//! connections and never answers, like a hung server.
//!
//! ```sh
//! cargo run --release --example latency_proxy -- --listen 127.0.0.1:0 --upstream 127.0.0.1:5432 --delay 25ms
//! cargo run --release --example latency_proxy -- --tarpit
//! ```
//!
//! The first line on stdout is the port it listens on; then it runs until killed.
//!
//! The model: every chunk read from one side is written to the other `--delay`
//! after it arrived, in order, with no bandwidth limit, so pipelined requests stay
//! pipelined and each request/reply exchange costs one round trip (2 × delay).
//! Connecting to the proxy is instant (the kernel completes the TCP handshake), so
//! the handshake's round trip is modelled by holding the client's first bytes until
//! one round trip after the connection was accepted: that is when a real client
//! could first send (`--no-handshake` turns this off).

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "TCP proxy adding a fixed delay in each direction (or a tarpit), for bench/run")]
struct Args {
    /// Where to listen (loopback only); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The server to forward to (loopback only).
    #[arg(long, required_unless_present = "tarpit", conflicts_with = "tarpit")]
    upstream: Option<SocketAddr>,
    /// One-way delay added in each direction (`25ms`): a round trip costs twice this.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0ms")]
    delay: Duration,
    /// Accept connections and never answer (a hung server), instead of proxying.
    #[arg(long)]
    tarpit: bool,
    /// Do not model the TCP handshake's round trip (see the module documentation).
    #[arg(long)]
    no_handshake: bool,
}

/// Chunks in flight per direction before the reader waits for the writer.
const IN_FLIGHT: usize = 1024;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    // The benchmark must never send anything off this machine.
    for addr in std::iter::once(args.listen).chain(args.upstream) {
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::other(format!("{addr} is not a loopback address")));
        }
    }
    let listener = TcpListener::bind(args.listen).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", listener.local_addr()?.port())?;
    stdout.flush()?;
    drop(stdout);

    loop {
        let (client, _) = listener.accept().await?;
        let accepted = Instant::now();
        match args.upstream {
            Some(upstream) if !args.tarpit => {
                let handshake = if args.no_handshake { Duration::ZERO } else { 2 * args.delay };
                tokio::spawn(relay(client, upstream, args.delay, accepted + handshake));
            }
            _ => {
                tokio::spawn(tarpit(client));
            }
        }
    }
}

/// Reads and discards whatever the client sends, never writing a byte, until the
/// client gives up.
async fn tarpit(mut client: TcpStream) {
    let mut sink = vec![0u8; 16 * 1024];
    while let Ok(n) = client.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

/// Connects upstream and pumps both directions, each under the delay. The client's
/// bytes leave no earlier than `client_may_send` (the modelled handshake).
async fn relay(client: TcpStream, upstream: SocketAddr, delay: Duration, client_may_send: Instant) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        // Dropping the client closes it, like a refused connection would.
        return;
    };
    // Small request/reply messages: no Nagle delay on top of ours.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, delay, client_may_send),
        pump(server_read, client_write, delay, Instant::now()),
    );
}

/// Copies `from` to `to`, writing each chunk `delay` after it was read (and not
/// before `not_before + delay`), in order; an end of stream is passed on the same way.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration, not_before: Instant) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Option<Vec<u8>>)>(IN_FLIGHT);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let chunk = match from.read(&mut buf).await {
                Ok(0) | Err(_) => None,
                Ok(n) => Some(buf[..n].to_vec()),
            };
            let done = chunk.is_none();
            let due = Instant::now().max(not_before) + delay;
            if tx.send((due, chunk)).await.is_err() || done {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            match chunk {
                Some(bytes) => {
                    if to.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                None => {
                    let _ = to.shutdown().await;
                    break;
                }
            }
        }
    };
    tokio::join!(reader, writer);
}
