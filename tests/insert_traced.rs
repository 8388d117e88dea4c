//! Insert failures traced to their owner: a BEFORE INSERT trigger that raises is
//! named with its function (from the error's context and pg_trigger), and a
//! foreign key on sessions.user_id that references another table is named with
//! its real target and the statement that points it back — constraint names kept
//! as they are. The statement each hint names makes the dry run pass.

use serde_json::Value;

use crate::support::cmd::{assert_status, check, hint, message};
use crate::support::site::ApiSite;

struct Site(ApiSite);

impl Site {
    fn new(name: &str) -> Site {
        Site(ApiSite::new(name))
    }

    fn sql(&self, sql: &str) -> String {
        self.0.sql(sql)
    }

    fn run(&self, only: &str) -> (i32, Value) {
        self.0.run(&["--allow-writes", "--only", only])
    }
}

/// The statement in `hint` that starts with `start` and ends with the first `;`.
#[track_caller]
fn statement<'a>(hint: &'a str, start: &str) -> &'a str {
    let at = hint.find(start).unwrap_or_else(|| panic!("no `{start}` in the hint: {hint}"));
    let end = hint[at..].find(';').unwrap_or_else(|| panic!("`{start}` ends with no `;`: {hint}")) + at + 1;
    &hint[at..end]
}

#[test]
fn a_raising_before_insert_trigger_is_named_with_its_function() {
    let site = Site::new("trigger_raises");
    site.sql(
        "CREATE FUNCTION reject_sessions() RETURNS trigger LANGUAGE plpgsql AS \
         $$BEGIN RAISE EXCEPTION 'sessions are frozen for maintenance'; END$$; \
         CREATE TRIGGER \"Freeze sessions\" BEFORE INSERT ON sessions FOR EACH ROW EXECUTE FUNCTION reject_sessions()",
    );
    let (code, report) = site.run("postgres.connect,postgres.session_insert");
    assert_eq!(code, 1);
    assert_status(&report, "postgres.session_insert", "fail");
    assert_eq!(
        message(&report, "postgres.session_insert"),
        "the insert failed: trigger Freeze sessions on sessions (function reject_sessions()) raised: sessions are \
         frozen for maintenance (P0001)"
    );
    let fix = hint(&report, "postgres.session_insert");
    assert_eq!(statement(fix, "ALTER TABLE"), "ALTER TABLE sessions DISABLE TRIGGER \"Freeze sessions\";");
    let d = &check(&report, "postgres.session_insert")["details"];
    assert_eq!(
        (d["trigger"].as_str(), d["trigger_function"].as_str(), d["sqlstate"].as_str()),
        (Some("Freeze sessions"), Some("reject_sessions()"), Some("P0001"))
    );

    site.sql(statement(fix, "ALTER TABLE"));
    let (code, report) = site.run("postgres.connect,postgres.session_insert");
    assert_status(&report, "postgres.session_insert", "pass");
    assert_eq!(code, 0);
}

#[test]
fn a_foreign_key_that_references_legacy_users_is_named_with_its_real_target() {
    let site = Site::new("fk_legacy_users");
    let fk = site.sql("SELECT conname FROM pg_constraint WHERE conrelid = 'sessions'::regclass AND contype = 'f'");
    site.sql(&format!(
        "CREATE TABLE legacy_users (id uuid PRIMARY KEY); \
         ALTER TABLE sessions DROP CONSTRAINT \"{fk}\", \
         ADD CONSTRAINT \"{fk}\" FOREIGN KEY (user_id) REFERENCES legacy_users (id)"
    ));
    let (code, report) = site.run("postgres.connect,postgres.schema,postgres.session_insert");
    assert_eq!(code, 1);
    assert_status(&report, "postgres.schema", "fail");
    assert_eq!(
        message(&report, "postgres.schema"),
        format!(
            "foreign key {fk} on sessions.user_id references legacy_users(id), not users.id: every session insert \
             for a user missing from legacy_users fails with 23503 (INVALID_USER_REFERENCE)"
        )
    );
    let fix = hint(&report, "postgres.schema").to_string();
    assert!(!fix.contains("migrat"), "{fix}");
    // The dry run's 23503 is the same cause: said once.
    assert_status(&report, "postgres.session_insert", "skip");
    assert_eq!(check(&report, "postgres.session_insert")["see"], "postgres.schema");

    // Alone, the dry run names the target itself: the user exists in users.
    let (_, report) = site.run("postgres.connect,postgres.session_insert");
    let user = site.sql("SELECT id FROM users LIMIT 1");
    assert_eq!(
        message(&report, "postgres.session_insert"),
        format!(
            "INVALID_USER_REFERENCE: the insert violates foreign key {fk} on sessions(user_id), which references \
             legacy_users(id), not users: user {user} exists in users but not in legacy_users, so every session \
             creation fails"
        )
    );
    let d = &check(&report, "postgres.session_insert")["details"];
    assert_eq!(
        (d["api_error"].as_str(), d["references"].as_str()),
        (Some("INVALID_USER_REFERENCE"), Some("legacy_users"))
    );

    // The statement postgres.schema names points it back, under its own name.
    site.sql(statement(&fix, "ALTER TABLE"));
    assert_eq!(site.sql(&format!("SELECT confrelid::regclass FROM pg_constraint WHERE conname = '{fk}'")), "users");
    let (code, report) = site.run("postgres.connect,postgres.schema,postgres.session_insert");
    assert_status(&report, "postgres.schema", "pass");
    assert_status(&report, "postgres.session_insert", "pass");
    assert_eq!(code, 0);
}
