//! `postgres.connections`: the server has connection slots left for the API's pool.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;

use super::pg_common::{get, query_one, session};
use crate::check::{Check, Ctx, KindDef, Outcome};

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
                let row = query_one(&session, what, SQL, &[]).await?;
                let in_use: i64 = get(&row, 0, what)?;
                let max: i32 = get(&row, 1, what)?;
                let reserved: i32 = get(&row, 2, what)?;
                let idle_in_tx: i64 = get(&row, 3, what)?;
                let complete: bool = get(&row, 4, what)?;
                Ok(self
                    .judge(in_use, i64::from(max), i64::from(reserved))
                    .detail("in_use", in_use)
                    .detail("max", max)
                    .detail("reserved", reserved)
                    .detail("idle_in_transaction", idle_in_tx)
                    .detail("complete", complete))
            };
            result.await.unwrap_or_else(|o| o)
        }
        .boxed()
    }
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
