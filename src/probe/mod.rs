//! Shared connections to the services under diagnosis: one per service per run.
//!
//! A probe failure is data (`Failure`), not an error: the check that needed the
//! connection turns it into its status, message and hint.

pub mod postgres;
pub mod redis;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

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

/// A connection being opened (or opened) once, awaited by every check that needs it.
pub type SharedConnect<T> = Shared<BoxFuture<'static, Result<Arc<T>, Failure>>>;

/// The run's shared connections, opened by the first check that asks.
///
/// The connect runs on its own task, so a check that gives up waiting (its
/// deadline) does not cancel it for the others.
#[derive(Default)]
pub struct Probes {
    postgres: OnceLock<SharedConnect<postgres::PgSession>>,
    redis: OnceLock<SharedConnect<redis::RedisSession>>,
}

impl Probes {
    /// The PostgreSQL session, connecting on first use with `deadline`.
    pub async fn postgres(&self, get: EnvLookup<'_>, deadline: Duration) -> Result<Arc<postgres::PgSession>, Failure> {
        let fut = self.postgres.get_or_init(|| {
            let target = postgres::PgTarget::from_env(get);
            spawn_shared(async move { postgres::connect(&target?, deadline).await })
        });
        fut.clone().await
    }

    /// The Redis session, connecting on first use with `deadline`.
    pub async fn redis(&self, get: EnvLookup<'_>, deadline: Duration) -> Result<Arc<redis::RedisSession>, Failure> {
        let fut = self.redis.get_or_init(|| {
            let target = redis::RedisTarget::from_env(get);
            spawn_shared(async move { redis::connect(&target?, deadline).await })
        });
        fut.clone().await
    }
}

fn spawn_shared<T: Send + Sync + 'static>(
    connect: impl Future<Output = Result<T, Failure>> + Send + 'static,
) -> SharedConnect<T> {
    let task = tokio::spawn(connect);
    async move {
        match task.await {
            Ok(result) => result.map(Arc::new),
            Err(e) => Err(Failure::new(format!("internal error while connecting: {e}"))),
        }
    }
    .boxed()
    .shared()
}
