//! `env.required`: the variables MockMate cannot start without.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;

use crate::check::{Check, Ctx, KindDef, Outcome, Premise};
use crate::probe::postgres::target::DbVars;

pub static KIND: KindDef = KindDef {
    name: "env.required",
    title: "Required environment variables",
    description: "required variables are set and not empty; the database is configured by DATABASE_URL or DB_HOST/DB_USER/DB_PASSWORD/DB_NAME",
    build: |t| Ok(Box::new(EnvRequired(crate::check::params(t)?))),
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    /// Variables that must be set and not empty.
    vars: Vec<String>,
    /// Whether the database must be configured (DATABASE_URL or the DB_* set).
    database: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params { vars: vec!["NODE_ENV".into(), "JWT_SECRET".into(), "REDIS_URL".into()], database: true }
    }
}

struct EnvRequired(Params);

impl Check for EnvRequired {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let p = &self.0;
            let mut missing: Vec<String> = p.vars.iter().filter(|v| ctx.env.non_empty(v).is_none()).cloned().collect();
            // Every variable whose absence this check reports: checks that fail
            // because one is missing defer to this one ("see env.required").
            let mut unset = missing.clone();
            let mut set_count = p.vars.len() - missing.len();
            let mut database = serde_json::Value::Null;
            if p.database {
                if ctx.env.non_empty("DATABASE_URL").is_some() {
                    set_count += 1;
                    database = "DATABASE_URL".into();
                } else {
                    let absent = DbVars::read(&|name: &str| ctx.env.get(name)).missing();
                    if absent.is_empty() {
                        set_count += DbVars::REQUIRED.len();
                        database = "DB_*".into();
                    } else {
                        missing.push(format!("DATABASE_URL (or {})", absent.join(", ")));
                        unset.push("DATABASE_URL".to_string());
                        unset.extend(absent.iter().map(|v| v.to_string()));
                    }
                }
            }
            if missing.is_empty() {
                Outcome::pass(format!("all {set_count} set")).detail("database", database)
            } else {
                let outcome = Outcome::problem(format!("missing or empty: {}", missing.join(", ")))
                    .hint(format!(
                        "set them in the environment or in .env.{} (DATABASE_URL=postgres://<user>:<password>@<host>:5432/<db>)",
                        ctx.environment
                    ))
                    .detail("missing", missing);
                unset.into_iter().fold(outcome, |o, var| o.reports(Premise::Set(var)))
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use crate::check::testing::run_kind;
    use crate::report::Status;

    const FULL: &[(&str, &str)] = &[
        ("NODE_ENV", "production"),
        ("JWT_SECRET", "x"),
        ("REDIS_URL", "redis://localhost"),
        ("DATABASE_URL", "postgres://a@b/c"),
    ];

    #[tokio::test]
    async fn table() {
        let cases: &[(&[(&str, &str)], Status, &str)] = &[
            (FULL, Status::Pass, "all 4 set"),
            (
                &[],
                Status::Fail,
                "missing or empty: NODE_ENV, JWT_SECRET, REDIS_URL, DATABASE_URL (or DB_HOST, DB_USER, DB_PASSWORD, DB_NAME)",
            ),
            (
                &[
                    ("NODE_ENV", "production"),
                    ("JWT_SECRET", " "),
                    ("REDIS_URL", "r"),
                    ("DB_HOST", "h"),
                    ("DB_USER", "u"),
                    ("DB_PASSWORD", "p"),
                    ("DB_NAME", "n"),
                ],
                Status::Fail,
                "missing or empty: JWT_SECRET",
            ),
            (
                &[
                    ("NODE_ENV", "production"),
                    ("JWT_SECRET", "s"),
                    ("REDIS_URL", "r"),
                    ("DB_HOST", "h"),
                    ("DB_USER", "u"),
                    ("DB_PASSWORD", "p"),
                    ("DB_NAME", "n"),
                ],
                Status::Pass,
                "all 7 set",
            ),
            (
                &[("NODE_ENV", "production"), ("JWT_SECRET", "s"), ("REDIS_URL", "r"), ("DB_HOST", "h")],
                Status::Fail,
                "missing or empty: DATABASE_URL (or DB_USER, DB_PASSWORD, DB_NAME)",
            ),
        ];
        for (env, status, message) in cases {
            let r = run_kind(&super::KIND, "", env, "production").await;
            assert_eq!((r.status, r.message.as_str()), (*status, *message), "{env:?}");
        }
    }
}
