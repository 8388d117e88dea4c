//! `postgres.writable`: the database accepts writes (not a standby, not read-only by
//! default), or every session insert fails with 25006.
//!
//! Our own statements run in read-only transactions, so `transaction_read_only`
//! says nothing about the application's. `pg_settings.reset_val` of
//! `default_transaction_read_only` is the value a session starts with — the
//! server's, overridden by `ALTER DATABASE`/`ALTER ROLE … SET` — which is what the
//! API's connections get.
//!
//! A standby is the classic leftover of a failover: `DATABASE_URL` still names the
//! old primary, now a standby. This check is the one failure for that cause, so it
//! says what the standby is doing, in the words on-call uses ("hot standby,
//! replaying from 10.0.0.5:5432, 8.0 kB of WAL not yet replayed, last replayed
//! commit 3s ago"), from the same query: its WAL receiver (`pg_stat_wal_receiver`,
//! whose details need pg_read_all_stats) and its replay position. `postgres.replication` judges replication on primaries only.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Map, Value};

use super::shared::postgres::{get, human, query_one, session};
use super::shared::role_settings::{Inherited, inherited_one_sql};
use crate::check::{Check, Ctx, KindDef, Outcome, Premise, Service};
use crate::probe::postgres::conninfo;

pub static KIND: KindDef = KindDef {
    name: "postgres.writable",
    title: "PostgreSQL accepts writes",
    description: "the server is not a read-only standby (pg_is_in_recovery; a standby's upstream and replay lag are named) and default_transaction_read_only is off for new sessions",
    build: |t| crate::check::without_params(t, Writable),
};

// One row. On a primary every standby column is NULL. `to_jsonb(w)` reads the WAL
// receiver's columns by name, so a column a server version lacks is NULL, not an
// error; `pg_is_wal_replay_paused()` raises outside recovery, hence the CASE.
const SETTING: &str = "default_transaction_read_only";

/// The standby's state (NULLs on a primary) and where a read-only default is set
/// (to name the exact RESET), in one row.
fn sql() -> String {
    SQL.replace("{inherited}", &inherited_one_sql(SETTING))
}

const SQL: &str = "SELECT pg_is_in_recovery(),
    (SELECT reset_val FROM pg_settings WHERE name = 'default_transaction_read_only'),
    w.pid IS NOT NULL,
    to_jsonb(w) ->> 'status',
    to_jsonb(w) ->> 'sender_host',
    (to_jsonb(w) ->> 'sender_port')::int4,
    CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END,
    extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8,
    pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8,
    (SELECT setting FROM pg_settings WHERE name = 'primary_conninfo'),
    {inherited}
  FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS w ON true";

/// Where a primary's read-only default is set, when this role cannot see it:
/// every `ALTER ROLE/DATABASE … SET`, pasteable as a superuser.
const FIND_SETTING: &str = "SELECT coalesce(r.rolname, 'ALL') AS role, coalesce(d.datname, 'ALL') AS database, \
     s.setconfig FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole \
     LEFT JOIN pg_database d ON d.oid = s.setdatabase;";

struct Writable;

impl Check for Writable {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let result = async {
                let session = session(ctx).await?;
                let what = "the read-only state";
                let row = query_one(&session, what, &sql(), &[]).await?;
                let in_recovery: bool = get(&row, 0, "pg_is_in_recovery()")?;
                let read_only: Option<String> = get(&row, 1, "default_transaction_read_only")?;
                let standby = match in_recovery {
                    false => None,
                    true => {
                        let host: Option<String> = get(&row, 4, what)?;
                        let port: Option<i32> = get(&row, 5, what)?;
                        let conninfo: Option<String> = get(&row, 9, what)?;
                        Some(Standby {
                            receiver: get(&row, 2, what)?,
                            status: get(&row, 3, what)?,
                            upstream: host.map(|h| conninfo::endpoint(&h, port.and_then(|p| u16::try_from(p).ok()))),
                            configured_upstream: conninfo.as_deref().and_then(conninfo::upstream),
                            paused: get(&row, 6, what)?,
                            last_replay_age: get(&row, 7, what)?,
                            unreplayed_bytes: get(&row, 8, what)?,
                        })
                    }
                };
                let inherited: serde_json::Value = get(&row, 10, "default_transaction_read_only")?;
                // Where it is set only sharpens the hint: an odd reply costs that, not the verdict.
                let inherited: Inherited = serde_json::from_value(inherited).unwrap_or_default();
                Ok(judge(standby.as_ref(), read_only.as_deref() == Some("on"), &inherited))
            };
            result.await.unwrap_or_else(|o| o)
        }
        .boxed()
    }
}

/// What a standby is doing, as far as this role may see.
#[derive(Debug, Clone, Default, PartialEq)]
struct Standby {
    /// A WAL receiver process runs (visible to every role).
    receiver: bool,
    /// Its status (`streaming`, `waiting` …); hidden without pg_read_all_stats.
    status: Option<String>,
    /// `host:port` it streams from; hidden without pg_read_all_stats.
    upstream: Option<String>,
    /// The upstream `primary_conninfo` names (superusers and pg_read_all_settings only).
    configured_upstream: Option<String>,
    paused: Option<bool>,
    /// Seconds since the last replayed commit was committed on the primary.
    last_replay_age: Option<f64>,
    /// WAL received but not yet replayed, in bytes.
    unreplayed_bytes: Option<f64>,
}

impl Standby {
    /// `replaying from 10.0.0.5:5432, caught up`: what follows "hot standby".
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        parts.push(match (self.receiver, self.status.as_deref(), &self.upstream) {
            (true, Some("streaming"), Some(up)) => format!("replaying from {up}"),
            (true, Some(status), Some(up)) => format!("WAL receiver {status} (upstream {up})"),
            (true, Some(status), None) => format!("WAL receiver {status}"),
            (true, None, _) => {
                "replaying from an upstream this role cannot see (GRANT pg_read_all_stats to see it)".to_string()
            }
            (false, _, _) => {
                let named = match &self.configured_upstream {
                    Some(up) => format!("; primary_conninfo names {up}"),
                    None => String::new(),
                };
                format!(
                    "not streaming (no WAL receiver: it replays archived WAL, or its connection to the upstream is down{named})"
                )
            }
        });
        if self.paused == Some(true) {
            parts.push("replay paused (pg_wal_replay_resume() resumes it)".to_string());
        }
        // The age of the last replayed commit is how stale the data may be, not the
        // lag: after a quiet spell on the primary it is large while the backlog is
        // small. So it is said as what it is, beside the backlog in bytes.
        let age = self.last_replay_age.map(|s| human(Duration::from_secs(s.max(0.0).round() as u64)));
        match (self.receiver, self.unreplayed_bytes) {
            (true, Some(b)) if b <= 0.0 => parts.push("caught up".to_string()),
            (true, Some(b)) => parts.push(format!("{} of WAL not yet replayed", bytes(b))),
            _ => {}
        }
        let caught_up = parts.last().is_some_and(|p| p == "caught up");
        if let (Some(age), false) = (age, caught_up) {
            parts.push(format!("last replayed commit {age} ago"));
        }
        parts.join(", ")
    }

    fn details(&self) -> Value {
        let mut d = Map::new();
        d.insert("wal_receiver".into(), self.receiver.into());
        d.insert("status".into(), self.status.clone().into());
        d.insert("upstream".into(), self.upstream.clone().or_else(|| self.configured_upstream.clone()).into());
        d.insert("replay_paused".into(), self.paused.into());
        d.insert("last_replay_age_seconds".into(), self.last_replay_age.map(|s| (s * 10.0).round() / 10.0).into());
        d.insert("unreplayed_bytes".into(), self.unreplayed_bytes.map(|b| b.max(0.0) as u64).into());
        Value::Object(d)
    }
}

fn judge(standby: Option<&Standby>, read_only_default: bool, inherited: &Inherited) -> Outcome {
    // Resetting one level exposes the next one down: name every level that sets it.
    let levels = inherited.levels_of(SETTING);
    let resets: Vec<String> = levels.iter().map(|at| inherited.reset(at.level, SETTING)).collect();
    let set_by = levels.first().map(|at| format!(", set by {}", inherited.set_by(at.level))).unwrap_or_default();
    let outcome = match (standby, read_only_default) {
        (None, false) => Outcome::pass("read-write (primary, default_transaction_read_only off)"),
        (Some(standby), _) => {
            let upstream = match (&standby.upstream, &standby.configured_upstream) {
                (Some(up), _) => format!("; this standby replays from {up} (the primary, unless replication cascades)"),
                (None, Some(up)) => {
                    format!("; its primary_conninfo names {up} (the primary, unless replication cascades)")
                }
                (None, None) => String::new(),
            };
            Outcome::problem(format!(
                "connected to a hot standby (pg_is_in_recovery), {}: every insert will fail (25006)",
                standby.describe()
            ))
            .hint(format!(
                "point DATABASE_URL at the primary, or at the failover endpoint that always names it \
                 (a managed service's writer endpoint, a proxy that follows failovers){upstream}"
            ))
            .detail("standby", standby.details())
        }
        // Not in recovery: this is a primary (the writer), set read-only by default.
        // The fix is the setting, not the endpoint.
        (None, true) if !resets.is_empty() => Outcome::problem(format!(
            "connected to a primary that is read-only by default (default_transaction_read_only = on{set_by}): \
             every insert will fail (25006)"
        ))
        .hint(format!(
            "as a superuser or the database's owner: {} — then restart the API or let its pool reconnect",
            resets.join(" ")
        )),
        (None, true) => Outcome::problem(
            "connected to a primary that is read-only by default (default_transaction_read_only = on): every \
             insert will fail (25006)",
        )
        .hint(format!(
            "role and database settings are hidden from this role; as a superuser, find where it is set: \
             {FIND_SETTING} then RESET it there (ALTER ROLE/ALTER DATABASE … RESET default_transaction_read_only), \
             or in the server's configuration: ALTER SYSTEM RESET default_transaction_read_only; SELECT pg_reload_conf();"
        )),
    };
    let outcome = if standby.is_some() || read_only_default {
        outcome.reports(Premise::Writable(Service::Postgres))
    } else {
        outcome
    };
    outcome.detail("in_recovery", standby.is_some()).detail("default_transaction_read_only", read_only_default)
}

/// `512 B`, `16.0 MB`.
fn bytes(b: f64) -> String {
    match b {
        b if b >= 1024.0 * 1024.0 => format!("{:.1} MB", b / (1024.0 * 1024.0)),
        b if b >= 1024.0 => format!("{:.1} kB", b / 1024.0),
        b => format!("{} B", b.max(0.0) as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;

    fn streaming() -> Standby {
        Standby {
            receiver: true,
            status: Some("streaming".into()),
            upstream: Some("10.0.0.5:5432".into()),
            paused: Some(false),
            last_replay_age: Some(3.2),
            unreplayed_bytes: Some(8192.0),
            ..Standby::default()
        }
    }

    #[test]
    fn standby_or_read_only_default_is_a_problem() {
        assert_eq!(judge(None, false, &Inherited::default()).verdict, Verdict::Pass);
        assert!(judge(None, true, &Inherited::default()).message.contains("(25006)"));
        assert_eq!(judge(None, true, &Inherited::default()).verdict, Verdict::Problem);
        let o = judge(Some(&streaming()), false, &Inherited::default());
        assert_eq!(o.verdict, Verdict::Problem);
        assert_eq!(
            o.message,
            "connected to a hot standby (pg_is_in_recovery), replaying from 10.0.0.5:5432, 8.0 kB of WAL not yet \
             replayed, last replayed commit 3s ago: every insert will fail (25006)"
        );
        let hint = o.hint.unwrap_or_default();
        assert!(
            hint.contains("failover endpoint")
                && hint.ends_with("replays from 10.0.0.5:5432 (the primary, unless replication cascades)"),
            "{hint}"
        );
        assert_eq!(o.details["standby"]["upstream"], "10.0.0.5:5432");
        assert_eq!(o.details["standby"]["unreplayed_bytes"], 8192);
    }

    #[test]
    fn a_standby_in_words() {
        let caught_up = Standby { unreplayed_bytes: Some(0.0), ..streaming() };
        assert_eq!(caught_up.describe(), "replaying from 10.0.0.5:5432, caught up");
        let paused = Standby { paused: Some(true), last_replay_age: Some(125.0), ..streaming() };
        assert_eq!(
            paused.describe(),
            "replaying from 10.0.0.5:5432, replay paused (pg_wal_replay_resume() resumes it), 8.0 kB of WAL not yet \
             replayed, last replayed commit 2m 5s ago"
        );
        let hidden = Standby { status: None, upstream: None, ..streaming() };
        assert_eq!(
            hidden.describe(),
            "replaying from an upstream this role cannot see (GRANT pg_read_all_stats to see it), 8.0 kB of WAL not \
             yet replayed, last replayed commit 3s ago"
        );
        let no_ts = Standby { last_replay_age: None, unreplayed_bytes: Some(3.0 * 1024.0 * 1024.0), ..streaming() };
        assert_eq!(no_ts.describe(), "replaying from 10.0.0.5:5432, 3.0 MB of WAL not yet replayed");
        let down = Standby {
            configured_upstream: Some("db-a:5432".into()),
            last_replay_age: Some(600.0),
            ..Standby::default()
        };
        assert_eq!(
            down.describe(),
            "not streaming (no WAL receiver: it replays archived WAL, or its connection to the upstream \
             is down; primary_conninfo names db-a:5432), last replayed commit 10m ago"
        );
    }

    #[test]
    fn a_read_only_default_names_where_it_is_set_and_the_reset() {
        let set = Inherited {
            role: "app".into(),
            database: "mockmate".into(),
            settings: vec![],
            levels: vec![crate::kinds::shared::role_settings::RawLevel {
                role: false,
                database: true,
                config: "default_transaction_read_only=on".into(),
            }],
        };
        let o = judge(None, true, &set);
        assert_eq!(
            o.message,
            "connected to a primary that is read-only by default (default_transaction_read_only = on, set by \
             ALTER DATABASE \"mockmate\"): every insert will fail (25006)"
        );
        let hint = o.hint.unwrap_or_default();
        assert!(
            hint.starts_with(
                "as a superuser or the database's owner: ALTER DATABASE \"mockmate\" RESET default_transaction_read_only;"
            ),
            "{hint}"
        );
        // A primary is no replica: no hint to point DATABASE_URL elsewhere.
        assert!(!hint.contains("replica") && !hint.contains("point DATABASE_URL"), "{hint}");
        let o = judge(None, true, &Inherited::default());
        let hint = o.hint.unwrap_or_default();
        assert!(!hint.contains("replica") && hint.contains("s.setdatabase; then RESET it there"), "{hint}");
    }
}
