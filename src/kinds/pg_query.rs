//! `postgres.query`: an operator's own check — one SQL statement returning one
//! scalar, compared with an expectation (`"> 0"`, `"= 0"`, `"true"` …). It runs in
//! the run's read-only session, like every other `postgres.*` check.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use tokio_postgres::types::Type;
use tokio_postgres::{Row, SimpleQueryMessage};

use super::shared::expect::Expect;
use super::shared::postgres::{query_failed, session};
use crate::check::{Check, Ctx, KindDef, Outcome};
use crate::probe::postgres::PgSession;

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
        first_keyword_reads(&sql)?;
        let expect = Expect::parse(&p.expect).map_err(|e| format!("`expect` {e}"))?;
        Ok(Box::new(Query { sql, expect, message: p.message }))
    },
};

/// Statements a read-only check may be: a query. `PREPARE`, `DEALLOCATE`,
/// `LISTEN`, `DISCARD` … run in a read-only transaction too, and outlive its
/// `ROLLBACK` on the backend, which behind a transaction pooler serves the API next.
const READING: [&str; 5] = ["SELECT", "WITH", "VALUES", "TABLE", "SHOW"];

/// `sql` starts (after comments) with a query keyword, or why it must.
fn first_keyword_reads(sql: &str) -> Result<(), String> {
    let mut rest = sql.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, after)| after).trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, after)| after).trim_start();
        } else {
            break;
        }
    }
    let rest = rest.trim_start_matches(|c: char| c == '(' || c.is_whitespace());
    let word: String = rest.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    if READING.iter().any(|k| k.eq_ignore_ascii_case(&word)) {
        return Ok(());
    }
    Err(format!(
        "`sql` must be a query ({}), not {:?}: other statements can leave state on the server that outlives the check",
        READING.join(", "),
        if word.is_empty() { rest.chars().take(20).collect::<String>() } else { word.to_uppercase() }
    ))
}

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
                // The extended protocol runs one statement only (Parse refuses two), so a
                // user's SQL cannot end the read-only unit it runs in and write after it.
                let rows = session.query_typed(&self.sql, &[]).await.map_err(|e| query_failed("the query", &e))?;
                let row = match rows.as_slice() {
                    [row] => row,
                    [] => return Err(self.failed("returned no row".into())),
                    more => return Err(self.failed(format!("returned {} rows; it must return one", more.len()))),
                };
                if row.columns().len() != 1 {
                    return Err(Outcome::problem(format!(
                        "the query returns {} columns; it must return exactly one",
                        row.columns().len()
                    )));
                }
                let value = match scalar_text(row) {
                    Some(Scalar::Value(v)) => v,
                    Some(Scalar::Null) => return Err(self.failed("returned NULL".into())),
                    // A type without a decoder here: ask for its text form (one statement,
                    // proven above; read-only like the first).
                    None => self.as_text(&session).await?,
                };
                Ok(match self.expect.holds(&value) {
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

/// The one column of a row, decoded.
enum Scalar {
    Value(String),
    Null,
}

/// The value as text for the types a check is likely to return; `None` for others.
fn scalar_text(row: &Row) -> Option<Scalar> {
    fn text<T: ToString>(v: Option<T>) -> Scalar {
        v.map_or(Scalar::Null, |v| Scalar::Value(v.to_string()))
    }
    let ty = row.columns().first()?.type_().clone();
    Some(match ty {
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN => {
            text(row.try_get::<_, Option<String>>(0).ok()?)
        }
        Type::INT2 => text(row.try_get::<_, Option<i16>>(0).ok()?),
        Type::INT4 => text(row.try_get::<_, Option<i32>>(0).ok()?),
        Type::INT8 => text(row.try_get::<_, Option<i64>>(0).ok()?),
        Type::OID => text(row.try_get::<_, Option<u32>>(0).ok()?),
        Type::FLOAT4 => text(row.try_get::<_, Option<f32>>(0).ok()?),
        Type::FLOAT8 => text(row.try_get::<_, Option<f64>>(0).ok()?),
        Type::BOOL => text(row.try_get::<_, Option<bool>>(0).ok()?),
        Type::UUID => text(row.try_get::<_, Option<uuid::Uuid>>(0).ok()?),
        _ => return None,
    })
}

impl Query {
    /// The value in PostgreSQL's own text form (the simple protocol returns text).
    async fn as_text(&self, session: &PgSession) -> Result<String, Outcome> {
        let messages = session.simple_query(&self.sql).await.map_err(|e| query_failed("the query", &e))?;
        let value = messages.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.try_get(0).ok().flatten().map(str::to_string)),
            _ => None,
        });
        match value {
            Some(Some(v)) => Ok(v),
            Some(None) => Err(self.failed("returned NULL".into())),
            None => Err(self.failed("returned no row".into())),
        }
    }

    /// `{message}: {why}` — the manifest's words first, when it has some.
    fn failed(&self, why: String) -> Outcome {
        match &self.message {
            Some(m) => Outcome::problem(format!("{m}: {why}")),
            None => Outcome::problem(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::first_keyword_reads;

    #[test]
    fn only_queries_may_be_custom_checks() {
        for ok in [
            "SELECT 1",
            "  with x AS (SELECT 1) SELECT * FROM x",
            "-- c\n/* d */ select 1",
            "SHOW server_version",
            "(SELECT 1)",
        ] {
            assert_eq!(first_keyword_reads(ok), Ok(()), "{ok}");
        }
        for refused in ["PREPARE p AS SELECT 1", "DEALLOCATE ALL", "listen x", "/* x */ DISCARD ALL"] {
            let e = first_keyword_reads(refused).expect_err(refused);
            assert!(e.starts_with("`sql` must be a query (SELECT, WITH, VALUES, TABLE, SHOW)"), "{e}");
        }
    }
}
