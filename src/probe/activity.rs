//! What a check is waiting on right now, so that an interruption can say it
//! ("2.0s waiting for PostgreSQL's reply to startup (10.0.0.5:5432)").
//!
//! Each check runs on a task of its own; the engine gives that task an
//! [`Activity`] ([`Activity::scope`]) and the probes, running on it, say what
//! they wait on ([`connecting`], [`waiting`]). Outside a check's task these
//! calls do nothing.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::net::{Phase, PhaseCell};

tokio::task_local! {
    static CURRENT: Activity;
}

/// One check's current wait.
#[derive(Clone, Default)]
pub struct Activity(Arc<Mutex<Option<Waiting>>>);

struct Waiting {
    on: On,
    since: Instant,
}

enum On {
    /// A connect, in the phase its cell says.
    Connect { service: &'static str, endpoint: String, phase: PhaseCell },
    /// The answer to a request on an open connection.
    Reply { service: &'static str, what: String },
}

impl Activity {
    /// Runs `f` as the check this activity describes.
    pub async fn scope<F: Future>(self, f: F) -> F::Output {
        CURRENT.scope(self, f).await
    }

    /// The activity of the check running on this task, if any.
    pub fn current() -> Option<Activity> {
        CURRENT.try_with(Activity::clone).ok()
    }

    /// `2.0s waiting for PostgreSQL's reply to startup (db:5432)`; `None`
    /// when the check was not waiting on a service.
    pub fn describe(&self) -> Option<String> {
        let guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let waiting = guard.as_ref()?;
        let what = match &waiting.on {
            On::Connect { service, endpoint, phase } => match phase.get() {
                Phase::Resolve => format!("resolving the host name of {service} at {endpoint}"),
                Phase::Connect => format!("connecting to {service} at {endpoint}"),
                Phase::TlsHandshake => format!("in the TLS handshake with {service} at {endpoint}"),
                Phase::Reply(request) => format!("waiting for {service}'s reply to {request} ({endpoint})"),
            },
            On::Reply { service, what } => format!("waiting for {service}'s answer to {what}"),
        };
        Some(format!("{:.1}s {what}", waiting.since.elapsed().as_secs_f64()))
    }

    fn set(on: Option<On>) {
        let _ = CURRENT.try_with(|a| {
            *a.0.lock().unwrap_or_else(PoisonError::into_inner) = on.map(|on| Waiting { on, since: Instant::now() });
        });
    }
}

/// The check on this task waits for a connect to `service` at `endpoint`.
pub fn connecting(service: &'static str, endpoint: String, phase: &PhaseCell) {
    Activity::set(Some(On::Connect { service, endpoint, phase: phase.clone() }));
}

/// The check on this task waits for `service`'s answer to `what`.
pub fn waiting(service: &'static str, what: impl Into<String>) {
    Activity::set(Some(On::Reply { service, what: what.into() }));
}

/// The check on this task is not waiting on a service.
pub fn idle() {
    Activity::set(None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_is_described_with_its_phase_and_nothing_outside_a_check() {
        waiting("Redis", "PING");
        assert!(Activity::current().is_none());
        let activity = Activity::default();
        let phase = PhaseCell::new(Phase::Resolve);
        activity
            .clone()
            .scope(async {
                connecting("PostgreSQL", "db:5432".into(), &phase);
                phase.set(Phase::Reply("startup"));
            })
            .await;
        let said = activity.describe().expect("waiting");
        assert!(said.ends_with("s waiting for PostgreSQL's reply to startup (db:5432)"), "{said}");
        activity.clone().scope(async { idle() }).await;
        assert_eq!(activity.describe(), None);
    }
}
