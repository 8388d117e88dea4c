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

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;

use super::shared::expect::Expect;
use super::shared::redis::session;
use crate::check::{Check, Ctx, KindDef, Outcome};

pub static KIND: KindDef = KindDef {
    name: "redis.info",
    title: "Redis INFO field",
    description: "an INFO field (`field`, optional `section`) meets `expect`: = != > >= < <= against a number, = != against text (read-only)",
    build: |t| {
        let p: Params = crate::check::params(t)?;
        if p.field.trim().is_empty() || p.field.contains(char::is_whitespace) {
            return Err(
                format!("`field` must name one INFO field (e.g. \"connected_slaves\"), not {:?}", p.field).into()
            );
        }
        if let Some(section) = &p.section
            && (section.is_empty() || !section.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(
                format!("`section` must be one INFO section name (e.g. \"replication\"), not {section:?}").into()
            );
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
    use crate::check::Verdict;
    use crate::manifest::{Source, load};

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
