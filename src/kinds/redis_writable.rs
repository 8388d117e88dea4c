//! `redis.writable`: the one owner of "can the cache take writes". The API's
//! cache write is a `SET` on a `session:*` key; this check asks the server whether
//! one would be accepted, without writing: `SET <absent key> x XX` sets only a key
//! that exists, so it changes nothing (no key, no dirty counter), yet Redis runs
//! every check a real `SET` meets before it — the ACL (NOPERM), a read-only replica
//! (READONLY), memory under `noeviction` (OOM), a failed save (MISCONF), a Cluster
//! that is down (CLUSTERDOWN), `min-replicas-to-write` (NOREPLICAS) — and refuses it
//! the same way. The connect-time INFO says why (the role and primary, memory).
//!
//! `redis.memory` and `redis.persistence` rest on this check (`Premise::Writable`):
//! when writes fail, it is the one finding. NOPERM is `redis.permissions`' finding,
//! a Sentinel or a Cluster that is down `redis.topology`'s: this check steps aside.

use std::collections::HashMap;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::shared::redis::{IMPACT, KeyPrefix, defer_to_topology, probe_key, session};
use crate::check::{Check, Ctx, KindDef, Outcome, Premise, Service};
use crate::probe::redis::{Mode, Reply};

pub static KIND: KindDef = KindDef {
    name: "redis.writable",
    title: "Redis accepts writes",
    description: "a SET on the API's keys (key_prefix, default session:) would be accepted: a no-op SET … XX on an absent key is refused exactly where a real one would be (READONLY, OOM, MISCONF, NOPERM, CLUSTERDOWN …); INFO names the cause",
    build: |t| Ok(Box::new(Writable(KeyPrefix::from_params(t)?))),
};

struct Writable(KeyPrefix);

impl Check for Writable {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let session = match session(ctx).await {
                Ok(s) => s,
                Err(outcome) => return outcome,
            };
            if let Some(skip) = defer_to_topology(&session).await {
                return skip;
            }
            let key = probe_key(&self.0.key_prefix, "write-probe");
            let mut pipe = redis::pipe();
            pipe.cmd("SET").arg(&key).arg("x").arg("XX");
            let reply = match session.round(&pipe, "the write probe (SET … XX)").await {
                Ok(mut replies) if replies.len() == 1 => replies.remove(0),
                Ok(replies) => {
                    return Outcome::problem(format!("expected 1 reply to the write probe, got {}", replies.len()));
                }
                Err(f) => return Outcome::from_failure(f),
            };
            judge(&session.info_fields, session.mode() == Mode::Cluster, &reply, &self.0.key_prefix)
                .detail("probe_key", key)
        }
        .boxed()
    }
}

/// The refusal's code: `OOM`, `READONLY` … (the first word of the server's answer).
fn code(words: &str) -> &str {
    words.split([' ', ':']).next().unwrap_or_default()
}

fn judge(info: &HashMap<String, String>, cluster: bool, reply: &Reply, prefix: &str) -> Outcome {
    let field = |name: &str| info.get(name).map(String::as_str);
    let primary =
        || format!("{}:{}", field("master_host").unwrap_or("unknown"), field("master_port").unwrap_or("unknown"));
    // Redis 7 still spells it `slave_read_only`; accept the newer name too.
    let read_only = field("slave_read_only").or_else(|| field("replica_read_only"));
    let role = field("role");
    // A Cluster client follows a redirection: the probe key's slot is another master's.
    let redirected = reply.as_ref().err().is_some_and(|w| matches!(code(w), "MOVED" | "ASK"));
    let outcome = match reply {
        Err(words) if !redirected => refused(info, words, prefix, &primary()),
        _ => match role {
            Some("master") if cluster => Outcome::pass(
                "cluster master (role:master): a SET is accepted in the slots it serves (keys in other slots: see redis.topology)",
            ),
            Some("master") => Outcome::pass("primary (role:master): a SET is accepted (probed with a no-op SET … XX)"),
            Some("slave") if cluster => Outcome::problem(format!(
                "cluster replica of {}: the app's writes are redirected to its master (MOVED)",
                primary()
            ))
            .hint(format!("point REDIS_URL at a master node, e.g. {} ({IMPACT} until then)", primary()))
            .reports(Premise::Writable(Service::Redis)),
            Some("slave") => Outcome::warn(format!(
                "writable replica of {}: cache writes succeed here but are not replicated and vanish at the next full sync",
                primary()
            ))
            .hint(format!("point REDIS_URL at the primary ({})", primary())),
            Some(other) => Outcome::pass(format!("a SET is accepted (probed with a no-op SET … XX; INFO role:{other})")),
            None => Outcome::pass("a SET is accepted (probed with a no-op SET … XX; INFO has no role field)"),
        },
    };
    let outcome = match role {
        Some("slave") => outcome
            .detail("primary", primary())
            .detail("master_link_status", field("master_link_status"))
            .detail("read_only", read_only.map(|v| v == "1")),
        _ => outcome,
    };
    outcome.detail("role", role).detail("refused", reply.as_ref().err().cloned())
}

/// The probe was refused: the cause in the server's words and INFO's numbers.
fn refused(info: &HashMap<String, String>, words: &str, prefix: &str, primary: &str) -> Outcome {
    let field = |name: &str| info.get(name).map(String::as_str).unwrap_or("unknown");
    let writes_fail = |o: Outcome| o.reports(Premise::Writable(Service::Redis));
    match code(words) {
        "READONLY" => writes_fail(
            Outcome::problem(format!(
                "read-only replica of {primary} (role:slave, slave_read_only:1): the app's cache writes will fail with READONLY"
            ))
            .hint(format!(
                "point REDIS_URL at the primary ({primary}), or at the managed service's primary endpoint ({IMPACT} until then)"
            )),
        ),
        "OOM" => writes_fail(
            Outcome::problem(format!(
                "every SET answers OOM: {} used of maxmemory {} under maxmemory-policy {}: the app's cache writes fail",
                field("used_memory_human"),
                field("maxmemory_human"),
                field("maxmemory_policy")
            ))
            .hint(format!(
                "raise maxmemory (CONFIG SET maxmemory, or the instance size), or let Redis evict what expires: \
                 CONFIG SET maxmemory-policy volatile-lru; find what fills it: redis-cli --bigkeys ({IMPACT} until then)"
            )),
        ),
        "MISCONF" => writes_fail(
            Outcome::problem(
                "every write answers MISCONF: Redis cannot persist to disk (the last snapshot failed, \
                 stop-writes-on-bgsave-error): the app's cache writes fail",
            )
            .hint(format!(
                "read the Redis log for the save error (disk full, permissions on Redis's dir), fix it and run BGSAVE; \
                 a pure cache can run without snapshots: CONFIG SET save \"\" ({IMPACT} until then)"
            )),
        ),
        "NOREPLICAS" => writes_fail(
            Outcome::problem(format!(
                "every write answers NOREPLICAS: fewer replicas are connected than min-replicas-to-write asks ({words})"
            ))
            .hint(format!("bring the replicas back, or lower min-replicas-to-write ({IMPACT} until then)")),
        ),
        "CLUSTERDOWN" => writes_fail(
            Outcome::problem(format!("the Redis Cluster refuses writes: {words}"))
                .hint(format!("see redis.topology for the cluster's state ({IMPACT} until then)")),
        ),
        // The ACL, not the server's state: redis.permissions owns it and says which rule.
        "NOPERM" => Outcome::problem(format!("the ACL refuses SET on {prefix}* keys: {words}"))
            .hint(format!("see redis.permissions for the ACL rule to add ({IMPACT} until then)"))
            .premise(Premise::RedisAcl),
        _ => writes_fail(
            Outcome::problem(format!("a SET is refused: {words}"))
                .hint(format!("the server refuses writes: its log says why ({IMPACT} until then)")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;
    use redis::Value;

    fn info(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn refused_with(words: &str) -> Reply {
        Err(words.to_string())
    }

    #[test]
    fn an_accepted_probe_passes_by_role() {
        let replica = [("role", "slave"), ("master_host", "10.0.0.5"), ("master_port", "6379")];
        let ok: Reply = Ok(Value::Nil);
        let o = judge(&info(&[("role", "master")]), false, &ok, "session:");
        assert_eq!(
            (o.verdict, o.message.as_str()),
            (Verdict::Pass, "primary (role:master): a SET is accepted (probed with a no-op SET … XX)")
        );
        let o = judge(&info(&[replica[0], replica[1], replica[2], ("slave_read_only", "0")]), false, &ok, "session:");
        assert_eq!(o.verdict, Verdict::Warn);
        assert!(o.message.starts_with("writable replica of 10.0.0.5:6379"), "{}", o.message);
        let o = judge(&info(&[]), false, &ok, "session:");
        assert_eq!(o.verdict, Verdict::Pass, "a SET was accepted: no need to guess from INFO");
    }

    #[test]
    fn a_refused_probe_is_the_writes_finding_in_the_servers_words() {
        let full = info(&[
            ("role", "master"),
            ("used_memory_human", "1.20M"),
            ("maxmemory_human", "1.00M"),
            ("maxmemory_policy", "noeviction"),
        ]);
        let o =
            judge(&full, false, &refused_with("OOM: command not allowed when used memory > 'maxmemory'."), "session:");
        assert_eq!(o.verdict, Verdict::Problem);
        assert_eq!(
            o.message,
            "every SET answers OOM: 1.20M used of maxmemory 1.00M under maxmemory-policy noeviction: the app's cache writes fail"
        );
        assert_eq!(o.causes.reports, [Premise::Writable(Service::Redis)]);
        assert!(!o.message.contains("accepted"));

        let replica = info(&[("role", "slave"), ("master_host", "10.0.0.5"), ("master_port", "6379")]);
        let o = judge(&replica, false, &refused_with("READONLY: You can't write against a read only replica."), "s:");
        assert!(o.message.ends_with("the app's cache writes will fail with READONLY"), "{}", o.message);
        assert!(o.hint.unwrap_or_default().starts_with("point REDIS_URL at the primary (10.0.0.5:6379)"));

        let o = judge(&full, false, &refused_with("MISCONF: Redis is configured to save RDB snapshots"), "s:");
        assert!(o.message.starts_with("every write answers MISCONF"), "{}", o.message);
        assert_eq!(o.causes.reports, [Premise::Writable(Service::Redis)]);

        let o = judge(
            &full,
            false,
            &refused_with("NOPERM: User app has no permissions to run the 'set' command"),
            "session:",
        );
        assert_eq!(o.causes.premises, [Premise::RedisAcl]);
        assert!(o.causes.reports.is_empty());
    }
}
