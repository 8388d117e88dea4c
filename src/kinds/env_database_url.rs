//! `env.database_url`: `DATABASE_URL` / `DB_*` are well-formed and agree.
//!
//! It reports the probe's own reading of them (`Ctx::postgres_target`): the same
//! parser, so the same words and the same hint as `postgres.connect` would give.

use futures::FutureExt;
use futures::future::BoxFuture;

use super::shared::env::{cut_in_userinfo, with_readings};
use crate::check::{Check, Ctx, KindDef, Outcome, Owner, Premise};
use crate::probe::postgres::target::DbVars;
use crate::probe::{Cause, Failure};

pub static KIND: KindDef = KindDef {
    name: "env.database_url",
    title: "Database URL is valid",
    description: "DATABASE_URL (or DB_*) parses as the API's driver reads it, DB_PORT is a port, and DATABASE_URL and DB_* agree",
    build: |t| crate::check::without_params(t, DatabaseUrl),
};

struct DatabaseUrl;

/// The variables the API's driver reads the database from.
const VARS: [&str; 6] = ["DATABASE_URL", "DB_HOST", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME"];

impl Check for DatabaseUrl {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move { with_readings(judge(ctx), ctx, &VARS) }.boxed()
    }
}

fn judge(ctx: &Ctx) -> Outcome {
    if let Some(cut) = cut_in_userinfo(ctx, "DATABASE_URL") {
        return cut;
    }
    let db = DbVars::read(&|name: &str| ctx.env.get(name));
    let db_port = match db.port() {
        Ok(port) => port,
        Err(failure) => return owned(failure),
    };
    let url_set = ctx.env.non_empty("DATABASE_URL").is_some();
    if !url_set && (db.host.is_none() || db.name.is_none()) {
        return Outcome::skip(format!("neither DATABASE_URL nor DB_HOST/DB_NAME is set (see {})", Owner::EnvRequired))
            .see(Owner::EnvRequired);
    }
    let target = match ctx.postgres_target() {
        Ok(target) => target,
        Err(failure) => return owned(failure),
    };
    let mut outcome = Outcome::pass(format!("{} on {}", target.dbname, target.endpoint()))
        .detail("source", target.source.as_str())
        .detail("host", target.host.clone())
        .detail("port", target.port)
        .detail("database", target.dbname.clone());
    if !matches!(target.scheme.as_str(), "postgres" | "postgresql" | "socket" | "") {
        outcome = Outcome::warn(format!(
            "DATABASE_URL starts with {}://, not postgres://: node-postgres ignores the scheme and connects \
             to PostgreSQL at {} anyway",
            target.scheme,
            target.endpoint()
        ))
        .hint("is this the URL of another service? write postgresql://<user>:<password>@<host>:<port>/<database>");
    } else if target.raw_at {
        outcome = Outcome::warn(format!(
            "{} on {}, but the password has a raw '@': node-postgres splits at the last '@', psql (and \
             migrations run with it) at the first, and would connect elsewhere",
            target.dbname,
            target.endpoint()
        ))
        .hint("percent-encode @ in the password as %40");
    }
    if url_set && (db.host.is_some() || db.name.is_some()) {
        let dh = db.host.unwrap_or_else(|| target.host.clone());
        let dn = db.name.unwrap_or_else(|| target.dbname.clone());
        if dh != target.host || dn != target.dbname || db_port != target.port {
            outcome = Outcome::warn(format!(
                "DATABASE_URL ({} on {}) and DB_* ({dn} on {dh}:{db_port}) point at different databases; DATABASE_URL wins",
                target.dbname,
                target.endpoint()
            ))
            .hint("remove the DB_* variables or make them match DATABASE_URL");
        }
    }
    outcome
}

/// The parser's failure as this check's finding: a malformed variable is this
/// check's to report (`postgres.connect`, failing on the same parse, defers to it);
/// an unset one is `env.required`'s.
fn owned(failure: Failure) -> Outcome {
    let malformed = match &failure.cause {
        Some(Cause::Malformed(var)) => Some(Premise::Valid(var.clone())),
        _ => None,
    };
    let outcome = Outcome::from_failure(failure);
    match malformed {
        Some(premise) => outcome.reports(premise),
        None => outcome,
    }
}

#[cfg(test)]
mod tests {
    use crate::check::testing::run_kind;
    use crate::report::Status;

    #[tokio::test]
    async fn table() {
        let cases: &[(&[(&str, &str)], Status, &str)] = &[
            (&[("DATABASE_URL", "postgres://app:pw@db:5432/mm")], Status::Pass, "mm on db:5432"),
            (
                &[("DATABASE_URL", "mysql://app:pw@db/mm")],
                Status::Warn,
                "DATABASE_URL starts with mysql://, not postgres://: node-postgres ignores the scheme and connects \
                 to PostgreSQL at db:5432 anyway",
            ),
            (
                &[("DATABASE_URL", "postgres://app:p@ss@db/mm")],
                Status::Warn,
                "mm on db:5432, but the password has a raw '@': node-postgres splits at the last '@', psql (and \
                 migrations run with it) at the first, and would connect elsewhere",
            ),
            (
                &[("DATABASE_URL", "postgres://app:p/w@db/mm")],
                Status::Fail,
                "DATABASE_URL is not a valid URL: invalid port number",
            ),
            (&[("DATABASE_URL", "postgres:///mm")], Status::Fail, "DATABASE_URL has no user name"),
            (
                &[("DATABASE_URL", "postgresql://app@/mm?host=/var/run/postgresql")],
                Status::Pass,
                "mm on /var/run/postgresql/.s.PGSQL.5432",
            ),
            (&[("DB_PORT", "54x")], Status::Fail, "DB_PORT is not a port number: \"54x\""),
            (
                &[("DATABASE_URL", "postgres://a:b@db/mm"), ("DB_HOST", "other"), ("DB_NAME", "mm")],
                Status::Warn,
                "DATABASE_URL (mm on db:5432) and DB_* (mm on other:5432) point at different databases; DATABASE_URL wins",
            ),
            (
                &[("DATABASE_URL", "postgres://a:b@db/mm"), ("DB_HOST", "db"), ("DB_NAME", "mm")],
                Status::Pass,
                "mm on db:5432",
            ),
            (&[], Status::Skip, "neither DATABASE_URL nor DB_HOST/DB_NAME is set (see env.required)"),
        ];
        for (env, status, message) in cases {
            let r = run_kind(&super::KIND, "", env, "production").await;
            assert_eq!((r.status, r.message.as_str()), (*status, *message), "{env:?}");
        }
    }

    #[tokio::test]
    async fn dotenvs_reading_is_said_beside_the_finding() {
        use crate::check::testing::run_kind_in;
        use crate::envctx::{EnvSet, Loader};
        let read = |file: &str| EnvSet::from_file_text(file, ".env.production", Loader::Dotenv);
        // The URL: dotenv gives the API `postgres://app:Pa`.
        let r = run_kind_in(&super::KIND, "", read("DATABASE_URL=postgres://app:Pa#ss-2024@db/mm\n"), "x").await;
        assert_eq!(r.status, Status::Fail);
        assert_eq!(
            r.message,
            "DATABASE_URL is cut at a '#' inside its user and password: the API gets a URL with no password and the wrong host; dotenv reads DATABASE_URL (.env.production:1) \
             as 17 characters: the '#' starts a comment (a shell `source` would keep it); quote the value"
        );
        assert!(r.hint.unwrap_or_default().starts_with("quote the value of DATABASE_URL in .env.production:1"));
        // `$` reaches the API as written: the login works, and the difference is said.
        let file = "DB_HOST=db\nDB_USER=app\nDB_PASSWORD=pa$word\nDB_NAME=mm\n";
        let r = run_kind_in(&super::KIND, "", read(file), "x").await;
        assert_eq!(r.status, Status::Pass);
        assert_eq!(
            r.message,
            "mm on db:5432; dotenv passes the '$' in DB_PASSWORD (.env.production:3) through as written (no \
             expansion); a shell `source`, dotenvy or dotenv-expand would substitute a variable there"
        );
        assert!(!r.message.contains("pa$word"));
    }

    #[tokio::test]
    async fn a_hash_in_a_quoted_url_is_named() {
        let r = run_kind(&super::KIND, "", &[("DATABASE_URL", "postgres://app:Pa#ss@db/mm")], "x").await;
        assert_eq!(
            r.message,
            "DATABASE_URL is not a valid URL: invalid port number (the '#' in it starts the URL's fragment: the \
             URL ends before it; percent-encode it as %23)"
        );
    }

    #[tokio::test]
    async fn unescaped_characters_in_the_password_get_the_encoding_hint_and_are_never_quoted() {
        for url in ["postgres://app:p/w@db/mm", "postgres://app:p#w@db/mm"] {
            let r = run_kind(&super::KIND, "", &[("DATABASE_URL", url)], "production").await;
            assert_eq!(r.status, Status::Fail, "{url}");
            assert!(r.hint.as_deref().unwrap_or("").contains("percent-encode"), "{r:?}");
            assert!(!r.message.contains("p/w") && !r.message.contains("p#w"), "{}", r.message);
        }
    }
}
