//! The incident itself (runbook: production-session-fix.md): a rolled-back dry run
//! of session creation, one user's diagnosis for a support ticket, and the cache
//! compared with the database. The real binary against real servers, broken the
//! ways production broke.
//!
//! "Nothing left behind" is proved by counters read from a separate connection
//! after every backend of the run has exited (a backend flushes its statistics
//! before it leaves pg_stat_activity): the row count of `sessions`, its live-tuple
//! count and its update/delete counters never move. `n_tup_ins` counts attempted
//! inserts, committed or not, so a rolled-back insert shows as one more insert and
//! one more dead tuple — the proof the insert really ran and was undone.

use std::thread;
use std::time::{Duration, Instant};

use crate::support::cmd::{assert_hints_paste, assert_status, check, diag, hint, json_run, message};
use crate::support::pg::PgServer;
use crate::support::redis::RedisServer;
use serde_json::Value;

const READ_ONLY_RUN: &str = "read-only run; pass --allow-writes to dry-run session creation";

/// A MockMate database on the shared cluster and how the binary reaches it.
struct Site {
    pg: &'static PgServer,
    db: String,
    url: String,
    redis_url: Option<String>,
}

impl Site {
    /// The MockMate schema with one active, verified user who has credits.
    fn new(name: &str) -> Site {
        let pg = PgServer::shared();
        let db = pg.create_mockmate_db(name);
        let url = pg.superuser_url(&db);
        Site { pg, db, url, redis_url: None }
    }

    fn with_redis(mut self, redis: &RedisServer) -> Site {
        self.redis_url = Some(redis.url());
        self
    }

    fn sql(&self, sql: &str) -> String {
        self.pg.sql(&self.db, sql)
    }

    /// Inserts a user and returns their id.
    fn user(&self, active: bool, credits: i32) -> String {
        self.sql(&format!(
            "INSERT INTO users (email, credits, is_active, is_verified) \
             VALUES ('u' || gen_random_uuid() || '@example.com', {credits}, {active}, true) RETURNING id"
        ))
    }

    /// Inserts a session for `user` and returns its id.
    fn session(&self, user: &str) -> String {
        self.sql(&format!(
            "INSERT INTO sessions (user_id, job_title, difficulty, duration, session_type) \
             VALUES ('{user}', 'Backend engineer', 'intermediate', 30, 'technical') RETURNING id"
        ))
    }

    /// Runs the binary with `--format json --only <ids>` and `extra`.
    fn run(&self, only: &str, extra: &[&str]) -> (i32, Value) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = diag(dir.path());
        cmd.env("DATABASE_URL", &self.url);
        if let Some(redis) = &self.redis_url {
            cmd.env("REDIS_URL", redis);
        }
        cmd.args(["--env", "production", "--format", "json", "--only", only]).args(extra);
        let (code, report) = json_run(&mut cmd);
        assert_hints_paste(&report);
        (code, report)
    }

    /// The counters that prove what a run left behind (see the module comment).
    fn counters(&self) -> Counters {
        self.wait_for_other_backends();
        let row = self.sql(
            "SELECT (SELECT count(*) FROM sessions), n_live_tup, n_tup_ins, n_tup_upd, n_tup_del, n_dead_tup \
             FROM pg_stat_user_tables WHERE relname = 'sessions'",
        );
        let n: Vec<i64> = row.split('|').map(|v| v.parse().expect("a number")).collect();
        Counters { rows: n[0], live: n[1], inserted: n[2], updated: n[3], deleted: n[4], dead: n[5] }
    }

    /// Waits until no other backend is connected to the database: every earlier
    /// connection (ours, psql's) has ended and flushed its statistics.
    fn wait_for_other_backends(&self) {
        let started = Instant::now();
        loop {
            let others = self.sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            );
            if others == "0" {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "backends still connected to {} after 20s: {}",
                self.db,
                self.sql(
                    "SELECT string_agg(pid || ' ' || application_name || ' ' || coalesce(state, ''), '; ') \
                     FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counters {
    rows: i64,
    live: i64,
    inserted: i64,
    updated: i64,
    deleted: i64,
    dead: i64,
}

/// Nothing committed: same rows, same live tuples, no update or delete, and every
/// attempted insert is a dead tuple. `attempts` is how many inserts ran.
#[track_caller]
fn assert_left_nothing(before: Counters, after: Counters, attempts: i64) {
    assert_eq!(after.rows, before.rows, "row count of sessions changed: {before:?} → {after:?}");
    assert_eq!(after.live, before.live, "live tuples changed: {before:?} → {after:?}");
    assert_eq!((after.updated, after.deleted), (before.updated, before.deleted), "{before:?} → {after:?}");
    assert_eq!(after.inserted - before.inserted, attempts, "inserts attempted: {before:?} → {after:?}");
    assert_eq!(after.dead - before.dead, attempts, "every attempt is a dead tuple: {before:?} → {after:?}");
}

fn details<'a>(report: &'a Value, id: &str) -> &'a Value {
    &check(report, id)["details"]
}

// ---- postgres.session_insert ------------------------------------------------

#[test]
fn read_only_run_skips_the_dry_run_and_says_how_to_enable_it() {
    let site = Site::new("dry_run_skipped");
    let (_, report) = site.run("postgres.session_insert", &[]);
    assert_status(&report, "postgres.session_insert", "skip");
    assert_eq!(message(&report, "postgres.session_insert"), READ_ONLY_RUN);
}

#[test]
fn dry_run_inserts_reads_back_and_rolls_back_leaving_nothing_behind() {
    let site = Site::new("dry_run_passes");
    let before = site.counters();
    let (code, report) = site.run("postgres.session_insert", &["--allow-writes"]);
    assert_status(&report, "postgres.session_insert", "pass");
    assert_eq!(code, 0);
    let msg = message(&report, "postgres.session_insert");
    assert!(msg.starts_with("inserted session ") && msg.ends_with("and read it back; rolled back"), "{msg}");
    let d = details(&report, "postgres.session_insert");
    assert_eq!(d["rolled_back"], true);
    assert_eq!(d["ended_by"], "ROLLBACK");
    assert_eq!(d["api_error"], Value::Null);
    assert_left_nothing(before, site.counters(), 1);
    let id = d["session_id"].as_str().expect("session id");
    assert_eq!(site.sql(&format!("SELECT count(*) FROM sessions WHERE id = '{id}'")), "0");
}

#[test]
fn support_ticket_for_a_missing_user_answers_invalid_user_reference() {
    let site = Site::new("missing_user");
    let ghost = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
    let before = site.counters();
    let (code, report) = site.run("postgres.session_insert,postgres.user", &["--allow-writes", "--user-id", ghost]);
    assert_eq!(code, 1);
    assert_status(&report, "postgres.session_insert", "skip");
    assert_eq!(
        message(&report, "postgres.session_insert"),
        format!(
            "see postgres.user: INVALID_USER_REFERENCE: user {ghost} does not exist or is inactive (no row in users)"
        )
    );
    // Alone, the dry run keeps its finding.
    let (_, alone) = site.run("postgres.session_insert", &["--allow-writes", "--user-id", ghost]);
    assert_status(&alone, "postgres.session_insert", "fail");
    assert_eq!(details(&report, "postgres.session_insert")["api_error"], "INVALID_USER_REFERENCE");
    assert_status(&report, "postgres.user", "fail");
    assert!(message(&report, "postgres.user").contains("does not exist"), "{}", message(&report, "postgres.user"));
    // One cause, one finding: the dry run defers to the check about the ticket's user.
    assert_eq!(check(&report, "postgres.session_insert")["see"], "postgres.user");
    assert_eq!(details(&report, "postgres.user")["exists"], false);
    assert_left_nothing(before, site.counters(), 0);
}

#[test]
fn support_ticket_for_an_inactive_user_answers_invalid_user_reference() {
    let site = Site::new("inactive_user");
    let user = site.user(false, 10);
    let (_, report) = site.run("postgres.session_insert,postgres.user", &["--allow-writes", "--user-id", &user]);
    assert_status(&report, "postgres.session_insert", "skip");
    assert_eq!(check(&report, "postgres.session_insert")["see"], "postgres.user");
    assert!(message(&report, "postgres.session_insert").contains("is_active is not true"));
    assert_eq!(details(&report, "postgres.session_insert")["api_error"], "INVALID_USER_REFERENCE");
    assert_status(&report, "postgres.user", "fail");
    let msg = message(&report, "postgres.user");
    assert!(msg.contains("INACTIVE") && msg.contains("INVALID_USER_REFERENCE"), "{msg}");
    assert_eq!(details(&report, "postgres.user")["is_active"], false);
}

#[test]
fn user_with_zero_credits_warns_insufficient_credits_and_the_insert_still_rolls_back() {
    let site = Site::new("zero_credits");
    let user = site.user(true, 0);
    let before = site.counters();
    let (code, report) = site.run("postgres.session_insert,postgres.user", &["--allow-writes", "--user-id", &user]);
    assert_eq!(code, 0, "warnings do not fail the default gate");
    for id in ["postgres.session_insert", "postgres.user"] {
        assert!(message(&report, id).contains("INSUFFICIENT_CREDITS"), "{}", message(&report, id));
        assert_eq!(details(&report, id)["api_error"], "INSUFFICIENT_CREDITS");
    }
    // One cause, one finding (issue 27): postgres.user owns the user's credits and the
    // one UPDATE, which pastes (it ends with ';'); the dry run says "see postgres.user".
    assert_status(&report, "postgres.user", "warn");
    assert_eq!(
        hint(&report, "postgres.user"),
        format!("if the user should have credits: UPDATE users SET credits = 10 WHERE id = '{user}';")
    );
    assert_status(&report, "postgres.session_insert", "skip");
    assert_eq!(check(&report, "postgres.session_insert")["see"], "postgres.user");
    assert!(message(&report, "postgres.session_insert").starts_with("see postgres.user: INSUFFICIENT_CREDITS"));
    assert_eq!(details(&report, "postgres.user")["credits"], 0);
    assert_left_nothing(before, site.counters(), 1);
}

#[test]
fn support_ticket_for_a_healthy_user_counts_their_sessions_and_what_redis_cached() {
    let redis = RedisServer::start();
    let site = Site::new("healthy_user").with_redis(&redis);
    let user = site.user(true, 7);
    let sessions: Vec<String> = (0..3).map(|_| site.session(&user)).collect();
    for s in &sessions[..2] {
        redis.cli(&["SET", &format!("session:{s}"), "{}"]);
    }
    let (_, report) = site.run("postgres.user", &["--user-id", &user]);
    assert_status(&report, "postgres.user", "pass");
    assert_eq!(
        message(&report, "postgres.user"),
        format!("user {user}: active, verified, 7 credits, 3 sessions, 2 cached in Redis")
    );
    let d = details(&report, "postgres.user");
    assert_eq!((d["sessions"].clone(), d["cached_sessions"].clone()), (3.into(), 2.into()));
}

#[test]
fn support_ticket_without_redis_still_diagnoses_the_user() {
    let site = Site::new("user_no_redis");
    let user = site.user(true, 3);
    site.session(&user);
    let (_, report) = site.run("postgres.user", &["--user-id", &user]);
    assert_status(&report, "postgres.user", "pass");
    let msg = message(&report, "postgres.user");
    assert!(msg.contains("1 session") && msg.contains("Redis unreachable"), "{msg}");
    assert_eq!(details(&report, "postgres.user")["cached_sessions"], Value::Null);
}

#[test]
fn without_user_id_the_user_check_is_skipped() {
    let site = Site::new("no_user_id");
    let (_, report) = site.run("postgres.user", &[]);
    assert_status(&report, "postgres.user", "skip");
}

#[test]
fn read_only_database_fails_the_dry_run_with_25006_like_the_api() {
    let site = Site::new("read_only_db");
    site.sql(&format!("ALTER DATABASE \"{}\" SET default_transaction_read_only = on", site.db));
    let before = site.counters();
    let (_, report) = site.run("postgres.session_insert", &["--allow-writes"]);
    assert_status(&report, "postgres.session_insert", "fail");
    let msg = message(&report, "postgres.session_insert");
    assert!(msg.starts_with("the database is read-only") && msg.contains("(25006)"), "{msg}");
    assert_eq!(details(&report, "postgres.session_insert")["sqlstate"], "25006");
    assert_left_nothing(before, site.counters(), 0);
}

#[test]
fn select_only_role_cannot_insert_and_the_hint_grants_it() {
    let mut site = Site::new("select_only");
    let role = format!("reader_{}", site.db);
    site.pg.create_user(&role, "reader-pw");
    site.sql(&format!("GRANT SELECT ON users, sessions TO \"{role}\""));
    site.url = site.pg.url(&role, "reader-pw", &site.db);
    let before = site.counters();
    let (_, report) = site.run("postgres.session_insert", &["--allow-writes"]);
    assert_status(&report, "postgres.session_insert", "fail");
    let msg = message(&report, "postgres.session_insert");
    assert!(msg.contains(&format!("role \"{role}\" cannot do the insert")) && msg.contains("(42501)"), "{msg}");
    let hint = check(&report, "postgres.session_insert")["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("GRANT SELECT, INSERT ON sessions"), "{hint}");
    assert_left_nothing(before, site.counters(), 0);
}

#[test]
fn not_null_column_added_by_a_migration_is_named() {
    let site = Site::new("not_null_column");
    site.sql("ALTER TABLE sessions ADD COLUMN interviewer_id uuid NOT NULL");
    let before = site.counters();
    let (_, report) = site.run("postgres.session_insert", &["--allow-writes"]);
    assert_status(&report, "postgres.session_insert", "fail");
    let msg = message(&report, "postgres.session_insert");
    assert!(msg.starts_with("column sessions.interviewer_id is NOT NULL but the API does not fill it"), "{msg}");
    assert!(hint(&report, "postgres.session_insert").contains("ALTER COLUMN interviewer_id DROP NOT NULL;"));
    assert_eq!(details(&report, "postgres.session_insert")["column"], "interviewer_id");
    assert_eq!(details(&report, "postgres.session_insert")["sqlstate"], "23502");
    // NOT NULL is checked before the row is written: not even an attempt is counted.
    assert_left_nothing(before, site.counters(), 0);
    // postgres.schema sees it without writing, and owns it: one cause, one finding.
    let (_, report) = site.run("postgres.schema,postgres.session_insert", &["--allow-writes"]);
    assert_status(&report, "postgres.schema", "fail");
    assert_eq!(
        message(&report, "postgres.schema"),
        "sessions.interviewer_id NOT NULL with no default, and the API's insert does not fill it: every session \
         creation fails (23502)"
    );
    assert_eq!(check(&report, "postgres.session_insert")["see"], "postgres.schema");
}

#[test]
fn missing_gen_random_uuid_is_named() {
    let site = Site::new("no_gen_random_uuid");
    // A trigger calling a gen_random_uuid that does not exist, as on a server
    // without pgcrypto (PostgreSQL < 13): resolved only when a row is inserted.
    site.sql(
        "CREATE FUNCTION new_session_id() RETURNS trigger LANGUAGE plpgsql AS \
         'BEGIN NEW.id := gen_random_uuid(NEW.user_id); RETURN NEW; END'; \
         CREATE TRIGGER session_id BEFORE INSERT ON sessions FOR EACH ROW EXECUTE FUNCTION new_session_id()",
    );
    let (_, report) = site.run("postgres.session_insert", &["--allow-writes"]);
    assert_status(&report, "postgres.session_insert", "fail");
    let msg = message(&report, "postgres.session_insert");
    assert!(msg.starts_with("gen_random_uuid() is missing") && msg.contains("(42883)"), "{msg}");
}

// ---- the deadline -----------------------------------------------------------

#[test]
fn deadline_mid_transaction_names_the_lock_and_its_holder_and_leaves_nothing_behind() {
    let site = Site::new("deadline_lock");
    let before = site.counters();
    let lock = site.pg.lock_table(&site.db, "sessions");
    let started = Instant::now();
    // 3s, not 1s: two scram logins of a debug build on a busy machine can eat 1s.
    let (code, report) = site.run("postgres.session_insert", &["--allow-writes", "--timeout", "3s"]);
    let took = started.elapsed();
    assert_eq!(code, 1);
    assert_status(&report, "postgres.session_insert", "fail");
    let msg = message(&report, "postgres.session_insert");
    assert!(msg.contains("it waits for RowExclusiveLock on sessions, held by pid "), "{msg}");
    assert!(msg.contains("(AccessExclusiveLock on sessions): every session insert waits the same way"), "{msg}");
    assert_eq!(details(&report, "postgres.session_insert")["rolled_back"], true);
    assert_eq!(details(&report, "postgres.session_insert")["ended_by"], "backend terminated");
    // Our backend is gone while the lock is still held: it did not wait for it.
    assert_eq!(
        site.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'mockmate-diag'"
        ),
        "0",
        "the dry run's backend outlived the run (took {took:?})"
    );
    lock.release();
    // The insert never ran (it waited for the lock), so not even an attempt.
    assert_left_nothing(before, site.counters(), 0);
}

// ---- postgres.orphan_sessions ------------------------------------------------

#[test]
fn foreign_key_dropped_and_an_orphan_session_present_warns_with_its_id() {
    let site = Site::new("orphans");
    let (_, report) = site.run("postgres.orphan_sessions", &[]);
    assert_status(&report, "postgres.orphan_sessions", "pass");
    let fk = site.sql("SELECT conname FROM pg_constraint WHERE conrelid = 'sessions'::regclass AND contype = 'f'");
    site.sql(&format!("ALTER TABLE sessions DROP CONSTRAINT \"{fk}\""));
    let orphan = site.sql(
        "INSERT INTO sessions (user_id, job_title, difficulty, duration, session_type) \
         VALUES (gen_random_uuid(), 'x', 'easy', 30, 'technical') RETURNING id",
    );
    let sleeper = site.user(false, 1);
    let dormant = site.session(&sleeper);
    let (code, report) = site.run("postgres.orphan_sessions", &[]);
    assert_eq!(code, 0, "orphans are a warning");
    assert_status(&report, "postgres.orphan_sessions", "warn");
    let msg = message(&report, "postgres.orphan_sessions");
    assert!(msg.starts_with("2 orphan sessions (1 with no user row, 1 of an inactive user)"), "{msg}");
    assert!(msg.contains(&orphan) && msg.contains(&dormant), "{msg}");
    let d = details(&report, "postgres.orphan_sessions");
    assert_eq!((d["count"].clone(), d["missing_user"].clone()), (2.into(), 1.into()));
    assert_eq!(d["foreign_key"], false, "without the foreign key every session is joined");
    assert!(check(&report, "postgres.orphan_sessions")["hint"].as_str().unwrap_or_default().contains("FOREIGN KEY"));
}

// ---- consistency.cached_sessions ---------------------------------------------

#[test]
fn cached_sessions_all_in_postgres_pass_and_malformed_keys_are_counted_not_queried() {
    let redis = RedisServer::start();
    let site = Site::new("cache_consistent").with_redis(&redis);
    let (_, report) = site.run("consistency.cached_sessions", &[]);
    assert_status(&report, "consistency.cached_sessions", "pass");
    assert_eq!(
        message(&report, "consistency.cached_sessions"),
        "no cached sessions sampled (no key matches session:*)"
    );

    let user = site.user(true, 5);
    for _ in 0..3 {
        let s = site.session(&user);
        redis.cli(&["SET", &format!("session:{s}"), "{}"]);
    }
    redis.cli(&["SET", "session:not-a-uuid", "{}"]);
    redis.cli(&["SET", "session:42", "{}"]);
    redis.cli(&["SET", "user:1", "{}"]);
    // A probe key of redis.roundtrip's (in flight during a run) is ours, not a cached session.
    redis.cli(&["SET", "session:mockmate-diag-probe-6f1c0f3e-0000-4000-8000-000000000000", "x"]);
    let (code, report) = site.run("consistency.cached_sessions", &[]);
    assert_eq!(code, 0);
    assert_status(&report, "consistency.cached_sessions", "pass");
    let d = details(&report, "consistency.cached_sessions");
    assert_eq!((d["sampled"].clone(), d["missing"].clone(), d["malformed"].clone()), (5.into(), 0.into(), 2.into()));
    let msg = message(&report, "consistency.cached_sessions");
    assert!(msg.starts_with("all 3 cached sessions exist in sessions; 2 malformed"), "{msg}");
}

#[test]
fn cached_sessions_missing_from_postgres_fail_naming_them() {
    let redis = RedisServer::start();
    let site = Site::new("cache_inconsistent").with_redis(&redis);
    let user = site.user(true, 5);
    let stored = site.session(&user);
    redis.cli(&["SET", &format!("session:{stored}"), "{}"]);
    let lost = ["00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"];
    for id in lost {
        redis.cli(&["SET", &format!("session:{id}"), "{}"]);
    }
    let (code, report) = site.run("consistency.cached_sessions", &[]);
    assert_eq!(code, 1);
    assert_status(&report, "consistency.cached_sessions", "fail");
    let msg = message(&report, "consistency.cached_sessions");
    assert!(msg.starts_with("2 of 3 sampled cached sessions have no row in sessions"), "{msg}");
    for id in lost {
        assert!(msg.contains(id), "{id} missing from {msg}");
    }
    assert!(!msg.contains(&stored), "{msg}");
    let d = details(&report, "consistency.cached_sessions");
    assert_eq!(d["missing_examples"], serde_json::json!(lost));
    assert_eq!(d["missing"], 2);
}

#[test]
fn scan_bound_is_respected_on_a_keyspace_larger_than_the_sample() {
    let redis = RedisServer::start();
    let site = Site::new("cache_bounded").with_redis(&redis);
    // 5 000 session keys (none in PostgreSQL) among 5 000 others.
    redis.cli(&[
        "EVAL",
        "for i = 1, 5000 do \
           redis.call('SET', string.format('session:%08x-0000-4000-8000-%012x', i, i), '{}') \
           redis.call('SET', 'other:' .. i, '1') \
         end return 1",
        "0",
    ]);
    redis.cli(&["CONFIG", "RESETSTAT"]);
    let (_, report) = site.run("consistency.cached_sessions", &[]);
    assert_status(&report, "consistency.cached_sessions", "fail");
    let d = details(&report, "consistency.cached_sessions");
    assert_eq!(d["sampled"], 500, "{d:#}");
    assert_eq!(d["missing"], 500);
    assert_eq!((d["complete"].clone(), d["bound"].clone()), (false.into(), "sample".into()));
    assert_eq!(d["missing_examples"].as_array().map(Vec::len), Some(5));

    // A tighter bound from a manifest: two SCAN calls of COUNT 10, whatever matches.
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("tight.toml");
    std::fs::write(
        &manifest,
        "[[check]]\nid = \"consistency.tight\"\nkind = \"consistency.cached_sessions\"\n\
         needs = [\"postgres.connect\", \"redis.connect\"]\nscan_count = 10\nmax_scan_calls = 2\n",
    )
    .expect("write manifest");
    let (_, report) = site.run("consistency.tight", &["--checks", manifest.to_str().expect("utf-8 path")]);
    let d = details(&report, "consistency.tight");
    assert_eq!((d["scan_calls"].clone(), d["bound"].clone()), (2.into(), "max_scan_calls".into()), "{d:#}");
    assert!(d["sampled"].as_u64().is_some_and(|n| n <= 40), "{d:#}");

    // SCAN only: KEYS would have blocked Redis for the whole keyspace.
    let stats = redis.cli(&["INFO", "commandstats"]);
    assert!(!stats.contains("cmdstat_keys:"), "{stats}");
    assert!(stats.contains("cmdstat_scan:calls="), "{stats}");
}
