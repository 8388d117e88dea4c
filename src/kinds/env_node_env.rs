//! `env.node_env`: `NODE_ENV` matches the environment being diagnosed.

use futures::FutureExt;
use futures::future::BoxFuture;

use super::shared::env::with_readings;
use crate::check::{Check, Ctx, KindDef, Outcome, Premise};

pub static KIND: KindDef = KindDef {
    name: "env.node_env",
    title: "NODE_ENV matches --env",
    description: "NODE_ENV equals the environment named by --env (Express runs as development when it is unset)",
    build: |t| crate::check::without_params(t, NodeEnv),
};

struct NodeEnv;

impl Check for NodeEnv {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let want = ctx.environment.as_str();
            let outcome = match ctx.env.non_empty("NODE_ENV") {
                Some(v) if v.trim() == want => Outcome::pass(format!("NODE_ENV is {want}")),
                Some(v) => Outcome::problem(format!("NODE_ENV is \"{}\" but --env is \"{want}\"", v.trim()))
                    .hint(format!("set NODE_ENV={want}, or run with --env {}", v.trim())),
                None if want == "development" => Outcome::pass("NODE_ENV unset: Express defaults to development"),
                None => Outcome::problem(format!("NODE_ENV is not set: the app runs as development, not {want}"))
                    .hint(format!("set NODE_ENV={want}"))
                    .premise(Premise::Set("NODE_ENV".into())),
            };
            with_readings(outcome, ctx, &["NODE_ENV"])
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
        let cases: &[(&[(&str, &str)], &str, Status)] = &[
            (&[("NODE_ENV", "production")], "production", Status::Pass),
            (&[("NODE_ENV", "development")], "production", Status::Fail),
            (&[], "production", Status::Fail),
            (&[], "development", Status::Pass),
        ];
        for (env, name, status) in cases {
            let r = run_kind(&super::KIND, "", env, name).await;
            assert_eq!(r.status, *status, "{env:?} {name}: {}", r.message);
        }
    }
}
