//! The command line as a user meets it: exit codes, env files, selection, manifests.

use std::fs;

use crate::support::cmd::{check, diag, json_run, status};
use predicates::prelude::*;

const ENV_IDS: &str = "env.required,env.database_url,env.redis_url,env.node_env,env.secrets";
const GOOD_ENV: &str = "NODE_ENV=production\nJWT_SECRET=Zq3v9LrT0pXy2Wn8KbD4sHf7JmC1gQe6Ab\nREDIS_URL=redis://127.0.0.1:6379\nDATABASE_URL=postgres://app:pw-in-file@127.0.0.1:5432/mockmate\n";

#[test]
fn empty_directory_in_production_fails_naming_each_missing_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, report) =
        json_run(diag(dir.path()).args(["--env", "production", "--format", "json", "--only", "env.required"]));
    assert_eq!(code, 1);
    let msg = check(&report, "env.required")["message"].as_str().unwrap_or_default();
    for var in ["NODE_ENV", "JWT_SECRET", "REDIS_URL", "DATABASE_URL", "DB_HOST", "DB_USER", "DB_PASSWORD", "DB_NAME"] {
        assert!(msg.contains(var), "{var} missing from {msg}");
    }
    assert_eq!(report["environment"], "production");
    assert_eq!(report["summary"]["status"], "fail");
}

#[test]
fn table_is_the_default_format_and_exit_1_on_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    diag(dir.path())
        .args(["--env", "production", "--only", "env.required"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("env.required").and(predicate::str::contains("FAIL")))
        .stdout(predicate::str::contains("What to do\nFAIL  env.required: missing or empty: NODE_ENV"))
        .stdout(predicate::str::contains("\n      run from the directory that holds the API's env files"))
        // Part of the suite: the verdict says how much ran (issue 27).
        .stdout(
            predicate::str::is_match(r"FAIL  production is not ready: 1 failed — 1 of 32 checks run \(\d+ms\)\n$")
                .expect("regex"),
        );
}

/// Issue 27: `--only postgres.connect` never says "production is ready".
#[test]
fn a_passing_part_of_the_suite_is_never_called_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join(".env.production"), GOOD_ENV).expect("write");
    diag(dir.path())
        .args(["--env", "production", "--only", "env.secrets,env.node_env"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("is ready").not())
        .stdout(
            predicate::str::is_match(r"PASS  env.node_env, env.secrets pass — 2 of 32 checks run \(\d+ms\)\n$")
                .expect("regex"),
        );
}

/// Issue 27: from a directory without env files, say where we looked.
#[test]
fn without_env_files_env_required_names_the_directory_it_searched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, report) =
        json_run(diag(dir.path()).args(["--env", "production", "--format", "json", "--only", "env.required"]));
    let msg = check(&report, "env.required")["message"].as_str().unwrap_or_default().to_string();
    let searched = format!("no env file was read: {} has no .env.production or .env", dir.path().display());
    assert!(msg.ends_with(&searched), "{msg}");
}

#[test]
fn env_checks_pass_with_everything_in_the_env_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join(".env.production"), GOOD_ENV).expect("write");
    let (code, report) =
        json_run(diag(dir.path()).args(["--env", "production", "--format", "json", "--only", ENV_IDS]));
    for id in ENV_IDS.split(',') {
        assert_eq!(status(&report, id), "pass", "{id}: {:#}", check(&report, id));
    }
    assert_eq!(code, 0);
    assert_eq!(report["env_files"], serde_json::json!([".env.production"]));
}

#[test]
fn process_environment_wins_and_sources_are_recorded_without_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join(".env.production"), GOOD_ENV).expect("write");
    fs::write(dir.path().join(".env"), "NODE_ENV=staging\nEXTRA=1\n").expect("write");
    let (_, report) = json_run(diag(dir.path()).env("NODE_ENV", "production").args([
        "--format",
        "json",
        "--only",
        "env.node_env,env.required",
    ]));
    // --env defaults to NODE_ENV from the process.
    assert_eq!(report["environment"], "production");
    assert_eq!(status(&report, "env.node_env"), "pass");
    let vars = report["variables"].as_array().expect("variables");
    let source = |name: &str| vars.iter().find(|v| v["name"] == name).map(|v| v["source"].clone());
    assert_eq!(source("NODE_ENV"), Some("process".into()));
    assert_eq!(source("JWT_SECRET"), Some(".env.production".into()));
    assert!(!report.to_string().contains("pw-in-file"));
    assert_eq!(report["env_files"], serde_json::json!([".env.production", ".env"]));
}

#[test]
fn node_env_mismatch_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, report) = json_run(diag(dir.path()).env("NODE_ENV", "development").args([
        "--env",
        "production",
        "--format",
        "json",
        "--only",
        "env.node_env",
    ]));
    assert_eq!(code, 1);
    assert_eq!(check(&report, "env.node_env")["message"], "NODE_ENV is \"development\" but --env is \"production\"");
}

#[test]
fn explicit_env_file_is_loaded_and_must_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("ci.env"), GOOD_ENV).expect("write");
    let (code, report) = json_run(diag(dir.path()).args([
        "--env",
        "production",
        "--env-file",
        "ci.env",
        "--format",
        "json",
        "--only",
        ENV_IDS,
    ]));
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["env_files"], serde_json::json!(["ci.env"]));

    diag(dir.path())
        .args(["--env-file", "missing.env"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("missing.env").and(predicate::function(|s: &str| s.lines().count() == 1)));
}

#[test]
fn an_env_file_is_read_as_dotenv_reads_it_never_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Lines dotenvy refused (exit 2): dotenv reads them, and so do we.
    let text = "NODE_ENV=production\nJWT_SECRET=abc#s3cret-after-the-hash\nREDIS_URL = redis://127.0.0.1:6379 \n\
                s3cret-alone-on-a-line\nDATABASE_URL=\"postgres://app:pw@127.0.0.1:5432/mockmate\n";
    fs::write(dir.path().join(".env.production"), text).expect("write");
    let (code, report) =
        json_run(diag(dir.path()).args(["--env", "production", "--format", "json", "--only", ENV_IDS]));
    assert_eq!(code, 1, "{report:#}");
    let secrets = check(&report, "env.secrets")["message"].as_str().unwrap_or_default().to_string();
    assert!(
        secrets.contains("dotenv reads JWT_SECRET (.env.production:2) as 3 characters: the '#' starts a comment"),
        "{secrets}"
    );
    assert_eq!(status(&report, "env.redis_url"), "pass");
    // The unclosed quote is part of the value, as the API gets it.
    let url = check(&report, "env.database_url")["message"].as_str().unwrap_or_default().to_string();
    assert!(url.contains("with its opening quote as part of the value"), "{url}");
    assert_eq!(
        report["notes"],
        serde_json::json!([
            "dotenv reads nothing from .env.production line 4: it is not NAME=value as it understands it, so the API \
             never sees it"
        ])
    );
    let all = report.to_string();
    assert!(!all.contains("s3cret"), "a value shows: {all}");
}

#[test]
fn only_and_skip_select_checks_and_reject_unknown_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, report) = json_run(diag(dir.path()).args([
        "--env",
        "production",
        "--format",
        "json",
        "--only",
        "env.required",
        "--skip",
        "env.required",
    ]));
    assert_eq!(status(&report, "env.required"), "skip");
    assert_eq!(check(&report, "env.required")["message"], "skipped by --skip");
    assert_eq!(status(&report, "env.secrets"), "skip");
    assert_eq!(check(&report, "env.secrets")["message"], "not selected by --only");

    diag(dir.path())
        .args(["--only", "env.required,no.such.check"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("unknown check id `no.such.check`"));
}

#[test]
fn bad_flags_are_usage_errors_on_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in
        [&["--timeout", "soon"][..], &["--format", "yaml"], &["--fail-on", "never"], &["--bogus"], &["--env", "../x"]]
    {
        let out = diag(dir.path()).args(args).output().expect("runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn fail_on_warn_turns_warnings_into_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A weak secret outside production is a warning.
    let weak = "JWT_SECRET=short\n";
    fs::write(dir.path().join(".env.staging"), weak).expect("write");
    diag(dir.path()).args(["--env", "staging", "--only", "env.secrets"]).assert().code(0);
    diag(dir.path()).args(["--env", "staging", "--only", "env.secrets", "--fail-on", "warn"]).assert().code(1);
}

#[test]
fn manifest_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("[[check]]\nid = \"x\"\nkind = \"nope\"\n", "extra.toml:3:8: unknown kind `nope`"),
        ("[[check]]\nid = \"x\"\nkind = \"env.required\"\nwat = 1\n", "extra.toml:4:1:"),
        (
            "[[check]]\nid = \"env.required\"\nkind = \"env.required\"\n",
            "extra.toml:2:6: duplicate check id `env.required`",
        ),
        ("[[check]]\nid = \"x\"\nkind = \"env.required\"\nneeds = [\"ghost\"]\n", "extra.toml:4:9:"),
    ];
    for (text, expected) in cases {
        fs::write(dir.path().join("extra.toml"), text).expect("write");
        diag(dir.path())
            .args(["--checks", "extra.toml"])
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::contains(expected));
    }
}

#[test]
fn checks_directory_adds_instances_of_existing_kinds() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir(dir.path().join("checks.d")).expect("mkdir");
    fs::write(
        dir.path().join("checks.d/api.toml"),
        "[[check]]\nid = \"custom.api_keys\"\nkind = \"env.required\"\nseverity = \"warn\"\nvars = [\"STRIPE_KEY\"]\ndatabase = false\nneeds = [\"env.required\"]\n",
    )
    .expect("write");
    let (code, report) = json_run(diag(dir.path()).args([
        "--env",
        "production",
        "--checks",
        "checks.d",
        "--format",
        "json",
        "--only",
        "custom.api_keys",
    ]));
    // It needs env.required, which fails here: so it is skipped, with the reason.
    assert_eq!(code, 1);
    assert_eq!(check(&report, "custom.api_keys")["message"], "needs env.required, which failed");
    diag(dir.path())
        .args(["list", "--checks", "checks.d", "--format", "json"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("custom.api_keys"));
}

#[test]
fn list_shows_every_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = diag(dir.path()).args(["list", "--format", "json"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let ids: Vec<&str> = list.as_array().expect("array").iter().filter_map(|c| c["id"].as_str()).collect();
    for id in ENV_IDS.split(',') {
        assert!(ids.contains(&id), "{id} not listed");
    }
    diag(dir.path()).arg("list").assert().code(0).stdout(predicate::str::contains("env.required"));
}
