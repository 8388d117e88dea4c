//! The run's shared connections: one per service per run, opened by the first
//! check that asks, and the PostgreSQL connections some checks need beside it.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use super::activity;
use super::failure::{EnvLookup, Failure};
use super::net::{Phase, PhaseCell};
use super::{postgres, redis};

/// A connection being opened (or opened) once, awaited by every check that needs it.
pub type SharedConnect<T> = Shared<BoxFuture<'static, Result<Arc<T>, Failure>>>;

/// A connection being opened for one check alone, and the phase it is in.
type OwnConnect<T> = (tokio::task::JoinHandle<Result<T, Failure>>, Opened);

/// Where a connect goes and the phase it is in: what a check waiting on it
/// tells its [`activity`].
#[derive(Clone)]
struct Opened {
    service: &'static str,
    endpoint: String,
    phase: PhaseCell,
}

impl Opened {
    fn new(service: &'static str, endpoint: Option<String>) -> Opened {
        Opened { service, endpoint: endpoint.unwrap_or_default(), phase: PhaseCell::new(Phase::Resolve) }
    }

    /// Awaits `connect`, telling the check's activity what it waits on meanwhile.
    async fn wait<T>(&self, connect: impl Future<Output = T>) -> T {
        activity::connecting(self.service, self.endpoint.clone(), &self.phase);
        let result = connect.await;
        activity::idle();
        result
    }
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
    /// The targets, read from the environment once per run by their one parser.
    postgres_target: OnceLock<Result<postgres::PgTarget, Failure>>,
    redis_target: OnceLock<Result<redis::RedisTarget, Failure>>,
    postgres: OnceLock<(SharedConnect<postgres::PgSession>, Opened)>,
    redis: OnceLock<(SharedConnect<redis::RedisSession>, Opened)>,
    /// A read-only session for long scans (`postgres.user`, `postgres.orphan_sessions`):
    /// their scans may queue behind each other, never in front of the quick checks'
    /// queries on the shared session.
    postgres_scan: OnceLock<(SharedConnect<postgres::PgSession>, Opened)>,
    /// The dry run's connection (`postgres.session_insert`): handed out once, by
    /// value, so its transaction can never carry another check's statements.
    postgres_write: Mutex<Option<OwnConnect<postgres::Connection>>>,
}

impl Probes {
    pub fn new(api: postgres::ApiClient) -> Probes {
        Probes { api, ..Probes::default() }
    }

    /// Where the run's PostgreSQL connections go, as the API's driver reads it
    /// (parsed on the first call, then kept).
    pub fn postgres_target(&self, get: EnvLookup<'_>) -> Result<postgres::PgTarget, Failure> {
        self.postgres_target.get_or_init(|| postgres::PgTarget::from_env_for(get, &self.api)).clone()
    }

    /// Where the run's Redis connection goes, as node-redis reads `REDIS_URL`
    /// (parsed on the first call, then kept).
    pub fn redis_target(&self, get: EnvLookup<'_>) -> Result<redis::RedisTarget, Failure> {
        self.redis_target.get_or_init(|| redis::RedisTarget::from_env(get)).clone()
    }

    /// The PostgreSQL session, connecting on first use with `deadline`.
    pub async fn postgres(&self, get: EnvLookup<'_>, deadline: Duration) -> Result<Arc<postgres::PgSession>, Failure> {
        let (fut, opened) = self.postgres.get_or_init(|| self.open_session(get, deadline));
        opened.wait(fut.clone()).await
    }

    /// The Redis session, connecting on first use with `deadline`.
    pub async fn redis(&self, get: EnvLookup<'_>, deadline: Duration) -> Result<Arc<redis::RedisSession>, Failure> {
        let (fut, opened) = self.redis.get_or_init(|| {
            let target = self.redis_target(get);
            let opened = Opened::new("Redis", target.as_ref().ok().map(redis::RedisTarget::addr));
            let phase = opened.phase.clone();
            (spawn_shared(async move { redis::connect::connect_in(&target?, deadline, &phase).await }), opened)
        });
        opened.wait(fut.clone()).await
    }

    /// A read-only PostgreSQL session being opened with `deadline`.
    fn open_session(&self, get: EnvLookup<'_>, deadline: Duration) -> (SharedConnect<postgres::PgSession>, Opened) {
        let target = self.postgres_target(get);
        let opened = Opened::new("PostgreSQL", target.as_ref().ok().map(postgres::PgTarget::endpoint));
        let phase = opened.phase.clone();
        let connect = spawn_shared(async move {
            postgres::connect::connect_in(&target?, deadline, &phase)
                .await
                .map(|c| postgres::PgSession::read_only(c, deadline))
        });
        (connect, opened)
    }
}

impl Probes {
    /// At an attempt's end, cancels what the checks left running on the
    /// PostgreSQL sessions (a check cut by a deadline or an interrupt stops
    /// waiting, its statement does not), each within `within`, together. Redis
    /// needs nothing: its commands are quick, and the connection closes with
    /// the runtime that drives it.
    pub async fn cancel_abandoned(&self, within: Duration) {
        let opened = |cell: &OnceLock<(SharedConnect<postgres::PgSession>, Opened)>| {
            cell.get().and_then(|(connect, _)| connect.peek()).and_then(|r| r.as_ref().ok()).cloned()
        };
        let sessions: Vec<Arc<postgres::PgSession>> =
            [opened(&self.postgres), opened(&self.postgres_scan)].into_iter().flatten().collect();
        futures::future::join_all(sessions.iter().map(|s| s.cancel_abandoned(within))).await;
    }
}

impl Probes {
    fn scan(&self, get: EnvLookup<'_>, deadline: Duration) -> &(SharedConnect<postgres::PgSession>, Opened) {
        self.postgres_scan.get_or_init(|| self.open_session(get, deadline))
    }

    /// Starts the scan session's connect, if nothing has yet.
    pub fn warm_postgres_scan(&self, get: EnvLookup<'_>, deadline: Duration) {
        self.scan(get, deadline);
    }

    /// The scan session (same target and settings as the shared one), connecting
    /// now with `deadline` if [`Probes::warm_postgres_scan`] did not start it.
    pub async fn postgres_scan(
        &self,
        get: EnvLookup<'_>,
        deadline: Duration,
    ) -> Result<Arc<postgres::PgSession>, Failure> {
        let (fut, opened) = self.scan(get, deadline);
        opened.wait(fut.clone()).await
    }

    /// Starts the dry run's connect, unless one is already waiting to be taken.
    pub fn warm_postgres_write(&self, get: EnvLookup<'_>, deadline: Duration) {
        let mut slot = self.postgres_write.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(self.open_own(get, deadline));
        }
    }

    /// A connection for one caller alone: the one [`Probes::warm_postgres_write`]
    /// started, if it is still there, else a new one connecting now with `deadline`.
    pub async fn postgres_write(&self, get: EnvLookup<'_>, deadline: Duration) -> Result<postgres::PgWriter, Failure> {
        let warm = self.postgres_write.lock().unwrap_or_else(|e| e.into_inner()).take();
        let (task, opened) = warm.unwrap_or_else(|| self.open_own(get, deadline));
        let conn = match opened.wait(task).await {
            Ok(result) => result,
            Err(e) => Err(Failure::new(format!("internal error while connecting: {e}"))),
        };
        conn.map(postgres::PgWriter::new)
    }

    /// A PostgreSQL connection of one caller's own, being opened with `deadline`.
    fn open_own(&self, get: EnvLookup<'_>, deadline: Duration) -> OwnConnect<postgres::Connection> {
        let target = self.postgres_target(get);
        let opened = Opened::new("PostgreSQL", target.as_ref().ok().map(postgres::PgTarget::endpoint));
        let phase = opened.phase.clone();
        (tokio::spawn(async move { postgres::connect::connect_in(&target?, deadline, &phase).await }), opened)
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
    use crate::probe::failure::{Cause, lookup};

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
