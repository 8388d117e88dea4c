//! One owner for "can the cache take writes": a Redis with a tiny maxmemory under
//! noeviction, filled up, answers every SET with OOM — node-redis (the API's
//! client) included — and `redis.writable` says so; the other Redis checks point
//! at it instead of saying it again or, worse, saying writes are accepted.

use std::process::Command;

use serde_json::Value;

use crate::support::cmd::{assert_status, check, diag, hint, json_run, message};
use crate::support::redis::RedisServer;

const IDS: &str = "redis.connect,redis.writable,redis.permissions,redis.memory,redis.persistence,redis.roundtrip";

fn run(url: &str, extra: &[&str]) -> (i32, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = diag(dir.path());
    cmd.env("REDIS_URL", url).args(["--env", "production", "--format", "json", "--only", IDS]).args(extra);
    json_run(&mut cmd)
}

/// What node-redis answers to the API's cache write (`SET session:<id> … EX 3600`).
fn node_set(url: &str) -> String {
    let script = "const { createClient } = require('redis');
        (async () => {
          const c = createClient({ url: process.env.REDIS_URL, socket: { reconnectStrategy: false } });
          c.on('error', () => {});
          await c.connect();
          try { console.log(await c.set('session:node-oracle', 'x', { EX: 3600 })); }
          catch (e) { console.log(String(e.message)); }
          await c.quit();
        })().catch(e => console.log('probe error: ' + e.message));";
    let out = Command::new("node")
        .args(["-e", script])
        .current_dir(crate::support::node::dir())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("REDIS_URL", url)
        .output()
        .expect("run node");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_full_noeviction_redis_is_redis_writable_s_oom_and_the_others_point_at_it() {
    let server = RedisServer::builder().maxmemory("2mb", "noeviction").start();
    // One write past the limit (Redis checks memory before a write, not after it).
    server.cli(&["SETRANGE", "filler", "3000000", "x"]);
    let keys = server.cli(&["DBSIZE"]);
    assert!(node_set(&server.url()).starts_with("OOM command not allowed"), "node-redis: the write fails");

    let (code, report) = run(&server.url(), &["--allow-writes"]);
    assert_eq!(code, 0, "Redis is non-fatal: {report:#}");
    assert_status(&report, "redis.writable", "warn");
    let msg = message(&report, "redis.writable");
    assert!(
        msg.starts_with("every SET answers OOM: ")
            && msg.ends_with(" under maxmemory-policy noeviction: the app's cache writes fail"),
        "{msg}"
    );
    assert!(msg.contains(" used of maxmemory 2.00M"), "{msg}");
    assert!(!msg.contains("accepted"), "{msg}");
    assert!(hint(&report, "redis.writable").starts_with("raise maxmemory"), "{report:#}");
    assert_eq!(
        check(&report, "redis.writable")["details"]["refused"].as_str().map(|r| r.starts_with("OOM")),
        Some(true)
    );
    // The same cause is not said again.
    for id in ["redis.memory", "redis.roundtrip"] {
        assert_status(&report, id, "skip");
        assert_eq!(check(&report, id)["see"], "redis.writable", "{id}: {report:#}");
    }
    assert_status(&report, "redis.permissions", "pass");
    assert!(message(&report, "redis.permissions").ends_with("see redis.writable)"), "{report:#}");
    // The probe wrote nothing.
    assert_eq!(server.cli(&["DBSIZE"]), keys);

    // Room again: writes are accepted, and the probe says so.
    assert_eq!(server.cli(&["DEL", "filler"]), "1");
    let (_, report) = run(&server.url(), &[]);
    assert_status(&report, "redis.writable", "pass");
    assert_eq!(
        message(&report, "redis.writable"),
        "primary (role:master): a SET is accepted (probed with a no-op SET … XX)"
    );
    assert_eq!(node_set(&server.url()), "OK");
}
