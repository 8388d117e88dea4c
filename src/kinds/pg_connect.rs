//! `postgres.connect`: the run's one session can be opened — TCP, TLS, startup and
//! authentication — and runs a first statement within the deadline. Every other
//! `postgres.*` check needs it.
//!
//! The first statement matters behind a pooler: PgBouncer answers the login from
//! its cache even when PostgreSQL is down, so only a statement proves the server
//! is reached. It also tells whether a pooler stands in between (see
//! `probe::postgres::pooler`), which changes what other checks mean.

use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::json;

use crate::check::{Check, Ctx, KindDef, Outcome, Premise, Service};
use crate::probe::postgres::PgInfo;
use crate::probe::postgres::pooler::{self, Path, Route};

pub static KIND: KindDef = KindDef {
    name: "postgres.connect",
    title: "PostgreSQL connection",
    description: "connects and authenticates (DATABASE_URL or DB_*, sslmode) within the deadline; reports version, latency and TLS",
    build: |t| crate::check::without_params(t, Connect),
};

struct Connect;

impl Check for Connect {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let end = Instant::now() + ctx.timeout;
            let session = match ctx.postgres().await {
                Ok(session) => session,
                // A connection problem is this check's finding; a configuration one
                // (an unset or malformed variable) is the env check's, which it rests on.
                Err(failure) if failure.cause.is_none() => {
                    return Outcome::from_failure(failure).reports(Premise::Reachable(Service::Postgres));
                }
                Err(failure) => return Outcome::from_failure(failure),
            };
            let left = end.saturating_duration_since(Instant::now()).max(Duration::from_millis(50));
            match tokio::time::timeout(left, session.route()).await {
                Ok(Ok(route)) => connected(&session.info, &route),
                Ok(Err(failure)) => Outcome::from_failure(failure).reports(Premise::Reachable(Service::Postgres)),
                Err(_) if pooler::announced_by_a_pooler(session.announced_pid().await) => Outcome::problem(format!(
                    "logged in, but the first query got no answer within {}: a pooler (PgBouncer or alike) answered \
                     the login (its cancel key is no process id) and has no server connection for the query: the \
                     database behind it is down, or every connection of the pool is busy",
                    crate::probe::human(ctx.timeout)
                ))
                .hint(
                    "on PgBouncer's console: SHOW POOLS (cl_waiting, sv_active) and SHOW DATABASES; its log says \
                     whether its connects to PostgreSQL fail; a waiting query gives up after query_wait_timeout",
                )
                .reports(Premise::Reachable(Service::Postgres)),
                Err(_) => Outcome::problem(format!(
                    "logged in, but the first query got no answer within {}",
                    crate::probe::human(ctx.timeout)
                ))
                .hint(
                    "the login was answered but no statement runs: behind a pooler (PgBouncer), PostgreSQL may be down \
                     or every server connection busy (SHOW POOLS: cl_waiting); otherwise the server is overloaded",
                )
                .reports(Premise::Reachable(Service::Postgres)),
            }
        }
        .boxed()
    }
}

/// `PostgreSQL 15.4 via DATABASE_URL, TLSv1.3 verify-full (sslmode=require in
/// DATABASE_URL)`, then `, through a pooler …` when one answers in the server's
/// place, then where psql would decide otherwise. The latency is a detail: the
/// report's duration column already says how long the check took, and two
/// different numbers for one connect read as a contradiction.
fn connected(info: &PgInfo, route: &Route) -> Outcome {
    // `15.20 (Debian 15.20-0+deb12u1)`: the number reads best in a message.
    let version = info.server_version.split_whitespace().next().unwrap_or("?");
    let latency = info.latency_ms.round() as u64;
    let tls = match &info.tls {
        Some(version) => format!("{version} {} ({})", info.tls_mode, info.tls_origin),
        None => format!("unencrypted ({})", info.tls_origin),
    };
    let (through, pooler) = match &route.path {
        Path::Direct => (String::new(), serde_json::Value::Null),
        Path::Pooler { backend } => (
            match backend {
                Some(at) => format!(", through a pooler (PgBouncer or alike) in front of {at}"),
                None => ", through a pooler (PgBouncer or alike)".to_string(),
            },
            json!({"backend": backend, "backend_pid": route.backend_pid, "announced_pid": route.announced_pid}),
        ),
    };
    let libpq = info.libpq_note.as_ref().map(|n| format!("; {n}")).unwrap_or_default();
    let pg9 = info.pg9_change.then(|| {
        format!(
            "pg 9 (pg-connection-string 3) will give sslmode={} libpq's meaning, which does not verify the \
             certificate: write sslmode=verify-full to keep verifying",
            info.sslmode.as_deref().unwrap_or("?")
        )
    });
    Outcome::pass(format!("PostgreSQL {version} via {}, {tls}{through}{libpq}", info.source))
        .detail("pooler", pooler)
        .detail("server_version", info.server_version.clone())
        .detail("latency_ms", latency)
        .detail("tls", info.tls.is_some())
        .detail("tls_version", info.tls.clone())
        .detail("client", info.client.as_str())
        .detail("tls_mode", info.tls_mode)
        .detail("tls_origin", info.tls_origin.clone())
        .detail("sslmode", info.sslmode.clone())
        .detail("libpq_verdict", info.libpq_note.clone().unwrap_or_else(|| "the same".to_string()))
        .detail("pg9_change", pg9)
        .detail("source", info.source.as_str())
        .detail("host", info.host.clone())
        .detail("port", info.port)
        .detail("database", info.dbname.clone())
        .detail("user", info.user.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_version_latency_tls_and_source() {
        let info = PgInfo {
            server_version: "15.4 (Debian 15.4-1)".into(),
            tls: Some("TLSv1.3".into()),
            latency_ms: 11.6,
            client: crate::probe::postgres::ClientKind::NodePostgres,
            tls_mode: "verify-full",
            tls_origin: "sslmode=require in DATABASE_URL".into(),
            sslmode: Some("require".into()),
            libpq_note: None,
            pg9_change: true,
            source: crate::probe::postgres::PgSource::DatabaseUrl,
            host: "db.internal".into(),
            port: 5432,
            user: "app".into(),
            dbname: "mockmate".into(),
            local: false,
            certificates: Default::default(),
        };
        let direct = Route { announced_pid: Some(7), backend_pid: 7, path: Path::Direct };
        let o = connected(&info, &direct);
        assert_eq!(
            o.message,
            "PostgreSQL 15.4 via DATABASE_URL, TLSv1.3 verify-full (sslmode=require in DATABASE_URL)"
        );
        assert!(o.details["pg9_change"].as_str().unwrap_or_default().contains("sslmode=verify-full"));
        assert_eq!(o.details["latency_ms"], 12);
        assert_eq!(o.details["tls"], true);
        assert_eq!(o.details["database"], "mockmate");
        assert_eq!(o.details["pooler"], serde_json::Value::Null);
        let pooled = Route {
            announced_pid: Some(-91),
            backend_pid: 7,
            path: Path::Pooler { backend: Some("10.0.0.5:5432".into()) },
        };
        let plain = PgInfo {
            tls: None,
            source: crate::probe::postgres::PgSource::DbVars,
            tls_mode: "disable",
            tls_origin: "no TLS setting in DB_*, the Pool or PGSSLMODE".into(),
            ..info
        };
        let o = connected(&plain, &pooled);
        assert_eq!(
            o.message,
            "PostgreSQL 15.4 via DB_*, unencrypted (no TLS setting in DB_*, the Pool or PGSSLMODE), \
             through a pooler (PgBouncer or alike) in front of 10.0.0.5:5432"
        );
        assert_eq!(o.details["tls_version"], serde_json::Value::Null);
        assert_eq!(o.details["pooler"]["backend"], "10.0.0.5:5432");
    }
}
