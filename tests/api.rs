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
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::api::{ApiOptions, Route, StandIn};
use crate::support::cmd::{assert_hints_paste, assert_status, check, diag, hint, json_run, message};
use crate::support::redis::RedisServer;
use crate::support::site::ApiSite;
use crate::support::tarpit::Tarpit;
use crate::support::tls::TestCa;

/// The API's JWT secret (and this environment's, unless a test says otherwise).
const JWT_SECRET: &str = "S3ntinel-jwt-secret-of-the-api-0123456789";
const GHOST: &str = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
const ALL: &str = "api.reachable,api.session_create";

/// A MockMate database used by the API's own role ([`ApiSite`]) — the stand-in
/// API and the binary both connect as it — which may also take a credit (the
/// fixed route does) and delete a session (the probe's clean-up); a Redis of
/// its own (so DBSIZE is this test's); a directory to run in.
struct Site {
    app: ApiSite,
    redis: RedisServer,
    dir: tempfile::TempDir,
}

impl std::ops::Deref for Site {
    type Target = ApiSite;
    fn deref(&self) -> &ApiSite {
        &self.app
    }
}

impl Site {
    fn new(name: &str) -> Site {
        let app = ApiSite::new(name);
        app.sql(&format!(
            "GRANT UPDATE (credits) ON users TO \"{r}\"; GRANT DELETE ON sessions TO \"{r}\"",
            r = app.role
        ));
        Site { app, redis: RedisServer::start(), dir: tempfile::tempdir().expect("tempdir") }
    }

    /// The stand-in API on this site's database (as its role) and Redis.
    fn api(&self, route: Route, tweak: impl FnOnce(&mut ApiOptions)) -> StandIn {
        let mut options = ApiOptions::new(route, &self.url(), JWT_SECRET);
        options.redis_url = Some(self.redis.url());
        tweak(&mut options);
        StandIn::start(&options)
    }

    fn state(&self, user: &str) -> State {
        let sessions = self.sql("SELECT count(*) FROM sessions").parse().expect("a count");
        let credits = self.sql(&format!("SELECT coalesce((SELECT credits FROM users WHERE id = '{user}'), -1)"));
        let dbsize = self.redis.cli(&["DBSIZE"]).parse().expect("DBSIZE");
        State { sessions, credits: credits.parse().expect("credits"), dbsize }
    }

    /// The binary with this site's environment (`env` over it), `--format json`;
    /// every SQL statement in a hint pastes into psql whole.
    fn run(&self, env: &[(&str, &str)], args: &[&str]) -> (i32, Value) {
        let mut cmd = self.cmd(env);
        cmd.args(["--env", "production", "--format", "json"]).args(args);
        let (code, report) = json_run(&mut cmd);
        assert_hints_paste(&report);
        (code, report)
    }

    fn cmd(&self, env: &[(&str, &str)]) -> assert_cmd::Command {
        let mut cmd = diag(self.dir.path());
        cmd.env("DATABASE_URL", self.url()).env("REDIS_URL", self.redis.url()).env("JWT_SECRET", JWT_SECRET);
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
fn an_api_that_is_down_is_one_finding_api_reachable_s() {
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
    // It runs after api.reachable, reads that the API did not answer at all,
    // and defers to it without asking again (against a hung API, a second
    // deadline).
    assert_status(&report, "api.session_create", "skip");
    assert_eq!(
        message(&report, "api.session_create"),
        "the API did not answer (see api.reachable): no session was requested"
    );
    assert_eq!(check(&report, "api.session_create")["see"], "api.reachable");
}

/// Warnings of api.reachable that are not "the API cannot be reached" do not
/// stop the incident check (a 404 health route here).
#[test]
fn a_missing_health_route_warns_and_the_session_is_still_created_and_checked() {
    let site = Site::new("api_health_404");
    let api = site.api(Route::Before, |o| o.no_health = true);
    let before = site.state(GHOST);
    let (_, report) = site.run(&[], &["--only", ALL, "--allow-writes", "--user-id", GHOST, "--api-url", &api.url]);
    assert_status(&report, "api.reachable", "warn");
    assert_status(&report, "api.session_create", "fail");
    assert_eq!(details(&report, "api.session_create")["incident"], true, "{report:#}");
    assert_eq!(report["options"]["api_url"], api.url.as_str());
    assert_eq!(site.state(GHOST), before, "{}", api.log());
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
    // The write probe does not wait out a second --timeout against the same silence.
    let (_, report) =
        site.run(&[], &["--only", ALL, "--allow-writes", "--user-id", GHOST, "--timeout", "1s", "--api-url", &api.url]);
    assert_status(&report, "api.session_create", "skip");
    assert_eq!(check(&report, "api.session_create")["see"], "api.reachable");

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

    // Node reads NODE_EXTRA_CA_CERTS from its own environment at start only: in
    // .env.production it does nothing for the API, and nothing here either.
    std::fs::write(site.dir.path().join(".env.production"), format!("NODE_EXTRA_CA_CERTS={ca_path}\n"))
        .expect("write .env.production");
    let (_, report) = site.run(&[], &["--only", "api.reachable", "--api-url", &api.url]);
    assert_status(&report, "api.reachable", "fail");
    let ignored = "NODE_EXTRA_CA_CERTS is set in .env.production, but Node ignores NODE_EXTRA_CA_CERTS from .env files";
    let d = details(&report, "api.reachable");
    assert_eq!(d["roots"], "Mozilla's roots (as Node ships them)");
    assert!(d["note"].as_str().is_some_and(|n| n.starts_with(ignored)), "{d:#}");
    assert!(
        report["notes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n.as_str().is_some_and(|n| n.starts_with(ignored)))),
        "{report:#}"
    );
}

// ---- what the probe may send, and when -----------------------------------------

#[test]
fn the_token_is_never_sent_over_plain_http_to_another_machine() {
    let site = Site::new("api_plain_http");
    let ada = site.ada();
    // TEST-NET-1: nothing is ever sent there (api.reachable would try, so it is skipped).
    let args = ["--only", "api.session_create", "--skip", "api.reachable", "--allow-writes", "--user-id", &ada];
    let (_, report) = site.run(&[], &[&args[..], &["--api-url", "http://192.0.2.10:3000", "--timeout", "2s"]].concat());
    assert_status(&report, "api.session_create", "fail");
    assert_eq!(
        message(&report, "api.session_create"),
        "not sending a token signed with JWT_SECRET over plain HTTP to 192.0.2.10:3000: anyone on the way could \
         read it and act as the user for as long as it is valid"
    );
    assert_eq!(
        hint(&report, "api.session_create"),
        "use the API's https:// address in --api-url, or run mockmate-diag on the API's host against \
         http://127.0.0.1:$PORT"
    );
}

#[test]
fn without_time_to_check_and_undo_it_the_request_is_not_sent() {
    let site = Site::new("api_no_time");
    let api = site.api(Route::Fixed, |_| {});
    let ada = site.ada();
    let before = site.state(&ada);
    // 500ms − 100ms (ends before the engine's backstop) − 300ms (the look-up and the
    // clean-up's reserve) leaves less than the 150ms a request is worth sending with.
    let (_, report) = site.run(
        &[],
        &[
            "--only",
            "api.session_create",
            "--allow-writes",
            "--user-id",
            &ada,
            "--api-url",
            &api.url,
            "--timeout",
            "500ms",
        ],
    );
    assert_status(&report, "api.session_create", "fail");
    let msg = message(&report, "api.session_create");
    assert!(msg.starts_with("the request was not sent: ") && msg.ends_with("keeps 300ms of it"), "{msg}");
    assert!(!api.requests().iter().any(|r| r.starts_with("POST")), "{}", api.log());
    assert_eq!(site.state(&ada), before);
}

/// The request went out, the API created the session and never answered: the
/// look-up and the clean-up still run, inside --timeout (not cut by the
/// engine), and the marker's DELETE is given in case it creates one later.
#[test]
fn an_api_that_creates_then_hangs_is_cleaned_up_in_time_and_the_marker_delete_is_given() {
    let site = Site::new("api_create_hang");
    let api = site.api(Route::Fixed, |o| o.create_then_hang = true);
    let ada = site.ada();
    let before = site.state(&ada);
    let (_, report) = site.run(
        &[],
        &[
            "--only",
            "api.session_create",
            "--allow-writes",
            "--user-id",
            &ada,
            "--api-url",
            &api.url,
            "--timeout",
            "3s",
        ],
    );
    assert_status(&report, "api.session_create", "fail");
    let msg = message(&report, "api.session_create");
    assert!(msg.starts_with("POST /api/sessions/create: timed out after "), "{msg}");
    assert!(msg.contains("waiting for the API's answer to POST /api/sessions/create"), "{msg}");
    let d = details(&report, "api.session_create");
    let id = d["session_id"].as_str().expect("the session found by its marker");
    assert!(msg.ends_with(&format!("; undone: deleted row {id}, credits back to 10, DEL session:{id}")), "{msg}");
    assert_eq!(d["found_by"], "job title");
    let marker = d["marker"].as_str().expect("the marker");
    assert!(
        hint(&report, "api.session_create").contains(&format!(
            "if the API creates the session after all: DELETE FROM \"sessions\" WHERE user_id = '{ada}' AND job_title = '{marker}';"
        )),
        "{report:#}"
    );
    assert_eq!(site.state(&ada), before, "{}", api.log());
}

/// An API that answers a user's existing session (an idempotent create): that
/// session and its Redis key are a real user's, and stay.
#[test]
fn an_existing_session_the_api_answers_with_is_left_alone() {
    let site = Site::new("api_idempotent");
    let api = site.api(Route::Fixed, |o| o.idempotent = true);
    let ada = site.ada();
    let theirs = site.sql(&format!(
        "INSERT INTO sessions (user_id, job_title, difficulty, duration, session_type) \
         VALUES ('{ada}', 'Backend engineer', 'intermediate', 30, 'technical') RETURNING id"
    ));
    let key = format!("session:{theirs}");
    site.redis.cli(&["SET", &key, r#"{"job_title":"Backend engineer"}"#]);
    let before = site.state(&ada);
    let (_, report) = create(&site, &api, &ada);
    assert_status(&report, "api.session_create", "warn");
    let msg = message(&report, "api.session_create");
    assert!(
        msg.starts_with(&format!(
            "the API answered 201 Created with session {theirs}, which this request did not create (its job title \
             is not the probe's 'mockmate-diag probe "
        )),
        "{msg}"
    );
    assert!(
        msg.ends_with(&format!(
            "; left alone: session {theirs} (the answer names it, but its job title is not this request's marker), \
             Redis key {key} (not shown to be this request's)"
        )),
        "{msg}"
    );
    assert_eq!(site.state(&ada), before);
    assert_eq!(site.sql(&format!("SELECT count(*) FROM sessions WHERE id = '{theirs}'")), "1");
    assert_eq!(site.redis.cli(&["EXISTS", &key]), "1");
}

/// Someone else takes two credits while the request runs: setting the credits
/// back to what they were would undo that; the probe leaves them, and says so.
#[test]
fn credits_someone_else_changed_during_the_request_are_not_set_back() {
    let site = Site::new("api_other_change");
    let api = site.api(Route::Fixed, |o| o.other_change = Some(-2));
    let ada = site.ada();
    let before = site.state(&ada);
    let (_, report) = create(&site, &api, &ada);
    assert_status(&report, "api.session_create", "fail");
    let msg = message(&report, "api.session_create");
    assert!(
        msg.ends_with(&format!(
            "clean-up failed: user {ada}'s credits changed 10 → 7 during the request, not (only) by the transaction \
             that created this request's session: not set back"
        )),
        "{msg}"
    );
    assert!(msg.contains("undone: deleted row "), "{msg}");
    assert_eq!(
        hint(&report, "api.session_create"),
        format!(
            "set user {ada}'s credits back by what this request took, if anything (they were 10 before it, 7 after it)"
        )
    );
    assert_eq!(site.state(&ada), State { credits: 7, ..before });
}

/// A route other than the runbook's answers 404: the message names the request
/// as sent, and the check (declared by hand) runs after its prediction.
#[test]
fn a_404_names_the_request_that_was_sent() {
    let site = Site::new("api_no_route");
    let api = site.api(Route::Fixed, |_| {});
    let ada = site.ada();
    let manifest = site.dir.path().join("create.toml");
    std::fs::write(
        &manifest,
        "[[check]]\nid = \"custom.create\"\nkind = \"api.session_create\"\npath = \"/api/nope\"\n",
    )
    .expect("write manifest");
    let manifest = manifest.display().to_string();
    let base = format!("{}/v2", api.url);
    let (_, report) = site.run(
        &[],
        &["--only", "custom.create", "--allow-writes", "--user-id", &ada, "--api-url", &base, "--checks", &manifest],
    );
    assert_status(&report, "custom.create", "fail");
    let msg = message(&report, "custom.create");
    assert!(msg.starts_with("the API answered POST /v2/api/nope with 404 Not Found: "), "{msg}");
    assert!(msg.ends_with("(the dry run predicted 201 (the dry run created the session))"), "{msg}");
    assert_status(&report, "postgres.session_insert", "pass");
}

/// The interrupt says what the API check was waiting on, as it does for the
/// other services.
#[test]
fn an_interruption_names_what_the_api_check_was_waiting_on() {
    let site = Site::new("api_interrupted");
    let api = site.api(Route::Fixed, |o| o.hang = true);
    let child = Command::new(assert_cmd::cargo::cargo_bin("mockmate-diag"))
        .args(["--env", "production", "--format", "json", "--only", "api.reachable", "--timeout", "60s"])
        .args(["--api-url", &api.url])
        .env_clear()
        .current_dir(site.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while !api.requests().iter().any(|r| r == "GET /health") {
        assert!(start.elapsed() < Duration::from_secs(20), "never asked the API: {}", api.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(kill.success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130));
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let c = check(&report, "api.reachable");
    assert_eq!(c["status"], "skip", "{c:#}");
    let msg = c["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with("interrupted after ") && msg.ends_with("s waiting for the API's answer to GET /health"),
        "{c:#}"
    );
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

/// A secret of the environment the API quotes, placed across the 200th
/// character of the quote: masked whole before the quote is cut, so no
/// half of it ("S3ntinelL…") is left for the output stream to miss.
#[test]
fn a_secret_the_api_quotes_across_the_cut_is_masked_whole() {
    const DB_PASSWORD: &str = "S3ntinelLongDbPassw0rd";
    let site = Site::new("api_leak");
    let api = site.api(Route::Fixed, |o| o.leak = Some(("DB_PASSWORD".into(), DB_PASSWORD.into())));
    let ada = site.ada();
    let args = ["--only", "api.session_create", "--allow-writes", "--user-id", &ada, "--api-url", &api.url];
    let (_, report) = site.run(&[("DB_PASSWORD", DB_PASSWORD)], &args);
    let msg = message(&report, "api.session_create");
    // 26 + 166 + the mask: under 200, so nothing is cut at all.
    assert!(
        msg.contains(&format!("500 Internal Server Error: Failed to create session: {}****", "x".repeat(166))),
        "{msg}"
    );
    let all = every_format(&site, &[("DB_PASSWORD", DB_PASSWORD)], &args);
    assert!(all.contains("Failed to create session: xxx"), "{all}");
    assert!(!all.contains("S3ntinel"), "a part of the secret leaked:\n{all}");
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
        ("DATABASE_URL", site.url()),
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
