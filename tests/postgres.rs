//! The `postgres.*` checks as an operator meets them: the real binary against real
//! PostgreSQL clusters, broken the ways production breaks (runbook: "Database
//! connectivity issues", "Missing users in production", "Schema problems").

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::cmd::{assert_hints_paste, assert_status, check, diag, hint, json_run, message};
use crate::support::pg::{PgServer, SUPERUSER, SUPERUSER_PASSWORD, free_port};
use crate::support::redis::RedisServer;
use crate::support::tarpit::Tarpit;
use serde_json::Value;

const PG_IDS: &[&str] = &[
    "postgres.connect",
    "postgres.tls",
    "postgres.writable",
    "postgres.schema",
    "postgres.extensions",
    "postgres.active_users",
    "postgres.privileges",
    "postgres.connections",
    "postgres.locks",
    "postgres.migrations",
];

/// Runs every `postgres.*` check with `env` (and nothing else) in an empty directory.
pub(crate) fn run_pg(env: &[(&str, &str)], extra: &[&str]) -> (i32, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = diag(dir.path());
    cmd.envs(env.iter().copied()).args(["--format", "json", "--only", &PG_IDS.join(",")]).args(extra);
    let (code, report) = json_run(&mut cmd);
    assert_hints_paste(&report);
    (code, report)
}

pub(crate) fn run_url(url: &str) -> (i32, Value) {
    run_pg(&[("DATABASE_URL", url)], &[])
}

/// A fresh database with the MockMate schema and one active user; its superuser URL.
fn healthy(name: &str) -> (&'static PgServer, String, String) {
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db(name);
    let url = pg.superuser_url(&db);
    (pg, db, url)
}

#[test]
fn healthy_schema_with_one_active_user_passes_every_check() {
    let (pg, db, url) = healthy("healthy");
    let (code, report) = run_url(&url);
    for id in PG_IDS.iter().filter(|id| **id != "postgres.migrations") {
        assert_status(&report, id, "pass");
    }
    // No migration tool's table: nothing to judge, not a warning.
    assert_status(&report, "postgres.migrations", "skip");
    assert_eq!(
        message(&report, "postgres.migrations"),
        "no migration table found (knex, node-pg-migrate, Sequelize, Prisma, TypeORM, Drizzle)"
    );
    assert_eq!(code, 0, "{report:#}");

    let connect = check(&report, "postgres.connect");
    let msg = message(&report, "postgres.connect");
    assert!(
        msg.starts_with("PostgreSQL 1")
            && msg.ends_with(" via DATABASE_URL, unencrypted (no TLS setting in DATABASE_URL, the Pool or PGSSLMODE)"),
        "{msg}"
    );
    let d = &connect["details"];
    assert_eq!(
        (d["tls"].clone(), d["sslmode"].clone(), d["tls_mode"].clone(), d["source"].clone()),
        (false.into(), Value::Null, "disable".into(), "DATABASE_URL".into())
    );
    assert_eq!((d["host"].clone(), d["port"].clone()), ("127.0.0.1".into(), pg.port.into()));
    assert_eq!((d["database"].clone(), d["user"].clone()), (db.as_str().into(), SUPERUSER.into()));
    assert!(d["server_version"].is_string() && d["latency_ms"].is_u64(), "{d:#}");

    assert_eq!(message(&report, "postgres.tls"), "unencrypted, to a local host (127.0.0.1)");
    assert_eq!(
        message(&report, "postgres.schema"),
        "2 tables, 16 columns and 1 foreign key present (no index on sessions.user_id)"
    );
    // An FK without an index is a detail, not a failure.
    assert_eq!(
        check(&report, "postgres.schema")["details"]["unindexed_foreign_keys"],
        serde_json::json!(["sessions.user_id"])
    );
    assert_eq!(message(&report, "postgres.active_users"), "at least one active user (is_active = true)");
    assert_eq!(message(&report, "postgres.privileges"), "role \"postgres\" has all 3 required privileges");
    let conns = &check(&report, "postgres.connections")["details"];
    assert!(conns["in_use"].as_u64().is_some_and(|n| n >= 1) && conns["max"] == 40, "{conns:#}");
}

#[test]
fn no_users_then_postgres_active_users_fails_with_the_hint_to_create_a_user() {
    let pg = PgServer::shared();
    let db = pg.create_db("no_users");
    pg.sql(&db, crate::support::pg::MOCKMATE_SCHEMA);
    let (code, report) = run_url(&pg.superuser_url(&db));
    assert_eq!(code, 1);
    assert_status(&report, "postgres.active_users", "fail");
    assert_eq!(
        message(&report, "postgres.active_users"),
        "the users table is empty: session creation fails with INVALID_USER_REFERENCE"
    );
    assert!(hint(&report, "postgres.active_users").contains("INSERT INTO users (id, email, first_name, last_name, credits, is_active, is_verified) VALUES (gen_random_uuid(), 'test@mock-mate.com', 'Test', 'User', 10, true, true);"));
    assert_status(&report, "postgres.schema", "pass");
}

#[test]
fn only_inactive_users_then_postgres_active_users_fails() {
    let (pg, db, url) = healthy("inactive_users");
    pg.sql(&db, "UPDATE users SET is_active = false");
    let (_, report) = run_url(&url);
    assert_status(&report, "postgres.active_users", "fail");
    assert!(
        message(&report, "postgres.active_users").starts_with("users exist, but none is active (is_active = true)")
    );
    assert!(hint(&report, "postgres.active_users").contains("INSERT INTO users"));
}

/// Issue 27: tables with exactly the columns the session route and the runbook
/// use pass the gate, the dry run included; what a full migration adds besides is
/// said, not failed.
#[test]
fn a_schema_with_only_the_routes_and_runbooks_columns_passes_the_gate() {
    let pg = PgServer::shared();
    let db = pg.create_db("runbook_only_schema");
    pg.sql(
        &db,
        "CREATE TABLE users (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email text NOT NULL UNIQUE, \
           first_name text, last_name text, credits int NOT NULL DEFAULT 0, is_active bool NOT NULL DEFAULT true, \
           is_verified bool NOT NULL DEFAULT false); \
         CREATE TABLE sessions (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), user_id uuid NOT NULL REFERENCES users(id), \
           job_title text, difficulty text, duration int, session_type text); \
         INSERT INTO users (id, email, first_name, last_name, credits, is_active, is_verified) \
           VALUES (gen_random_uuid(), 'test@mock-mate.com', 'Test', 'User', 10, true, true);",
    );
    let url = pg.superuser_url(&db);
    // Every postgres.* check of PG_IDS, and the dry run.
    let (code, report) = run_pg(&[("DATABASE_URL", &url)], &["--only", "postgres.session_insert", "--allow-writes"]);
    assert_eq!(code, 0, "{report:#}");
    assert_status(&report, "postgres.session_insert", "pass");
    assert_status(&report, "postgres.schema", "pass");
    assert_eq!(
        message(&report, "postgres.schema"),
        "2 tables, 13 columns and 1 foreign key present (no index on sessions.user_id; not present, and not used \
         by the API: sessions.status, sessions.created_at, users.created_at)"
    );
}

/// Issue 27: the planner's estimate is labelled as one, and unknown until ANALYZE.
#[test]
fn the_active_users_estimate_is_labelled_and_unknown_without_statistics() {
    let (pg, db, url) = healthy("estimate_label");
    let (_, report) = run_url(&url);
    let d = &check(&report, "postgres.active_users")["details"];
    assert_eq!(d["planner_estimate_active_users"], Value::Null, "{d:#}");
    assert!(d["planner_estimate_basis"].as_str().unwrap_or_default().contains("never analyzed"), "{d:#}");
    assert!(d.get("estimated_active_users").is_none(), "{d:#}");
    pg.sql(&db, "ANALYZE users");
    let (_, report) = run_url(&url);
    let d = &check(&report, "postgres.active_users")["details"];
    assert_eq!(d["planner_estimate_active_users"], 1, "{d:#}");
    assert!(d["planner_estimate_basis"].as_str().unwrap_or_default().contains("an estimate, not a count"), "{d:#}");
}

#[test]
fn missing_sessions_table_then_postgres_schema_fails_with_run_the_migrations() {
    let (pg, db, url) = healthy("missing_table");
    pg.sql(&db, "DROP TABLE sessions");
    let (code, report) = run_url(&url);
    assert_eq!(code, 1);
    assert_status(&report, "postgres.schema", "fail");
    assert_eq!(message(&report, "postgres.schema"), "missing table: sessions");
    assert_eq!(hint(&report, "postgres.schema"), "run the database migrations (npm run migrate)");
    // Nothing to judge on a table that is not there; no SQL error either.
    assert_status(&report, "postgres.privileges", "skip");
    assert!(message(&report, "postgres.privileges").contains("sessions"), "{report:#}");
    assert_status(&report, "postgres.active_users", "pass");
}

#[test]
fn missing_users_table_then_active_users_defers_to_postgres_schema() {
    let pg = PgServer::shared();
    let db = pg.create_db("no_users_table");
    let (_, report) = run_url(&pg.superuser_url(&db));
    assert_eq!(message(&report, "postgres.schema"), "missing tables: sessions, users");
    // One cause, one failure: the schema check owns the missing table.
    assert_eq!(check(&report, "postgres.active_users")["see"], "postgres.schema", "{report:#}");
    assert!(message(&report, "postgres.active_users").starts_with("see postgres.schema: cannot read users: "));
}

#[test]
fn missing_column_then_postgres_schema_names_it() {
    let (pg, db, url) = healthy("missing_column");
    pg.sql(&db, "ALTER TABLE users DROP COLUMN credits; ALTER TABLE sessions DROP COLUMN session_type");
    let (_, report) = run_url(&url);
    assert_status(&report, "postgres.schema", "fail");
    assert_eq!(message(&report, "postgres.schema"), "missing columns: sessions.session_type, users.credits");
}

#[test]
fn dropped_foreign_key_then_postgres_schema_names_it() {
    let (pg, db, url) = healthy("fk_dropped");
    pg.sql(&db, "ALTER TABLE sessions DROP CONSTRAINT sessions_user_id_fkey");
    let (_, report) = run_url(&url);
    assert_status(&report, "postgres.schema", "fail");
    assert_eq!(message(&report, "postgres.schema"), "missing foreign key: sessions.user_id → users.id");
}

#[test]
fn refused_port_fails_connect_and_skips_the_rest() {
    let port = free_port();
    let (code, report) = run_url(&format!("postgresql://app:pw@127.0.0.1:{port}/mockmate"));
    assert_eq!(code, 1);
    assert_status(&report, "postgres.connect", "fail");
    assert_eq!(message(&report, "postgres.connect"), format!("connection refused at 127.0.0.1:{port}"));
    for id in &PG_IDS[1..] {
        assert_status(&report, id, "skip");
        assert_eq!(message(&report, id), "needs postgres.connect, which failed");
    }
}

#[test]
fn silent_server_with_timeout_1s_finishes_under_3s_and_redis_is_unaffected() {
    let tarpit = Tarpit::start();
    let redis = RedisServer::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let (code, report) = json_run(
        diag(dir.path())
            .env("DATABASE_URL", format!("postgresql://app:pw@127.0.0.1:{}/mockmate", tarpit.port))
            .env("REDIS_URL", redis.url())
            .args(["--format", "json", "--timeout", "1s"]),
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(code, 1);
    assert_status(&report, "postgres.connect", "fail");
    // The probe's own message names the phase ("… waiting for the server's reply to
    // startup"), but the engine's deadline for the check is the same 1s and usually
    // fires first with the generic one: both start with this.
    assert!(message(&report, "postgres.connect").starts_with("timed out after 1s"), "{report:#}");
    assert_status(&report, "postgres.schema", "skip");
    // Redis does not wait for PostgreSQL: its checks judge on their own.
    assert_status(&report, "env.redis_url", "pass");
    let has_redis_connect = report["checks"].as_array().is_some_and(|c| c.iter().any(|c| c["id"] == "redis.connect"));
    if has_redis_connect {
        assert_status(&report, "redis.connect", "pass");
    }
}

#[test]
fn wrong_password_fails_with_28p01_and_the_password_never_shows() {
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db("wrong_password");
    let user = format!("app_{db}");
    pg.create_user(&user, "the-right-password");
    let sentinel = "S3NTINEL-pg-wrong-pw-q7";
    for format in ["json", "table"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = diag(dir.path())
            .env("DATABASE_URL", pg.url(&user, sentinel, &db))
            .args(["--format", format, "--only", "postgres.connect"])
            .output()
            .expect("runs");
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!all.contains(sentinel), "password leaked in {format}:\n{all}");
        assert!(
            all.contains(&format!("password authentication failed for user \\\"{user}\\\" (28P01)"))
                || all.contains(&format!("password authentication failed for user \"{user}\" (28P01)")),
            "{all}"
        );
        assert_eq!(out.status.code(), Some(1));
    }
}

#[test]
fn unknown_database_fails_with_3d000() {
    let pg = PgServer::shared();
    let (_, report) = run_url(&pg.superuser_url("mockmate_prod"));
    assert_status(&report, "postgres.connect", "fail");
    assert_eq!(message(&report, "postgres.connect"), "database \"mockmate_prod\" does not exist (3D000)");
    assert!(hint(&report, "postgres.connect").contains("create the database"));
}

#[test]
fn read_only_database_then_postgres_writable_fails_with_25006() {
    let (pg, db, url) = healthy("read_only_db");
    pg.sql("postgres", &format!("ALTER DATABASE \"{db}\" SET default_transaction_read_only = on"));
    let (_, report) = run_url(&url);
    assert_status(&report, "postgres.writable", "fail");
    assert_eq!(
        message(&report, "postgres.writable"),
        format!(
            "connected to a primary that is read-only by default (default_transaction_read_only = on, set by \
             ALTER DATABASE \"{db}\"): every insert will fail (25006)"
        )
    );
    // A primary: the RESET, never "point DATABASE_URL at the primary … not a replica".
    let reset = format!("ALTER DATABASE \"{db}\" RESET default_transaction_read_only;");
    let writable = hint(&report, "postgres.writable");
    assert!(writable.contains(&reset) && !writable.contains("replica"), "{writable}");
    // postgres.settings passes on the timeouts and leaves the read-only default to
    // postgres.writable, without claiming nothing breaks requests.
    let (_, report) = run_pg(&[("DATABASE_URL", &url)], &["--only", "postgres.settings"]); // beside PG_IDS
    assert_status(&report, "postgres.settings", "pass");
    let settings = message(&report, "postgres.settings");
    assert!(!settings.contains("breaks requests"), "{settings}");
    assert!(
        settings.ends_with(&format!(
            "also inherited: default_transaction_read_only = on (ALTER DATABASE \"{db}\"; postgres.writable judges it)"
        )),
        "{settings}"
    );
    // Our own read-only session is not mistaken for a read-only database.
    let (_, report) = run_url(&healthy("writable_db").2);
    assert_status(&report, "postgres.writable", "pass");
}

#[test]
fn select_only_role_then_postgres_privileges_fails_naming_insert_on_sessions() {
    let (pg, db, _) = healthy("select_only");
    let user = format!("reader_{db}");
    pg.create_user(&user, "reader-pw");
    pg.sql(&db, &format!("GRANT SELECT ON users, sessions TO \"{user}\""));
    let (code, report) = run_url(&pg.url(&user, "reader-pw", &db));
    assert_eq!(code, 1);
    assert_status(&report, "postgres.privileges", "fail");
    assert_eq!(message(&report, "postgres.privileges"), format!("role \"{user}\" lacks INSERT on sessions"));
    assert!(hint(&report, "postgres.privileges").contains(&format!("GRANT INSERT ON sessions TO \"{user}\"")));
    // pg_catalog sees the tables whatever the role's privileges.
    assert_status(&report, "postgres.schema", "pass");
    assert_status(&report, "postgres.active_users", "pass");
}

#[test]
fn db_variables_instead_of_database_url() {
    let (pg, db, _) = healthy("db_vars");
    let port = pg.port.to_string();
    let (code, report) = run_pg(
        &[
            ("DB_HOST", "127.0.0.1"),
            ("DB_PORT", &port),
            ("DB_USER", SUPERUSER),
            ("DB_PASSWORD", SUPERUSER_PASSWORD),
            ("DB_NAME", &db),
        ],
        &[],
    );
    assert_eq!(code, 0, "{report:#}");
    assert!(message(&report, "postgres.connect").contains(" via DB_*, "), "{report:#}");
    assert_eq!(check(&report, "postgres.connect")["details"]["source"], "DB_*");
}

#[test]
fn stuck_knex_lock_then_postgres_migrations_fails_with_unlock() {
    let (pg, db, url) = healthy("knex_stuck");
    pg.sql(
        &db,
        "CREATE TABLE knex_migrations (id serial PRIMARY KEY, name varchar(255), batch int, migration_time timestamptz);
         CREATE TABLE knex_migrations_lock (index serial PRIMARY KEY, is_locked int);
         INSERT INTO knex_migrations (name, batch, migration_time)
           VALUES ('20240101_users.js', 1, now()), ('20240102_sessions.js', 1, now());
         INSERT INTO knex_migrations_lock (is_locked) VALUES (0);",
    );
    let (_, report) = run_url(&url);
    assert_status(&report, "postgres.migrations", "pass");
    assert_eq!(message(&report, "postgres.migrations"), "knex: 2 applied, latest 20240102_sessions.js");

    pg.sql(&db, "UPDATE knex_migrations_lock SET is_locked = 1");
    let (_, report) = run_url(&url);
    assert_status(&report, "postgres.migrations", "fail");
    assert!(message(&report, "postgres.migrations").starts_with("knex migration lock is held"));
    assert!(hint(&report, "postgres.migrations").contains("knex migrate:unlock"));
    assert_eq!(check(&report, "postgres.migrations")["details"]["tools"][0]["latest"], "20240102_sessions.js");
}

#[test]
fn unfinished_prisma_migration_then_postgres_migrations_fails_naming_it() {
    let (pg, db, url) = healthy("prisma_failed");
    pg.sql(
        &db,
        "CREATE TABLE _prisma_migrations (
            id varchar(36) PRIMARY KEY, checksum varchar(64) NOT NULL, finished_at timestamptz,
            migration_name varchar(255) NOT NULL, logs text, rolled_back_at timestamptz,
            started_at timestamptz NOT NULL DEFAULT now(), applied_steps_count int NOT NULL DEFAULT 0);
         INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, started_at)
           VALUES ('1', 'x', now() - interval '1 day', '20240101_init', now() - interval '1 day');
         INSERT INTO _prisma_migrations (id, checksum, migration_name, logs)
           VALUES ('2', 'y', '20240301_add_sessions', 'Database error code: 42P07
more lines');",
    );
    let (_, report) = run_url(&url);
    assert_status(&report, "postgres.migrations", "fail");
    assert_eq!(
        message(&report, "postgres.migrations"),
        "Prisma migration started and not finished (failed or still running): 20240301_add_sessions (Database error code: 42P07)"
    );
    assert!(
        hint(&report, "postgres.migrations").contains("prisma migrate resolve --rolled-back 20240301_add_sessions")
    );
    assert_eq!(check(&report, "postgres.migrations")["details"]["tools"][0]["latest"], "20240101_init");
}

#[test]
fn custom_postgres_query_checks_from_checks_file() {
    let (pg, db, url) = healthy("custom_query");
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("ours.toml");
    fs::write(
        &manifest,
        r#"
[[check]]
id = "custom.verified_users"
kind = "postgres.query"
needs = ["postgres.connect"]
sql = "SELECT count(*) FROM users WHERE is_verified"
expect = ">= 1"

[[check]]
id = "custom.no_stale_sessions"
kind = "postgres.query"
severity = "warn"
needs = ["postgres.connect"]
sql = "SELECT count(*) FROM sessions WHERE status = 'created';"
expect = "= 0"
message = "sessions stuck in 'created'"
hint = "see the session creation fix in the runbook"

[[check]]
id = "custom.writes_refused"
kind = "postgres.query"
needs = ["postgres.connect"]
# A query by its first word (a bare INSERT is refused when the manifest is read);
# the read-only transaction refuses the write inside it.
sql = "WITH w AS (INSERT INTO users (email) VALUES ('mallory@example.com') RETURNING 1) SELECT count(*) FROM w"
expect = "= 1"
"#,
    )
    .expect("write manifest");
    pg.sql(&db, "INSERT INTO sessions (user_id) SELECT id FROM users");
    let (code, report) = json_run(diag(dir.path()).env("DATABASE_URL", &url).args([
        "--format",
        "json",
        "--checks",
        "ours.toml",
        "--only",
        "custom.verified_users,custom.no_stale_sessions,custom.writes_refused",
    ]));
    assert_eq!(code, 1);
    assert_status(&report, "custom.verified_users", "pass");
    assert_eq!(message(&report, "custom.verified_users"), "1 (expected >= 1)");
    assert_status(&report, "custom.no_stale_sessions", "warn");
    assert_eq!(message(&report, "custom.no_stale_sessions"), "sessions stuck in 'created': got 1, expected = 0");
    assert_eq!(hint(&report, "custom.no_stale_sessions"), "see the session creation fix in the runbook");
    // The session is read-only: a user's SQL cannot write either.
    assert_status(&report, "custom.writes_refused", "fail");
    assert!(message(&report, "custom.writes_refused").ends_with("(25006)"), "{report:#}");
    assert_eq!(pg.sql(&db, "SELECT count(*) FROM users"), "1");

    // A bad expectation is a manifest error naming the field: exit 2, nothing on stdout.
    fs::write(
        &manifest,
        "[[check]]\nid = \"custom.bad\"\nkind = \"postgres.query\"\nsql = \"SELECT 1\"\nexpect = \"positive\"\n",
    )
    .expect("write manifest");
    let out = diag(dir.path()).args(["--checks", "ours.toml"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ours.toml:5:1") && stderr.contains("`expect`"), "{stderr}");
}

#[test]
fn slow_users_table_is_could_not_determine_never_pass() {
    let (_, _, url) = healthy("slow_users");
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        dir.path().join("slow.toml"),
        r#"
[[check]]
id = "custom.slow_active_users"
kind = "postgres.active_users"
needs = ["postgres.connect"]
predicate = "is_active AND (SELECT true FROM pg_sleep(5))"
timeout = "500ms"
"#,
    )
    .expect("write manifest");
    let (_, report) = json_run(diag(dir.path()).env("DATABASE_URL", &url).args([
        "--format",
        "json",
        "--checks",
        "slow.toml",
        "--only",
        "custom.slow_active_users",
    ]));
    assert_status(&report, "custom.slow_active_users", "warn");
    assert_eq!(message(&report, "custom.slow_active_users"), "could not determine within 500ms (57014)");
}

/// A psql session kept open in the background, killed on drop.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn psql_background(pg: &PgServer, db: &str, sql: &str) -> Background {
    let psql = pg.bindir.join("psql");
    let child = Command::new(if psql.exists() { psql } else { "psql".into() })
        .args(["-X", "-q", "-h"])
        .arg(&pg.socket_dir)
        .args(["-p", &pg.port.to_string(), "-U", SUPERUSER, "-d", db, "-c", sql])
        .env("PGPASSWORD", SUPERUSER_PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start psql");
    Background(child)
}

/// Waits (bounded) until `sql` in `db` returns `want`.
fn wait_for(pg: &PgServer, db: &str, sql: &str, want: &str) {
    let until = Instant::now() + Duration::from_secs(20);
    while pg.sql(db, sql) != want {
        assert!(Instant::now() < until, "timed out waiting for {sql} = {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_lock_blocking_writers_of_users_but_not_session_creation_warns_with_its_pid() {
    let (pg, db, url) = healthy("blocking_lock");
    let _holder = psql_background(pg, &db, "BEGIN; LOCK TABLE users IN SHARE MODE; SELECT pg_sleep(60);");
    wait_for(pg, &db, "SELECT count(*) FROM pg_locks WHERE relation = 'users'::regclass AND mode = 'ShareLock'", "1");
    let pid = pg.sql(&db, "SELECT pid FROM pg_locks WHERE relation = 'users'::regclass AND mode = 'ShareLock'");
    let (_, report) = run_url(&url);
    // SHARE on users blocks its writers (sign-ups, credit updates), not the route's
    // read and foreign-key check: a warning, not a failure.
    assert_status(&report, "postgres.locks", "warn");
    let msg = message(&report, "postgres.locks");
    assert!(
        msg.starts_with(&format!("pid {pid} (role \"postgres\", application \"psql\", active, transaction open ")),
        "{msg}"
    );
    assert!(msg.ends_with("it holds ShareLock on users, so writes to users wait; session creation does not; its query: BEGIN; LOCK TABLE users IN SHARE MODE; SELECT pg_sleep(60);"), "{msg}");
    assert_eq!(check(&report, "postgres.locks")["details"]["blocking"][0]["pid"].to_string(), pid);
    // Reads are not blocked: the rest still passes.
    assert_status(&report, "postgres.active_users", "pass");
}

/// `n_tup_ins/upd/del` of every table in `db`, once every other client session on it
/// has ended. A backend publishes its pending table counters when it exits (the
/// before-shmem-exit hook runs before it leaves pg_stat_activity), so "no other client
/// backend" means "every write counted".
fn settled_write_counters(pg: &PgServer, db: &str) -> String {
    wait_for(
        pg,
        db,
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
        "0",
    );
    pg.sql(
        db,
        "SELECT string_agg(format('%s %s/%s/%s', relname, n_tup_ins, n_tup_upd, n_tup_del), ', ' ORDER BY relname) \
         FROM pg_stat_user_tables",
    )
}

#[test]
fn a_full_run_writes_nothing() {
    let (pg, db, url) = healthy("read_only_guarantee");
    pg.sql(
        &db,
        "CREATE TABLE knex_migrations (id serial PRIMARY KEY, name text, batch int, migration_time timestamptz);
         CREATE TABLE knex_migrations_lock (index serial PRIMARY KEY, is_locked int);
         INSERT INTO knex_migrations (name, batch) VALUES ('001.js', 1);
         INSERT INTO knex_migrations_lock (is_locked) VALUES (0);",
    );
    let before = settled_write_counters(pg, &db);
    assert!(before.contains("users 1/0/0"), "{before}");
    // Every check, not only postgres.*: nothing may write.
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, report) = json_run(diag(dir.path()).env("DATABASE_URL", &url).args(["--format", "json"]));
    assert_status(&report, "postgres.migrations", "pass");
    assert_eq!(settled_write_counters(pg, &db), before);

    // The measurement does see a write (it is not vacuous).
    pg.sql(&db, "UPDATE knex_migrations_lock SET is_locked = 0");
    assert_ne!(settled_write_counters(pg, &db), before);
}

#[test]
fn user_check_names_the_missing_sessions_user_id_index() {
    let (pg, db, url) = healthy("user_index");
    let user = pg.sql(&db, "SELECT id FROM users LIMIT 1");
    let run = || {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = diag(dir.path());
        cmd.env("DATABASE_URL", &url).args(["--format", "json", "--only", "postgres.user", "--user-id", &user]);
        json_run(&mut cmd).1
    };
    // The migrations create no index on sessions.user_id: the count reads the table.
    let report = run();
    assert_status(&report, "postgres.user", "pass");
    let d = &check(&report, "postgres.user")["details"];
    assert_eq!(d["user_id_indexed"], false, "{report:#}");
    assert_eq!(d["index_hint"], "CREATE INDEX CONCURRENTLY ON sessions (user_id);");

    pg.sql(&db, "CREATE INDEX ON sessions (user_id)");
    let report = run();
    let d = &check(&report, "postgres.user")["details"];
    assert_eq!((d["user_id_indexed"].clone(), d["index_hint"].clone()), (true.into(), Value::Null), "{report:#}");
}
