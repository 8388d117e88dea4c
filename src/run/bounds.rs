//! What stops an attempt from outside: the interrupt (SIGINT, SIGTERM, a server
//! shutting down) and a deadline for the whole attempt (`--wait`'s end, a
//! scrape's timeout). Each check is wrapped ([`Bounded`]) so the engine need
//! not know: an interrupted check ends `Interrupted`, one cut by the deadline
//! `Cut`, each decided here.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::check::{Check, Ctx, Outcome, Stopped};
use crate::probe::activity::Activity;

/// Stops a run from outside: checks still running end as `skip` ("interrupted"),
/// and a `--wait` stops waiting. A second signal abandons the run altogether.
#[derive(Clone)]
pub struct Interrupt(Arc<watch::Sender<Signals>>);

/// The signals received so far.
#[derive(Debug, Clone, Copy, Default)]
struct Signals {
    /// The first, which names the interrupt.
    first: Option<&'static str>,
    /// A second one: the report of what finished is no longer wanted.
    again: bool,
}

impl Default for Interrupt {
    fn default() -> Self {
        Interrupt(Arc::new(watch::Sender::new(Signals::default())))
    }
}

impl Interrupt {
    /// Interrupts, naming why (`SIGINT`). The first reason stays; a second
    /// trigger abandons the run ([`Interrupt::abandoned`]).
    pub fn trigger(&self, reason: &'static str) {
        self.0.send_modify(|s| match s.first {
            None => s.first = Some(reason),
            Some(_) => s.again = true,
        });
    }

    /// Why the run was interrupted, if it was.
    pub fn reason(&self) -> Option<&'static str> {
        self.0.borrow().first
    }

    /// Resolves once interrupted.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.subscribe();
        async move {
            let _ = rx.wait_for(|s| s.first.is_some()).await;
        }
    }

    /// Resolves once interrupted twice: stop now, report nothing.
    pub fn abandoned(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.subscribe();
        async move {
            let _ = rx.wait_for(|s| s.again).await;
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
        let outcome = match self {
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
        };
        outcome.stopped_by(Stopped::Cut)
    }
}

/// Bounds a check by an attempt's deadline and interrupt, without the engine
/// knowing: an interrupted check is `skip`, one cut by `--wait` a problem.
pub(super) struct Bounded {
    pub(super) inner: Arc<dyn Check>,
    pub(super) bounds: Bounds,
}

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
                match self.bounds.deadline {
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
                () = self.bounds.interrupt.wait() => {
                    Outcome::interrupted(Activity::current().and_then(|activity| activity.describe()))
                }
                cut = deadline => cut.outcome(),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_interrupt_is_remembered_and_wakes_every_waiter_and_a_second_one_abandons() {
        let interrupt = Interrupt::default();
        assert_eq!(interrupt.reason(), None);
        let waiter = tokio::spawn(interrupt.wait());
        let abandoned = tokio::spawn(interrupt.abandoned());
        interrupt.trigger("SIGINT");
        waiter.await.expect("woken");
        assert!(!abandoned.is_finished());
        interrupt.trigger("SIGTERM");
        abandoned.await.expect("woken");
        assert_eq!(interrupt.reason(), Some("SIGINT"));
        // A waiter that starts after the interrupt resolves at once.
        interrupt.wait().await;
    }
}
