//! `redis.roundtrip`: with `--allow-writes` only, the cache path the app uses
//! works end to end: `SET session:mockmate-diag-probe-<uuid> <uuid> EX 30`, `GET`,
//! `DEL`. The key is under the API's prefix (`key_prefix`, default `session:`):
//! an ACL that confines the API's user to `~session:*` must let the probe through
//! as it lets the API through, or the check would fail where the API works.
//!
//! The three commands go out in one write, so the `DEL` reaches the server
//! whatever `SET` and `GET` answer and even if this check runs out of time while
//! waiting; the 30 s expiry is the backstop if the connection dies first.

use futures::FutureExt;
use futures::future::BoxFuture;
use redis::Value;

use super::shared::redis::{IMPACT, KeyPrefix, defer_to_topology, probe_key, session};
use crate::check::{Check, Ctx, KindDef, Outcome, Premise, Service};
use crate::probe::redis::Reply;

pub static KIND: KindDef = KindDef {
    name: "redis.roundtrip",
    title: "Redis write round trip",
    description: "with --allow-writes: SET (EX 30), GET and DEL of a random key under the API's prefix (key_prefix, default session:); leaves no key behind",
    build: |t| Ok(Box::new(Roundtrip(KeyPrefix::from_params(t)?))),
};

/// Seconds the probe key lives if the `DEL` never arrives.
const TTL_SECS: u64 = 30;

struct Roundtrip(KeyPrefix);

impl Check for Roundtrip {
    /// It writes a key: never before its needs have passed.
    fn only_reads(&self) -> bool {
        false
    }

    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            if !ctx.allow_writes {
                return Outcome::skip("read-only run; pass --allow-writes");
            }
            let session = match session(ctx).await {
                Ok(s) => s,
                Err(outcome) => return outcome,
            };
            // A Sentinel answers "unknown command", a Cluster that is down CLUSTERDOWN:
            // redis.topology's finding, not a second one here.
            if let Some(skip) = defer_to_topology(&session).await {
                return skip;
            }
            let key = probe_key(&self.0.key_prefix, "probe");
            let value = uuid::Uuid::new_v4().to_string();
            let mut pipe = redis::pipe();
            pipe.cmd("SET").arg(&key).arg(&value).arg("EX").arg(TTL_SECS);
            pipe.cmd("GET").arg(&key);
            pipe.cmd("DEL").arg(&key);
            let started = std::time::Instant::now();
            let replies = match session.round(&pipe, "SET/GET/DEL").await {
                Ok(r) => r,
                Err(f) => {
                    return Outcome::problem(format!(
                        "{} (the probe key expires by itself within {TTL_SECS}s)",
                        f.message
                    ))
                    .hint(f.hint.unwrap_or_else(|| format!("check the server's state ({IMPACT} while writes fail)")));
                }
            };
            let ms = (started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
            judge(&replies, &value).detail("latency_ms", ms).detail("key_prefix", self.0.key_prefix.clone())
        }
        .boxed()
    }
}

fn judge(replies: &[Reply], value: &str) -> Outcome {
    let [set, get, del] = replies else {
        return Outcome::problem(format!("expected 3 replies to SET/GET/DEL, got {}", replies.len()));
    };
    if let Err(words) = set {
        return refused(Outcome::problem(format!("SET failed: {words}")), words);
    }
    let got = match get {
        Ok(Value::BulkString(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Ok(Value::SimpleString(s)) => Some(s.clone()),
        Ok(_) => None,
        Err(words) => return refused(Outcome::problem(format!("GET failed: {words}")), words),
    };
    if got.as_deref() != Some(value) {
        return Outcome::problem("GET did not return the value just SET: another client or a proxy changed or evicted it")
            .hint(format!(
                "check that REDIS_URL reaches one server (not a proxy that splits reads and writes) and redis.memory ({IMPACT} while this fails)"
            ));
    }
    match del {
        Ok(Value::Int(1)) => Outcome::pass(format!("SET (EX {TTL_SECS}), GET and DEL of a probe key in one round")),
        Ok(other) => {
            Outcome::problem(format!("DEL answered {other:?} instead of removing the 1 probe key")).hint(format!(
                "the probe key expires by itself within {TTL_SECS}s; check who else deletes or renames keys under the \
                 API's prefix"
            ))
        }
        Err(words) => refused(
            Outcome::problem(format!("DEL failed: {words} (the probe key expires by itself within {TTL_SECS}s)")),
            words,
        ),
    }
}

/// A refused command with its fix and the finding it rests on, by the server's
/// error code: NOPERM is `redis.permissions`' finding; READONLY, OOM and MISCONF
/// are those of the checks that see why writes fail (`redis.writable`,
/// `redis.memory`, `redis.persistence`).
fn refused(outcome: Outcome, words: &str) -> Outcome {
    let outcome = outcome.hint(write_hint(words));
    match error_code(words) {
        "NOPERM" => outcome.premise(Premise::RedisAcl),
        "READONLY" | "OOM" | "MISCONF" => outcome.premise(Premise::Writable(Service::Redis)),
        _ => outcome,
    }
}

/// The server's error code: the first word of its reply (`READONLY`, `NOPERM: …`).
fn error_code(words: &str) -> &str {
    words.split([' ', ':']).next().unwrap_or_default()
}

/// The fix for a refused write, by the server's error code.
fn write_hint(words: &str) -> String {
    let fix = match error_code(words) {
        "READONLY" => "REDIS_URL points at a read-only replica: point it at the primary",
        "OOM" => "Redis is at maxmemory under noeviction: raise maxmemory or free memory (see redis.memory)",
        "MISCONF" => {
            "Redis cannot save to disk and refuses writes: fix the save error in its log (see redis.persistence)"
        }
        "NOPERM" => "the ACL user may not write: grant it +@write and ~* (or the app's key pattern) with ACL SETUSER",
        _ => "the server refused a cache write: check its log and state",
    };
    format!("{fix} ({IMPACT} while writes fail)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;
    use crate::check::testing::run_kind;
    use crate::report::Status;

    fn ok(v: Value) -> Reply {
        Ok(v)
    }

    #[test]
    fn judges_each_reply() {
        let v = "the-value";
        let bulk = |s: &str| ok(Value::BulkString(s.as_bytes().to_vec()));
        let cases: Vec<(Vec<Reply>, Verdict, &str)> = vec![
            (vec![ok(Value::Okay), bulk(v), ok(Value::Int(1))], Verdict::Pass, "SET (EX 30), GET and DEL"),
            (
                vec![
                    Err("READONLY You can't write against a read only replica.".into()),
                    ok(Value::Nil),
                    ok(Value::Int(0)),
                ],
                Verdict::Problem,
                "SET failed: READONLY",
            ),
            (vec![ok(Value::Okay), Err("NOPERM no".into()), ok(Value::Int(1))], Verdict::Problem, "GET failed: NOPERM"),
            (vec![ok(Value::Okay), bulk("other"), ok(Value::Int(1))], Verdict::Problem, "GET did not return"),
            (vec![ok(Value::Okay), bulk(v), ok(Value::Int(0))], Verdict::Problem, "DEL answered int(0) instead"),
            (vec![ok(Value::Okay)], Verdict::Problem, "expected 3 replies"),
        ];
        for (replies, verdict, start) in cases {
            let o = judge(&replies, v);
            assert_eq!(o.verdict, verdict, "{replies:?}: {}", o.message);
            assert!(o.message.starts_with(start), "{replies:?}: {}", o.message);
        }
        let o = judge(&[Err("OOM command not allowed".into()), ok(Value::Nil), ok(Value::Int(0))], v);
        assert_eq!(o.causes.premises, [Premise::Writable(Service::Redis)]);
        assert!(o.hint.unwrap_or_default().contains("maxmemory"));
        let o = judge(&[Err("NOPERM User app has no permissions".into()), ok(Value::Nil), ok(Value::Int(0))], v);
        assert_eq!(o.causes.premises, [Premise::RedisAcl]);
    }

    #[tokio::test]
    async fn read_only_run_skips_without_connecting() {
        let r = run_kind(&super::KIND, "", &[("REDIS_URL", "redis://127.0.0.1:1")], "production").await;
        assert_eq!((r.status, r.message.as_str()), (Status::Skip, "read-only run; pass --allow-writes"));
    }
}
