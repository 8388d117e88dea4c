//! `postgres.query`: an operator's own check — one SQL statement returning one
//! scalar, compared with an expectation (`"> 0"`, `"= 0"`, `"true"` …). It runs in
//! the run's read-only session, like every other `postgres.*` check.

use std::fmt;
use std::str::FromStr;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use tokio_postgres::SimpleQueryMessage;

use super::pg_common::{query_failed, session};
use super::{Check, KindDef, Outcome};
use crate::engine::Ctx;

pub static KIND: KindDef = KindDef {
    name: "postgres.query",
    title: "Custom SQL check",
    description: "your SQL returns one value that meets `expect` (\"> 0\", \">= 1\", \"= 0\", \"!= 0\", \"true\", \"false\")",
    build: |t| {
        let p: Params = super::params(t)?;
        let sql = p.sql.trim().trim_end_matches(';').trim().to_string();
        if sql.is_empty() {
            return Err("`sql`: give one SQL statement returning one value".into());
        }
        let expect = p.expect.parse::<Expect>().map_err(|e| format!("`expect`: {e}"))?;
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

/// What the value must be.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Compare(Op, f64),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ne => "!=",
        }
    }
}

impl FromStr for Expect {
    type Err = String;

    fn from_str(s: &str) -> Result<Expect, String> {
        let s = s.trim();
        match s.to_ascii_lowercase().as_str() {
            "true" => return Ok(Expect::Bool(true)),
            "false" => return Ok(Expect::Bool(false)),
            _ => {}
        }
        // Longest operators first: ">=" must not read as ">" then "=1".
        let ops = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("!=", Op::Ne),
            ("<>", Op::Ne),
            ("==", Op::Eq),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("=", Op::Eq),
        ];
        let bad = || {
            format!("\"{s}\" is not an expectation like \"> 0\", \">= 1\", \"= 0\", \"!= 0\", \"true\" or \"false\"")
        };
        let (op, rest) =
            ops.iter().find_map(|(text, op)| s.strip_prefix(text).map(|rest| (*op, rest))).ok_or_else(bad)?;
        let n: f64 = rest.trim().parse().map_err(|_| bad())?;
        if !n.is_finite() {
            return Err(bad());
        }
        Ok(Expect::Compare(op, n))
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Compare(op, n) => write!(f, "{} {n}", op.as_str()),
            Expect::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl Expect {
    /// Whether PostgreSQL's text form of a value meets the expectation; `Err` when the
    /// value is not of the expected kind (a word where a number was expected).
    fn check(&self, value: &str) -> Result<bool, String> {
        match self {
            Expect::Bool(want) => match value {
                "t" | "true" => Ok(*want),
                "f" | "false" => Ok(!*want),
                other => Err(format!("returned {other}, not a boolean")),
            },
            Expect::Compare(op, n) => {
                let v: f64 = value.trim().parse().map_err(|_| format!("returned {value}, not a number"))?;
                Ok(match op {
                    Op::Gt => v > *n,
                    Op::Ge => v >= *n,
                    Op::Lt => v < *n,
                    Op::Le => v <= *n,
                    Op::Eq => v == *n,
                    Op::Ne => v != *n,
                })
            }
        }
    }
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
                Ok(match self.expect.check(value) {
                    Ok(true) => Outcome::pass(format!("{value} (expected {})", self.expect)),
                    Ok(false) => self.failed(format!("got {value}, expected {}", self.expect)),
                    Err(why) => self.failed(why),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_parse_and_judge_text_values() {
        let cases: &[(&str, &str, Result<bool, ()>)] = &[
            ("> 0", "3", Ok(true)),
            ("> 0", "0", Ok(false)),
            (">= 1", "1", Ok(true)),
            ("=0", "0", Ok(true)),
            ("!= 0", "0", Ok(false)),
            ("<> 0", "2.5", Ok(true)),
            ("< 10", "12", Ok(false)),
            ("true", "t", Ok(true)),
            ("FALSE", "t", Ok(false)),
            ("true", "7", Err(())),
            ("> 0", "abc", Err(())),
        ];
        for (expect, value, want) in cases {
            let e: Expect = expect.parse().unwrap();
            assert_eq!(e.check(value).map_err(|_| ()), *want, "{expect} on {value}");
        }
        assert_eq!(">= 1".parse::<Expect>().unwrap().to_string(), ">= 1");
        for bad in ["", "> ", "positive", "~ 1", "> NaN", "=> 1"] {
            assert!(bad.parse::<Expect>().is_err(), "{bad}");
        }
    }
}
