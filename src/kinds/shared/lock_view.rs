//! What the API's session route meets in PostgreSQL's lock manager, shared by
//! `postgres.locks` (which reads `pg_locks` without waiting) and
//! `postgres.session_insert` (whose dry run, when it waits, names what it waits for).
//!
//! The route (runbook: "Transaction-Based Session Creation") runs
//! `SELECT id, credits FROM users WHERE id = $1 AND is_active = true`
//! (ACCESS SHARE on `users`), then `INSERT INTO sessions` (ROW EXCLUSIVE on
//! `sessions`), whose foreign-key check runs `SELECT 1 FROM ONLY users WHERE id = $1
//! FOR KEY SHARE` (ROW SHARE on `users`, and a row lock on that user's row). A table
//! lock in a mode that conflicts with one of these — granted, or queued ahead of the
//! API's request — makes every session creation wait.
//!
//! `pg_locks` and `pg_blocking_pids()` are visible to every role; of another role's
//! sessions, `pg_stat_activity` shows the role, `application_name` and transaction
//! ids, but not the state, the times or the query (without `pg_read_all_stats`).

use std::time::Duration;

use serde::Deserialize;

use super::postgres::human;

/// A table-level lock mode, as `pg_locks.mode` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl Mode {
    const ALL: [Mode; 8] = [
        Mode::AccessShare,
        Mode::RowShare,
        Mode::RowExclusive,
        Mode::ShareUpdateExclusive,
        Mode::Share,
        Mode::ShareRowExclusive,
        Mode::Exclusive,
        Mode::AccessExclusive,
    ];

    /// `ShareLock` → `Share`; `None` for a mode that is not a table lock's.
    pub fn parse(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == name)
    }

    /// As `pg_locks.mode` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::AccessShare => "AccessShareLock",
            Mode::RowShare => "RowShareLock",
            Mode::RowExclusive => "RowExclusiveLock",
            Mode::ShareUpdateExclusive => "ShareUpdateExclusiveLock",
            Mode::Share => "ShareLock",
            Mode::ShareRowExclusive => "ShareRowExclusiveLock",
            Mode::Exclusive => "ExclusiveLock",
            Mode::AccessExclusive => "AccessExclusiveLock",
        }
    }

    /// PostgreSQL's conflict table ("Conflicting Lock Modes" in the manual).
    pub fn conflicts(self, other: Mode) -> bool {
        use Mode::*;
        let against = |m: Mode| -> &'static [Mode] {
            match m {
                AccessShare => &[AccessExclusive],
                RowShare => &[Exclusive, AccessExclusive],
                RowExclusive => &[Share, ShareRowExclusive, Exclusive, AccessExclusive],
                ShareUpdateExclusive => &[ShareUpdateExclusive, Share, ShareRowExclusive, Exclusive, AccessExclusive],
                Share => &[RowExclusive, ShareUpdateExclusive, ShareRowExclusive, Exclusive, AccessExclusive],
                ShareRowExclusive => {
                    &[RowExclusive, ShareUpdateExclusive, Share, ShareRowExclusive, Exclusive, AccessExclusive]
                }
                Exclusive => &[
                    RowShare,
                    RowExclusive,
                    ShareUpdateExclusive,
                    Share,
                    ShareRowExclusive,
                    Exclusive,
                    AccessExclusive,
                ],
                AccessExclusive => &Mode::ALL,
            }
        };
        against(self).contains(&other)
    }

    /// It blocks writers of a table (INSERT/UPDATE/DELETE take ROW EXCLUSIVE).
    pub fn blocks_writers(self) -> bool {
        self.conflicts(Mode::RowExclusive)
    }
}

/// The tables the route uses and what it takes on them.
#[derive(Debug, Clone)]
pub struct Route {
    pub users: String,
    pub sessions: String,
}

/// What a lock on a table of the route stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stops {
    /// The route's first read (the user lookup) and everything after it.
    Everything,
    /// The insert (or its foreign-key check), not the reads before it.
    Insert,
    /// Nothing of the route (other writers of the table may wait).
    Nothing,
}

impl Route {
    /// The modes the route takes on `table` (none for a table it does not use).
    pub fn modes(&self, table: &str) -> &'static [Mode] {
        if table == self.users {
            &[Mode::AccessShare, Mode::RowShare]
        } else if table == self.sessions {
            &[Mode::RowExclusive, Mode::AccessShare]
        } else {
            &[]
        }
    }

    /// What a lock in `mode` on `table` stops of the route.
    pub fn stops(&self, table: &str, mode: Mode) -> Stops {
        let modes = self.modes(table);
        if !modes.iter().any(|m| mode.conflicts(*m)) {
            return Stops::Nothing;
        }
        // The user lookup is the route's first statement; reading the session back
        // comes after the insert, which a lock blocking reads of sessions stops first.
        if table == self.users && mode.conflicts(Mode::AccessShare) { Stops::Everything } else { Stops::Insert }
    }

    /// Why the route waits for a lock in `mode` on `table`, for a message.
    pub fn why(&self, table: &str, mode: Mode) -> String {
        let (users, sessions) = (&self.users, &self.sessions);
        match self.stops(table, mode) {
            Stops::Everything => {
                format!("its lookup of the user (SELECT … FROM {users}) waits, and reads of {users} too")
            }
            Stops::Insert if table == self.users => {
                format!("the insert's foreign-key check (FOR KEY SHARE on the {users} row) waits")
            }
            Stops::Insert if mode.conflicts(Mode::AccessShare) => {
                format!("INSERT INTO {sessions} waits, and reads of {sessions} too")
            }
            Stops::Insert => format!("INSERT INTO {sessions} waits"),
            Stops::Nothing => format!("writes to {table} wait; session creation does not"),
        }
    }
}

/// A backend as `pg_stat_activity` shows it to the role (or a prepared transaction).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Backend {
    pub pid: Option<i32>,
    /// `pg_stat_activity.usename` (visible to every role), or a prepared transaction's owner.
    pub role: Option<String>,
    pub application: Option<String>,
    /// The role may see its state, times and query (its own role's, or `pg_read_all_stats`).
    #[serde(default)]
    pub visible: bool,
    pub state: Option<String>,
    /// How long its transaction has been open.
    pub xact_seconds: Option<f64>,
    /// How long it has been in its state (idle in transaction …).
    pub state_seconds: Option<f64>,
    /// Its current or last statement, whitespace collapsed and cut short.
    pub query: Option<String>,
    /// A prepared transaction's name (`pid` is then `None`).
    pub gid: Option<String>,
}

impl Backend {
    /// `pid 123 (role "other", application "psql", idle in transaction for 1m 15s,
    /// transaction open 1m 16s)`; what the role cannot see is said, never guessed.
    pub fn describe(&self, viewer: &str) -> String {
        let role = self.role.as_deref().map(|r| format!("role \"{r}\"")).unwrap_or_else(|| "role unknown".into());
        if let Some(gid) = &self.gid {
            return format!(
                "prepared transaction '{gid}' ({role}, prepared {} ago)",
                seconds(self.xact_seconds).unwrap_or_else(|| "unknown".into())
            );
        }
        let pid = self.pid.map(|p| format!("pid {p}")).unwrap_or_else(|| "a backend".into());
        let app = match self.application.as_deref() {
            Some("") | None => "no application_name".to_string(),
            Some(a) => format!("application \"{a}\""),
        };
        if !self.visible {
            return format!(
                "{pid} ({role}, {app}; its state and how long its transaction has been open: unknown, \
                 hidden from role \"{viewer}\")"
            );
        }
        let state = match (self.state.as_deref(), seconds(self.state_seconds)) {
            (Some(s), Some(d)) if s.starts_with("idle in transaction") => format!(", {s} for {d}"),
            (Some(s), _) => format!(", {s}"),
            (None, _) => String::new(),
        };
        let open = seconds(self.xact_seconds).map(|d| format!(", transaction open {d}")).unwrap_or_default();
        format!("{pid} ({role}, {app}{state}{open})")
    }

    /// `; its query: LOCK TABLE sessions IN SHARE MODE` when the role may see it.
    pub fn query_note(&self) -> String {
        match &self.query {
            Some(q) if self.visible && !q.trim().is_empty() => format!("; its query: {}", q.trim()),
            _ => String::new(),
        }
    }

    /// The statement that ends it: `SELECT pg_terminate_backend(123);`, or for a
    /// prepared transaction `ROLLBACK PREPARED 'gid';`.
    pub fn end_statement(&self) -> Option<String> {
        if let Some(gid) = &self.gid {
            return Some(format!("ROLLBACK PREPARED '{}';", gid.replace('\'', "''")));
        }
        self.pid.map(|p| format!("SELECT pg_terminate_backend({p});"))
    }
}

/// A duration in whole seconds as messages read it; `None` when unknown.
pub fn seconds(secs: Option<f64>) -> Option<String> {
    secs.filter(|s| s.is_finite()).map(|s| human(Duration::from_secs(s.max(0.0) as u64)))
}

/// A role name as SQL needs it in a hint: always double-quoted.
pub fn role_ident(role: &str) -> String {
    format!("\"{}\"", role.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conflict_table_is_symmetric_and_as_documented() {
        for a in Mode::ALL {
            for b in Mode::ALL {
                assert_eq!(a.conflicts(b), b.conflicts(a), "{a:?} {b:?}");
            }
            assert_eq!(Mode::parse(a.name()), Some(a));
        }
        assert!(!Mode::RowExclusive.conflicts(Mode::RowExclusive));
        assert!(!Mode::Share.conflicts(Mode::Share));
        assert!(Mode::Share.blocks_writers() && !Mode::ShareUpdateExclusive.blocks_writers());
        assert_eq!(Mode::parse("SIReadLock"), None);
    }

    #[test]
    fn what_a_lock_stops_of_the_route() {
        let r = Route { users: "users".into(), sessions: "sessions".into() };
        assert_eq!(r.stops("sessions", Mode::Share), Stops::Insert);
        assert_eq!(r.stops("sessions", Mode::AccessExclusive), Stops::Insert);
        assert_eq!(r.stops("sessions", Mode::ShareUpdateExclusive), Stops::Nothing);
        assert_eq!(r.stops("users", Mode::Share), Stops::Nothing);
        assert_eq!(r.stops("users", Mode::Exclusive), Stops::Insert);
        assert_eq!(r.stops("users", Mode::AccessExclusive), Stops::Everything);
        assert_eq!(r.why("sessions", Mode::AccessExclusive), "INSERT INTO sessions waits, and reads of sessions too");
        assert_eq!(r.why("users", Mode::Share), "writes to users wait; session creation does not");
    }

    #[test]
    fn a_backend_hidden_from_the_role_is_described_as_unknown() {
        let b = Backend {
            pid: Some(42),
            role: Some("other".into()),
            application: Some("psql".into()),
            ..Backend::default()
        };
        assert_eq!(
            b.describe("app"),
            "pid 42 (role \"other\", application \"psql\"; its state and how long its transaction has been open: \
             unknown, hidden from role \"app\")"
        );
        assert_eq!(b.query_note(), "");
        assert_eq!(b.end_statement().as_deref(), Some("SELECT pg_terminate_backend(42);"));
        let seen = Backend {
            visible: true,
            state: Some("idle in transaction".into()),
            state_seconds: Some(75.0),
            xact_seconds: Some(76.0),
            query: Some("LOCK TABLE sessions IN SHARE MODE;".into()),
            ..b
        };
        assert_eq!(
            seen.describe("app"),
            "pid 42 (role \"other\", application \"psql\", idle in transaction for 1m 15s, transaction open 1m 16s)"
        );
        assert_eq!(seen.query_note(), "; its query: LOCK TABLE sessions IN SHARE MODE;");
        let prepared = Backend { pid: None, gid: Some("tx'1".into()), xact_seconds: None, ..Backend::default() };
        assert_eq!(prepared.describe("app"), "prepared transaction 'tx'1' (role unknown, prepared unknown ago)");
        assert_eq!(prepared.end_statement().as_deref(), Some("ROLLBACK PREPARED 'tx''1';"));
    }
}
