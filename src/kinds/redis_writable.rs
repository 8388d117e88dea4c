//! `redis.writable`: REDIS_URL points at a server that accepts the app's cache
//! writes — not a read-only replica, which answers every write with READONLY.
//!
//! Judged from the connect-time INFO (`role`, `slave_read_only`): no command is
//! sent. A Sentinel (no data) and a Cluster that is down (CLUSTERDOWN) are
//! `redis.topology`'s findings: this check steps aside there.

use std::collections::HashMap;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::shared::redis::{IMPACT, defer_to_topology, session};
use crate::check::{Check, Ctx, KindDef, Outcome, Premise, Service};
use crate::probe::redis::Mode;

pub static KIND: KindDef = KindDef {
    name: "redis.writable",
    title: "Redis accepts writes",
    description: "the server is not a read-only replica (INFO role, slave_read_only), so cache writes will not fail with READONLY",
    build: |t| crate::check::without_params(t, Writable),
};

struct Writable;

impl Check for Writable {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let session = match session(ctx).await {
                Ok(s) => s,
                Err(outcome) => return outcome,
            };
            match defer_to_topology(&session).await {
                Some(skip) => skip,
                None => judge(&session.info_fields, session.mode() == Mode::Cluster),
            }
        }
        .boxed()
    }
}

fn judge(info: &HashMap<String, String>, cluster: bool) -> Outcome {
    let field = |name: &str| info.get(name).map(String::as_str);
    match field("role") {
        Some("master") if cluster => Outcome::pass(
            "cluster master (role:master): writes to the slots it serves are accepted (keys in other slots: see redis.topology)",
        )
        .detail("role", "master"),
        Some("master") => Outcome::pass("primary (role:master): cache writes are accepted").detail("role", "master"),
        Some("slave") if cluster => {
            let primary = format!("{}:{}", field("master_host").unwrap_or("?"), field("master_port").unwrap_or("?"));
            Outcome::problem(format!(
                "cluster replica of {primary}: the app's writes are redirected to its master (MOVED)"
            ))
            .hint(format!("point REDIS_URL at a master node, e.g. {primary} ({IMPACT} until then)"))
            .reports(Premise::Writable(Service::Redis))
            .detail("role", "slave")
            .detail("primary", primary)
        }
        Some("slave") => {
            let primary = format!("{}:{}", field("master_host").unwrap_or("?"), field("master_port").unwrap_or("?"));
            // Redis 7 still spells it `slave_read_only`; accept the newer name too.
            let read_only = field("slave_read_only").or_else(|| field("replica_read_only"));
            let details = |o: Outcome| {
                o.detail("role", "slave")
                    .detail("primary", primary.clone())
                    .detail("master_link_status", field("master_link_status"))
                    .detail("read_only", read_only.map(|v| v == "1"))
            };
            match read_only {
                Some("0") => details(Outcome::warn(format!(
                    "writable replica of {primary}: cache writes succeed here but are not replicated and vanish at the next full sync"
                )))
                .hint(format!("point REDIS_URL at the primary ({primary})")),
                _ => details(Outcome::problem(format!(
                    "read-only replica of {primary} (role:slave, slave_read_only:1): the app's cache writes will fail with READONLY"
                )))
                .hint(format!(
                    "point REDIS_URL at the primary ({primary}), or at the managed service's primary endpoint ({IMPACT} until then)"
                ))
                .reports(Premise::Writable(Service::Redis)),
            }
        }
        Some(other) => {
            Outcome::warn(format!("unexpected role:{other} in INFO; cannot tell whether writes are accepted"))
                .detail("role", other)
        }
        None => Outcome::warn("INFO has no role field; cannot tell whether writes are accepted")
            .hint("the server may restrict INFO (ACL or managed service); check that REDIS_URL points at the primary"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;

    fn info(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn table() {
        let replica = [("role", "slave"), ("master_host", "10.0.0.5"), ("master_port", "6379")];
        let cases: &[(&[(&str, &str)], Verdict, &str)] = &[
            (&[("role", "master")], Verdict::Pass, "primary (role:master): cache writes are accepted"),
            (
                &[replica[0], replica[1], replica[2], ("slave_read_only", "1")],
                Verdict::Problem,
                "read-only replica of 10.0.0.5:6379 (role:slave, slave_read_only:1): the app's cache writes will fail with READONLY",
            ),
            (
                &[replica[0], replica[1], replica[2], ("replica_read_only", "1")],
                Verdict::Problem,
                "read-only replica of 10.0.0.5:6379 (role:slave, slave_read_only:1): the app's cache writes will fail with READONLY",
            ),
            (
                &[replica[0], replica[1], replica[2], ("slave_read_only", "0")],
                Verdict::Warn,
                "writable replica of 10.0.0.5:6379: cache writes succeed here but are not replicated and vanish at the next full sync",
            ),
            (&[], Verdict::Warn, "INFO has no role field; cannot tell whether writes are accepted"),
        ];
        for (fields, verdict, message) in cases {
            let o = judge(&info(fields), false);
            assert_eq!((o.verdict, o.message.as_str()), (*verdict, *message), "{fields:?}");
        }
        let o = judge(&info(&[replica[0], replica[1], replica[2], ("slave_read_only", "1")]), false);
        assert!(o.hint.unwrap_or_default().starts_with("point REDIS_URL at the primary (10.0.0.5:6379)"));
    }
}
