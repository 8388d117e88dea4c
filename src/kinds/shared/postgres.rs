//! What the `postgres.*` kinds share: the session, SQL error wording, table
//! resolution and reading rows without trusting the server's data.
//!
//! Every query goes to the run's one session (`ctx.postgres()`), concurrently with
//! the other checks' queries: tokio-postgres pipelines them, each in a read-only
//! transaction of its own (see `probe::postgres::session`). A tighter timeout is a
//! `SET LOCAL` at the start of a simple query, undone with its transaction.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use crate::check::{Ctx, Outcome, Premise, Service};
pub use crate::probe::postgres::sqlstate;
use crate::probe::postgres::{Lost, PgSession, QueryError, Reason, describe};
use tokio_postgres::error::SqlState;

/// The runbook's fix, verbatim.
pub const CREATE_USER: &str = "INSERT INTO users (id, email, first_name, last_name, credits, is_active, is_verified) \
     VALUES (gen_random_uuid(), 'test@mock-mate.com', 'Test', 'User', 10, true, true);";

/// The runbook's fix for "Issue 3: Missing Database Tables".
pub const MIGRATE_HINT: &str = "run the database migrations (npm run migrate)";

/// The fix for "relation does not exist" (42P01) seen by a check that cannot tell
/// why: absent and invisible tables have different fixes, and `postgres.schema`
/// (which this failure defers to when it is in the run) tells them apart.
pub const NOT_FOUND_HINT: &str = "the table is absent (run the database migrations: npm run migrate) or invisible to \
     the role (a schema outside its search_path, or without USAGE): postgres.schema says which";

/// The read-only connection for long scans, so that they do not hold up the
/// shared session's pipeline (see `postgres.orphan_sessions`). Same target and session
/// settings as the shared one; connecting since the run started when the engine
/// warmed a check that scans, else from now, within `--timeout` either way.
pub async fn scan_session(ctx: &Ctx) -> Result<Arc<PgSession>, Outcome> {
    // The shared session's failure, when it has one, has the better wording.
    session(ctx).await?;
    ctx.postgres_scan().await.map_err(|f| {
        Outcome::problem(format!("cannot open a connection for the scan: {}", f.message))
            .hint(f.hint.unwrap_or_else(|| "see postgres.connect".into()))
            .premise(Premise::Reachable(Service::Postgres))
    })
}

/// The error codes the API answers session creation with (the runbook's
/// "Verify the Fix"); `details.api_error` carries them, scripts match them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiError {
    /// HTTP 400: the user does not exist or is inactive (or the insert hit 23503).
    InvalidUserReference,
    /// HTTP 403: the user has no credits left.
    InsufficientCredits,
}

impl ApiError {
    pub const ALL: [ApiError; 2] = [ApiError::InvalidUserReference, ApiError::InsufficientCredits];

    pub fn code(self) -> &'static str {
        match self {
            ApiError::InvalidUserReference => "INVALID_USER_REFERENCE",
            ApiError::InsufficientCredits => "INSUFFICIENT_CREDITS",
        }
    }

    /// The code as the API (or a report's `details.api_error`) spells it.
    pub fn from_code(code: &str) -> Option<ApiError> {
        ApiError::ALL.into_iter().find(|e| e.code() == code.trim())
    }

    /// The HTTP status the fixed route answers it with.
    pub fn status(self) -> u16 {
        match self {
            ApiError::InvalidUserReference => 400,
            ApiError::InsufficientCredits => 403,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl From<ApiError> for serde_json::Value {
    fn from(e: ApiError) -> Self {
        serde_json::Value::from(e.code())
    }
}

/// The run's session, or the connect failure as this check's outcome (normally
/// unreachable: every `postgres.*` check needs `postgres.connect`; a manifest's own
/// check without `needs` defers to it through the premise).
pub async fn session(ctx: &Ctx) -> Result<Arc<PgSession>, Outcome> {
    ctx.postgres().await.map_err(|f| Outcome::unreachable(f, Service::Postgres))
}

/// A query that failed, as this check's problem: `{what}: {message} (SQLSTATE)`.
///
/// - The connection lost before the answer (a restart's 57P01, a crash, a closed
///   socket) is this check's problem in the server's words; the check whose
///   statement was running owns it, those queued behind it see that one
///   ([`Premise::Connection`]).
/// - Cancelled at the unit's `statement_timeout` (just under `--timeout`), it
///   timed out: a problem at the check's severity, as when the engine's own
///   deadline fires first.
/// - A lock wait past `lock_timeout`, or a cancel from elsewhere, is "could not
///   determine", a warning, never a pass.
pub fn query_failed(what: &str, e: &QueryError) -> Outcome {
    if let Some(lost) = &e.lost {
        return connection_lost(what, lost);
    }
    if let Some(after) = e.timed_out {
        return Outcome::problem(format!(
            "{what} timed out after {} (the server cancelled it at statement_timeout, just under --timeout {})",
            human(after),
            human(e.deadline)
        ))
        .hint("the database is slow or the query waits on a lock (see postgres.locks): check its load, or raise --timeout");
    }
    let text = describe(e);
    match sqlstate(e) {
        Some(&SqlState::QUERY_CANCELED | &SqlState::LOCK_NOT_AVAILABLE) => {
            Outcome::warn(format!("could not determine {what}: {text}"))
                .hint("the database is slow or a lock is held: see postgres.locks, or raise --timeout")
        }
        // The session setup (read-only, timeouts) runs in a transaction that fails
        // closed: if the server refused it, every later query says 25P02.
        Some(&SqlState::IN_FAILED_SQL_TRANSACTION) => Outcome::problem(format!("{what}: {text}")).hint(
            "the server refused the start of mockmate-diag's read-only transaction (BEGIN READ ONLY, SET LOCAL \
             statement_timeout …), so it runs nothing: check the server log; a pooler that forbids SET can cause this",
        ),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE) => Outcome::problem(format!("{what}: {text}"))
            .hint("the role cannot read this catalog or table: grant it, or run as the application's role"),
        _ => Outcome::problem(format!("{what}: {text}")),
    }
}

/// A statement the lost connection cut, in the server's words when it said why.
fn connection_lost(what: &str, lost: &Lost) -> Outcome {
    let (message, hint) = match &lost.reason {
        Reason::Said { code, message } if *code == SqlState::ADMIN_SHUTDOWN => (
            format!("the server shut down or restarted mid-run: {message} ({})", code.code()),
            "it is failing over or being restarted (or an administrator ended the session: pg_terminate_backend): \
             run again once it accepts connections",
        ),
        Reason::Said { code, message } if *code == SqlState::CRASH_SHUTDOWN => (
            format!("the server crashed mid-run: {message} ({})", code.code()),
            "a server process crashed and PostgreSQL is restarting every session (its log names the crash): run \
             again once it accepts connections",
        ),
        Reason::Said { code, message } => (
            format!("the server ended the connection mid-run: {message} ({})", code.code()),
            "run again; the server's log (or the pooler's) says why it ended the connection",
        ),
        Reason::Silent(text) => (
            format!(
                "the connection was lost mid-run ({text}): the server hung up without a word (killed, crashed, \
                 restarted) or the network dropped the connection"
            ),
            "run again once the server accepts connections; its log says whether it crashed or was restarted",
        ),
    };
    let cut = if lost.running { ":" } else { " never ran:" };
    let outcome = Outcome::problem(format!("{what}{cut} {message}")).hint(hint);
    let running = Premise::Connection { service: Service::Postgres, running: true };
    let queued = Premise::Connection { service: Service::Postgres, running: false };
    match lost.running {
        true => outcome.premise(running.clone()).reports(running),
        false => outcome.premise(running).premise(queued.clone()).reports(queued),
    }
}

/// A failed query on the API's `tables` as resting on what caused it, by SQLSTATE:
/// a table or column the role cannot find (42P01, 42703) is `postgres.schema`'s
/// finding, a denied privilege (42501) is `postgres.privileges`'; when those checks
/// report the table in the same run, this failure defers to them.
pub fn on_tables(outcome: Outcome, e: &tokio_postgres::Error, tables: &[&str]) -> Outcome {
    let premise: fn(String) -> Premise = match sqlstate(e) {
        Some(&SqlState::UNDEFINED_TABLE | &SqlState::UNDEFINED_COLUMN) => Premise::Table,
        Some(&SqlState::INSUFFICIENT_PRIVILEGE) => Premise::Privileges,
        _ => return outcome,
    };
    tables.iter().fold(outcome, |o, t| o.premise(premise(t.to_string())))
}

/// What a 42501 denied, from the server's text: PostgreSQL has no field for it
/// (`permission denied for sequence sessions_n_seq`, `new row violates row-level
/// security policy for table "sessions"`).
#[derive(Debug, PartialEq, Eq)]
pub enum Denied<'a> {
    /// Row-level security rejected the new row: the GRANTs are there, a policy is not.
    RowSecurity,
    Sequence(&'a str),
    Schema(&'a str),
    Table(&'a str),
    Other,
}

pub fn denied(message: &str) -> Denied<'_> {
    if message.starts_with("new row violates row-level security policy") {
        return Denied::RowSecurity;
    }
    let Some(rest) = message.strip_prefix("permission denied for ") else { return Denied::Other };
    let (kind, name) = rest.split_once(' ').unwrap_or((rest, ""));
    let name = name.trim().trim_matches('"');
    match kind {
        "sequence" => Denied::Sequence(name),
        "schema" => Denied::Schema(name),
        // "relation" before PostgreSQL 11.
        "table" | "relation" => Denied::Table(name),
        _ => Denied::Other,
    }
}

/// A column of a row, typed; a reply of an unexpected shape is this check's problem,
/// never a panic.
pub fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize, what: &str) -> Result<T, Outcome> {
    row.try_get(idx).map_err(|e| Outcome::problem(format!("unexpected reply to {what}: {e}")))
}

pub use crate::probe::postgres::Param;

/// One row of a query expected to return exactly one.
///
/// `query_typed` sends Parse, Bind and Execute at once (one round trip), where
/// `query` with SQL text would first prepare the statement and wait for its
/// description (two); so parameters carry their types. The replies of the shared
/// session's checks are all builtin types, which need no catalog lookup (a lookup
/// would be a named prepared statement, which transaction poolers do not carry).
pub async fn query_one(session: &PgSession, what: &str, sql: &str, params: &[Param<'_>]) -> Result<Row, Outcome> {
    let rows = session.query_typed(sql, params).await.map_err(|e| query_failed(what, &e))?;
    rows.into_iter().next().ok_or_else(|| Outcome::problem(format!("unexpected reply to {what}: no row")))
}

/// SQL for the `regclass` of table `$n` (a text parameter): in `schema` when given,
/// else resolved like the application's unqualified names (`search_path`). NULL when
/// no such relation exists (never an error).
pub fn regclass_sql(param: &str, schema: Option<&str>) -> String {
    match schema {
        Some(s) => format!("to_regclass(format('%I.%I', {}, {param}))", literal(s)),
        None => format!("to_regclass(format('%I', {param}))"),
    }
}

/// A SQL string literal, right under either standard_conforming_strings.
pub fn literal(s: &str) -> String {
    if s.contains('\\') {
        // An escape string means the same whatever standard_conforming_strings
        // the role or database sets (off, a backslash would escape).
        return format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"));
    }
    format!("'{}'", s.replace('\'', "''"))
}

/// A possibly schema-qualified name (`users`, `app.users`) as a quoted identifier.
pub fn ident(name: &str) -> String {
    name.split('.').map(|part| format!("\"{}\"", part.replace('"', "\"\""))).collect::<Vec<_>>().join(".")
}

/// PostgreSQL's reserved key words (and those reserved but for function or type
/// names): a table named one of these must be quoted.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

/// One identifier as a hint writes it, the way `quote_ident()` does: bare when
/// plain lower-case and not a reserved word, else double-quoted. Pasted into
/// psql it names the same object either way.
pub fn quote_ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !RESERVED.contains(&name);
    if plain { name.to_string() } else { format!("\"{}\"", name.replace('"', "\"\"")) }
}

/// A possibly schema-qualified name (`sessions`, `app.sessions`) as a hint writes it.
pub fn hint_name(name: &str) -> String {
    name.split('.').map(quote_ident).collect::<Vec<_>>().join(".")
}

/// `schema` as a manifest parameter: `None` means "as search_path resolves".
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(transparent)]
pub struct SchemaParam(pub Option<String>);

impl SchemaParam {
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref().filter(|s| !s.is_empty())
    }
}

/// Parses a manifest duration (`"2s"`, `"500ms"`, `"1m"`); the error names the field.
pub fn duration(field: &str, text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{field}`: \"{text}\" is not a duration like \"2s\", \"500ms\" or \"1m\" ({e})"))
}

/// `2s`, `1m 30s`, `750ms`: how durations read in messages.
pub fn human(d: Duration) -> String {
    crate::probe::human(d)
}

/// `1 table`, `2 tables`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_names_quote_what_psql_would_misread() {
        assert_eq!(hint_name("users"), "users");
        assert_eq!(hint_name("app.sessions"), "app.sessions");
        assert_eq!(hint_name("Sessions"), "\"Sessions\"");
        assert_eq!(hint_name("user"), "\"user\"");
        assert_eq!(hint_name("my app.order"), "\"my app\".\"order\"");
    }

    #[test]
    fn regclass_quotes_identifiers_and_literals() {
        assert_eq!(regclass_sql("$1", None), "to_regclass(format('%I', $1))");
        assert_eq!(regclass_sql("t.name", Some("app's")), "to_regclass(format('%I.%I', 'app''s', t.name))");
    }

    #[test]
    fn literals_survive_standard_conforming_strings_off() {
        assert_eq!(literal("app's"), "'app''s'");
        assert_eq!(literal(r"a\b'"), r"E'a\\b'''");
    }

    #[test]
    fn identifiers_are_quoted_per_part() {
        assert_eq!(ident("users"), "\"users\"");
        assert_eq!(ident("app.Users"), "\"app\".\"Users\"");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn a_42501_is_read_for_what_was_denied() {
        assert_eq!(denied("new row violates row-level security policy for table \"sessions\""), Denied::RowSecurity);
        assert_eq!(
            denied("new row violates row-level security policy \"p\" for table \"sessions\""),
            Denied::RowSecurity
        );
        assert_eq!(denied("permission denied for sequence sessions_n_seq"), Denied::Sequence("sessions_n_seq"));
        assert_eq!(denied("permission denied for schema mm"), Denied::Schema("mm"));
        assert_eq!(denied("permission denied for table sessions"), Denied::Table("sessions"));
        assert_eq!(denied("permission denied for relation users"), Denied::Table("users"));
        assert_eq!(denied("must be owner of table sessions"), Denied::Other);
    }

    #[test]
    fn a_lost_connection_names_the_servers_reason_and_who_owns_it() {
        let said = |code: SqlState, message: &str| Reason::Said { code, message: message.into() };
        let o = connection_lost(
            "the query",
            &Lost {
                reason: said(SqlState::ADMIN_SHUTDOWN, "terminating connection due to administrator command"),
                running: true,
            },
        );
        assert_eq!(
            o.message,
            "the query: the server shut down or restarted mid-run: terminating connection due to administrator \
             command (57P01)"
        );
        assert!(o.hint.as_deref().unwrap_or_default().contains("run again"), "{o:?}");
        assert_eq!(o.verdict, crate::check::Verdict::Problem);
        let running = Premise::Connection { service: Service::Postgres, running: true };
        assert_eq!((&o.causes.premises, &o.causes.reports), (&vec![running.clone()], &vec![running.clone()]));

        let o = connection_lost(
            "the catalog query",
            &Lost { reason: Reason::Silent("connection closed".into()), running: false },
        );
        assert!(
            o.message.starts_with("the catalog query never ran: the connection was lost mid-run (connection closed)")
        );
        let queued = Premise::Connection { service: Service::Postgres, running: false };
        assert_eq!(o.causes.premises, [running, queued.clone()]);
        assert_eq!(o.causes.reports, [queued]);

        let o = connection_lost(
            "q",
            &Lost { reason: said(SqlState::CRASH_SHUTDOWN, "terminating connection because of crash"), running: true },
        );
        assert!(o.message.starts_with("q: the server crashed mid-run: "), "{}", o.message);
    }

    #[test]
    fn durations() {
        assert_eq!(duration("timeout", "2s"), Ok(Duration::from_secs(2)));
        assert!(duration("timeout", "soon").unwrap_err().starts_with("`timeout`: \"soon\""));
        assert_eq!(human(Duration::from_millis(2000)), "2s");
        assert_eq!(human(Duration::from_micros(1_500_300)), "1s 500ms");
    }
}
