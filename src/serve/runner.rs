//! One target's results under load: a cache (`--cache`), single flight (a
//! target never has two runs at once; concurrent requests share one), and the
//! rules that make every answer true for the request it answers:
//!
//! - **Current.** A request takes a run that started at most `--cache` before
//!   it arrived (with `--cache 0s`: after it arrived), or the cached result of a
//!   run that finished less than `--cache` ago. An older run in flight is waited
//!   out, never presented as current.
//! - **Its own deadline.** Every request has a deadline (the scrape's timeout
//!   less a margin). A run is cut at the latest deadline of the requests it was
//!   started for; a result cut at an earlier deadline than a request's own is
//!   not that request's answer: it waits for a run good for its deadline.
//! - **Honest when late.** A request whose deadline passes before a run it may
//!   take has finished gets [`Late`] (`mockmate_up 0`, 503), never an older result.
//! - **Bounded.** Runs of a target start at least [`RUN_SPACING`] apart, however
//!   many clients ask: no client can turn `serve` into a login flood.
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

/// How long past its deadline a request waits for the run cut at that
/// deadline to report (its checks are cut at the deadline; the report follows).
/// Within the half second serve keeps of a scrape's timeout to answer in.
const REPORT_GRACE: Duration = Duration::from_millis(250);

/// Runs of one target start at least this far apart: at most 4 runs (about 8
/// PostgreSQL logins and 4 Redis connections) per second per target, however
/// many clients scrape it and whatever `--cache` says.
pub const RUN_SPACING: Duration = Duration::from_millis(250);

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

    /// Whether the run's deadline cut a check short: an answer for the requests
    /// whose deadline that was, not for one with a later deadline, nor a result
    /// to cache for the next.
    fn cut(&self) -> bool {
        self.report.as_ref().is_some_and(|r| r.checks.iter().any(|c| c.ending == Ending::Cut))
    }

    fn nothing() -> Done {
        Done { report: None, finished: SystemTime::now(), finished_at: Instant::now() }
    }
}

/// No run this request may take finished before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late;

/// A run in flight (or waiting for [`RUN_SPACING`] to start).
#[derive(Clone)]
struct Flight {
    id: u64,
    /// When its checks start.
    starts: Instant,
    /// When it is cut: the latest deadline of the requests it was started for.
    deadline: Instant,
    done: Shared<BoxFuture<'static, Arc<Done>>>,
}

#[derive(Default)]
struct State {
    /// The last run that completed and was not cut.
    last: Option<Arc<Done>>,
    flight: Option<Flight>,
    /// The latest deadline among requests waiting for a run after the one in
    /// flight: the next run is cut no earlier.
    wanted: Option<Instant>,
    /// When the last run started (or will), for [`RUN_SPACING`].
    last_start: Option<Instant>,
    flights: u64,
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

    /// The process's secrets and this target's: what its responses pass through.
    pub fn body(&self) -> &Body {
        &self.body
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The target's results for a request that arrived now and must be
    /// answered by `deadline` (see the module comment for the rules).
    pub async fn results(self: &Arc<Self>, deadline: Instant) -> Result<(Arc<Done>, Served), Late> {
        let arrived = Instant::now();
        // A run that started before this is too old to be this request's answer.
        let oldest_start = arrived.checked_sub(self.cache).unwrap_or(arrived);
        let mut served = Served::Joined;
        loop {
            let (flight, mine) = {
                let mut state = self.state();
                if let Some(last) = &state.last
                    && last.finished_at.elapsed() < self.cache
                {
                    return Ok((last.clone(), Served::Cached));
                }
                match state.flight.clone() {
                    Some(flight) if flight.starts >= oldest_start => {
                        // It may be cut before this request's deadline: if it
                        // is, the next run must last as long as this request may wait.
                        if flight.deadline < deadline {
                            state.wanted = state.wanted.max(Some(deadline));
                        }
                        (flight, true)
                    }
                    // Started too long ago: wait it out, then a run of our own.
                    Some(flight) => {
                        state.wanted = state.wanted.max(Some(deadline));
                        (flight, false)
                    }
                    None => {
                        let Some(flight) = self.start(&mut state, deadline) else { return Err(Late) };
                        served = Served::Ran;
                        (flight, true)
                    }
                }
            };
            let Ok(done) = tokio::time::timeout_at((deadline + REPORT_GRACE).into(), flight.done.clone()).await else {
                return Err(Late);
            };
            // A result cut at someone else's earlier deadline is not this request's.
            if mine && (!done.cut() || flight.deadline <= deadline) {
                return Ok((done, served));
            }
        }
    }

    /// Starts a run cut at `deadline` or the latest deadline waiting, whichever
    /// is later, once [`RUN_SPACING`] allows; `None` when no request waiting
    /// could still use it.
    fn start(self: &Arc<Self>, state: &mut State, deadline: Instant) -> Option<Flight> {
        let now = Instant::now();
        let deadline = state.wanted.take().map_or(deadline, |w| w.max(deadline));
        let starts = state.last_start.map_or(now, |last| (last + RUN_SPACING).max(now));
        if deadline <= starts {
            return None;
        }
        state.flights += 1;
        state.last_start = Some(starts);
        let id = state.flights;
        // Spawned: the run goes on (and lands in the cache) even if every
        // request waiting for it goes away.
        let task = tokio::spawn(self.clone().run_and_keep(id, starts, deadline));
        let done = async move {
            // run_and_keep catches what can fail; a JoinError is a bug, still an answer.
            task.await.unwrap_or_else(|_| Arc::new(Done::nothing()))
        }
        .boxed()
        .shared();
        let flight = Flight { id, starts, deadline, done };
        state.flight = Some(flight.clone());
        Some(flight)
    }

    async fn run_and_keep(self: Arc<Self>, id: u64, starts: Instant, deadline: Instant) -> Arc<Done> {
        tokio::time::sleep_until(starts.into()).await;
        let me = self.clone();
        let done = tokio::task::spawn_blocking(move || me.run_once(deadline)).await.unwrap_or_else(|_| Done::nothing());
        let done = Arc::new(done);
        let mut state = self.state();
        if state.flight.as_ref().is_some_and(|f| f.id == id) {
            state.flight = None;
        }
        if done.completed() && !done.cut() {
            state.last = Some(done.clone());
        }
        done
    }

    /// One run, on this (blocking) thread, cut at `deadline`.
    fn run_once(&self, deadline: Instant) -> Done {
        let Ok(runtime) = run::runtime(Threads::One) else {
            return Done::nothing();
        };
        let plan = &self.plan;
        let budget = deadline.saturating_duration_since(Instant::now());
        let bounds = Bounds {
            timeout: plan.request.timeout.min(budget),
            deadline: Some((deadline.into(), Cut::Scrape(budget))),
            interrupt: self.interrupt.clone(),
        };
        let view = plan.view();
        let started = SystemTime::now();
        let clock = Instant::now();
        let (checks, leftovers) =
            runtime.block_on(plan.attempt_leaving(&plan.selection, &view, Arc::new(Quiet), &bounds));
        let diagnosis = Diagnosis { checks, attempts: 1, interrupted: self.interrupt.reason() };
        let report = self.body.redacted(&plan.report(diagnosis, &view, started, clock.elapsed()));
        // The scrape is answered first; what the run left running on the servers
        // is cancelled beside it (up to a second for a hung server), then every
        // connection closes with the runtime.
        std::thread::spawn(move || {
            runtime.block_on(leftovers.cancel());
            runtime.shutdown_timeout(SHUTDOWN_GRACE);
        });
        Done { report: Some(report), finished: SystemTime::now(), finished_at: Instant::now() }
    }
}
