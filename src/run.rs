//! One diagnosis, from an environment and manifests to a report: what a run,
//! each `--wait` attempt and `serve` share. The command line and the printing
//! stay in `app` (and `serve`); this module decides nothing about output.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::check::Ctx;
use crate::engine::{self, Observer, Selection};
use crate::envctx::{EnvSet, EnvView};
use crate::error::UsageError;
use crate::manifest::{self, CheckDecl, Loaded, Source};
use crate::probe::Probes;
use crate::probe::postgres::ApiClient;
use crate::redact::Redactor;
use crate::report::{CheckResult, FailOn, Report, SCHEMA_VERSION, Status, Summary, TOOL, VERSION};

/// What a diagnosis is asked to look at, before anything is read.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `--env`; `None`: `$NODE_ENV`, else `development`.
    pub env: Option<String>,
    pub env_files: Vec<PathBuf>,
    /// Extra manifests (`--checks`).
    pub checks: Vec<PathBuf>,
    pub only: Vec<String>,
    pub skip: Vec<String>,
    pub timeout: Duration,
    pub allow_writes: bool,
    pub user_id: Option<uuid::Uuid>,
}

/// A diagnosis ready to run: the environment read, the manifests loaded and
/// validated, the selection made. Loading is where every usage error happens.
pub struct Plan {
    pub environment: String,
    pub set: Arc<EnvSet>,
    pub decls: Vec<CheckDecl>,
    pub selection: Selection,
    pub request: Request,
    /// What the API's code sets for its PostgreSQL client (`[postgres]`).
    pub postgres: ApiClient,
}

/// The environment being diagnosed: `--env`, else `$NODE_ENV`, else `development`.
pub fn environment_name(flag: Option<&str>, node_env: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| node_env.map(|v| v.trim().to_string()))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "development".to_string())
}

/// The built-in suite and every `--checks` path, loaded and validated.
pub fn load_manifests(extra: &[PathBuf]) -> Result<Loaded, UsageError> {
    let mut sources = vec![Source::builtin()];
    for path in extra {
        sources.extend(Source::from_path(path)?);
    }
    manifest::load_all(&sources)
}

impl Plan {
    /// Reads the env files over `vars` (the process environment) in `cwd`, loads
    /// the manifests and makes the selection.
    pub fn load(request: Request, vars: Vec<(String, String)>, cwd: &Path) -> Result<Plan, UsageError> {
        let node_env = vars.iter().find(|(k, _)| k == "NODE_ENV").map(|(_, v)| v.clone());
        let environment = environment_name(request.env.as_deref(), node_env.as_deref());
        let set = EnvSet::load(vars, cwd, &environment, &request.env_files)?;
        let Loaded { checks: decls, postgres } = load_manifests(&request.checks)?;
        let selection = Selection::new(&decls, &request.only, &request.skip)?;
        Ok(Plan { environment, set: Arc::new(set), decls, selection, request, postgres })
    }

    /// The secrets of the environment this plan read (process and env files).
    pub fn secrets(&self) -> Redactor {
        Redactor::from_env(self.set.iter())
    }

    /// A fresh window on the environment: it records what the checks read.
    pub fn view(&self) -> EnvView {
        EnvView::new(self.set.clone())
    }

    /// How many checks `selection` runs.
    pub fn running(&self, selection: &Selection) -> usize {
        self.decls.iter().filter(|d| selection.runs(&d.id)).count()
    }

    /// One attempt over `selection`, on connections of its own.
    pub async fn attempt(
        &self,
        selection: &Selection,
        view: &EnvView,
        observer: Arc<dyn Observer>,
    ) -> Vec<CheckResult> {
        let mut ctx = Ctx::new(view.clone(), self.environment.clone(), self.request.timeout);
        ctx.probes = Probes::new(self.postgres.clone());
        ctx.allow_writes = self.request.allow_writes;
        ctx.user_id = self.request.user_id;
        engine::run_observed(&self.decls, selection, Arc::new(ctx), observer).await
    }

    /// The report of `checks`, which took `duration` since `started`.
    pub fn report(&self, checks: Vec<CheckResult>, view: &EnvView, started: SystemTime, duration: Duration) -> Report {
        Report {
            tool: TOOL,
            version: VERSION,
            schema_version: SCHEMA_VERSION,
            environment: self.environment.clone(),
            env_files: self.set.files().to_vec(),
            started_at: humantime::format_rfc3339_seconds(started).to_string(),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            summary: Summary::of(&checks),
            checks,
            variables: view.uses(),
        }
    }

    /// Whether another attempt could change this check's result: a service check
    /// that trips `fail_on`, or one skipped because a need worth retrying failed or
    /// because its cause is another check's finding worth retrying (`see`). The
    /// environment is read once per run, so env checks never qualify, nor what
    /// defers to them (a missing variable ends the wait at once).
    pub fn worth_retrying(&self, id: &str, checks: &[CheckResult], fail_on: FailOn) -> bool {
        let decls = &self.decls;
        let (Some(decl), Some(result)) = (decls.iter().find(|d| d.id == id), checks.iter().find(|c| c.id == id)) else {
            return false;
        };
        if decl.kind.category() == "env" {
            return false;
        }
        if let Some(owner) = &result.see {
            return owner != id && self.worth_retrying(owner, checks, fail_on);
        }
        fail_on.trips(result.status)
            || (result.status == Status::Skip
                && decl.needs.iter().any(|need| {
                    checks.iter().any(|c| &c.id == need && c.status != Status::Pass)
                        && self.worth_retrying(need, checks, fail_on)
                }))
    }
}
