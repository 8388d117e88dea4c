//! `redis.connect`: the run's one Redis connection can be opened — TCP, TLS,
//! AUTH and PING — within the deadline. Every other `redis.*` check needs it.
//!
//! MockMate caches interview sessions in Redis; the runbook calls a Redis
//! failure non-fatal, so every hint says what the operator loses: caching.

use futures::FutureExt;
use futures::future::BoxFuture;

use super::shared::redis::with_impact;
use crate::check::{Check, Ctx, KindDef, Outcome, Premise, Service};
use crate::probe::redis::RedisInfo;

pub static KIND: KindDef = KindDef {
    name: "redis.connect",
    title: "Redis connection",
    description: "connects, authenticates and PINGs (REDIS_URL, REDIS_CA_CERT) within the deadline; reports version, role, TLS, mode and PING latency",
    build: |t| crate::check::without_params(t, Connect),
};

struct Connect;

impl Check for Connect {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            match ctx.redis().await {
                Ok(session) => connected(&session.info, &session.addr()),
                // A connection problem is this check's finding; a configuration one
                // (REDIS_URL unset or malformed) is the env check's, which it rests on.
                Err(failure) if failure.cause.is_none() => {
                    Outcome::from_failure(with_impact(failure)).reports(Premise::Reachable(Service::Redis))
                }
                Err(failure) => Outcome::from_failure(with_impact(failure)),
            }
        }
        .boxed()
    }
}

/// `Redis 7.0.15 (standalone, master) at 127.0.0.1:6379, TLS, PING p50 0.12ms / p99 0.31ms`
fn connected(info: &RedisInfo, addr: &str) -> Outcome {
    let tls = if info.tls { "TLS" } else { "unencrypted" };
    let p50 = round2(info.latency_p50_ms);
    let p99 = round2(info.latency_p99_ms);
    // A Sentinel has no replication role; redis.topology says what it means here.
    let what = match info.mode.as_str() {
        "sentinel" => "sentinel".to_string(),
        mode => format!("{mode}, {}", info.role),
    };
    Outcome::pass(format!("Redis {} ({what}) at {addr}, {tls}, PING p50 {p50}ms / p99 {p99}ms", info.version))
        .detail("version", info.version.clone())
        .detail("role", info.role.clone())
        .detail("mode", info.mode.clone())
        .detail("tls", info.tls)
        .detail("latency_p50_ms", p50)
        .detail("latency_p99_ms", p99)
        .detail("addr", addr)
}

/// Sub-millisecond latencies are the normal case: keep two decimals.
fn round2(ms: f64) -> f64 {
    (ms * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::run_kind;
    use crate::report::Status;

    #[test]
    fn message_names_version_mode_role_tls_and_latency() {
        let info = RedisInfo {
            version: "7.0.15".into(),
            role: "master".into(),
            tls: true,
            mode: "standalone".into(),
            latency_p50_ms: 0.1234,
            latency_p99_ms: 0.316,
            certificates: Default::default(),
        };
        let o = connected(&info, "cache.internal:6380");
        assert_eq!(
            o.message,
            "Redis 7.0.15 (standalone, master) at cache.internal:6380, TLS, PING p50 0.12ms / p99 0.32ms"
        );
        assert_eq!(o.details["latency_p99_ms"], 0.32);
        assert_eq!(o.details["tls"], true);
        assert_eq!(o.details["role"], "master");
    }

    #[tokio::test]
    async fn unset_redis_url_warns_with_the_runbook_impact() {
        let r = run_kind(&super::KIND, "severity = \"warn\"", &[], "production").await;
        assert_eq!((r.status, r.message.as_str()), (Status::Warn, "REDIS_URL is not set"));
        let hint = r.hint.unwrap_or_default();
        assert!(hint.contains("REDIS_URL=redis://") && hint.contains("caching is disabled"), "{hint}");
    }
}
