//! `env.secrets`: `JWT_SECRET` is long enough and not a placeholder. Never prints it.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;

use super::shared::env::with_readings;
use crate::check::{Check, Ctx, KindDef, Outcome, Owner};

pub static KIND: KindDef = KindDef {
    name: "env.secrets",
    title: "Secrets are strong",
    description: "JWT_SECRET is at least 32 bytes and not a known placeholder (a warning outside production)",
    build: |t| Ok(Box::new(Secrets(crate::check::params(t)?))),
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    vars: Vec<String>,
    min_length: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params { vars: vec!["JWT_SECRET".into()], min_length: 32 }
    }
}

/// Values copied from tutorials and `.env.example` files, compared without case or punctuation.
const PLACEHOLDERS: &[&str] = &[
    "secret",
    "changeme",
    "changethis",
    "yoursecretkey",
    "yoursecret",
    "yourjwtsecret",
    "jwtsecret",
    "mysecret",
    "mysecretkey",
    "supersecret",
    "supersecretkey",
    "secretkey",
    "password",
    "default",
    "example",
    "test",
    "testsecret",
    "development",
    "devsecret",
    "replaceme",
    "todo",
    "xxx",
    "placeholder",
    "yourjwtsecretkey",
    "jwtsecretkey",
    "yourjwtsecrethere",
    "yoursecretkeyhere",
    "changemeinproduction",
];

/// Why a secret is weak, without revealing it.
fn weakness(value: &str, min_length: usize) -> Option<String> {
    let folded: String = value.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
    if PLACEHOLDERS.contains(&folded.as_str()) || folded.starts_with("changeme") || folded.starts_with("yoursecret") {
        return Some("is a known placeholder".into());
    }
    if value.len() < min_length {
        return Some(format!("is {} bytes, shorter than {min_length}", value.len()));
    }
    let mut chars = value.chars();
    if let Some(first) = chars.next()
        && chars.all(|c| c == first)
    {
        return Some("repeats a single character".into());
    }
    None
}

struct Secrets(Params);

impl Check for Secrets {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let mut problems = Vec::new();
            let mut checked = Vec::new();
            for name in &self.0.vars {
                if let Some(value) = ctx.env.non_empty(name) {
                    checked.push(name.clone());
                    if let Some(why) = weakness(&value, self.0.min_length) {
                        problems.push(format!("{name} {why}"));
                    }
                }
            }
            if checked.is_empty() {
                return Outcome::skip(format!("{} not set (see {})", self.0.vars.join(", "), Owner::EnvRequired))
                    .see(Owner::EnvRequired);
            }
            let names: Vec<&str> = checked.iter().map(String::as_str).collect();
            if problems.is_empty() {
                return with_readings(Outcome::pass(format!("{} strong enough", checked.join(", "))), ctx, &names);
            }
            let outcome = if ctx.is_production() {
                Outcome::problem(problems.join("; "))
            } else {
                Outcome::warn(problems.join("; "))
            };
            let outcome = outcome.hint(format!(
                "generate one with `openssl rand -base64 48` (at least {} bytes) and restart the API",
                self.0.min_length
            ));
            with_readings(outcome, ctx, &names)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::weakness;
    use crate::check::testing::run_kind;
    use crate::report::Status;

    #[test]
    fn weaknesses() {
        assert_eq!(weakness("your-secret-key", 32).as_deref(), Some("is a known placeholder"));
        assert_eq!(weakness("Change_Me", 32).as_deref(), Some("is a known placeholder"));
        assert_eq!(weakness("short", 32).as_deref(), Some("is 5 bytes, shorter than 32"));
        assert_eq!(weakness(&"a".repeat(40), 32).as_deref(), Some("repeats a single character"));
        assert_eq!(weakness("Zq3v9LrT0pXy2Wn8KbD4sHf7JmC1gQe6", 32), None);
    }

    #[tokio::test]
    async fn a_secret_dotenv_cuts_at_a_hash_says_so_and_how_to_fix_it() {
        use crate::check::testing::run_kind_in;
        use crate::envctx::{EnvSet, Loader};
        let file = "JWT_SECRET=abc#9f8e7d6c5b4a39281706f5e4d3c2b1a0ffeeddccbbaa99\n";
        let set = EnvSet::from_file_text(file, ".env.production", Loader::Dotenv);
        let r = run_kind_in(&super::KIND, "", set, "production").await;
        assert_eq!(r.status, Status::Fail);
        assert_eq!(
            r.message,
            "JWT_SECRET is 3 bytes, shorter than 32; dotenv reads JWT_SECRET (.env.production:1) as 3 characters: \
             the '#' starts a comment (a shell `source` would keep it); quote the value"
        );
        assert!(r.hint.unwrap_or_default().starts_with("quote the value of JWT_SECRET in .env.production:1"));
        assert!(!r.message.contains("9f8e"));
        // Quoted, dotenv reads it whole: strong, and nothing to say.
        let quoted = "JWT_SECRET=\"abc#9f8e7d6c5b4a39281706f5e4d3c2b1a0ffeeddccbbaa99\"\n";
        let set = EnvSet::from_file_text(quoted, ".env.production", Loader::Dotenv);
        let r = run_kind_in(&super::KIND, "", set, "production").await;
        assert_eq!((r.status, r.message.as_str()), (Status::Pass, "JWT_SECRET strong enough"));
    }

    #[tokio::test]
    async fn warn_outside_production_and_never_prints_value() {
        let env: &[(&str, &str)] = &[("JWT_SECRET", "sentinel-short")];
        let prod = run_kind(&super::KIND, "", env, "production").await;
        assert_eq!(prod.status, Status::Fail);
        let dev = run_kind(&super::KIND, "", env, "staging").await;
        assert_eq!(dev.status, Status::Warn);
        assert!(!prod.message.contains("sentinel") && !prod.hint.unwrap_or_default().contains("sentinel"));
    }
}
