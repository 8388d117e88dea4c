//! The `redis.*` checks as an operator meets them: the real binary against real
//! redis-server processes, broken the ways production breaks them. Redis only
//! caches interview sessions, so every problem is a warning unless a manifest
//! raises it.

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use crate::support::cmd::{assert_status, check, diag, hint, json_run, message};
use crate::support::pg::PgServer;
use crate::support::redis::{RedisServer, free_port};
use crate::support::tarpit::Tarpit;
use serde_json::Value;

const REDIS_IDS: &str = "redis.connect,redis.writable,redis.permissions,redis.memory,redis.persistence,redis.roundtrip";
const READ_ONLY_IDS: [&str; 5] =
    ["redis.connect", "redis.writable", "redis.permissions", "redis.memory", "redis.persistence"];
/// A password that must never be printed, in any format.
const SENTINEL: &str = "sentinel-Rk7q-redis-secret";

/// Runs the `redis.*` checks with REDIS_URL = `url`, `env` and `args`, in an empty directory.
fn run_redis(url: &str, env: &[(&str, &str)], args: &[&str]) -> (i32, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = diag(dir.path());
    cmd.env("REDIS_URL", url).envs(env.iter().copied());
    cmd.args(["--format", "json", "--only", REDIS_IDS]).args(args);
    json_run(&mut cmd)
}

/// The checks after `redis.connect` are skipped because it did not pass.
#[track_caller]
fn assert_rest_skipped(report: &Value) {
    for id in ["redis.writable", "redis.permissions", "redis.memory", "redis.persistence"] {
        assert_status(report, id, "skip");
        assert_eq!(message(report, id), "needs redis.connect, which warned");
    }
}

/// `INFO commandstats` as command → calls.
fn command_calls(server: &RedisServer) -> BTreeMap<String, u64> {
    server
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|l| l.trim().strip_prefix("cmdstat_")?.split_once(":calls="))
        .map(|(cmd, rest)| (cmd.to_owned(), rest.split(',').next().and_then(|n| n.parse().ok()).unwrap_or(0)))
        .collect()
}

#[test]
fn healthy_redis_passes_and_the_round_trip_waits_for_allow_writes() {
    let server = RedisServer::shared();
    let (code, report) = run_redis(&server.url(), &[], &[]);
    assert_eq!(code, 0, "{report:#}");
    for id in READ_ONLY_IDS {
        assert_status(&report, id, "pass");
    }
    assert_status(&report, "redis.roundtrip", "skip");
    assert_eq!(message(&report, "redis.roundtrip"), "read-only run; pass --allow-writes");

    let details = &check(&report, "redis.connect")["details"];
    assert_eq!(details["version"].as_str(), server.info_field("redis_version").as_deref());
    assert_eq!((details["role"].as_str(), details["mode"].as_str()), (Some("master"), Some("standalone")));
    assert_eq!(details["tls"], false);
    assert!(details["latency_p50_ms"].as_f64() <= details["latency_p99_ms"].as_f64(), "{details}");
    let version = details["version"].as_str().unwrap_or_default();
    let expected = format!("Redis {version} (standalone, master) at {}, unencrypted, PING p50 ", server.addr());
    assert!(message(&report, "redis.connect").starts_with(&expected), "{report:#}");
    assert_eq!(check(&report, "redis.memory")["details"]["maxmemory"], 0);
    assert_eq!(check(&report, "redis.persistence")["details"]["persistence"], "off");
}

#[test]
fn redis_down_warns_that_caching_is_disabled_and_exits_0_or_1_with_fail_on_warn() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let (code, report) = run_redis(&url, &[], &[]);
    assert_eq!(code, 0, "Redis down is non-fatal: {report:#}");
    assert_eq!(report["summary"]["status"], "warn");
    assert_status(&report, "redis.connect", "warn");
    assert_eq!(message(&report, "redis.connect"), format!("connection refused at 127.0.0.1:{port}"));
    assert!(hint(&report, "redis.connect").contains("interview sessions still work, but caching is disabled"));
    assert_rest_skipped(&report);

    let (code, _) = run_redis(&url, &[], &["--fail-on", "warn"]);
    assert_eq!(code, 1);
}

#[test]
fn no_password_against_requirepass_warns_noauth() {
    let server = RedisServer::builder().requirepass(SENTINEL).start();
    let (code, report) = run_redis(&server.url_as(None, None), &[], &[]);
    assert_eq!(code, 0);
    assert_status(&report, "redis.connect", "warn");
    assert_eq!(message(&report, "redis.connect"), "NOAUTH: the server requires a password and REDIS_URL has none");
    // Printed as is: the placeholder must not look like a (masked) password.
    let expected = format!("set the password in REDIS_URL as redis://:<password>@{}; non-fatal", server.addr());
    assert!(hint(&report, "redis.connect").starts_with(&expected), "{report:#}");
    assert_rest_skipped(&report);
}

/// Issue 27: `REDIS_URL=redis://<password>@host` (the colon forgotten) is one
/// finding, env.redis_url's; the NOAUTH it causes defers to it.
#[test]
fn a_password_written_as_the_user_name_is_one_finding() {
    let server = RedisServer::builder().requirepass(SENTINEL).start();
    let url = format!("redis://{SENTINEL}@{}", server.addr());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = diag(dir.path());
    cmd.env("REDIS_URL", &url).args(["--format", "json", "--only", &format!("env.redis_url,{REDIS_IDS}")]);
    let (code, report) = json_run(&mut cmd);
    assert_eq!(code, 0, "Redis is non-fatal: {report:#}");
    assert_status(&report, "env.redis_url", "warn");
    assert!(hint(&report, "env.redis_url").contains("redis://:<password>@host"), "{report:#}");
    assert_status(&report, "redis.connect", "skip");
    assert_eq!(check(&report, "redis.connect")["see"], "env.redis_url", "{report:#}");
    assert!(message(&report, "redis.connect").starts_with("see env.redis_url: NOAUTH"), "{report:#}");
    assert_eq!(message(&report, "redis.writable"), "needs redis.connect, which was skipped (see env.redis_url)");
    let warned: Vec<&str> = report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "warn")
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(warned, ["env.redis_url"]);
    assert!(!report.to_string().contains(SENTINEL), "the password is never printed");
}

#[test]
fn wrong_password_warns_wrongpass_and_is_never_printed_in_any_format() {
    let server = RedisServer::builder().requirepass("the-right-one").start();
    let url = server.url_as(None, Some(SENTINEL));
    let (_, report) = run_redis(&url, &[], &[]);
    assert_status(&report, "redis.connect", "warn");
    assert!(message(&report, "redis.connect").starts_with("WRONGPASS: invalid username-password pair"), "{report:#}");

    for format in ["table", "json", "markdown", "junit"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = diag(dir.path())
            .env("REDIS_URL", &url)
            .args(["--format", format, "--only", REDIS_IDS])
            .output()
            .expect("runs");
        let everything = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(everything.contains("WRONGPASS"), "{format}: {everything}");
        assert!(!everything.contains(SENTINEL), "{format} printed the password:\n{everything}");
    }
}

#[test]
fn acl_user_connects_as_itself_and_a_wrong_acl_password_warns() {
    let server = RedisServer::builder().requirepass("default-pw").user("mockmate", SENTINEL).start();
    let (code, report) = run_redis(&server.url_as(Some("mockmate"), Some(SENTINEL)), &[], &[]);
    assert_eq!(code, 0, "{report:#}");
    for id in READ_ONLY_IDS {
        assert_status(&report, id, "pass");
    }
    assert!(!report.to_string().contains(SENTINEL));

    let (_, report) = run_redis(&server.url_as(Some("mockmate"), Some("not-it")), &[], &[]);
    assert!(message(&report, "redis.connect").starts_with("WRONGPASS"), "{report:#}");
    assert!(hint(&report, "redis.connect").contains("ACL user"));
}

#[test]
fn rediss_with_redis_ca_cert_connects_and_reports_tls() {
    let server = RedisServer::builder().tls().requirepass(SENTINEL).start();
    let ca = server.ca.as_ref().expect("TLS server has a CA").ca_cert.display().to_string();
    let (code, report) = run_redis(&server.url(), &[("REDIS_CA_CERT", &ca)], &[]);
    assert_eq!(code, 0, "{report:#}");
    for id in READ_ONLY_IDS {
        assert_status(&report, id, "pass");
    }
    assert_eq!(check(&report, "redis.connect")["details"]["tls"], true);
    assert!(message(&report, "redis.connect").contains(", TLS, "));

    // Without the CA the certificate is not trusted; node-redis ignores #insecure,
    // so it is not trusted then either.
    let (_, report) = run_redis(&server.url(), &[], &[]);
    assert!(message(&report, "redis.connect").contains("certificate not trusted"), "{report:#}");
    assert!(hint(&report, "redis.connect").contains("NODE_EXTRA_CA_CERTS"));
    let (_, report) = run_redis(&format!("{}#insecure", server.url()), &[], &[]);
    assert_status(&report, "redis.connect", "warn");
    assert!(message(&report, "redis.connect").contains("certificate not trusted"), "{report:#}");
    // What Node itself reads: NODE_EXTRA_CA_CERTS adds the CA to its roots.
    let (_, report) = run_redis(&server.url(), &[("NODE_EXTRA_CA_CERTS", &ca)], &[]);
    assert_status(&report, "redis.connect", "pass");
}

#[test]
fn rediss_against_a_plain_port_warns_without_hanging() {
    let server = RedisServer::shared();
    let started = Instant::now();
    let (code, report) = run_redis(&format!("rediss://{}", server.addr()), &[], &["--timeout", "1s"]);
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert_eq!(code, 0);
    assert_status(&report, "redis.connect", "warn");
    assert!(message(&report, "redis.connect").contains("TLS handshake"), "{report:#}");
    assert!(hint(&report, "redis.connect").contains("redis://"));
}

#[test]
fn hung_redis_with_timeout_1s_finishes_under_3s_and_postgres_results_are_unaffected() {
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db("redis_tarpit");
    let tarpit = Tarpit::start();
    let healthy = RedisServer::shared();
    let run = |redis_url: &str| {
        let dir = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();
        let result =
            json_run(diag(dir.path()).env("DATABASE_URL", pg.superuser_url(&db)).env("REDIS_URL", redis_url).args([
                "--format",
                "json",
                "--timeout",
                "1s",
            ]));
        (started.elapsed(), result)
    };
    let (took, (_, hung)) = run(&format!("redis://{}", tarpit.addr()));
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_status(&hung, "redis.connect", "warn");
    assert_eq!(
        message(&hung, "redis.connect"),
        format!("timed out after 1s waiting for PING reply from {}", tarpit.addr())
    );
    assert!(hint(&hung, "redis.connect").contains("caching is disabled"), "{hung:#}");
    assert_rest_skipped(&hung);

    // Every postgres.* and env.* result is what it is with a healthy Redis.
    let (_, (_, good)) = run(&healthy.url());
    assert_status(&good, "redis.connect", "pass");
    assert_status(&hung, "postgres.connect", "pass");
    let others = |report: &Value| -> Vec<(String, String)> {
        report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            // consistency.* (the incident checks) read Redis too: only env.* and postgres.* must not care.
            .filter(|c| c["id"].as_str().is_some_and(|id| id.starts_with("env.") || id.starts_with("postgres.")))
            .map(|c| {
                (c["id"].as_str().unwrap_or_default().to_owned(), c["status"].as_str().unwrap_or_default().to_owned())
            })
            .collect()
    };
    assert!(others(&hung).iter().any(|(id, _)| id.starts_with("postgres.")), "no postgres checks ran");
    assert_eq!(others(&hung), others(&good));
}

#[test]
fn replica_warns_that_cache_writes_will_fail_with_readonly() {
    let primary = RedisServer::start();
    let replica = RedisServer::builder().replica_of(&primary).start();
    replica.wait_for_sync();
    let (code, report) = run_redis(&replica.url(), &[], &["--allow-writes"]);
    assert_eq!(code, 0);
    assert_status(&report, "redis.connect", "pass");
    assert_status(&report, "redis.writable", "warn");
    assert!(
        message(&report, "redis.writable").ends_with("the app's cache writes will fail with READONLY"),
        "{report:#}"
    );
    assert!(
        hint(&report, "redis.writable").starts_with(&format!("point REDIS_URL at the primary ({})", primary.addr()))
    );
    // The round trip proves it, and says so once: READONLY is redis.writable's finding.
    assert_status(&report, "redis.roundtrip", "skip");
    assert!(message(&report, "redis.roundtrip").starts_with("see redis.writable: SET failed: READONLY"), "{report:#}");
    // The user may write: READONLY comes after the ACL check.
    assert_status(&report, "redis.permissions", "pass");
    let (_, report) = run_redis(&replica.url(), &[], &["--allow-writes", "--skip", "redis.writable"]);
    assert_status(&report, "redis.roundtrip", "warn");
}

#[test]
fn allkeys_lru_with_maxmemory_warns_that_cached_sessions_can_be_evicted() {
    let server = RedisServer::builder().maxmemory("64mb", "allkeys-lru").start();
    let (code, report) = run_redis(&server.url(), &[], &[]);
    assert_eq!(code, 0);
    assert_status(&report, "redis.memory", "warn");
    assert_eq!(
        message(&report, "redis.memory"),
        "maxmemory 64.00M with maxmemory-policy allkeys-lru: cached interview sessions can be evicted at any time"
    );
    let details = &check(&report, "redis.memory")["details"];
    assert_eq!(
        (details["maxmemory"].as_u64(), details["maxmemory_policy"].as_str()),
        (Some(64 << 20), Some("allkeys-lru"))
    );
    assert_eq!(details["evicted_keys"], 0);
}

#[test]
fn nearly_full_noeviction_server_warns_that_writes_will_fail_with_oom() {
    let server = RedisServer::start();
    // 2 MB of data, then a limit the data fills to about 95 %.
    server.cli(&["SETRANGE", "filler", "2000000", "x"]);
    let used: u64 = server.info_field("used_memory").and_then(|v| v.parse().ok()).expect("used_memory");
    server.cli(&["CONFIG", "SET", "maxmemory", &(used * 100 / 95).to_string()]);
    let (_, report) = run_redis(&server.url(), &[], &[]);
    assert_status(&report, "redis.memory", "warn");
    assert!(message(&report, "redis.memory").ends_with("under noeviction: writes will fail with OOM"), "{report:#}");
}

#[test]
fn failed_snapshot_warns_and_with_snapshots_scheduled_redis_refuses_ping_with_misconf() {
    // `dir` is a protected setting.
    let server = RedisServer::builder().arg("--enable-protected-configs").arg("yes").start();
    // Snapshots go to a directory that no longer exists (as root, permissions would not stop it).
    let gone = tempfile::tempdir().expect("tempdir");
    assert_eq!(server.cli(&["CONFIG", "SET", "dir", &gone.path().display().to_string()]), "OK");
    drop(gone);
    server.cli(&["SET", "k", "v"]);
    server.cli(&["BGSAVE"]);
    let started = Instant::now();
    while server.info_field("rdb_last_bgsave_status").as_deref() != Some("err") {
        assert!(started.elapsed() < Duration::from_secs(10), "BGSAVE never failed:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    // No snapshots scheduled (a backup job's BGSAVE failed): writes still work.
    let (_, report) = run_redis(&server.url(), &[], &["--allow-writes"]);
    assert_status(&report, "redis.persistence", "warn");
    assert!(message(&report, "redis.persistence").starts_with("the last RDB snapshot failed"), "{report:#}");
    assert!(hint(&report, "redis.persistence").contains("Redis log"));
    assert_status(&report, "redis.roundtrip", "pass");

    // Scheduled, as in production: Redis refuses writes and even PING.
    server.cli(&["CONFIG", "SET", "save", "3600 1"]);
    let (code, report) = run_redis(&server.url(), &[], &[]);
    assert_eq!(code, 0);
    assert_status(&report, "redis.connect", "warn");
    assert_eq!(
        message(&report, "redis.connect"),
        "PING refused: MISCONF (Redis cannot persist to disk, so it refuses writes and PING)"
    );
    assert!(hint(&report, "redis.connect").contains("caching is disabled"), "{report:#}");
}

#[test]
fn allow_writes_round_trip_passes_and_leaves_no_key_behind() {
    let server = RedisServer::start();
    server.cli(&["SET", "session:1", "cached"]);
    let before = server.cli(&["DBSIZE"]);
    let (code, report) = run_redis(&server.url(), &[], &["--allow-writes"]);
    assert_eq!(code, 0, "{report:#}");
    assert_status(&report, "redis.roundtrip", "pass");
    assert_eq!(server.cli(&["DBSIZE"]), before);
    assert_eq!(server.cli(&["KEYS", "mockmate-diag:*"]), "");
    let calls = command_calls(&server);
    for write in ["set", "get", "del"] {
        // One each from the probe, on top of the harness's own SET above.
        assert!(calls.get(write).copied().unwrap_or(0) >= 1, "{write} never ran: {calls:?}");
    }
}

#[test]
fn without_allow_writes_only_no_op_probes_reach_redis_and_no_data_changes() {
    let server = RedisServer::start();
    server.cli(&["SET", "session:1", "cached"]);
    server.cli(&["SET", "session:2", "cached", "EX", "3600"]);
    let keyspace = server.cli(&["INFO", "keyspace"]);
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        dir.path().join("mine.toml"),
        "[[check]]\nid = \"custom.redis_clients\"\nkind = \"redis.info\"\nsection = \"clients\"\nfield = \"connected_clients\"\nexpect = \">= 1\"\n",
    )
    .expect("write manifest");
    let dirty = server.info_field("rdb_changes_since_last_save");
    // From here on every command counts; the harness's own calls are named below.
    server.cli(&["CONFIG", "RESETSTAT"]);

    let (_, report) = json_run(diag(dir.path()).env("REDIS_URL", server.url()).args([
        "--format",
        "json",
        "--checks",
        "mine.toml",
        "--only",
        &format!("{REDIS_IDS},custom.redis_clients"),
    ]));
    for id in READ_ONLY_IDS.iter().chain(&["custom.redis_clients"]) {
        assert_status(&report, id, "pass");
    }

    let calls = command_calls(&server);
    let run: BTreeMap<&str, u64> =
        calls.iter().filter(|(c, _)| c.as_str() != "config|resetstat").map(|(c, n)| (c.as_str(), *n)).collect();
    // Five PINGs and INFO all at connect, one INFO clients for the custom check,
    // redis.permissions' four no-ops on one absent session:* key and redis.writable's
    // no-op SET … XX on another.
    assert_eq!(
        run,
        BTreeMap::from([("info", 2), ("ping", 5), ("set", 2), ("get", 1), ("expire", 1), ("del", 1)]),
        "{calls:?}"
    );
    // No data changed: the same keys and expiries, nothing dirty since the last save.
    assert_eq!(keys_and_expires(&server.cli(&["INFO", "keyspace"])), keys_and_expires(&keyspace));
    assert_eq!(server.cli(&["DBSIZE"]), "2");
    assert_eq!(server.info_field("rdb_changes_since_last_save"), dirty);
    assert_eq!(server.cli(&["GET", "session:1"]), "cached");
    let probe = check(&report, "redis.permissions")["details"]["probe_key"].as_str().unwrap_or_default().to_string();
    assert!(probe.starts_with("session:mockmate-diag-acl-probe-"), "{report:#}");
    assert_eq!(server.cli(&["EXISTS", &probe]), "0");
}

/// `db0:keys=2,expires=1` of INFO keyspace, without `avg_ttl`, which ticks down.
fn keys_and_expires(keyspace: &str) -> Vec<String> {
    keyspace
        .lines()
        .filter(|l| l.starts_with("db"))
        .map(|l| l.split(",avg_ttl").next().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn a_manifest_raising_a_redis_check_to_fail_makes_the_run_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        dir.path().join("strict.toml"),
        "[[check]]\nid = \"custom.redis_required\"\nkind = \"redis.connect\"\nseverity = \"fail\"\ntitle = \"Redis is required here\"\n",
    )
    .expect("write manifest");
    let url = format!("redis://127.0.0.1:{}", free_port());
    let (code, report) = json_run(diag(dir.path()).env("REDIS_URL", &url).args([
        "--format",
        "json",
        "--checks",
        "strict.toml",
        "--only",
        "redis.connect,custom.redis_required",
    ]));
    assert_eq!(code, 1, "{report:#}");
    assert_status(&report, "redis.connect", "warn");
    assert_status(&report, "custom.redis_required", "fail");
}

#[test]
fn redis_info_custom_checks_pass_and_fail_with_the_manifest_hint() {
    let server = RedisServer::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        dir.path().join("replication.toml"),
        r#"
[[check]]
id = "custom.redis_replicas"
kind = "redis.info"
needs = ["redis.connect"]
field = "connected_slaves"
expect = ">= 1"
hint = "add a replica: sessions survive a primary failure"

[[check]]
id = "custom.redis_primary"
kind = "redis.info"
severity = "warn"
section = "replication"
field = "role"
expect = "= master"
"#,
    )
    .expect("write manifest");
    let (code, report) = json_run(diag(dir.path()).env("REDIS_URL", server.url()).args([
        "--format",
        "json",
        "--checks",
        "replication.toml",
        "--only",
        "custom.redis_replicas,custom.redis_primary",
    ]));
    assert_eq!(code, 1, "custom checks default to severity fail: {report:#}");
    assert_status(&report, "custom.redis_replicas", "fail");
    assert_eq!(message(&report, "custom.redis_replicas"), "connected_slaves is 0, expected >= 1");
    assert_eq!(hint(&report, "custom.redis_replicas"), "add a replica: sessions survive a primary failure");
    assert_status(&report, "custom.redis_primary", "pass");
    assert_eq!(message(&report, "custom.redis_primary"), "role is master (expected = master)");

    // A bad expectation is the manifest's error, at its line, before anything runs.
    fs::write(
        dir.path().join("bad.toml"),
        "[[check]]\nid = \"x\"\nkind = \"redis.info\"\nfield = \"role\"\nexpect = \"~ master\"\n",
    )
    .expect("write manifest");
    let out = diag(dir.path()).args(["--checks", "bad.toml"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml:5:1") && stderr.contains("`expect` must start with one of"), "{stderr}");
}
