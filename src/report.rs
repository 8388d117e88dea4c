//! The result of a run: statuses, per-check results, the summary and the exit code.
//!
//! Field names serialised here are a public contract (`--format json`): add
//! fields, never rename them.

use serde::Serialize;
use serde_json::{Map, Value};

/// What a check concluded. Ordered by gravity: `Skip < Pass < Warn < Fail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Skip,
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Skip => "skip",
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }

    /// `failed`, `warned`, `was skipped`: "needs postgres.connect, which failed".
    pub fn past_tense(self) -> &'static str {
        match self {
            Status::Skip => "was skipped",
            Status::Pass => "passed",
            Status::Warn => "warned",
            Status::Fail => "failed",
        }
    }
}

/// What a failing probe of a check yields (`severity` in a manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warn,
    Fail,
}

impl Severity {
    pub fn status(self) -> Status {
        match self {
            Severity::Warn => Status::Warn,
            Severity::Fail => Status::Fail,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.status().as_str()
    }
}

/// One check's result.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub id: String,
    pub kind: String,
    pub category: String,
    pub title: String,
    pub severity: Severity,
    pub status: Status,
    pub message: String,
    pub hint: Option<String>,
    pub duration_ms: u64,
    pub details: Map<String, Value>,
    /// How the check's run ended, decided once where it happened.
    pub ending: Ending,
    /// The ids this check needs (it is `skip` when one of them did not pass).
    pub needs: Vec<String>,
    /// Its finding rests on the environment's configuration (a variable unset or
    /// unreadable), which is read once per run: `--wait` does not retry it.
    /// Not in the JSON: the `see` of the check that reports the variable says it.
    pub from_configuration: bool,
}

/// How a check's run ended: set once, where it is decided (the engine, the
/// run's bounds), and read by every output — never guessed from the message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Ending {
    /// It ran and gave its own verdict.
    #[default]
    Ran,
    /// `--only` left it out.
    NotSelected,
    /// `--skip` left it out.
    SkippedByFlag,
    /// It did not run: `need` did not pass. `see`: the check that reports the
    /// cause when the need itself was deferred to it.
    Blocked { need: String, see: Option<String> },
    /// Its finding rests on a cause another check of the run reports: see `owner`
    /// ("one root cause, one failure").
    Deferred { owner: String },
    /// SIGINT or SIGTERM (or a server shutting down) stopped it; `phase`: what it
    /// was waiting on, when known.
    Interrupted { phase: Option<String> },
    /// An attempt's deadline (`--wait`, a scrape's timeout) cut it.
    Cut,
}

impl Ending {
    /// The check that owns this result's cause (JSON `see`), if another does.
    pub fn see(&self) -> Option<&str> {
        match self {
            Ending::Deferred { owner } => Some(owner),
            Ending::Blocked { see, .. } => see.as_deref(),
            _ => None,
        }
    }

    pub fn interrupted(&self) -> bool {
        matches!(self, Ending::Interrupted { .. })
    }
}

/// The JSON contract (`--format json`, schema_version 1): the ending shows as
/// `see` and as the `interrupted` / `cut_by_deadline` details it has always had.
impl Serialize for CheckResult {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut details = self.details.clone();
        match &self.ending {
            Ending::Interrupted { phase } => {
                details.insert("interrupted".into(), true.into());
                if let Some(phase) = phase {
                    details.insert("interrupted_while".into(), phase.clone().into());
                }
            }
            Ending::Cut => {
                details.insert("cut_by_deadline".into(), true.into());
            }
            _ => {}
        }
        let see = self.ending.see();
        let mut s = serializer.serialize_struct("CheckResult", if see.is_some() { 12 } else { 11 })?;
        s.serialize_field("id", &self.id)?;
        s.serialize_field("kind", &self.kind)?;
        s.serialize_field("category", &self.category)?;
        s.serialize_field("title", &self.title)?;
        s.serialize_field("severity", &self.severity)?;
        s.serialize_field("status", &self.status)?;
        s.serialize_field("message", &self.message)?;
        s.serialize_field("hint", &self.hint)?;
        s.serialize_field("duration_ms", &self.duration_ms)?;
        s.serialize_field("details", &details)?;
        if let Some(see) = see {
            s.serialize_field("see", see)?;
        }
        s.serialize_field("needs", &self.needs)?;
        s.end()
    }
}

/// Where a variable the checks looked at came from. Never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VarUse {
    pub name: String,
    /// `process`, the env file's path, or `unset`.
    pub source: String,
    pub present: bool,
    /// Length in bytes of the value (0 when unset); safe to show, unlike the value.
    pub length: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub status: SummaryStatus,
    pub pass: usize,
    pub warn: usize,
    pub fail: usize,
    pub skip: usize,
}

/// The overall verdict: the gravest status of any check (`pass` when none warns or fails).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SummaryStatus {
    #[default]
    Pass,
    Warn,
    Fail,
}

/// The options a run was given that change what it checks or how it judges,
/// recorded in every report so a ticket says how it was produced. Presentation
/// (`--format`, `--color`, `--quiet`) is left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunOptions {
    /// `--env` as given; `null` when the environment came from `NODE_ENV` or the default.
    pub env: Option<String>,
    /// `--env-file`, in the order given.
    pub env_files: Vec<String>,
    /// `--checks`: extra manifests.
    pub checks: Vec<String>,
    pub only: Vec<String>,
    pub skip: Vec<String>,
    pub timeout_ms: u64,
    pub fail_on: FailOn,
    pub allow_writes: bool,
    pub user_id: Option<String>,
    /// `--wait`; `null` without it.
    pub wait_ms: Option<u64>,
    /// `--api-url`; `null` without it (then `API_URL` or `PORT` say where the API is).
    pub api_url: Option<String>,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    /// The commit the binary was built from (`unknown` outside a git checkout).
    pub commit: &'static str,
    /// The day the binary was built (UTC, `YYYY-MM-DD`).
    pub build_date: &'static str,
    pub schema_version: u32,
    pub environment: String,
    pub env_files: Vec<String>,
    pub started_at: String,
    /// `linux x86_64`: where the tool ran.
    pub os: String,
    pub duration_ms: u64,
    pub summary: Summary,
    pub checks: Vec<CheckResult>,
    pub variables: Vec<VarUse>,
    pub options: RunOptions,
    /// How many times the checks ran: 1, or more with `--wait`.
    pub attempts: u32,
    /// SIGINT or SIGTERM stopped the run: checks that had not finished are `skip`.
    pub interrupted: bool,
    /// Things worth knowing that are not a check's finding (e.g. an env file for
    /// another environment next to the one diagnosed).
    pub notes: Vec<String>,
}

pub const TOOL: &str = "mockmate-diag";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Set by build.rs.
pub const COMMIT: &str = env!("MOCKMATE_DIAG_COMMIT");
/// Set by build.rs.
pub const BUILD_DATE: &str = env!("MOCKMATE_DIAG_BUILD_DATE");
/// `0.1.0 (commit 5f54280a1b, built 2026-11-30)`: `--version` and report headers.
pub const VERSION_LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MOCKMATE_DIAG_COMMIT"),
    ", built ",
    env!("MOCKMATE_DIAG_BUILD_DATE"),
    ")"
);
pub const SCHEMA_VERSION: u32 = 1;

impl Summary {
    pub fn of(checks: &[CheckResult]) -> Summary {
        let mut s = Summary::default();
        for c in checks {
            match c.status {
                Status::Pass => s.pass += 1,
                Status::Warn => s.warn += 1,
                Status::Fail => s.fail += 1,
                Status::Skip => s.skip += 1,
            }
        }
        s.status = if s.fail > 0 {
            SummaryStatus::Fail
        } else if s.warn > 0 {
            SummaryStatus::Warn
        } else {
            SummaryStatus::Pass
        };
        s
    }

    /// `12 passed, 1 warning, 1 failed, 2 skipped`
    pub fn line(&self) -> String {
        let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        format!(
            "{} passed, {}, {} failed, {} skipped",
            self.pass,
            plural(self.warn, "warning", "warnings"),
            self.fail,
            self.skip
        )
    }
}

/// Process exit codes: a documented contract for CI gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// No check is at or above `--fail-on`.
    Ok = 0,
    /// At least one check is at or above `--fail-on`.
    ChecksFailed = 1,
    /// Usage or configuration error: bad flag, unknown check id, unreadable env file or manifest.
    Usage = 2,
    /// SIGINT or SIGTERM: the report of what finished was printed (128 + SIGINT, as shells do).
    Interrupted = 130,
}

/// `--fail-on`: the lowest status that makes the run exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailOn {
    #[default]
    Fail,
    Warn,
}

impl FailOn {
    pub fn threshold(self) -> Status {
        match self {
            FailOn::Fail => Status::Fail,
            FailOn::Warn => Status::Warn,
        }
    }

    pub fn trips(self, status: Status) -> bool {
        status >= self.threshold()
    }
}

impl Report {
    /// 130 when interrupted (whatever finished), else 1 when a check trips the
    /// run's `--fail-on`, else 0.
    pub fn exit_code(&self) -> ExitCode {
        if self.interrupted {
            ExitCode::Interrupted
        } else if self.checks.iter().any(|c| self.options.fail_on.trips(c.status)) {
            ExitCode::ChecksFailed
        } else {
            ExitCode::Ok
        }
    }

    /// The header's words for the build: `mockmate-diag 0.1.0 (commit 5f54280a1b, built 2026-11-30)`.
    pub fn build_line(&self) -> String {
        format!("{} {} (commit {}, built {})", self.tool, self.version, self.commit, self.build_date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_pluralises_warnings() {
        let s = Summary { status: SummaryStatus::Fail, pass: 12, warn: 1, fail: 1, skip: 2 };
        assert_eq!(s.line(), "12 passed, 1 warning, 1 failed, 2 skipped");
    }

    #[test]
    fn see_is_in_the_json_only_when_another_check_owns_the_cause() {
        let mut r = crate::format::fixture().checks.remove(0);
        assert!(serde_json::to_value(&r).expect("serialises").get("see").is_none());
        r.ending = Ending::Deferred { owner: "env.required".into() };
        assert_eq!(serde_json::to_value(&r).expect("serialises")["see"], "env.required");
    }

    #[test]
    fn fail_on_thresholds() {
        assert!(FailOn::Warn.trips(Status::Warn));
        assert!(!FailOn::Fail.trips(Status::Warn));
        assert!(FailOn::Fail.trips(Status::Fail));
        assert!(!FailOn::Warn.trips(Status::Skip));
    }
}
