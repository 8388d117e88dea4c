//! `postgres.writable`: the database accepts writes (not a standby, not read-only by
//! default), or every session insert fails with 25006.
//!
//! Our own statements run in read-only transactions, so `transaction_read_only`
//! says nothing about the application's. `pg_settings.reset_val` of
//! `default_transaction_read_only` is the value a session starts with — the
//! server's, overridden by `ALTER DATABASE`/`ALTER ROLE … SET` — which is what the
//! API's connections get.

use futures::FutureExt;
use futures::future::BoxFuture;

use super::pg_common::{get, query_one, session};
use crate::check::{Check, Ctx, KindDef, Outcome};

pub static KIND: KindDef = KindDef {
    name: "postgres.writable",
    title: "PostgreSQL accepts writes",
    description: "the server is not a read-only standby (pg_is_in_recovery) and default_transaction_read_only is off for new sessions",
    build: |t| crate::check::without_params(t, Writable),
};

const SQL: &str = "SELECT pg_is_in_recovery(), \
    (SELECT reset_val FROM pg_settings WHERE name = 'default_transaction_read_only')";

const HINT: &str = "point DATABASE_URL at the primary (read-write) endpoint, not a replica";

struct Writable;

impl Check for Writable {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let result = async {
                let session = session(ctx).await?;
                let row = query_one(&session, "the read-only state", SQL, &[]).await?;
                let in_recovery: bool = get(&row, 0, "pg_is_in_recovery()")?;
                let read_only: Option<String> = get(&row, 1, "default_transaction_read_only")?;
                Ok(judge(in_recovery, read_only.as_deref() == Some("on")))
            };
            result.await.unwrap_or_else(|o| o)
        }
        .boxed()
    }
}

fn judge(in_recovery: bool, read_only_default: bool) -> Outcome {
    let outcome = match (in_recovery, read_only_default) {
        (false, false) => Outcome::pass("read-write (primary, default_transaction_read_only off)"),
        (true, _) => {
            Outcome::problem("connected to a read-only standby (pg_is_in_recovery): every insert will fail (25006)")
                .hint(HINT)
        }
        (false, true) => Outcome::problem(
            "connected to a read-only database (default_transaction_read_only = on): every insert will fail (25006)",
        )
        .hint(format!(
            "{HINT}; or, if this is the primary, find who set it: \
             ALTER DATABASE … RESET default_transaction_read_only (or ALTER ROLE … RESET)"
        )),
    };
    outcome.detail("in_recovery", in_recovery).detail("default_transaction_read_only", read_only_default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;

    #[test]
    fn standby_or_read_only_default_is_a_problem() {
        assert_eq!(judge(false, false).verdict, Verdict::Pass);
        assert!(judge(true, false).message.contains("standby"));
        assert!(judge(false, true).message.contains("(25006)"));
        assert_eq!(judge(false, true).verdict, Verdict::Problem);
    }
}
