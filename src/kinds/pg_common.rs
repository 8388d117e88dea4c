//! What the `postgres.*` kinds share: the session, SQL error wording, table
//! resolution and reading rows without trusting the server's data.
//!
//! Every query goes to the run's one session (`ctx.postgres()`), concurrently with
//! the other checks' queries: tokio-postgres pipelines them. So no check may leave
//! session state changed or open a transaction that would capture another check's
//! statements; a tighter timeout is a `SET LOCAL` inside one multi-statement simple
//! query, which PostgreSQL runs as one implicit transaction, undone as it ends.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql, Type};

use super::Outcome;
use crate::engine::Ctx;
use crate::probe::postgres::{PgSession, describe};

/// The runbook's fix for "Issue 3: Missing Database Tables".
pub const MIGRATE_HINT: &str = "run the database migrations (npm run migrate)";

/// SQLSTATE `query_canceled`: `statement_timeout` fired.
pub const QUERY_CANCELED: &str = "57014";
/// SQLSTATE `lock_not_available`: `lock_timeout` fired.
pub const LOCK_NOT_AVAILABLE: &str = "55P03";
/// SQLSTATE `undefined_table`.
pub const UNDEFINED_TABLE: &str = "42P01";

/// The run's session, or the connect failure as this check's outcome (normally
/// unreachable: every `postgres.*` check needs `postgres.connect`).
pub async fn session(ctx: &Ctx) -> Result<Arc<PgSession>, Outcome> {
    ctx.postgres().await.map_err(Outcome::from_failure)
}

/// The SQLSTATE of a server error.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.as_db_error().map(|db| db.code().code())
}

/// A query that failed, as this check's problem: `{what}: {message} (SQLSTATE)`.
/// A statement or lock timeout is "could not determine", a warning, never a pass.
pub fn query_failed(what: &str, e: &tokio_postgres::Error) -> Outcome {
    let text = describe(e);
    match sqlstate(e) {
        Some(QUERY_CANCELED) | Some(LOCK_NOT_AVAILABLE) => Outcome::warn(format!("could not determine {what}: {text}"))
            .hint("the database is slow or a lock is held: see postgres.locks, or raise --timeout"),
        // The session setup (read-only, timeouts) runs in a transaction that fails
        // closed: if the server refused it, every later query says 25P02.
        Some("25P02") => Outcome::problem(format!("{what}: {text}")).hint(
            "the server refused mockmate-diag's session setup (SET … READ ONLY, statement_timeout), so it runs \
             nothing: check the server log; a pooler that forbids SET can cause this",
        ),
        Some("42501") => Outcome::problem(format!("{what}: {text}"))
            .hint("the role cannot read this catalog or table: grant it, or run as the application's role"),
        _ => Outcome::problem(format!("{what}: {text}")),
    }
}

/// A column of a row, typed; a reply of an unexpected shape is this check's problem,
/// never a panic.
pub fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize, what: &str) -> Result<T, Outcome> {
    row.try_get(idx).map_err(|e| Outcome::problem(format!("unexpected reply to {what}: {e}")))
}

/// A query parameter with its type spelled out, as [`query_one`] and
/// `Client::query_typed` take them.
pub type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// One row of a query expected to return exactly one.
///
/// `query_typed` sends Parse, Bind and Execute at once (one round trip), where
/// `query` with SQL text would first prepare the statement and wait for its
/// description (two); so parameters carry their types. The replies of the shared
/// session's checks are all builtin types, which need no catalog lookup.
pub async fn query_one(session: &PgSession, what: &str, sql: &str, params: &[Param<'_>]) -> Result<Row, Outcome> {
    let rows = session.client.query_typed(sql, params).await.map_err(|e| query_failed(what, &e))?;
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

/// A SQL string literal (standard_conforming_strings is on since PostgreSQL 9.1).
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A possibly schema-qualified name (`users`, `app.users`) as a quoted identifier.
pub fn ident(name: &str) -> String {
    name.split('.').map(|part| format!("\"{}\"", part.replace('"', "\"\""))).collect::<Vec<_>>().join(".")
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
    humantime::format_duration(Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))).to_string()
}

/// `1 table`, `2 tables`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regclass_quotes_identifiers_and_literals() {
        assert_eq!(regclass_sql("$1", None), "to_regclass(format('%I', $1))");
        assert_eq!(regclass_sql("t.name", Some("app's")), "to_regclass(format('%I.%I', 'app''s', t.name))");
    }

    #[test]
    fn identifiers_are_quoted_per_part() {
        assert_eq!(ident("users"), "\"users\"");
        assert_eq!(ident("app.Users"), "\"app\".\"Users\"");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn durations() {
        assert_eq!(duration("timeout", "2s"), Ok(Duration::from_secs(2)));
        assert!(duration("timeout", "soon").unwrap_err().starts_with("`timeout`: \"soon\""));
        assert_eq!(human(Duration::from_millis(2000)), "2s");
        assert_eq!(human(Duration::from_micros(1_500_300)), "1s 500ms");
    }
}
