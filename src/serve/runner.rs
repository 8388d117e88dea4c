//! One target's results under load: a cache (`--cache`), and single flight —
//! concurrent requests share one run, and a target never has two runs at once.
//!
//! A run is the run path's own ([`Plan::attempt`], [`Plan::report`]) on a runtime of its
//! own, shut down when the run ends, as `mockmate-diag run` does: every
//! connection the checks opened (PostgreSQL, Redis, those still connecting)
//! is closed with it, whatever the services do.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use super::metrics::Served;
use crate::engine::Quiet;
use crate::output::Body;
use crate::report::{Ending, Report};
use crate::run::{self, Bounds, Cut, Diagnosis, Interrupt, Plan, Threads};

/// How long a runtime that ended gets to close its connections politely.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(100);

/// A run's outcome, as every endpoint shows it.
pub struct Done {
    /// The report, redacted; `None` when the run could not take place.
    pub report: Option<Report>,
    /// When it finished (for `mockmate_last_run_timestamp_seconds`).
    pub finished: SystemTime,
    finished_at: Instant,
}

impl Done {
    /// Whether the run completed: every check had its say (not interrupted).
    pub fn completed(&self) -> bool {
        self.report.as_ref().is_some_and(|r| !r.interrupted)
    }

    /// Whether a scrape's deadline cut a check short: an answer for that
    /// scrape, not a result to keep for the next one (a short timeout sent by
    /// anyone must not be cached as failures).
    fn cut(&self) -> bool {
        self.report.as_ref().is_some_and(|r| r.checks.iter().any(|c| c.ending == Ending::Cut))
    }
}

type Flight = Shared<BoxFuture<'static, Arc<Done>>>;

#[derive(Default)]
struct State {
    /// The last completed run.
    last: Option<Arc<Done>>,
    /// The run in flight, which every request that comes meanwhile awaits.
    flight: Option<Flight>,
}

pub struct Runner {
    plan: Arc<Plan>,
    body: Body,
    cache: Duration,
    /// Shutdown: runs still going end their checks as `skip` ("interrupted").
    interrupt: Interrupt,
    state: Mutex<State>,
}

impl Runner {
    pub fn new(plan: Plan, body: Body, cache: Duration, interrupt: Interrupt) -> Runner {
        Runner { plan: Arc::new(plan), body, cache, interrupt, state: Mutex::default() }
    }

    /// Where this target's responses leave: redacted with the process's secrets and its own.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// The target's results: cached when the last run finished less than
    /// `--cache` ago, else those of the run in flight, else of a new run bounded
    /// by `budget` (the scrape's timeout less a margin) as well as `--timeout`.
    pub async fn results(self: &Arc<Self>, budget: Option<Duration>) -> (Arc<Done>, Served) {
        let (flight, served, limit) = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(last) = &state.last
                && last.finished_at.elapsed() < self.cache
            {
                return (last.clone(), Served::Cached);
            }
            match &state.flight {
                // A run someone else started, under their deadline: this request
                // waits for it no longer than its own, then answers with the last
                // result kept (or none).
                Some(flight) => (flight.clone(), Served::Joined, budget.map(|b| (b, state.last.clone()))),
                None => {
                    // Spawned: the run goes on (and lands in the cache) even if
                    // the request that started it goes away.
                    let task = tokio::spawn(self.clone().run_and_keep(budget));
                    let flight = async move {
                        // run_and_keep catches what can fail; a JoinError is a bug, still an answer.
                        task.await.unwrap_or_else(|_| Arc::new(Done::nothing()))
                    }
                    .boxed()
                    .shared();
                    state.flight = Some(flight.clone());
                    (flight, Served::Ran, None)
                }
            }
        };
        let done = match limit {
            Some((budget, stale)) => match tokio::time::timeout(budget, flight).await {
                Ok(done) => done,
                Err(_) => stale.unwrap_or_else(|| Arc::new(Done::nothing())),
            },
            None => flight.await,
        };
        (done, served)
    }

    async fn run_and_keep(self: Arc<Self>, budget: Option<Duration>) -> Arc<Done> {
        let me = self.clone();
        let done = tokio::task::spawn_blocking(move || me.run_once(budget)).await.unwrap_or_else(|_| Done::nothing());
        let done = Arc::new(done);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.flight = None;
        if done.completed() && !done.cut() {
            state.last = Some(done.clone());
        }
        done
    }

    /// One run, on this (blocking) thread.
    fn run_once(&self, budget: Option<Duration>) -> Done {
        let Ok(runtime) = run::runtime(Threads::One) else {
            return Done::nothing();
        };
        let plan = &self.plan;
        let timeout = budget.map_or(plan.request.timeout, |b| plan.request.timeout.min(b));
        let deadline = budget.map(|b| (tokio::time::Instant::now() + b, Cut::Scrape(b)));
        let bounds = Bounds { timeout, deadline, interrupt: self.interrupt.clone() };
        let view = plan.view();
        let started = SystemTime::now();
        let clock = Instant::now();
        let checks = runtime.block_on(plan.attempt(&plan.selection, &view, Arc::new(Quiet), &bounds));
        runtime.shutdown_timeout(SHUTDOWN_GRACE);
        let diagnosis = Diagnosis { checks, attempts: 1, interrupted: self.interrupt.reason() };
        let report = self.body.redacted(&plan.report(diagnosis, &view, started, clock.elapsed()));
        Done { report: Some(report), finished: SystemTime::now(), finished_at: Instant::now() }
    }
}

impl Done {
    fn nothing() -> Done {
        Done { report: None, finished: SystemTime::now(), finished_at: Instant::now() }
    }
}
