//! `postgres.locks`: nothing holds up the API's writes — no session idle in
//! transaction for long (it pins locks and vacuum), no lock that blocks writers on
//! the tables session creation writes. Details carry pids and durations, never query
//! text (it could hold user data).

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;
use tokio_postgres::types::Type;

use super::pg_common::{get, human, query_one, session};
use crate::check::{Check, Ctx, KindDef, Outcome};

pub static KIND: KindDef = KindDef {
    name: "postgres.locks",
    title: "Locks and idle transactions",
    description: "no session idle in transaction longer than idle_in_transaction, none blocking writers on the tables",
    build: |t| {
        let p: Params = crate::check::params(t)?;
        let idle = super::pg_common::duration("idle_in_transaction", &p.idle_in_transaction)?;
        Ok(Box::new(Locks { idle, tables: p.tables }))
    },
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    idle_in_transaction: String,
    /// Tables whose writers must not be blocked.
    tables: Vec<String>,
}

impl Default for Params {
    fn default() -> Self {
        Params { idle_in_transaction: "1m".into(), tables: vec!["users".into(), "sessions".into()] }
    }
}

struct Locks {
    idle: Duration,
    tables: Vec<String>,
}

// Lock modes that conflict with ROW EXCLUSIVE (what INSERT/UPDATE/DELETE take).
const SQL: &str = "
WITH watched AS (SELECT to_regclass(format('%I', n)) AS rel FROM unnest($2::text[]) AS n)
SELECT
  (SELECT coalesce(json_agg(json_build_object(
        'pid', a.pid, 'user', a.usename, 'application', a.application_name,
        'idle_seconds', floor(extract(epoch FROM now() - a.state_change)))
        ORDER BY a.state_change), '[]')
   FROM pg_stat_activity a
   WHERE a.state LIKE 'idle in transaction%' AND a.pid <> pg_backend_pid()
     AND now() - a.state_change > make_interval(secs => $1)),
  (SELECT coalesce(json_agg(json_build_object(
        'pid', l.pid, 'mode', l.mode, 'table', c.relname,
        'transaction_seconds', floor(extract(epoch FROM now() - a.xact_start)))
        ORDER BY l.pid), '[]')
   FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
   LEFT JOIN pg_stat_activity a ON a.pid = l.pid
   WHERE l.granted AND l.locktype = 'relation' AND l.pid <> pg_backend_pid()
     AND l.relation IN (SELECT rel FROM watched)
     AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')),
  (SELECT coalesce(json_agg(json_build_object(
        'pid', l.pid, 'table', c.relname, 'blocked_by', pg_blocking_pids(l.pid),
        'waiting_seconds', floor(extract(epoch FROM now() - a.state_change)))
        ORDER BY l.pid), '[]')
   FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
   LEFT JOIN pg_stat_activity a ON a.pid = l.pid
   WHERE NOT l.granted AND l.relation IN (SELECT rel FROM watched))";

impl Check for Locks {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let result = async {
                let session = session(ctx).await?;
                let what = "the lock query";
                let secs = self.idle.as_secs_f64();
                let row =
                    query_one(&session, what, SQL, &[(&secs, Type::FLOAT8), (&self.tables, Type::TEXT_ARRAY)]).await?;
                let idle: Value = get(&row, 0, what)?;
                let holders: Value = get(&row, 1, what)?;
                let waiting: Value = get(&row, 2, what)?;
                Ok(self.judge(idle, holders, waiting))
            };
            result.await.unwrap_or_else(|o| o)
        }
        .boxed()
    }
}

impl Locks {
    fn judge(&self, idle: Value, holders: Value, waiting: Value) -> Outcome {
        let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
        let secs = |v: &Value, key: &str| human(Duration::from_secs(v[key].as_f64().unwrap_or(0.0).max(0.0) as u64));
        let mut findings = Vec::new();
        for s in list(&idle) {
            findings.push(format!("session {} idle in transaction for {}", s["pid"], secs(&s, "idle_seconds")));
        }
        for h in list(&holders) {
            findings.push(format!(
                "session {} holds {} on {} (blocks writers; transaction open {})",
                h["pid"],
                h["mode"].as_str().unwrap_or("?"),
                h["table"].as_str().unwrap_or("?"),
                secs(&h, "transaction_seconds")
            ));
        }
        for w in list(&waiting) {
            let by: Vec<String> = list(&w["blocked_by"]).iter().map(|p| p.to_string()).collect();
            findings.push(format!(
                "session {} waits {} for a lock on {} held by {}",
                w["pid"],
                secs(&w, "waiting_seconds"),
                w["table"].as_str().unwrap_or("?"),
                if by.is_empty() { "?".to_string() } else { by.join(", ") }
            ));
        }
        let outcome = if findings.is_empty() {
            Outcome::pass(format!(
                "no session idle in transaction over {}, none blocking writers on {}",
                human(self.idle),
                self.tables.join(", ")
            ))
        } else {
            Outcome::problem(findings.join("; ")).hint(
                "ask the session's owner (pg_stat_activity: usename, application_name), then end it, with the pid \
                 above: SELECT pg_terminate_backend(<pid>); idle_in_transaction_session_timeout prevents a repeat",
            )
        };
        outcome.detail("idle_in_transaction", idle).detail("blocking", holders).detail("waiting", waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn findings_name_pids_and_durations() {
        let l = Locks { idle: Duration::from_secs(60), tables: vec!["users".into(), "sessions".into()] };
        let o = l.judge(json!([]), json!([]), json!([]));
        assert_eq!(o.message, "no session idle in transaction over 1m, none blocking writers on users, sessions");
        let o = l.judge(
            json!([{"pid": 7, "idle_seconds": 125.0}]),
            json!([{"pid": 8, "mode": "AccessExclusiveLock", "table": "users", "transaction_seconds": 3.0}]),
            json!([{"pid": 9, "table": "users", "blocked_by": [8], "waiting_seconds": 2.0}]),
        );
        assert_eq!(
            o.message,
            "session 7 idle in transaction for 2m 5s; \
             session 8 holds AccessExclusiveLock on users (blocks writers; transaction open 3s); \
             session 9 waits 2s for a lock on users held by 8"
        );
    }
}
