//! One diagnosis, from an environment and manifests to a report: what a run,
//! each `--wait` attempt and `serve` share. The command line and the printing
//! stay in `app` (and `serve`); this module decides nothing about output: it
//! reports what happens (an attempt's progress, a retry) to the caller's
//! observers.
//!
//! - [`plan`]: the request, the environment read, the manifests loaded, the selection;
//! - [`bounds`]: what stops an attempt from outside (the interrupt, a deadline);
//! - [`wait`]: one attempt, or `--wait`'s retries, to a [`Diagnosis`];
//! - [`assemble`]: the one way a diagnosis becomes a [`crate::report::Report`].

pub mod assemble;
pub mod bounds;
pub mod plan;
pub mod wait;

pub use bounds::{Bounds, Cut, Interrupt};
pub use plan::{Plan, Request, load_manifests};
pub use wait::{Diagnosis, Retry};

use crate::error::UsageError;

/// How many threads a runtime gets: the CLI's run spreads checks over every
/// core; a `serve` run is one of many, on a thread of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    All,
    One,
}

/// The one way this program builds an async runtime.
pub fn runtime(threads: Threads) -> Result<tokio::runtime::Runtime, UsageError> {
    let mut builder = match threads {
        Threads::All => tokio::runtime::Builder::new_multi_thread(),
        Threads::One => tokio::runtime::Builder::new_current_thread(),
    };
    builder.enable_all().build().map_err(|e| UsageError::new(format!("cannot start the async runtime: {e}")))
}
