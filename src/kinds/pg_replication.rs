//! `postgres.replication`: on a primary, the standbys streaming from it keep up
//! (`pg_stat_replication`: state, replay lag under `max_lag`), and commits do not
//! wait for a synchronous standby that is not there.
//!
//! On a standby this check steps aside: `DATABASE_URL` on a standby is one cause
//! with one failure, `postgres.writable`'s, which names the standby's upstream and
//! lag. Other roles than superusers and pg_monitor/pg_read_all_stats see the
//! standbys but not their state and lag; the check says so instead of guessing.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::shared::postgres::{duration, get, human, plural, session};
use crate::check::{Check, Ctx, KindDef, Outcome, Owner};

pub static KIND: KindDef = KindDef {
    name: "postgres.replication",
    title: "PostgreSQL replication",
    description: "on a primary: the standbys in pg_stat_replication stream with replay lag under max_lag (30s), and synchronous_standby_names does not make commits wait for a missing standby; a standby is left to postgres.writable",
    build: |t| {
        let p: Params = crate::check::params(t)?;
        Ok(Box::new(Replication { max_lag: duration("max_lag", &p.max_lag)? }))
    },
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    max_lag: String,
}

impl Default for Params {
    fn default() -> Self {
        Params { max_lag: "30s".to_string() }
    }
}

struct Replication {
    max_lag: Duration,
}

// One row per walsender, or one row of NULLs when there is none. pg_current_wal_lsn()
// raises during recovery, hence the CASE.
const SQL: &str = "SELECT pg_is_in_recovery(),
    pg_has_role('pg_read_all_stats', 'USAGE'),
    current_setting('synchronous_standby_names'),
    (SELECT reset_val FROM pg_settings WHERE name = 'synchronous_commit'),
    r.pid, r.application_name, host(r.client_addr), r.state, r.sync_state,
    extract(epoch FROM r.replay_lag)::float8,
    CASE WHEN NOT pg_is_in_recovery() THEN pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::float8 END
  FROM (SELECT 1) AS one LEFT JOIN pg_stat_replication AS r ON true
  ORDER BY r.application_name, r.pid";

impl Check for Replication {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let result = async {
                let session = session(ctx).await?;
                let what = "pg_stat_replication";
                let rows =
                    session.query_typed(SQL, &[]).await.map_err(|e| super::shared::postgres::query_failed(what, &e))?;
                let Some(first) = rows.first() else {
                    return Err(Outcome::problem(format!("unexpected reply to {what}: no row")));
                };
                let mut primary = Primary {
                    in_recovery: get(first, 0, what)?,
                    role: session.info.user.clone(),
                    visible: get(first, 1, what)?,
                    synchronous_standby_names: get::<String>(first, 2, what)?.trim().to_string(),
                    synchronous_commit: get::<Option<String>>(first, 3, what)?.unwrap_or_default(),
                    standbys: Vec::new(),
                };
                for row in &rows {
                    if get::<Option<i32>>(row, 4, what)?.is_none() {
                        continue;
                    }
                    let standby = Standby {
                        name: get::<Option<String>>(row, 5, what)?.unwrap_or_default(),
                        addr: get(row, 6, what)?,
                        state: get(row, 7, what)?,
                        sync_state: get(row, 8, what)?,
                        replay_lag: get(row, 9, what)?,
                        lag_bytes: get(row, 10, what)?,
                    };
                    // pg_basebackup streams through a walsender too; it is not a standby.
                    let backup = standby.state.as_deref() == Some("backup")
                        || (standby.state.is_none() && standby.name == "pg_basebackup");
                    if !backup {
                        primary.standbys.push(standby);
                    }
                }
                Ok(primary.judge(self.max_lag))
            };
            result.await.unwrap_or_else(|o| o)
        }
        .boxed()
    }
}

/// What `pg_stat_replication` and the settings say.
#[derive(Debug, Clone, Default)]
struct Primary {
    in_recovery: bool,
    /// The role we connected as.
    role: String,
    /// This role sees the standbys' state and lag (pg_read_all_stats).
    visible: bool,
    synchronous_standby_names: String,
    /// `reset_val`: what the API's sessions commit with.
    synchronous_commit: String,
    standbys: Vec<Standby>,
}

#[derive(Debug, Clone, Default)]
struct Standby {
    name: String,
    addr: Option<String>,
    state: Option<String>,
    sync_state: Option<String>,
    /// Seconds; NULL once a standby has caught up and WAL is quiet.
    replay_lag: Option<f64>,
    lag_bytes: Option<f64>,
}

impl Standby {
    /// `walreceiver (10.0.0.6)`.
    fn label(&self) -> String {
        let name = if self.name.is_empty() { "a standby" } else { &self.name };
        match &self.addr {
            Some(addr) => format!("{name} ({addr})"),
            None => name.to_string(),
        }
    }

    /// `streaming, 0.4s behind` / `streaming, caught up`.
    fn words(&self) -> String {
        let state = self.state.as_deref().unwrap_or("state hidden");
        match self.replay_lag {
            Some(lag) => format!("{state}, {} behind", lag_words(lag)),
            None if self.state.as_deref() == Some("streaming") => format!("{state}, caught up"),
            None => state.to_string(),
        }
    }

    fn is_synchronous(&self) -> bool {
        matches!(self.sync_state.as_deref(), Some("sync" | "quorum"))
    }
}

impl Primary {
    fn judge(&self, max_lag: Duration) -> Outcome {
        if self.in_recovery {
            return Outcome::skip(format!(
                "this server is a standby: {} reports it, with its upstream and replay lag",
                Owner::PostgresWritable
            ))
            .see(Owner::PostgresWritable);
        }
        let outcome = self.verdict(max_lag);
        let standbys: Vec<_> = self
            .standbys
            .iter()
            .map(|s| {
                json!({"name": s.name, "addr": s.addr, "state": s.state, "sync_state": s.sync_state,
                       "replay_lag_seconds": s.replay_lag.map(|l| (l * 1000.0).round() / 1000.0),
                       "replay_lag_bytes": s.lag_bytes.map(|b| b.max(0.0) as u64)})
            })
            .collect();
        outcome
            .detail("standbys", standbys)
            .detail("visible", self.visible)
            .detail("synchronous_standby_names", self.synchronous_standby_names.clone())
            .detail("max_lag", human(max_lag))
    }

    fn verdict(&self, max_lag: Duration) -> Outcome {
        let waits = !self.synchronous_standby_names.is_empty()
            && matches!(self.synchronous_commit.as_str(), "on" | "remote_write" | "remote_apply");
        let known_absent =
            self.standbys.is_empty() || (self.visible && !self.standbys.iter().any(Standby::is_synchronous));
        if waits && known_absent {
            let connected = match self.standbys.len() {
                0 => "no standby is connected".to_string(),
                n => format!("none of the {} connected is synchronous", plural(n, "standby", "standbys")),
            };
            return Outcome::fail(format!(
                "synchronous_standby_names = '{}' but {connected}: every commit waits for one \
                 (synchronous_commit = {}), so the API's inserts hang",
                self.synchronous_standby_names, self.synchronous_commit
            ))
            .hint(
                "bring the synchronous standby back, or stop waiting for it on the primary: \
                 ALTER SYSTEM SET synchronous_standby_names = ''; SELECT pg_reload_conf();",
            );
        }
        if self.standbys.is_empty() {
            return Outcome::pass("primary; no standby streams from it (pg_stat_replication is empty)");
        }
        let count = plural(self.standbys.len(), "standby", "standbys");
        if !self.visible {
            let names: Vec<String> = self.standbys.iter().map(Standby::label).collect();
            return Outcome::pass(format!(
                "primary with {count} ({}); their state and lag are hidden from role \"{}\" \
                 (to see them: GRANT pg_monitor TO \"{}\";)",
                names.join(", "),
                self.role,
                self.role
            ));
        }
        let limit = max_lag.as_secs_f64();
        let problems: Vec<String> = self
            .standbys
            .iter()
            .filter_map(|s| match (s.replay_lag, s.state.as_deref()) {
                (Some(lag), _) if lag > limit => {
                    Some(format!("{} is {} behind in replay (max_lag {})", s.label(), lag_words(lag), human(max_lag)))
                }
                (_, Some("streaming")) => None,
                (_, state) => Some(format!("{} is not streaming (state {})", s.label(), state.unwrap_or("unknown"))),
            })
            .collect();
        let all: Vec<String> = self.standbys.iter().map(|s| format!("{} {}", s.label(), s.words())).collect();
        if !problems.is_empty() {
            return Outcome::warn(format!(
                "{}: reads from it are stale, and a failover to it waits until it has replayed the backlog",
                problems.join("; ")
            ))
            .hint(
                "look at the standby's server log and its disk, network and load; replay conflicts and \
                 long queries on a hot standby hold replay back (max_standby_streaming_delay)",
            );
        }
        Outcome::pass(format!("primary with {count}: {}", all.join("; ")))
    }
}

/// `400ms`, `3s`, `2m 5s`.
fn lag_words(secs: f64) -> String {
    if secs < 1.0 {
        format!("{}ms", (secs.max(0.0) * 1000.0).round() as u64)
    } else {
        human(Duration::from_secs(secs.round() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;

    fn standby(name: &str, state: &str, lag: Option<f64>) -> Standby {
        Standby {
            name: name.into(),
            addr: Some("10.0.0.6".into()),
            state: Some(state.into()),
            sync_state: Some("async".into()),
            replay_lag: lag,
            lag_bytes: Some(0.0),
        }
    }

    fn primary(standbys: Vec<Standby>) -> Primary {
        Primary { visible: true, synchronous_commit: "on".into(), standbys, ..Primary::default() }
    }

    const MAX: Duration = Duration::from_secs(30);

    #[test]
    fn standbys_in_words() {
        let o = primary(vec![standby("replica1", "streaming", Some(0.4)), standby("replica2", "streaming", None)])
            .judge(MAX);
        assert_eq!(o.verdict, Verdict::Pass);
        assert_eq!(
            o.message,
            "primary with 2 standbys: replica1 (10.0.0.6) streaming, 400ms behind; replica2 (10.0.0.6) streaming, caught up"
        );
        assert_eq!(o.details["standbys"][0]["replay_lag_seconds"], 0.4);
        let o = primary(vec![]).judge(MAX);
        assert_eq!(o.message, "primary; no standby streams from it (pg_stat_replication is empty)");
    }

    #[test]
    fn lag_over_max_lag_or_not_streaming_warns() {
        let o = primary(vec![standby("replica1", "streaming", Some(45.0)), standby("replica2", "catchup", None)])
            .judge(MAX);
        assert_eq!(o.verdict, Verdict::Warn);
        assert!(
            o.message.starts_with(
                "replica1 (10.0.0.6) is 45s behind in replay (max_lag 30s); replica2 (10.0.0.6) is not streaming (state catchup): reads from it are stale"
            ),
            "{}",
            o.message
        );
    }

    #[test]
    fn hidden_details_are_said_not_guessed() {
        let hidden = Standby { name: "walreceiver".into(), ..Standby::default() };
        let o = Primary { visible: false, role: "app".into(), standbys: vec![hidden], ..Primary::default() }.judge(MAX);
        assert_eq!(o.verdict, Verdict::Pass);
        assert_eq!(
            o.message,
            "primary with 1 standby (walreceiver); their state and lag are hidden from role \"app\" \
             (to see them: GRANT pg_monitor TO \"app\";)"
        );
    }

    #[test]
    fn a_synchronous_standby_that_is_not_there_hangs_every_commit() {
        let p = Primary { synchronous_standby_names: "replica1".into(), ..primary(vec![]) };
        let o = p.judge(MAX);
        assert_eq!(o.verdict, Verdict::Fail);
        assert!(o.message.starts_with("synchronous_standby_names = 'replica1' but no standby is connected"));
        let async_only =
            Primary { synchronous_standby_names: "x".into(), ..primary(vec![standby("a", "streaming", None)]) };
        assert!(async_only.judge(MAX).message.contains("none of the 1 standby connected is synchronous"));
        let local = Primary { synchronous_commit: "local".into(), ..p };
        assert_eq!(local.judge(MAX).verdict, Verdict::Pass);
        let standby_server = Primary { in_recovery: true, ..Primary::default() };
        assert_eq!(standby_server.judge(MAX).verdict, Verdict::Skip);
    }
}
