//! `postgres.query`: an operator's own check — one SQL statement returning one
//! scalar, compared with an expectation (`"> 0"`, `"= 0"`, `"true"` …). It runs in
//! the run's read-only session, like every other `postgres.*` check.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use tokio_postgres::SimpleQueryMessage;

use super::expect::Expect;
use super::pg_common::{query_failed, session};
use crate::check::{Check, Ctx, KindDef, Outcome};

pub static KIND: KindDef = KindDef {
    name: "postgres.query",
    title: "Custom SQL check",
    description: "your SQL returns one value that meets `expect` (\"> 0\", \">= 1\", \"= 0\", \"!= 0\", \"true\", \"false\")",
    build: |t| {
        let p: Params = crate::check::params(t)?;
        let sql = p.sql.trim().trim_end_matches(';').trim().to_string();
        if sql.is_empty() {
            return Err("`sql`: give one SQL statement returning one value".into());
        }
        let expect = Expect::parse(&p.expect).map_err(|e| format!("`expect` {e}"))?;
        Ok(Box::new(Query { sql, expect, message: p.message }))
    },
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// One statement returning one row with one column.
    sql: String,
    expect: String,
    /// What it means when the expectation fails ("no interview sessions today").
    #[serde(default)]
    message: Option<String>,
}

struct Query {
    sql: String,
    expect: Expect,
    message: Option<String>,
}

impl Check for Query {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let result = async {
                let session = session(ctx).await?;
                // Preparing first proves it is one statement (a prepared statement cannot
                // hold two) and tells the column count; the simple query then returns
                // the value as text, whatever its type.
                let statement = session.client.prepare(&self.sql).await.map_err(|e| query_failed("the query", &e))?;
                if statement.columns().len() != 1 {
                    return Err(Outcome::problem(format!(
                        "the query returns {} columns; it must return exactly one",
                        statement.columns().len()
                    )));
                }
                let messages =
                    session.client.simple_query(&self.sql).await.map_err(|e| query_failed("the query", &e))?;
                let rows: Vec<Option<&str>> = messages
                    .iter()
                    .filter_map(|m| match m {
                        SimpleQueryMessage::Row(row) => Some(row.try_get(0).ok().flatten()),
                        _ => None,
                    })
                    .collect();
                let value = match rows.as_slice() {
                    [Some(v)] => *v,
                    [None] => return Err(self.failed("returned NULL".into())),
                    [] => return Err(self.failed("returned no row".into())),
                    more => return Err(self.failed(format!("returned {} rows; it must return one", more.len()))),
                };
                Ok(match self.expect.holds(value) {
                    Ok(true) => Outcome::pass(format!("{value} (expected {})", self.expect)),
                    Ok(false) => self.failed(format!("got {value}, expected {}", self.expect)),
                    Err(why) => self.failed(format!("returned a value that {why}")),
                }
                .detail("value", value))
            };
            result.await.unwrap_or_else(|o| o).detail("expect", self.expect.to_string())
        }
        .boxed()
    }
}

impl Query {
    /// `{message}: {why}` — the manifest's words first, when it has some.
    fn failed(&self, why: String) -> Outcome {
        match &self.message {
            Some(m) => Outcome::problem(format!("{m}: {why}")),
            None => Outcome::problem(why),
        }
    }
}
