//! Paste-safe by construction: sentinel secrets planted in the process
//! environment and in env files never appear in any output of any path.

use std::fs;
use std::path::Path;

use crate::support::cmd::diag;

const SENTINELS: &[&str] = &[
    "S3NTINEL-jwt-secret-value-0123456789abcdef",
    "S3NTINEL-db-password",
    "S3NTINEL-url-password",
    "S3NTINEL-redis-password",
    "S3NTINEL-api-token",
    "S3NTINEL-file-secret",
];

fn plant(dir: &Path, pg_port: u16, redis_port: u16) -> Vec<(&'static str, String)> {
    fs::write(dir.join(".env.production"), format!("STRIPE_SECRET_KEY={}\nNODE_ENV=production\n", SENTINELS[5]))
        .expect("write env file");
    vec![
        ("JWT_SECRET", SENTINELS[0].to_string()),
        ("DB_PASSWORD", SENTINELS[1].to_string()),
        ("DB_HOST", "127.0.0.1".to_string()),
        ("DB_USER", "app".to_string()),
        ("DB_NAME", "mockmate".to_string()),
        ("DATABASE_URL", format!("postgres://app:{}@127.0.0.1:{pg_port}/mockmate", SENTINELS[2])),
        ("REDIS_URL", format!("redis://:{}@127.0.0.1:{redis_port}/0", SENTINELS[3])),
        ("GITHUB_TOKEN", SENTINELS[4].to_string()),
    ]
}

fn assert_clean(what: &str, out: &std::process::Output) {
    for stream in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(stream);
        for s in SENTINELS {
            assert!(!text.contains(s), "{what}: sentinel {s} leaked:\n{text}");
            // Nor a recognisable part of one.
            assert!(!text.contains("S3NTINEL"), "{what}: part of a sentinel leaked:\n{text}");
        }
    }
}

/// Ports nothing listens on: every connect fails, which is a path errors take.
#[test]
fn no_sentinel_in_any_format_or_error_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vars = plant(dir.path(), crate::support::free_port(), crate::support::free_port());
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("table", vec!["--env", "production", "--timeout", "2s"]),
        ("json", vec!["--env", "production", "--format", "json", "--timeout", "2s"]),
        ("color", vec!["--env", "production", "--color", "always", "--timeout", "2s"]),
        ("markdown", vec!["--env", "production", "--format", "markdown", "--timeout", "2s"]),
        ("junit", vec!["--env", "production", "--format", "junit", "--fail-on", "warn", "--timeout", "2s"]),
        (
            "report files",
            vec![
                "--env",
                "production",
                "--timeout",
                "2s",
                "--report",
                "json=r.json",
                "--report",
                "junit=r.xml",
                "--report",
                "markdown=r.md",
                "--report",
                "table=r.txt",
            ],
        ),
        ("wait", vec!["--env", "production", "--format", "json", "--timeout", "500ms", "--wait", "1s"]),
        ("list", vec!["list"]),
        ("help", vec!["--help"]),
        ("run help", vec!["run", "--help"]),
        ("bad flag", vec!["--only", "postgres://app:S3NTINEL-url-password@h/db"]),
        ("bad env file", vec!["--env-file", "postgres://app:S3NTINEL-url-password@h/db"]),
        ("bad timeout", vec!["--timeout", "redis://:S3NTINEL-redis-password@h"]),
    ];
    for (what, args) in runs {
        let out = diag(dir.path()).envs(vars.iter().map(|(k, v)| (*k, v.as_str()))).args(&args).output().expect("runs");
        assert_clean(what, &out);
    }
    for file in ["r.json", "r.xml", "r.md", "r.txt"] {
        let text = fs::read_to_string(dir.path().join(file)).expect("report file written");
        assert!(!text.is_empty(), "{file} is empty");
        assert!(!text.contains("S3NTINEL"), "{file}: a sentinel leaked:\n{text}");
    }
}

#[test]
fn malformed_urls_with_secrets_are_described_not_quoted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = diag(dir.path())
        .env("DATABASE_URL", "postgres://app:S3NTINEL/with-slash@db/mm")
        .env("REDIS_URL", "redis://:S3NTINEL#hash@cache/0")
        .args(["--env", "production", "--format", "json", "--timeout", "1s"])
        .output()
        .expect("runs");
    assert_clean("malformed urls", &out);
}

#[test]
fn secrets_in_env_files_are_redacted_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        dir.path().join(".env.production"),
        "NODE_ENV=production\nJWT_SECRET=S3NTINEL-file-jwt\nDATABASE_URL=postgres://app:S3NTINEL-file-url@127.0.0.1:1/mm\n",
    )
    .expect("write");
    for format in ["table", "json"] {
        let out = diag(dir.path())
            .args(["--env", "production", "--format", format, "--timeout", "1s"])
            .output()
            .expect("runs");
        assert_clean(format, &out);
    }
}
