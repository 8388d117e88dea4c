//! `redis.permissions`: the REDIS_URL user may do what the API does with its
//! cache — `SET`, `GET`, `EXPIRE` and `DEL` on `session:*` keys — checked without
//! writing anything.
//!
//! Redis checks a command's ACL (command and key patterns) before it looks at
//! anything else — memory (OOM), persistence (MISCONF), a read-only replica
//! (READONLY) — and before it runs it. So one pipelined round of no-ops on a key
//! under the API's prefix that cannot exist answers the question exactly:
//! `SET <key> x XX` (sets only an existing key), `GET`, `EXPIRE <key> 1` and `DEL`
//! of an absent key change nothing (no key, no dirty counter), yet each one is
//! refused with NOPERM if the user may not run it on that key.
//!
//! `ACL DRYRUN` would answer the same without running anything, but it needs
//! `+acl|dryrun`, which an application's user rarely has, and Redis 7; the no-ops
//! take the same ACL path on every Redis with ACLs.
//!
//! Any other refusal (READONLY, OOM, MISCONF …) means the ACL let the command
//! through: the user's permissions are fine, and why writes fail is the finding
//! of `redis.writable`.

use futures::FutureExt;
use futures::future::BoxFuture;

use super::shared::redis::{IMPACT, KeyPrefix, session};
use crate::check::{Check, Ctx, KindDef, Outcome, Owner, Premise};
use crate::probe::redis::Reply;

pub static KIND: KindDef = KindDef {
    name: "redis.permissions",
    title: "Redis user may cache sessions",
    description: "the REDIS_URL user may SET, GET, EXPIRE and DEL the API's keys (key_prefix, default session:), probed with no-ops on an absent key that pass the ACL check and change no data",
    build: |t| Ok(Box::new(Permissions(KeyPrefix::from_params(t)?))),
};

/// What the API does with a cached session, in the order probed.
const COMMANDS: [&str; 4] = ["SET", "GET", "EXPIRE", "DEL"];

struct Permissions(KeyPrefix);

impl Check for Permissions {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let session = match session(ctx).await {
                Ok(s) => s,
                Err(outcome) => return outcome,
            };
            // A Sentinel answers every data command "unknown command", a Cluster that
            // is down CLUSTERDOWN: nothing to learn about the ACL; redis.topology says why.
            if let Some(skip) = super::shared::redis::defer_to_topology(&session).await {
                return skip;
            }
            let key = probe_key(&self.0.key_prefix);
            let mut pipe = redis::pipe();
            pipe.cmd("SET").arg(&key).arg("x").arg("XX");
            pipe.cmd("GET").arg(&key);
            pipe.cmd("EXPIRE").arg(&key).arg(1);
            pipe.cmd("DEL").arg(&key);
            match session.round(&pipe, "the ACL probe (SET XX/GET/EXPIRE/DEL)").await {
                Ok(replies) => judge(&replies, session.username(), &self.0.key_prefix).detail("probe_key", key),
                Err(f) => Outcome::from_failure(f),
            }
        }
        .boxed()
    }
}

/// A key under the API's prefix that cannot exist.
fn probe_key(prefix: &str) -> String {
    super::shared::redis::probe_key(prefix, "acl-probe")
}

/// The owner of a refusal that is not about permissions, by the server's error code.
fn owner(code: &str) -> Option<Owner> {
    match code {
        // redis.writable owns every refusal of a write that is not the ACL's.
        "READONLY" | "OOM" | "MISCONF" | "NOREPLICAS" | "CLUSTERDOWN" => Some(Owner::RedisWritable),
        _ => None,
    }
}

fn judge(replies: &[Reply], user: &str, prefix: &str) -> Outcome {
    if replies.len() != COMMANDS.len() {
        return Outcome::problem(format!(
            "expected {} replies to the ACL probe, got {}",
            COMMANDS.len(),
            replies.len()
        ));
    }
    let mut denied: Vec<&str> = Vec::new();
    let mut refused: Vec<(&str, &str)> = Vec::new();
    // NOPERM says which rule refused: the command ("no permissions to run the 'set'
    // command") or the key pattern ("… to access one of the keys used as arguments"
    // before Redis 7.2, "No permissions to access a key" since).
    let (mut command_denied, mut key_denied) = (false, false);
    for (command, reply) in COMMANDS.iter().zip(replies) {
        if let Err(words) = reply {
            match words.split([' ', ':']).next().unwrap_or_default() {
                "NOPERM" => {
                    denied.push(command);
                    if words.contains("key") {
                        key_denied = true;
                    } else {
                        command_denied = true;
                    }
                }
                _ => refused.push((command, words.as_str())),
            }
        }
    }
    let pattern = format!("{prefix}*");
    let outcome = if denied.is_empty() {
        let note = match refused.first() {
            None => String::new(),
            Some((command, words)) => {
                let code = words.split([' ', ':']).next().unwrap_or_default();
                let see = owner(code).map(|id| format!("; see {id}")).unwrap_or_default();
                format!(" (the ACL lets them through; the server refuses {command} for another reason: {words}{see})")
            }
        };
        Outcome::pass(format!("user \"{user}\" may SET, GET, EXPIRE and DEL {pattern} keys{note}"))
    } else {
        // Only the rules that refused: Redis rejects a key pattern added after `~*`.
        let mut rules: String = if command_denied {
            COMMANDS.iter().map(|c| format!(" +{}", c.to_ascii_lowercase())).collect()
        } else {
            String::new()
        };
        if key_denied {
            rules.push_str(&format!(" ~{pattern}"));
        }
        Outcome::problem(format!(
            "user \"{user}\" may not {} {pattern} keys (NOPERM): the API's cache {} fail",
            denied.join(", "),
            if denied.iter().any(|c| *c != "GET") { "writes" } else { "reads" }
        ))
        .hint(format!(
            "ACL SETUSER {user}{rules} (then ACL SAVE with an aclfile, or CONFIG REWRITE, so it survives a \
             restart; on a managed service change the user's access string) — {IMPACT} until then"
        ))
        .reports(Premise::RedisAcl)
    };
    let refused_detail: serde_json::Map<String, serde_json::Value> =
        refused.iter().map(|(c, w)| (c.to_string(), serde_json::Value::from(*w))).collect();
    outcome
        .detail("user", user)
        .detail("key_pattern", pattern)
        .detail("denied", denied)
        .detail("refused_otherwise", refused_detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;
    use redis::Value;

    fn nil() -> Reply {
        Ok(Value::Nil)
    }

    fn zero() -> Reply {
        Ok(Value::Int(0))
    }

    fn noperm(command: &str) -> Reply {
        Err(format!("NOPERM: User app has no permissions to run the '{command}' command"))
    }

    #[test]
    fn no_ops_answered_mean_every_command_is_permitted() {
        let o = judge(&[nil(), nil(), zero(), zero()], "default", "session:");
        assert_eq!(o.verdict, Verdict::Pass);
        assert_eq!(o.message, "user \"default\" may SET, GET, EXPIRE and DEL session:* keys");
    }

    #[test]
    fn noperm_on_writes_is_named_with_the_acl_fix() {
        let o = judge(&[noperm("set"), nil(), noperm("expire"), noperm("del")], "reader", "session:");
        assert_eq!(o.verdict, Verdict::Problem);
        assert_eq!(
            o.message,
            "user \"reader\" may not SET, EXPIRE, DEL session:* keys (NOPERM): the API's cache writes fail"
        );
        let hint = o.hint.unwrap_or_default();
        assert!(hint.starts_with("ACL SETUSER reader +set +get +expire +del (then ACL SAVE"), "{hint}");
        assert_eq!(o.causes.reports, [Premise::RedisAcl]);
        assert_eq!(o.details["denied"], serde_json::json!(["SET", "EXPIRE", "DEL"]));
    }

    #[test]
    fn a_key_pattern_that_leaves_out_the_api_keys_is_fixed_with_the_pattern_alone() {
        let key = || Err("NOPERM: No permissions to access a key".to_string());
        let old =
            || Err("NOPERM: this user has no permissions to access one of the keys used as arguments".to_string());
        let o = judge(&[key(), old(), key(), old()], "app", "session:");
        assert_eq!(
            o.message,
            "user \"app\" may not SET, GET, EXPIRE, DEL session:* keys (NOPERM): the API's cache writes fail"
        );
        assert!(o.hint.unwrap_or_default().starts_with("ACL SETUSER app ~session:* (then"));
    }

    #[test]
    fn a_read_only_replica_is_not_a_permission_problem() {
        let readonly = || Err("READONLY: You can't write against a read only replica.".to_string());
        let o = judge(&[readonly(), nil(), readonly(), readonly()], "app", "session:");
        assert_eq!(o.verdict, Verdict::Pass);
        assert!(o.message.ends_with("the server refuses SET for another reason: READONLY: You can't write against a read only replica.; see redis.writable)"), "{}", o.message);
        assert!(o.causes.reports.is_empty());
    }

    #[test]
    fn the_probe_key_is_under_the_api_prefix_and_unique() {
        let (a, b) = (probe_key("session:"), probe_key("session:"));
        assert!(a.starts_with("session:mockmate-diag-acl-probe-") && a != b, "{a} {b}");
    }
}
