//! `postgres.user`: one user's side of "User X cannot create a session" (support
//! tickets, `--user-id UUID`): does the row exist, is it active and verified, how
//! many credits, how many sessions, and how many of those Redis has cached.
//!
//! Read-only, on the run's shared session. The user's row is read as `to_jsonb`
//! so a missing optional column (`is_verified`) is reported as unknown instead of
//! failing the lookup. The sessions are counted with a bounded query under a
//! tighter `SET LOCAL statement_timeout` (one implicit transaction, like
//! `postgres.active_users`): without an index on `sessions.user_id` that is a
//! full scan (about 1 s on 10 M sessions), so it runs on a read-only connection of
//! its own rather than holding up the shared session's other queries, and running
//! out of time costs the count, not the verdict. The user lookup also asks whether
//! an index leads with `sessions.user_id` (free: same round trip); when there is
//! none, the details say `CREATE INDEX CONCURRENTLY …`, and a slow or timed-out
//! count says it in the message too. Redis is optional here: when it cannot be
//! reached the cached count says so.

use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::shared::postgres::{
    ApiError, hint_name, human, ident, on_tables, plural, query_failed, scan_session, session, sqlstate,
};
use crate::check::{Check, Ctx, KindDef, Outcome, Premise};
use crate::probe::postgres::{PgSession, describe};
use tokio_postgres::error::SqlState;

pub static KIND: KindDef = KindDef {
    name: "postgres.user",
    title: "The user in the support ticket",
    description: "with --user-id: the user exists, is active and verified, has credits; counts their sessions and how many Redis has cached",
    build: |t| {
        let p: Params = crate::check::params(t)?;
        super::shared::redis::key_prefix(&p.key_prefix)?;
        if p.max_sessions == 0 {
            return Err("`max_sessions`: at least 1".into());
        }
        Ok(Box::new(UserCheck(p)))
    },
};

pub const NO_USER_ID: &str = "no --user-id given; pass --user-id UUID to diagnose one user";

/// Kept from the deadline for Redis and the report.
const MARGIN: Duration = Duration::from_millis(300);

/// A count slower than this, without an index, names the fix in the message.
const SLOW_COUNT: Duration = Duration::from_millis(200);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    users: String,
    sessions: String,
    /// The Redis key of a cached session is this prefix and the session id.
    key_prefix: String,
    /// Sessions counted (and looked up in Redis) at most.
    max_sessions: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params { users: "users".into(), sessions: "sessions".into(), key_prefix: "session:".into(), max_sessions: 1000 }
    }
}

struct UserCheck(Params);

impl Check for UserCheck {
    fn warm(&self, ctx: &Ctx) {
        // Only a run with --user-id counts sessions.
        if ctx.user_id.is_some() {
            ctx.warm_postgres_scan();
        }
    }

    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let Some(id) = ctx.user_id else {
                return Outcome::skip(NO_USER_ID);
            };
            let end = Instant::now() + ctx.timeout.saturating_sub(MARGIN).max(Duration::from_millis(100));
            self.diagnose(ctx, id, end).await.unwrap_or_else(|o| o).detail("user_id", id.to_string())
        }
        .boxed()
    }
}

/// The user's row, as far as the API looks at it.
struct UserRow {
    active: Option<bool>,
    verified: Option<bool>,
    credits: Option<i64>,
    /// A valid index leads with `sessions.user_id`.
    indexed: bool,
}

/// How counting the user's sessions went.
enum Count {
    /// Their ids, up to the bound plus one (to know "more").
    Counted(Vec<String>),
    /// The count's own statement timeout fired (no index, a huge table).
    TimedOut(Duration),
    /// It could not run: why.
    Failed(String),
}

impl UserCheck {
    async fn diagnose(&self, ctx: &Ctx, id: Uuid, end: Instant) -> Result<Outcome, Outcome> {
        let p = &self.0;
        let Some(user) = self.lookup(ctx, id).await? else {
            return Ok(Outcome::problem(format!(
                "user {id} does not exist: session creation answers {}",
                ApiError::InvalidUserReference
            ))
            .hint("check the id in the user's token (the account may have been deleted, or belong to another environment)")
            .detail("exists", false)
            .detail("api_error", ApiError::InvalidUserReference)
            .reports(Premise::User(id)));
        };
        let index_fix = (!user.indexed).then(|| create_index(&p.sessions));
        let counting = Instant::now();
        let count = match scan_session(ctx).await {
            Ok(scan) => self.count(&scan, id, end).await,
            Err(o) => Count::Failed(o.message),
        };
        let count_ms = counting.elapsed();
        // Without the index the count reads the whole table (about 1 s on 10 M rows).
        let slow = count_ms >= SLOW_COUNT || matches!(count, Count::TimedOut(_));
        let slow_fix = index_fix.clone().filter(|_| slow);
        let (cached, cache_note) = match &count {
            Count::Counted(ids) if !ids.is_empty() => self.cached(ctx, ids, end).await,
            Count::Counted(_) => (Some(0), None),
            _ => (None, Some("cached sessions not counted".to_string())),
        };
        let sessions = match &count {
            Count::Counted(ids) => Some(ids.len() as u64),
            _ => None,
        };
        let mut facts = user_facts(&user);
        facts.push(self.count_fact(&count, count_ms, slow_fix.as_deref()));
        match (cached, &cache_note) {
            (Some(n), _) => facts.push(format!("{n} cached in Redis")),
            (None, Some(why)) => facts.push(why.clone()),
            (None, None) => {}
        }
        let outcome = self.verdict(id, &user, format!("user {id}: {}", facts.join(", ")));
        // A pass carries no hint: the fix for a slow count goes in the details too.
        let outcome = match (&slow_fix, outcome.hint.is_some()) {
            (Some(fix), false) => outcome.hint(fix.clone()),
            _ => outcome,
        };
        Ok(outcome
            .detail("exists", true)
            .detail("is_active", user.active)
            .detail("is_verified", user.verified)
            .detail("credits", user.credits)
            .detail("sessions", sessions)
            .detail("sessions_bound", p.max_sessions)
            .detail("sessions_ms", u64::try_from(count_ms.as_millis()).unwrap_or(u64::MAX))
            .detail("user_id_indexed", user.indexed)
            .detail("index_hint", index_fix)
            .detail("cached_sessions", cached)
            .detail("cache_note", cache_note))
    }

    /// The user's row (`None`: no such user), read as `to_jsonb` so that a missing
    /// optional column reads as unknown instead of failing the lookup; and whether
    /// a valid index leads with `sessions.user_id` (same round trip; false when the
    /// table does not resolve, the count then says why).
    async fn lookup(&self, ctx: &Ctx, id: Uuid) -> Result<Option<UserRow>, Outcome> {
        let pg = session(ctx).await?;
        let sql = format!(
            "SELECT to_jsonb(u), EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a \
               ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
               WHERE i.indrelid = to_regclass($2) AND i.indisvalid AND a.attname = 'user_id') \
             FROM {} u WHERE u.id = $1",
            ident(&self.0.users)
        );
        let sessions_table = ident(&self.0.sessions);
        let row = pg
            .query_typed_opt(&sql, &[(&id, Type::UUID), (&sessions_table, Type::TEXT)])
            .await
            .map_err(|e| on_tables(query_failed("the user lookup", &e), &e, &[&self.0.users]))?;
        let Some(row) = row else { return Ok(None) };
        let unexpected =
            |e: tokio_postgres::Error| Outcome::problem(format!("unexpected reply to the user lookup: {e}"));
        let user: Value = row.try_get(0).map_err(unexpected)?;
        let indexed: bool = row.try_get(1).map_err(unexpected)?;
        Ok(Some(UserRow {
            active: user.get("is_active").and_then(Value::as_bool),
            verified: user.get("is_verified").and_then(Value::as_bool),
            credits: user.get("credits").and_then(Value::as_i64),
            indexed,
        }))
    }

    /// `3 sessions`, `more than 1000 sessions`, `sessions not counted (…)`, with the
    /// index fix when counting was slow.
    fn count_fact(&self, count: &Count, took: Duration, slow_fix: Option<&str>) -> String {
        let bound = self.0.max_sessions;
        let with_fix = |text: String| match slow_fix {
            Some(fix) => format!("{text}; {fix}"),
            None => text,
        };
        match count {
            Count::Counted(ids) if ids.len() as u64 > u64::from(bound) => format!("more than {bound} sessions"),
            Count::Counted(ids) => {
                let counted = plural(ids.len(), "session", "sessions");
                match slow_fix {
                    Some(fix) => format!(
                        "{counted} (counted in {} ms: no index on {}.user_id; {fix})",
                        took.as_millis(),
                        self.0.sessions
                    ),
                    None => counted,
                }
            }
            Count::TimedOut(after) => {
                format!("sessions not counted ({})", with_fix(format!("no answer within {}", human(*after))))
            }
            Count::Failed(why) => format!("sessions not counted ({})", with_fix(why.clone())),
        }
    }

    /// What session creation answers this user.
    fn verdict(&self, id: Uuid, user: &UserRow, summary: String) -> Outcome {
        let users = hint_name(&self.0.users);
        if user.active != Some(true) {
            Outcome::problem(format!("{summary}: session creation answers {}", ApiError::InvalidUserReference))
                .hint(format!("if the account should work: UPDATE {users} SET is_active = true WHERE id = '{id}';"))
                .detail("api_error", ApiError::InvalidUserReference)
                .reports(Premise::User(id))
        } else if user.credits.is_none_or(|c| c <= 0) {
            Outcome::warn(format!("{summary}: session creation answers {}", ApiError::InsufficientCredits))
                .hint(format!("if the user should have credits: UPDATE {users} SET credits = 10 WHERE id = '{id}';"))
                .detail("api_error", ApiError::InsufficientCredits)
                .reports(Premise::User(id))
        } else {
            Outcome::pass(summary).detail("api_error", Value::Null)
        }
    }

    /// The user's session ids, up to the bound plus one, under a tighter
    /// `SET LOCAL statement_timeout` (one implicit transaction).
    async fn count(&self, pg: &PgSession, id: Uuid, end: Instant) -> Count {
        let left = end.saturating_duration_since(Instant::now()).saturating_sub(MARGIN).max(Duration::from_millis(100));
        // A UUID's text is hex and dashes: safe to inline (a simple query takes no
        // parameters, and SET LOCAL needs one).
        let sql = format!(
            "SET LOCAL statement_timeout = {}; SELECT id::text FROM {} WHERE user_id = '{id}' LIMIT {}",
            left.as_millis(),
            ident(&self.0.sessions),
            u64::from(self.0.max_sessions) + 1
        );
        match pg.simple_query(&sql).await {
            Ok(messages) => Count::Counted(
                messages
                    .iter()
                    .filter_map(|m| match m {
                        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                        _ => None,
                    })
                    .collect(),
            ),
            Err(e) if sqlstate(&e) == Some(&SqlState::QUERY_CANCELED) => Count::TimedOut(left),
            Err(e) => Count::Failed(describe(&e)),
        }
    }

    /// How many of `ids` have a key in Redis; `None` and why when Redis is not there.
    async fn cached(&self, ctx: &Ctx, ids: &[String], end: Instant) -> (Option<u64>, Option<String>) {
        let lookup = async {
            let redis = ctx
                .redis()
                .await
                .map_err(|f| format!("Redis unreachable ({}): cached sessions not counted", f.message))?;
            let mut pipe = redis::pipe();
            let bounded = &ids[..ids.len().min(self.0.max_sessions as usize)];
            let mut exists = redis::cmd("EXISTS");
            for id in bounded {
                exists.arg(format!("{}{id}", self.0.key_prefix));
            }
            pipe.add_command(exists);
            let replies = redis.round(&pipe, "EXISTS").await.map_err(|f| format!("Redis: {}", f.message))?;
            match replies.into_iter().next() {
                Some(Ok(redis::Value::Int(n))) => Ok(n.max(0) as u64),
                Some(Err(e)) => Err(format!("Redis refused EXISTS: {e}")),
                other => Err(format!("unexpected reply to EXISTS: {other:?}")),
            }
        };
        match tokio::time::timeout_at(end.into(), lookup).await {
            Ok(Ok(n)) => (Some(n), None),
            Ok(Err(why)) => (None, Some(why)),
            Err(_) => (None, Some("Redis did not answer in time: cached sessions not counted".to_string())),
        }
    }
}

/// `active, verified, 10 credits`: the row's facts in words.
fn user_facts(user: &UserRow) -> Vec<String> {
    vec![
        match user.active {
            Some(true) => "active".to_string(),
            Some(false) => "INACTIVE".to_string(),
            None => "is_active unknown".to_string(),
        },
        match user.verified {
            Some(true) => "verified".to_string(),
            Some(false) => "not verified".to_string(),
            None => "is_verified unknown".to_string(),
        },
        match user.credits {
            Some(c) => format!("{c} credits"),
            None => "credits unknown".to_string(),
        },
    ]
}

/// The index the API's per-user session lookups need; CONCURRENTLY so that
/// building it on a live table does not block the API's inserts.
fn create_index(sessions: &str) -> String {
    format!("CREATE INDEX CONCURRENTLY ON {} (user_id);", hint_name(sessions))
}

#[cfg(test)]
mod tests {
    use crate::check::testing::run_kind;
    use crate::report::Status;

    #[tokio::test]
    async fn without_user_id_it_is_skipped() {
        let r = run_kind(&super::KIND, "", &[], "production").await;
        assert_eq!((r.status, r.message.as_str()), (Status::Skip, super::NO_USER_ID));
    }

    #[test]
    fn index_fix_names_the_table() {
        assert_eq!(super::create_index("sessions"), "CREATE INDEX CONCURRENTLY ON sessions (user_id);");
        assert_eq!(super::create_index("app.sessions"), "CREATE INDEX CONCURRENTLY ON app.sessions (user_id);");
        assert_eq!(super::create_index("Sessions"), "CREATE INDEX CONCURRENTLY ON \"Sessions\" (user_id);");
    }
}
