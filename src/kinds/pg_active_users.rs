//! `postgres.active_users`: at least one user can create a session (runbook, "Issue
//! 1: No Users in Production Database" — every session creation then returns
//! INVALID_USER_REFERENCE).
//!
//! `EXISTS`, never `count(*)`: it stops at the first match. It runs under a tighter
//! `SET LOCAL statement_timeout` in the same simple query (one implicit transaction,
//! so the setting dies with it and no other check's statement is captured); running
//! out of time is "could not determine", a warning, never a pass.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use tokio_postgres::SimpleQueryMessage;

use super::shared::postgres::{
    CREATE_USER, NOT_FOUND_HINT, hint_name, human, ident, literal, on_tables, query_failed, session, sqlstate,
};
use crate::check::{Check, Ctx, KindDef, Outcome};
use crate::probe::postgres::describe;
use tokio_postgres::error::SqlState;

pub static KIND: KindDef = KindDef {
    name: "postgres.active_users",
    title: "Active users exist",
    description: "at least one row of users matches the active predicate (EXISTS under a statement timeout)",
    build: |t| {
        let p: Params = crate::check::params(t)?;
        if p.predicate.trim().is_empty() || p.predicate.contains(';') {
            return Err("`predicate`: a SQL boolean expression without ';', like \"is_active = true\"".into());
        }
        let timeout = super::shared::postgres::duration("timeout", &p.timeout)?;
        Ok(Box::new(ActiveUsers { table: p.table, predicate: p.predicate, timeout }))
    },
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    table: String,
    /// A SQL condition on the table's rows.
    predicate: String,
    /// The statement timeout for the `EXISTS` (capped by `--timeout`).
    timeout: String,
}

impl Default for Params {
    fn default() -> Self {
        Params { table: "users".into(), predicate: "is_active = true".into(), timeout: "2s".into() }
    }
}

struct ActiveUsers {
    table: String,
    predicate: String,
    timeout: Duration,
}

impl Check for ActiveUsers {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let session = match session(ctx).await {
                Ok(s) => s,
                Err(o) => return o,
            };
            // Leave the check's own deadline room to report the timeout itself.
            let limit = self.timeout.min(ctx.timeout.saturating_sub(Duration::from_millis(500))).max(Duration::from_millis(100));
            let (table, pred) = (ident(&self.table), &self.predicate);
            let exists = format!(
                "SET LOCAL statement_timeout = {}; \
                 SELECT EXISTS (SELECT 1 FROM {table} WHERE {pred}), EXISTS (SELECT 1 FROM {table})",
                limit.as_millis()
            );
            let estimate = format!("EXPLAIN (FORMAT JSON) SELECT 1 FROM {table} WHERE {pred}");
            // The planner's number means something only when ANALYZE has run on the
            // table: without statistics it is a guess from the table's size on disk
            // (265 "active users" in a table of 3 rows).
            let analyzed = format!(
                "SELECT EXISTS (SELECT 1 FROM pg_stats st JOIN pg_class c ON c.relname = st.tablename \
                 JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = st.schemaname \
                 WHERE c.oid = to_regclass({}))",
                literal(&table)
            );
            // All pipelined on the one connection; the estimate is best-effort.
            let (exists, estimate, analyzed) = futures::join!(
                session.simple_query(&exists),
                session.simple_query(&estimate),
                session.simple_query(&analyzed)
            );
            let analyzed = analyzed.ok().and_then(|m| first_row(&m).map(|(v, _)| v == Some("t"))).unwrap_or(false);
            let estimate = estimate.ok().and_then(|m| planned_rows(&m)).filter(|_| analyzed);
            let outcome = match exists {
                Ok(messages) => match first_row(&messages) {
                    Some((Some("t"), _)) => Outcome::pass(format!("at least one active user ({pred})")),
                    Some((Some("f"), Some("t"))) => {
                        Outcome::problem(format!("users exist, but none is active ({pred}): session creation fails with INVALID_USER_REFERENCE"))
                            .hint(format!("activate a user: UPDATE {} SET is_active = true WHERE email = '<email>'; or create one: {CREATE_USER}", hint_name(&self.table)))
                    }
                    Some((Some("f"), _)) => Outcome::problem(format!(
                        "the {} table is empty: session creation fails with INVALID_USER_REFERENCE",
                        self.table
                    ))
                    .hint(format!("create a user: {CREATE_USER}")),
                    _ => Outcome::problem("unexpected reply to the active-user query"),
                },
                Err(e) if e.lost.is_some() => query_failed("the active-user query", &e),
                Err(e) => on_tables(match sqlstate(&e) {
                    Some(&SqlState::QUERY_CANCELED) => Outcome::warn(format!("could not determine within {} (57014)", human(limit)))
                        .hint(format!("{} is slow to search for {pred}: an index on the predicate's columns helps; or raise timeout/--timeout", self.table)),
                    Some(&SqlState::LOCK_NOT_AVAILABLE) => Outcome::warn(format!("could not determine: {} is locked ({})", self.table, describe(&e)))
                        .hint("a session holds a lock on the table: see postgres.locks"),
                    Some(&SqlState::UNDEFINED_TABLE) => Outcome::problem(format!("cannot read {}: {}", self.table, describe(&e))).hint(NOT_FOUND_HINT),
                    _ => Outcome::problem(format!("the active-user query failed: {}", describe(&e))),
                }, &e, &[self.table.as_str()]),
            };
            // An estimate, labelled as one; unknown without statistics, never a made-up count.
            outcome
                .detail("predicate", pred.as_str())
                .detail("planner_estimate_active_users", estimate)
                .detail(
                    "planner_estimate_basis",
                    if analyzed {
                        "the table's statistics (ANALYZE): an estimate, not a count"
                    } else {
                        "none: the table has no statistics yet (never analyzed), so the planner would only guess"
                    },
                )
        }
        .boxed()
    }
}

/// The first data row's two columns (the `SET LOCAL` returns none).
fn first_row(messages: &[SimpleQueryMessage]) -> Option<(Option<&str>, Option<&str>)> {
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some((row.try_get(0).ok().flatten(), row.try_get(1).ok().flatten())),
        _ => None,
    })
}

/// The planner's row estimate from `EXPLAIN (FORMAT JSON)`: `[{"Plan": {"Plan Rows": n}}]`.
fn planned_rows(messages: &[SimpleQueryMessage]) -> Option<u64> {
    let text = messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.try_get(0).ok().flatten(),
        _ => None,
    })?;
    let json: serde_json::Value = serde_json::from_str(text).ok()?;
    json.get(0)?.get("Plan")?.get("Plan Rows")?.as_f64().map(|n| n.max(0.0).round() as u64)
}
