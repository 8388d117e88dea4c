//! The CI gate and the support ticket: machine formats, report files,
//! completions, man page, and no progress noise off a terminal.

use std::fs;

use crate::support::cmd::diag;
use predicates::prelude::*;

const ENV_ONLY: &str = "env.required,env.database_url,env.redis_url,env.node_env,env.secrets";

#[test]
fn junit_is_valid_xml_with_one_testcase_per_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out =
        diag(dir.path()).args(["--env", "production", "--format", "junit", "--only", ENV_ONLY]).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let xml = String::from_utf8(out.stdout).expect("utf-8");
    let doc = roxmltree::Document::parse(&xml).expect("JUnit output is XML");
    let listed = diag(dir.path()).args(["list", "--format", "json"]).output().expect("runs");
    let checks: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    let total = checks.as_array().map(Vec::len).unwrap_or(0);
    let cases: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testcase")).collect();
    assert_eq!(cases.len(), total, "{xml}");
    let required = cases.iter().find(|c| c.attribute("name") == Some("env.required")).expect("env.required case");
    assert!(required.children().any(|n| n.has_tag_name("failure")), "{xml}");
    assert!(doc.descendants().any(|n| n.has_tag_name("testsuite") && n.attribute("name") == Some("env")));
}

#[test]
fn one_run_prints_the_table_and_writes_junit_and_markdown_artifacts() {
    let dir = tempfile::tempdir().expect("tempdir");
    diag(dir.path())
        .args(["--env", "production", "--only", ENV_ONLY])
        .args(["--report", "junit=report.xml", "--report", "markdown=report.md"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("env.required"));
    let xml = fs::read_to_string(dir.path().join("report.xml")).expect("report.xml written");
    roxmltree::Document::parse(&xml).expect("report.xml is XML");
    let md = fs::read_to_string(dir.path().join("report.md")).expect("report.md written");
    assert!(md.starts_with("## mockmate-diag report"), "{md}");
    assert!(md.contains("| Environment | production |"), "{md}");
}

#[test]
fn unwritable_report_path_is_a_usage_error_before_any_check_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    diag(dir.path())
        .args(["--env", "production", "--report", "junit=no/such/dir/report.xml"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("--report no/such/dir/report.xml: cannot write"));
}

#[test]
fn markdown_report_lists_variables_by_presence_length_and_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join(".env.production"), "JWT_SECRET=abc\n").expect("write");
    let out = diag(dir.path())
        .args(["--env", "production", "--format", "markdown", "--only", ENV_ONLY])
        .output()
        .expect("runs");
    let md = String::from_utf8(out.stdout).expect("utf-8");
    assert!(md.contains("| `JWT_SECRET` | yes | 3 | .env.production |"), "{md}");
    assert!(md.contains("| `REDIS_URL` | no | 0 | unset |"), "{md}");
}

#[test]
fn no_progress_or_logs_when_stdout_is_not_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    for format in ["table", "json"] {
        diag(dir.path()).args(["--env", "production", "--format", format, "--only", ENV_ONLY]).assert().stderr("");
    }
}

#[test]
fn help_shows_one_example_per_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    diag(dir.path())
        .arg("--help")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Ops, on a server"))
        .stdout(predicate::str::contains("CI gate before a deploy"))
        .stdout(predicate::str::contains("Support ticket"))
        .stdout(predicate::str::contains("Prometheus, Kubernetes"));
}

#[test]
fn completions_and_man_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    for shell in ["bash", "zsh", "fish", "powershell"] {
        diag(dir.path())
            .args(["completions", shell])
            .assert()
            .code(0)
            .stdout(predicate::str::contains("mockmate-diag"));
    }
    diag(dir.path()).arg("man").assert().code(0).stdout(predicate::str::contains(".TH mockmate-diag"));
}

#[test]
fn list_as_markdown_for_the_readme() {
    let dir = tempfile::tempdir().expect("tempdir");
    diag(dir.path())
        .args(["list", "--format", "markdown"])
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with("| Check | Severity | Needs | What it checks |"))
        .stdout(predicate::str::contains("| `env.required` | fail |"));
}

#[test]
fn one_colour_policy_flag_and_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = diag(dir.path())
            .args(["--env", "production", "--only", "env.required"])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("runs");
        String::from_utf8_lossy(&out.stdout).contains('\u{1b}')
    };
    assert!(!run(&[], &[]), "no colour on a pipe");
    assert!(run(&["--color", "always"], &[]), "--color always");
    assert!(run(&[], &[("CLICOLOR_FORCE", "1")]), "CLICOLOR_FORCE");
    assert!(!run(&["--color", "never"], &[("CLICOLOR_FORCE", "1")]), "--color never wins");
    // JSON never carries colour.
    let out = diag(dir.path())
        .args(["--format", "json", "--color", "always", "--only", "env.required"])
        .output()
        .expect("runs");
    assert!(!String::from_utf8_lossy(&out.stdout).contains('\u{1b}'));
}

#[test]
fn user_id_must_be_a_uuid() {
    let dir = tempfile::tempdir().expect("tempdir");
    diag(dir.path()).args(["--user-id", "42"]).assert().code(2).stdout("").stderr(predicate::str::contains("UUID"));
}
