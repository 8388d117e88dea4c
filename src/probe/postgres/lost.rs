//! A connection lost mid-run, and what a failed statement of a unit knows.
//!
//! When PostgreSQL ends a connection it may say why first: a FATAL error
//! (57P01 "terminating connection due to administrator command" on a fast
//! shutdown, a restart or `pg_terminate_backend`), or, on an immediate shutdown
//! or a crash, a WARNING (57P01, 57P02) just before it hangs up. The statement
//! that was running hears a FATAL itself; the ones queued behind it, and a
//! goodbye sent while nothing ran, only see the connection close. So the
//! connection's task ([`drive`]) keeps what the server said in the session's
//! [`Ended`], and a statement cut without a word of its own reads it there: every
//! check the loss cut names the server's reason, whichever statement heard it.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::error::{DbError, Severity, SqlState};
use tokio_postgres::{AsyncMessage, Error};

use super::failure::describe;
use crate::probe::net;

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The server said why (a FATAL error, or a goodbye WARNING) with this SQLSTATE.
    Said { code: SqlState, message: String },
    /// It hung up without a word we could read (killed, crashed, the network):
    /// what the driver saw (`connection closed`, a reset).
    Silent(String),
}

/// A statement that never got its answer because the connection was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    pub reason: Reason,
    /// The server had started the statement's unit (its BEGIN was answered, or
    /// the statement heard the goodbye itself): it was running, not queued behind one.
    pub running: bool,
}

/// What the connection's task and the statements have heard of its end,
/// shared by the session and the task that drives the connection.
#[derive(Debug, Default)]
pub struct Ended(Mutex<Option<Reason>>);

impl Ended {
    /// Keeps the server's words; they win over a silent end, and the first words stay.
    fn said(&self, db: &DbError) {
        let mut reason = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !matches!(*reason, Some(Reason::Said { .. })) {
            *reason = Some(Reason::Said { code: db.code().clone(), message: db.message().to_string() });
        }
    }

    fn silent(&self, text: String) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(Reason::Silent(text));
    }

    pub fn reason(&self) -> Option<Reason> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// What `e` says about the connection: `None` when it is still up (an
    /// ordinary error of the statement). A FATAL or PANIC error ends the
    /// connection (and is remembered for the statements it cuts); a closed or
    /// broken connection is lost for the reason heard so far, if any.
    pub fn lost(&self, e: &Error, running: bool) -> Option<Lost> {
        if let Some(db) = e.as_db_error() {
            if !matches!(db.parsed_severity(), Some(Severity::Fatal | Severity::Panic)) {
                return None;
            }
            self.said(db);
            let reason = Reason::Said { code: db.code().clone(), message: db.message().to_string() };
            return Some(Lost { reason, running: true });
        }
        if !(e.is_closed() || net::find_cause::<std::io::Error>(e).is_some()) {
            return None;
        }
        self.silent(describe(e));
        Some(Lost { reason: self.reason().unwrap_or_else(|| Reason::Silent(describe(e))), running })
    }
}

/// The goodbyes PostgreSQL sends as a WARNING before it hangs up (immediate
/// shutdown, another process's crash), and as the FATAL of an idle connection.
const GOODBYES: [SqlState; 5] = [
    SqlState::ADMIN_SHUTDOWN,
    SqlState::CRASH_SHUTDOWN,
    SqlState::CANNOT_CONNECT_NOW,
    SqlState::DATABASE_DROPPED,
    SqlState::IDLE_SESSION_TIMEOUT,
];

/// Drives `connection` until it ends (what `tokio::spawn(connection)` does),
/// keeping the server's goodbye in `ended`. The connection is dropped only after
/// that, so a statement that sees it closed finds the reason already there.
pub(super) async fn drive<S, T>(mut connection: tokio_postgres::Connection<S, T>, ended: Arc<Ended>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let result = futures::future::poll_fn(|cx| {
        loop {
            match std::task::ready!(connection.poll_message(cx)) {
                Some(Ok(AsyncMessage::Notice(notice))) if GOODBYES.contains(notice.code()) => ended.said(&notice),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
    })
    .await;
    if let Err(e) = result {
        match e.as_db_error() {
            Some(db) => ended.said(db),
            None => ended.silent(describe(&e)),
        }
    }
    drop(connection);
}

/// A unit's statement failed: the driver's error, with what the session knows of
/// it. Derefs to the driver's error, so its SQLSTATE and words read as before.
#[derive(Debug)]
pub struct QueryError {
    error: Error,
    /// The connection was lost before the statement was answered.
    pub lost: Option<Lost>,
    /// The server cancelled the statement at the unit's `statement_timeout`
    /// (57014 after at least that long): this long.
    pub timed_out: Option<Duration>,
    /// The session's deadline (`--timeout`), which `statement_timeout` stays just under.
    pub deadline: Duration,
}

impl QueryError {
    pub fn new(error: Error, lost: Option<Lost>, timed_out: Option<Duration>, deadline: Duration) -> QueryError {
        QueryError { error, lost, timed_out, deadline }
    }
}

impl std::ops::Deref for QueryError {
    type Target = Error;

    fn deref(&self) -> &Error {
        &self.error
    }
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for QueryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
