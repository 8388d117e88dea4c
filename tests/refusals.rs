//! The server's own refusals, each with its own fix: a role's or a database's
//! CONNECTION LIMIT, ALLOW_CONNECTIONS false, NOLOGIN, an expired password (and
//! one about to expire, which the catalog shows while the API still gets in) — told
//! apart by SQLSTATE and PostgreSQL's words, never "raise max_connections" or
//! "edit pg_hba.conf" for all of them. node-postgres (the API's driver) is refused
//! with the same SQLSTATE in each state, and the statement the hint names lets
//! the API back in. Roles and databases are fresh ones on the shared cluster.

use serde_json::Value;

use crate::support::cmd::{assert_status, check, diag, hint, json_run, message};
use crate::support::node::pg_probe;
use crate::support::site::{ApiSite, PASSWORD};

/// A MockMate database and a login role of its own, as the API has them.
struct Site(ApiSite);

impl std::ops::Deref for Site {
    type Target = ApiSite;
    fn deref(&self) -> &ApiSite {
        &self.0
    }
}

impl Site {
    fn new(name: &str) -> Site {
        Site(ApiSite::new(name))
    }

    /// postgres.connect as the API's role: (exit code, report).
    fn connect(&self) -> (i32, Value) {
        self.run(&["--only", "postgres.connect"])
    }

    /// The API's driver, on the same URL.
    fn node(&self) -> Value {
        pg_probe(&[("DATABASE_URL", &self.url())])
    }

    /// Runs a statement a hint names, as an operator pastes it into psql.
    fn paste(&self, statement: &str) {
        self.pg.sql("postgres", statement);
    }
}

/// The statement in `hint` that starts with `start` and ends with the first `;`.
#[track_caller]
fn statement<'a>(hint: &'a str, start: &str) -> &'a str {
    let at = hint.find(start).unwrap_or_else(|| panic!("no `{start}` in the hint: {hint}"));
    let end = hint[at..].find(';').unwrap_or_else(|| panic!("`{start}` ends with no `;`: {hint}")) + at + 1;
    &hint[at..end]
}

/// The state refuses the API: our failure and node-postgres's carry the same SQLSTATE.
#[track_caller]
fn assert_refused(site: &Site, sqlstate: &str) -> Value {
    let (code, report) = site.connect();
    assert_eq!(code, 1, "{report:#}");
    assert_status(&report, "postgres.connect", "fail");
    assert!(message(&report, "postgres.connect").ends_with(&format!("({sqlstate})")), "{report:#}");
    let node = site.node();
    assert_eq!((node["ok"].as_bool(), node["code"].as_str()), (Some(false), Some(sqlstate)), "node-postgres: {node}");
    report
}

/// After the fix, the API gets in, and so does the check.
#[track_caller]
fn assert_let_in(site: &Site) {
    let (_, report) = site.connect();
    assert_status(&report, "postgres.connect", "pass");
    assert_eq!(site.node()["ok"], true);
}

#[test]
fn a_role_connection_limit_of_0_is_an_alter_role_not_max_connections() {
    let site = Site::new("role_limit");
    site.paste(&format!("ALTER ROLE \"{}\" CONNECTION LIMIT 0", site.role));
    let report = assert_refused(&site, "53300");
    assert_eq!(
        message(&report, "postgres.connect"),
        format!("too many connections for role \"{}\" (53300)", site.role)
    );
    let fix = hint(&report, "postgres.connect");
    assert!(!fix.contains("max_connections"), "{fix}");
    assert!(fix.contains(&format!("WHERE usename = '{}';", site.role)), "{fix}");
    site.paste(statement(fix, "ALTER ROLE"));
    assert_let_in(&site);
}

#[test]
fn a_database_connection_limit_of_0_is_an_alter_database() {
    let site = Site::new("db_limit");
    site.paste(&format!("ALTER DATABASE \"{}\" CONNECTION LIMIT 0", site.db));
    let report = assert_refused(&site, "53300");
    assert_eq!(
        message(&report, "postgres.connect"),
        format!("too many connections for database \"{}\" (53300)", site.db)
    );
    let fix = hint(&report, "postgres.connect");
    assert!(fix.contains(&format!("ALTER DATABASE \"{}\" CONNECTION LIMIT -1;", site.db)), "{fix}");
    assert!(!fix.contains("max_connections"), "{fix}");
    site.paste(statement(fix, "ALTER DATABASE"));
    assert_let_in(&site);
}

#[test]
fn a_database_closed_to_connections_is_allow_connections_true() {
    let site = Site::new("no_connections");
    site.paste(&format!("ALTER DATABASE \"{}\" ALLOW_CONNECTIONS false", site.db));
    let report = assert_refused(&site, "55000");
    assert_eq!(
        message(&report, "postgres.connect"),
        format!("database \"{}\" is not currently accepting connections (55000)", site.db)
    );
    let fix = hint(&report, "postgres.connect");
    assert!(fix.contains(&format!("ALTER DATABASE \"{}\" ALLOW_CONNECTIONS true;", site.db)), "{fix}");
    site.paste(statement(fix, "ALTER DATABASE"));
    assert_let_in(&site);
}

#[test]
fn a_role_without_login_is_alter_role_login_not_pg_hba() {
    let site = Site::new("nologin");
    site.paste(&format!("ALTER ROLE \"{}\" NOLOGIN", site.role));
    let report = assert_refused(&site, "28000");
    assert_eq!(
        message(&report, "postgres.connect"),
        format!("role \"{}\" is not permitted to log in (28000)", site.role)
    );
    let fix = hint(&report, "postgres.connect");
    assert!(!fix.contains("pg_hba"), "{fix}");
    assert_eq!(statement(fix, "ALTER ROLE"), format!("ALTER ROLE \"{}\" LOGIN;", site.role));
    site.paste(statement(fix, "ALTER ROLE"));
    assert_let_in(&site);
}

#[test]
fn an_expired_password_is_named_as_a_possibility_with_the_catalog_read_and_its_fix() {
    let site = Site::new("expired_password");
    site.paste(&format!("ALTER ROLE \"{}\" VALID UNTIL '2001-01-01'", site.role));
    // PostgreSQL tells the client only "password authentication failed", for a
    // wrong password and an expired one alike (its log says which).
    let report = assert_refused(&site, "28P01");
    assert_eq!(
        message(&report, "postgres.connect"),
        format!("password authentication failed for user \"{}\" (28P01)", site.role)
    );
    assert!(site.pg.log().contains("has an expired password"), "the server knew why");
    let fix = hint(&report, "postgres.connect");
    assert!(
        fix.starts_with("check the password in DATABASE_URL; if it is right, the role's password has expired"),
        "{fix}"
    );
    let read = statement(fix, "SELECT rolvaliduntil");
    assert_eq!(read, format!("SELECT rolvaliduntil FROM pg_roles WHERE rolname = '{}';", site.role));
    assert!(site.pg.sql("postgres", read).starts_with("2001-01-01"), "the catalog read shows it");
    site.paste(statement(fix, "ALTER ROLE"));
    assert_let_in(&site);
    // The password itself never appears.
    assert!(!check(&report, "postgres.connect").to_string().contains(PASSWORD));
}

#[test]
fn a_password_that_expires_in_days_is_named_while_the_api_still_gets_in() {
    let site = Site::new("expiring_password");
    let until = site.pg.sql("postgres", "SELECT (now() + interval '3 days')::text");
    site.paste(&format!("ALTER ROLE \"{}\" VALID UNTIL '{until}'", site.role));
    let dir = tempfile::tempdir().expect("tempdir");
    let run = || {
        let mut cmd = diag(dir.path());
        cmd.env("DATABASE_URL", site.url()).args([
            "--env",
            "production",
            "--format",
            "json",
            "--only",
            "postgres.connect,postgres.settings",
        ]);
        json_run(&mut cmd).1
    };
    let report = run();
    assert_status(&report, "postgres.connect", "pass");
    assert_status(&report, "postgres.settings", "warn");
    let msg = message(&report, "postgres.settings");
    assert!(
        msg.starts_with(&format!("role \"{}\"'s password expires in 2days 23h", site.role))
            && msg
                .ends_with("from then on every login of the API fails with 28P01 (\"password authentication failed\")"),
        "{msg}"
    );
    let fix = hint(&report, "postgres.settings");
    site.paste(statement(fix, "ALTER ROLE"));
    assert_status(&run(), "postgres.settings", "pass");
}
