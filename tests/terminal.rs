//! What a person sees at a terminal, read off an emulated screen: a failing
//! environment at 80 and 120 columns, the progress line, the What to do block;
//! Ctrl-C and SIGTERM in the middle of a run, and `--wait` as a bound.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::cmd::{check, diag, status};
use crate::support::pty::Pty;
use crate::support::tarpit::Tarpit;

const WEAK_SECRET_ENV: &str = "NODE_ENV=production\nJWT_SECRET=changeme\n";

/// A production env file: a placeholder secret, PostgreSQL at `db`, Redis at `redis`
/// (`127.0.0.1:1` and `:2` refuse at once, and read the same on every machine).
fn write_env(dir: &Path, db: &str, redis: &str) {
    let text = format!(
        "{WEAK_SECRET_ENV}DATABASE_URL=postgres://app:S3ntinel-pw@{db}/mockmate\nREDIS_URL=redis://:S3ntinel-redis@{redis}/0\n"
    );
    fs::write(dir.join(".env.production"), text).expect("write .env.production");
}

/// The parts of a screen that differ between runs and builds, made fixed: the
/// header (version, commit, date; checked, then replaced), durations (in place,
/// keeping the columns), the spinner.
fn normalize(screen: &str) -> String {
    let lines: Vec<&str> = screen.lines().collect();
    let table = lines.iter().position(|l| l.starts_with("Status  ")).unwrap_or(0);
    let header = lines[..table].iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
    let re = regex::Regex::new(
        r"^mockmate-diag \d+\.\d+\.\d+ \(commit ([0-9a-f]{7,}|unknown), built \d{4}-\d{2}-\d{2}\) · environment production · env files: \.env\.production$",
    )
    .expect("regex");
    assert!(table == 0 || re.is_match(&header), "header: {header:?}");
    let duration = regex::Regex::new(r"^(\s*)(\d+(\.\d+)?m?s)$").expect("regex");
    let verdict = regex::Regex::new(r"\((\d+(\.\d+)?m?s)(, \d+ attempts)?\)$").expect("regex");
    let seconds = regex::Regex::new(r"\(\d+\.\ds\)").expect("regex");
    let waited = regex::Regex::new(r"after \d+\.\ds").expect("regex");
    let end = lines.get(table).and_then(|h| h.find("Duration")).map(|i| i + "Duration".len());
    let mut out: Vec<String> = Vec::new();
    if table > 0 {
        out.push("[header: mockmate-diag VERSION (commit COMMIT, built DATE) · environment production · env files: .env.production]".into());
    }
    for line in &lines[table..] {
        let mut line = line.to_string();
        // The Duration column is 8 wide (its header): replace the value, keep the width.
        if let Some(end) = end
            && line.len() >= end
            && line.is_char_boundary(end - 8)
            && line.is_char_boundary(end)
            && duration.is_match(&line[end - 8..end])
        {
            line.replace_range(end - 8..end, "      ⧗ ");
        }
        let line = verdict.replace(&line, "(⧗$3)").into_owned();
        let line = seconds.replace_all(&line, "(⧗)").into_owned();
        let line = waited.replace_all(&line, "after ⧗").into_owned();
        out.push(line);
    }
    out.join("\n")
}

#[test]
fn a_failing_environment_at_80_and_120_columns_ends_with_what_to_do_and_the_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_env(dir.path(), "127.0.0.1:2", "127.0.0.1:1");
    for cols in [80u16, 120] {
        let mut pty = Pty::spawn(dir.path(), cols, &["--env", "production"], &[]);
        assert_eq!(pty.wait(Duration::from_secs(30)), 1, "{}", pty.screen());
        let screen = pty.screen();
        for row in screen.lines() {
            assert!(row.chars().count() <= usize::from(cols), "{row:?}");
        }
        assert!(!screen.contains("S3ntinel"), "{screen}");
        // The hints are not in the table: each starts a line of its own under "What to do".
        let what_to_do = screen.find("\nWhat to do\n").expect("a What to do block");
        assert!(screen.find("\nStatus  Check").is_some_and(|t| t < what_to_do), "{screen}");
        assert!(screen[what_to_do..].contains("\n      generate one with `openssl rand -base64 48`"), "{screen}");
        assert!(
            screen.lines().last().is_some_and(|l| l.starts_with("FAIL  production is not ready: 2 failed, 1 warned")),
            "{screen}"
        );
        insta::assert_snapshot!(format!("failing_environment_{cols}_columns"), normalize(&screen));
    }
}

#[test]
fn ctrl_c_during_a_hung_connect_clears_the_progress_line_and_prints_what_finished() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tarpit = Tarpit::start();
    write_env(dir.path(), &tarpit.addr(), "127.0.0.1:1");
    let mut pty = Pty::spawn(dir.path(), 80, &["--env", "production", "--timeout", "60s"], &[]);
    // Everything but the hung connect (and what needs it) has finished.
    let screen = pty.wait_for("progress line", Duration::from_secs(30), |s| {
        s.contains("7/32 checks · waiting on postgres.connect (")
    });
    let progress = screen.lines().find(|l| l.contains("waiting on")).unwrap_or_default();
    let spinner = progress.chars().next().unwrap_or(' ');
    insta::assert_snapshot!("progress_line_80_columns", normalize(&progress.replacen(spinner, "⠿", 1)));

    let pressed = Instant::now();
    pty.ctrl_c();
    assert_eq!(pty.wait(Duration::from_secs(10)), 130);
    assert!(pressed.elapsed() < Duration::from_secs(3), "took {:?} to stop", pressed.elapsed());
    let screen = pty.screen();
    assert!(!screen.contains("checks · waiting"), "the progress line is gone:\n{screen}");
    // What was still running is named, with what it was waiting on (the
    // terminal wraps the line: compare its words).
    let words = screen.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains(&format!(
            "mockmate-diag: interrupted by SIGINT; reporting what finished (14 of 32 checks); still running: \
             postgres.connect: {}",
            "" // the seconds vary
        )) && words.contains(&format!("s waiting for PostgreSQL's reply to startup ({})", tarpit.addr())),
        "{screen}"
    );
    let report: String =
        screen.lines().skip_while(|l| !l.starts_with("mockmate-diag 0")).collect::<Vec<_>>().join("\n");
    // The tarpit's port is an ephemeral one: five digits, a different one each run.
    let report = report.replace(&tarpit.port.to_string(), "PORTS");
    insta::assert_snapshot!("interrupted_80_columns", normalize(&report));
}

#[test]
fn sigterm_prints_the_report_of_the_checks_that_finished_then_exits_130() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tarpit = Tarpit::start();
    write_env(dir.path(), &tarpit.addr(), "127.0.0.1:1");
    let child = Command::new(assert_cmd::cargo::cargo_bin("mockmate-diag"))
        .args(["--env", "production", "--timeout", "60s", "--format", "json"])
        .env_clear()
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while tarpit.accepted() == 0 {
        assert!(start.elapsed() < Duration::from_secs(20), "never connected to the tarpit");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The env checks take a millisecond; give them (and redis.connect, refused) time.
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(kill.success());
    let out = child.wait_with_output().expect("wait");
    assert!(signalled.elapsed() < Duration::from_secs(3), "took {:?}", signalled.elapsed());
    assert_eq!(out.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mockmate-diag: interrupted by SIGTERM; reporting what finished (14 of 32 checks); still running: postgres.connect: "),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(report["interrupted"], true);
    // Not a verdict: a gate must not read the warnings that finished as the outcome.
    assert_eq!(report["summary"]["status"], "fail");
    assert_eq!(status(&report, "env.required"), "pass");
    assert_eq!(status(&report, "env.secrets"), "fail");
    assert_eq!(status(&report, "redis.connect"), "warn");
    // The check that hung says where; what needed it never started.
    let connect = check(&report, "postgres.connect");
    assert_eq!(connect["status"], "skip", "{connect:#}");
    let waiting = format!("s waiting for PostgreSQL's reply to startup ({})", tarpit.addr());
    let message = connect["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("interrupted after ") && message.ends_with(&waiting), "{connect:#}");
    assert!(connect["details"]["interrupted_while"].as_str().is_some_and(|w| w.ends_with(&waiting)), "{connect:#}");
    assert_eq!(connect["details"]["interrupted"], true, "{connect:#}");
    for id in ["postgres.schema", "consistency.cached_sessions"] {
        let c = check(&report, id);
        assert_eq!(c["status"], "skip", "{c:#}");
        assert_eq!(c["message"], "interrupted before it finished", "{c:#}");
        assert_eq!(c["details"]["interrupted"], true, "{c:#}");
    }
    assert!(!String::from_utf8_lossy(&out.stdout).contains("S3ntinel"));
}

#[test]
fn wait_bounds_the_whole_run_within_ten_percent_and_the_report_counts_attempts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tarpit = Tarpit::start();
    write_env(dir.path(), &tarpit.addr(), "127.0.0.1:1");
    // A hung database: every attempt runs into --timeout; the wait must still end on time.
    let started = Instant::now();
    let out = diag(dir.path())
        .args(["--env", "production", "--wait", "3s", "--timeout", "1s", "--format", "json"])
        .output()
        .expect("runs");
    let elapsed = started.elapsed();
    assert!(elapsed <= Duration::from_millis(3300), "--wait 3s took {elapsed:?}");
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let attempts = report["attempts"].as_u64().unwrap_or(0);
    assert!(attempts >= 2, "{attempts} attempts");
    assert_eq!(report["options"]["wait_ms"], 3000);
    assert_eq!(status(&report, "postgres.connect"), "fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("mockmate-diag: waiting: attempt ").count() as u64, attempts - 1, "{stderr}");

    // Shorter than --timeout: said, and still a bound.
    let started = Instant::now();
    let out =
        diag(dir.path()).args(["--env", "production", "--wait", "2s", "--format", "json"]).output().expect("runs");
    let elapsed = started.elapsed();
    assert!(elapsed <= Duration::from_millis(2200), "--wait 2s took {elapsed:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(
            "mockmate-diag: warning: --wait 2s is shorter than --timeout 5s: each check gets only what is left of the wait\n"
        ),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(status(&report, "postgres.connect"), "fail");
}

#[test]
fn a_signal_during_wait_says_the_wait_was_interrupted_and_reports_the_last_attempt() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_env(dir.path(), "127.0.0.1:2", "127.0.0.1:1");
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("mockmate-diag"))
        .args(["--env", "production", "--wait", "60s", "--format", "json"])
        .env_clear()
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("stderr line");
        let second = line.contains("waiting: attempt 2 still failing");
        seen.push(line);
        if second {
            break;
        }
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(kill.success());
    seen.extend(lines.map_while(Result::ok));
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130));
    let stderr = seen.join("\n");
    assert!(
        regex::Regex::new(r"mockmate-diag: interrupted by SIGINT during --wait 1m \(after \d+ attempts\): the wait was interrupted; reporting what finished")
            .expect("regex")
            .is_match(&stderr),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(report["interrupted"], true);
    assert!(report["attempts"].as_u64().unwrap_or(0) >= 2, "{report:#}");
    // The last attempt's answer stands: the connect was refused, not interrupted.
    assert_eq!(status(&report, "postgres.connect"), "fail");
}
