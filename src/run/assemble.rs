//! The one way a [`Diagnosis`] becomes a [`Report`], for `run` and `serve`
//! alike: the plan's environment and options, the attempts, the interruption
//! and the summary, decided here and nowhere else.

use std::time::{Duration, SystemTime};

use super::plan::Plan;
use super::wait::Diagnosis;
use crate::envctx::EnvView;
use crate::report::{BUILD_DATE, COMMIT, Report, SCHEMA_VERSION, Summary, SummaryStatus, TOOL, VERSION};

impl Plan {
    /// The report of `diagnosis`, which started at `started` and took `duration`;
    /// `view` says which variables the checks read.
    pub fn report(&self, diagnosis: Diagnosis, view: &EnvView, started: SystemTime, duration: Duration) -> Report {
        let Diagnosis { checks, attempts, interrupted } = diagnosis;
        let mut summary = Summary::of(&checks);
        if interrupted.is_some() {
            // Not a verdict on the environment: a gate that reads summary.status must
            // not take an interrupted run for a pass or a mere warning (the table says FAIL too).
            summary.status = SummaryStatus::Fail;
        }
        Report {
            tool: TOOL,
            version: VERSION,
            commit: COMMIT,
            build_date: BUILD_DATE,
            schema_version: SCHEMA_VERSION,
            environment: self.environment.clone(),
            env_files: self.set.files().to_vec(),
            started_at: humantime::format_rfc3339_seconds(started).to_string(),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            summary,
            checks,
            variables: view.uses(),
            options: self.request.options(),
            attempts,
            interrupted: interrupted.is_some(),
            notes: self.notes.clone(),
        }
    }
}
