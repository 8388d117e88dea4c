//! `postgres.session_insert`: a dry run of session creation, always rolled back.
//!
//! The incident: the API answered 201 while its insert into `sessions` had failed.
//! Read-only probes cannot see every cause (a trigger, a NOT NULL column a
//! migration added, a permission, a read-only endpoint), so with `--allow-writes`
//! this check does what `POST /api/sessions/create` does — pick an active user,
//! insert a session, read it back — and rolls back. The outcome names the error
//! code the API would have answered (`details.api_error`), so ops can match it to
//! what users saw.
//!
//! Nothing is left behind, by construction: the code never sends `COMMIT`. The
//! transaction ends with `ROLLBACK`, or — when the deadline fires or ROLLBACK does
//! not answer — with the connection, and PostgreSQL aborts an uncommitted
//! transaction when its connection ends. Server-side timeouts set inside the
//! transaction bound how long the server can hold it if this process vanishes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use tokio_postgres::Client;
use tokio_postgres::error::{DbError, SqlState};
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::shared::lock_view::Backend;
use super::shared::postgres::{
    ApiError, CREATE_USER, Denied, MIGRATE_HINT, NOT_FOUND_HINT, Param, denied, hint_name, human, ident,
};
use crate::check::{Check, Ctx, KindDef, Outcome, Premise, Service};
use crate::probe::postgres::{APPLICATION_NAME, PgSession, PgTarget, PgWriter, describe};

pub static KIND: KindDef = KindDef {
    name: "postgres.session_insert",
    title: "Session creation works (dry run, rolled back)",
    description: "with --allow-writes: inserts a session the way the API does for an active user (or --user-id), reads it back and rolls back; names the API error code users would see",
    build: |t| {
        let p: Params = crate::check::params(t)?;
        if p.duration <= 0 {
            return Err("`duration`: minutes, a positive integer".into());
        }
        Ok(Box::new(SessionInsert(p)))
    },
};

/// The skip message without `--allow-writes` (a contract: scripts match it).
pub const READ_ONLY_RUN: &str = "read-only run; pass --allow-writes to dry-run session creation";

const INVALID_USER_REFERENCE: ApiError = ApiError::InvalidUserReference;
const INSUFFICIENT_CREDITS: ApiError = ApiError::InsufficientCredits;

/// Kept from the check's deadline for ROLLBACK, or for saying who blocks us and
/// ending our backend (`BLOCKERS_WAIT` + `TERMINATE_WAIT`), before the engine's
/// deadline would cut the report short.
const REPORT_MARGIN: Duration = Duration::from_millis(500);
/// The least time the dry run gets, whatever `--timeout` says.
const MIN_BUDGET: Duration = Duration::from_millis(200);
/// How long ROLLBACK may take before we close the connection instead.
const ROLLBACK_WAIT: Duration = Duration::from_millis(300);
const BLOCKERS_WAIT: Duration = Duration::from_millis(150);
/// How long the catalog may take to say which trigger or key a failure came from.
const TRACE_WAIT: Duration = Duration::from_millis(300);
const TERMINATE_WAIT: Duration = Duration::from_millis(200);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    users: String,
    sessions: String,
    /// The row the API would insert (the runbook's test request).
    job_title: String,
    difficulty: String,
    duration: i32,
    session_type: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            users: "users".into(),
            sessions: "sessions".into(),
            job_title: "mockmate-diag dry run (rolled back)".into(),
            difficulty: "intermediate".into(),
            duration: 30,
            session_type: "technical".into(),
        }
    }
}

struct SessionInsert(Params);

/// The user the dry run creates a session for.
#[derive(Debug, Clone, Copy)]
struct User {
    id: Uuid,
    credits: i64,
}

/// What the dry run found before it rolled back.
enum Found {
    /// Inserted and read back.
    Created { user: User, session: Uuid, status: Option<String> },
    /// The API stops before inserting: the user does not exist or is inactive.
    NoUser { user: Option<Uuid>, why: String },
    /// Inserted, but the row is invisible to the same transaction (RLS, a rule).
    NotReadBack { user: User, session: Uuid },
    /// A statement failed: which step, and the error.
    Failed { step: &'static str, user: Option<User>, error: tokio_postgres::Error },
}

impl Check for SessionInsert {
    /// The dry run writes (and rolls back): never before its needs have passed.
    fn only_reads(&self) -> bool {
        false
    }

    fn warm(&self, ctx: &Ctx) {
        // Only the dry run's connection, never a write: that waits for `run`.
        if ctx.allow_writes {
            ctx.warm_postgres_write(budget(ctx));
        }
    }

    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            if !ctx.allow_writes {
                return Outcome::skip(READ_ONLY_RUN);
            }
            let budget = budget(ctx);
            let end = Instant::now() + budget;
            let target = match ctx.postgres_target() {
                Ok(t) => t,
                Err(f) => return Outcome::from_failure(f),
            };
            // A connection of its own, not the run's shared session: that one pipelines
            // every check's queries, so a transaction opened on it would capture the
            // other checks' statements (and its session is read-only by design). The
            // engine started it with the run (`warm`), within the same budget.
            let conn = match ctx.postgres_write(end.saturating_duration_since(Instant::now())).await {
                Ok(c) => c,
                Err(f) => {
                    return Outcome::problem(format!("cannot open the dry run's own connection: {}", f.message))
                        .hint(f.hint.unwrap_or_else(|| "see postgres.connect".into()));
                }
            };
            self.dry_run(ctx, conn, &target, end, budget).await
        }
        .boxed()
    }
}

/// The dry run's time: `--timeout` less what the report needs afterwards.
fn budget(ctx: &Ctx) -> Duration {
    ctx.timeout.saturating_sub(REPORT_MARGIN).max(MIN_BUDGET)
}

impl SessionInsert {
    async fn dry_run(&self, ctx: &Ctx, conn: PgWriter, target: &PgTarget, end: Instant, budget: Duration) -> Outcome {
        let client = conn.client();
        let role = target.user.clone();
        // One message: the transaction with the API's defaults (a database set
        // read-only by ALTER DATABASE … SET default_transaction_read_only fails the
        // insert with 25006, as it does for the API), and server-side bounds in case
        // this process vanishes mid-transaction: the statement and an idle
        // transaction end on their own a little after our deadline, and
        // (PostgreSQL ≥ 14, hence the CASE) a closed client socket is noticed even
        // while a statement waits for a lock. Every setting is LOCAL: behind a
        // pooler, nothing outlives the transaction. The pid is read inside it, so it
        // names the backend that holds the transaction (a pooler may use another
        // for a later statement).
        let server_ms = budget.as_millis() + 1000;
        let begin_sql = format!(
            "BEGIN; SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = {server_ms}; \
             SET LOCAL idle_in_transaction_session_timeout = {server_ms}; \
             SET LOCAL application_name = '{APPLICATION_NAME}'; \
             SELECT pg_backend_pid(), CASE WHEN current_setting('server_version_num')::int >= 140000 \
               THEN set_config('client_connection_check_interval', '250', true) END"
        );
        let begin = async {
            let messages = client.simple_query(&begin_sql).await?;
            let pid = messages
                .iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse::<i32>().ok(),
                    _ => None,
                })
                .unwrap_or(0);
            Ok::<i32, tokio_postgres::Error>(pid)
        };
        let pid = match tokio::time::timeout_at(end.into(), begin).await {
            Ok(Ok(pid)) => pid,
            Ok(Err(e)) => return Outcome::problem(format!("cannot start the dry run's transaction: {}", describe(&e))),
            Err(_) => return Outcome::problem(format!("timed out after {} starting the dry run", human(budget))),
        };

        let progress = std::sync::Mutex::new(Progress { step: "the user lookup", user: None });
        let work = tokio::time::timeout_at(end.into(), self.steps(client, ctx.user_id, &progress)).await;
        match work {
            Ok(found) => {
                // Who the failure belongs to (a trigger, a foreign key's real target),
                // read from the catalog while the connection is still ours.
                let trace = async {
                    match &found {
                        Found::Failed { error, .. } => self.trace(ctx, error).await,
                        _ => Trace::default(),
                    }
                };
                let rollback = tokio::time::timeout(ROLLBACK_WAIT, client.batch_execute("ROLLBACK"));
                let (trace, rolled_back) = futures::join!(trace, rollback);
                let rolled_back = matches!(rolled_back, Ok(Ok(())));
                // If ROLLBACK did not answer, dropping the connection below ends the
                // transaction instead.
                drop(conn);
                // Either way the transaction is gone: `ended_by` says how.
                self.judge(found, &role, &trace)
                    .detail("rolled_back", true)
                    .detail("ended_by", if rolled_back { "ROLLBACK" } else { "connection closed" })
            }
            Err(_elapsed) => {
                // Something blocks the insert (or the server stopped answering). Say
                // what it waits for and behind whom, then end our backend so its
                // transaction aborts now rather than when the lock frees; the dropped
                // connection is the last resort.
                let progress = *progress.lock().unwrap_or_else(|e| e.into_inner());
                let wait = waiting_for(ctx, pid).await;
                terminate(ctx, pid).await;
                drop(conn);
                self.timed_out(progress, wait, budget, &role)
                    .detail("rolled_back", true)
                    .detail("ended_by", "backend terminated")
            }
        }
    }

    /// The dry run ran out of time in `progress`'s step: what it waited for, from
    /// `pg_locks` (read before our backend was ended), as the on-call engineer acts on it.
    fn timed_out(&self, progress: Progress, wait: Option<Waiting>, budget: Duration, viewer: &str) -> Outcome {
        let (users, sessions) = (&self.0.users, &self.0.sessions);
        let step = progress.step;
        let after = format!("timed out after {} in {step}", human(budget));
        let user = progress.user.map(|u| format!("user {u}'s")).unwrap_or_else(|| "the user's".into());
        let base = |o: Outcome| o.detail("api_error", serde_json::Value::Null).detail("step", step);
        let wait = match wait {
            // The question did not get through in time (behind a pooler whose one server
            // connection this transaction holds, it cannot): say so, guess nothing.
            None => {
                return base(Outcome::problem(format!(
                    "{after}: it waits for a lock or a busy server; what it waits for could not be read in time \
                     (pg_locks, from the run's other connection)"
                )))
                .hint("see postgres.locks for a lock on users or sessions; otherwise check the server's load and log");
            }
            Some(w) if w.locktype.is_none() => {
                return base(Outcome::problem(format!(
                    "{after}: the server did not answer in time, and the statement was not waiting for a lock"
                )))
                .hint(
                    "the server is overloaded or the statement is slow (a trigger?): check the server's load and log",
                );
            }
            Some(w) => w,
        };
        let blockers: Vec<String> = wait.blockers.iter().map(|b| b.describe(viewer)).collect();
        let by = if blockers.is_empty() { "a backend the role cannot see".to_string() } else { blockers.join(", ") };
        let holds = wait.held.iter().map(|h| format!("{} on {}", h.mode, h.table)).collect::<Vec<_>>();
        let queries: String = wait.blockers.iter().map(|b| b.query_note()).collect();
        let (message, who) = match (wait.locktype.as_deref(), wait.row_of.as_deref(), wait.table.as_deref()) {
            (Some("transactionid" | "tuple"), Some(t), _) if t == users => (
                format!(
                    "{after}: the insert's foreign-key check waits for a lock on {user} row in {users} (FOR KEY SHARE), \
                     locked by {by}: that user cannot create a session until it ends{queries}"
                ),
                "row",
            ),
            (Some("transactionid" | "tuple"), row, _) => (
                format!(
                    "{after}: it waits for a row lock{} held by {by}{queries}",
                    row.map(|t| format!(" on {t}")).unwrap_or_default()
                ),
                "row",
            ),
            (_, _, Some(t)) => (
                format!(
                    "{after}: it waits for {} on {t}, {}: every session {} waits the same way{queries}",
                    wait.mode.as_deref().unwrap_or("a lock"),
                    if holds.is_empty() {
                        format!("held by {by}")
                    } else {
                        format!("held by {by} ({})", holds.join(", "))
                    },
                    if t == sessions { "insert" } else { "creation" }
                ),
                "table",
            ),
            _ => (
                format!("{after}: it waits for a {} lock held by {by}{queries}", wait.locktype.unwrap_or_default()),
                "other",
            ),
        };
        let fixes: Vec<String> = wait.blockers.iter().filter_map(|b| b.end_statement()).collect();
        let hint = if fixes.is_empty() {
            "see postgres.locks for the transaction holding the lock".to_string()
        } else {
            format!(
                "ask its owner, then end it: {} — the API's inserts are stuck behind it too; \
                 idle_in_transaction_session_timeout (ALTER ROLE … SET) ends idle ones by itself",
                fixes.join(" ")
            )
        };
        let pids: Vec<Option<i32>> = wait.blockers.iter().map(|b| b.pid).collect();
        base(Outcome::problem(message).hint(hint))
            .detail("blocked_by", pids)
            .detail("lock", who)
            .detail("user_id", progress.user.map(|u| u.to_string()))
    }

    /// The API's steps inside the transaction; the first failure stops them.
    async fn steps(&self, client: &Client, wanted: Option<Uuid>, progress: &std::sync::Mutex<Progress>) -> Found {
        let at = |step: &'static str, user: Option<Uuid>| {
            *progress.lock().unwrap_or_else(|e| e.into_inner()) = Progress { step, user };
        };
        let p = &self.0;
        let (users, sessions) = (ident(&p.users), ident(&p.sessions));
        let user = match wanted {
            Some(id) => {
                let sql = format!("SELECT is_active, credits::bigint FROM {users} WHERE id = $1");
                match client.query_typed_opt(&sql, &[(&id, Type::UUID)]).await {
                    Err(error) => return Found::Failed { step: "the user lookup", user: None, error },
                    Ok(None) => return Found::NoUser { user: Some(id), why: format!("no row in {}", p.users) },
                    Ok(Some(row)) => {
                        let active: Option<bool> = row.try_get(0).ok().flatten();
                        if active != Some(true) {
                            return Found::NoUser { user: Some(id), why: "is_active is not true".into() };
                        }
                        User { id, credits: row.try_get::<_, Option<i64>>(1).ok().flatten().unwrap_or(0) }
                    }
                }
            }
            None => {
                // Prefer a user the API would let through (credits > 0); each branch
                // stops at its first match, so this stays cheap on a large table.
                let sql = format!(
                    "(SELECT id, credits::bigint FROM {users} WHERE is_active = true AND credits > 0 LIMIT 1) \
                     UNION ALL (SELECT id, credits::bigint FROM {users} WHERE is_active = true LIMIT 1) LIMIT 1"
                );
                match client.query_typed_opt(&sql, &[]).await {
                    Err(error) => return Found::Failed { step: "the user lookup", user: None, error },
                    Ok(None) => return Found::NoUser { user: None, why: format!("no active user in {}", p.users) },
                    Ok(Some(row)) => match row.try_get::<_, Uuid>(0) {
                        Ok(id) => User { id, credits: row.try_get::<_, Option<i64>>(1).ok().flatten().unwrap_or(0) },
                        Err(e) => {
                            return Found::NoUser { user: None, why: format!("{}.id is not a uuid ({e})", p.users) };
                        }
                    },
                }
            }
        };
        at("the insert", Some(user.id));
        let insert = format!(
            "INSERT INTO {sessions} (user_id, job_title, difficulty, duration, session_type) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id"
        );
        // UNKNOWN lets the server type the text values from their columns (an enum,
        // varchar …), as it does for the API's driver, which sends them untyped.
        let params: [Param<'_>; 5] = [
            (&user.id, Type::UUID),
            (&p.job_title, Type::UNKNOWN),
            (&p.difficulty, Type::UNKNOWN),
            (&p.duration, Type::INT4),
            (&p.session_type, Type::UNKNOWN),
        ];
        let session: Uuid = match client.query_typed_one(&insert, &params).await {
            Ok(row) => match row.try_get(0) {
                Ok(id) => id,
                Err(e) => {
                    return Found::NoUser {
                        user: Some(user.id),
                        why: format!("{}.id is not a uuid ({e})", p.sessions),
                    };
                }
            },
            Err(error) => return Found::Failed { step: "the insert", user: Some(user), error },
        };
        // What the desktop app does next: fetch the session it was told exists.
        at("reading the session back", Some(user.id));
        // `status` through to_jsonb: a table without the column (not required) reads NULL.
        let read = format!("SELECT to_jsonb(s) ->> 'status' FROM {sessions} s WHERE s.id = $1");
        match client.query_typed_opt(&read, &[(&session, Type::UUID)]).await {
            Ok(Some(row)) => Found::Created { user, session, status: row.try_get(0).ok().flatten() },
            Ok(None) => Found::NotReadBack { user, session },
            Err(error) => Found::Failed { step: "reading the session back", user: Some(user), error },
        }
    }

    /// Reads from the catalog who a failed statement's error belongs to: the trigger
    /// its context names (`where`: "PL/pgSQL function f() line 3 at RAISE"), among
    /// the triggers on the tables the route writes, and a violated foreign key's
    /// real target. Nothing on a timeout: the failure is reported without it.
    async fn trace(&self, ctx: &Ctx, error: &tokio_postgres::Error) -> Trace {
        let Some(db) = error.as_db_error() else { return Trace::default() };
        let context = db.where_().unwrap_or_default();
        let fk = (*db.code() == SqlState::FOREIGN_KEY_VIOLATION).then(|| db.constraint()).flatten();
        if context.is_empty() && fk.is_none() {
            return Trace::default();
        }
        let (users, sessions) = (ident(&self.0.users), ident(&self.0.sessions));
        let constraint = fk.unwrap_or_default().to_string();
        let query = async {
            let session: Arc<PgSession> = ctx.postgres().await.ok()?;
            let params: [Param<'_>; 3] = [(&users, Type::TEXT), (&sessions, Type::TEXT), (&constraint, Type::TEXT)];
            let rows = session.query_typed(TRACE_SQL, &params).await.ok()?;
            let json: serde_json::Value = rows.first()?.try_get(0).ok()?;
            serde_json::from_value::<Trace>(json).ok()
        };
        let mut trace = tokio::time::timeout(TRACE_WAIT, query).await.ok().flatten().unwrap_or_default();
        trace.fired = fired(&trace.triggers, context).cloned();
        trace
    }

    fn judge(&self, found: Found, role: &str, trace: &Trace) -> Outcome {
        let sessions = &self.0.sessions;
        match found {
            Found::Created { user, session, status } if user.credits <= 0 => Outcome::warn(format!(
                "{INSUFFICIENT_CREDITS}: user {} has {} credits, so the API refuses before inserting \
                 (the insert itself works; rolled back)",
                user.id, user.credits
            ))
            .hint(format!(
                "give the user credits: UPDATE {} SET credits = 10 WHERE id = '{}';",
                hint_name(&self.0.users),
                user.id
            ))
            .detail("api_error", INSUFFICIENT_CREDITS)
            .detail("user_id", user.id.to_string())
            .detail("credits", user.credits)
            .detail("session_id", session.to_string())
            .detail("status", status)
            // With --user-id, postgres.user reports this user's credits: one cause, one finding.
            .premise(Premise::User(user.id)),
            Found::Created { user, session, status } => {
                Outcome::pass(format!("inserted session {session} for user {} and read it back; rolled back", user.id))
                    .detail("api_error", serde_json::Value::Null)
                    .detail("user_id", user.id.to_string())
                    .detail("credits", user.credits)
                    .detail("session_id", session.to_string())
                    .detail("status", status)
            }
            Found::NoUser { user, why } => {
                let who = user.map(|u| format!("user {u}")).unwrap_or_else(|| "no user".into());
                let message = match user {
                    Some(u) => format!("{INVALID_USER_REFERENCE}: user {u} does not exist or is inactive ({why})"),
                    None => format!("{INVALID_USER_REFERENCE}: {why}: every session creation fails"),
                };
                let outcome = Outcome::problem(message)
                    .hint(match user {
                        Some(u) => format!(
                            "check the id in the user's token, or have the user sign up again; to activate the account: \
                             UPDATE {} SET is_active = true WHERE id = '{u}';",
                            hint_name(&self.0.users)
                        ),
                        None => format!("create or activate a user: {CREATE_USER}"),
                    })
                    .detail("api_error", INVALID_USER_REFERENCE)
                    .detail("user_id", user.map(|u| u.to_string()))
                    .detail("who", who);
                match user {
                    Some(u) => outcome.premise(Premise::User(u)),
                    None => outcome,
                }
            }
            Found::NotReadBack { user, session } => Outcome::problem(format!(
                "inserted session {session} for user {} but cannot read it back from {sessions}: \
                 the desktop app gets \"Session not found\"",
                user.id
            ))
            .hint(format!("a row-level security policy or a rule on {sessions} hides new rows from the API's role"))
            // postgres.privileges reports row-level security on the table, when it is the cause.
            .premise(Premise::Privileges(sessions.clone()))
            .detail("api_error", serde_json::Value::Null)
            .detail("user_id", user.id.to_string())
            .detail("session_id", session.to_string()),
            Found::Failed { step, user, error } => {
                let failed = insert_error(&error, step, role, &self.0, user.map(|u| u.id), trace);
                failed.detail("user_id", user.map(|u| u.id.to_string()))
            }
        }
    }
}

/// A failed statement as the API's answer: message, hint, `api_error`, `sqlstate`;
/// a trigger the error came from is named, and a foreign key's real target.
fn insert_error(
    e: &tokio_postgres::Error,
    step: &str,
    role: &str,
    p: &Params,
    user: Option<Uuid>,
    trace: &Trace,
) -> Outcome {
    let Some(db) = e.as_db_error() else {
        return Outcome::problem(format!("{step} failed: {}", describe(e)))
            .detail("api_error", serde_json::Value::Null)
            .detail("sqlstate", serde_json::Value::Null);
    };
    let code = db.code();
    let text = format!("{} ({})", db.message(), code.code());
    let outcome = if *code == SqlState::FOREIGN_KEY_VIOLATION {
        foreign_key_error(db, step, p, user, trace)
    } else if let (&SqlState::RAISE_EXCEPTION, Some(t)) = (code, &trace.fired) {
        Outcome::problem(format!(
            "{step} failed: trigger {} on {} (function {}) raised: {text}",
            t.name, t.table, t.signature
        ))
        .hint(format!(
            "the trigger refuses the API's row, not the API: read its function (\\sf {}) and fix it, or disable \
             the trigger: ALTER TABLE {} DISABLE TRIGGER {};",
            t.signature,
            t.table,
            super::shared::postgres::quote_ident(&t.name)
        ))
        .detail("api_error", serde_json::Value::Null)
    } else {
        let o = statement_error(db, &text, step, role, p).detail("api_error", serde_json::Value::Null);
        match &trace.fired {
            // Whatever failed, it failed inside this trigger.
            Some(t) => {
                let mut o = o;
                o.message = format!("{} (in trigger {} on {}, function {})", o.message, t.name, t.table, t.signature);
                o
            }
            None => o,
        }
    };
    let outcome = match &trace.fired {
        Some(t) => outcome.detail("trigger", t.name.clone()).detail("trigger_function", t.signature.clone()),
        None => outcome,
    };
    outcome.detail("sqlstate", code.code())
}

/// 23503 on the insert. The route looked the user up in the users table first, so a
/// key that points at another table fails for users who exist: named with its
/// real target and the statement that points it back, under its own name.
fn foreign_key_error(db: &DbError, step: &str, p: &Params, user: Option<Uuid>, trace: &Trace) -> Outcome {
    let who = user.map(|u| u.to_string()).unwrap_or_else(|| "?".into());
    let users_name = p.users.rsplit('.').next().unwrap_or(&p.users);
    match &trace.constraint {
        Some(fk) if fk.target_name != users_name => {
            let name = super::shared::postgres::quote_ident(&fk.name);
            let cols = fk.columns.join(", ");
            Outcome::problem(format!(
                "{INVALID_USER_REFERENCE}: {step} violates foreign key {} on {}({cols}), which references {}({}), \
                 not {}: user {who} exists in {} but not in {}, so every session creation fails",
                fk.name,
                p.sessions,
                fk.target,
                fk.ref_columns.join(", "),
                p.users,
                p.users,
                fk.target
            ))
            .hint(format!(
                "point the key at {users}: ALTER TABLE {sessions} DROP CONSTRAINT {name}, ADD CONSTRAINT {name} \
                 FOREIGN KEY ({cols}) REFERENCES {users} (id);",
                users = hint_name(&p.users),
                sessions = hint_name(&p.sessions),
            ))
            // postgres.schema reports a key that points elsewhere.
            .premise(Premise::Table(p.sessions.clone()))
            .detail("api_error", INVALID_USER_REFERENCE)
            .detail("constraint", fk.name.clone())
            .detail("references", fk.target.clone())
        }
        _ => {
            let fk = Outcome::problem(format!(
                "{INVALID_USER_REFERENCE}: user {who} does not exist or is inactive: {step} violates {}",
                constraint(db, &format!("{} ({})", db.message(), db.code().code()))
            ))
            .hint(
                "the user row is gone or the foreign key points elsewhere: check the users table and sessions' \
                 foreign keys",
            )
            .detail("api_error", INVALID_USER_REFERENCE);
            // postgres.user reports a missing or inactive user.
            match user {
                Some(u) => fk.premise(Premise::User(u)),
                None => fk,
            }
        }
    }
}

/// The catalog's side of a failure: the triggers on the tables the route writes,
/// the one the error's context names, and a violated foreign key.
#[derive(Debug, Default, Deserialize)]
struct Trace {
    #[serde(default)]
    triggers: Vec<Trigger>,
    constraint: Option<ForeignKeyTarget>,
    #[serde(skip)]
    fired: Option<Trigger>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Trigger {
    name: String,
    table: String,
    function: String,
    schema: String,
    /// `reject_sessions()`, as `regprocedure` prints it.
    signature: String,
}

#[derive(Debug, Clone, Deserialize)]
struct ForeignKeyTarget {
    name: String,
    /// As the role would write it (`legacy_users`, `old.users`).
    target: String,
    target_name: String,
    #[serde(default)]
    columns: Vec<String>,
    #[serde(default)]
    ref_columns: Vec<String>,
}

/// $1 the users table, $2 the sessions table (quoted identifiers, resolved like the
/// API's statements), $3 a violated constraint's name.
const TRACE_SQL: &str = "SELECT json_build_object(
  'triggers', (SELECT coalesce(json_agg(json_build_object('name', t.tgname::text,
       'table', t.tgrelid::regclass::text, 'function', p.proname::text, 'schema', n.nspname::text,
       'signature', t.tgfoid::regprocedure::text) ORDER BY t.tgname), '[]')
     FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' AND t.tgrelid IN (to_regclass($1), to_regclass($2))),
  'constraint', (SELECT json_build_object('name', c.conname::text, 'target', c.confrelid::regclass::text,
       'target_name', r.relname::text,
       'columns', (SELECT json_agg(a.attname::text ORDER BY k.ord) FROM unnest(c.conkey) WITH ORDINALITY k(n, ord)
                   JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n),
       'ref_columns', (SELECT json_agg(a.attname::text ORDER BY k.ord) FROM unnest(c.confkey) WITH ORDINALITY k(n, ord)
                   JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n))
     FROM pg_constraint c JOIN pg_class r ON r.oid = c.confrelid
     WHERE c.contype = 'f' AND c.conrelid = to_regclass($2) AND c.conname = $3 LIMIT 1))";

/// The trigger whose function the error's context names, the outermost first (the
/// context lists the innermost call first: "PL/pgSQL function inner() line 2 at
/// RAISE\nPL/pgSQL function trig() line 3 at PERFORM").
fn fired<'a>(triggers: &'a [Trigger], context: &str) -> Option<&'a Trigger> {
    context
        .lines()
        .rev()
        .filter_map(function_in)
        .find_map(|(schema, name)| triggers.iter().find(|t| t.function == name && schema.is_none_or(|s| s == t.schema)))
}

/// `(schema, name)` of the function a context line names: `PL/pgSQL function
/// public.f(integer) line 3 at RAISE` → `(Some("public"), "f")`; `SQL function "f"
/// statement 1` → `(None, "f")`.
fn function_in(line: &str) -> Option<(Option<&str>, &str)> {
    let rest = &line[line.find("function ")? + "function ".len()..];
    let end = rest.find(['(', ' ']).unwrap_or(rest.len());
    let qualified = rest[..end].trim_matches('"');
    if qualified.is_empty() {
        return None;
    }
    Some(match qualified.rsplit_once('.') {
        Some((schema, name)) => (Some(schema.trim_matches('"')), name.trim_matches('"')),
        None => (None, qualified),
    })
}

/// A failed statement the API has no error code of its own for, by SQLSTATE. A cause
/// another check owns is this failure's premise (read-only: `postgres.writable`; a
/// table the role cannot find: `postgres.schema`; a denied privilege:
/// `postgres.privileges`), so that one cause fails once.
fn statement_error(db: &DbError, text: &str, step: &str, role: &str, p: &Params) -> Outcome {
    let table = db.table().unwrap_or(&p.sessions);
    let both = |o: Outcome, premise: fn(String) -> Premise| {
        o.premise(premise(p.users.clone())).premise(premise(p.sessions.clone()))
    };
    match db.code() {
        &SqlState::READ_ONLY_SQL_TRANSACTION => {
            Outcome::problem(format!("the database is read-only (a standby, or default_transaction_read_only): {text}"))
                .hint(format!(
                    "point DATABASE_URL at the primary; if it is the primary, as a superuser: ALTER ROLE \"{role}\" \
                     RESET default_transaction_read_only; (or the same RESET on the database: postgres.writable says \
                     where it is set)"
                ))
                .premise(Premise::Writable(Service::Postgres))
        }
        &SqlState::INSUFFICIENT_PRIVILEGE => denied_error(db, text, step, role, p),
        &SqlState::UNDEFINED_TABLE => {
            both(Outcome::problem(format!("schema drift: {step} failed: {text}")).hint(NOT_FOUND_HINT), Premise::Table)
        }
        &SqlState::UNDEFINED_COLUMN => {
            both(Outcome::problem(format!("schema drift: {step} failed: {text}")).hint(MIGRATE_HINT), Premise::Table)
        }
        &SqlState::NOT_NULL_VIOLATION => {
            let column = db.column().unwrap_or("?");
            Outcome::problem(format!("column {table}.{column} is NOT NULL but the API does not fill it: {text}"))
                .hint(format!(
                    "a migration ran ahead of the API: allow NULL (ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL;), \
                     give the column a DEFAULT, or deploy the API version that fills it",
                    hint_name(table),
                    hint_name(column)
                ))
                .detail("column", column)
                // postgres.schema reports a NOT NULL column the insert leaves out: one cause.
                .premise(Premise::Table(p.sessions.clone()))
        }
        // The server's text names the missing function; there is no other field that does.
        &SqlState::UNDEFINED_FUNCTION if db.message().contains("gen_random_uuid") => {
            Outcome::problem(format!("gen_random_uuid() is missing: {step} failed: {text}"))
                .hint("CREATE EXTENSION pgcrypto; (or upgrade to PostgreSQL 13 or later)")
        }
        &SqlState::LOCK_NOT_AVAILABLE | &SqlState::QUERY_CANCELED => {
            Outcome::problem(format!("lock contention on {}: {step} was cancelled: {text}", p.sessions))
                .hint("see postgres.locks for the transaction holding the lock")
        }
        &SqlState::CHECK_VIOLATION => {
            Outcome::problem(format!("{step}: {} rejects the API's values: {text}", constraint(db, text)))
                .hint("the constraint and the API disagree about allowed values: align the migration with the API")
        }
        _ => Outcome::problem(format!("{step} failed: {text}")),
    }
}

/// 42501, with the fix for what was really denied: a missing policy is not a
/// missing GRANT.
fn denied_error(db: &DbError, text: &str, step: &str, role: &str, p: &Params) -> Outcome {
    let (users, sessions) = (&p.users, &p.sessions);
    // `public.sessions` in the manifest, `sessions` in the server's text.
    let is = |name: &str, table: &str| table == name || table.rsplit('.').next() == Some(name);
    let problem = Outcome::problem(format!("role \"{role}\" cannot do {step}: {text}"));
    match denied(db.message()) {
        Denied::RowSecurity => Outcome::problem(format!(
            "row-level security on {sessions} rejects the API's new row: role \"{role}\" has its GRANTs but no policy lets it insert ({text})"
        ))
        .hint(format!(
            "CREATE POLICY mockmate_api_insert ON {table} FOR INSERT TO \"{role}\" WITH CHECK (true); (narrow (true) to the \
             rows the API may insert; the API reads the session back, so it needs a SELECT policy too) — or, if row-level \
             security was not meant for the API: ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;",
            table = hint_name(sessions)
        ))
        .premise(Premise::Privileges(sessions.clone())),
        Denied::Sequence(seq) => problem
            .hint(format!(
                "the insert's default calls nextval() on {seq}: GRANT USAGE ON SEQUENCE {} TO \"{role}\";",
                hint_name(seq)
            ))
            .premise(Premise::Privileges(sessions.clone())),
        Denied::Schema(schema) => problem
            .hint(format!("GRANT USAGE ON SCHEMA {} TO \"{role}\";", hint_name(schema)))
            .premise(Premise::Privileges(users.clone()))
            .premise(Premise::Privileges(sessions.clone()))
            .premise(Premise::Table(users.clone()))
            .premise(Premise::Table(sessions.clone())),
        Denied::Table(t) if is(t, users) => {
            problem.hint(format!("GRANT SELECT ON {} TO \"{role}\";", hint_name(users))).premise(Premise::Privileges(users.clone()))
        }
        Denied::Table(t) if is(t, sessions) => problem
            .hint(format!("GRANT SELECT, INSERT ON {} TO \"{role}\";", hint_name(sessions)))
            .premise(Premise::Privileges(sessions.clone())),
        Denied::Table(_) | Denied::Other => problem.hint(format!(
            "GRANT SELECT ON {} TO \"{role}\"; GRANT SELECT, INSERT ON {} TO \"{role}\"; and check the tables' \
             triggers and foreign keys for what else the insert touches",
            hint_name(users),
            hint_name(sessions)
        )),
    }
}

fn constraint(db: &DbError, fallback: &str) -> String {
    match db.constraint() {
        Some(c) => format!("constraint {c}"),
        None => fallback.to_string(),
    }
}

/// Where the dry run stood when its time ran out.
#[derive(Debug, Clone, Copy)]
struct Progress {
    step: &'static str,
    user: Option<Uuid>,
}

/// What our backend waits for, and who holds it (`pg_locks`, `pg_blocking_pids()`).
#[derive(Debug, Default, Deserialize)]
struct Waiting {
    locktype: Option<String>,
    mode: Option<String>,
    table: Option<String>,
    /// The table of the row it waits for (its tuple lock), for a row-lock wait.
    row_of: Option<String>,
    #[serde(default)]
    blockers: Vec<Backend>,
    /// The blockers' granted locks on the table it waits for.
    #[serde(default)]
    held: Vec<HeldLock>,
}

#[derive(Debug, Deserialize)]
struct HeldLock {
    mode: String,
    table: String,
}

const WAITING_SQL: &str = "SELECT json_build_object(
  'locktype', w.locktype, 'mode', w.mode, 'table', c.relname::text,
  'row_of', (SELECT c2.relname::text FROM pg_locks t JOIN pg_class c2 ON c2.oid = t.relation
             WHERE t.pid = $1 AND t.locktype = 'tuple' LIMIT 1),
  'blockers', (SELECT coalesce(json_agg(json_build_object('pid', a.pid, 'role', a.usename::text,
       'application', a.application_name, 'visible', a.backend_type IS NOT NULL, 'state', a.state,
       'xact_seconds', floor(extract(epoch FROM now() - a.xact_start))::float8,
       'state_seconds', floor(extract(epoch FROM now() - a.state_change))::float8,
       'query', CASE WHEN a.backend_type IS NOT NULL THEN left(regexp_replace(a.query, '\\s+', ' ', 'g'), 200) END)
       ORDER BY a.pid), '[]')
     FROM pg_stat_activity a WHERE a.pid = ANY (pg_blocking_pids($1))),
  'held', (SELECT coalesce(json_agg(json_build_object('mode', h.mode, 'table', hc.relname::text)), '[]')
     FROM pg_locks h JOIN pg_class hc ON hc.oid = h.relation
     WHERE h.granted AND h.locktype = 'relation' AND h.relation = w.relation
       AND h.pid = ANY (pg_blocking_pids($1))))
  FROM (SELECT 1) AS one LEFT JOIN pg_locks w ON w.pid = $1 AND NOT w.granted
  LEFT JOIN pg_class c ON c.oid = w.relation LIMIT 1";

/// What backend `pid` waits for, from the run's shared session (a read, no state change).
async fn waiting_for(ctx: &Ctx, pid: i32) -> Option<Waiting> {
    let query = async {
        let session: Arc<PgSession> = ctx.postgres().await.ok()?;
        let rows = session.query_typed(WAITING_SQL, &[(&pid, Type::INT4)]).await.ok()?;
        let json: serde_json::Value = rows.first()?.try_get(0).ok()?;
        serde_json::from_value(json).ok()
    };
    tokio::time::timeout(BLOCKERS_WAIT, query).await.ok().flatten()
}

/// Ends our own dry-run backend (its transaction aborts at once).
async fn terminate(ctx: &Ctx, pid: i32) {
    if pid == 0 {
        return;
    }
    let query = async {
        if let Ok(session) = ctx.postgres().await {
            let _ = session.query_typed("SELECT pg_terminate_backend($1)", &[(&pid, Type::INT4)]).await;
        }
    };
    let _ = tokio::time::timeout(TERMINATE_WAIT, query).await;
}

#[cfg(test)]
mod tests {
    use crate::check::testing::run_kind;
    use crate::report::Status;

    #[tokio::test]
    async fn read_only_run_skips_with_the_documented_message() {
        let r = run_kind(&super::KIND, "", &[], "production").await;
        assert_eq!((r.status, r.message.as_str()), (Status::Skip, super::READ_ONLY_RUN));
    }

    #[tokio::test]
    async fn unknown_parameters_are_rejected() {
        let text = "[[check]]\nid = \"t\"\nkind = \"postgres.session_insert\"\ndurattion = 3\n";
        let err = crate::manifest::load(&[crate::manifest::Source { label: "t.toml".into(), text: text.into() }])
            .expect_err("typo is an error");
        assert!(err.to_string().contains("durattion"), "{err}");
    }
}
