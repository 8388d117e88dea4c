//! The real cause, named once: states production reaches where the old report
//! sent ops the wrong way (a table the role cannot see reported as missing, a
//! missing policy reported as a missing GRANT, a role's statement_timeout or a
//! read-only Redis user unnoticed) or failed one cause several times (nothing
//! configured, a dropped table, a `#` in the password). The real binary against
//! real servers, the API connecting as its own unprivileged role.

use std::time::{Duration, Instant};

use crate::support::cmd::{assert_hints_paste, assert_status, check, diag, hint, json_run, message};
use crate::support::redis::RedisServer;
use crate::support::site::ApiSite;
use serde_json::Value;

/// A MockMate database on the shared cluster, used by a login role of its own
/// with the privileges the API needs (and nothing else).
struct App(ApiSite);

impl std::ops::Deref for App {
    type Target = ApiSite;
    fn deref(&self) -> &ApiSite {
        &self.0
    }
}

impl App {
    fn new(name: &str) -> App {
        App(ApiSite::new(name))
    }

    /// Runs `only` (every check when empty) as the API's role, with `extra` flags.
    fn run(&self, only: &[&str], extra: &[&str]) -> (i32, Value) {
        run(&[("DATABASE_URL", &self.url())], only, extra)
    }
}

fn run(env: &[(&str, &str)], only: &[&str], extra: &[&str]) -> (i32, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = diag(dir.path());
    cmd.envs(env.iter().copied()).args(["--env", "production", "--format", "json"]);
    if !only.is_empty() {
        cmd.args(["--only", &only.join(",")]);
    }
    let (code, report) = json_run(cmd.args(extra));
    // Every scenario's SQL fixes paste into psql whole.
    assert_hints_paste(&report);
    (code, report)
}

/// The ids of the checks with `status`.
fn with_status<'a>(report: &'a Value, status: &str) -> Vec<&'a str> {
    report["checks"]
        .as_array()
        .map(|c| c.iter().filter(|c| c["status"] == status).filter_map(|c| c["id"].as_str()).collect())
        .unwrap_or_default()
}

/// `id` is `skip` because `owner` reported its cause.
#[track_caller]
fn assert_sees(report: &Value, id: &str, owner: &str) {
    assert_status(report, id, "skip");
    assert_eq!(check(report, id)["see"], owner, "{:#}", check(report, id));
    assert!(message(report, id).starts_with(&format!("see {owner}: ")), "{:#}", check(report, id));
}

#[track_caller]
fn assert_no_migrations(report: &Value) {
    for c in report["checks"].as_array().into_iter().flatten() {
        let hint = c["hint"].as_str().unwrap_or_default();
        assert!(!hint.contains("migrat"), "{} sends ops to the migrations for a table that exists: {hint}", c["id"]);
    }
}

const SCHEMA_IDS: &[&str] = &[
    "postgres.schema",
    "postgres.privileges",
    "postgres.active_users",
    "postgres.orphan_sessions",
    "postgres.session_insert",
];

// ---- absent vs invisible ------------------------------------------------------

#[test]
fn a_role_search_path_that_leaves_out_the_tables_schema_names_it_and_never_the_migrations() {
    let app = App::new("search_path_role");
    app.sql(&format!("ALTER ROLE \"{}\" SET search_path = \"$user\"", app.role));
    let (code, report) = app.run(SCHEMA_IDS, &["--allow-writes"]);
    assert_eq!(code, 1);
    assert_status(&report, "postgres.schema", "fail");
    let role = &app.role;
    assert_eq!(
        message(&report, "postgres.schema"),
        format!(
            "sessions is in schema public, outside role \"{role}\"'s search_path ($user); \
             users is in schema public, outside role \"{role}\"'s search_path ($user)"
        )
    );
    // Set by ALTER ROLE: the fix is at that level.
    assert!(
        hint(&report, "postgres.schema")
            .starts_with(&format!("ALTER ROLE \"{role}\" SET search_path = \"$user\", public;")),
        "{report:#}"
    );
    assert!(hint(&report, "postgres.schema").contains("connection options"));
    let details = &check(&report, "postgres.schema")["details"];
    assert_eq!(details["invisible_tables"][0]["reason"], "outside_search_path");
    assert_eq!(details["missing_tables"], serde_json::json!([]));
    // Every other check's "relation does not exist" is this one cause.
    for id in ["postgres.active_users", "postgres.orphan_sessions", "postgres.session_insert"] {
        assert_sees(&report, id, "postgres.schema");
    }
    assert_status(&report, "postgres.privileges", "skip");
    assert_eq!(check(&report, "postgres.privileges")["see"], "postgres.schema", "{report:#}");
    assert_eq!(with_status(&report, "fail"), ["postgres.schema"]);
    assert_no_migrations(&report);
}

#[test]
fn tables_in_a_schema_outside_the_default_search_path_are_found_there() {
    let app = App::new("other_schema");
    app.sql("CREATE SCHEMA mm; ALTER TABLE sessions SET SCHEMA mm; ALTER TABLE users SET SCHEMA mm");
    app.sql(&format!("GRANT USAGE ON SCHEMA mm TO \"{}\"", app.role));
    let (_, report) = app.run(SCHEMA_IDS, &[]);
    assert_status(&report, "postgres.schema", "fail");
    assert!(message(&report, "postgres.schema").starts_with("sessions is in schema mm, outside role"), "{report:#}");
    assert!(
        hint(&report, "postgres.schema")
            .starts_with(&format!("ALTER ROLE \"{}\" SET search_path = \"$user\", public, mm;", app.role)),
        "{report:#}"
    );
    assert_no_migrations(&report);

    // The fix the hint names works.
    app.sql(&format!("ALTER ROLE \"{}\" SET search_path = \"$user\", public, mm", app.role));
    let (code, report) = app.run(SCHEMA_IDS, &[]);
    for id in ["postgres.schema", "postgres.privileges", "postgres.active_users", "postgres.orphan_sessions"] {
        assert_status(&report, id, "pass");
    }
    assert_eq!(code, 0, "{report:#}");
}

#[test]
fn no_usage_on_the_tables_schema_is_a_grant_usage_not_a_migration() {
    let app = App::new("no_usage");
    app.sql("CREATE SCHEMA mm; ALTER TABLE sessions SET SCHEMA mm; ALTER TABLE users SET SCHEMA mm");
    app.sql(&format!("ALTER ROLE \"{}\" SET search_path = \"$user\", public, mm", app.role));
    // USAGE was never granted (or was revoked): PostgreSQL skips the schema silently.
    app.sql(&format!("REVOKE USAGE ON SCHEMA mm FROM \"{}\"", app.role));
    let (code, report) = app.run(SCHEMA_IDS, &["--allow-writes"]);
    assert_eq!(code, 1);
    let role = &app.role;
    assert_eq!(
        message(&report, "postgres.schema"),
        format!(
            "sessions is in schema mm, on which role \"{role}\" has no USAGE (the table is invisible to it); \
             users is in schema mm, on which role \"{role}\" has no USAGE (the table is invisible to it)"
        )
    );
    assert_eq!(hint(&report, "postgres.schema"), format!("GRANT USAGE ON SCHEMA mm TO \"{role}\";"));
    // postgres.privileges sees it too, and defers: one cause, one failure.
    assert_sees(&report, "postgres.privileges", "postgres.schema");
    assert!(message(&report, "postgres.privileges").contains("lacks USAGE on schema mm"), "{report:#}");
    assert_eq!(with_status(&report, "fail"), ["postgres.schema"]);
    assert_no_migrations(&report);

    // Alone, postgres.privileges names it with the same GRANT.
    let (_, report) = app.run(&["postgres.privileges"], &[]);
    assert_status(&report, "postgres.privileges", "fail");
    assert!(hint(&report, "postgres.privileges").contains(&format!("GRANT USAGE ON SCHEMA mm TO \"{role}\";")));
}

#[test]
fn a_dropped_sessions_table_fails_once_and_is_sent_to_the_migrations() {
    let app = App::new("dropped_sessions");
    app.sql("DROP TABLE sessions");
    let (code, report) = app.run(SCHEMA_IDS, &["--allow-writes"]);
    assert_eq!(code, 1);
    assert_eq!(message(&report, "postgres.schema"), "missing table: sessions");
    assert_eq!(hint(&report, "postgres.schema"), "run the database migrations (npm run migrate)");
    assert_sees(&report, "postgres.orphan_sessions", "postgres.schema");
    assert_sees(&report, "postgres.session_insert", "postgres.schema");
    assert_eq!(with_status(&report, "fail"), ["postgres.schema"]);
    assert!(with_status(&report, "warn").is_empty(), "{report:#}");

    // Without postgres.schema in the run, the orphan search keeps its own warning,
    // and its hint does not pretend to know which cause it is.
    let (_, report) = app.run(&["postgres.orphan_sessions"], &[]);
    assert_status(&report, "postgres.orphan_sessions", "warn");
    assert!(hint(&report, "postgres.orphan_sessions").contains("postgres.schema says which"), "{report:#}");
    app.sql("DROP TABLE users");
    let (_, report) = app.run(&["postgres.active_users"], &[]);
    assert_status(&report, "postgres.active_users", "fail");
    assert!(hint(&report, "postgres.active_users").contains("postgres.schema says which"), "{report:#}");
}

// ---- what the write path needs ------------------------------------------------

#[test]
fn row_level_security_without_a_policy_is_a_create_policy_not_a_grant() {
    let app = App::new("rls_no_policy");
    app.sql("ALTER TABLE sessions ENABLE ROW LEVEL SECURITY");
    let role = &app.role;
    let (code, report) = app.run(&["postgres.privileges", "postgres.session_insert"], &["--allow-writes"]);
    assert_eq!(code, 1);
    assert_status(&report, "postgres.privileges", "fail");
    assert_eq!(
        message(&report, "postgres.privileges"),
        format!(
            "role \"{role}\" lacks a row-level security policy on sessions that lets it select or insert \
             (RLS is on; no permissive policy applies to it)"
        )
    );
    let fix = hint(&report, "postgres.privileges");
    assert!(
        fix.contains(&format!(
            "CREATE POLICY mockmate_api_insert ON sessions FOR INSERT TO \"{role}\" WITH CHECK (true);"
        )),
        "{fix}"
    );
    assert!(!fix.contains("GRANT"), "the role has its GRANTs: {fix}");
    // The dry run's 42501 is the same cause.
    assert_sees(&report, "postgres.session_insert", "postgres.privileges");

    // Alone, the dry run names row-level security itself, never a GRANT.
    let (_, report) = app.run(&["postgres.session_insert"], &["--allow-writes"]);
    assert_status(&report, "postgres.session_insert", "fail");
    let msg = message(&report, "postgres.session_insert");
    assert!(msg.starts_with("row-level security on sessions rejects the API's new row"), "{msg}");
    assert!(msg.contains("(42501)"), "{msg}");
    let fix = hint(&report, "postgres.session_insert");
    assert!(fix.starts_with("CREATE POLICY mockmate_api_insert ON sessions FOR INSERT"), "{fix}");
    assert!(!fix.contains("GRANT "), "{fix}");
    assert_eq!(check(&report, "postgres.session_insert")["details"]["sqlstate"], "42501");

    // With a policy for the role, both pass.
    app.sql(&format!(
        "CREATE POLICY api ON sessions TO \"{role}\" USING (true) WITH CHECK (true); \
         INSERT INTO users (email, credits, is_active) VALUES ('x@example.com', 5, true)"
    ));
    let (code, report) = app.run(&["postgres.privileges", "postgres.session_insert"], &["--allow-writes"]);
    assert_status(&report, "postgres.privileges", "pass");
    assert_status(&report, "postgres.session_insert", "pass");
    assert_eq!(code, 0);
}

#[test]
fn a_serial_default_needs_usage_on_its_sequence() {
    let app = App::new("serial_sequence");
    app.sql("ALTER TABLE sessions ADD COLUMN seq serial");
    let role = &app.role;
    let (_, report) = app.run(&["postgres.privileges", "postgres.session_insert"], &["--allow-writes"]);
    assert_status(&report, "postgres.privileges", "fail");
    assert_eq!(
        message(&report, "postgres.privileges"),
        format!("role \"{role}\" lacks USAGE on sequence sessions_seq_seq (the default of sessions.seq)")
    );
    assert!(
        hint(&report, "postgres.privileges")
            .contains(&format!("GRANT USAGE ON SEQUENCE sessions_seq_seq TO \"{role}\";"))
    );
    assert_sees(&report, "postgres.session_insert", "postgres.privileges");

    let (_, report) = app.run(&["postgres.session_insert"], &["--allow-writes"]);
    assert_status(&report, "postgres.session_insert", "fail");
    assert!(
        hint(&report, "postgres.session_insert")
            .ends_with(&format!("GRANT USAGE ON SEQUENCE sessions_seq_seq TO \"{role}\";")),
        "{report:#}"
    );
}

// ---- settings the API inherits ------------------------------------------------

#[test]
fn a_role_statement_timeout_of_20ms_is_named_with_where_it_is_set_and_its_reset() {
    let app = App::new("role_statement_timeout");
    let role = &app.role;
    app.sql(&format!("ALTER ROLE \"{role}\" SET statement_timeout = '20ms'"));
    app.sql(&format!("ALTER ROLE \"{role}\" IN DATABASE \"{}\" SET lock_timeout = '5s'", app.db));
    let (code, report) = app.run(&[], &[]);
    assert_status(&report, "postgres.settings", "warn");
    assert_eq!(
        message(&report, "postgres.settings"),
        format!(
            "role \"{role}\" in database \"{}\": statement_timeout = 20ms (ALTER ROLE \"{role}\"): \
             the API's queries that take longer than 20ms are cancelled (57014)",
            app.db
        )
    );
    assert!(
        hint(&report, "postgres.settings").starts_with(&format!("ALTER ROLE \"{role}\" RESET statement_timeout;")),
        "{report:#}"
    );
    let inherited = &check(&report, "postgres.settings")["details"]["inherited"];
    assert!(inherited.to_string().contains("lock_timeout"), "{inherited}");
    // mockmate-diag's own per-transaction timeouts neither hide it nor suffer from it.
    for id in ["postgres.connect", "postgres.schema", "postgres.privileges", "postgres.active_users"] {
        assert_status(&report, id, "pass");
    }
    assert_eq!(code, 1, "env checks fail here (no NODE_ENV …), not the warning: {report:#}");

    // A database-wide one too, reset at that level.
    let app = App::new("db_statement_timeout");
    app.sql(&format!("ALTER DATABASE \"{}\" SET statement_timeout = 50", app.db));
    let (_, report) = app.run(&["postgres.settings"], &[]);
    assert_status(&report, "postgres.settings", "warn");
    assert!(
        hint(&report, "postgres.settings")
            .starts_with(&format!("ALTER DATABASE \"{}\" RESET statement_timeout;", app.db)),
        "{report:#}"
    );
}

#[test]
fn a_read_only_default_is_postgres_writable_s_finding_alone() {
    let app = App::new("read_only_default");
    app.sql(&format!("ALTER ROLE \"{}\" SET default_transaction_read_only = on", app.role));
    let (_, report) =
        app.run(&["postgres.writable", "postgres.settings", "postgres.session_insert"], &["--allow-writes"]);
    assert_status(&report, "postgres.writable", "fail");
    let writable = hint(&report, "postgres.writable");
    assert!(
        writable.contains(&format!("ALTER ROLE \"{}\" RESET default_transaction_read_only;", app.role))
            && !writable.contains("replica"),
        "{report:#}"
    );
    assert_status(&report, "postgres.settings", "pass");
    assert!(message(&report, "postgres.settings").contains("postgres.writable judges it"), "{report:#}");
    assert_sees(&report, "postgres.session_insert", "postgres.writable");
}

// ---- Redis permissions ------------------------------------------------------------

#[test]
fn a_redis_user_that_may_read_but_not_write_warns_with_the_acl_fix_and_changes_nothing() {
    let mut builder = RedisServer::builder();
    for arg in ["--user", "reader", "on", ">reader-pw", "~*", "&*", "+@all", "-@write"] {
        builder = builder.arg(arg);
    }
    // And one whose key pattern leaves out the API's keys.
    for arg in ["--user", "keyed", "on", ">keyed-pw", "~cache:*", "&*", "+@all"] {
        builder = builder.arg(arg);
    }
    let server = builder.start();
    server.cli(&["SET", "session:cached", "x"]);
    let dirty = server.info_field("rdb_changes_since_last_save");
    let url = server.url_as(Some("reader"), Some("reader-pw"));
    let ids = ["redis.connect", "redis.writable", "redis.permissions", "redis.roundtrip"];
    let (code, report) = run(&[("REDIS_URL", &url)], &ids, &["--allow-writes"]);
    assert_eq!(code, 0, "Redis is non-fatal: {report:#}");
    assert_status(&report, "redis.connect", "pass");
    // Its SET is refused by the ACL: redis.permissions' finding, which redis.writable points at.
    assert_sees(&report, "redis.writable", "redis.permissions");
    assert_status(&report, "redis.permissions", "warn");
    assert_eq!(
        message(&report, "redis.permissions"),
        "user \"reader\" may not SET, EXPIRE, DEL session:* keys (NOPERM): the API's cache writes fail"
    );
    assert!(
        hint(&report, "redis.permissions").starts_with("ACL SETUSER reader +set +get +expire +del (then"),
        "{report:#}"
    );
    // The write round trip fails on the same cause: said once.
    assert_sees(&report, "redis.roundtrip", "redis.permissions");

    // Read-only run: nothing written, nothing changed.
    let (_, report) = run(&[("REDIS_URL", &url)], &ids, &[]);
    assert_status(&report, "redis.permissions", "warn");
    assert_eq!(server.cli(&["DBSIZE"]), "1");
    assert_eq!(server.info_field("rdb_changes_since_last_save"), dirty);

    // The fix the hint names works.
    assert_eq!(server.cli(&["ACL", "SETUSER", "reader", "+set", "+get", "+expire", "+del"]), "OK");
    let (_, report) = run(&[("REDIS_URL", &url)], &["redis.permissions"], &[]);
    assert_status(&report, "redis.permissions", "pass");

    // A key pattern is fixed with the pattern alone.
    let url = server.url_as(Some("keyed"), Some("keyed-pw"));
    let (_, report) = run(&[("REDIS_URL", &url)], &["redis.permissions"], &[]);
    assert_status(&report, "redis.permissions", "warn");
    assert!(hint(&report, "redis.permissions").starts_with("ACL SETUSER keyed ~session:* (then"), "{report:#}");
    assert_eq!(server.cli(&["ACL", "SETUSER", "keyed", "~session:*"]), "OK");
    let (_, report) = run(&[("REDIS_URL", &url)], &["redis.permissions"], &[]);
    assert_status(&report, "redis.permissions", "pass");
    // The write probe goes where the API's keys go: the ACL that lets the API
    // through lets it through, and it leaves nothing behind.
    let keys = server.cli(&["DBSIZE"]);
    let (_, report) = run(&[("REDIS_URL", &url)], &["redis.connect", "redis.roundtrip"], &["--allow-writes"]);
    assert_status(&report, "redis.roundtrip", "pass");
    assert_eq!(server.cli(&["DBSIZE"]), keys);
}

// ---- one root cause, one failure ------------------------------------------------

#[test]
fn nothing_configured_fails_once_in_env_required() {
    let started = Instant::now();
    let (code, report) = run(&[], &[], &["--wait", "30s"]);
    assert_eq!(code, 1);
    assert_eq!(with_status(&report, "fail"), ["env.required"], "{report:#}");
    assert!(with_status(&report, "warn").is_empty(), "{report:#}");
    for id in ["env.node_env", "postgres.connect", "redis.connect"] {
        assert_sees(&report, id, "env.required");
    }
    assert_eq!(message(&report, "postgres.schema"), "needs postgres.connect, which was skipped (see env.required)");
    // Every skip that names its cause names it in `see` too, whoever decided it.
    for id in ["env.database_url", "env.redis_url", "env.secrets", "postgres.schema"] {
        assert_eq!(check(&report, id)["see"], "env.required", "{id}: {report:#}");
    }
    // A missing variable ends --wait at once: nothing another attempt could change.
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

#[test]
fn a_hash_in_the_password_fails_once_with_one_encoding_hint() {
    let app = App::new("hash_password");
    app.sql(&format!("ALTER ROLE \"{}\" PASSWORD 'pa#ss'", app.role));
    let url = format!("postgresql://{}:pa#ss@127.0.0.1:{}/{}", app.role, app.pg.port, app.db);
    let (code, report) =
        run(&[("DATABASE_URL", &url)], &["env.database_url", "postgres.connect", "postgres.schema"], &[]);
    assert_eq!(code, 1);
    assert_status(&report, "env.database_url", "fail");
    assert!(hint(&report, "env.database_url").contains("# as %23"), "{report:#}");
    assert_sees(&report, "postgres.connect", "env.database_url");
    assert_eq!(with_status(&report, "fail"), ["env.database_url"]);
    assert!(!report.to_string().contains("pa#ss"), "the password is never printed");

    // Encoded, it connects.
    let url = format!("postgresql://{}:pa%23ss@127.0.0.1:{}/{}", app.role, app.pg.port, app.db);
    let (_, report) = run(&[("DATABASE_URL", &url)], &["env.database_url", "postgres.connect"], &[]);
    assert_status(&report, "postgres.connect", "pass");
}
