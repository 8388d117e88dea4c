//! `redis.info`: a user's own check on one `INFO` field, declared in a manifest:
//!
//! ```toml
//! [[check]]
//! id = "custom.redis_replicas"
//! kind = "redis.info"
//! needs = ["redis.connect"]
//! field = "connected_slaves"
//! expect = ">= 1"
//! ```
//!
//! Without `section` the field is read from the INFO taken at connect time (no
//! command sent); with `section` a fresh `INFO <section>` is asked for. INFO is
//! read-only either way. `expect` is validated when the manifest loads.

use std::cmp::Ordering;
use std::fmt;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;

use super::redis_connect::session;
use super::{Check, KindDef, Outcome};
use crate::engine::Ctx;

pub static KIND: KindDef = KindDef {
    name: "redis.info",
    title: "Redis INFO field",
    description: "an INFO field (`field`, optional `section`) meets `expect`: = != > >= < <= against a number, = != against text (read-only)",
    build: |t| {
        let p: Params = super::params(t)?;
        if p.field.trim().is_empty() || p.field.contains(char::is_whitespace) {
            return Err(format!("`field` must name one INFO field (e.g. \"connected_slaves\"), not {:?}", p.field));
        }
        if let Some(section) = &p.section
            && (section.is_empty() || !section.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(format!("`section` must be one INFO section name (e.g. \"replication\"), not {section:?}"));
        }
        let expect = Expect::parse(&p.expect).map_err(|e| format!("`expect` {e}"))?;
        Ok(Box::new(Info { field: p.field, section: p.section, expect }))
    },
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    field: String,
    expect: String,
    section: Option<String>,
}

struct Info {
    field: String,
    section: Option<String>,
    expect: Expect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
        }
    }

    fn ordering(self) -> bool {
        !matches!(self, Op::Eq | Op::Ne)
    }
}

/// `>= 1`, `= master`, `!= 0`: an operator and the value to compare with.
#[derive(Debug, Clone, PartialEq)]
struct Expect {
    op: Op,
    text: String,
    number: Option<f64>,
}

impl Expect {
    fn parse(raw: &str) -> Result<Expect, String> {
        let s = raw.trim();
        // Longest operators first, so `>=` is not read as `>` then `=1`.
        const OPS: &[(&str, Op)] = &[
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("!=", Op::Ne),
            ("<>", Op::Ne),
            ("==", Op::Eq),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("=", Op::Eq),
        ];
        let (op, rest) = OPS
            .iter()
            .find_map(|(sym, op)| s.strip_prefix(sym).map(|rest| (*op, rest.trim())))
            .ok_or_else(|| format!("must start with one of = != <> > >= < <= (e.g. \">= 1\"), not {raw:?}"))?;
        if rest.is_empty() {
            return Err(format!("has an operator but no value to compare with: {raw:?}"));
        }
        let number = rest.parse::<f64>().ok().filter(|n| n.is_finite());
        if op.ordering() && number.is_none() {
            return Err(format!("compares with {rest:?}, which is not a number; > >= < <= need one"));
        }
        Ok(Expect { op, text: rest.to_string(), number })
    }

    /// Numbers compare as numbers when both sides are; otherwise text must match exactly.
    fn holds(&self, actual: &str) -> Result<bool, String> {
        match (self.number, actual.trim().parse::<f64>().ok()) {
            (Some(want), Some(got)) => Ok(self.op.holds(got.total_cmp(&want))),
            _ if self.op.ordering() => Err(format!("is {actual:?}, not a number")),
            _ => Ok(self.op.holds(actual.cmp(self.text.as_str()))),
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        };
        write!(f, "{op} {}", self.text)
    }
}

impl Check for Info {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let session = match session(ctx).await {
                Ok(s) => s,
                Err(outcome) => return outcome,
            };
            let (value, source) = match &self.section {
                None => (session.field(&self.field).map(str::to_owned), "INFO".to_string()),
                Some(section) => match session.info_section(section).await {
                    Ok(mut fields) => (fields.remove(&self.field), format!("INFO {section}")),
                    Err(f) => return Outcome::from_failure(f),
                },
            };
            judge(&self.field, value.as_deref(), &self.expect, &source)
        }
        .boxed()
    }
}

fn judge(field: &str, value: Option<&str>, expect: &Expect, source: &str) -> Outcome {
    let Some(value) = value else {
        return Outcome::problem(format!("{source} has no field {field}"))
            .hint(format!(
                "compare the field name with `redis-cli {source}` on this server (fields differ between Redis versions and managed services)"
            ))
            .detail("field", field)
            .detail("expect", expect.to_string());
    };
    let outcome = match expect.holds(value) {
        Ok(true) => Outcome::pass(format!("{field} is {value} (expected {expect})")),
        // No hint of our own: the manifest's `hint` says what to do about the user's own rule.
        Ok(false) => Outcome::problem(format!("{field} is {value}, expected {expect}")),
        Err(why) => Outcome::problem(format!("{field} {why}; expected {expect}")),
    };
    outcome.detail("field", field).detail("value", value).detail("expect", expect.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Verdict;
    use crate::manifest::{Source, load};

    #[test]
    fn expectations_parse_and_compare() {
        // (expect, actual, holds)
        let cases: &[(&str, &str, bool)] = &[
            (">= 1", "1", true),
            (">=1", "0", false),
            ("> 0.5", "0.75", true),
            ("< 100", "100", false),
            ("<= 100", "100", true),
            ("= 0", "0.0", true),
            ("== master", "master", true),
            ("= master", "slave", false),
            ("!= slave", "master", true),
            ("!= 0", "3", true),
            ("<> 0", "0", false),
            ("= noeviction", "allkeys-lru", false),
        ];
        for (expect, actual, holds) in cases {
            let e = Expect::parse(expect).unwrap_or_else(|err| panic!("{expect}: {err}"));
            assert_eq!(e.holds(actual), Ok(*holds), "{expect} vs {actual}");
        }
        assert!(Expect::parse(">= 1").unwrap().holds("1.2M").is_err());
    }

    #[test]
    fn bad_expectations_are_manifest_errors_at_the_field() {
        let manifest = |params: &str| {
            let text = format!("[[check]]\nid = \"c\"\nkind = \"redis.info\"\n{params}\n");
            load(&[Source { label: "mine.toml".into(), text }]).map(|_| ()).map_err(|e| e.0)
        };
        assert_eq!(manifest("field = \"connected_slaves\"\nexpect = \">= 1\""), Ok(()));
        assert_eq!(manifest("field = \"role\"\nexpect = \"= master\"\nsection = \"replication\""), Ok(()));
        // (params, start of the error)
        let cases: &[(&str, &str)] = &[
            ("field = \"x\"\nexpect = \"1\"", "mine.toml:5:1: check `c` (kind redis.info): `expect` must start with"),
            (
                "field = \"x\"\nexpect = \">= many\"",
                "mine.toml:5:1: check `c` (kind redis.info): `expect` compares with \"many\"",
            ),
            ("field = \"x\"\nexpect = \">=\"", "mine.toml:5:1: check `c` (kind redis.info): `expect` has an operator"),
            ("field = \"\"\nexpect = \"= 1\"", "mine.toml:4:1: check `c` (kind redis.info): `field` must name"),
            (
                "field = \"x\"\nexpect = \"= 1\"\nsection = \"all keys\"",
                "mine.toml:6:1: check `c` (kind redis.info): `section` must be",
            ),
            ("expect = \"= 1\"", "mine.toml:1:1: check `c` (kind redis.info): missing field `field`"),
            ("field = \"x\"\nexpect = \"= 1\"\ncommand = \"FLUSHALL\"", "mine.toml:"),
        ];
        for (params, start) in cases {
            let e = manifest(params).expect_err(params);
            assert!(e.starts_with(start), "{params}: {e}");
        }
    }

    #[test]
    fn judge_names_field_value_and_expectation() {
        let e = Expect::parse(">= 1").unwrap();
        let o = judge("connected_slaves", Some("0"), &e, "INFO");
        assert_eq!((o.verdict, o.message.as_str()), (Verdict::Problem, "connected_slaves is 0, expected >= 1"));
        assert!(o.hint.is_none(), "the manifest's hint applies");
        let o = judge("connected_slaves", Some("2"), &e, "INFO");
        assert_eq!((o.verdict, o.message.as_str()), (Verdict::Pass, "connected_slaves is 2 (expected >= 1)"));
        let o = judge("conected_slaves", None, &e, "INFO replication");
        assert_eq!(o.message, "INFO replication has no field conected_slaves");
        assert!(o.hint.unwrap_or_default().contains("redis-cli INFO replication"));
    }
}
