//! Opening the Redis connection: TCP, TLS, AUTH/SELECT, then PINGs and INFO in
//! one pipelined round, all under one deadline.
//!
//! We open TCP (and TLS) ourselves and hand the finished stream to the redis
//! crate instead of letting `redis::Client` connect, for three reasons:
//! - every step has its own name, so a timeout says *where* it stopped
//!   (TCP connect, TLS handshake, AUTH, PING);
//! - TLS is the probe's one policy ([`crate::probe::tls`]), ring passed explicitly;
//! - AUTH is sent by us, so a rejection carries the server's own words
//!   (`WRONGPASS …`) rather than the crate's generic "authentication failed".

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo, Value};
use tokio::io::{AsyncRead, AsyncWrite};

use super::failure::{
    command_failure, is_transport, noauth_failure, not_redis_failure, resolve_failure, server_words, tcp_failure,
    timeout_failure, tls_failure, transport_failure,
};
use super::info::parse_info;
use super::session::{RedisInfo, RedisSession, info_text, percentile, send};
use super::target::{RedisTarget, RedisTls};
use crate::probe::net::{self, Phase, PhaseCell};
use crate::probe::{Failure, tls};

/// How many PINGs measure latency. They travel in one pipelined round.
const PINGS: usize = 5;

/// Connect, AUTH, PING (a connection without AUTH "succeeds" and only the first
/// command says NOAUTH), INFO, all under `deadline`.
pub async fn connect(target: &RedisTarget, deadline: Duration) -> Result<RedisSession, Failure> {
    connect_in(target, deadline, &PhaseCell::new(Phase::Resolve)).await
}

/// [`connect`], saying which phase it is in through `phase`.
pub async fn connect_in(target: &RedisTarget, deadline: Duration, phase: &PhaseCell) -> Result<RedisSession, Failure> {
    match tokio::time::timeout(deadline, connect_steps(target, deadline, phase)).await {
        Ok(result) => result,
        Err(_) => Err(timeout_failure(target, deadline, phase.get())),
    }
}

async fn connect_steps(target: &RedisTarget, deadline: Duration, phase: &PhaseCell) -> Result<RedisSession, Failure> {
    let addr = target.addr();
    // Built before any network traffic: a bad REDIS_CA_CERT is a config error.
    let seen = tls::Seen::default();
    let tls_config = match target.tls_setup() {
        Some(setup) => Some(tls::client_config(&setup, &seen)?),
        None => None,
    };

    if let Some(path) = &target.socket {
        phase.set(Phase::Connect);
        let stream = tokio::net::UnixStream::connect(path).await.map_err(|e| tcp_failure(target, &e))?;
        let config =
            AsyncConnectionConfig::new().set_connection_timeout(Some(deadline)).set_response_timeout(Some(deadline));
        let conn = redis_over(stream, config, &addr).await?;
        return session(target, conn, deadline, phase, &seen).await;
    }
    let addrs = net::resolve(&target.host, target.port).await.map_err(|e| resolve_failure(target, &e))?;
    phase.set(Phase::Connect);
    let tcp = net::connect_any(&addrs).await.map_err(|e| tcp_failure(target, &e))?;

    // The crate's defaults (1 s connect, 0.5 s response) would cut a slow but
    // healthy server short. Its connection timeout only governs dialling, which
    // we do ourselves under the outer timeout; set it anyway so the config never
    // carries the default.
    let config =
        AsyncConnectionConfig::new().set_connection_timeout(Some(deadline)).set_response_timeout(Some(deadline));
    let conn = match tls_config {
        None => redis_over(tcp, config, &addr).await?,
        Some(tls_config) => {
            phase.set(Phase::TlsHandshake);
            let stream = tls::handshake(Arc::new(tls_config), &target.host, tcp, &seen)
                .await
                .map_err(|e| tls_failure(target, &e))?;
            redis_over(stream, config, &addr).await?
        }
    };
    session(target, conn, deadline, phase, &seen).await
}

/// Login, then PINGs and INFO on an open connection.
async fn session(
    target: &RedisTarget,
    conn: MultiplexedConnection,
    deadline: Duration,
    phase: &PhaseCell,
    seen: &tls::Seen,
) -> Result<RedisSession, Failure> {
    if target.password.is_some() || target.db != 0 {
        phase.set(Phase::Reply(if target.password.is_some() { "AUTH" } else { "SELECT" }));
        login(target, &conn, deadline).await?;
    }

    phase.set(Phase::Reply("PING"));
    let (latencies, info_text) = ping_and_info(target, &conn, deadline).await?;

    let info_fields = parse_info(&info_text);
    if let Some(failure) = info_fields.get("redis_version").and_then(|v| before_hello(v)) {
        return Err(failure);
    }
    let field = |name: &str| info_fields.get(name).cloned();
    let info = RedisInfo {
        version: field("redis_version").unwrap_or_else(|| "unknown".to_owned()),
        role: field("role").unwrap_or_else(|| "unknown".to_owned()),
        tls: target.tls != RedisTls::Off,
        mode: field("redis_mode").or_else(|| field("server_mode")).unwrap_or_else(|| "standalone".to_owned()),
        latency_p50_ms: percentile(&latencies, 0.50),
        latency_p99_ms: percentile(&latencies, 0.99),
        certificates: seen.certificates(),
    };
    Ok(RedisSession::new(conn, info, info_fields, target.clone(), deadline))
}

/// Wraps an established stream. With no password and database 0 in the
/// connection info the crate sends nothing here: login is ours (see module doc).
async fn redis_over<S>(stream: S, config: AsyncConnectionConfig, addr: &str) -> Result<MultiplexedConnection, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = RedisConnectionInfo::default().set_skip_set_lib_name();
    let (conn, driver) = MultiplexedConnection::new_with_config(&info, stream, config)
        .await
        .map_err(|e| Failure::new(format!("cannot start a Redis session with {addr}: {e}")))?;
    // The driver ends by itself once every clone of `conn` is dropped.
    tokio::spawn(driver);
    Ok(conn)
}

/// AUTH (when REDIS_URL has a password) and SELECT (when it names a database).
async fn login(target: &RedisTarget, conn: &MultiplexedConnection, deadline: Duration) -> Result<(), Failure> {
    let addr = target.addr();
    let auth = async {
        let Some(password) = &target.password else { return Ok(Value::Okay) };
        // Always the user too, as node-redis 6 does (HELLO 3 AUTH default <pw>): the
        // one-argument AUTH fails on a server whose default user has no password.
        let mut cmd = redis::cmd("AUTH");
        cmd.arg(target.username.as_deref().unwrap_or("default")).arg(password.expose());
        send(conn.clone(), cmd).await
    };
    let select = async {
        if target.db == 0 {
            return Ok(Value::Okay);
        }
        let mut cmd = redis::cmd("SELECT");
        cmd.arg(target.db);
        send(conn.clone(), cmd).await
    };
    // Both go out in one round; AUTH is queued first, so SELECT runs logged in.
    let (auth, select) = futures::join!(auth, select);

    if let Err(e) = auth {
        if let Some(f) = not_redis_failure(target, &e, "AUTH") {
            return Err(f);
        }
        let words = server_words(&e);
        let code = e.code().unwrap_or_default();
        let user_hint = if target.username.is_some() {
            "check the ACL user and password in REDIS_URL (ACL LIST on the server shows the users)"
        } else {
            "check the password in REDIS_URL; if the server uses ACL users, put the user too: redis://<user>:<password>@host"
        };
        return Err(match code {
            "WRONGPASS" => Failure::new(words).with_hint(user_hint),
            _ if is_transport(&e) => transport_failure(target, &e, "AUTH", deadline),
            _ if words.contains("without any password configured") => Failure::new(words).with_hint(format!(
                "the server at {addr} has no password: remove it from REDIS_URL, or set requirepass on the server"
            )),
            _ => Failure::new(format!("AUTH failed: {words}")).with_hint(user_hint),
        });
    }
    if let Err(e) = select {
        if is_transport(&e) {
            return Err(transport_failure(target, &e, "SELECT", deadline));
        }
        return Err(noauth_failure(target, &e).unwrap_or_else(|| {
            Failure::new(format!("SELECT {} failed: {}", target.db, server_words(&e))).with_hint(
                "use a database number the server has (the `databases` setting; managed and cluster Redis only have 0)",
            )
        }));
    }
    Ok(())
}

/// A server older than Redis 6 does not know `HELLO`, which node-redis 6 sends
/// first on every connection (`HELLO 3 [AUTH …]`, its default RESP3): the API
/// cannot connect there, whatever PING says.
fn before_hello(version: &str) -> Option<Failure> {
    let major: u32 = version.split('.').next()?.trim().parse().ok()?;
    (major < 6).then(|| {
        Failure::new(format!(
            "Redis {version} does not know HELLO, which node-redis 6 sends first on every connection: \
             the API cannot connect here"
        ))
        .with_hint("upgrade Redis to 6.0 or later, or create the API's client with createClient({ url, RESP: 2 })")
    })
}

/// PINGs for latency and INFO, all in one pipelined round.
async fn ping_and_info(
    target: &RedisTarget,
    conn: &MultiplexedConnection,
    deadline: Duration,
) -> Result<(Vec<f64>, String), Failure> {
    let pings = (0..PINGS).map(|_| {
        let conn = conn.clone();
        async move {
            let started = Instant::now();
            send(conn, redis::cmd("PING")).await.map(|_| started.elapsed().as_secs_f64() * 1000.0)
        }
    });
    let mut info_cmd = redis::cmd("INFO");
    info_cmd.arg("all");
    let (pings, info) = futures::join!(futures::future::join_all(pings), send(conn.clone(), info_cmd));

    let mut latencies = Vec::with_capacity(PINGS);
    for ping in pings {
        match ping {
            Ok(ms) => latencies.push(ms),
            Err(e) => return Err(command_failure(target, &e, "PING", deadline)),
        }
    }
    let info = info.map_err(|e| command_failure(target, &e, "INFO", deadline))?;
    Ok((latencies, info_text(target, info)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_without_hello_is_one_node_redis_6_cannot_use() {
        let f = before_hello("5.0.14").expect("too old");
        assert!(f.message.starts_with("Redis 5.0.14 does not know HELLO"), "{}", f.message);
        assert!(f.hint.as_deref().is_some_and(|h| h.contains("RESP: 2")));
        for fine in ["6.0.0", "7.0.15", "7.4.1", "unknown", ""] {
            assert!(before_hello(fine).is_none(), "{fine}");
        }
    }

    #[test]
    fn connect_can_run_on_any_worker_thread() {
        fn assert_send<T: Send>(_: &T) {}
        let t = RedisTarget::from_env(&crate::probe::failure::lookup(&[("REDIS_URL", "redis://h")])).expect("parses");
        assert_send(&connect(&t, Duration::from_secs(1)));
    }
}
