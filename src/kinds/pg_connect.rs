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

use crate::check::{Check, Ctx, KindDef, Outcome};
use crate::probe::postgres::PgInfo;
use crate::probe::postgres::pooler::{Path, Route};

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
                Err(failure) => return Outcome::from_failure(failure),
            };
            let left = end.saturating_duration_since(Instant::now()).max(Duration::from_millis(50));
            match tokio::time::timeout(left, session.route()).await {
                Ok(Ok(route)) => connected(&session.info, &route),
                Ok(Err(failure)) => Outcome::from_failure(failure),
                Err(_) => Outcome::problem(format!(
                    "logged in, but the first query got no answer within {}",
                    humantime::format_duration(ctx.timeout)
                ))
                .hint(
                    "the login was answered but no statement runs: behind a pooler (PgBouncer), PostgreSQL may be down \
                     or every server connection busy (SHOW POOLS: cl_waiting); otherwise the server is overloaded",
                ),
            }
        }
        .boxed()
    }
}

/// `PostgreSQL 15.4 in 12ms, TLSv1.3 (sslmode=prefer) via DATABASE_URL`, and
/// `, through a pooler (to 10.0.0.5:5432)` when one answers in the server's place.
fn connected(info: &PgInfo, route: &Route) -> Outcome {
    // `15.20 (Debian 15.20-0+deb12u1)`: the number reads best in a message.
    let version = info.server_version.split_whitespace().next().unwrap_or("?");
    let tls = info.tls.as_deref().unwrap_or("unencrypted");
    let latency = info.latency_ms.round() as u64;
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
    Outcome::pass(format!(
        "PostgreSQL {version} in {latency}ms, {tls} (sslmode={}) via {}{through}",
        info.sslmode, info.source
    ))
    .detail("pooler", pooler)
    .detail("server_version", info.server_version.clone())
    .detail("latency_ms", latency)
    .detail("tls", info.tls.is_some())
    .detail("tls_version", info.tls.clone())
    .detail("sslmode", info.sslmode.as_str())
    .detail("source", info.source.as_str())
    .detail("host", info.host.clone())
    .detail("port", info.port)
    .detail("database", info.dbname.clone())
    .detail("user", info.user.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::postgres::SslMode;

    #[test]
    fn message_names_version_latency_tls_and_source() {
        let info = PgInfo {
            server_version: "15.4 (Debian 15.4-1)".into(),
            tls: Some("TLSv1.3".into()),
            latency_ms: 11.6,
            sslmode: SslMode::Prefer,
            source: crate::probe::postgres::PgSource::DatabaseUrl,
            host: "db.internal".into(),
            port: 5432,
            user: "app".into(),
            dbname: "mockmate".into(),
            local: false,
        };
        let direct = Route { announced_pid: Some(7), backend_pid: 7, path: Path::Direct };
        let o = connected(&info, &direct);
        assert_eq!(o.message, "PostgreSQL 15.4 in 12ms, TLSv1.3 (sslmode=prefer) via DATABASE_URL");
        assert_eq!(o.details["tls"], true);
        assert_eq!(o.details["database"], "mockmate");
        assert_eq!(o.details["pooler"], serde_json::Value::Null);
        let pooled = Route {
            announced_pid: Some(-91),
            backend_pid: 7,
            path: Path::Pooler { backend: Some("10.0.0.5:5432".into()) },
        };
        let o = connected(&PgInfo { tls: None, source: crate::probe::postgres::PgSource::DbVars, ..info }, &pooled);
        assert_eq!(
            o.message,
            "PostgreSQL 15.4 in 12ms, unencrypted (sslmode=prefer) via DB_*, \
             through a pooler (PgBouncer or alike) in front of 10.0.0.5:5432"
        );
        assert_eq!(o.details["tls_version"], serde_json::Value::Null);
        assert_eq!(o.details["pooler"]["backend"], "10.0.0.5:5432");
    }
}
