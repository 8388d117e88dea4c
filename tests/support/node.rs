//! tests/node: the pinned Node packages the tests use as oracles and as the
//! stand-in MockMate API (pg, redis, dotenv, dotenv-flow, express, jsonwebtoken).
//! Installed by `npm ci` the first time a test needs them; a machine without
//! Node.js or npm fails loudly with the install command, never skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Every package of tests/node/package.json: `npm ci` runs when one is missing.
const PACKAGES: &[&str] = &["pg", "redis", "dotenv", "dotenv-flow", "express", "jsonwebtoken"];

/// tests/node with its pinned packages installed.
pub fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
        let node = Command::new("node").arg("--version").output();
        assert!(
            node.as_ref().is_ok_and(|o| o.status.success()),
            "Node.js is needed by the tests (driver oracles, dotenv, the stand-in API): \
             `apt-get install nodejs npm` ({node:?})"
        );
        let installed = || PACKAGES.iter().all(|p| dir.join("node_modules").join(p).is_dir());
        if !installed() {
            let out = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir)
                .output()
                .unwrap_or_else(|e| panic!("run `npm ci` in tests/node (apt-get install npm): {e}"));
            assert!(
                out.status.success() && installed(),
                "`npm ci` in tests/node failed: the pinned packages (package-lock.json) are needed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    })
}

/// What node-postgres (tests/node/pg_probe.js: a Pool, connect, `SELECT 1`) makes
/// of `vars` as its whole environment: `{"ok": true, …}` or `{"ok": false, "code",
/// "message"}`. `PROBE_TIMEOUT_MS` defaults to 3000.
pub fn pg_probe(vars: &[(&str, &str)]) -> serde_json::Value {
    let out = Command::new("node")
        .arg(dir().join("pg_probe.js"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PROBE_TIMEOUT_MS", "3000")
        .envs(vars.iter().copied())
        .output()
        .expect("run node");
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    serde_json::from_str(line.trim()).unwrap_or_else(|e| {
        panic!("pg_probe.js printed no JSON ({e}): {line}\n{}", String::from_utf8_lossy(&out.stderr))
    })
}
