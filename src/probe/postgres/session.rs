//! An open PostgreSQL connection and what connecting found out.

use std::fmt;
use std::time::Duration;

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, TryStreamExt};
use tokio_postgres::Client;

use super::failure::setup_failure;
use super::target::{PgSource, SslMode};
use crate::probe::Failure;

/// The shared session. Callers hold it in an `Arc` and issue queries on `client`
/// concurrently; tokio-postgres pipelines them over the one connection.
///
/// Every query sent on `client` runs after the session setup (see
/// [`super::connect`]): inside read-only transactions and the server-side
/// timeouts, or, if the setup failed, not at all (SQLSTATE 25P02).
/// [`PgSession::setup`] says which.
pub struct PgSession {
    pub client: Client,
    pub info: PgInfo,
    pub(super) setup: Shared<BoxFuture<'static, Result<(), Failure>>>,
}

impl PgSession {
    /// The session setup's result. Its reply comes before the reply to any query
    /// sent on this session, so awaiting this after a query costs nothing; before
    /// one, it costs the round trip [`super::connect`] saved.
    pub async fn setup(&self) -> Result<(), Failure> {
        self.setup.clone().await
    }
}

impl fmt::Debug for PgSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSession").field("info", &self.info).finish_non_exhaustive()
    }
}

/// What the connection found out, for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct PgInfo {
    /// The server's `server_version` as it reported it at startup (ParameterStatus),
    /// e.g. `15.20 (Debian 15.20-0+deb12u1)`.
    pub server_version: String,
    /// The negotiated TLS version (`TLSv1.3`), `None` when unencrypted.
    pub tls: Option<String>,
    /// Wall time of TCP + TLS + startup + authentication, in milliseconds.
    pub latency_ms: f64,
    pub sslmode: SslMode,
    pub source: PgSource,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    pub local: bool,
    /// The server's chain and the sslrootcert CA, as the handshake saw them.
    pub certificates: crate::probe::certs::Certificates,
}

/// The session setup, one simple-query message. The `BEGIN … COMMIT` makes it fail
/// closed: if any statement fails, PostgreSQL skips the rest of the message, COMMIT
/// included, and leaves the session in an aborted transaction block, where every
/// later statement fails with 25P02 until a ROLLBACK — so nothing we send after it,
/// a user's SQL included, runs without the read-only default and the timeouts.
/// (Without the block, a failed `SET lock_timeout` would roll the earlier `SET …
/// READ ONLY` back with it and leave a writable session behind.) On success the
/// SETs are committed and last for the session; RESET returns them to the server's
/// defaults, which is what `postgres.writable` and the dry run rely on.
pub fn setup_sql(statement_timeout: Duration) -> String {
    format!(
        "BEGIN; SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; \
         SET statement_timeout = {}; SET lock_timeout = '500ms'; COMMIT",
        statement_timeout.as_millis()
    )
}

/// Queues the session setup on `client` and returns its result as a shared future,
/// without waiting for the server's reply.
///
/// Waiting cost a round trip before any check could query. It is not needed for the
/// guarantees: tokio-postgres writes requests in the order they are sent (the
/// setup's is in the connection's queue when this returns) and PostgreSQL runs one
/// session's messages in order, so every later query runs after the setup — within
/// its limits, or not at all (see [`setup_sql`]).
///
/// The reply is read by a task of its own: the connection delivers replies in order
/// and would stall every later one if nobody took it. It is bounded by `deadline`.
pub(super) async fn send_setup(
    client: &Client,
    deadline: Duration,
) -> Result<Shared<BoxFuture<'static, Result<(), Failure>>>, Failure> {
    // Leave the caller's deadline room to report a slow query as a timeout of its own.
    let statement_timeout = deadline.saturating_sub(Duration::from_millis(250)).max(Duration::from_millis(100));
    // Enqueues the message and returns; no network wait.
    let replies = client.simple_query_raw(&setup_sql(statement_timeout)).await.map_err(|e| setup_failure(&e))?;
    let task = tokio::spawn(async move {
        match tokio::time::timeout(deadline, replies.try_collect::<Vec<_>>()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(setup_failure(&e)),
            Err(_) => Err(Failure::new(format!(
                "timed out after {} waiting for the server's reply to the session setup",
                humantime::format_duration(deadline)
            ))
            .with_hint("the server logged us in but does not answer queries: is it overloaded?")),
        }
    });
    let result = async move {
        match task.await {
            Ok(result) => result,
            Err(e) => Err(Failure::new(format!("internal error during the session setup: {e}"))),
        }
    };
    Ok(result.boxed().shared())
}
