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

use super::pg_common::{
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

        let work = tokio::time::timeout_at(end.into(), self.steps(client, ctx.user_id)).await;
        match work {
            Ok(found) => {
                let rolled_back =
                    matches!(tokio::time::timeout(ROLLBACK_WAIT, client.batch_execute("ROLLBACK")).await, Ok(Ok(())));
                // If ROLLBACK did not answer, dropping the connection below ends the
                // transaction instead.
                drop(conn);
                // Either way the transaction is gone: `ended_by` says how.
                self.judge(found, &role)
                    .detail("rolled_back", true)
                    .detail("ended_by", if rolled_back { "ROLLBACK" } else { "connection closed" })
            }
            Err(_elapsed) => {
                // Something blocks the insert (or the server stopped answering). Say
                // who, then end our backend so its transaction aborts now rather than
                // when the lock frees; the dropped connection is the last resort.
                let blockers = blockers(ctx, pid).await;
                terminate(ctx, pid).await;
                drop(conn);
                let by =
                    if blockers.is_empty() { String::new() } else { format!(": blocked by {}", blockers.join("; ")) };
                Outcome::problem(format!(
                    "timed out after {} waiting for the insert into {}: lock contention on {}{by}",
                    human(budget),
                    self.0.sessions,
                    self.0.sessions
                ))
                .hint(
                    "a transaction holds a lock that session inserts wait for (a migration, a long ALTER/VACUUM FULL, \
                     an idle-in-transaction client) and the API's inserts are stuck behind it too: see postgres.locks; \
                     end the blocker, with its pid from the message: SELECT pg_terminate_backend(<pid>);",
                )
                .detail("api_error", serde_json::Value::Null)
                .detail("blocked_by", blockers)
                .detail("rolled_back", true)
                .detail("ended_by", "backend terminated")
            }
        }
    }

    /// The API's steps inside the transaction; the first failure stops them.
    async fn steps(&self, client: &Client, wanted: Option<Uuid>) -> Found {
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
        // `status` through to_jsonb: a table without the column (not required) reads NULL.
        let read = format!("SELECT to_jsonb(s) ->> 'status' FROM {sessions} s WHERE s.id = $1");
        match client.query_typed_opt(&read, &[(&session, Type::UUID)]).await {
            Ok(Some(row)) => Found::Created { user, session, status: row.try_get(0).ok().flatten() },
            Ok(None) => Found::NotReadBack { user, session },
            Err(error) => Found::Failed { step: "reading the session back", user: Some(user), error },
        }
    }

    fn judge(&self, found: Found, role: &str) -> Outcome {
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
                let failed = insert_error(&error, step, role, &self.0, user.map(|u| u.id));
                failed.detail("user_id", user.map(|u| u.id.to_string()))
            }
        }
    }
}

/// A failed statement as the API's answer: message, hint, `api_error`, `sqlstate`.
fn insert_error(e: &tokio_postgres::Error, step: &str, role: &str, p: &Params, user: Option<Uuid>) -> Outcome {
    let Some(db) = e.as_db_error() else {
        return Outcome::problem(format!("{step} failed: {}", describe(e)))
            .detail("api_error", serde_json::Value::Null)
            .detail("sqlstate", serde_json::Value::Null);
    };
    let code = db.code();
    let text = format!("{} ({})", db.message(), code.code());
    let outcome = if *code == SqlState::FOREIGN_KEY_VIOLATION {
        let fk = Outcome::problem(format!(
            "{INVALID_USER_REFERENCE}: user {} does not exist or is inactive: {step} violates {}",
            user.map(|u| u.to_string()).unwrap_or_else(|| "?".into()),
            constraint(db, &text)
        ))
        .hint("the user row is gone or the foreign key points elsewhere: check the users table and sessions' foreign keys")
        .detail("api_error", INVALID_USER_REFERENCE);
        match user {
            Some(u) => fk.premise(Premise::User(u)),
            None => fk,
        }
    } else {
        statement_error(db, &text, step, role, p).detail("api_error", serde_json::Value::Null)
    };
    outcome.detail("sqlstate", code.code())
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

/// Who blocks backend `pid`, from the run's shared session (a read, no state change).
async fn blockers(ctx: &Ctx, pid: i32) -> Vec<String> {
    const SQL: &str = "SELECT a.pid, coalesce(a.state, '?'), coalesce(a.application_name, ''), \
        coalesce(extract(epoch FROM now() - a.xact_start)::float8, 0) \
        FROM pg_stat_activity a WHERE a.pid = ANY (pg_blocking_pids($1)) ORDER BY a.pid LIMIT 5";
    let query = async {
        let session: Arc<PgSession> = ctx.postgres().await.ok()?;
        session.query_typed(SQL, &[(&pid, Type::INT4)]).await.ok()
    };
    let rows = tokio::time::timeout(BLOCKERS_WAIT, query).await.ok().flatten().unwrap_or_default();
    rows.iter()
        .filter_map(|r| {
            let (pid, state, app, secs): (i32, String, String, f64) =
                (r.try_get(0).ok()?, r.try_get(1).ok()?, r.try_get(2).ok()?, r.try_get(3).ok()?);
            let app = if app.is_empty() { String::new() } else { format!(", {app}") };
            Some(format!("pid {pid} ({state} for {}{app})", human(Duration::from_secs_f64(secs.max(0.0).round()))))
        })
        .collect()
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
