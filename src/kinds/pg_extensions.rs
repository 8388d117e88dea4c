//! `postgres.extensions`: `gen_random_uuid()` exists — the users and sessions ids
//! default to it, and the runbook's `INSERT INTO users` calls it (core since
//! PostgreSQL 13, from pgcrypto before).

use futures::FutureExt;
use futures::future::BoxFuture;

use super::shared::postgres::{get, query_one, session};
use crate::check::{Check, Ctx, KindDef, Outcome};

pub static KIND: KindDef = KindDef {
    name: "postgres.extensions",
    title: "gen_random_uuid() is available",
    description: "gen_random_uuid() exists (PostgreSQL ≥ 13, or the pgcrypto extension)",
    build: |t| crate::check::without_params(t, Extensions),
};

const SQL: &str = "SELECT to_regprocedure('gen_random_uuid()')::text, \
    (SELECT extversion FROM pg_extension WHERE extname = 'pgcrypto')";

struct Extensions;

impl Check for Extensions {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let result = async {
                let session = session(ctx).await?;
                let row = query_one(&session, "the function lookup", SQL, &[]).await?;
                let function: Option<String> = get(&row, 0, "to_regprocedure")?;
                let pgcrypto: Option<String> = get(&row, 1, "pg_extension")?;
                let outcome = match &function {
                    Some(_) => Outcome::pass(match &pgcrypto {
                        Some(v) => format!("gen_random_uuid() available (pgcrypto {v} installed)"),
                        None => "gen_random_uuid() available".to_string(),
                    }),
                    None => Outcome::problem("gen_random_uuid() does not exist: inserts that rely on it fail (42883)")
                        .hint("CREATE EXTENSION pgcrypto; (or upgrade to PostgreSQL 13 or later)"),
                };
                Ok(outcome.detail("gen_random_uuid", function.is_some()).detail("pgcrypto", pgcrypto))
            };
            result.await.unwrap_or_else(|o| o)
        }
        .boxed()
    }
}
