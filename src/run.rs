//! One diagnosis, from an environment and manifests to a report: what a run,
//! each `--wait` attempt and `serve` share. The command line and the printing
//! stay in `app` (and `serve`); this module decides nothing about output: it
//! reports what happens (an attempt's progress, a retry) to the caller's
//! observers.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::check::{Check, Ctx, Outcome};
use crate::engine::{self, Observer, Selection};
use crate::envctx::{EnvSet, EnvView};
use crate::error::UsageError;
use crate::manifest::{self, CheckDecl, Loaded, Source};
use crate::probe::Probes;
use crate::probe::postgres::ApiClient;
use crate::redact::Redactor;
use crate::report::{
    BUILD_DATE, COMMIT, CheckResult, FailOn, Report, RunOptions, SCHEMA_VERSION, Status, Summary, TOOL, VERSION,
};

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
    /// `--fail-on`: what `--wait` waits out, and what the report is judged by.
    pub fail_on: FailOn,
    /// `--wait`: re-run what keeps the gate closed until it opens or this is up.
    pub wait: Option<Duration>,
}

impl Request {
    /// The options as every report records them.
    pub fn options(&self) -> RunOptions {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let paths = |p: &[PathBuf]| p.iter().map(|p| p.display().to_string()).collect();
        RunOptions {
            env: self.env.clone(),
            env_files: paths(&self.env_files),
            checks: paths(&self.checks),
            only: self.only.clone(),
            skip: self.skip.clone(),
            timeout_ms: ms(self.timeout),
            fail_on: self.fail_on,
            allow_writes: self.allow_writes,
            user_id: self.user_id.map(|u| u.to_string()),
            wait_ms: self.wait.map(ms),
        }
    }
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
    /// Run-level remarks for the report (see [`Report::notes`]).
    pub notes: Vec<String>,
}

/// Where the environment's name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chosen {
    Flag,
    NodeEnv,
    Default,
}

/// The environment being diagnosed: `--env`, else `$NODE_ENV`, else `development`.
pub fn environment_name(flag: Option<&str>, node_env: Option<&str>) -> String {
    choose_environment(flag, node_env).0
}

fn choose_environment(flag: Option<&str>, node_env: Option<&str>) -> (String, Chosen) {
    let nonblank = |v: &str| !v.trim().is_empty();
    match (flag.filter(|v| nonblank(v)), node_env.filter(|v| nonblank(v))) {
        (Some(f), _) => (f.to_string(), Chosen::Flag),
        (None, Some(n)) => (n.trim().to_string(), Chosen::NodeEnv),
        (None, None) => ("development".to_string(), Chosen::Default),
    }
}

/// The built-in suite and every `--checks` path, loaded and validated, grouped
/// by category (env, postgres, redis, …, in order of first appearance) so that
/// every output lists a service's checks together.
pub fn load_manifests(extra: &[PathBuf]) -> Result<Loaded, UsageError> {
    let mut sources = vec![Source::builtin()];
    for path in extra {
        sources.extend(Source::from_path(path)?);
    }
    let Loaded { checks: mut decls, postgres, loader } = manifest::load_all(&sources)?;
    let mut categories: Vec<&'static str> = Vec::new();
    for d in &decls {
        if !categories.contains(&d.kind.category()) {
            categories.push(d.kind.category());
        }
    }
    // A stable sort: within a category, manifest order.
    decls.sort_by_key(|d| categories.iter().position(|c| *c == d.kind.category()));
    Ok(Loaded { checks: decls, postgres, loader })
}

/// Env files that are examples or local overrides, not an environment of their own.
pub const NOT_ENVIRONMENTS: &[&str] = &["example", "sample", "template", "dist", "defaults", "local", "vault"];

/// `.env.NAME` files in `dir` (their NAMEs, sorted) that name an environment.
fn env_files_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix(".env.")).map(str::to_string))
        .filter(|n| {
            !n.is_empty()
                && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
                && !NOT_ENVIRONMENTS.contains(&n.to_ascii_lowercase().as_str())
        })
        .collect();
    names.sort();
    names
}

/// "did you mean `--env production`?" when the environment chosen has no
/// `.env.NAME` in `dir` but other environments do.
fn wrong_environment_note(dir: &Path, environment: &str, chosen: Chosen) -> Option<String> {
    let others = env_files_in(dir);
    if others.is_empty() || others.iter().any(|n| n == environment) {
        return None;
    }
    let why = match chosen {
        Chosen::Flag => format!("--env {environment}"),
        Chosen::NodeEnv => format!("NODE_ENV is {environment}"),
        Chosen::Default => "the default without --env or NODE_ENV".to_string(),
    };
    let files: Vec<String> = others.iter().map(|n| format!(".env.{n}")).collect();
    let suggestion = match others.as_slice() {
        [one] => format!("did you mean --env {one}?"),
        _ => format!(
            "did you mean one of: {}?",
            others.iter().map(|n| format!("--env {n}")).collect::<Vec<_>>().join(", ")
        ),
    };
    Some(format!(
        "diagnosing environment {environment} ({why}), but this directory has no .env.{environment}, only {}: {suggestion}",
        files.join(", ")
    ))
}

/// Stops a run from outside (SIGINT, SIGTERM, a server shutting down): checks
/// still running end as `skip` ("interrupted"), and a `--wait` stops waiting.
#[derive(Clone)]
pub struct Interrupt(Arc<watch::Sender<Option<&'static str>>>);

impl Default for Interrupt {
    fn default() -> Self {
        Interrupt(Arc::new(watch::Sender::new(None)))
    }
}

impl Interrupt {
    /// Interrupts, naming why (`SIGINT`). The first reason stays.
    pub fn trigger(&self, reason: &'static str) {
        self.0.send_if_modified(|r| r.is_none() && r.replace(reason).is_none());
    }

    /// Why the run was interrupted, if it was.
    pub fn reason(&self) -> Option<&'static str> {
        *self.0.borrow()
    }

    /// Resolves once interrupted.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.subscribe();
        async move {
            let _ = rx.wait_for(Option::is_some).await;
        }
    }
}

/// What bounds one attempt: the per-check timeout, a deadline for the whole
/// attempt (`--wait`'s end, a scrape's timeout), and the interrupt.
#[derive(Clone)]
pub struct Bounds {
    pub timeout: Duration,
    /// When the attempt must be over, and what set that time: unfinished checks
    /// then fail, naming it.
    pub deadline: Option<(Instant, Cut)>,
    pub interrupt: Interrupt,
}

/// What set an attempt's deadline, in the words of the checks it cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// `--wait DURATION` ran out.
    Wait(Duration),
    /// `serve`: the scrape's timeout (less a margin to answer in) ran out.
    Scrape(Duration),
}

impl Cut {
    fn outcome(self) -> Outcome {
        let took = |d: Duration| humantime::format_duration(d).to_string();
        match self {
            Cut::Wait(wait) => Outcome::problem(format!("still running when --wait {} ran out", took(wait)))
                .hint("the service did not answer in time: check it is up and reachable, or raise --wait"),
            Cut::Scrape(budget) => Outcome::problem(format!(
                "still running when the scrape's deadline ({}) ran out",
                crate::probe::human(budget)
            ))
            .hint(
                "the service did not answer in time: check it is up and reachable, or raise the scrape_timeout \
                 (serve answers 0.5s before it)",
            ),
        }
    }
}

/// One attempt's results.
pub struct Attempted {
    pub checks: Vec<CheckResult>,
    pub interrupted: bool,
}

/// The whole diagnosis: the final results and how they were reached.
pub struct Diagnosis {
    pub checks: Vec<CheckResult>,
    /// How many attempts ran (1 without `--wait`).
    pub attempts: u32,
    /// Why it was interrupted (`SIGINT`), if it was.
    pub interrupted: Option<&'static str>,
}

/// A `--wait` retry about to happen: the caller may say so (stderr).
pub struct Retry<'a> {
    /// The attempt that just ended (1-based).
    pub attempt: u32,
    /// The checks that keep the gate closed (not the skips that follow from them).
    pub failing: Vec<&'a CheckResult>,
    pub pause: Duration,
}

/// Bounds a check by an attempt's deadline and interrupt, without the engine
/// knowing: an interrupted check is `skip`, one cut by `--wait` a problem.
struct Bounded {
    inner: Arc<dyn Check>,
    deadline: Option<(Instant, Cut)>,
    interrupt: Interrupt,
}

/// The detail that marks a check the interrupt stopped (or never let start).
pub const INTERRUPTED: &str = "interrupted";
/// Its message.
pub const INTERRUPTED_MESSAGE: &str = "interrupted before it finished";
/// The detail that marks a check an attempt's deadline cut (`--wait`, a scrape's timeout).
pub const CUT_BY_DEADLINE: &str = "cut_by_deadline";

impl Check for Bounded {
    fn warm(&self, ctx: &Ctx) {
        self.inner.warm(ctx);
    }

    fn only_reads(&self) -> bool {
        self.inner.only_reads()
    }

    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let deadline = async {
                match self.deadline {
                    Some((at, cut)) => {
                        tokio::time::sleep_until(at).await;
                        cut
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                outcome = self.inner.run(ctx) => outcome,
                () = self.interrupt.wait() => Outcome::skip(INTERRUPTED_MESSAGE).detail(INTERRUPTED, true),
                cut = deadline => cut.outcome().detail(CUT_BY_DEADLINE, true),
            }
        }
        .boxed()
    }
}

/// Each attempt's `--timeout` ends this much before the wait does, so that the
/// probes' own words ("timed out after 1s waiting for …") win over the cut.
const WAIT_SLACK: Duration = Duration::from_millis(150);
/// An attempt with less time than this is not worth starting.
const MIN_ATTEMPT: Duration = Duration::from_millis(100);
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(5);

impl Plan {
    /// Reads the env files over `vars` (the process environment) in `cwd`, loads
    /// the manifests and makes the selection.
    pub fn load(request: Request, vars: Vec<(String, String)>, cwd: &Path) -> Result<Plan, UsageError> {
        let node_env = vars.iter().find(|(k, _)| k == "NODE_ENV").map(|(_, v)| v.clone());
        let (environment, chosen) = choose_environment(request.env.as_deref(), node_env.as_deref());
        // The manifests first: `[env] loader` says how the API reads its env files.
        let Loaded { checks: decls, postgres, loader } = load_manifests(&request.checks)?;
        let set = EnvSet::load(vars, cwd, &environment, &request.env_files, loader)?;
        let selection = Selection::new(&decls, &request.only, &request.skip)?;
        // With --env-file the files are chosen by hand: nothing to second-guess.
        let mut notes: Vec<String> = if request.env_files.is_empty() {
            wrong_environment_note(cwd, &environment, chosen).into_iter().collect()
        } else {
            Vec::new()
        };
        notes.extend(set.notes());
        Ok(Plan { environment, set: Arc::new(set), decls, selection, request, notes, postgres })
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

    /// One attempt over `selection`, on connections of its own, bounded only by `--timeout`.
    pub async fn attempt(
        &self,
        selection: &Selection,
        view: &EnvView,
        observer: Arc<dyn Observer>,
    ) -> Vec<CheckResult> {
        let bounds = Bounds { timeout: self.request.timeout, deadline: None, interrupt: Interrupt::default() };
        self.attempt_within(selection, view, observer, &bounds).await.checks
    }

    /// One attempt over `selection` within `bounds`.
    pub async fn attempt_within(
        &self,
        selection: &Selection,
        view: &EnvView,
        observer: Arc<dyn Observer>,
        bounds: &Bounds,
    ) -> Attempted {
        let mut ctx = Ctx::new(view.clone(), self.environment.clone(), bounds.timeout);
        ctx.probes = Probes::new(self.postgres.clone());
        ctx.allow_writes = self.request.allow_writes;
        ctx.user_id = self.request.user_id;
        let decls: Vec<CheckDecl> = self
            .decls
            .iter()
            .map(|d| CheckDecl {
                check: Arc::new(Bounded {
                    inner: d.check.clone(),
                    deadline: bounds.deadline,
                    interrupt: bounds.interrupt.clone(),
                }),
                ..d.clone()
            })
            .collect();
        let mut checks = engine::run_observed(&decls, selection, Arc::new(ctx), observer).await;
        let interrupted = bounds.interrupt.reason().is_some();
        if interrupted {
            self.mark_interrupted(&mut checks);
        }
        Attempted { checks, interrupted }
    }

    /// After an interrupt, a check skipped because a need was interrupted was
    /// interrupted too (not "needs X, which was skipped").
    fn mark_interrupted(&self, checks: &mut [CheckResult]) {
        let is_interrupted = |c: &CheckResult| c.details.get(INTERRUPTED).and_then(|v| v.as_bool()) == Some(true);
        loop {
            let marked: Vec<String> = checks.iter().filter(|c| is_interrupted(c)).map(|c| c.id.clone()).collect();
            let mut changed = false;
            for c in checks.iter_mut().filter(|c| c.status == Status::Skip && !is_interrupted(c)) {
                let needs = self.decls.iter().find(|d| d.id == c.id).map(|d| d.needs.as_slice()).unwrap_or_default();
                if self.selection.runs(&c.id) && needs.iter().any(|n| marked.contains(n)) {
                    c.message = INTERRUPTED_MESSAGE.to_string();
                    c.details.insert(INTERRUPTED.to_string(), true.into());
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// The whole diagnosis: one attempt, or with `--wait` as many as the wait
    /// allows, re-running what keeps the gate closed — service checks at or above
    /// `--fail-on`, and checks skipped because something they need did not pass —
    /// with exponential backoff (250 ms doubling to 5 s). Skips by choice
    /// (`--skip`, read-only runs) are final. The wait bounds everything: each
    /// attempt's `--timeout` is cut to what is left of it, and a check still
    /// running when it ends fails. `observe` gives each attempt its observer;
    /// `on_retry` hears of each retry before its pause.
    pub async fn diagnose(
        &self,
        view: &EnvView,
        interrupt: &Interrupt,
        observe: impl Fn(&Selection) -> Arc<dyn Observer>,
        on_retry: impl Fn(&Retry<'_>),
    ) -> Diagnosis {
        let Some(wait) = self.request.wait else {
            let bounds = Bounds { timeout: self.request.timeout, deadline: None, interrupt: interrupt.clone() };
            let done = self.attempt_within(&self.selection, view, observe(&self.selection), &bounds).await;
            return Diagnosis { checks: done.checks, attempts: 1, interrupted: interrupt.reason() };
        };
        let deadline = Instant::now() + wait;
        let bounds_now = || {
            let left = deadline.saturating_duration_since(Instant::now()).saturating_sub(WAIT_SLACK);
            let timeout = self.request.timeout.min(left).max(MIN_ATTEMPT);
            Bounds { timeout, deadline: Some((deadline, Cut::Wait(wait))), interrupt: interrupt.clone() }
        };
        let first = bounds_now();
        let mut checks = self.attempt_within(&self.selection, view, observe(&self.selection), &first).await.checks;
        let mut attempts = 1;
        let mut pause = FIRST_PAUSE;
        while interrupt.reason().is_none() {
            let retry: Vec<&CheckResult> =
                checks.iter().filter(|c| self.worth_retrying(&c.id, &checks, self.request.fail_on)).collect();
            let left = deadline.saturating_duration_since(Instant::now());
            // Pause, then an attempt of at least MIN_ATTEMPT, within the wait (the
            // attempt's deadline cuts whatever is still running when the wait ends).
            let this_pause = pause.min(left.saturating_sub(MIN_ATTEMPT));
            if retry.is_empty() || left < MIN_ATTEMPT {
                break;
            }
            let failing: Vec<&CheckResult> = retry.iter().copied().filter(|c| c.status != Status::Skip).collect();
            on_retry(&Retry { attempt: attempts, failing, pause: this_pause });
            tokio::select! {
                () = tokio::time::sleep(this_pause) => {}
                () = interrupt.wait() => break,
            }
            pause = (pause * 2).min(MAX_PAUSE);
            let ids: Vec<String> = retry.iter().map(|c| c.id.clone()).collect();
            let Ok(selection) = Selection::new(&self.decls, &ids, &self.request.skip) else { break };
            let fresh = self.attempt_within(&selection, view, observe(&selection), &bounds_now()).await;
            attempts += 1;
            for result in fresh.checks {
                // An interrupted retry keeps the previous attempt's answer for what it did not finish.
                let unfinished = result.details.get(INTERRUPTED).and_then(|v| v.as_bool()) == Some(true);
                if selection.runs(&result.id)
                    && !unfinished
                    && let Some(slot) = checks.iter_mut().find(|c| c.id == result.id)
                {
                    *slot = result;
                }
            }
        }
        Diagnosis { checks, attempts, interrupted: interrupt.reason() }
    }

    /// The report of `checks`, which took `duration` since `started` (one
    /// attempt, not interrupted: the caller sets `attempts` and `interrupted`).
    pub fn report(&self, checks: Vec<CheckResult>, view: &EnvView, started: SystemTime, duration: Duration) -> Report {
        let mut checks = checks;
        for c in &mut checks {
            if let Some(d) = self.decls.iter().find(|d| d.id == c.id) {
                c.needs = d.needs.clone();
            }
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
            summary: Summary::of(&checks),
            checks,
            variables: view.uses(),
            options: self.request.options(),
            attempts: 1,
            interrupted: false,
            notes: self.notes.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_comes_from_the_flag_then_node_env_then_the_default() {
        assert_eq!(choose_environment(Some("staging"), Some("production")), ("staging".into(), Chosen::Flag));
        assert_eq!(choose_environment(None, Some(" production ")), ("production".into(), Chosen::NodeEnv));
        assert_eq!(choose_environment(None, Some(" ")), ("development".into(), Chosen::Default));
    }

    #[test]
    fn a_lone_env_file_for_another_environment_is_pointed_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(".env.production"), "A=1\n").expect("write");
        std::fs::write(dir.path().join(".env.example"), "A=\n").expect("write");
        let note = wrong_environment_note(dir.path(), "development", Chosen::Default).expect("a note");
        assert_eq!(
            note,
            "diagnosing environment development (the default without --env or NODE_ENV), but this directory has \
             no .env.development, only .env.production: did you mean --env production?"
        );
        assert!(wrong_environment_note(dir.path(), "production", Chosen::Flag).is_none());
        std::fs::write(dir.path().join(".env.staging"), "A=1\n").expect("write");
        let note = wrong_environment_note(dir.path(), "prod", Chosen::NodeEnv).expect("a note");
        assert!(note.contains("(NODE_ENV is prod)"), "{note}");
        assert!(note.ends_with("did you mean one of: --env production, --env staging?"), "{note}");
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(wrong_environment_note(empty.path(), "development", Chosen::Default).is_none());
    }

    #[test]
    fn manifests_are_grouped_by_category() {
        let decls = load_manifests(&[]).expect("built-in manifest").checks;
        let categories: Vec<&str> = decls.iter().map(|d| d.kind.category()).collect();
        let mut seen: Vec<&str> = Vec::new();
        for c in &categories {
            if seen.last() != Some(c) {
                assert!(!seen.contains(c), "{c} appears in two groups: {categories:?}");
                seen.push(c);
            }
        }
    }

    #[tokio::test]
    async fn an_interrupt_is_remembered_and_wakes_every_waiter() {
        let interrupt = Interrupt::default();
        assert_eq!(interrupt.reason(), None);
        let waiter = tokio::spawn(interrupt.wait());
        interrupt.trigger("SIGINT");
        interrupt.trigger("SIGTERM");
        waiter.await.expect("woken");
        assert_eq!(interrupt.reason(), Some("SIGINT"));
        // A waiter that starts after the interrupt resolves at once.
        interrupt.wait().await;
    }
}
