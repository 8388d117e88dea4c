//! Shared connections to the services under diagnosis: one per service per run.
//!
//! A probe failure is data (`Failure`), not an error: the check that needed the
//! connection turns it into its status, message and hint.

pub mod postgres;
pub mod redis;

/// Why a service could not be reached, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What failed and why, naming the layer (`connection refused at 10.0.0.5:5432`).
    pub message: String,
    /// The fix, when there is one to suggest.
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Failure { message: message.into(), hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Looks a variable up in the run's environment (process, then env files).
/// Probes read configuration only through this, never through `std::env`.
pub type EnvLookup<'a> = &'a (dyn Fn(&str) -> Option<String> + Send + Sync);

/// The run's shared connections, opened by the first check that asks.
#[derive(Default)]
pub struct Probes {}
