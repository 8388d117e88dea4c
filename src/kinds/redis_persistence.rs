//! `redis.persistence`: the last RDB snapshot and AOF write did not fail. After
//! a failed save Redis refuses writes with MISCONF (`stop-writes-on-bgsave-error`,
//! on by default), so the cache stops working although PING answers.
//!
//! Persistence switched off is fine for a cache. Judged from the connect-time INFO.

use std::collections::HashMap;

use super::shared::redis::FromInfo;
use crate::check::{KindDef, Outcome, Premise, Service};

pub static KIND: KindDef = KindDef {
    name: "redis.persistence",
    title: "Redis persistence healthy",
    description: "the last RDB save and AOF write succeeded (rdb_last_bgsave_status, aof_last_write_status), so writes are not refused with MISCONF; persistence off is fine",
    build: |t| crate::check::without_params(t, FromInfo(judge)),
};

fn judge(info: &HashMap<String, String>) -> Outcome {
    let field = |name: &str| info.get(name).map(String::as_str);
    let rdb_status = field("rdb_last_bgsave_status");
    let aof_status = field("aof_last_write_status");
    if rdb_status.is_none() && aof_status.is_none() {
        return Outcome::warn("INFO has no persistence section; cannot judge persistence")
            .hint("the server may restrict INFO (ACL or managed service)");
    }
    let aof_on = field("aof_enabled") == Some("1");
    // `save` is not in INFO; "never saved since start" is the visible trace of it being off.
    let rdb_saved = field("rdb_saves").is_some_and(|n| n != "0") || field("rdb_last_bgsave_time_sec") != Some("-1");
    let details = |o: Outcome| {
        o.detail("rdb_last_bgsave_status", rdb_status)
            .detail(
                "rdb_changes_since_last_save",
                field("rdb_changes_since_last_save").and_then(|n| n.parse::<u64>().ok()),
            )
            .detail("aof_enabled", aof_on)
            .detail("aof_last_write_status", aof_status)
    };

    // Redis refuses writes after a failed snapshot only while snapshots are
    // scheduled (`save`, not visible in INFO) and after a failed AOF write only with AOF on.
    let mut failed = Vec::new();
    if rdb_status == Some("err") {
        failed.push(
            "the last RDB snapshot failed (rdb_last_bgsave_status:err): with snapshots scheduled, writes fail with MISCONF until one succeeds (stop-writes-on-bgsave-error, the default)",
        );
    }
    if aof_status == Some("err") {
        failed
            .push("the last AOF write failed (aof_last_write_status:err): writes fail with MISCONF until one succeeds");
    }
    if !failed.is_empty() {
        return details(Outcome::problem(failed.join("; ")))
        .hint(
            "read the Redis log for the save error (disk full, permissions on Redis's dir) and fix it, then run BGSAVE; \
             a pure cache can run without persistence (save \"\", appendonly no)",
        )
        // When Redis refuses writes for it (MISCONF), redis.writable's probe says so, and owns it.
        .premise(Premise::Writable(Service::Redis));
    }
    match (aof_on, rdb_saved) {
        (false, false) => {
            details(Outcome::pass("no persistence seen (AOF off, no RDB snapshot since start): fine for a cache"))
                .detail("persistence", "off")
        }
        (true, _) => details(Outcome::pass("AOF on, last write ok; last RDB snapshot ok")).detail("persistence", "aof"),
        (false, true) => details(Outcome::pass("RDB snapshots, last one ok")).detail("persistence", "rdb"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;

    fn info(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let base = [
            ("rdb_last_bgsave_status", "ok"),
            ("aof_last_write_status", "ok"),
            ("aof_enabled", "0"),
            ("rdb_saves", "0"),
            ("rdb_last_bgsave_time_sec", "-1"),
        ];
        base.iter().chain(pairs).map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn table() {
        let rdb = "the last RDB snapshot failed (rdb_last_bgsave_status:err): with snapshots scheduled, writes fail with MISCONF until one succeeds (stop-writes-on-bgsave-error, the default)";
        let aof = "the last AOF write failed (aof_last_write_status:err): writes fail with MISCONF until one succeeds";
        let cases: &[(&[(&str, &str)], Verdict, String)] = &[
            (&[], Verdict::Pass, "no persistence seen (AOF off, no RDB snapshot since start): fine for a cache".into()),
            (
                &[("rdb_saves", "3"), ("rdb_last_bgsave_time_sec", "0")],
                Verdict::Pass,
                "RDB snapshots, last one ok".into(),
            ),
            (&[("aof_enabled", "1")], Verdict::Pass, "AOF on, last write ok; last RDB snapshot ok".into()),
            (&[("rdb_last_bgsave_status", "err")], Verdict::Problem, rdb.to_string()),
            (&[("aof_enabled", "1"), ("aof_last_write_status", "err")], Verdict::Problem, aof.to_string()),
        ];
        for (fields, verdict, message) in cases {
            let o = judge(&info(fields));
            assert_eq!((o.verdict, o.message.as_str()), (*verdict, message.as_str()), "{fields:?}");
        }
        let both = judge(&info(&[("rdb_last_bgsave_status", "err"), ("aof_last_write_status", "err")]));
        assert_eq!(both.message, format!("{rdb}; {aof}"));
        assert_eq!(judge(&HashMap::new()).verdict, Verdict::Warn);
    }
}
