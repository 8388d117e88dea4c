use std::path::Path;

use super::*;
use crate::output::Captured;
use crate::redact::Redactor;

const SENTINEL: &str = "S3ntinel-in-process-9f2";

fn invoke<S: AsRef<str>>(args: &[S], vars: &[(&str, &str)], cwd: &Path) -> (ExitCode, Captured) {
    let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let redactor = Redactor::from_env(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let (mut out, captured) = Output::memory(redactor);
    let argv = std::iter::once("mockmate-diag").chain(args.iter().map(AsRef::as_ref));
    let code = main(argv, Process { vars, cwd, signals: false }, &mut out);
    (code, captured)
}

fn env_only(extra: &[&str]) -> Vec<String> {
    ["--env", "production", "--only", "env.required,env.secrets,env.node_env"]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn exit_codes_follow_the_report_and_fail_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = [
        ("NODE_ENV", "production"),
        ("JWT_SECRET", "Zq3v9LrT0pXy2Wn8KbD4sHf7JmC1gQe6Ab"),
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("DATABASE_URL", "postgres://app:pw@127.0.0.1:1/mockmate"),
    ];
    let (code, out) = invoke(&env_only(&["--format", "json"]), &good, dir.path());
    assert_eq!(code, ExitCode::Ok, "{}", out.stdout());
    let report: serde_json::Value = serde_json::from_str(&out.stdout()).expect("one JSON document");
    assert_eq!(report["summary"]["status"], "pass");
    let (code, _) = invoke(&env_only(&[]), &[], dir.path());
    assert_eq!(code, ExitCode::ChecksFailed);
    let (code, out) = invoke(&["--formt", "json"], &[], dir.path());
    assert_eq!(code, ExitCode::Usage);
    assert!(out.stdout().is_empty() && out.stderr().starts_with("mockmate-diag: "), "{}", out.stderr());
}

#[test]
fn no_format_and_no_error_path_prints_a_planted_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("postgres://app:{SENTINEL}@127.0.0.1:1/mockmate");
    let vars = [
        ("NODE_ENV", "production"),
        ("JWT_SECRET", SENTINEL),
        ("DATABASE_URL", url.as_str()),
        ("REDIS_URL", "redis://:S3ntinel-redis-pw@127.0.0.1:1/0"),
    ];
    for format in ["table", "json", "markdown", "junit"] {
        for extra in [&[][..], &["--verbose"]] {
            let mut args = vec!["--env", "production", "--timeout", "500ms", "--format", format];
            args.extend(extra);
            let (_, out) = invoke(&args, &vars, dir.path());
            for text in [out.stdout(), out.stderr()] {
                assert!(!text.contains(SENTINEL) && !text.contains("S3ntinel-redis-pw"), "{format}: {text}");
            }
        }
    }
    let (code, out) = invoke(&["--env", "production", "--only", "nope"], &vars, dir.path());
    assert_eq!(code, ExitCode::Usage);
    assert!(!out.stderr().contains(SENTINEL));
}

#[test]
fn formats_are_chosen_by_flag_and_machine_formats_never_get_colour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, out) = invoke(&env_only(&["--format", "junit", "--color", "always"]), &[], dir.path());
    assert!(out.stdout().starts_with("<?xml"), "{}", out.stdout());
    assert!(!out.stdout().contains('\x1b'));
    let (_, out) = invoke(&env_only(&["--format", "markdown"]), &[], dir.path());
    assert!(out.stdout().starts_with("## mockmate-diag report"), "{}", out.stdout());
    let (_, out) = invoke(&env_only(&["--color", "always"]), &[], dir.path());
    assert!(out.stdout().contains('\x1b'), "table in colour when asked");
}

#[test]
fn clap_errors_keep_valid_values_suggestions_and_missing_names_on_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(&[&str], &str)] = &[
        (&["--format", "yaml"], "[possible values: table, json, markdown, junit]"),
        (&["--formt", "json"], "tip: a similar argument exists: '--format'"),
        (&["completions"], "the following required arguments were not provided: <SHELL>"),
        (&["lst"], "tip: a similar subcommand exists: 'list'"),
        (&["list", "--format", "junit"], "[possible values: table, json, markdown]"),
        (&["--quiet", "--verbose"], "'--quiet' cannot be used with '--verbose'"),
    ];
    for (args, want) in cases {
        let (code, out) = invoke(args, &[], dir.path());
        assert_eq!(code, ExitCode::Usage, "{args:?}");
        let stderr = out.stderr();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(stderr.starts_with("mockmate-diag: ") && stderr.ends_with(" (see --help)\n"), "{stderr}");
    }
}

#[test]
fn global_flags_go_anywhere_and_help_takes_a_subcommand() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [&["--env", "production", "list"][..], &["list", "--env", "production", "--color", "never"]] {
        let (code, out) = invoke(args, &[], dir.path());
        assert_eq!(code, ExitCode::Ok, "{args:?}: {}", out.stderr());
        assert!(out.stdout().contains("postgres.active_users"), "{args:?}");
    }
    let (code, out) = invoke(&["--format", "json", "list"], &[], dir.path());
    assert_eq!(code, ExitCode::Ok, "{}", out.stderr());
    assert!(out.stdout().trim_start().starts_with('['), "{}", out.stdout());
    let (code, out) = invoke(&["--only", "env.required", "list"], &[], dir.path());
    assert_eq!(code, ExitCode::Usage);
    assert_eq!(
        out.stderr(),
        "mockmate-diag: --only is for runs, not for `list` (give it without a subcommand, or after `run`)\n"
    );
    let (code, out) =
        invoke(&["--format", "json", "run", "--only", "env.node_env", "--env", "production"], &[], dir.path());
    assert_eq!(code, ExitCode::ChecksFailed);
    let report: serde_json::Value = serde_json::from_str(&out.stdout()).expect("--format before run applies");
    assert_eq!(report["options"]["only"], serde_json::json!(["env.node_env"]));
    let (code, out) = invoke(&["help", "list"], &[], dir.path());
    assert_eq!(code, ExitCode::Ok);
    assert!(out.stdout().contains("List the checks a run would execute"), "{}", out.stdout());
    assert!(out.stdout().contains("Usage: mockmate-diag list"), "{}", out.stdout());
}

#[test]
fn the_version_names_the_commit_and_the_build_date() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out) = invoke(&["--version"], &[], dir.path());
    assert_eq!(code, ExitCode::Ok);
    let version = out.stdout();
    let re = regex::Regex::new(
        r"^mockmate-diag \d+\.\d+\.\d+ \(commit ([0-9a-f]{7,}|unknown), built \d{4}-\d{2}-\d{2}\)\n$",
    )
    .expect("regex");
    assert!(re.is_match(&version), "{version:?}");
}

#[test]
fn reports_record_the_options_build_and_attempts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = env_only(&["--format", "json", "--timeout", "2s", "--fail-on", "warn", "--allow-writes"]);
    let (_, out) = invoke(&args, &[], dir.path());
    let report: serde_json::Value = serde_json::from_str(&out.stdout()).expect("json");
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["commit"], crate::report::COMMIT);
    assert_eq!(report["build_date"], crate::report::BUILD_DATE);
    assert_eq!(report["attempts"], 1);
    assert_eq!(report["interrupted"], false);
    let options = &report["options"];
    assert_eq!(options["timeout_ms"], 2000);
    assert_eq!(options["fail_on"], "warn");
    assert_eq!(options["allow_writes"], true);
    assert_eq!(options["env"], "production");
    assert_eq!(options["only"], serde_json::json!(["env.required", "env.secrets", "env.node_env"]));
    let (_, out) = invoke(&env_only(&["--format", "markdown", "--timeout", "2s"]), &[], dir.path());
    let md = out.stdout();
    assert!(
        md.contains(
            "| Options | `--env production --only env.required,env.secrets,env.node_env --timeout 2s --fail-on fail` |"
        ),
        "{md}"
    );
    assert!(md.contains(&format!("(commit {}, built {})", crate::report::COMMIT, crate::report::BUILD_DATE)), "{md}");
}

#[test]
fn the_table_is_100_columns_when_piped_else_columns_and_report_files_have_no_colour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("report.txt");
    let report_arg = format!("table={}", path.display());
    let (_, out) = invoke(&env_only(&["--color", "always", "--report", &report_arg]), &[], dir.path());
    let file = std::fs::read_to_string(&path).expect("report written");
    assert!(!file.contains('\x1b'), "{file:?}");
    let plain = anstream::adapter::strip_str(&out.stdout()).to_string();
    assert_eq!(plain, file, "stdout (colour stripped) and the file are the same text");
    // The widest line that could have been broken (a single long word is not).
    let widest =
        |text: &str| text.lines().filter(|l| l.trim().contains(' ')).map(crate::format::text::width).max().unwrap_or(0);
    assert!(widest(&file) <= 100 && widest(&file) > 80, "{file}");
    let (_, out) = invoke(&env_only(&["--report", &report_arg]), &[("COLUMNS", "60")], dir.path());
    assert!(widest(&out.stdout()) <= 60 && widest(&out.stdout()) > 50, "{}", out.stdout());
    assert!(widest(&std::fs::read_to_string(&path).expect("read")) <= 60);
}

#[test]
fn a_lone_env_file_for_another_environment_gets_a_note() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(".env.production"), "NODE_ENV=production\n").expect("write");
    let (_, out) = invoke(&["--only", "env.node_env"], &[], dir.path());
    let text = out.stdout();
    assert!(text.contains("NOTE  diagnosing environment development"), "{text}");
    assert!(text.contains("did you mean --env production?"), "{text}");
    let (_, out) = invoke(&["--only", "env.node_env", "--format", "json"], &[], dir.path());
    let report: serde_json::Value = serde_json::from_str(&out.stdout()).expect("json");
    assert_eq!(report["notes"].as_array().map(Vec::len), Some(1), "{report:#}");
    let (_, out) = invoke(&["--only", "env.node_env", "--env", "production", "--format", "json"], &[], dir.path());
    let report: serde_json::Value = serde_json::from_str(&out.stdout()).expect("json");
    assert_eq!(report["notes"], serde_json::json!([]));
}

#[test]
fn quiet_prints_what_did_not_pass_and_the_verdict_verbose_adds_details_and_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(".env.production"), "NODE_ENV=production\nJWT_SECRET=changeme\n").expect("write");
    let (_, quiet) = invoke(&env_only(&["--quiet"]), &[], dir.path());
    let quiet = quiet.stdout();
    assert!(!quiet.contains("PASS "), "{quiet}");
    assert!(quiet.contains("FAIL  env.secrets: "), "{quiet}");
    assert!(quiet.trim_end().lines().last().is_some_and(|l| l.starts_with("FAIL  production is not ready")), "{quiet}");
    let (_, verbose) = invoke(&env_only(&["--verbose"]), &[], dir.path());
    let verbose = verbose.stdout();
    assert!(verbose.contains("PASS    env.node_env"), "{verbose}");
    assert!(verbose.contains("Variables read (values never shown)"), "{verbose}");
    assert!(verbose.contains("JWT_SECRET    set, 8 bytes, from .env.production"), "{verbose}");
    assert!(!verbose.contains("changeme"), "{verbose}");
}

#[test]
fn two_reports_naming_one_file_are_a_usage_error_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("out")).expect("mkdir");
    let args = env_only(&["--report", "junit=out/r.xml", "--report", "markdown=./out/r.xml"]);
    let (code, out) = invoke(&args, &[], dir.path());
    assert_eq!(code, ExitCode::Usage);
    assert_eq!(
        out.stderr(),
        "mockmate-diag: --report junit=out/r.xml and --report markdown=./out/r.xml both write ./out/r.xml: \
         give each report its own path\n"
    );
    assert!(!dir.path().join("out/r.xml").exists(), "nothing was written");
}

#[test]
fn quiet_and_verbose_shape_stdout_only_and_every_report_file_is_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = ["table=t.txt", "markdown=r.md", "json=r.json"];
    let mut written: Vec<Vec<String>> = Vec::new();
    // The durations and the start time differ between runs: compare the rest.
    let varying =
        regex::Regex::new(r#"\d+ms|"(duration_ms|started_at)": [^,]+|\(\d+(\.\d+)?m?s\)|\d{4}-\d\d-\d\dT[\d:]+Z"#)
            .expect("regex");
    for flag in ["--quiet", "--verbose", "--format=table"] {
        let mut args = env_only(&[flag]);
        for f in files {
            args.extend(["--report".to_string(), f.to_string()]);
        }
        let (code, _) = invoke(&args, &[], dir.path());
        assert_eq!(code, ExitCode::ChecksFailed);
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).expect("written");
        let stable = |text: String| varying.replace_all(&text, "").into_owned();
        written.push(["t.txt", "r.md", "r.json"].iter().map(|f| stable(read(f))).collect());
    }
    assert_eq!(written[0], written[2], "--quiet changed a report file");
    assert_eq!(written[1], written[2], "--verbose changed a report file");
    assert!(written[0][0].contains("Status  Check"), "the table file has its table:\n{}", written[0][0]);
}
