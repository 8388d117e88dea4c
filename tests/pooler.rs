//! Through a real PgBouncer (transaction and session pooling, one server
//! connection per pool: every client shares one backend): a run of any kind
//! leaves the pooled backend exactly as it found it, so the API's next
//! transaction gets the server's defaults and its insert succeeds; the pooler is
//! named; the read-only guarantee still holds.

use std::time::Duration;

use serde_json::Value;

use crate::support::cmd::{assert_status, check, diag, json_run, message};
use crate::support::pg::PgServer;
use crate::support::pgbouncer::{BouncerOptions, PgBouncer};

/// What the API's next transaction inherits from the backend: the settings a
/// session-level SET would have changed, and the backend itself.
const INHERITED: &str = "SELECT current_setting('transaction_read_only'), \
    current_setting('default_transaction_read_only'), current_setting('statement_timeout'), \
    current_setting('lock_timeout'), current_setting('idle_in_transaction_session_timeout'), \
    current_setting('search_path')";

const API_INSERT: &str = "INSERT INTO sessions (user_id, job_title, difficulty, duration, session_type) \
    SELECT id, 'API after the run', 'intermediate', 30, 'technical' FROM users WHERE is_active LIMIT 1 RETURNING 1";

struct Pooled {
    pg: &'static PgServer,
    db: String,
    bouncer: PgBouncer,
}

impl Pooled {
    fn new(name: &str, options: BouncerOptions) -> Pooled {
        let pg = PgServer::shared();
        let db = pg.create_mockmate_db(name);
        let bouncer = PgBouncer::start(pg, options);
        Pooled { pg, db, bouncer }
    }

    /// The server's defaults, read directly (not through the pooler).
    fn defaults(&self) -> String {
        self.pg.sql(&self.db, INHERITED)
    }

    fn run(&self, only: &str, extra: &[&str]) -> (i32, Value) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = diag(dir.path());
        cmd.env("DATABASE_URL", self.bouncer.superuser_url(&self.db))
            .args(["--env", "production", "--format", "json", "--only", only])
            .args(extra);
        json_run(&mut cmd)
    }

    /// A fresh client of the pool sees the server's defaults, and its insert works.
    #[track_caller]
    fn assert_next_client_inherits_nothing(&self) {
        let seen = self.bouncer.sql(&self.db, INHERITED);
        assert_eq!(seen, self.defaults(), "the pooled backend kept settings of the run");
        assert_eq!(self.bouncer.sql(&self.db, API_INSERT), "1");
    }
}

const PG_CHECKS: &str = "postgres.connect,postgres.tls,postgres.writable,postgres.schema,postgres.extensions,\
    postgres.active_users,postgres.privileges,postgres.connections,postgres.locks,postgres.migrations";

#[test]
fn a_default_run_through_transaction_pooling_leaves_the_backend_as_it_found_it() {
    let site = Pooled::new("pooled_default", BouncerOptions::transaction(1));
    let (code, report) = site.run(PG_CHECKS, &[]);
    assert_eq!(code, 0, "{report:#}");
    let connect = message(&report, "postgres.connect");
    assert!(connect.contains("through a pooler (PgBouncer or alike) in front of 127.0.0.1:"), "{connect}");
    let pooler = &check(&report, "postgres.connect")["details"]["pooler"];
    assert_eq!(pooler["backend"], format!("127.0.0.1:{}", site.pg.port));
    // One server connection for every client: the run's backend is the API's next.
    let backend = pooler["backend_pid"].as_i64().expect("a pid");
    assert_eq!(site.bouncer.sql(&site.db, "SELECT pg_backend_pid()"), backend.to_string());
    site.assert_next_client_inherits_nothing();
}

#[test]
fn session_pooling_and_a_direct_connection_name_no_pooler_wrongly() {
    let site = Pooled::new("pooled_session", BouncerOptions::session(1));
    let (_, report) = site.run("postgres.connect", &[]);
    assert_status(&report, "postgres.connect", "pass");
    assert!(message(&report, "postgres.connect").contains("through a pooler"), "{report:#}");
    site.assert_next_client_inherits_nothing();

    let dir = tempfile::tempdir().expect("tempdir");
    let mut direct = diag(dir.path());
    direct.env("DATABASE_URL", site.pg.superuser_url(&site.db)).args([
        "--env",
        "production",
        "--format",
        "json",
        "--only",
        "postgres.connect",
    ]);
    let (_, report) = json_run(&mut direct);
    assert!(!message(&report, "postgres.connect").contains("pooler"), "{report:#}");
    assert_eq!(check(&report, "postgres.connect")["details"]["pooler"], Value::Null);
}

#[test]
fn the_dry_run_and_a_support_ticket_through_the_pooler_leave_nothing_either() {
    let site = Pooled::new("pooled_writes", BouncerOptions::transaction(1));
    let user = site.pg.sql(&site.db, "SELECT id FROM users LIMIT 1");
    let before = site.pg.sql(&site.db, "SELECT count(*) FROM sessions");
    let (code, report) = site
        .run("postgres.session_insert,postgres.user,postgres.orphan_sessions", &["--allow-writes", "--user-id", &user]);
    assert_eq!(code, 0, "{report:#}");
    assert_status(&report, "postgres.session_insert", "pass");
    assert_status(&report, "postgres.user", "pass");
    // Rolled back: not a row more.
    assert_eq!(site.pg.sql(&site.db, "SELECT count(*) FROM sessions"), before);
    site.assert_next_client_inherits_nothing();
}

#[test]
fn a_deadline_mid_transaction_through_the_pooler_leaves_nothing_behind() {
    let site = Pooled::new("pooled_deadline", BouncerOptions::transaction(1));
    let before = site.pg.sql(&site.db, "SELECT count(*) FROM sessions");
    let lock = site.pg.lock_table(&site.db, "sessions");
    let (code, report) = site.run("postgres.session_insert", &["--allow-writes", "--timeout", "2s"]);
    assert_eq!(code, 1, "{report:#}");
    let msg = message(&report, "postgres.session_insert");
    // The one server connection is the dry run's: pg_locks cannot be asked, and the
    // message says so instead of guessing.
    assert!(
        msg.starts_with("timed out after 1s 500ms in the insert: it waits for a lock or a busy server"),
        "{msg} {report:#}"
    );
    lock.release();
    // PgBouncer closed the server connection the abandoned transaction was on.
    let mut seen = String::new();
    for _ in 0..50 {
        seen = site.bouncer.sql(&site.db, INHERITED);
        if seen == site.defaults() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(seen, site.defaults());
    assert_eq!(site.pg.sql(&site.db, "SELECT count(*) FROM sessions"), before);
    site.assert_next_client_inherits_nothing();
}

#[test]
fn a_read_only_run_through_the_pooler_writes_nothing() {
    let site = Pooled::new("pooled_counters", BouncerOptions::transaction(1));
    // Rows written to any table, as the statistics count them (flushed by each
    // backend as it exits; the fixture's psql sessions have exited).
    let written = "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables";
    let before = site.pg.sql(&site.db, written);
    let (code, report) = site.run(PG_CHECKS, &[]);
    assert_eq!(code, 0, "{report:#}");
    // Stopping the pooler closes its server connections, so their backends exit
    // and flush their statistics too.
    site.bouncer.stop();
    let others = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()";
    for _ in 0..100 {
        if site.pg.sql(&site.db, others) == "0" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(site.pg.sql(&site.db, others), "0", "the pooled backends did not exit");
    assert_eq!(site.pg.sql(&site.db, written), before, "a read-only run wrote rows");
}

#[test]
fn behind_a_pooler_the_connection_headroom_is_the_pools_and_pgbouncer_url_shows_it() {
    let site = Pooled::new("pooled_limits", BouncerOptions::transaction(1));
    let (_, report) = site.run("postgres.connections", &[]);
    let msg = message(&report, "postgres.connections");
    assert!(msg.starts_with("server: ") && msg.contains("set PGBOUNCER_URL"), "{msg}");
    assert_eq!(check(&report, "postgres.connections")["details"]["pooler"], "unknown");

    let dir = tempfile::tempdir().expect("tempdir");
    let run = |format: &str| {
        let mut cmd = diag(dir.path());
        cmd.env("DATABASE_URL", site.bouncer.superuser_url(&site.db))
            .env("PGBOUNCER_URL", site.bouncer.admin_url())
            .args(["--env", "production", "--only", "postgres.connections", "--format", format]);
        cmd
    };
    for format in ["table", "markdown"] {
        let out = run(format).output().expect("runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!text.contains(crate::support::pgbouncer::BOUNCER_ADMIN_PASSWORD), "{format}: {text}");
    }
    let (_, report) = json_run(&mut run("json"));
    assert!(!report.to_string().contains(crate::support::pgbouncer::BOUNCER_ADMIN_PASSWORD));
    assert_status(&report, "postgres.connections", "pass");
    let msg = message(&report, "postgres.connections");
    assert!(msg.starts_with("PgBouncer 1.") && msg.contains(" in transaction pooling: pool "), "{msg}");
    assert!(msg.contains("named prepared statements"), "{msg}");
    let d = &check(&report, "postgres.connections")["details"];
    assert_eq!(
        (&d["pool_mode"], &d["pool_size"], &d["cl_waiting"]),
        (&Value::from("transaction"), &Value::from(1), &Value::from(0))
    );
}

#[test]
fn pgbouncers_own_answers_are_named_with_their_fix() {
    // Only named databases: an unknown name is PgBouncer's "no such database".
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db("pooled_named");
    let bouncer = PgBouncer::start(pg, BouncerOptions::transaction(1).database("mockmate", &db, ""));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = diag(dir.path());
    cmd.env("DATABASE_URL", bouncer.superuser_url("nosuchdb")).args([
        "--env",
        "production",
        "--format",
        "json",
        "--only",
        "postgres.connect",
    ]);
    let (_, report) = json_run(&mut cmd);
    assert_status(&report, "postgres.connect", "fail");
    assert_eq!(
        message(&report, "postgres.connect"),
        "PgBouncer says: no such database: nosuchdb (08P01) → PgBouncer has no such database in its [databases] section"
    );
    assert!(crate::support::cmd::hint(&report, "postgres.connect").contains("[databases]"));

    // A wrong password: PgBouncer's SASL failure, not PostgreSQL's 28P01.
    let mut cmd = diag(dir.path());
    cmd.env("DATABASE_URL", bouncer.url(crate::support::pg::SUPERUSER, "wrong-pw", "mockmate")).args([
        "--env",
        "production",
        "--format",
        "json",
        "--only",
        "postgres.connect",
    ]);
    let (_, report) = json_run(&mut cmd);
    let msg = message(&report, "postgres.connect");
    assert!(msg.starts_with("PgBouncer says: ") && msg.contains("authentication failed"), "{msg}");
}

#[test]
fn a_pooler_in_front_of_a_stopped_server_fails_the_connect_check_not_the_login() {
    let pg = PgServer::new();
    pg.sql("postgres", crate::support::pg::MOCKMATE_SCHEMA);
    let bouncer = PgBouncer::start(&pg, BouncerOptions::transaction(1).set("query_wait_timeout", "30"));
    // Warm the pool, so that the login is answered from PgBouncer's cache.
    assert_eq!(bouncer.sql("postgres", "SELECT 1"), "1");
    pg.stop();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = diag(dir.path());
    cmd.env("DATABASE_URL", bouncer.superuser_url("postgres")).args([
        "--env",
        "production",
        "--format",
        "json",
        "--timeout",
        "2s",
        "--only",
        "postgres.connect",
    ]);
    let (code, report) = json_run(&mut cmd);
    assert_eq!(code, 1, "{report:#}");
    let msg = message(&report, "postgres.connect");
    assert!(msg.starts_with("PgBouncer says: ") || msg.starts_with("logged in, but the first query"), "{msg}");
}
