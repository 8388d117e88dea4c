//! Shared connections to the services under diagnosis: one per service per run.
//!
//! In layers: [`net`] (TCP under the caller's deadline, addresses, phases),
//! [`tls`] (one verifier, one PEM loader, one wording of certificate problems),
//! [`certs`] (what a connection saw of certificates: lifetimes, issuers)
//! and [`url`] (one percent-decoder, passwords that cannot be printed), then one
//! folder per service: `target` (parsing its configuration, once), `connect`,
//! `session` and `failure`.
//!
//! A probe failure is data (`Failure`), not an error: the check that needed the
//! connection turns it into its status, message and hint.

pub mod api;
pub mod certs;
pub mod net;
pub mod postgres;
pub mod redis;
pub mod tls;
pub mod url;

/// `2s`, `1m 30s`, `2s 850ms`: how durations read in messages — to the
/// millisecond, never `2s 849ms 999us 551ns` (a deadline's remainder).
pub fn human(d: std::time::Duration) -> String {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

/// Why a service could not be reached, in words an operator can act on.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// What failed and why, naming the layer (`connection refused at 10.0.0.5:5432`).
    pub message: String,
    /// The fix, when there is one to suggest.
    pub hint: Option<String>,
    /// Facts for the report's `details` (which client's view, the TLS mode …).
    pub details: serde_json::Map<String, serde_json::Value>,
    /// Why, when the configuration is to blame rather than the service: set where
    /// the target parsers fail, so a check can tell "REDIS_URL is not set" (which
    /// `env.required` reports) from "connection refused" (which is its own finding).
    pub cause: Option<Cause>,
}

/// A configuration problem behind a [`Failure`], naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Cause {
    /// The variable is unset or empty (`REDIS_URL`, `DB_HOST` …).
    Unset(String),
    /// The variable is set but cannot be read (`DATABASE_URL` with a `#` in the password).
    Malformed(String),
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Failure { message: message.into(), hint: None, details: serde_json::Map::new(), cause: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }

    /// Names the configuration problem behind this failure (keeps one already named:
    /// the innermost parser knows best which variable it was reading).
    pub fn because(mut self, cause: Cause) -> Self {
        self.cause.get_or_insert(cause);
        self
    }
}

/// Looks a variable up in the run's environment (process, then env files).
/// Probes read configuration only through this, never through `std::env`.
pub type EnvLookup<'a> = &'a (dyn Fn(&str) -> Option<String> + Send + Sync);

/// A connection being opened (or opened) once, awaited by every check that needs it.
pub type SharedConnect<T> = Shared<BoxFuture<'static, Result<Arc<T>, Failure>>>;

/// A connection being opened for one check alone.
type OwnConnect<T> = tokio::task::JoinHandle<Result<T, Failure>>;

/// An environment lookup over fixed pairs, for the probes' unit tests.
#[cfg(test)]
pub(crate) fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Send + Sync + use<> {
    let map: std::collections::HashMap<String, String> =
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name: &str| map.get(name).cloned()
}

/// The run's shared connections, opened by the first check that asks, and the
/// PostgreSQL connections some checks need beside the shared session, which the
/// engine starts early ([`crate::check::Check::warm`]) so that their handshakes
/// overlap the shared one's instead of following it.
///
/// Every connect runs on its own task, so a check that gives up waiting (its
/// deadline) does not cancel it for the others; one nobody awaits (its check was
/// skipped) ends with its own deadline or with the runtime.
#[derive(Default)]
pub struct Probes {
    /// What the API's code sets for its PostgreSQL client (the manifest's `[postgres]`).
    api: postgres::ApiClient,
    postgres: OnceLock<SharedConnect<postgres::PgSession>>,
    redis: OnceLock<SharedConnect<redis::RedisSession>>,
    /// A read-only session for long scans (`postgres.user`, `postgres.orphan_sessions`):
    /// their scans may queue behind each other, never in front of the quick checks'
    /// queries on the shared session.
    postgres_scan: OnceLock<SharedConnect<postgres::PgSession>>,
    /// The dry run's connection (`postgres.session_insert`): handed out once, by
    /// value, so its transaction can never carry another check's statements.
    postgres_write: Mutex<Option<OwnConnect<postgres::Connection>>>,
}

impl Probes {
    pub fn new(api: postgres::ApiClient) -> Probes {
        Probes { api, ..Probes::default() }
    }

    /// Where the run's PostgreSQL connections go, as the API's driver reads it.
    pub fn postgres_target(&self, get: EnvLookup<'_>) -> Result<postgres::PgTarget, Failure> {
        postgres::PgTarget::from_env_for(get, &self.api)
    }

    /// The PostgreSQL session, connecting on first use with `deadline`.
    pub async fn postgres(&self, get: EnvLookup<'_>, deadline: Duration) -> Result<Arc<postgres::PgSession>, Failure> {
        let fut = self.postgres.get_or_init(|| {
            let target = self.postgres_target(get);
            spawn_shared(async move {
                postgres::connect(&target?, deadline).await.map(|c| postgres::PgSession::read_only(c, deadline))
            })
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

impl Probes {
    fn scan(&self, get: EnvLookup<'_>, deadline: Duration) -> SharedConnect<postgres::PgSession> {
        let fut = self.postgres_scan.get_or_init(|| {
            let target = self.postgres_target(get);
            spawn_shared(async move {
                postgres::connect(&target?, deadline).await.map(|c| postgres::PgSession::read_only(c, deadline))
            })
        });
        fut.clone()
    }

    /// Starts the scan session's connect, if nothing has yet.
    pub fn warm_postgres_scan(&self, get: EnvLookup<'_>, deadline: Duration) {
        drop(self.scan(get, deadline));
    }

    /// The scan session (same target and settings as the shared one), connecting
    /// now with `deadline` if [`Probes::warm_postgres_scan`] did not start it.
    pub async fn postgres_scan(
        &self,
        get: EnvLookup<'_>,
        deadline: Duration,
    ) -> Result<Arc<postgres::PgSession>, Failure> {
        self.scan(get, deadline).await
    }

    /// Starts the dry run's connect, unless one is already waiting to be taken.
    pub fn warm_postgres_write(&self, get: EnvLookup<'_>, deadline: Duration) {
        let mut slot = self.postgres_write.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            let target = self.postgres_target(get);
            *slot = Some(tokio::spawn(async move { postgres::connect(&target?, deadline).await }));
        }
    }

    /// A connection for one caller alone: the one [`Probes::warm_postgres_write`]
    /// started, if it is still there, else a new one connecting now with `deadline`.
    pub async fn postgres_write(&self, get: EnvLookup<'_>, deadline: Duration) -> Result<postgres::PgWriter, Failure> {
        let warm = self.postgres_write.lock().unwrap_or_else(|e| e.into_inner()).take();
        let conn = match warm {
            Some(task) => match task.await {
                Ok(result) => result,
                Err(e) => Err(Failure::new(format!("internal error while connecting: {e}"))),
            },
            None => postgres::connect(&self.postgres_target(get)?, deadline).await,
        };
        conn.map(postgres::PgWriter::new)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration causes the target parsers name (kept here, outside
    /// `postgres/target.rs`, so the parser can be rewritten against them).
    #[test]
    fn target_failures_name_their_cause() {
        let pg = |vars: &[(&str, &str)]| postgres::PgTarget::from_env(&lookup(vars)).unwrap_err().cause;
        let unset = |v: &str| Some(Cause::Unset(v.into()));
        let malformed = |v: &str| Some(Cause::Malformed(v.into()));
        assert_eq!(pg(&[]), unset("DB_HOST"));
        assert_eq!(pg(&[("DB_HOST", "h"), ("DB_NAME", "d")]), unset("DB_USER"));
        assert_eq!(pg(&[("DB_HOST", "h"), ("DB_USER", "u")]), unset("DB_NAME"));
        assert_eq!(pg(&[("DB_HOST", "h"), ("DB_USER", "u"), ("DB_NAME", "d"), ("DB_PORT", "x")]), malformed("DB_PORT"));
        // node-postgres reads an unknown PGSSLMODE as no TLS, not an error.
        let unknown_mode = [("DB_HOST", "h"), ("DB_USER", "u"), ("DB_NAME", "d"), ("PGSSLMODE", "on")];
        assert!(postgres::PgTarget::from_env(&lookup(&unknown_mode)).is_ok());
        for url in [
            "postgresql://u:p#w@h/d",
            "postgresql://u:p/w@h/d",
            "postgresql://h/d",
            "postgresql://u@h/d?ssl=false",
            "postgresql://u@h/d?sslmode=require&sslrootcert=/nonexistent/ca.pem",
        ] {
            assert_eq!(pg(&[("DATABASE_URL", url)]), malformed("DATABASE_URL"), "{url}");
        }
    }
}
