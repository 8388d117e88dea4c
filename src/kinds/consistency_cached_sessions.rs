//! `consistency.cached_sessions`: every session Redis has cached exists in
//! PostgreSQL. A cached session with no row is the incident's signature: the API
//! cached it and answered 201 while its insert had failed, and the desktop app then
//! got "Session not found".
//!
//! Read-only and bounded: `SCAN … MATCH … COUNT` (never `KEYS`, which blocks Redis
//! for the whole keyspace), stopping at `sample` distinct keys or `max_scan_calls`
//! calls, whichever comes first; then one query asks which of the sampled ids have
//! no row. Ids that are not UUIDs are counted as malformed and never sent to SQL.

use std::collections::BTreeSet;
use std::time::Instant;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::shared::postgres::{ident, on_tables, query_failed, session};
use crate::check::{Check, Ctx, KindDef, Outcome, Service};

pub static KIND: KindDef = KindDef {
    name: "consistency.cached_sessions",
    title: "Cached sessions exist in the database",
    description: "samples session keys in Redis with SCAN (bounded) and fails when a cached session id has no row in sessions",
    build: |t| {
        let p: Params = crate::check::params(t)?;
        let prefix = p
            .pattern
            .strip_suffix('*')
            .filter(|prefix| !prefix.contains(['*', '?', '[', '\\']))
            .ok_or("`pattern`: a key prefix followed by one `*`, like \"session:*\" (the id is what the `*` matches)")?
            .to_string();
        if p.sample == 0 || p.max_scan_calls == 0 || p.scan_count == 0 {
            return Err("`sample`, `scan_count` and `max_scan_calls` must be at least 1".into());
        }
        Ok(Box::new(CachedSessions { prefix, p }))
    },
};

/// At most this many example ids in the message and details (ids are not secrets).
const EXAMPLES: usize = 5;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    /// The session keys: a prefix and `*` (`session:*`); the id follows the prefix.
    pattern: String,
    /// The table whose `id` the cached ids must exist in.
    table: String,
    /// Distinct keys sampled at most.
    sample: usize,
    /// `COUNT` hint of each SCAN call (keys Redis looks at per call).
    scan_count: u32,
    /// SCAN calls at most, however few keys match.
    max_scan_calls: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            pattern: "session:*".into(),
            table: "sessions".into(),
            sample: 500,
            scan_count: 1000,
            max_scan_calls: 200,
        }
    }
}

struct CachedSessions {
    prefix: String,
    p: Params,
}

/// What SCAN returned, bounded.
#[derive(Debug, Default)]
struct Sample {
    ids: Vec<Uuid>,
    malformed: Vec<String>,
    scan_calls: u32,
    /// SCAN went round the whole keyspace.
    complete: bool,
    /// What stopped sampling: `complete`, `sample`, `max_scan_calls` or `time`.
    bound: &'static str,
}

impl Check for CachedSessions {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let started = Instant::now();
            // Half the deadline for sampling: what was sampled by then is judged.
            let scan_until = started + ctx.timeout / 2;
            let result = async {
                let sample = self.sample(ctx, scan_until).await?;
                let missing = if sample.ids.is_empty() { Vec::new() } else { self.missing(ctx, &sample.ids).await? };
                Ok::<_, Outcome>(self.judge(&sample, &missing))
            };
            result.await.unwrap_or_else(|o| o)
        }
        .boxed()
    }
}

impl CachedSessions {
    async fn sample(&self, ctx: &Ctx, until: Instant) -> Result<Sample, Outcome> {
        let redis = ctx.redis().await.map_err(|f| Outcome::unreachable(f, Service::Redis))?;
        // A Sentinel holds no sessions (SCAN is an unknown command there): redis.topology says so.
        if let Some(skip) = super::shared::redis::on_sentinel(&redis) {
            return Err(skip);
        }
        let mut seen: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut sample = Sample::default();
        let mut cursor = String::from("0");
        while sample.scan_calls < self.p.max_scan_calls && seen.len() < self.p.sample && Instant::now() < until {
            let mut pipe = redis::pipe();
            pipe.cmd("SCAN").arg(&cursor).arg("MATCH").arg(&self.p.pattern).arg("COUNT").arg(self.p.scan_count);
            let replies = redis.round(&pipe, "SCAN").await.map_err(Outcome::from_failure)?;
            sample.scan_calls += 1;
            let reply = match replies.into_iter().next() {
                Some(Ok(v)) => v,
                Some(Err(e)) => {
                    return Err(Outcome::problem(format!("Redis refused SCAN: {e}"))
                        .hint("the Redis user needs +scan and read access to the session keys (ACL ~session:*)"));
                }
                None => return Err(Outcome::problem("no reply to SCAN")),
            };
            let (next, keys): (String, Vec<Vec<u8>>) = redis::from_redis_value(reply)
                .map_err(|e| Outcome::problem(format!("unexpected reply to SCAN: {e}")))?;
            for key in keys {
                if seen.len() >= self.p.sample {
                    break;
                }
                seen.insert(key);
            }
            cursor = next;
            if cursor == "0" {
                sample.complete = true;
                break;
            }
        }
        sample.bound = if sample.complete {
            "complete"
        } else if seen.len() >= self.p.sample {
            "sample"
        } else if sample.scan_calls >= self.p.max_scan_calls {
            "max_scan_calls"
        } else {
            "time"
        };
        for key in seen {
            let id = key.strip_prefix(self.prefix.as_bytes()).unwrap_or(&key);
            // redis.permissions' and redis.roundtrip's probe keys are ours, not the API's.
            if id.starts_with(super::shared::redis::PROBE_MARK.as_bytes()) {
                continue;
            }
            match std::str::from_utf8(id).ok().and_then(|s| Uuid::parse_str(s).ok()) {
                Some(uuid) => sample.ids.push(uuid),
                None => sample.malformed.push(String::from_utf8_lossy(&key).into_owned()),
            }
        }
        Ok(sample)
    }

    /// The sampled ids with no row, in one query.
    async fn missing(&self, ctx: &Ctx, ids: &[Uuid]) -> Result<Vec<Uuid>, Outcome> {
        let pg = session(ctx).await?;
        let sql = format!(
            "SELECT c.id FROM unnest($1::uuid[]) AS c(id) \
             WHERE NOT EXISTS (SELECT 1 FROM {} s WHERE s.id = c.id) ORDER BY c.id",
            ident(&self.p.table)
        );
        let rows = pg
            .query_typed(&sql, &[(&ids, Type::UUID_ARRAY)])
            .await
            .map_err(|e| on_tables(query_failed("the sessions lookup", &e), &e, &[&self.p.table]))?;
        rows.iter()
            .map(|r| r.try_get::<_, Uuid>(0).map_err(|e| Outcome::problem(format!("unexpected reply: {e}"))))
            .collect()
    }

    fn judge(&self, sample: &Sample, missing: &[Uuid]) -> Outcome {
        let sampled = sample.ids.len() + sample.malformed.len();
        let scope = match sample.bound {
            "complete" => String::new(),
            "sample" => format!(" (a sample: sample = {})", self.p.sample),
            "max_scan_calls" => format!(" (a sample: max_scan_calls = {} reached)", self.p.max_scan_calls),
            _ => " (a sample: half the deadline reached)".to_string(),
        };
        let malformed_note = match sample.malformed.len() {
            0 => String::new(),
            n => format!(
                "; {n} malformed (not {}<uuid>, not checked), e.g. {}",
                self.prefix,
                sample.malformed.iter().take(EXAMPLES.min(3)).cloned().collect::<Vec<_>>().join(", ")
            ),
        };
        let examples: Vec<String> = missing.iter().take(EXAMPLES).map(Uuid::to_string).collect();
        let outcome = if sampled == 0 {
            Outcome::pass(format!("no cached sessions sampled (no key matches {})", self.p.pattern))
        } else if missing.is_empty() {
            let which = if sample.complete { "cached" } else { "sampled cached" };
            Outcome::pass(format!(
                "all {} {which} sessions exist in {}{scope}{malformed_note}",
                sample.ids.len(),
                self.p.table
            ))
        } else {
            Outcome::problem(format!(
                "{} of {} sampled cached sessions have no row in {} (the incident's signature: cached, \
                 answered 201, never stored), e.g. {}{malformed_note}",
                missing.len(),
                sampled,
                self.p.table,
                examples.join(", ")
            ))
            .hint(format!(
                "users holding these sessions get \"Session not found\": deploy the fixed session creation \
                 (transaction, user validation), check postgres.session_insert, then remove the stale keys \
                 (redis-cli DEL {}<id>)",
                self.prefix
            ))
        };
        outcome
            .detail("sampled", sampled)
            .detail("missing", missing.len())
            .detail("malformed", sample.malformed.len())
            .detail("scan_calls", sample.scan_calls)
            .detail("complete", sample.complete)
            .detail("bound", sample.bound)
            .detail("missing_examples", examples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;

    fn check() -> CachedSessions {
        CachedSessions { prefix: "session:".into(), p: Params::default() }
    }

    #[test]
    fn pattern_must_be_a_prefix_and_a_star() {
        for bad in ["session:", "sess*ion:*", "session:[ab]*", "*"] {
            let mut t = toml::Table::new();
            t.insert("pattern".into(), bad.into());
            let built = (KIND.build)(t);
            if bad == "*" {
                assert!(built.is_ok(), "an empty prefix is allowed");
            } else {
                assert!(built.is_err(), "{bad} should be rejected");
            }
        }
    }

    #[test]
    fn verdicts() {
        let id = Uuid::nil();
        let empty = Sample { complete: true, scan_calls: 1, bound: "complete", ..Sample::default() };
        assert_eq!(check().judge(&empty, &[]).message, "no cached sessions sampled (no key matches session:*)");
        let one = Sample {
            ids: vec![id],
            malformed: vec!["session:x".into()],
            scan_calls: 1,
            complete: true,
            bound: "complete",
        };
        let ok = check().judge(&one, &[]);
        assert_eq!(ok.verdict, Verdict::Pass);
        assert_eq!(
            ok.message,
            "all 1 cached sessions exist in sessions; 1 malformed (not session:<uuid>, not checked), e.g. session:x"
        );
        let bad = check().judge(&one, &[id]);
        assert_eq!(bad.verdict, Verdict::Problem);
        assert!(bad.message.starts_with("1 of 2 sampled cached sessions have no row in sessions"), "{}", bad.message);
        assert_eq!(bad.details["missing_examples"], serde_json::json!([id.to_string()]));
    }
}
