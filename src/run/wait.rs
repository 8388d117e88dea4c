//! One attempt over the plan's checks, and `--wait`: re-running what keeps the
//! gate closed until it opens or the wait is up. The result is a [`Diagnosis`]:
//! the final results and how they were reached.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::bounds::{Bounded, Bounds, Cut, Interrupt};
use super::plan::Plan;
use crate::check::Ctx;
use crate::engine::{self, Observer, Selection};
use crate::envctx::EnvView;
use crate::manifest::CheckDecl;
use crate::probe::shared::Probes;
use crate::report::{CheckResult, FailOn, Status};

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

/// An attempt's connections, once its checks have answered: statements a
/// check stopped waiting for may still be running on a server.
pub struct Leftovers(Arc<Ctx>);

impl Leftovers {
    /// Nothing of ours keeps running on the servers once the attempt is over
    /// (never mid-attempt: a backend may be running another check's statement).
    pub async fn cancel(self) {
        self.0.probes.cancel_abandoned(CANCEL_WITHIN).await;
    }
}

/// Each attempt's `--timeout` ends this much before the wait does, so that the
/// probes' own words ("timed out after 1s waiting for …") win over the cut.
const WAIT_SLACK: Duration = Duration::from_millis(150);
/// An attempt with less time than this is not worth starting.
const MIN_ATTEMPT: Duration = Duration::from_millis(100);
/// How long an attempt's end may spend cancelling what its checks left running.
const CANCEL_WITHIN: Duration = Duration::from_secs(1);
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(5);

impl Plan {
    /// One attempt over `selection` within `bounds`, on connections of its own;
    /// what its checks left running on the servers is cancelled before it returns.
    pub async fn attempt(
        &self,
        selection: &Selection,
        view: &EnvView,
        observer: Arc<dyn Observer>,
        bounds: &Bounds,
    ) -> Vec<CheckResult> {
        let (results, leftovers) = self.attempt_leaving(selection, view, observer, bounds).await;
        leftovers.cancel().await;
        results
    }

    /// [`Plan::attempt`], leaving the cancelling of what its checks left running
    /// to the caller ([`Leftovers::cancel`]), who may answer first (a scrape).
    pub async fn attempt_leaving(
        &self,
        selection: &Selection,
        view: &EnvView,
        observer: Arc<dyn Observer>,
        bounds: &Bounds,
    ) -> (Vec<CheckResult>, Leftovers) {
        let mut ctx = Ctx::new(view.clone(), self.environment.clone(), bounds.timeout);
        ctx.probes = Probes::new(self.postgres.clone());
        ctx.allow_writes = self.request.allow_writes;
        ctx.user_id = self.request.user_id;
        ctx.api_url = self.request.api_url.clone();
        let decls: Vec<CheckDecl> = self
            .decls
            .iter()
            .map(|d| CheckDecl {
                check: Arc::new(Bounded { inner: d.check.clone(), bounds: bounds.clone() }),
                ..d.clone()
            })
            .collect();
        let ctx = Arc::new(ctx);
        let results = engine::run(&decls, selection, ctx.clone(), observer).await;
        (results, Leftovers(ctx))
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
            let checks = self.attempt(&self.selection, view, observe(&self.selection), &bounds).await;
            return Diagnosis { checks, attempts: 1, interrupted: interrupt.reason() };
        };
        let deadline = Instant::now() + wait;
        let bounds_now = || {
            let left = deadline.saturating_duration_since(Instant::now()).saturating_sub(WAIT_SLACK);
            let timeout = self.request.timeout.min(left).max(MIN_ATTEMPT);
            Bounds { timeout, deadline: Some((deadline, Cut::Wait(wait))), interrupt: interrupt.clone() }
        };
        let mut checks = self.attempt(&self.selection, view, observe(&self.selection), &bounds_now()).await;
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
            let fresh = self.attempt(&selection, view, observe(&selection), &bounds_now()).await;
            attempts += 1;
            for result in fresh {
                // An interrupted retry keeps the previous attempt's answer for what it did not finish.
                if selection.runs(&result.id)
                    && !result.ending.interrupted()
                    && let Some(slot) = checks.iter_mut().find(|c| c.id == result.id)
                {
                    *slot = result;
                }
            }
        }
        Diagnosis { checks, attempts, interrupted: interrupt.reason() }
    }

    /// Whether another attempt could change this check's result: a service check
    /// that trips `fail_on`, or one skipped because a need worth retrying failed or
    /// because its cause is another check's finding worth retrying (`see`). The
    /// environment is read once per run, so env checks never qualify, nor what
    /// defers to them (a missing variable ends the wait at once).
    fn worth_retrying(&self, id: &str, checks: &[CheckResult], fail_on: FailOn) -> bool {
        let decls = &self.decls;
        let (Some(decl), Some(result)) = (decls.iter().find(|d| d.id == id), checks.iter().find(|c| c.id == id)) else {
            return false;
        };
        // The environment is read once per run: a finding that rests on it (an env
        // check's, or a connect's to an unset DATABASE_URL when env.required is
        // not in the run) would read the same again.
        if decl.kind.category() == "env" || result.from_configuration {
            return false;
        }
        if let Some(owner) = result.ending.see() {
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
