//! Asking the API itself (issue 22): `api.reachable` and `api.session_create`
//! against a real stand-in API (tests/node/api/server.js: Express, node-postgres,
//! node-redis, jsonwebtoken) on the harness's PostgreSQL and Redis — the
//! runbook's "Before" route and its fix, then broken the ways production
//! breaks: a wrong JWT_SECRET, a 500, down, hung, an untrusted certificate, a
//! 201 without an id.
//!
//! "Leaves nothing behind" is read from the servers after each run: the row
//! count of `sessions`, Redis `DBSIZE` and the user's credits.

use std::path::Path;

use serde_json::Value;

use crate::support::api::{ApiOptions, Route, StandIn};
use crate::support::cmd::{assert_status, check, diag, hint, json_run, message};
use crate::support::pg::PgServer;
use crate::support::redis::RedisServer;
use crate::support::tarpit::Tarpit;
use crate::support::tls::TestCa;

/// The API's JWT secret (and this environment's, unless a test says otherwise).
const JWT_SECRET: &str = "S3ntinel-jwt-secret-of-the-api-0123456789";
const GHOST: &str = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
const ALL: &str = "api.reachable,api.session_create";

/// A MockMate database, a Redis of its own (so DBSIZE is this test's), and the
/// environment the binary runs with.
struct Site {
    pg: &'static PgServer,
    db: String,
    url: String,
    redis: RedisServer,
    dir: tempfile::TempDir,
}

impl Site {
    fn new(name: &str) -> Site {
        let pg = PgServer::shared();
        let db = pg.create_mockmate_db(name);
        let url = pg.superuser_url(&db);
        Site { pg, db, url, redis: RedisServer::start(), dir: tempfile::tempdir().expect("tempdir") }
    }

    fn sql(&self, sql: &str) -> String {
        self.pg.sql(&self.db, sql)
    }

    /// The stand-in API on this site's database and Redis.
    fn api(&self, route: Route, tweak: impl FnOnce(&mut ApiOptions)) -> StandIn {
        let mut options = ApiOptions::new(route, &self.url, JWT_SECRET);
        options.redis_url = Some(self.redis.url());
        tweak(&mut options);
        StandIn::start(&options)
    }

    /// The seeded active user with 10 credits.
    fn ada(&self) -> String {
        self.sql("SELECT id FROM users WHERE email = 'ada@example.com'")
    }

    fn user(&self, active: bool, credits: i32) -> String {
        self.sql(&format!(
            "INSERT INTO users (email, credits, is_active, is_verified) \
             VALUES ('u' || gen_random_uuid() || '@example.com', {credits}, {active}, true) RETURNING id"
        ))
    }

    fn state(&self, user: &str) -> State {
        let sessions = self.sql("SELECT count(*) FROM sessions").parse().expect("a count");
        let credits = self.sql(&format!("SELECT coalesce((SELECT credits FROM users WHERE id = '{user}'), -1)"));
        let dbsize = self.redis.cli(&["DBSIZE"]).parse().expect("DBSIZE");
        State { sessions, credits: credits.parse().expect("credits"), dbsize }
    }

    /// The binary with this site's environment (`extra` over it), `--format json`.
    fn run(&self, env: &[(&str, &str)], args: &[&str]) -> (i32, Value) {
        let mut cmd = self.cmd(env);
        cmd.args(["--env", "production", "--format", "json"]).args(args);
        json_run(&mut cmd)
    }

    fn cmd(&self, env: &[(&str, &str)]) -> assert_cmd::Command {
        let mut cmd = diag(self.dir.path());
        cmd.env("DATABASE_URL", &self.url).env("REDIS_URL", self.redis.url()).env("JWT_SECRET", JWT_SECRET);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    sessions: i64,
    credits: i64,
    dbsize: i64,
}

fn details<'a>(report: &'a Value, id: &str) -> &'a Value {
    &check(report, id)["details"]
}

/// The session creation with everything it compares: the dry run, the API.
fn create(site: &Site, api: &StandIn, user: &str) -> (i32, Value) {
    site.run(
        &[],
        &[
            "--only",
            "postgres.session_insert,api.session_create",
            "--allow-writes",
            "--user-id",
            user,
            "--api-url",
            &api.url,
        ],
    )
}

// ---- nothing configured, read-only -------------------------------------------

#[test]
fn without_an_api_address_both_checks_skip_saying_how_to_enable_them() {
    let site = Site::new("api_unconfigured");
    let (_, report) = site.run(&[], &["--only", ALL, "--allow-writes", "--user-id", GHOST]);
    for id in ["api.reachable", "api.session_create"] {
        assert_status(&report, id, "skip");
    }
    assert_eq!(
        message(&report, "api.reachable"),
        "no API to ask: set API_URL (or pass --api-url http://host:port), or PORT for an API on this machine"
    );
}

#[test]
fn a_read_only_run_asks_the_health_route_only_found_by_port_on_this_machine() {
    let site = Site::new("api_read_only");
    let api = site.api(Route::Fixed, |_| {});
    let port = api.port.to_string();
    let before = site.state(&site.ada());
    let (code, report) = site.run(&[("PORT", &port)], &["--only", ALL]);
    assert_status(&report, "api.reachable", "pass");
    let msg = message(&report, "api.reachable");
    assert!(
        msg.starts_with(&format!("the API at http://127.0.0.1:{port} answers GET /health with 200 OK in ")),
        "{msg}"
    );
    assert!(msg.ends_with("ms (version 1.4.2-standin)"), "{msg}");
    assert_eq!(details(&report, "api.reachable")["source"], "PORT");
    assert_status(&report, "api.session_create", "skip");
    assert_eq!(
        message(&report, "api.session_create"),
        "read-only run; pass --allow-writes and --user-id to create a session through the API (deleted afterwards)"
    );
    assert_eq!(code, 0);
    assert_eq!(site.state(&site.ada()), before);
}

#[test]
fn a_health_route_the_api_does_not_have_warns_to_set_health_path() {
    let site = Site::new("api_no_health");
    let api = site.api(Route::Fixed, |_| {});
    let manifest = site.dir.path().join("health.toml");
    std::fs::write(
        &manifest,
        "[[check]]\nid = \"custom.health\"\nkind = \"api.reachable\"\nhealth_path = \"/api/health\"\n",
    )
    .expect("write manifest");
    let (_, report) =
        site.run(&[], &["--only", "custom.health", "--api-url", &api.url, "--checks", &manifest.display().to_string()]);
    assert_status(&report, "custom.health", "warn");
    assert!(message(&report, "custom.health").contains("GET /api/health is 404 Not Found"), "{report:#}");
    assert!(hint(&report, "custom.health").contains("health_path"));
}

// ---- the fixed route ---------------------------------------------------------

#[test]
fn healthy_the_api_creates_and_stores_a_session_and_everything_is_put_back() {
    let site = Site::new("api_healthy");
    let api = site.api(Route::Fixed, |_| {});
    let ada = site.ada();
    let before = site.state(&ada);
    let (code, report) = create(&site, &api, &ada);
    assert_status(&report, "postgres.session_insert", "pass");
    assert_status(&report, "api.session_create", "pass");
    assert_eq!(code, 0, "{report:#}");
    let msg = message(&report, "api.session_create");
    let d = details(&report, "api.session_create");
    let id = d["session_id"].as_str().expect("a session id");
    assert!(msg.starts_with(&format!("the API created session {id} for user {ada} (201 Created in ")), "{msg}");
    assert!(msg.contains(&format!("and stored it: the row in sessions and session:{id} in Redis")), "{msg}");
    assert!(msg.ends_with(&format!("; undone: deleted row {id}, credits back to 10, DEL session:{id}")), "{msg}");
    assert_eq!(d["created"][1], format!("credits of user {ada}: 10 → 9"));
    assert_eq!(d["predicted"], "201 (the dry run created the session)");
    assert_eq!(d["found_by"], "id");
    assert_eq!(site.state(&ada), before, "{}", api.log());
}

#[test]
fn unknown_and_inactive_users_are_refused_with_400_as_predicted() {
    let site = Site::new("api_unknown_user");
    let api = site.api(Route::Fixed, |_| {});
    let inactive = site.user(false, 10);
    for user in [GHOST, inactive.as_str()] {
        let before = site.state(user);
        let (_, report) = create(&site, &api, user);
        assert_status(&report, "postgres.session_insert", "fail");
        assert_status(&report, "api.session_create", "pass");
        assert_eq!(
            message(&report, "api.session_create"),
            format!(
                "the API refused as predicted: 400 Bad Request INVALID_USER_REFERENCE for user {user} \
                 (Invalid user reference or associated data not found: The user account may not exist or be inactive)"
            )
        );
        assert_eq!(details(&report, "api.session_create")["api_code"], "INVALID_USER_REFERENCE");
        assert_eq!(site.state(user), before);
    }
}

#[test]
fn a_user_without_credits_is_refused_with_403_as_predicted() {
    let site = Site::new("api_no_credits");
    let api = site.api(Route::Fixed, |_| {});
    let broke = site.user(true, 0);
    let before = site.state(&broke);
    let (_, report) = create(&site, &api, &broke);
    assert_status(&report, "postgres.session_insert", "warn");
    assert_status(&report, "api.session_create", "pass");
    assert_eq!(
        message(&report, "api.session_create"),
        format!(
            "the API refused as predicted: 403 Forbidden INSUFFICIENT_CREDITS for user {broke} (Insufficient credits)"
        )
    );
    assert_eq!(site.state(&broke), before);
}

// ---- the incident ------------------------------------------------------------

#[test]
fn the_before_route_answers_201_for_an_unknown_user_and_stores_nothing_the_incident_named() {
    let site = Site::new("api_before_route");
    let api = site.api(Route::Before, |_| {});
    let before = site.state(GHOST);
    let (code, report) = create(&site, &api, GHOST);
    assert_eq!(code, 1);
    assert_status(&report, "api.session_create", "fail");
    let msg = message(&report, "api.session_create");
    let d = details(&report, "api.session_create");
    let id = d["session_id"].as_str().expect("the id the API answered with");
    assert!(
        msg.starts_with(&format!(
            "the API answers 201 Created and stores nothing: no row {id} in sessions for user {GHOST}; \
             Redis has session:{id}, so the desktop app gets \"Session not found\" — \
             the masked failure of production-session-fix.md (the dry run predicted 400 INVALID_USER_REFERENCE)"
        )),
        "{msg}"
    );
    assert!(msg.ends_with(&format!("; undone: DEL session:{id}")), "{msg}");
    assert!(hint(&report, "api.session_create").starts_with("deploy the fixed routes/sessions.js"));
    assert_eq!(d["incident"], true);
    // The cache entry the API wrote for a session it never stored is gone too.
    assert_eq!(site.state(GHOST), before, "{}", api.log());
}

#[test]
fn the_before_route_with_the_dry_run_skipped_is_judged_on_its_own() {
    let site = Site::new("api_before_alone");
    let api = site.api(Route::Before, |_| {});
    let (_, report) = site.run(
        &[],
        &[
            "--only",
            "api.session_create",
            "--skip",
            "postgres.session_insert",
            "--allow-writes",
            "--user-id",
            GHOST,
            "--api-url",
            &api.url,
        ],
    );
    assert_status(&report, "api.session_create", "fail");
    let msg = message(&report, "api.session_create");
    assert!(
        msg.contains(
            "the masked failure of production-session-fix.md (no prediction to compare: \
             postgres.session_insert was skipped (skipped by --skip))"
        ),
        "{msg}"
    );
}

// ---- broken ------------------------------------------------------------------

#[test]
fn a_wrong_jwt_secret_is_named_and_the_token_the_api_echoes_is_masked() {
    let site = Site::new("api_wrong_secret");
    let api = site.api(Route::Fixed, |_| {});
    let ada = site.ada();
    let other = "another-secret-of-this-environment-0123456789";
    let (_, report) = site.run(
        &[("JWT_SECRET", other)],
        &["--only", "api.session_create", "--allow-writes", "--user-id", &ada, "--api-url", &api.url],
    );
    assert_status(&report, "api.session_create", "fail");
    assert_eq!(
        message(&report, "api.session_create"),
        "the API rejected the token (401 Unauthorized: Invalid token ****: invalid signature): its JWT_SECRET \
         differs from this environment's, or it reads the user from other claims than id, userId, sub"
    );
    assert!(!report.to_string().contains("eyJ"), "a token leaked: {report:#}");
}

#[test]
fn a_500_fails_with_the_apis_words() {
    let site = Site::new("api_500");
    let api = site.api(Route::Fixed, |o| o.fail_create = true);
    let ada = site.ada();
    let before = site.state(&ada);
    let (_, report) = create(&site, &api, &ada);
    assert_status(&report, "api.session_create", "fail");
    assert_eq!(
        message(&report, "api.session_create"),
        format!(
            "the API failed to create a session for user {ada}: 500 Internal Server Error: Failed to create session: \
             Database not initialized though the dry run created one: the API's own code or configuration fails \
             (its log has the error)"
        )
    );
    assert_eq!(site.state(&ada), before);
}

#[test]
fn a_201_without_a_session_id_warns_and_the_session_is_found_by_its_job_title_and_removed() {
    let site = Site::new("api_no_id");
    let api = site.api(Route::Fixed, |o| o.no_id = true);
    let ada = site.ada();
    let before = site.state(&ada);
    let (_, report) = create(&site, &api, &ada);
    assert_status(&report, "api.session_create", "warn");
    let msg = message(&report, "api.session_create");
    assert!(
        msg.contains("but its answer has no session id (tried /session/id, /id, /data/id, /sessionId, /data/session/id): the desktop app cannot open it"),
        "{msg}"
    );
    assert_eq!(details(&report, "api.session_create")["found_by"], "job title");
    assert_eq!(site.state(&ada), before, "{report:#}");
}

#[test]
fn an_api_that_is_down_fails_reachable_and_the_write_is_never_attempted() {
    let site = Site::new("api_down");
    let port = crate::support::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (_, report) = site.run(&[("API_URL", &url)], &["--only", ALL, "--allow-writes", "--user-id", GHOST]);
    assert_status(&report, "api.reachable", "fail");
    assert_eq!(
        message(&report, "api.reachable"),
        format!("connection refused at 127.0.0.1:{port}: the API is not running there")
    );
    assert!(hint(&report, "api.reachable").contains("API_URL"));
    assert_status(&report, "api.session_create", "skip");
    assert_eq!(message(&report, "api.session_create"), "needs api.reachable, which failed");
}

#[test]
fn a_hung_api_costs_at_most_the_timeout_and_the_phase_is_named() {
    let site = Site::new("api_hung");
    let api = site.api(Route::Fixed, |o| o.hang = true);
    let (_, report) = site.run(&[], &["--only", "api.reachable", "--timeout", "1s", "--api-url", &api.url]);
    assert_status(&report, "api.reachable", "fail");
    assert_eq!(
        message(&report, "api.reachable"),
        format!("timed out after 1s waiting for the API's answer to GET /health at 127.0.0.1:{}", api.port)
    );
    assert_eq!(details(&report, "api.reachable")["phase"], "http");

    // A port that accepts TCP and never speaks TLS: the handshake is the phase.
    let tarpit = Tarpit::start();
    let url = format!("https://127.0.0.1:{}", tarpit.port);
    let (_, report) = site.run(&[], &["--only", "api.reachable", "--timeout", "1s", "--api-url", &url]);
    assert_eq!(
        message(&report, "api.reachable"),
        format!("timed out after 1s during the TLS handshake with the API at {}", tarpit.addr())
    );
    assert_eq!(details(&report, "api.reachable")["phase"], "tls");
}

#[test]
fn https_is_verified_as_node_verifies_it_and_node_extra_ca_certs_is_honoured() {
    let site = Site::new("api_tls");
    let ca = TestCa::generate(&site.dir.path().join("certs"));
    let api = site.api(Route::Fixed, |o| o.tls = Some(ca.clone()));
    let (_, report) = site.run(&[], &["--only", "api.reachable", "--api-url", &api.url]);
    assert_status(&report, "api.reachable", "fail");
    assert_eq!(
        message(&report, "api.reachable"),
        format!(
            "TLS handshake with the API at localhost:{} failed: certificate not trusted (unknown issuer)",
            api.port
        )
    );
    assert!(hint(&report, "api.reachable").contains("NODE_EXTRA_CA_CERTS"));
    assert_eq!(details(&report, "api.reachable")["roots"], "Mozilla's roots (as Node ships them)");

    let ca_path = ca.ca_cert.display().to_string();
    let (_, report) =
        site.run(&[("NODE_EXTRA_CA_CERTS", &ca_path)], &["--only", "api.reachable", "--api-url", &api.url]);
    assert_status(&report, "api.reachable", "pass");
    assert!(message(&report, "api.reachable").ends_with("(version 1.4.2-standin, TLSv1.3)"), "{report:#}");
    let d = details(&report, "api.reachable");
    assert_eq!(d["roots"], format!("Mozilla's roots (as Node ships them) + NODE_EXTRA_CA_CERTS {ca_path}"));
    assert!(d["days_left"].as_i64().is_some_and(|days| days > 14), "{d:#}");
}

// ---- secrets -----------------------------------------------------------------

/// Every format of one run, as files.
fn every_format(site: &Site, env: &[(&str, &str)], args: &[&str]) -> String {
    let dir = site.dir.path();
    let report = |name: &str| dir.join(name).display().to_string();
    let mut cmd = site.cmd(env);
    cmd.args(["--env", "production", "--format", "table", "--verbose"]).args(args);
    for (format, file) in [("json", "r.json"), ("markdown", "r.md"), ("junit", "r.xml")] {
        cmd.arg("--report").arg(format!("{format}={}", report(file)));
    }
    let out = cmd.output().expect("runs");
    let read = |name: &str| std::fs::read_to_string(Path::new(&report(name))).unwrap_or_default();
    format!(
        "{}{}{}{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        read("r.json"),
        read("r.md"),
        read("r.xml")
    )
}

#[test]
fn the_jwt_secret_the_api_token_and_the_minted_token_reach_no_output() {
    let site = Site::new("api_secrets");
    let api = site.api(Route::Fixed, |_| {});
    let ada = site.ada();
    // A minted token the API rejects and echoes back (a wrong secret here).
    let wrong = "S3ntinel-wrong-secret-9876543210-abcdefghij";
    let all = every_format(
        &site,
        &[("JWT_SECRET", wrong)],
        &["--only", ALL, "--allow-writes", "--user-id", &ada, "--api-url", &api.url],
    );
    assert!(all.contains("Invalid token ****"), "{all}");
    for leaked in [wrong, "eyJ"] {
        assert!(!all.contains(leaked), "{leaked} leaked:\n{all}");
    }
    // MOCKMATE_API_TOKEN wins over JWT_SECRET, and is masked wherever the API echoes it.
    let api_token = "S3ntinel-api-token-0123456789";
    let all = every_format(
        &site,
        &[("MOCKMATE_API_TOKEN", api_token)],
        &["--only", ALL, "--allow-writes", "--user-id", &ada, "--api-url", &api.url],
    );
    assert!(all.contains("rejected MOCKMATE_API_TOKEN"), "{all}");
    for leaked in [api_token, JWT_SECRET] {
        assert!(!all.contains(leaked), "{leaked} leaked:\n{all}");
    }
}

// ---- serve -------------------------------------------------------------------

#[test]
fn serve_asks_the_api_and_never_creates_a_session() {
    use crate::support::serve::{Serve, agent, get};
    let site = Site::new("api_serve");
    let api = site.api(Route::Fixed, |_| {});
    let ada = site.ada();
    let before = site.state(&ada);
    let envs = [
        ("DATABASE_URL", site.url.clone()),
        ("REDIS_URL", site.redis.url()),
        ("JWT_SECRET", JWT_SECRET.to_string()),
        ("API_URL", api.url.clone()),
        ("NODE_ENV", "production".to_string()),
    ];
    let serve = Serve::start(site.dir.path(), &envs, &["--env", "production"]);
    let reply = get(&agent(), &format!("http://127.0.0.1:{}/report", serve.port), &[]);
    let report: Value = serde_json::from_str(&reply.body).expect("JSON report");
    assert_status(&report, "api.reachable", "pass");
    assert_status(&report, "api.session_create", "skip");
    assert_eq!(site.state(&ada), before);
}
