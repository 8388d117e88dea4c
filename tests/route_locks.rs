//! Locks judged by what the session route meets: another role's session holds a
//! lock, the API's role (no pg_read_all_stats) runs the check. A lock that makes
//! every session insert wait fails the run, naming the backend, with the statement
//! that ends it; what the role cannot see is said, never reported as "none"; the
//! tool's own connections never count. psql is the oracle that the insert really
//! waits.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::cmd::{assert_status, check, diag, hint, json_run, message};
use crate::support::pg::PgServer;

const PASSWORD: &str = "route-locks-pw";
const OTHER_PASSWORD: &str = "route-locks-other-pw";

/// A MockMate database used by the API's role, and another role (a batch job, an
/// admin's psql) with rights on its tables.
struct Site {
    pg: &'static PgServer,
    db: String,
    app: String,
    other: String,
}

impl Site {
    fn new(name: &str) -> Site {
        let pg = PgServer::shared();
        let db = pg.create_mockmate_db(name);
        let app = db.clone();
        let other = format!("{db}_job");
        pg.create_user(&app, PASSWORD);
        pg.create_user(&other, OTHER_PASSWORD);
        pg.sql(
            &db,
            &format!(
                "GRANT SELECT ON users TO \"{app}\"; GRANT SELECT, INSERT ON sessions TO \"{app}\"; \
                 GRANT ALL ON users, sessions TO \"{other}\""
            ),
        );
        Site { pg, db, app, other }
    }

    fn sql(&self, sql: &str) -> String {
        self.pg.sql(&self.db, sql)
    }

    /// Runs `only` as the API's role.
    fn run(&self, only: &str, extra: &[&str]) -> (i32, Value) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = diag(dir.path());
        cmd.env("DATABASE_URL", self.pg.url(&self.app, PASSWORD, &self.db))
            .args(["--env", "production", "--format", "json", "--only", only])
            .args(extra);
        json_run(&mut cmd)
    }

    /// A psql session of the other role (application `nightly-job`) that runs
    /// `statements` in an open transaction and then sits idle in it; waits until
    /// `held` (run as the superuser) returns a row.
    fn hold(&self, statements: &str, held: &str) -> Holder {
        let psql = self.pg.bindir.join("psql");
        let child = Command::new(if psql.exists() { psql } else { "psql".into() })
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.pg.port.to_string(), "-U", &self.other, "-d", &self.db])
            .env("PGPASSWORD", OTHER_PASSWORD)
            .env("PGAPPNAME", "nightly-job")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start psql");
        // Killed on drop from here on, whatever fails below.
        let mut holder = Holder { child, pid: String::new() };
        let stdin = holder.child.stdin.as_mut().expect("psql stdin");
        stdin.write_all(format!("BEGIN;\n{statements}\n").as_bytes()).expect("write to psql");
        stdin.flush().expect("flush");
        let started = Instant::now();
        loop {
            holder.pid = self.sql(held);
            if !holder.pid.is_empty() {
                return holder;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "psql never held: {held}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The insert the API's route makes, as psql, giving up after 500ms.
    fn insert_waits(&self) -> bool {
        let user = self.sql("SELECT id FROM users LIMIT 1");
        let tried = self.pg.try_sql(
            &self.db,
            &format!("SET lock_timeout = '500ms'; INSERT INTO sessions (user_id) VALUES ('{user}')"),
        );
        matches!(&tried, Err(e) if e.contains("lock timeout"))
    }
}

/// The other role's psql, killed (its transaction rolled back) on drop.
struct Holder {
    child: Child,
    pid: String,
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_share_lock_on_sessions_held_by_another_role_fails_the_run_with_its_pid() {
    let site = Site::new("lock_share_sessions");
    let holder = site.hold(
        "LOCK TABLE sessions IN SHARE MODE;",
        "SELECT pid FROM pg_locks WHERE relation = 'sessions'::regclass AND mode = 'ShareLock' AND granted",
    );
    assert!(site.insert_waits(), "psql: the insert waits behind the lock");
    let (code, report) = site.run("postgres.connect,postgres.locks", &[]);
    assert_eq!(code, 1, "a blocking lock fails the run: {report:#}");
    assert_status(&report, "postgres.locks", "fail");
    let (pid, app, other) = (&holder.pid, &site.app, &site.other);
    assert_eq!(
        message(&report, "postgres.locks"),
        format!(
            "every session insert waits behind pid {pid} (role \"{other}\", application \"nightly-job\"; its state \
             and how long its transaction has been open: unknown, hidden from role \"{app}\"): it holds ShareLock on \
             sessions, so INSERT INTO sessions waits"
        )
    );
    let fix = hint(&report, "postgres.locks");
    assert!(fix.contains(&format!("SELECT pg_terminate_backend({pid});")), "{fix}");
    assert!(fix.contains(&format!("GRANT pg_read_all_stats TO \"{app}\";")), "{fix}");
    let d = &check(&report, "postgres.locks")["details"];
    assert_eq!(d["blocking"][0]["pid"].to_string(), *pid);
    assert_eq!(d["blocking"][0]["transaction_seconds"], Value::Null, "unknown is null, never 0");

    // With the grant the hint names, the role sees how long and the query.
    site.pg.sql("postgres", &format!("GRANT pg_read_all_stats TO \"{app}\""));
    let (_, report) = site.run("postgres.connect,postgres.locks", &[]);
    let msg = message(&report, "postgres.locks");
    assert!(
        msg.starts_with(&format!("every session insert waits behind pid {pid} (role \"{other}\", application \"nightly-job\", idle in transaction for ")),
        "{msg}"
    );
    assert!(msg.ends_with("; its query: LOCK TABLE sessions IN SHARE MODE;"), "{msg}");

    // The dry run names the same lock, and the lock check never counts the dry
    // run's own waiting backend.
    let (code, report) =
        site.run("postgres.connect,postgres.locks,postgres.session_insert", &["--allow-writes", "--timeout", "3s"]);
    assert_eq!(code, 1);
    let msg = message(&report, "postgres.session_insert");
    assert!(msg.contains(&format!("it waits for RowExclusiveLock on sessions, held by pid {pid} (")), "{msg}");
    assert!(msg.contains("(ShareLock on sessions): every session insert waits the same way"), "{msg}");
    assert_eq!(check(&report, "postgres.locks")["details"]["waiting"], serde_json::json!([]), "{report:#}");
    assert!(!message(&report, "postgres.locks").contains("mockmate-diag"));

    // Released: the route is free.
    drop(holder);
    let (code, report) = site.run("postgres.connect,postgres.locks", &[]);
    assert_status(&report, "postgres.locks", "pass");
    assert_eq!(code, 0);
}

#[test]
fn access_exclusive_on_users_stops_even_the_routes_first_read() {
    let site = Site::new("lock_access_exclusive_users");
    let holder = site.hold(
        "LOCK TABLE users IN ACCESS EXCLUSIVE MODE;",
        "SELECT pid FROM pg_locks WHERE relation = 'users'::regclass AND mode = 'AccessExclusiveLock' AND granted",
    );
    let (code, report) = site.run("postgres.connect,postgres.locks", &[]);
    assert_eq!(code, 1);
    let msg = message(&report, "postgres.locks");
    assert!(msg.starts_with(&format!("every session creation waits behind pid {} (", holder.pid)), "{msg}");
    assert!(
        msg.ends_with(
            "it holds AccessExclusiveLock on users, so its lookup of the user (SELECT … FROM users) waits, and \
             reads of users too"
        ),
        "{msg}"
    );
}

#[test]
fn a_users_row_locked_for_update_by_an_idle_transaction_of_another_role_is_said_never_none() {
    let site = Site::new("lock_row_for_update");
    let user = site.sql("SELECT id FROM users LIMIT 1");
    let holder = site.hold(
        &format!("SELECT id FROM users WHERE id = '{user}' FOR UPDATE;"),
        "SELECT pid FROM pg_locks WHERE relation = 'users'::regclass AND mode = 'RowShareLock' AND granted",
    );
    assert!(site.insert_waits(), "psql: the insert's foreign-key check waits for the row");
    let (code, report) = site.run("postgres.connect,postgres.locks", &[]);
    // The role cannot tell FOR UPDATE from a harmless lock, nor how long: a warning
    // that says so, never "no session idle in transaction".
    assert_status(&report, "postgres.locks", "warn");
    assert_eq!(code, 0, "{report:#}");
    let msg = message(&report, "postgres.locks");
    assert!(
        msg.starts_with(&format!(
            "pid {} (role \"{}\", application \"nightly-job\"; its state",
            holder.pid, site.other
        )),
        "{msg}"
    );
    assert!(msg.contains(&format!("holds a lock on users row id={user}: a FOR UPDATE lock")), "{msg}");
    assert!(!msg.contains("nothing blocks") && !msg.contains(" 0s"), "{msg}");
    assert!(hint(&report, "postgres.locks").contains(&format!("GRANT pg_read_all_stats TO \"{}\";", site.app)));

    // The dry run tries the insert and names the users row, not "sessions".
    let (code, report) = site.run("postgres.connect,postgres.session_insert", &["--allow-writes", "--timeout", "3s"]);
    assert_eq!(code, 1);
    let msg = message(&report, "postgres.session_insert");
    assert!(
        msg.contains(&format!(
            "the insert's foreign-key check waits for a lock on user {user}'s row in users (FOR KEY SHARE), locked by pid {}",
            holder.pid
        )),
        "{msg}"
    );
    assert!(!msg.contains("lock contention on sessions"), "{msg}");
    assert_eq!(check(&report, "postgres.session_insert")["details"]["lock"], "row");
    assert!(
        hint(&report, "postgres.session_insert").contains(&format!("SELECT pg_terminate_backend({});", holder.pid))
    );

    // Past idle_in_transaction, and visible (pg_read_all_stats), it is a finding of its own.
    site.pg.sql("postgres", &format!("GRANT pg_read_all_stats TO \"{}\"", site.app));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("locks.toml"),
        "[[check]]\nid = \"custom.locks\"\nkind = \"postgres.locks\"\nidle_in_transaction = \"1s\"\n",
    )
    .expect("write manifest");
    let idle =
        format!("SELECT 1 FROM pg_stat_activity WHERE pid = {} AND now() - xact_start > interval '1.5s'", holder.pid);
    let started = Instant::now();
    while site.sql(&idle).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut cmd = diag(dir.path());
    cmd.env("DATABASE_URL", site.pg.url(&site.app, PASSWORD, &site.db)).args([
        "--env",
        "production",
        "--format",
        "json",
        "--checks",
        "locks.toml",
        "--only",
        "custom.locks",
    ]);
    let (_, report) = json_run(&mut cmd);
    assert_status(&report, "custom.locks", "fail");
    let msg = message(&report, "custom.locks");
    assert!(
        msg.contains(", idle in transaction for ") && msg.contains(&format!("holds a lock on users row id={user}")),
        "{msg}"
    );
}

#[test]
fn a_transaction_of_another_role_on_other_tables_passes_with_what_the_role_cannot_see() {
    let site = Site::new("lock_hidden_pass");
    site.sql(&format!("CREATE TABLE audit (n int); GRANT ALL ON audit TO \"{}\"", site.other));
    let _holder = site.hold(
        "INSERT INTO audit VALUES (1);",
        "SELECT pid FROM pg_locks WHERE relation = 'audit'::regclass AND granted",
    );
    let (code, report) = site.run("postgres.connect,postgres.locks", &[]);
    assert_eq!(code, 0);
    assert_status(&report, "postgres.locks", "pass");
    let msg = message(&report, "postgres.locks");
    assert!(msg.starts_with("nothing blocks session creation: no lock on users or sessions conflicts"), "{msg}");
    assert!(
        msg.ends_with(&format!(
            "among those role \"{}\" can see (1 session of other roles ({}) has a transaction open: whether it is \
             idle in transaction, role \"{}\" cannot see)",
            site.app, site.other, site.app
        )),
        "{msg}"
    );
    assert_eq!(check(&report, "postgres.locks")["details"]["sees_other_roles"], false);
}
