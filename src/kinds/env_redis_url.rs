//! `env.redis_url`: `REDIS_URL` parses as a Redis URL. It reports the probe's
//! own reading ([`crate::probe::redis::RedisTarget::from_env`]): one parser, one wording.

use futures::FutureExt;
use futures::future::BoxFuture;

use super::shared::env::{cut_in_userinfo, with_readings};
use crate::check::{Check, Ctx, KindDef, Outcome, Owner, Premise};
use crate::probe::redis::RedisTls;

pub static KIND: KindDef = KindDef {
    name: "env.redis_url",
    title: "Redis URL is valid",
    description: "REDIS_URL is a redis:// or rediss:// URL with a host and a numeric database, read as the probe reads it",
    build: |t| crate::check::without_params(t, RedisUrl),
};

struct RedisUrl;

impl Check for RedisUrl {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move { with_readings(judge(ctx), ctx, &["REDIS_URL"]) }.boxed()
    }
}

fn judge(ctx: &Ctx) -> Outcome {
    if ctx.env.non_empty("REDIS_URL").is_none() {
        return Outcome::skip(format!("REDIS_URL is not set (see {})", Owner::EnvRequired)).see(Owner::EnvRequired);
    }
    if let Some(cut) = cut_in_userinfo(ctx, "REDIS_URL") {
        return cut;
    }
    match ctx.redis_target() {
        Ok(t) => {
            let scheme = match (&t.socket, &t.tls) {
                (Some(_), _) => "unix",
                (None, RedisTls::Off) => "redis",
                (None, RedisTls::Verify { .. }) => "rediss",
            };
            // Show that a password is there (the redactor's mark), never what it is;
            // nor a user name without one (people write passwords there).
            let login = match (&t.username, t.has_password()) {
                (Some(user), true) => format!("{user}:****@"),
                (None, true) => ":****@".to_string(),
                (_, false) => String::new(),
            };
            let read = format!("{scheme}://{login}{}/{}", t.addr(), t.db);
            let outcome = if t.user_without_password() {
                // Never the user name itself: people write passwords there. The
                // NOAUTH redis.connect then meets is this finding too: it defers.
                Outcome::problem(format!(
                    "{read}: REDIS_URL has a user name and no password, so node-redis 6 sends no AUTH \
                     (node-redis 4 and 5 send AUTH <user> \"\" and fail with WRONGPASS)"
                ))
                .hint("for a password alone, write redis://:<password>@host (mind the colon)")
                .reports(Premise::Valid("REDIS_URL".into()))
            } else if !t.ignored.is_empty() {
                Outcome::problem(format!("{read}: node-redis ignores {}", t.ignored.join("; ")))
                    .hint("drop what node-redis ignores; TLS options go in the API's code (socket: { ... })")
            } else {
                Outcome::pass(read)
            };
            outcome
                .detail("tls", t.tls != RedisTls::Off)
                .detail("host", t.host.clone())
                .detail("port", t.port)
                .detail("db", t.db)
        }
        // A malformed REDIS_URL is this check's finding: redis.connect fails on the
        // same parse and defers to it.
        Err(failure) => Outcome::from_failure(failure).reports(Premise::Valid("REDIS_URL".into())),
    }
}

#[cfg(test)]
mod tests {
    use crate::check::testing::run_kind;
    use crate::report::Status;

    #[tokio::test]
    async fn table() {
        let cases: &[(&str, Status)] = &[
            ("redis://localhost:6379", Status::Pass),
            ("rediss://:pw@cache.internal:6380/2", Status::Pass),
            ("rediss://cache#insecure", Status::Warn),
            ("redis://word@cache", Status::Warn),
            ("unix:///var/run/redis.sock?db=2", Status::Pass),
            ("http://cache", Status::Warn),
            ("redis://:pw@cache/x", Status::Warn),
            ("redis://:p#w@cache/0", Status::Warn),
            ("redis://", Status::Warn),
        ];
        for (url, status) in cases {
            let r = run_kind(&super::KIND, "severity = \"warn\"", &[("REDIS_URL", url)], "production").await;
            assert_eq!(r.status, *status, "{url}: {}", r.message);
        }
        let r = run_kind(&super::KIND, "", &[], "production").await;
        assert_eq!(r.status, Status::Skip);
        for (url, shown) in [
            ("redis://cache:6379/0", "redis://cache:6379/0"),
            ("redis://:s3cret@cache:6379/0", "redis://:****@cache:6379/0"),
            ("rediss://app:s3cret@cache:6380/1", "rediss://app:****@cache:6380/1"),
        ] {
            let r = run_kind(&super::KIND, "", &[("REDIS_URL", url)], "production").await;
            assert_eq!(r.message, shown);
        }
    }
}
