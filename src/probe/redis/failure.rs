//! Every way the Redis connection or a command can fail, in words an operator
//! can act on: the step, the server's own words (NOAUTH, WRONGPASS, MISCONF …)
//! and the fix.

use std::io;
use std::time::Duration;

use redis::RedisError;

use super::target::{RedisTarget, RedisTls};
use crate::probe::net::{self, Phase};
use crate::probe::{Cause, Failure, tls};

pub(super) fn resolve_failure(target: &RedisTarget, e: &io::Error) -> Failure {
    Failure::new(format!("cannot resolve Redis host '{}': {e}", target.host))
        .with_hint("check the host name in REDIS_URL and this machine's DNS")
}

pub(super) fn tcp_failure(target: &RedisTarget, e: &io::Error) -> Failure {
    let addr = target.addr();
    match e.kind() {
        io::ErrorKind::NotFound => {
            Failure::new(format!("no address found for {addr}")).with_hint("check the host name in REDIS_URL")
        }
        io::ErrorKind::ConnectionRefused => Failure::new(format!("connection refused at {addr}"))
            .with_hint(format!("start Redis on {addr}, or point REDIS_URL at the host and port where it listens")),
        _ => Failure::new(format!("cannot connect to {addr}: {e}"))
            .with_hint("check that this machine can reach the Redis host (firewall, security group, VPN)"),
    }
}

/// `CODE: detail`, as the server said it, on one line.
pub(super) fn server_words(e: &RedisError) -> String {
    let words = match (e.code(), e.detail()) {
        // Plain ERR carries no information beyond its text.
        (Some("ERR"), Some(detail)) => detail.to_owned(),
        (Some(code), Some(detail)) => format!("{code}: {detail}"),
        (Some(code), None) => code.to_owned(),
        _ => e.to_string(),
    };
    // The crate's own texts can run over several lines (a parser's trace).
    words.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The reply was not Redis's protocol at all: something else listens there.
/// (The crate's parser error is a trace of byte values, not words for an operator.)
pub(super) fn not_redis_failure(target: &RedisTarget, e: &RedisError, command: &'static str) -> Option<Failure> {
    (e.kind() == redis::ErrorKind::Parse).then(|| {
        let addr = target.addr();
        let tls = match target.tls {
            RedisTls::Off => ", or a TLS port (then use rediss://)",
            _ => "",
        };
        Failure::new(format!("{command}: {addr} answered, but not in Redis's protocol")).with_hint(format!(
            "another service listens on {addr} (HTTP, SSH, a database{tls}): check the host and port in REDIS_URL"
        ))
    })
}

pub(super) fn is_transport(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped()
}

// Placeholders in hints are `<password>`, not `PASSWORD`: the redaction layer
// masks anything shaped like a URL password, and `redis://:****@host` would read
// as if REDIS_URL already had one.
pub(super) fn noauth_failure(target: &RedisTarget, e: &RedisError) -> Option<Failure> {
    (e.code() == Some("NOAUTH")).then(|| {
        let failure = Failure::new(format!(
            "NOAUTH: the server requires a password and REDIS_URL has none{}",
            if target.user_without_password() {
                " (the part before '@' is read as a user name without a password)"
            } else {
                ""
            }
        ))
        .with_hint(format!(
            "set the password in REDIS_URL as {}://:<password>@{}",
            target.scheme(),
            target.addr()
        ));
        // A password written where the user name goes: env.redis_url's finding, one cause.
        if target.user_without_password() { failure.because(Cause::Malformed("REDIS_URL".into())) } else { failure }
    })
}

pub(super) fn command_failure(
    target: &RedisTarget,
    e: &RedisError,
    command: &'static str,
    deadline: Duration,
) -> Failure {
    if let Some(f) = noauth_failure(target, e).or_else(|| not_redis_failure(target, e, command)) {
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
pub(super) fn transport_failure(
    target: &RedisTarget,
    e: &RedisError,
    command: &'static str,
    deadline: Duration,
) -> Failure {
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

pub(super) fn timeout_failure(target: &RedisTarget, deadline: Duration, phase: Phase) -> Failure {
    let addr = target.addr();
    let after = crate::probe::human(deadline);
    match phase {
        Phase::Resolve => Failure::new(format!("timed out after {after} resolving host '{}'", target.host))
            .with_hint("check this machine's DNS resolver and the host name in REDIS_URL"),
        Phase::Connect => Failure::new(format!("timed out after {after} during TCP connect to {addr}"))
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

/// Says which part of the handshake failed, in the probe's one TLS vocabulary.
pub(super) fn tls_failure(target: &RedisTarget, e: &io::Error) -> Failure {
    let addr = target.addr();
    let plain_hint = format!("{addr} does not speak TLS: use redis:// or the server's TLS port (often 6380)");
    let Some(problem) = net::find_cause::<rustls::Error>(e).map(tls::Problem::of) else {
        let why = if matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset) {
            "the server closed the connection".to_string()
        } else {
            e.to_string()
        };
        return Failure::new(format!("TLS handshake with {addr} failed: {why}")).with_hint(plain_hint);
    };
    let ca_hint = match &target.tls {
        RedisTls::Verify { ca: Some(ca) } => format!(
            "the server certificate is not signed by REDIS_CA_CERT ({}): point it at the CA that signed the server certificate",
            ca.display()
        ),
        _ => "node-redis verifies against Node's roots: add the CA with NODE_EXTRA_CA_CERTS=/path/to/ca.pem in the \
              API's environment (or pass socket: { ca } in its code and set REDIS_CA_CERT to the same file here)"
            .to_owned(),
    };
    let hint = match &problem {
        tls::Problem::UnknownIssuer | tls::Problem::Certificate(_) => ca_hint,
        tls::Problem::SelfSigned => match &target.tls {
            RedisTls::Verify { ca: Some(ca) } => format!(
                "the server's certificate is self-signed and not in REDIS_CA_CERT ({}): point it at that certificate itself",
                ca.display()
            ),
            _ => "the server's certificate is self-signed: trust it with NODE_EXTRA_CA_CERTS=/path/to/its.crt in the \
                  API's environment (or pass socket: { ca } in its code and set REDIS_CA_CERT to the same file here)"
                .to_owned(),
        },
        tls::Problem::NameMismatch { .. } => {
            "use a host name the certificate lists (its subject alternative names) in REDIS_URL".to_string()
        }
        tls::Problem::NotTls(_) => plain_hint,
        other => other
            .generic_hint()
            .unwrap_or(
                "compare the server's TLS settings (versions, ciphers, client certificates) with a TLS 1.2/1.3 client",
            )
            .to_string(),
    };
    Failure::new(format!("TLS handshake with {addr} failed: {}", problem.describe(&target.host))).with_hint(hint)
}
