//! One HTTP/1 exchange with the API, every phase under one deadline: DNS, TCP,
//! TLS (the probe's verifier, Node's roots), then the request and its answer.
//! A timeout names the phase it stopped in; a refusal names the layer.
//!
//! One connection per exchange, closed after it (`Connection: close`): the
//! checks send one or two requests, and a fresh connection is what a new
//! client of the API (the desktop app after a deploy) opens too.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONNECTION, HOST, HeaderMap, HeaderValue, USER_AGENT};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use super::target::ApiTarget;
use crate::probe::activity;
use crate::probe::certs::Certificates;
use crate::probe::net::{self, Phase, PhaseCell};
use crate::probe::tls::{self, Setup, Trust, Verify};
use crate::probe::{EnvLookup, Failure};

/// The most of an answer's body that is read (and ever quoted, truncated further).
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the checks send.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: hyper::Method,
    /// The request path, base path included ([`ApiTarget::path`]).
    pub path: String,
    /// Extra headers (`Authorization`, `Content-Type`).
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
}

impl Exchange {
    /// `POST /api/sessions/create`: the request line, for messages.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// The roots an HTTPS request to the API trusts, as a Node client does: Mozilla's
/// (Node ships them; `webpki-roots` is the same list) plus the certificates of
/// `NODE_EXTRA_CA_CERTS` (read by [`tls::node_extra_ca`], from the process
/// environment only, as Node reads it). Node ignores a file it cannot read
/// (with a warning) and goes on with its own roots; so do we, and say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRoots {
    pub trust: Trust,
    /// `NODE_EXTRA_CA_CERTS` was set but cannot be used: why (Node's warning).
    pub ignored: Option<String>,
}

impl NodeRoots {
    pub fn from_env(get: EnvLookup<'_>) -> NodeRoots {
        let Some(file) = tls::node_extra_ca(get) else {
            return NodeRoots { trust: Trust { public: true, file: None }, ignored: None };
        };
        match tls::load_certs(&file) {
            Ok(_) => NodeRoots { trust: Trust { public: true, file: Some(file) }, ignored: None },
            Err(f) => NodeRoots { trust: Trust { public: true, file: None }, ignored: Some(f.message) },
        }
    }

    /// `Mozilla's roots (as Node ships them) + NODE_EXTRA_CA_CERTS /etc/ca.pem`.
    pub fn describe(&self) -> String {
        let mozilla = "Mozilla's roots (as Node ships them)";
        match (&self.trust.file, &self.ignored) {
            (Some(file), _) => format!("{mozilla} + NODE_EXTRA_CA_CERTS {}", file.path.display()),
            (None, Some(why)) => format!("{mozilla}; NODE_EXTRA_CA_CERTS ignored, as Node ignores it: {why}"),
            (None, None) => mozilla.to_string(),
        }
    }
}

/// Why an exchange has no answer: the failure, and how far it got, typed
/// where it is decided (never read back from the failure's words).
#[derive(Debug, Clone)]
pub struct NoAnswer {
    pub failure: Failure,
    /// The API cannot be reached: DNS, TCP or TLS failed, or it did not answer
    /// in time (`api.reachable` owns this finding).
    pub unreachable: bool,
    /// The request went out, or was going out: the API may have acted on it.
    pub sent: bool,
}

impl NoAnswer {
    /// Before any byte of the request: a configuration problem, or the way there.
    fn before(failure: Failure, unreachable: bool) -> NoAnswer {
        NoAnswer { failure, unreachable, sent: false }
    }

    /// While the request was (or may have been) on its way.
    fn during(failure: Failure) -> NoAnswer {
        NoAnswer { failure, unreachable: false, sent: true }
    }
}

/// How long each phase took.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub resolve: Duration,
    pub connect: Duration,
    pub tls: Option<Duration>,
    /// From the request's first byte to the answer's status line: the API's own time.
    pub answer: Duration,
    /// Everything, body included.
    pub total: Duration,
}

/// The API's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    /// At most [`BODY_LIMIT`] bytes.
    pub body: Vec<u8>,
    pub timings: Timings,
    /// `TLSv1.3`, `TLSv1.2`, or `None` over plain HTTP.
    pub tls_version: Option<String>,
    /// The server's chain (and the NODE_EXTRA_CA_CERTS file), for lifetimes.
    pub certificates: Certificates,
}

impl Answer {
    /// A header's value as text, when present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
    }

    /// The body as JSON, when it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// What the activity of a check names while it waits on the API.
const SERVICE: &str = "the API";

/// Sends `exchange` to the API and reads its answer, all within `deadline`.
/// The check's activity names the phase meanwhile (connecting, then waiting
/// for the answer), for an interruption's words.
pub async fn send(
    target: &ApiTarget,
    roots: &NodeRoots,
    exchange: &Exchange,
    deadline: Duration,
) -> Result<Answer, NoAnswer> {
    let phase = PhaseCell::new(Phase::Resolve);
    activity::connecting(SERVICE, target.addr(), &phase);
    let result = match tokio::time::timeout(deadline, steps(target, roots, exchange, &phase)).await {
        Ok(result) => result,
        Err(_) => {
            let phase = phase.get();
            let failure = timeout_failure(target, exchange, deadline, phase);
            Err(NoAnswer { failure, unreachable: true, sent: matches!(phase, Phase::Reply(_)) })
        }
    };
    activity::idle();
    result
}

async fn steps(
    target: &ApiTarget,
    roots: &NodeRoots,
    exchange: &Exchange,
    phase: &PhaseCell,
) -> Result<Answer, NoAnswer> {
    let started = Instant::now();
    let mut timings = Timings::default();
    // Built before any traffic: a bad CA file or host name is reported as such, not as a TLS error.
    let seen = tls::Seen::default();
    let tls_config = if target.tls {
        let setup = Setup { verify: Verify::ChainAndName, trust: roots.trust.clone(), identity: None };
        let config = tls::client_config(&setup, &seen).map_err(|f| NoAnswer::before(f, false))?;
        ServerName::try_from(target.host.clone()).map_err(|e| {
            let failure = Failure::new(format!("{} is not a host name TLS can check: {e}", target.host))
                .with_hint(format!("use the API's DNS name in {}", target.source.label()));
            NoAnswer::before(failure, false)
        })?;
        Some(config)
    } else {
        None
    };
    let request = request(target, exchange).map_err(|f| NoAnswer::before(f, false))?;

    let addrs = net::resolve(&target.host, target.port)
        .await
        .map_err(|e| NoAnswer::before(resolve_failure(target, &e), true))?;
    timings.resolve = started.elapsed();
    phase.set(Phase::Connect);
    let at = Instant::now();
    let tcp = net::connect_any(&addrs).await.map_err(|e| NoAnswer::before(tcp_failure(target, &e), true))?;
    timings.connect = at.elapsed();

    let mut answer = match tls_config {
        None => exchange_over(tcp, target, exchange, request, phase, &mut timings).await?,
        Some(mut config) => {
            phase.set(Phase::TlsHandshake);
            let at = Instant::now();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let stream = tls::handshake(Arc::new(config), &target.host, tcp, &seen)
                .await
                .map_err(|e| NoAnswer::before(tls_failure(target, roots, &e), true))?;
            timings.tls = Some(at.elapsed());
            exchange_over(stream, target, exchange, request, phase, &mut timings).await?
        }
    };
    timings.total = started.elapsed();
    answer.timings = timings;
    answer.tls_version = seen.version();
    answer.certificates = seen.certificates();
    Ok(answer)
}

/// Aborts the connection's driver when the exchange ends, however it ends.
struct Driver(tokio::task::JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The request over a connected (and, for HTTPS, encrypted) stream. From here
/// on the API may have acted on the request, whatever goes wrong.
async fn exchange_over<S>(
    stream: S,
    target: &ApiTarget,
    exchange: &Exchange,
    request: hyper::Request<Full<Bytes>>,
    phase: &PhaseCell,
    timings: &mut Timings,
) -> Result<Answer, NoAnswer>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let line = exchange.line();
    let failed = |e: &hyper::Error| NoAnswer::during(http_failure(target, &line, e));
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await.map_err(|e| failed(&e))?;
    let _driver = Driver(tokio::spawn(async move {
        let _ = conn.await;
    }));
    phase.set(Phase::Reply("answer"));
    activity::waiting(SERVICE, line.clone());
    let at = Instant::now();
    let response = sender.send_request(request).await.map_err(|e| failed(&e))?;
    timings.answer = at.elapsed();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| failed(&e))?;
        if let Ok(data) = frame.into_data() {
            let room = BODY_LIMIT - bytes.len();
            bytes.extend_from_slice(&data[..data.len().min(room)]);
            if data.len() >= room {
                break;
            }
        }
    }
    Ok(Answer {
        status,
        headers,
        body: bytes,
        timings: Timings::default(),
        tls_version: None,
        certificates: Certificates::default(),
    })
}

fn request(target: &ApiTarget, exchange: &Exchange) -> Result<hyper::Request<Full<Bytes>>, Failure> {
    let mut builder = hyper::Request::builder()
        .method(exchange.method.clone())
        .uri(exchange.path.as_str())
        .header(HOST, target.authority())
        .header(USER_AGENT, concat!("mockmate-diag/", env!("CARGO_PKG_VERSION")))
        .header(CONNECTION, HeaderValue::from_static("close"));
    for (name, value) in &exchange.headers {
        builder = builder.header(*name, value.as_str());
    }
    let body = Bytes::from(exchange.body.clone().unwrap_or_default());
    // The values are ours or the manifest's (checked when it loads); a token with
    // a line break is the one way to get here, and its text must not be quoted.
    builder.body(Full::new(body)).map_err(|_| {
        Failure::new(format!("cannot build the request {}: a header value is not valid HTTP", exchange.line()))
            .with_hint("check MOCKMATE_API_TOKEN for spaces or line breaks")
    })
}

fn resolve_failure(target: &ApiTarget, e: &io::Error) -> Failure {
    Failure::new(format!("cannot resolve the API's host '{}': {e}", target.host))
        .with_hint(format!("check the host name in {} and this machine's DNS", target.source.label()))
}

fn tcp_failure(target: &ApiTarget, e: &io::Error) -> Failure {
    let addr = target.addr();
    let source = target.source.label();
    match e.kind() {
        io::ErrorKind::NotFound => Failure::new(format!("no address found for the API's host {addr}"))
            .with_hint(format!("check the host name in {source}")),
        io::ErrorKind::ConnectionRefused => Failure::new(format!("connection refused at {addr}: the API is not running there"))
            .with_hint(format!(
                "start the API (and check its log for why it stopped), or point {source} at the host and port where it listens"
            )),
        _ => Failure::new(format!("cannot connect to the API at {addr}: {e}"))
            .with_hint("check that this machine can reach the API's host (firewall, security group, load balancer)"),
    }
}

fn tls_failure(target: &ApiTarget, roots: &NodeRoots, e: &io::Error) -> Failure {
    let addr = target.addr();
    let source = target.source.label();
    let plain = format!("{addr} does not speak TLS: use http:// in {source}, or the API's TLS port");
    let Some(problem) = net::find_cause::<rustls::Error>(e).map(tls::Problem::of) else {
        let why = if net::is_disconnect(e) { "the server closed the connection".to_string() } else { e.to_string() };
        return Failure::new(format!("TLS handshake with the API at {addr} failed: {why}")).with_hint(plain);
    };
    let trust = "Node clients (and the desktop app) verify the API's certificate against Mozilla's roots: serve a \
                 certificate from a public CA, or, for a private CA, trust it with NODE_EXTRA_CA_CERTS=/path/to/ca.pem \
                 in every client's process environment, this one's included (Node ignores it in .env files)";
    let hint = match &problem {
        tls::Problem::UnknownIssuer | tls::Problem::SelfSigned | tls::Problem::Certificate(_) => trust.to_string(),
        tls::Problem::NameMismatch { .. } => {
            format!("use a host name the certificate lists (its subject alternative names) in {source}")
        }
        tls::Problem::NotTls(_) => plain,
        other => other
            .generic_hint()
            .unwrap_or("compare the API's TLS settings (versions, ciphers) with a TLS 1.2/1.3 client")
            .to_string(),
    };
    Failure::new(format!("TLS handshake with the API at {addr} failed: {}", problem.describe(&target.host)))
        .with_hint(hint)
        .detail("roots", roots.describe())
}

fn http_failure(target: &ApiTarget, line: &str, e: &hyper::Error) -> Failure {
    let addr = target.addr();
    let why = if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        "the API closed the connection before answering".to_string()
    } else if e.is_parse() {
        "the answer is not HTTP/1.1".to_string()
    } else {
        // hyper's words and the io error under them (no request data in either).
        net::causes(e).map(ToString::to_string).collect::<Vec<_>>().join(": ")
    };
    let hint = if target.tls {
        "check the API's log for this request; a proxy in front of it may have cut it"
    } else {
        "check the API's log for this request; if the port only takes TLS, use https://"
    };
    Failure::new(format!("{line} to the API at {addr} failed: {why}")).with_hint(hint)
}

fn timeout_failure(target: &ApiTarget, exchange: &Exchange, deadline: Duration, phase: Phase) -> Failure {
    let addr = target.addr();
    let after = crate::probe::human(deadline);
    let source = target.source.label();
    let (message, hint) = match phase {
        Phase::Resolve => (
            format!("timed out after {after} resolving the API's host '{}'", target.host),
            format!("check this machine's DNS resolver and the host name in {source}"),
        ),
        Phase::Connect => (
            format!("timed out after {after} during TCP connect to the API at {addr}"),
            format!("packets to the port are dropped: check firewall rules, security groups and the port in {source}"),
        ),
        Phase::TlsHandshake => (
            format!("timed out after {after} during the TLS handshake with the API at {addr}"),
            format!("{addr} accepted TCP but did not complete TLS: if it serves plain HTTP, use http:// in {source}"),
        ),
        Phase::Reply(_) => (
            format!("timed out after {after} waiting for the API's answer to {} at {addr}", exchange.line()),
            "the API accepted the request but never answered: it is hung or overloaded (an event loop blocked, \
             a database pool exhausted): check its log and restart it"
                .to_string(),
        ),
    };
    let phase = match phase {
        Phase::Resolve => "dns",
        Phase::Connect => "tcp",
        Phase::TlsHandshake => "tls",
        Phase::Reply(_) => "http",
    };
    Failure::new(message).with_hint(hint).detail("phase", phase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::failure::lookup;

    #[test]
    fn node_roots_say_which_were_used() {
        let r = NodeRoots::from_env(&lookup(&[]));
        assert_eq!(r.describe(), "Mozilla's roots (as Node ships them)");
        let r = NodeRoots::from_env(&lookup(&[("NODE_EXTRA_CA_CERTS", "/nonexistent/ca.pem")]));
        assert!(r.trust.public && r.trust.file.is_none());
        assert!(
            r.describe().starts_with(
                "Mozilla's roots (as Node ships them); NODE_EXTRA_CA_CERTS ignored, as Node ignores it: cannot read"
            ),
            "{}",
            r.describe()
        );
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_api_and_the_variable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let target =
            ApiTarget::resolve(Some(&format!("http://127.0.0.1:{port}")), &lookup(&[])).expect("valid").expect("set");
        let exchange = Exchange { method: hyper::Method::GET, path: "/health".into(), headers: Vec::new(), body: None };
        let roots = NodeRoots::from_env(&lookup(&[]));
        let no = send(&target, &roots, &exchange, Duration::from_secs(2)).await.expect_err("nothing listens");
        assert!(no.unreachable && !no.sent, "{no:?}");
        let f = no.failure;
        assert_eq!(f.message, format!("connection refused at 127.0.0.1:{port}: the API is not running there"));
        assert!(f.hint.unwrap_or_default().contains("--api-url"));
    }

    /// A port that accepts and reads, never answers: the request was sent, the
    /// API did not answer in time, and the check's activity said what it waited on.
    #[tokio::test]
    async fn a_silent_api_is_unreachable_after_the_request_was_sent_and_the_wait_is_named() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let _server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let target =
            ApiTarget::resolve(Some(&format!("http://127.0.0.1:{port}")), &lookup(&[])).expect("valid").expect("set");
        let exchange = Exchange {
            method: hyper::Method::POST,
            path: "/api/sessions/create".into(),
            headers: Vec::new(),
            body: None,
        };
        let roots = NodeRoots::from_env(&lookup(&[]));
        let activity = activity::Activity::default();
        let watched = activity.clone();
        let watch = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if let Some(said) = watched.describe().filter(|s| s.contains("answer")) {
                    return said;
                }
            }
        });
        let no = activity
            .clone()
            .scope(send(&target, &roots, &exchange, Duration::from_millis(500)))
            .await
            .expect_err("never answers");
        assert!(no.unreachable && no.sent, "{no:?}");
        assert_eq!(no.failure.details.get("phase").and_then(|p| p.as_str()), Some("http"));
        let said = watch.await.expect("watched");
        assert!(said.ends_with("s waiting for the API's answer to POST /api/sessions/create"), "{said}");
        assert_eq!(activity.describe(), None, "idle once it gave up");
    }
}
