//! An open PostgreSQL connection, and the one way checks may use it.
//!
//! **No session state, by construction.** Behind a transaction pooler (PgBouncer,
//! managed poolers) the server connection we use is handed to the API's next
//! transaction, and a pooler resets nothing between transactions: a session-level
//! `SET` would make the API's inserts fail (25006) or its queries time out. So the
//! shared session has no setup at all. Every statement runs in a *unit*: three
//! requests queued back to back on the connection —
//! `BEGIN READ ONLY; SET LOCAL statement_timeout …; SET LOCAL lock_timeout …;
//! SET LOCAL application_name …`, the statement, and `ROLLBACK` — so the settings
//! and the read-only mode live and die with the transaction, and the unit costs
//! no round trip more than the statement alone (they travel together). `ROLLBACK`
//! rather than `COMMIT`: nothing we run needs committing, and rolling back undoes
//! even a session-level `SET` a user's SQL might make inside the unit.
//!
//! It fails closed: if the server refuses any part of the opening message, the
//! transaction is aborted and the statement is refused (25P02) instead of running
//! outside read-only. The client is private, so no check can send a statement
//! outside a unit; the dry run's writable transaction gets a [`PgWriter`], which
//! only `--allow-writes` hands out.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::{Future, TryStreamExt};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Error, Row, SimpleQueryMessage, SimpleQueryStream};

use super::connect::{Connection, PgInfo};
use super::failure::{first_query_failure, sqlstate};
use super::lost::{Ended, QueryError};
use super::pooler::{self, Route};
use super::target::PgTarget;
use crate::probe::{Failure, activity};

/// What the server sees as our `application_name` (visible in `pg_stat_activity`).
pub const APPLICATION_NAME: &str = "mockmate-diag";

/// A typed query parameter, as `Client::query_typed` takes them.
pub type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// A read-only session. Callers hold it in an `Arc` and send statements
/// concurrently; tokio-postgres pipelines them over the one connection.
pub struct PgSession {
    client: Client,
    pub info: PgInfo,
    /// The first message of every unit.
    begin: String,
    /// The deadline it was opened with (`--timeout`), for a second look at a hang-up.
    deadline: Duration,
    /// What every unit sets LOCAL: a little under `deadline`.
    statement_timeout: Duration,
    /// Units (and the route's) sent and not yet answered, counting those whose
    /// caller gave up waiting: the server may still be running them.
    unanswered: AtomicUsize,
    /// Why the connection ended, once it has.
    ended: Arc<Ended>,
    /// Held only while a unit's three requests are queued, so units never interleave.
    queue: tokio::sync::Mutex<()>,
    /// Found once, by the first check that asks (see [`PgSession::route`]).
    route: tokio::sync::OnceCell<Result<Route, Failure>>,
    /// The route's statement, sent before any other on the connection.
    first: std::sync::Mutex<First>,
    target: PgTarget,
}

/// The route's unit: one message with the unit's opening and the route's
/// statement, and its own ROLLBACK (which runs even if the first message failed
/// half-way, as every unit's does).
type FirstUnit = (Pin<Box<SimpleQueryStream>>, Pin<Box<SimpleQueryStream>>);

/// Where the route's unit stands. It goes out first on every session, so that
/// whatever the server (or a pooler) answers the first request with — PgBouncer's
/// FATAL "server login has been failing", which it sends to the first request and
/// then hangs up — is the route's answer, and `postgres.connect` words it the
/// same on every run, whichever check's statement happened to come first.
enum First {
    Unsent,
    Sent(FirstUnit),
    Taken,
}

/// The opening message of every read-only unit, with statements cancelled at
/// `statement_timeout` and lock waits at 500 ms.
pub fn unit_begin_sql(statement_timeout: Duration) -> String {
    format!(
        "BEGIN READ ONLY; SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = '500ms'; \
         SET LOCAL application_name = '{APPLICATION_NAME}'",
        statement_timeout.as_millis()
    )
}

impl PgSession {
    /// A read-only session over `conn`, whose statements may take up to
    /// `deadline` less a margin (so a slow query is reported as a timeout of its own).
    pub fn read_only(conn: Connection, deadline: Duration) -> PgSession {
        let statement_timeout = deadline.saturating_sub(Duration::from_millis(250)).max(Duration::from_millis(100));
        PgSession {
            client: conn.client,
            info: conn.info,
            begin: unit_begin_sql(statement_timeout),
            deadline,
            statement_timeout,
            unanswered: AtomicUsize::new(0),
            ended: conn.ended,
            queue: tokio::sync::Mutex::new(()),
            route: tokio::sync::OnceCell::new(),
            first: std::sync::Mutex::new(First::Unsent),
            target: conn.target,
        }
    }

    /// Where our statements run: directly on the server that answered the login,
    /// or behind a pooler. One statement, shared by every check that asks; its
    /// failure is the first moment a pooler actually reaches PostgreSQL, so it
    /// is worded as the connection's failure.
    pub async fn route(&self) -> Result<Route, Failure> {
        self.route
            .get_or_init(|| async {
                let taken = {
                    let _queue = self.queue.lock().await;
                    self.send_first().await.map_err(|e| first_query_failure(&self.target, &e))?;
                    std::mem::replace(&mut *self.first.lock().unwrap_or_else(|e| e.into_inner()), First::Taken)
                };
                let First::Sent((mut unit, mut end)) = taken else {
                    return Err(Failure::new("internal error: the route's statement was taken twice"));
                };
                let flight = InFlight::enter(&self.unanswered);
                let (announced, messages, _) = futures::join!(
                    pooler::announced_pid(&self.client),
                    unit.as_mut().try_collect::<Vec<_>>(),
                    end.as_mut().try_collect::<Vec<_>>()
                );
                flight.answered();
                let messages = match messages {
                    Ok(messages) => messages,
                    Err(e) if e.is_closed() => return Err(self.ask_alone(&e).await),
                    Err(e) => return Err(first_query_failure(&self.target, &e)),
                };
                let row = messages
                    .iter()
                    .find_map(|m| match m {
                        SimpleQueryMessage::Row(row) => Some(row),
                        _ => None,
                    })
                    .ok_or_else(|| Failure::new("the route query returned no row"))?;
                let backend_pid: i32 = row
                    .get(0)
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| Failure::new("route query: no backend pid"))?;
                let addr: Option<String> = row.get(1).map(str::to_string);
                let port: Option<i32> = row.get(2).and_then(|p| p.parse().ok());
                let path = pooler::path(announced, backend_pid, addr.as_deref(), port);
                Ok(Route { announced_pid: announced, backend_pid, path })
            })
            .await
            .clone()
    }

    /// The server (or a pooler) hung up at the first statement without a word we
    /// could read. With statements pipelined behind the first, its last words can be
    /// lost: it closes with our later requests unread, the kernel answers with a
    /// reset, and a reset discards what we had not read yet (PgBouncer's FATAL
    /// "server login has been failing" among it). So ask once more, on a new
    /// connection, with the one statement alone, and report what that one hears.
    async fn ask_alone(&self, closed: &Error) -> Failure {
        let conn = match super::connect::connect(&self.target, self.deadline).await {
            Ok(conn) => conn,
            // Refused at login this time: that is the answer, in its own words.
            Err(failure) => return failure,
        };
        match conn.client.simple_query(&format!("{}; {}", self.begin, pooler::ROUTE_SQL)).await {
            Err(e) if e.as_db_error().is_some() => first_query_failure(&self.target, &e),
            // It answers now, or hangs up again without a word: the first hang-up stands.
            answered => {
                if answered.is_ok() {
                    let _ = conn.client.simple_query("ROLLBACK").await;
                }
                first_query_failure(&self.target, closed)
            }
        }
    }

    /// The pid half of the cancel key the startup announced (no round trip).
    pub async fn announced_pid(&self) -> Option<i32> {
        pooler::announced_pid(&self.client).await
    }

    /// Queues the route's unit if nothing has gone out yet; the caller holds `queue`.
    async fn send_first(&self) -> Result<(), Error> {
        if !matches!(*self.first.lock().unwrap_or_else(|e| e.into_inner()), First::Unsent) {
            return Ok(());
        }
        // Both resolve as soon as their request is queued (nothing is awaited).
        let unit = self.client.simple_query_raw(&format!("{}; {}", self.begin, pooler::ROUTE_SQL)).await?;
        let end = self.client.simple_query_raw("ROLLBACK").await?;
        *self.first.lock().unwrap_or_else(|e| e.into_inner()) = First::Sent((Box::pin(unit), Box::pin(end)));
        Ok(())
    }

    /// `query_typed` in a unit: Parse, Bind and Execute travel with the unit's
    /// BEGIN and ROLLBACK, one round trip in all.
    pub async fn query_typed(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, QueryError> {
        self.unit(self.client.query_typed(sql, params)).await
    }

    /// The first row of [`PgSession::query_typed`], if any.
    pub async fn query_typed_opt(&self, sql: &str, params: &[Param<'_>]) -> Result<Option<Row>, QueryError> {
        Ok(self.query_typed(sql, params).await?.into_iter().next())
    }

    /// One simple-protocol message (several statements, text results) in a unit:
    /// a `SET LOCAL` in it tightens the unit's own limits.
    pub async fn simple_query(&self, sql: &str) -> Result<Vec<SimpleQueryMessage>, QueryError> {
        self.unit(self.client.simple_query(sql)).await
    }

    /// Queues BEGIN…, `body`'s request and ROLLBACK back to back, then waits for
    /// all three replies (the connection delivers replies in order and would stall
    /// if one were left unread). A failed opening is the unit's error, whatever
    /// the body answered. The unit counts as unanswered from sending until all
    /// three replies are in: a caller that stops waiting (its deadline, an
    /// interrupt) leaves it counted, for [`PgSession::cancel_abandoned`] (an
    /// early error leaves it counted too, but only on a closed connection,
    /// where there is nothing to cancel).
    async fn unit<T>(&self, body: impl Future<Output = Result<T, Error>>) -> Result<T, QueryError> {
        activity::waiting("PostgreSQL", "its query");
        let sent = Instant::now();
        let answer = self.unit_inner(body).await;
        activity::idle();
        answer.map_err(|(error, running)| {
            let lost = self.ended.lost(&error, running);
            // Only the unit's own statement_timeout cancels it after this long (a
            // `SET LOCAL` in the statement's own message is the caller's to read).
            let timed_out = (lost.is_none()
                && sqlstate(&error) == Some(&SqlState::QUERY_CANCELED)
                && sent.elapsed() >= self.statement_timeout)
                .then_some(self.statement_timeout);
            QueryError::new(error, lost, timed_out, self.deadline)
        })
    }

    /// The unit's answer, or its error and whether the server had started the
    /// unit (its BEGIN was answered) when it failed.
    async fn unit_inner<T>(&self, body: impl Future<Output = Result<T, Error>>) -> Result<T, (Error, bool)> {
        let queued = |e: Error| (e, false);
        let mut body = std::pin::pin!(body);
        let (begin, first, end, flight) = {
            let _queue = self.queue.lock().await;
            // Counted from here: a unit still waiting for the queue has sent nothing.
            let flight = InFlight::enter(&self.unanswered);
            self.send_first().await.map_err(queued)?;
            // Each of these writes its request into the connection's queue when
            // first polled, before it waits for anything.
            let begin = self.client.simple_query_raw(&self.begin).await.map_err(queued)?;
            let first = futures::poll!(body.as_mut());
            let end = self.client.simple_query_raw("ROLLBACK").await.map_err(queued)?;
            (begin, first, end, flight)
        };
        let body = async {
            match first {
                Poll::Ready(result) => result,
                Poll::Pending => body.await,
            }
        };
        let (begun, result, ended) = futures::join!(begin.try_collect::<Vec<_>>(), body, end.try_collect::<Vec<_>>());
        flight.answered();
        begun.map_err(queued)?;
        let value = result.map_err(|e| (e, true))?;
        match ended {
            // The connection ended after the answer: the transaction ended with it.
            Err(e) if self.ended.lost(&e, true).is_none() => Err((e, true)),
            _ => Ok(value),
        }
    }

    /// Sends PostgreSQL's cancel request for the session's backend when a unit
    /// was left unanswered (its check gave up: a deadline, an interrupt, an
    /// attempt's end), so nothing of ours keeps running on the server after the
    /// run. The server says nothing back; the reply to an empty query queued
    /// behind every unit says the backend is done with them, and when it does not
    /// come soon (a unit queued behind the cancelled one runs now, or the server
    /// hangs) the request is sent once more. All within `within`. Only for the
    /// attempt's end: mid-attempt, the backend may be running another check's statement.
    pub async fn cancel_abandoned(&self, within: Duration) {
        if self.unanswered.load(Ordering::SeqCst) == 0 || self.client.is_closed() {
            return;
        }
        let end = tokio::time::Instant::now() + within;
        let cancel = || tokio::time::timeout_at(end, super::connect::cancel(&self.target, &self.client));
        if cancel().await.is_err() {
            return;
        }
        let drained = self.client.simple_query("");
        let look = (tokio::time::Instant::now() + CANCEL_AGAIN).min(end);
        if tokio::time::timeout_at(look, drained).await.is_err() {
            let _ = cancel().await;
        }
    }
}

/// How long a cancelled backend gets to finish our units before it is asked again.
const CANCEL_AGAIN: Duration = Duration::from_millis(250);

/// A unit (or the route's) on its way: counted in the session's `unanswered`
/// from sending until [`InFlight::answered`]; dropped before that (its caller
/// stopped waiting), it stays counted.
struct InFlight<'a> {
    count: &'a AtomicUsize,
    answered: bool,
}

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicUsize) -> InFlight<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight { count, answered: false }
    }

    fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.answered {
            self.count.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl fmt::Debug for PgSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSession").field("info", &self.info).finish_non_exhaustive()
    }
}

/// The dry run's connection: the only one on which a writable transaction can be
/// opened, handed out only with `--allow-writes`. Its user opens and ends the
/// transaction itself. The dry run never commits; `api.session_create`'s
/// clean-up commits only the deletion of what the API created for its request.
pub struct PgWriter {
    client: Client,
}

impl PgWriter {
    pub fn new(conn: Connection) -> PgWriter {
        PgWriter { client: conn.client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}
