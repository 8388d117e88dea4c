//! `redis.memory`: the memory limit and eviction policy let cached interview
//! sessions stay: no `allkeys-*` policy that evicts them, no full `noeviction`
//! server that answers writes with OOM.
//!
//! Judged from the connect-time INFO (memory and stats sections), never
//! `CONFIG GET`, which managed services and ACLs forbid.

use std::collections::HashMap;

use super::shared::redis::FromInfo;
use crate::check::{KindDef, Outcome, Premise, Service};

pub static KIND: KindDef = KindDef {
    name: "redis.memory",
    title: "Redis memory and eviction",
    description: "maxmemory is not paired with an allkeys-* policy (sessions evicted) and a noeviction server is below 90 % of it (writes fail with OOM)",
    build: |t| crate::check::without_params(t, FromInfo(judge)),
};

/// At or above this share of `maxmemory` under `noeviction`, writes are about to fail.
const FULL_PERCENT: u64 = 90;

fn judge(info: &HashMap<String, String>) -> Outcome {
    let number = |name: &str| info.get(name).and_then(|v| v.parse::<u64>().ok());
    let (Some(used), Some(max)) = (number("used_memory"), number("maxmemory")) else {
        return Outcome::warn("INFO has no used_memory/maxmemory; cannot judge memory")
            .hint("the server may restrict INFO (ACL or managed service): check memory in the provider's console");
    };
    let policy = info.get("maxmemory_policy").map(String::as_str).unwrap_or("unknown");
    // INFO's own human forms (`1.23M`) read better than bytes.
    let human = |name: &str, bytes: u64| info.get(&format!("{name}_human")).cloned().unwrap_or(format!("{bytes}B"));
    let (used_h, max_h) = (human("used_memory", used), human("maxmemory", max));
    let evicted = number("evicted_keys");
    let details = |o: Outcome| {
        o.detail("used_memory", used)
            .detail("maxmemory", max)
            .detail("maxmemory_policy", policy)
            .detail("evicted_keys", evicted)
    };

    if max == 0 {
        return details(Outcome::pass(format!("no maxmemory limit; {used_h} used, policy {policy}")));
    }
    let percent = used.saturating_mul(100) / max;
    let details = |o: Outcome| details(o).detail("used_percent", percent);
    if policy.starts_with("allkeys-") {
        let evicted_note = match evicted {
            Some(n) if n > 0 => format!(" ({n} keys evicted so far)"),
            _ => String::new(),
        };
        return details(Outcome::problem(format!(
            "maxmemory {max_h} with maxmemory-policy {policy}: cached interview sessions can be evicted at any time{evicted_note}"
        )))
        .hint(
            "use a volatile-* policy (only keys with a TTL are evicted) or noeviction with room to spare, \
             or give Redis its own instance; managed services set this in the parameter group",
        );
    }
    if policy == "noeviction" && percent >= FULL_PERCENT {
        return details(Outcome::problem(format!(
            "{used_h} used of maxmemory {max_h} ({percent}%) under noeviction: writes will fail with OOM"
        )))
        .hint("raise maxmemory (or the instance size), or find what fills it: redis-cli --bigkeys")
        // Once full, writes fail: redis.writable's probe says so, and owns it.
        .premise(Premise::Writable(Service::Redis));
    }
    details(Outcome::pass(format!("{used_h} used of maxmemory {max_h} ({percent}%), policy {policy}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;

    fn info(used: &str, max: &str, policy: &str) -> HashMap<String, String> {
        [("used_memory", used), ("maxmemory", max), ("maxmemory_policy", policy), ("evicted_keys", "0")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn table() {
        let cases: &[(&str, &str, &str, Verdict, &str)] = &[
            ("1000", "0", "noeviction", Verdict::Pass, "no maxmemory limit; 1000B used, policy noeviction"),
            ("1000", "0", "allkeys-lru", Verdict::Pass, "no maxmemory limit; 1000B used, policy allkeys-lru"),
            (
                "1000",
                "10000",
                "allkeys-lru",
                Verdict::Problem,
                "maxmemory 10000B with maxmemory-policy allkeys-lru: cached interview sessions can be evicted at any time",
            ),
            (
                "9000",
                "10000",
                "noeviction",
                Verdict::Problem,
                "9000B used of maxmemory 10000B (90%) under noeviction: writes will fail with OOM",
            ),
            ("8999", "10000", "noeviction", Verdict::Pass, "8999B used of maxmemory 10000B (89%), policy noeviction"),
            (
                "9900",
                "10000",
                "volatile-lru",
                Verdict::Pass,
                "9900B used of maxmemory 10000B (99%), policy volatile-lru",
            ),
        ];
        for (used, max, policy, verdict, message) in cases {
            let o = judge(&info(used, max, policy));
            assert_eq!((o.verdict, o.message.as_str()), (*verdict, *message), "{used}/{max} {policy}");
        }
    }

    #[test]
    fn uses_human_sizes_and_counts_evictions() {
        let mut i = info("1048576", "10485760", "allkeys-lfu");
        i.insert("maxmemory_human".into(), "10.00M".into());
        i.insert("evicted_keys".into(), "42".into());
        let o = judge(&i);
        assert!(o.message.starts_with("maxmemory 10.00M with maxmemory-policy allkeys-lfu"), "{}", o.message);
        assert!(o.message.ends_with("(42 keys evicted so far)"), "{}", o.message);
        assert_eq!(o.details["evicted_keys"], 42);
        assert_eq!(o.details["used_percent"], 10);
    }

    #[test]
    fn missing_fields_warn() {
        assert_eq!(judge(&HashMap::new()).verdict, Verdict::Warn);
    }
}
