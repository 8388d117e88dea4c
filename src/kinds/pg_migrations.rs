//! `postgres.migrations`: the migration tool's own table shows no stuck or failed
//! migration (a held knex lock blocks every later `npm run migrate`; a failed Prisma
//! migration blocks `prisma migrate deploy`). Knows knex, node-pg-migrate, Sequelize,
//! Prisma, TypeORM and Drizzle; without any of their tables there is nothing to judge.

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio_postgres::Row;

use super::shared::postgres::{get, query_failed, query_one, session};
use crate::check::{Check, Ctx, KindDef, Outcome};
use crate::probe::postgres::PgSession;

pub static KIND: KindDef = KindDef {
    name: "postgres.migrations",
    title: "Database migrations",
    description: "the migration table (knex, node-pg-migrate, Sequelize, Prisma, TypeORM, Drizzle) shows no stuck or failed migration",
    build: |t| crate::check::without_params(t, Migrations),
};

/// Which tools' tables exist (resolved like the app's unqualified names). TypeORM's
/// generic `migrations` counts only with its `timestamp` and `name` columns.
const DETECT: &str = "SELECT
    to_regclass('knex_migrations') IS NOT NULL,
    to_regclass('knex_migrations_lock') IS NOT NULL,
    to_regclass('pgmigrations') IS NOT NULL,
    to_regclass('\"SequelizeMeta\"') IS NOT NULL,
    to_regclass('_prisma_migrations') IS NOT NULL,
    (SELECT count(*) = 2 FROM pg_attribute
      WHERE attrelid = to_regclass('migrations') AND attname IN ('timestamp', 'name') AND NOT attisdropped),
    coalesce(to_regclass('drizzle.__drizzle_migrations'), to_regclass('__drizzle_migrations'))::text";

/// One tool's state.
struct Finding {
    tool: &'static str,
    applied: i64,
    latest: Option<String>,
    /// What is stuck or failed, with the fix.
    problem: Option<(String, String)>,
}

struct Migrations;

impl Check for Migrations {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let result = async {
                let session = session(ctx).await?;
                let what = "the migration table lookup";
                let row = query_one(&session, what, DETECT, &[]).await?;
                let has = |i: usize| get::<bool>(&row, i, what);
                let (knex, knex_lock, pgm, sequelize, prisma, typeorm) =
                    (has(0)?, has(1)?, has(2)?, has(3)?, has(4)?, has(5)?);
                let drizzle: Option<String> = get(&row, 6, what)?;
                let s = &*session;
                // Each tool's queries, pipelined together.
                let (knex, pgm, sequelize, prisma, typeorm, drizzle) = futures::join!(
                    async { if knex { Some(knex_state(s, knex_lock).await) } else { None } },
                    async {
                        if pgm { Some(latest(s, "node-pg-migrate", "SELECT count(*), (SELECT name FROM pgmigrations ORDER BY run_on DESC, id DESC LIMIT 1) FROM pgmigrations").await) } else { None }
                    },
                    async {
                        if sequelize { Some(latest(s, "Sequelize", "SELECT count(*), max(name)::text FROM \"SequelizeMeta\"").await) } else { None }
                    },
                    async { if prisma { Some(prisma_state(s).await) } else { None } },
                    async {
                        if typeorm { Some(latest(s, "TypeORM", "SELECT count(*), (SELECT name FROM migrations ORDER BY \"timestamp\" DESC LIMIT 1) FROM migrations").await) } else { None }
                    },
                    async {
                        match &drizzle {
                            Some(table) => Some(latest(s, "Drizzle", &format!("SELECT count(*), (SELECT hash FROM {table} ORDER BY created_at DESC LIMIT 1) FROM {table}")).await),
                            None => None,
                        }
                    },
                );
                let findings: Vec<Finding> =
                    [knex, pgm, sequelize, prisma, typeorm, drizzle].into_iter().flatten().collect::<Result<_, _>>()?;
                Ok(judge(&findings))
            };
            result.await.unwrap_or_else(|o| o)
        }
        .boxed()
    }
}

fn judge(findings: &[Finding]) -> Outcome {
    if findings.is_empty() {
        return Outcome::skip("no migration table found (knex, node-pg-migrate, Sequelize, Prisma, TypeORM, Drizzle)");
    }
    let summary = |f: &Finding| match &f.latest {
        Some(latest) => format!("{}: {} applied, latest {latest}", f.tool, f.applied),
        None => format!("{}: none applied", f.tool),
    };
    let problems: Vec<&(String, String)> = findings.iter().filter_map(|f| f.problem.as_ref()).collect();
    let outcome = if problems.is_empty() {
        Outcome::pass(findings.iter().map(summary).collect::<Vec<_>>().join("; "))
    } else {
        Outcome::problem(problems.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>().join("; "))
            .hint(problems.iter().map(|(_, h)| h.as_str()).collect::<Vec<_>>().join("; "))
    };
    let tools: Vec<serde_json::Value> = findings
        .iter()
        .map(|f| serde_json::json!({"tool": f.tool, "applied": f.applied, "latest": f.latest}))
        .collect();
    outcome.detail("tools", tools)
}

/// `count(*)` and the latest migration's name, from a query returning both.
async fn latest(s: &PgSession, tool: &'static str, sql: &str) -> Result<Finding, Outcome> {
    let what = format!("the {tool} migration table");
    let row = query_one(s, &what, sql, &[]).await?;
    let (applied, latest) = count_and_name(&row, &what)?;
    Ok(Finding { tool, applied, latest, problem: None })
}

fn count_and_name(row: &Row, what: &str) -> Result<(i64, Option<String>), Outcome> {
    Ok((get(row, 0, what)?, get(row, 1, what)?))
}

async fn knex_state(s: &PgSession, has_lock_table: bool) -> Result<Finding, Outcome> {
    let mut finding = latest(
        s,
        "knex",
        "SELECT count(*), (SELECT name FROM knex_migrations ORDER BY id DESC LIMIT 1) FROM knex_migrations",
    )
    .await?;
    if has_lock_table {
        let what = "knex_migrations_lock";
        let rows = s
            .query_typed("SELECT coalesce(bool_or(is_locked::int <> 0), false) FROM knex_migrations_lock", &[])
            .await
            .map_err(|e| query_failed(what, &e))?;
        let locked = match rows.first() {
            Some(row) => get::<bool>(row, 0, what)?,
            None => false,
        };
        if locked {
            finding.problem = Some((
                "knex migration lock is held (knex_migrations_lock.is_locked = 1): a migration is running, \
                 or one crashed and every later migrate will wait forever"
                    .to_string(),
                "if no migration is running: npx knex migrate:unlock (or in psql: UPDATE knex_migrations_lock SET \
                 is_locked = 0;), then npm run migrate"
                    .to_string(),
            ));
        }
    }
    Ok(finding)
}

async fn prisma_state(s: &PgSession) -> Result<Finding, Outcome> {
    let what = "_prisma_migrations";
    let row = query_one(
        s,
        what,
        "SELECT count(*) FILTER (WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL),
                (SELECT migration_name FROM _prisma_migrations
                  WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL ORDER BY finished_at DESC LIMIT 1),
                (SELECT json_agg(json_build_object('name', migration_name, 'started_at', started_at,
                        'log', left(split_part(coalesce(logs, ''), E'\\n', 1), 200)) ORDER BY started_at)
                   FROM _prisma_migrations WHERE finished_at IS NULL AND rolled_back_at IS NULL)
         FROM _prisma_migrations",
        &[],
    )
    .await?;
    let (applied, latest) = count_and_name(&row, what)?;
    let unfinished: Option<serde_json::Value> = get(&row, 2, what)?;
    let unfinished = unfinished.and_then(|v| v.as_array().cloned()).unwrap_or_default();
    let problem = (!unfinished.is_empty()).then(|| {
        let names: Vec<String> = unfinished
            .iter()
            .map(|m| {
                let name = m["name"].as_str().unwrap_or("?");
                match m["log"].as_str().filter(|l| !l.is_empty()) {
                    Some(log) => format!("{name} ({log})"),
                    None => name.to_string(),
                }
            })
            .collect();
        let first = unfinished.first().and_then(|m| m["name"].as_str()).unwrap_or("NAME");
        (
            format!("Prisma migration started and not finished (failed or still running): {}", names.join(", ")),
            format!(
                "fix the cause, then npx prisma migrate resolve --rolled-back {first} (or --applied) \
                 and npx prisma migrate deploy"
            ),
        )
    });
    Ok(Finding { tool: "Prisma", applied, latest, problem })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;

    #[test]
    fn no_tables_is_a_skip_and_problems_win() {
        assert_eq!(judge(&[]).verdict, Verdict::Skip);
        let ok = Finding { tool: "knex", applied: 3, latest: Some("003_sessions.js".into()), problem: None };
        assert_eq!(judge(&[ok]).message, "knex: 3 applied, latest 003_sessions.js");
        let stuck =
            Finding { tool: "knex", applied: 3, latest: None, problem: Some(("lock held".into(), "unlock".into())) };
        let o = judge(&[stuck]);
        assert_eq!((o.verdict, o.message.as_str(), o.hint.as_deref()), (Verdict::Problem, "lock held", Some("unlock")));
    }
}
