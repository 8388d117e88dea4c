//! `env.required`: the variables MockMate cannot start without.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;

use super::shared::env::with_readings;
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
                return Outcome::pass(format!("all {set_count} set")).detail("database", database);
            }
            let example = "DATABASE_URL=postgres://<user>:<password>@<host>:5432/<db>";
            // When no env file was read, that is the news: say where we looked.
            let (message, hint) = match ctx.env.searched().filter(|_| ctx.env.files().is_empty()) {
                Some(searched) => (
                    format!(
                        "missing or empty: {} — no env file was read: {} has no {}",
                        missing.join(", "),
                        searched.dir.display(),
                        searched.names.join(" or ")
                    ),
                    format!(
                        "run from the directory that holds the API's env files, name the file with --env-file \
                         PATH, or set the variables in the environment ({example})"
                    ),
                ),
                None => (
                    format!("missing or empty: {}", missing.join(", ")),
                    format!("set them in the environment or in .env.{} ({example})", ctx.environment),
                ),
            };
            let outcome = Outcome::problem(message).hint(hint).detail("missing", missing);
            let outcome = unset.iter().fold(outcome, |o, var| o.reports(Premise::Set(var.clone())));
            // A variable the loader read as empty (`KEY=#…`) says why.
            let names: Vec<&str> = unset.iter().map(String::as_str).collect();
            with_readings(outcome, ctx, &names)
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

    #[tokio::test]
    async fn without_an_env_file_it_says_where_it_looked() {
        use crate::check::testing::run_kind_in;
        use crate::envctx::{EnvSet, Loader};
        let dir = tempfile::tempdir().expect("tempdir");
        let set =
            EnvSet::load([("NODE_ENV".into(), "production".into())], dir.path(), "production", &[], Loader::Dotenv)
                .expect("loads");
        let r = run_kind_in(&super::KIND, "", set, "production").await;
        assert_eq!(
            r.message,
            format!(
                "missing or empty: JWT_SECRET, REDIS_URL, DATABASE_URL (or DB_HOST, DB_USER, DB_PASSWORD, DB_NAME) \
                 — no env file was read: {} has no .env.production or .env",
                dir.path().display()
            )
        );
        assert!(r.hint.unwrap_or_default().starts_with("run from the directory that holds the API's env files"));
    }

    #[tokio::test]
    async fn a_value_dotenv_reads_as_empty_says_why() {
        use crate::check::testing::run_kind_in;
        use crate::envctx::{EnvSet, Loader};
        let file = "NODE_ENV=production\nJWT_SECRET=#s3cret\nREDIS_URL=redis://r\nDATABASE_URL=postgres://a@b/c\n";
        let set = EnvSet::from_file_text(file, ".env.production", Loader::Dotenv);
        let r = run_kind_in(&super::KIND, "", set, "production").await;
        assert_eq!(
            r.message,
            "missing or empty: JWT_SECRET; dotenv reads JWT_SECRET (.env.production:2) as 0 characters: the '#' \
             starts a comment (a shell `source` would keep it); quote the value"
        );
    }
}
