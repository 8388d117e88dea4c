//! `postgres.connections`: the server has connection slots left for the API's pool.
//!
//! Behind a pooler the server's slots are not the API's limit: the pool's are
//! (PgBouncer's pool_size per database/user, max_client_conn, clients waiting).
//! The check says which limits apply, and reads PgBouncer's admin console when
//! `PGBOUNCER_URL` names it.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;

use super::shared::postgres::{get, query_one, session};
use crate::check::{Check, Ctx, KindDef, Outcome};
use crate::probe::postgres::pgbouncer::BouncerState;
use crate::probe::postgres::pooler::Path;

pub static KIND: KindDef = KindDef {
    name: "postgres.connections",
    title: "Connection headroom",
    description: "client connections in use stay under warn_percent (fail at fail_percent) of max_connections minus reserved slots",
    build: |t| {
        let p: Params = crate::check::params(t)?;
        if !(0.0 < p.warn_percent && p.warn_percent <= p.fail_percent && p.fail_percent <= 100.0) {
            return Err("`warn_percent`: need 0 < warn_percent ≤ fail_percent ≤ 100".into());
        }
        Ok(Box::new(Connections(p)))
    },
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    warn_percent: f64,
    fail_percent: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params { warn_percent: 80.0, fail_percent: 95.0 }
    }
}

struct Connections(Params);

// `reserved_connections` exists from PostgreSQL 16 (missing_ok → NULL before).
// Without pg_read_all_stats, other roles' sessions show no state: idle_in_transaction
// then counts only what the role can see, and `complete` says so.
const SQL: &str = "SELECT
    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
    current_setting('max_connections')::int,
    current_setting('superuser_reserved_connections')::int
      + coalesce(nullif(current_setting('reserved_connections', true), '')::int, 0),
    (SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'),
    pg_has_role('pg_read_all_stats', 'USAGE')";

impl Check for Connections {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let result = async {
                let session = session(ctx).await?;
                let what = "the connection counts";
                // The console (PGBOUNCER_URL) is asked beside the server, not after it.
                let (row, console) = futures::join!(query_one(&session, what, SQL, &[]), ctx.pgbouncer());
                let row = row?;
                let in_use: i64 = get(&row, 0, what)?;
                let max: i32 = get(&row, 1, what)?;
                let reserved: i32 = get(&row, 2, what)?;
                let idle_in_tx: i64 = get(&row, 3, what)?;
                let complete: bool = get(&row, 4, what)?;
                let server = self
                    .judge(in_use, i64::from(max), i64::from(reserved))
                    .detail("in_use", in_use)
                    .detail("max", max)
                    .detail("reserved", reserved)
                    .detail("idle_in_transaction", idle_in_tx)
                    .detail("complete", complete);
                let pooled = matches!(session.route().await.map(|r| r.path), Ok(Path::Pooler { .. }));
                Ok(match console {
                    Some(Ok(state)) => behind_pgbouncer(server, &state, &session.info.dbname, &session.info.user),
                    Some(Err(failure)) => Outcome::warn(format!("{}; {}", server.message, failure.message))
                        .hint(failure.hint.unwrap_or_default())
                        .detail("pooler", "pgbouncer"),
                    None if pooled => pooled_unknown(server),
                    None => server,
                })
            };
            result.await.unwrap_or_else(|o| o)
        }
        .boxed()
    }
}

/// Behind a pooler nobody described: the server's count, and what it does not say.
fn pooled_unknown(server: Outcome) -> Outcome {
    let message = format!(
        "server: {}; behind a pooler the API's limit is the pool's (its pool size, clients waiting), not the \
         server's: set PGBOUNCER_URL to PgBouncer's admin console to see it",
        server.message
    );
    Outcome { message, ..server }.detail("pooler", "unknown")
}

/// The pool's limits, from PgBouncer's console: clients waiting for a server are
/// the API's requests waiting.
fn behind_pgbouncer(server: Outcome, state: &BouncerState, dbname: &str, user: &str) -> Outcome {
    let num = |row: Option<&crate::probe::postgres::pgbouncer::ShowRow>, key: &str| {
        row.and_then(|r| r.get(key)).and_then(|v| v.parse::<i64>().ok())
    };
    let pool = state.pool(dbname, user);
    let mode = pool
        .and_then(|p| p.get("pool_mode").cloned())
        .or_else(|| state.config.get("pool_mode").cloned())
        .unwrap_or_else(|| "?".into());
    let pool_size = num(state.database(dbname), "pool_size")
        .or_else(|| state.config.get("default_pool_size").and_then(|v| v.parse().ok()));
    let waiting = num(pool, "cl_waiting").unwrap_or(0);
    let maxwait = num(pool, "maxwait").unwrap_or(0);
    let active = num(pool, "cl_active").unwrap_or(0);
    let servers =
        num(pool, "sv_active").unwrap_or(0) + num(pool, "sv_idle").unwrap_or(0) + num(pool, "sv_used").unwrap_or(0);
    let size = pool_size.map_or("?".to_string(), |s| s.to_string());
    let mut message = format!(
        "{} in {mode} pooling: pool {dbname}/{user} has {servers} of {size} server connections, {active} clients \
         active, {waiting} waiting; server: {}",
        state.version, server.message
    );
    // 1.21+ carries named prepared statements in transaction pooling when
    // max_prepared_statements > 0; before that, and at 0, they fail.
    let prepared = state.config.get("max_prepared_statements").and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let loses_prepared = mode == "transaction" && prepared == 0;
    if loses_prepared {
        message.push_str(
            "; named prepared statements (node-postgres queries with a `name`) fail in transaction pooling \
             (prepared statement … does not exist)",
        );
    }
    let outcome = if waiting > 0 {
        Outcome::warn(format!("{waiting} clients waiting for a server connection (longest {maxwait}s): {message}")).hint(
            "the pool is exhausted: the API's queries queue in PgBouncer; raise pool_size/default_pool_size (within \
             the server's max_connections), or find the long transactions holding its connections",
        )
    } else if server.verdict != crate::check::Verdict::Pass {
        Outcome { message, ..server.clone() }
    } else {
        Outcome::pass(message)
    };
    let mut outcome = outcome;
    for (key, value) in &server.details {
        outcome.details.insert(key.clone(), value.clone());
    }
    outcome
        .detail("pooler", "pgbouncer")
        .detail("pgbouncer_version", state.version.clone())
        .detail("pool_mode", mode)
        .detail("pool_size", pool_size)
        .detail("cl_waiting", waiting)
        .detail("maxwait_s", maxwait)
        .detail("named_prepared_statements_fail", loses_prepared)
}

impl Connections {
    fn judge(&self, in_use: i64, max: i64, reserved: i64) -> Outcome {
        let usable = (max - reserved).max(1);
        let percent = in_use as f64 * 100.0 / usable as f64;
        let message = format!(
            "{in_use} of {usable} connections in use ({percent:.0}%; max_connections {max}, {reserved} reserved)"
        );
        let hint = "find who holds them (SELECT usename, application_name, state, count(*) FROM pg_stat_activity \
                    GROUP BY 1, 2, 3), lower the API's pool size, or add a pooler (PgBouncer) / raise max_connections";
        if percent >= self.0.fail_percent {
            Outcome::fail(format!("{message}: new connections will soon be refused (53300)")).hint(hint)
        } else if percent >= self.0.warn_percent {
            Outcome::warn(message).hint(hint)
        } else {
            Outcome::pass(message)
        }
        .detail("percent", (percent * 10.0).round() / 10.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;

    #[test]
    fn thresholds() {
        let c = Connections(Params::default());
        assert_eq!(c.judge(10, 100, 3).verdict, Verdict::Pass);
        assert_eq!(c.judge(78, 100, 3).verdict, Verdict::Warn);
        assert_eq!(c.judge(93, 100, 3).verdict, Verdict::Fail);
        assert_eq!(c.judge(10, 100, 3).message, "10 of 97 connections in use (10%; max_connections 100, 3 reserved)");
    }
}
