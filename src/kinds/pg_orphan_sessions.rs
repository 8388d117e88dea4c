//! `postgres.orphan_sessions`: sessions whose user is missing (possible only when
//! the foreign key is absent or was added `NOT VALID`) or inactive. The incident's
//! other trace: sessions created for users that do not exist, which the fixed API
//! refuses with INVALID_USER_REFERENCE.
//!
//! Bounded: `LIMIT` stops at the first `limit` orphans, and a tighter `SET LOCAL
//! statement_timeout` in the same simple query (one implicit transaction, so
//! nothing outlives it) caps the scan; running out of time is "could not
//! determine", a warning with the reason.
//!
//! The scan runs on a read-only connection beside the run's shared session
//! ([`scan_session`], shared with `postgres.user`'s count): PostgreSQL runs one
//! connection's queries one after another, so a scan of a large `sessions` table
//! on the shared session holds up every other check's query for as long
//! (measured on 10 M sessions without an index on `user_id`: `postgres.schema`
//! went from 10 ms to 2.98 s). The engine starts that connection with the run
//! ([`Check::warm`]), so its handshake overlaps the shared session's.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use tokio_postgres::SimpleQueryMessage;

use super::shared::postgres::{
    NOT_FOUND_HINT, hint_name, human, ident, literal, on_tables, regclass_sql, scan_session, sqlstate,
};
use crate::check::{Check, Ctx, KindDef, Outcome};
use crate::probe::postgres::describe;
use tokio_postgres::error::SqlState;

pub static KIND: KindDef = KindDef {
    name: "postgres.orphan_sessions",
    title: "Sessions belong to active users",
    description: "no session references a missing or inactive user (bounded by LIMIT and a statement timeout)",
    build: |t| {
        let p: Params = crate::check::params(t)?;
        if p.limit == 0 {
            return Err("`limit`: at least 1".into());
        }
        let timeout = super::shared::postgres::duration("timeout", &p.timeout)?;
        Ok(Box::new(Orphans { p, timeout }))
    },
};

const EXAMPLES: usize = 5;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    users: String,
    sessions: String,
    /// Orphans looked for at most.
    limit: u32,
    /// The statement timeout of the search (capped by `--timeout`).
    timeout: String,
}

impl Default for Params {
    fn default() -> Self {
        Params { users: "users".into(), sessions: "sessions".into(), limit: 1000, timeout: "4s".into() }
    }
}

struct Orphans {
    p: Params,
    timeout: Duration,
}

impl Check for Orphans {
    fn warm(&self, ctx: &Ctx) {
        ctx.warm_postgres_scan();
    }

    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let limit_time = self
                .timeout
                .min(ctx.timeout.saturating_sub(Duration::from_millis(500)))
                .max(Duration::from_millis(100));
            let pg = match scan_session(ctx).await {
                Ok(s) => s,
                Err(o) => return o,
            };
            let (users, sessions) = (ident(&self.p.users), ident(&self.p.sessions));
            // A validated foreign key rules missing users out: then only inactive
            // users need looking for, which stays cheap (a hash of the inactive
            // users, empty in the common case) instead of joining every session.
            let fk = format!(
                "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE contype = 'f' AND convalidated \
                 AND conrelid = {} AND confrelid = {})",
                regclass_sql(&literal(&self.p.sessions), None),
                regclass_sql(&literal(&self.p.users), None)
            );
            // The search picks its branch itself, so it need not wait for the lookup:
            // the lookup is a gating one-time filter (an InitPlan), and the branch it
            // rules out is never executed (EXPLAIN ANALYZE: "never executed").
            let sql = format!(
                "SET LOCAL statement_timeout = {}; \
                 WITH fk AS MATERIALIZED ({fk} AS valid) \
                 (SELECT s.id::text, false FROM {sessions} s \
                   WHERE (SELECT valid FROM fk) \
                     AND s.user_id IN (SELECT u.id FROM {users} u WHERE u.is_active IS NOT TRUE)) \
                 UNION ALL \
                 (SELECT s.id::text, (u.id IS NULL) FROM {sessions} s LEFT JOIN {users} u ON u.id = s.user_id \
                   WHERE NOT (SELECT valid FROM fk) AND (u.id IS NULL OR u.is_active IS NOT TRUE)) \
                 LIMIT {}",
                limit_time.as_millis(),
                self.p.limit
            );
            // Both pipelined: one round trip. The lookup alone again for the report,
            // so a search that runs out of time still says which one it was.
            let (fk, search) = futures::join!(pg.simple_query(&fk), pg.simple_query(&sql));
            let fk = match fk {
                Ok(m) => rows(&m).first().map(|(v, _)| v == "t").unwrap_or(false),
                Err(e) => return super::shared::postgres::query_failed("the foreign key lookup", &e),
            };
            let tables = [self.p.users.as_str(), self.p.sessions.as_str()];
            let outcome = match search {
                Ok(messages) => self.judge(&rows(&messages)),
                Err(e) => on_tables(match sqlstate(&e) {
                    Some(&SqlState::QUERY_CANCELED) => Outcome::warn(format!(
                        "could not determine within {} (57014)",
                        human(limit_time)
                    ))
                    .hint(format!(
                        "{0} is large, the server is busy, or a lock on {0} holds up reads (postgres.locks names the \
                         session holding it): raise this check's timeout (and --timeout), or run it off-peak",
                        self.p.sessions
                    )),
                    Some(&SqlState::UNDEFINED_TABLE) => Outcome::problem(format!("cannot read the tables: {}", describe(&e))).hint(NOT_FOUND_HINT),
                    _ => super::shared::postgres::query_failed("the orphan search", &e),
                }, &e, &tables),
            };
            outcome.detail("limit", self.p.limit).detail("foreign_key", fk)
        }
        .boxed()
    }
}

/// (session id, user missing) of each row.
fn rows(messages: &[SimpleQueryMessage]) -> Vec<(String, bool)> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((r.get(0)?.to_string(), r.try_get(1).ok().flatten() == Some("t"))),
            _ => None,
        })
        .collect()
}

impl Orphans {
    fn judge(&self, found: &[(String, bool)]) -> Outcome {
        let missing = found.iter().filter(|(_, m)| *m).count();
        let inactive = found.len() - missing;
        let examples: Vec<&str> = found.iter().take(EXAMPLES).map(|(id, _)| id.as_str()).collect();
        let count = if found.len() >= self.p.limit as usize {
            format!("at least {}", found.len())
        } else {
            found.len().to_string()
        };
        let outcome = if found.is_empty() {
            Outcome::pass(format!("every session belongs to an active user in {}", self.p.users))
        } else {
            let mut parts = Vec::new();
            if missing > 0 {
                parts.push(format!("{missing} with no user row"));
            }
            if inactive > 0 {
                parts.push(format!("{inactive} of an inactive user"));
            }
            let hint = if missing > 0 {
                format!(
                    "sessions without a user exist only when the foreign key is missing: remove or reassign these \
                     rows, then restore it: ALTER TABLE {s} ADD FOREIGN KEY (user_id) REFERENCES {u} (id);",
                    s = hint_name(&self.p.sessions),
                    u = hint_name(&self.p.users)
                )
            } else {
                "sessions of deactivated users: expected after an account is closed; if not, reactivate the user"
                    .to_string()
            };
            let message = if found.len() == 1 {
                let why = if missing == 1 { "with no user row" } else { "of an inactive user" };
                format!("{count} orphan session ({why}): {}", examples.join(", "))
            } else {
                format!("{count} orphan sessions ({}), e.g. {}", parts.join(", "), examples.join(", "))
            };
            Outcome::problem(message).hint(hint)
        };
        outcome
            .detail("count", found.len())
            .detail("missing_user", missing)
            .detail("inactive_user", inactive)
            .detail("examples", examples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;

    #[test]
    fn verdicts_count_within_the_bound() {
        let o = Orphans { p: Params { limit: 2, ..Params::default() }, timeout: Duration::from_secs(1) };
        assert_eq!(o.judge(&[]).verdict, Verdict::Pass);
        let two = [("a".to_string(), true), ("b".to_string(), false)];
        let r = o.judge(&two);
        assert_eq!(r.verdict, Verdict::Problem);
        assert_eq!(r.message, "at least 2 orphan sessions (1 with no user row, 1 of an inactive user), e.g. a, b");
        assert_eq!(r.details["examples"], serde_json::json!(["a", "b"]));
        let o = Orphans { p: Params::default(), timeout: Duration::from_secs(1) };
        let r = o.judge(&[("a".to_string(), false)]);
        assert_eq!(r.message, "1 orphan session (of an inactive user): a");
        assert!(r.hint.unwrap_or_default().contains("reactivate"));
        let r = o.judge(&[("a".to_string(), true)]);
        assert!(
            r.hint
                .unwrap_or_default()
                .ends_with("ALTER TABLE sessions ADD FOREIGN KEY (user_id) REFERENCES users (id);")
        );
    }
}
