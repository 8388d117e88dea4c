//! `postgres.locks`: nothing makes the API's session route wait, judged by what the
//! route takes (see `pg_lock_view`) against the locks granted and queued now.
//!
//! - A table lock on `users` or `sessions` that conflicts with the route — granted,
//!   or queued ahead of the API's requests (a migration's `ALTER TABLE` waiting
//!   behind a long transaction stops every insert too) — fails the check, naming
//!   the backend, and any of the API's requests already waiting behind it.
//! - A row lock on a `users` row (`SELECT … FOR UPDATE`, an uncommitted `DELETE`)
//!   stops that user's insert at its foreign-key check. Row locks are not in
//!   `pg_locks` until someone waits; what is visible without waiting is a backend
//!   holding ROW SHARE/ROW EXCLUSIVE on `users` with a transaction id, and the rows
//!   whose `xmax` is that id. Which lock it is (FOR UPDATE or a harmless FOR KEY
//!   SHARE) PostgreSQL does not show without waiting: the finding says so.
//! - Sessions idle in transaction longer than `idle_in_transaction` are named (they
//!   pin vacuum and whatever they locked).
//!
//! Of other roles' sessions the API's role sees the role and `application_name`,
//! not the state, times or query, unless it has `pg_read_all_stats`: what it cannot
//! see is said, with the grant that shows it, never reported as "none". The tool's
//! own connections (its backend, `application_name = 'mockmate-diag'`) never count.
//! Query text appears in the message only where the role may read it.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_postgres::types::Type;

use super::shared::lock_view::{Backend, Mode, Route, Stops, role_ident, seconds};
use super::shared::postgres::{get, human, ident, query_one, session};
use crate::check::{Check, Ctx, KindDef, Outcome};
use crate::probe::postgres::{APPLICATION_NAME, describe};

pub static KIND: KindDef = KindDef {
    name: "postgres.locks",
    title: "Locks and idle transactions",
    description: "no lock (granted or queued) makes the session route wait (its SELECT on users, its INSERT into sessions and the foreign-key check), no users row locked by a long-idle transaction, no session idle in transaction longer than idle_in_transaction; says what the role cannot see",
    build: |t| {
        let p: Params = crate::check::params(t)?;
        let idle = super::shared::postgres::duration("idle_in_transaction", &p.idle_in_transaction)?;
        Ok(Box::new(Locks { idle, tables: p.tables, route: Route { users: p.users, sessions: p.sessions } }))
    },
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    idle_in_transaction: String,
    /// Tables whose writers must not be blocked (a warning); the route's are judged by `users` and `sessions`.
    tables: Vec<String>,
    /// The table the route reads its user from, and that sessions reference.
    users: String,
    /// The table the route inserts into.
    sessions: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            idle_in_transaction: "1m".into(),
            tables: vec!["users".into(), "sessions".into()],
            users: "users".into(),
            sessions: "sessions".into(),
        }
    }
}

struct Locks {
    idle: std::time::Duration,
    tables: Vec<String>,
    route: Route,
}

/// A request waiting this long is stuck, not passing by: PostgreSQL's own
/// threshold for reporting a lock wait (`deadlock_timeout`, 1 s by default).
const STUCK_SECONDS: f64 = 1.0;

/// One query: the watched tables' locks held and queued by others, the waits of
/// requests that touch them, the backends involved as the role sees them, who
/// idles in transaction, whose transactions the role cannot see, and which
/// backends may hold row locks on `users` — in this database (locks are per
/// database; another database's sessions cannot block the route). `pg_locks.waitstart` is read through
/// `to_jsonb` (PostgreSQL 14+: NULL before). $1 idle threshold (s), $2 watched
/// tables, $3 the users table, $4 the tool's application_name.
const SQL: &str = r"
WITH rel AS (
  SELECT DISTINCT n AS name, to_regclass(format('%I', n)) AS oid FROM unnest($2::text[]) AS n),
db AS (SELECT oid FROM pg_database WHERE datname = current_database()),
act AS (
  SELECT a.pid, a.usename::text AS role, a.application_name AS application,
         a.backend_type IS NOT NULL AS visible, a.state,
         floor(extract(epoch FROM now() - a.xact_start))::float8 AS xact_seconds,
         floor(extract(epoch FROM now() - a.state_change))::float8 AS state_seconds,
         left(regexp_replace(a.query, '\s+', ' ', 'g'), 200) AS query,
         a.backend_xid::text AS xid
  FROM pg_stat_activity a
  WHERE a.pid <> pg_backend_pid() AND a.usename IS NOT NULL AND a.datid = (SELECT oid FROM db)
    AND a.application_name IS DISTINCT FROM $4),
held AS (
  SELECT l.pid, p.gid, r.name AS tbl, l.mode
  FROM pg_locks l JOIN rel r ON r.oid = l.relation
  LEFT JOIN pg_prepared_xacts p ON l.pid IS NULL AND l.virtualtransaction = '-1/' || p.transaction::text
  WHERE l.granted AND l.locktype = 'relation' AND l.database = (SELECT oid FROM db)
    AND (l.pid IN (SELECT pid FROM act) OR p.gid IS NOT NULL)),
waits AS (
  SELECT w.pid, w.locktype, w.mode, r.name AS tbl,
    (SELECT r2.name FROM pg_locks t JOIN rel r2 ON r2.oid = t.relation
      WHERE t.pid = w.pid AND t.locktype = 'tuple' AND t.database = (SELECT oid FROM db) LIMIT 1) AS row_of,
    floor(extract(epoch FROM now() - (to_jsonb(w) ->> 'waitstart')::timestamptz))::float8 AS waiting_seconds,
    pg_blocking_pids(w.pid) AS blocked_by
  FROM pg_locks w LEFT JOIN rel r ON r.oid = w.relation AND w.database = (SELECT oid FROM db)
  WHERE NOT w.granted AND w.pid IN (SELECT pid FROM act)
    AND (r.oid IS NOT NULL OR EXISTS (
      SELECT 1 FROM pg_locks t JOIN rel r3 ON r3.oid = t.relation
      WHERE t.pid = w.pid AND t.database = (SELECT oid FROM db)))),
suspects AS (
  SELECT DISTINCT h.pid, a.xid FROM held h JOIN act a ON a.pid = h.pid
  WHERE h.tbl = $3 AND h.mode IN ('RowShareLock', 'RowExclusiveLock') AND a.xid IS NOT NULL),
idle AS (
  SELECT pid FROM act WHERE visible AND state LIKE 'idle in transaction%' AND state_seconds > $1),
hidden AS (
  SELECT a.pid, a.role FROM act a
  WHERE NOT a.visible AND EXISTS (SELECT 1 FROM pg_locks v WHERE v.pid = a.pid AND v.locktype = 'virtualxid'))
SELECT json_build_object(
  'role', current_user::text,
  'held', (SELECT coalesce(json_agg(json_build_object('pid', pid, 'gid', gid, 'table', tbl, 'mode', mode)
           ORDER BY pid, tbl, mode), '[]') FROM held),
  'waits', (SELECT coalesce(json_agg(json_build_object('pid', pid, 'locktype', locktype, 'mode', mode,
           'table', tbl, 'row_of', row_of, 'waiting_seconds', waiting_seconds, 'blocked_by', blocked_by)
           ORDER BY pid), '[]') FROM waits),
  'suspects', (SELECT coalesce(json_agg(json_build_object('pid', pid, 'xid', xid) ORDER BY pid), '[]') FROM suspects),
  'idle', (SELECT coalesce(json_agg(pid ORDER BY pid), '[]') FROM idle),
  'hidden', (SELECT coalesce(json_agg(json_build_object('pid', pid, 'role', role) ORDER BY pid), '[]') FROM hidden),
  'backends', (SELECT coalesce(json_agg(json_build_object('pid', a.pid, 'role', a.role,
           'application', a.application, 'visible', a.visible, 'state', a.state,
           'xact_seconds', a.xact_seconds, 'state_seconds', a.state_seconds,
           'query', CASE WHEN a.visible THEN a.query END) ORDER BY a.pid), '[]')
      FROM act a WHERE a.pid IN (SELECT pid FROM held UNION SELECT pid FROM waits
                                 UNION SELECT unnest(blocked_by) FROM waits UNION SELECT pid FROM idle)),
  'prepared', (SELECT coalesce(json_agg(json_build_object('gid', p.gid, 'role', p.owner::text,
           'xact_seconds', floor(extract(epoch FROM now() - p.prepared))::float8)), '[]')
      FROM pg_prepared_xacts p WHERE p.gid IN (SELECT gid FROM held)))";

/// The rows of the users table whose `xmax` is one of the transaction ids in $1:
/// locked (or changed, uncommitted) by those transactions.
fn rows_sql(users: &str) -> String {
    format!(
        "SELECT coalesce(json_agg(json_build_object('id', s.id::text, 'xid', s.xmax::text)), '[]') \
         FROM (SELECT id, xmax FROM {} WHERE xmax::text = ANY ($1::text[]) LIMIT 20) s",
        ident(users)
    )
}

#[derive(Debug, Default, Deserialize)]
struct Snapshot {
    role: String,
    #[serde(default)]
    held: Vec<Held>,
    #[serde(default)]
    waits: Vec<Wait>,
    #[serde(default)]
    suspects: Vec<Suspect>,
    #[serde(default)]
    idle: Vec<i32>,
    #[serde(default)]
    hidden: Vec<Hidden>,
    #[serde(default)]
    backends: Vec<Backend>,
    #[serde(default)]
    prepared: Vec<Backend>,
}

#[derive(Debug, Clone, Deserialize)]
struct Held {
    pid: Option<i32>,
    gid: Option<String>,
    table: String,
    mode: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Wait {
    pid: i32,
    locktype: String,
    mode: String,
    table: Option<String>,
    row_of: Option<String>,
    waiting_seconds: Option<f64>,
    #[serde(default)]
    blocked_by: Vec<i32>,
}

#[derive(Debug, Clone, Deserialize)]
struct Suspect {
    pid: i32,
    xid: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Hidden {
    pid: i32,
    role: String,
}

#[derive(Debug, Clone, Deserialize)]
struct LockedRow {
    id: String,
    xid: String,
}

/// What the rows scan found: the rows, or why it could not look.
#[derive(Debug, Clone)]
enum Rows {
    Found(Vec<LockedRow>),
    Unread(String),
}

impl Check for Locks {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let result = async {
                let session = session(ctx).await?;
                let what = "the lock query";
                let secs = self.idle.as_secs_f64();
                let mut names = vec![self.route.users.clone(), self.route.sessions.clone()];
                for t in &self.tables {
                    if !names.contains(t) {
                        names.push(t.clone());
                    }
                }
                let row = query_one(
                    &session,
                    what,
                    SQL,
                    &[
                        (&secs, Type::FLOAT8),
                        (&names, Type::TEXT_ARRAY),
                        (&self.route.users, Type::TEXT),
                        (&APPLICATION_NAME, Type::TEXT),
                    ],
                )
                .await?;
                let json: Value = get(&row, 0, what)?;
                let snapshot: Snapshot = serde_json::from_value(json)
                    .map_err(|e| Outcome::problem(format!("unexpected reply to {what}: {e}")))?;
                // Which users rows the suspects locked: only when there are suspects, and
                // never when a lock on users would make this read wait itself.
                let blocks_reads = |table: &str, mode: &str| {
                    table == self.route.users && Mode::parse(mode).is_some_and(|m| m.conflicts(Mode::AccessShare))
                };
                let users_blocked = snapshot.held.iter().any(|h| blocks_reads(&h.table, &h.mode))
                    || snapshot.waits.iter().any(|w| {
                        w.locktype == "relation" && w.table.as_deref().is_some_and(|t| blocks_reads(t, &w.mode))
                    });
                let rows = if snapshot.suspects.is_empty() {
                    Rows::Found(Vec::new())
                } else if users_blocked {
                    Rows::Unread(format!("reading {} would wait for the lock above", self.route.users))
                } else {
                    let xids: Vec<String> = snapshot.suspects.iter().map(|s| s.xid.clone()).collect();
                    match session.query_typed(&rows_sql(&self.route.users), &[(&xids, Type::TEXT_ARRAY)]).await {
                        Ok(r) => match r.first().map(|row| row.try_get::<_, Value>(0)) {
                            Some(Ok(v)) => serde_json::from_value(v)
                                .map(Rows::Found)
                                .unwrap_or_else(|e| Rows::Unread(format!("unexpected reply: {e}"))),
                            Some(Err(e)) => Rows::Unread(format!("unexpected reply: {e}")),
                            None => Rows::Unread("no reply".into()),
                        },
                        Err(e) => Rows::Unread(describe(&e)),
                    }
                };
                Ok(self.judge(&snapshot, &rows))
            };
            result.await.unwrap_or_else(|o| o)
        }
        .boxed()
    }
}

/// How bad a finding is: the worst decides the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    /// The role cannot tell (a warning, never a pass).
    Unknown,
    /// Pins resources or blocks other writers: the check's severity.
    Problem,
    /// Session creation waits: always a failure.
    Blocks,
}

struct Finding {
    level: Level,
    text: String,
    /// Statements that end the cause.
    fixes: Vec<String>,
}

impl Locks {
    fn judge(&self, s: &Snapshot, rows: &Rows) -> Outcome {
        let viewer = s.role.as_str();
        let backend = |pid: Option<i32>, gid: Option<&str>| -> Backend {
            if let Some(gid) = gid {
                return s
                    .prepared
                    .iter()
                    .find(|p| p.gid.as_deref() == Some(gid))
                    .cloned()
                    .unwrap_or(Backend { gid: Some(gid.to_string()), ..Backend::default() });
            }
            match pid {
                // pg_blocking_pids() names a prepared transaction as 0.
                Some(0) => Backend { gid: Some("?".into()), ..Backend::default() },
                Some(p) => s
                    .backends
                    .iter()
                    .find(|b| b.pid == Some(p))
                    .cloned()
                    .unwrap_or(Backend { pid: Some(p), ..Backend::default() }),
                None => Backend::default(),
            }
        };
        let mut findings: Vec<Finding> = Vec::new();
        let mut named: Vec<i32> = Vec::new();

        // Requests already waiting behind each pid, to say the route is stuck now.
        let waiting_behind = |pid: Option<i32>| -> usize {
            pid.map(|p| s.waits.iter().filter(|w| w.blocked_by.contains(&p)).count()).unwrap_or(0)
        };

        // 1. Granted table locks.
        for h in &s.held {
            let Some(mode) = Mode::parse(&h.mode) else { continue };
            let b = backend(h.pid, h.gid.as_deref());
            let stops = self.route.stops(&h.table, mode);
            let level = match stops {
                Stops::Everything | Stops::Insert => Level::Blocks,
                Stops::Nothing if mode.blocks_writers() && self.watched(&h.table) => Level::Problem,
                Stops::Nothing => continue,
            };
            let already = match waiting_behind(h.pid) {
                0 => String::new(),
                1 => " (1 request already waits behind it)".to_string(),
                n => format!(" ({n} requests already wait behind it)"),
            };
            let lead = match stops {
                Stops::Everything => "every session creation waits behind ",
                Stops::Insert => "every session insert waits behind ",
                Stops::Nothing => "",
            };
            let text = format!(
                "{lead}{}: it holds {} on {}, so {}{already}{}",
                b.describe(viewer),
                mode.name(),
                h.table,
                self.route.why(&h.table, mode),
                b.query_note()
            );
            findings.push(Finding { level, text, fixes: b.end_statement().into_iter().collect() });
            named.extend(h.pid);
        }

        // 2. Queued table locks that the API's requests queue behind, and requests stuck waiting.
        for w in &s.waits {
            let b = backend(Some(w.pid), None);
            let by: Vec<Backend> = w.blocked_by.iter().map(|p| backend(Some(*p), None)).collect();
            let by_text = if by.is_empty() {
                "something the role cannot see".to_string()
            } else {
                by.iter().map(|b| b.describe(viewer)).collect::<Vec<_>>().join(", ")
            };
            let waited = seconds(w.waiting_seconds).unwrap_or_else(|| "unknown".into());
            let queued = w.locktype == "relation"
                && w.table
                    .as_deref()
                    .is_some_and(|t| Mode::parse(&w.mode).is_some_and(|m| self.route.stops(t, m) != Stops::Nothing));
            if queued {
                let (table, mode) = (w.table.clone().unwrap_or_default(), Mode::parse(&w.mode));
                let mode = mode.unwrap_or(Mode::AccessExclusive);
                findings.push(Finding {
                    level: Level::Blocks,
                    text: format!(
                        "every session insert queues behind {}, which has waited {waited} for {} on {table} \
                         (behind {by_text}): until it has the lock and is done, {}{}",
                        b.describe(viewer),
                        mode.name(),
                        self.route.why(&table, mode),
                        b.query_note()
                    ),
                    fixes: std::iter::once(format!("SELECT pg_cancel_backend({});", w.pid))
                        .chain(by.iter().filter_map(Backend::end_statement))
                        .collect(),
                });
                named.push(w.pid);
                named.extend(w.blocked_by.iter().copied());
                continue;
            }
            let stuck = w.waiting_seconds.is_none_or(|secs| secs >= STUCK_SECONDS);
            // A wait behind a lock named above is part of that finding.
            if !stuck || w.blocked_by.iter().any(|p| s.held.iter().any(|h| h.pid == Some(*p) && self.blocks(h))) {
                continue;
            }
            let on = match (w.locktype.as_str(), &w.table, &w.row_of) {
                ("relation", Some(t), _) => format!("{} on {t}", w.mode),
                (_, _, Some(t)) => format!("a row of {t}"),
                _ => format!("a {} lock", w.locktype),
            };
            let route = w.row_of.as_deref() == Some(self.route.users.as_str())
                || w.table.as_deref().is_some_and(|t| !self.route.modes(t).is_empty());
            findings.push(Finding {
                level: if route { Level::Blocks } else { Level::Problem },
                text: format!("{} has waited {waited} for {on}, held by {by_text}", b.describe(viewer)),
                fixes: by.iter().filter_map(Backend::end_statement).collect(),
            });
            named.extend(w.blocked_by.iter().copied());
        }

        // 3. Row locks on users rows, seen through xmax.
        let mut row_details = Vec::new();
        for sus in &s.suspects {
            if named.contains(&sus.pid) {
                continue;
            }
            let b = backend(Some(sus.pid), None);
            let ids: Vec<&str> = match rows {
                Rows::Found(found) => found.iter().filter(|r| r.xid == sus.xid).map(|r| r.id.as_str()).collect(),
                Rows::Unread(_) => Vec::new(),
            };
            let users = &self.route.users;
            let which = match (rows, ids.as_slice()) {
                (Rows::Found(_), []) => continue,
                (Rows::Found(_), [one]) => format!("{users} row id={one}"),
                (Rows::Found(_), many) => format!("{} {users} rows (id={}, …)", many.len(), many[0]),
                (Rows::Unread(why), _) => format!("rows of {users}, perhaps (which ones could not be read: {why})"),
            };
            let lock = "a FOR UPDATE lock (or an uncommitted DELETE) on it makes that user's session insert wait at \
                        its foreign-key check; a FOR SHARE/KEY SHARE lock or a plain UPDATE would not (pg_locks does \
                        not say which it is until someone waits)";
            let level = if !b.visible {
                Level::Unknown
            } else if b.xact_seconds.is_some_and(|t| t > self.idle.as_secs_f64()) {
                Level::Problem
            } else {
                // A short transaction at work: the API's own inserts look like this.
                continue;
            };
            row_details.push(json!({"pid": sus.pid, "rows": ids, "visible": b.visible}));
            findings.push(Finding {
                level,
                text: format!("{} holds a lock on {which}: {lock}", b.describe(viewer)),
                fixes: b.end_statement().into_iter().collect(),
            });
            named.push(sus.pid);
        }

        // 4. Idle in transaction, not named above.
        for pid in &s.idle {
            if named.contains(pid) {
                continue;
            }
            let b = backend(Some(*pid), None);
            findings.push(Finding {
                level: Level::Problem,
                text: format!("{} (it pins vacuum and holds whatever it locked)", b.describe(viewer)),
                fixes: b.end_statement().into_iter().collect(),
            });
            named.push(*pid);
        }

        // What the role cannot see.
        let hidden: Vec<&Hidden> = s.hidden.iter().filter(|h| !named.contains(&h.pid)).collect();
        let mut hidden_roles: Vec<&str> = hidden.iter().map(|h| h.role.as_str()).collect();
        hidden_roles.sort_unstable();
        hidden_roles.dedup();
        let grant = format!("GRANT pg_read_all_stats TO {};", role_ident(viewer));
        let hidden_note = match hidden.len() {
            0 => None,
            n => Some(format!(
                "{} of other roles ({}) {} a transaction open: whether {} idle in transaction, role \"{viewer}\" \
                 cannot see",
                super::shared::postgres::plural(n, "session", "sessions"),
                hidden_roles.join(", "),
                if n == 1 { "has" } else { "have" },
                if n == 1 { "it is" } else { "they are" },
            )),
        };

        let level = findings.iter().map(|f| f.level).max();
        let mut outcome = match level {
            None => {
                let mut message = format!(
                    "nothing blocks session creation: no lock on {} or {} conflicts with its SELECT and INSERT, \
                     no {} row locked by an idle transaction; no session idle in transaction over {}",
                    self.route.users,
                    self.route.sessions,
                    self.route.users,
                    human(self.idle)
                );
                if let Some(note) = &hidden_note {
                    message.push_str(&format!(" among those role \"{viewer}\" can see ({note})"));
                }
                Outcome::pass(message)
            }
            Some(level) => {
                let mut message = findings.iter().map(|f| f.text.clone()).collect::<Vec<_>>().join("; ");
                if let Some(note) = &hidden_note {
                    message.push_str(&format!("; {note}"));
                }
                let mut fixes: Vec<String> = Vec::new();
                for fix in findings.iter().flat_map(|f| f.fixes.iter()) {
                    if !fixes.contains(fix) {
                        fixes.push(fix.clone());
                    }
                }
                let mut hint = if fixes.is_empty() {
                    String::new()
                } else {
                    format!(
                        "ask the owner (role, application above), then end it: {} (as a superuser, the same role, \
                         or a member of pg_signal_backend)",
                        fixes.join(" ")
                    )
                };
                let hidden_backend = named.iter().any(|p| !backend(Some(*p), None).visible);
                if findings.iter().any(|f| f.level == Level::Unknown) || hidden_note.is_some() || hidden_backend {
                    if !hint.is_empty() {
                        hint.push_str("; ");
                    }
                    hint.push_str(&format!(
                        "{grant} lets the check see other roles' sessions (state, how long, query); \
                         --allow-writes makes the dry run try the insert"
                    ));
                }
                if findings.iter().any(|f| f.level == Level::Problem) {
                    hint.push_str(
                        "; idle_in_transaction_session_timeout (ALTER ROLE … SET) ends such sessions by itself",
                    );
                }
                let o = match level {
                    Level::Blocks => Outcome::fail(message),
                    Level::Problem => Outcome::problem(message),
                    Level::Unknown => Outcome::warn(message),
                };
                o.hint(hint.trim_start_matches("; ").to_string())
            }
        };
        let held: Vec<Value> = s
            .held
            .iter()
            .filter(|h| {
                Mode::parse(&h.mode).is_some_and(|m| {
                    self.route.stops(&h.table, m) != Stops::Nothing || (m.blocks_writers() && self.watched(&h.table))
                })
            })
            .map(|h| {
                let b = backend(h.pid, h.gid.as_deref());
                json!({"pid": h.pid, "prepared": h.gid, "role": b.role, "application": b.application,
                       "mode": h.mode, "table": h.table, "transaction_seconds": b.xact_seconds})
            })
            .collect();
        let waiting: Vec<Value> = s
            .waits
            .iter()
            .map(|w| {
                json!({"pid": w.pid, "mode": w.mode, "table": w.table.clone().or(w.row_of.clone()),
                            "blocked_by": w.blocked_by, "waiting_seconds": w.waiting_seconds})
            })
            .collect();
        if let Rows::Unread(why) = rows {
            outcome = outcome.detail("row_locks_unread", why.clone());
        }
        outcome
            .detail("role", viewer)
            .detail("blocking", held)
            .detail("waiting", waiting)
            .detail("row_locks", row_details)
            .detail("idle_in_transaction", s.idle.clone())
            .detail(
                "hidden_sessions",
                s.hidden.iter().map(|h| json!({"pid": h.pid, "role": h.role})).collect::<Vec<_>>(),
            )
            .detail("sees_other_roles", s.hidden.is_empty())
    }

    fn watched(&self, table: &str) -> bool {
        self.tables.iter().any(|t| t == table) || !self.route.modes(table).is_empty()
    }

    /// A granted lock that stops the route.
    fn blocks(&self, h: &Held) -> bool {
        Mode::parse(&h.mode).is_some_and(|m| self.route.stops(&h.table, m) != Stops::Nothing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locks() -> Locks {
        Locks {
            idle: std::time::Duration::from_secs(60),
            tables: vec!["users".into(), "sessions".into()],
            route: Route { users: "users".into(), sessions: "sessions".into() },
        }
    }

    fn snapshot(v: Value) -> Snapshot {
        serde_json::from_value(v).expect("a snapshot")
    }

    #[test]
    fn nothing_held_passes_and_says_what_it_could_not_see() {
        let o = locks().judge(&snapshot(json!({"role": "app"})), &Rows::Found(vec![]));
        assert_eq!(o.verdict, crate::check::Verdict::Pass);
        assert_eq!(
            o.message,
            "nothing blocks session creation: no lock on users or sessions conflicts with its SELECT and INSERT, \
             no users row locked by an idle transaction; no session idle in transaction over 1m"
        );
        let o = locks()
            .judge(&snapshot(json!({"role": "app", "hidden": [{"pid": 5, "role": "etl"}]})), &Rows::Found(vec![]));
        assert_eq!(o.verdict, crate::check::Verdict::Pass);
        assert!(
            o.message.ends_with(
                " among those role \"app\" can see (1 session of other roles (etl) has a transaction open: \
                 whether it is idle in transaction, role \"app\" cannot see)"
            ),
            "{}",
            o.message
        );
    }

    #[test]
    fn a_share_lock_on_sessions_fails_with_the_real_pid() {
        let s = snapshot(json!({
            "role": "app",
            "held": [{"pid": 8, "table": "sessions", "mode": "ShareLock"}],
            "backends": [{"pid": 8, "role": "other", "application": "psql", "visible": false}],
        }));
        let o = locks().judge(&s, &Rows::Found(vec![]));
        assert_eq!(o.verdict, crate::check::Verdict::Fail);
        assert_eq!(
            o.message,
            "every session insert waits behind pid 8 (role \"other\", application \"psql\"; its state and how long \
             its transaction has been open: unknown, hidden from role \"app\"): it holds ShareLock on sessions, so \
             INSERT INTO sessions waits"
        );
        assert!(o.hint.as_deref().unwrap_or_default().contains("SELECT pg_terminate_backend(8);"), "{:?}", o.hint);
    }

    #[test]
    fn a_share_lock_on_users_blocks_its_writers_not_session_creation() {
        let s = snapshot(json!({
            "role": "app",
            "held": [{"pid": 8, "table": "users", "mode": "ShareLock"}],
            "backends": [{"pid": 8, "role": "app", "application": "", "visible": true, "state": "active",
                          "xact_seconds": 3.0}],
        }));
        let o = locks().judge(&s, &Rows::Found(vec![]));
        assert_eq!(o.verdict, crate::check::Verdict::Problem);
        assert_eq!(
            o.message,
            "pid 8 (role \"app\", no application_name, active, transaction open 3s): it holds ShareLock on users, \
             so writes to users wait; session creation does not"
        );
    }

    #[test]
    fn a_users_row_locked_by_a_hidden_transaction_is_unknown_never_none() {
        let s = snapshot(json!({
            "role": "app",
            "held": [{"pid": 9, "table": "users", "mode": "RowShareLock"}],
            "suspects": [{"pid": 9, "xid": "730"}],
            "hidden": [{"pid": 9, "role": "other"}],
            "backends": [{"pid": 9, "role": "other", "application": "psql", "visible": false}],
        }));
        let rows = Rows::Found(vec![LockedRow { id: "u-1".into(), xid: "730".into() }]);
        let o = locks().judge(&s, &rows);
        assert_eq!(o.verdict, crate::check::Verdict::Warn);
        assert!(o.message.starts_with("pid 9 (role \"other\", application \"psql\"; its state"), "{}", o.message);
        assert!(o.message.contains("holds a lock on users row id=u-1: a FOR UPDATE lock"), "{}", o.message);
        let hint = o.hint.unwrap_or_default();
        assert!(hint.contains("GRANT pg_read_all_stats TO \"app\";"), "{hint}");
        assert!(hint.contains("SELECT pg_terminate_backend(9);"), "{hint}");
    }
}
