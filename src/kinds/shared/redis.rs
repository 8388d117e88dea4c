//! What the `redis.*` kinds share: the run's Redis session with the runbook's
//! impact in every hint, checks judged from the connect-time INFO alone, and
//! stepping aside where `redis.topology` owns the finding (a Sentinel, a Cluster
//! that is down): one cause, one warning.

use std::collections::HashMap;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::check::{Check, Ctx, Outcome, Owner, Service};
use crate::probe::Failure;
use crate::probe::redis::{Mode, RedisSession, Topology};

/// What every key mockmate-diag names starts with, after the API's key prefix
/// (`session:mockmate-diag-probe-<uuid>`): probes go where the API's keys go, so
/// an ACL that confines the API's user to `~session:*` lets them through, and
/// `consistency.cached_sessions` knows them for ours, not the API's.
pub const PROBE_MARK: &str = "mockmate-diag-";

/// A fresh key for a probe of `what` (`acl-probe`, `probe`) under the API's prefix.
pub fn probe_key(key_prefix: &str, what: &str) -> String {
    format!("{key_prefix}{PROBE_MARK}{what}-{}", uuid::Uuid::new_v4())
}

/// The parameters of a kind that probes under the API's keys: their prefix
/// (`session:<id>`), checked when the manifest is read.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyPrefix {
    pub key_prefix: String,
}

impl Default for KeyPrefix {
    fn default() -> Self {
        KeyPrefix { key_prefix: "session:".into() }
    }
}

impl KeyPrefix {
    /// The parameters of `table`, or why they are not a key prefix.
    pub fn from_params(table: toml::Table) -> Result<KeyPrefix, crate::check::ParamError> {
        let p: KeyPrefix = crate::check::params(table)?;
        key_prefix(&p.key_prefix)?;
        Ok(p)
    }
}

/// `key_prefix`, as a manifest gives it: the API's key prefix, checked.
pub fn key_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.contains(char::is_whitespace) {
        return Err(format!("`key_prefix` must be the API's key prefix (e.g. \"session:\"), not {prefix:?}"));
    }
    Ok(())
}

/// The runbook's words for what a Redis problem costs MockMate.
pub const IMPACT: &str = "non-fatal: interview sessions still work, but caching is disabled";

/// The run's Redis session, or the connect failure as this check's problem,
/// with the runbook's impact appended to the fix; it rests on the connection
/// (or on the configuration, when that is the cause).
pub async fn session(ctx: &Ctx) -> Result<Arc<RedisSession>, Outcome> {
    ctx.redis().await.map_err(|f| Outcome::unreachable(with_impact(f), Service::Redis))
}

/// A connect failure with the runbook's impact appended to its fix.
pub fn with_impact(mut f: Failure) -> Failure {
    f.hint = Some(match f.hint.take() {
        // Not a parenthetical: the fix often ends with one already.
        Some(fix) => format!("{fix}; {IMPACT} until then"),
        None => format!("until Redis answers, MockMate runs {IMPACT}"),
    });
    f
}

/// A Sentinel holds no data and answers data commands with "unknown command":
/// checks of data and writes have nothing to judge there, and `redis.topology`
/// says why (and what to point REDIS_URL at).
pub fn on_sentinel(session: &RedisSession) -> Option<Outcome> {
    (session.mode() == Mode::Sentinel).then(|| {
        Outcome::skip(format!("REDIS_URL names a Sentinel, which holds no data: see {}", Owner::RedisTopology))
            .see(Owner::RedisTopology)
    })
}

/// [`on_sentinel`], and a Cluster that is down (every command answers
/// CLUSTERDOWN): `redis.topology` reports the cause, these checks step aside.
pub async fn defer_to_topology(session: &RedisSession) -> Option<Outcome> {
    if let Some(skip) = on_sentinel(session) {
        return Some(skip);
    }
    if session.mode() != Mode::Cluster {
        return None;
    }
    match session.topology().await {
        Ok(Topology::Cluster(state)) if !state.is_ok() => Some(
            Outcome::skip(format!(
                "the Redis Cluster is down (cluster_state:{}), so every command on a key answers CLUSTERDOWN: see {}",
                state.state,
                Owner::RedisTopology
            ))
            .see(Owner::RedisTopology),
        ),
        _ => None,
    }
}

/// A check judged from the connect-time INFO alone (`redis.memory`,
/// `redis.persistence`): it sends no command of its own. Skipped on a Sentinel.
pub struct FromInfo(pub fn(&HashMap<String, String>) -> Outcome);

impl Check for FromInfo {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            match session(ctx).await {
                Ok(session) => on_sentinel(&session).unwrap_or_else(|| (self.0)(&session.info_fields)),
                Err(outcome) => outcome,
            }
        }
        .boxed()
    }
}
