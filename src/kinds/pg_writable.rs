//! `postgres.writable`: the database accepts writes (not a standby, not read-only by
//! default), or every session insert fails with 25006.
//!
//! Our own session is read-only (`SET SESSION CHARACTERISTICS AS TRANSACTION READ
//! ONLY` sets `default_transaction_read_only` for the session), so the current value
//! says nothing about the application's sessions. `pg_settings.reset_val` is the value
//! a session starts with — the server's, overridden by `ALTER DATABASE`/`ALTER ROLE
//! … SET` — which is what the API's connections get.

use futures::FutureExt;
use futures::future::BoxFuture;

use super::pg_common::{get, query_one, session};
use super::pg_role_settings::{Inherited, inherited_one_sql};
use crate::check::{Check, Ctx, KindDef, Outcome, Premise, Service};

pub static KIND: KindDef = KindDef {
    name: "postgres.writable",
    title: "PostgreSQL accepts writes",
    description: "the server is not a read-only standby (pg_is_in_recovery) and default_transaction_read_only is off for new sessions",
    build: |t| crate::check::without_params(t, Writable),
};

const SETTING: &str = "default_transaction_read_only";

/// Whether the server is a standby, the read-only default new sessions get, and
/// where that default is set (to name the exact RESET).
fn sql() -> String {
    format!(
        "SELECT pg_is_in_recovery(), (SELECT reset_val FROM pg_settings WHERE name = '{SETTING}'), {}",
        inherited_one_sql(SETTING)
    )
}

const HINT: &str = "point DATABASE_URL at the primary (read-write) endpoint, not a replica";

struct Writable;

impl Check for Writable {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let result = async {
                let session = session(ctx).await?;
                let row = query_one(&session, "the read-only state", &sql(), &[]).await?;
                let in_recovery: bool = get(&row, 0, "pg_is_in_recovery()")?;
                let read_only: Option<String> = get(&row, 1, "default_transaction_read_only")?;
                let inherited: serde_json::Value = get(&row, 2, "default_transaction_read_only")?;
                // Where it is set only sharpens the hint: an odd reply costs that, not the verdict.
                let inherited: Inherited = serde_json::from_value(inherited).unwrap_or_default();
                Ok(judge(in_recovery, read_only.as_deref() == Some("on"), &inherited))
            };
            result.await.unwrap_or_else(|o| o)
        }
        .boxed()
    }
}

fn judge(in_recovery: bool, read_only_default: bool, inherited: &Inherited) -> Outcome {
    // Resetting one level exposes the next one down: name every level that sets it.
    let levels = inherited.levels_of(SETTING);
    let resets: Vec<String> = levels.iter().map(|at| inherited.reset(at.level, SETTING)).collect();
    let set_by = levels.first().map(|at| format!(", set by {}", inherited.set_by(at.level))).unwrap_or_default();
    let outcome = match (in_recovery, read_only_default) {
        (false, false) => Outcome::pass("read-write (primary, default_transaction_read_only off)"),
        (true, _) => {
            Outcome::problem("connected to a read-only standby (pg_is_in_recovery): every insert will fail (25006)")
                .hint(HINT)
        }
        (false, true) if !resets.is_empty() => Outcome::problem(format!(
            "connected to a read-only database (default_transaction_read_only = on{set_by}): every insert will fail (25006)"
        ))
        .hint(format!("{HINT}; or, if this is the primary: {}", resets.join(" "))),
        (false, true) => Outcome::problem(
            "connected to a read-only database (default_transaction_read_only = on): every insert will fail (25006)",
        )
        .hint(format!(
            "{HINT}; or, if this is the primary, find who set it: \
             ALTER DATABASE … RESET default_transaction_read_only (or ALTER ROLE … RESET)"
        )),
    };
    let outcome =
        if in_recovery || read_only_default { outcome.reports(Premise::Writable(Service::Postgres)) } else { outcome };
    outcome.detail("in_recovery", in_recovery).detail("default_transaction_read_only", read_only_default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;

    #[test]
    fn standby_or_read_only_default_is_a_problem() {
        let none = Inherited::default();
        assert_eq!(judge(false, false, &none).verdict, Verdict::Pass);
        assert!(judge(true, false, &none).message.contains("standby"));
        assert!(judge(false, true, &none).message.contains("(25006)"));
        assert_eq!(judge(false, true, &none).verdict, Verdict::Problem);
        assert_eq!(judge(false, true, &none).causes.reports, [Premise::Writable(Service::Postgres)]);
    }

    #[test]
    fn a_read_only_default_names_where_it_is_set_and_the_reset() {
        let set = Inherited {
            role: "app".into(),
            database: "mockmate".into(),
            settings: vec![],
            levels: vec![crate::kinds::pg_role_settings::RawLevel {
                role: false,
                database: true,
                config: "default_transaction_read_only=on".into(),
            }],
        };
        let o = judge(false, true, &set);
        assert_eq!(
            o.message,
            "connected to a read-only database (default_transaction_read_only = on, set by ALTER DATABASE \"mockmate\"): \
             every insert will fail (25006)"
        );
        assert!(
            o.hint
                .unwrap_or_default()
                .ends_with("if this is the primary: ALTER DATABASE \"mockmate\" RESET default_transaction_read_only;")
        );
    }
}
