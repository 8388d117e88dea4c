//! `env.redis_url`: `REDIS_URL` is a well-formed `redis://` or `rediss://` URL.

use futures::FutureExt;
use futures::future::BoxFuture;

use super::env_database_url::parse_service_url;
use crate::check::{Check, Ctx, KindDef, Outcome};

pub static KIND: KindDef = KindDef {
    name: "env.redis_url",
    title: "Redis URL is valid",
    description: "REDIS_URL is a redis:// or rediss:// URL with a host and a numeric database",
    build: |t| crate::check::without_params(t, RedisUrl),
};

struct RedisUrl;

impl Check for RedisUrl {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let Some(raw) = ctx.env.non_empty("REDIS_URL") else {
                return Outcome::skip("REDIS_URL is not set (see env.required)");
            };
            let url = match parse_service_url("REDIS_URL", &raw, &["redis", "rediss"]) {
                Ok(url) => url,
                Err(outcome) => return outcome,
            };
            let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
                return Outcome::problem("REDIS_URL has no host").hint("REDIS_URL should look like redis://:<password>@<host>:6379/0");
            };
            let db = url.path().trim_start_matches('/');
            if !db.is_empty() && db.parse::<u32>().is_err() {
                return Outcome::problem(format!("REDIS_URL database \"/{db}\" is not a number"))
                    .hint("the path of REDIS_URL is the database number, e.g. redis://host:6379/0; percent-encode a '/' in the password as %2F");
            }
            let port = url.port().unwrap_or(6379);
            Outcome::pass(format!(
                "{}://{host}:{port}/{}",
                url.scheme(),
                if db.is_empty() { "0" } else { db }
            ))
            .detail("tls", url.scheme() == "rediss")
            .detail("host", host)
            .detail("port", port)
        }
        .boxed()
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
            ("rediss://cache#insecure", Status::Pass),
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
    }
}
