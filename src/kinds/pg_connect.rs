//! `postgres.connect`: the run's one session can be opened — TCP, TLS, startup and
//! authentication — within the deadline. Every other `postgres.*` check needs it.

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::check::{Check, Ctx, KindDef, Outcome};
use crate::probe::postgres::PgInfo;

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
            match ctx.postgres().await {
                Ok(session) => connected(&session.info),
                Err(failure) => Outcome::from_failure(failure),
            }
        }
        .boxed()
    }
}

/// `PostgreSQL 15.4, TLSv1.3 (sslmode=prefer) via DATABASE_URL`. The latency is a
/// detail: the report's duration column already says how long the check took,
/// and two different numbers for one connect read as a contradiction.
fn connected(info: &PgInfo) -> Outcome {
    // `15.20 (Debian 15.20-0+deb12u1)`: the number reads best in a message.
    let version = info.server_version.split_whitespace().next().unwrap_or("?");
    let tls = info.tls.as_deref().unwrap_or("unencrypted");
    let latency = info.latency_ms.round() as u64;
    Outcome::pass(format!("PostgreSQL {version}, {tls} (sslmode={}) via {}", info.sslmode, info.source))
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
        let o = connected(&info);
        assert_eq!(o.message, "PostgreSQL 15.4, TLSv1.3 (sslmode=prefer) via DATABASE_URL");
        assert_eq!(o.details["latency_ms"], 12);
        assert_eq!(o.details["tls"], true);
        assert_eq!(o.details["database"], "mockmate");
        let o = connected(&PgInfo { tls: None, source: crate::probe::postgres::PgSource::DbVars, ..info });
        assert_eq!(o.message, "PostgreSQL 15.4, unencrypted (sslmode=prefer) via DB_*");
        assert_eq!(o.details["tls_version"], serde_json::Value::Null);
    }
}
