//! Report formats: each a pure `fn(&Report) -> String`. Writing (and redaction)
//! happens in one place, `crate::output`.

pub(crate) mod json;
pub(crate) mod junit;
pub(crate) mod list;
pub(crate) mod markdown;
pub(crate) mod prometheus;
pub(crate) mod table;
pub mod text;

use std::time::Duration;

use crate::report::Status;

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// A table for people at a terminal (the default).
    #[default]
    Table,
    /// One JSON document (schema_version 1).
    Json,
    /// A support-ticket report (GitHub/GitLab/Jira Markdown).
    Markdown,
    /// JUnit XML for CI test reports.
    Junit,
}

/// How much the table shows: `--quiet`, neither, `--verbose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verbosity {
    /// The checks that did not pass, what to do, and the verdict.
    Quiet,
    #[default]
    Normal,
    /// Every check (nothing folded), details, and the variables read.
    Verbose,
}

/// The width people read at when nothing says otherwise (a pipe, a file, a ticket).
pub const DEFAULT_WIDTH: u16 = 100;
/// Narrower than this, a table is not worth drawing: wrap as if this wide.
pub const MIN_WIDTH: u16 = 40;

/// `12ms`, `1.25s`: short, stable, human.
pub fn short_duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        let d = Duration::from_millis(ms);
        format!("{:.2}s", d.as_secs_f64())
    }
}

/// Upper-case status label, as in the table and Markdown.
pub fn status_label(status: Status) -> &'static str {
    match status {
        Status::Pass => "PASS",
        Status::Warn => "WARN",
        Status::Fail => "FAIL",
        Status::Skip => "SKIP",
    }
}

/// The checks a run left out by choice (`--only`, `--skip`): the ids of those it
/// ran, when it left any out. A verdict on part of the suite says so.
pub fn ran_only(report: &crate::report::Report) -> Option<Vec<&str>> {
    use crate::report::Ending;
    let left_out = |c: &crate::report::CheckResult| matches!(c.ending, Ending::NotSelected | Ending::SkippedByFlag);
    let ran: Vec<&str> = report.checks.iter().filter(|c| !left_out(c)).map(|c| c.id.as_str()).collect();
    (ran.len() < report.checks.len()).then_some(ran)
}

/// The fixture report formatter tests snapshot: every status, fixed durations.
#[cfg(test)]
pub(crate) fn fixture() -> crate::report::Report {
    use crate::report::{CheckResult, Ending, Report, SCHEMA_VERSION, Severity, Summary, TOOL, VarUse};
    use serde_json::json;
    let check =
        |id: &str, status: Status, severity: Severity, message: &str, hint: Option<&str>, ms: u64| CheckResult {
            id: id.into(),
            kind: id.into(),
            category: id.split('.').next().unwrap_or(id).into(),
            title: format!("Title of {id}"),
            severity,
            status,
            message: message.into(),
            hint: hint.map(Into::into),
            duration_ms: ms,
            details: serde_json::Map::new(),
            ending: Ending::Ran,
            needs: if id.ends_with(".connect") || id.starts_with("env.") {
                Vec::new()
            } else {
                vec![format!("{}.connect", id.split('.').next().unwrap_or(id))]
            },
            from_configuration: false,
        };
    let mut connect = check(
        "postgres.connect",
        Status::Pass,
        Severity::Fail,
        "PostgreSQL 15.4, unencrypted (sslmode=prefer) via DATABASE_URL",
        None,
        12,
    );
    connect.details = json!({"server_version": "15.4", "tls": false}).as_object().cloned().unwrap_or_default();
    let checks = vec![
        check("env.required", Status::Pass, Severity::Fail, "all 4 set", None, 0),
        check(
            "env.secrets",
            Status::Fail,
            Severity::Fail,
            "JWT_SECRET is a known placeholder",
            Some("generate one with `openssl rand -base64 48` | and restart"),
            0,
        ),
        connect,
        check(
            "postgres.active_users",
            Status::Fail,
            Severity::Fail,
            "no active users: every session insert fails with 23503",
            Some(
                "INSERT INTO users (id, email, first_name, last_name, credits, is_active, is_verified) VALUES (gen_random_uuid(), 'test@mock-mate.com', 'Test', 'User', 10, true, true);",
            ),
            3,
        ),
        check(
            "redis.connect",
            Status::Warn,
            Severity::Warn,
            "connection refused at 127.0.0.1:6379",
            Some("start Redis or fix REDIS_URL; sessions still work without the cache"),
            1,
        ),
        CheckResult {
            ending: Ending::Blocked { need: "redis.connect".into(), see: None },
            ..check("redis.memory", Status::Skip, Severity::Warn, "needs redis.connect, which warned", None, 0)
        },
        check("postgres.session_insert", Status::Skip, Severity::Fail, "read-only run; pass --allow-writes", None, 0),
    ];
    Report {
        tool: TOOL,
        version: "0.1.0",
        commit: "5f54280a1b",
        build_date: "2026-11-29",
        schema_version: SCHEMA_VERSION,
        environment: "production".into(),
        env_files: vec![".env.production".into()],
        started_at: "2026-11-29T10:00:00Z".into(),
        os: "linux x86_64".into(),
        duration_ms: 41,
        summary: Summary::of(&checks),
        checks,
        variables: vec![
            VarUse { name: "DATABASE_URL".into(), source: ".env.production".into(), present: true, length: 52 },
            VarUse { name: "JWT_SECRET".into(), source: "process".into(), present: true, length: 6 },
            VarUse { name: "REDIS_URL".into(), source: "unset".into(), present: false, length: 0 },
        ],
        options: crate::report::RunOptions {
            env: Some("production".into()),
            timeout_ms: 5000,
            only: vec!["env.required".into()],
            ..Default::default()
        },
        attempts: 1,
        interrupted: false,
        notes: Vec::new(),
    }
}
