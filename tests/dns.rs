//! A dead nameserver: the binary runs in a mount namespace of its own whose
//! /etc/resolv.conf names a nameserver that receives every query and answers none
//! (a UDP socket this test holds on a loopback address). PostgreSQL and Redis both
//! name the DNS phase and the resolver, within --timeout, rather than "timed out
//! connecting". Needs root (the namespace, port 53) and `unshare` (util-linux).

use std::net::UdpSocket;
use std::process::Command;

use serde_json::Value;

use crate::support::cmd::{assert_status, hint, message};

/// A nameserver that takes queries and never answers, on 127.53.0.N:53.
fn dead_nameserver() -> (UdpSocket, String) {
    for n in 1..=250u8 {
        let addr = format!("127.53.0.{n}");
        if let Ok(socket) = UdpSocket::bind((addr.as_str(), 53)) {
            return (socket, addr);
        }
    }
    panic!("no free 127.53.0.N:53 for a dead nameserver (the DNS tests run as root)");
}

/// Runs the real binary with `args` and `env`, its /etc/resolv.conf replaced by
/// `resolv_conf` for it alone (a private mount namespace).
fn run_with_resolver(resolv_conf: &str, env: &[(&str, &str)], args: &[&str]) -> (i32, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("resolv.conf");
    std::fs::write(&conf, resolv_conf).expect("write resolv.conf");
    let bin = assert_cmd::cargo::cargo_bin("mockmate-diag");
    let unshare = Command::new("unshare").arg("--version").output();
    assert!(
        unshare.as_ref().is_ok_and(|o| o.status.success()),
        "the DNS tests need `unshare` (apt-get install util-linux) and root: {unshare:?}"
    );
    let out = Command::new("unshare")
        .args(["--mount", "--", "sh", "-c", "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\""])
        .arg(&conf)
        .arg(&bin)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("stdout is not one JSON document ({e}):\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code().unwrap_or(-1), report)
}

#[test]
fn a_dead_nameserver_is_named_as_dns_for_postgres_and_redis() {
    let (_nameserver, addr) = dead_nameserver();
    let resolv = format!("nameserver {addr}\noptions timeout:10 attempts:1\n");
    let env = [
        ("DATABASE_URL", "postgresql://app:dns-test-pw@db.mockmate.invalid:5432/mockmate"),
        ("REDIS_URL", "redis://cache.mockmate.invalid:6379"),
    ];
    let args =
        ["--env", "production", "--format", "json", "--timeout", "2s", "--only", "postgres.connect,redis.connect"];
    let (code, report) = run_with_resolver(&resolv, &env, &args);
    assert_eq!(code, 1, "{report:#}");
    assert_status(&report, "postgres.connect", "fail");
    assert_eq!(message(&report, "postgres.connect"), "timed out after 2s resolving host \"db.mockmate.invalid\"");
    let fix = hint(&report, "postgres.connect");
    assert!(fix.contains("DNS resolver") && fix.contains("/etc/resolv.conf") && fix.contains("DATABASE_URL"), "{fix}");
    assert_status(&report, "redis.connect", "warn");
    assert_eq!(message(&report, "redis.connect"), "timed out after 2s resolving host 'cache.mockmate.invalid'");
    assert!(!report.to_string().contains("dns-test-pw"));
}
