//! Runs the selected checks concurrently, each under the run's deadline.
//!
//! Dependencies (`needs`) are awaited, not serialised: every check starts at
//! once and waits only for what it needs. A check whose dependency did not pass
//! is `skip`; a check that runs out of time or panics is a failure of that
//! check, never of the run. Results come back in manifest order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared, join_all};

use crate::envctx::EnvView;
use crate::error::UsageError;
use crate::kinds::{Outcome, Verdict};
use crate::manifest::CheckDecl;
use crate::probe::Probes;
use crate::report::{CheckResult, Status};

/// Everything a check may see of the world.
pub struct Ctx {
    pub env: EnvView,
    /// The environment being diagnosed (`--env`).
    pub environment: String,
    /// The per-check deadline (`--timeout`).
    pub timeout: Duration,
    /// `--allow-writes`: write probes may run (and always roll back / clean up).
    pub allow_writes: bool,
    /// `--user-id`: the user a support ticket is about.
    pub user_id: Option<String>,
    /// The shared connections, opened on first use, one per service.
    pub probes: Probes,
}

impl Ctx {
    pub fn new(env: EnvView, environment: impl Into<String>, timeout: Duration) -> Ctx {
        Ctx {
            env,
            environment: environment.into(),
            timeout,
            allow_writes: false,
            user_id: None,
            probes: Probes::default(),
        }
    }

    /// The run's one PostgreSQL session (connected by the first check that asks).
    pub async fn postgres(&self) -> Result<Arc<crate::probe::postgres::PgSession>, crate::probe::Failure> {
        let env = self.env.clone();
        self.probes.postgres(&move |name: &str| env.get(name), self.timeout).await
    }

    /// The run's one Redis connection (connected by the first check that asks).
    pub async fn redis(&self) -> Result<Arc<crate::probe::redis::RedisSession>, crate::probe::Failure> {
        let env = self.env.clone();
        self.probes.redis(&move |name: &str| env.get(name), self.timeout).await
    }

    pub fn is_production(&self) -> bool {
        self.environment.eq_ignore_ascii_case("production")
    }
}

/// Which checks run: `--only` (plus what they need) minus `--skip`.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    skipped: HashMap<String, &'static str>,
}

impl Selection {
    pub fn new(decls: &[CheckDecl], only: &[String], skip: &[String]) -> Result<Selection, UsageError> {
        let known: HashSet<&str> = decls.iter().map(|d| d.id.as_str()).collect();
        for id in only.iter().chain(skip) {
            if !known.contains(id.as_str()) {
                return Err(UsageError::new(format!("unknown check id `{id}` (see `mockmate-diag list` for the ids)")));
            }
        }
        let mut run: HashSet<String> = HashSet::new();
        if only.is_empty() {
            run.extend(decls.iter().map(|d| d.id.clone()));
        } else {
            // A selected check brings what it needs: it cannot be judged without it.
            let by_id: HashMap<&str, &CheckDecl> = decls.iter().map(|d| (d.id.as_str(), d)).collect();
            let mut stack: Vec<&str> = only.iter().map(String::as_str).collect();
            while let Some(id) = stack.pop() {
                if run.insert(id.to_string())
                    && let Some(d) = by_id.get(id)
                {
                    stack.extend(d.needs.iter().map(String::as_str));
                }
            }
        }
        let mut skipped = HashMap::new();
        for d in decls {
            if skip.contains(&d.id) {
                skipped.insert(d.id.clone(), "skipped by --skip");
            } else if !run.contains(&d.id) {
                skipped.insert(d.id.clone(), "not selected by --only");
            }
        }
        Ok(Selection { skipped })
    }

    pub fn all() -> Selection {
        Selection::default()
    }

    fn skip_reason(&self, id: &str) -> Option<&'static str> {
        self.skipped.get(id).copied()
    }
}

type SharedResult = Shared<BoxFuture<'static, CheckResult>>;

/// Runs `decls` under `selection`; results in manifest order.
pub async fn run(decls: &[CheckDecl], selection: &Selection, ctx: Arc<Ctx>) -> Vec<CheckResult> {
    let by_id: HashMap<&str, &CheckDecl> = decls.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut futures: HashMap<String, SharedResult> = HashMap::new();
    // Build in dependency order (the manifest loader rejected cycles).
    fn build(
        id: &str,
        by_id: &HashMap<&str, &CheckDecl>,
        selection: &Selection,
        ctx: &Arc<Ctx>,
        futures: &mut HashMap<String, SharedResult>,
    ) -> Option<SharedResult> {
        if let Some(f) = futures.get(id) {
            return Some(f.clone());
        }
        let decl = (*by_id.get(id)?).clone();
        let deps: Vec<(String, SharedResult)> = decl
            .needs
            .iter()
            .filter_map(|n| build(n, by_id, selection, ctx, futures).map(|f| (n.clone(), f)))
            .collect();
        let skip = selection.skip_reason(id);
        let ctx = ctx.clone();
        let fut = async move {
            if let Some(reason) = skip {
                return finish(&decl, Outcome::skip(reason), Duration::ZERO);
            }
            let results = join_all(deps.into_iter().map(|(n, f)| f.map(move |r| (n, r.status)))).await;
            if let Some((need, status)) = results.into_iter().find(|(_, s)| *s != Status::Pass) {
                let why = format!("needs {need}, which is {}", status.as_str());
                return finish(&decl, Outcome::skip(why), Duration::ZERO);
            }
            run_one(decl, ctx).await
        }
        .boxed()
        .shared();
        futures.insert(id.to_string(), fut.clone());
        Some(fut)
    }
    let ordered: Vec<SharedResult> =
        decls.iter().filter_map(|d| build(&d.id, &by_id, selection, &ctx, &mut futures)).collect();
    join_all(ordered).await
}

/// Runs one check on its own task, under the deadline, catching panics.
async fn run_one(decl: CheckDecl, ctx: Arc<Ctx>) -> CheckResult {
    let started = Instant::now();
    let deadline = ctx.timeout;
    let check = decl.check.clone();
    let task = tokio::spawn(async move { tokio::time::timeout(deadline, check.run(&ctx)).await });
    let outcome = match task.await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_elapsed)) => Outcome::problem(format!("timed out after {}", humantime::format_duration(deadline)))
            .hint("the service did not answer in time: check it is up and reachable, or raise --timeout"),
        Err(join) if join.is_panic() => {
            let msg = crate::redact::panic_message(&join.into_panic());
            Outcome::fail(format!("internal error: the check panicked: {msg}"))
                .hint("this is a bug in mockmate-diag: please report it with this output")
        }
        Err(_) => Outcome::fail("internal error: the check was cancelled"),
    };
    finish(&decl, outcome, started.elapsed())
}

fn finish(decl: &CheckDecl, outcome: Outcome, elapsed: Duration) -> CheckResult {
    let status = match outcome.verdict {
        Verdict::Pass => Status::Pass,
        Verdict::Problem => decl.severity.status(),
        Verdict::Warn => Status::Warn,
        Verdict::Fail => Status::Fail,
        Verdict::Skip => Status::Skip,
    };
    let hint = match status {
        Status::Warn | Status::Fail => outcome.hint.or_else(|| decl.hint.clone()),
        Status::Pass | Status::Skip => None,
    };
    CheckResult {
        id: decl.id.clone(),
        kind: decl.kind.name.to_string(),
        category: decl.kind.category().to_string(),
        title: decl.title.clone(),
        severity: decl.severity,
        status,
        message: outcome.message,
        hint,
        duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        details: outcome.details,
    }
}
