//! Check kinds: one file per kind, one registry ([`KINDS`]).
//!
//! A *kind* is code; a *check* is an instance of a kind declared in a manifest
//! (`checks/mockmate.toml`) with an id, a severity and parameters. Kind names,
//! the `list` output and the docs all derive from [`KINDS`].

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::engine::Ctx;

pub mod env_database_url;
pub mod env_node_env;
pub mod env_redis_url;
pub mod env_required;
pub mod env_secrets;
pub mod expect;
// postgres kinds (issue 3) — one `pub mod` per kind, here
pub mod pg_active_users;
mod pg_common;
pub mod pg_connect;
pub mod pg_connections;
pub mod pg_extensions;
pub mod pg_locks;
pub mod pg_migrations;
pub mod pg_privileges;
pub mod pg_query;
pub mod pg_schema;
pub mod pg_tls;
pub mod pg_writable;
// end postgres kinds
// redis kinds (issue 4) — one `pub mod` per kind, here
pub mod redis_connect;
pub mod redis_info;
pub mod redis_memory;
pub mod redis_persistence;
pub mod redis_roundtrip;
pub mod redis_writable;
// end redis kinds
// incident kinds (issue 5) — one `pub mod` per kind, here
pub mod consistency_cached_sessions;
pub mod pg_orphan_sessions;
pub mod pg_session_insert;
pub mod pg_user;
// end incident kinds

/// What a check found, before the engine applies the check's severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// The probe failed: the engine turns this into the check's severity.
    Problem,
    /// Always a warning, whatever the severity (e.g. "could not determine").
    Warn,
    /// Always a failure, whatever the severity (e.g. connections ≥ 95 %).
    Fail,
    Skip,
}

/// A check's finding: verdict, message, hint and machine-readable details.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Verdict,
    pub message: String,
    pub hint: Option<String>,
    pub details: Map<String, Value>,
}

impl Outcome {
    fn new(verdict: Verdict, message: impl Into<String>) -> Self {
        Outcome { verdict, message: message.into(), hint: None, details: Map::new() }
    }
    pub fn pass(message: impl Into<String>) -> Self {
        Self::new(Verdict::Pass, message)
    }
    pub fn problem(message: impl Into<String>) -> Self {
        Self::new(Verdict::Problem, message)
    }
    pub fn warn(message: impl Into<String>) -> Self {
        Self::new(Verdict::Warn, message)
    }
    pub fn fail(message: impl Into<String>) -> Self {
        Self::new(Verdict::Fail, message)
    }
    pub fn skip(message: impl Into<String>) -> Self {
        Self::new(Verdict::Skip, message)
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }
    /// A probe failure (connection refused, timeout …) as this check's problem.
    pub fn from_failure(f: crate::probe::Failure) -> Self {
        Outcome { verdict: Verdict::Problem, message: f.message, hint: f.hint, details: Map::new() }
    }
}

/// A configured check. Reads the world only through `ctx`.
pub trait Check: Send + Sync {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome>;

    /// Called by the engine for every check that will run (selected, not skipped),
    /// at the start of the run and before anything awaits: start what `run` will
    /// need that costs round trips and needs nothing from other checks (a
    /// connection of its own), so it is ready when `run` starts. Must not block or
    /// change anything on the server; whatever it starts is abandoned if the check
    /// is then skipped. Default: nothing.
    fn warm(&self, _ctx: &Ctx) {}
}

/// A kind in the registry.
pub struct KindDef {
    /// The `kind = "…"` name in manifests.
    pub name: &'static str,
    /// Title used when a manifest entry gives none.
    pub title: &'static str,
    /// One line for `list` and the docs.
    pub description: &'static str,
    /// Builds a check from its manifest parameters (unknown fields are errors).
    pub build: fn(toml::Table) -> Result<Box<dyn Check>, String>,
}

impl KindDef {
    /// `env`, `postgres`, `redis`, `consistency`: the part before the first dot.
    pub fn category(&self) -> &'static str {
        self.name.split('.').next().unwrap_or(self.name)
    }
}

/// Every kind this binary implements.
#[rustfmt::skip]
pub static KINDS: &[&KindDef] = &[
    &env_required::KIND,
    &env_database_url::KIND,
    &env_redis_url::KIND,
    &env_node_env::KIND,
    &env_secrets::KIND,
    // postgres kinds (issue 3)
    &pg_connect::KIND,
    &pg_tls::KIND,
    &pg_writable::KIND,
    &pg_schema::KIND,
    &pg_extensions::KIND,
    &pg_active_users::KIND,
    &pg_privileges::KIND,
    &pg_connections::KIND,
    &pg_locks::KIND,
    &pg_migrations::KIND,
    &pg_query::KIND,
    // end postgres kinds
    // redis kinds (issue 4)
    &redis_connect::KIND,
    &redis_writable::KIND,
    &redis_memory::KIND,
    &redis_persistence::KIND,
    &redis_roundtrip::KIND,
    &redis_info::KIND,
    // end redis kinds
    // incident kinds (issue 5)
    &pg_session_insert::KIND,
    &pg_user::KIND,
    &pg_orphan_sessions::KIND,
    &consistency_cached_sessions::KIND,
    // end incident kinds
];

pub fn find(name: &str) -> Option<&'static KindDef> {
    KINDS.iter().copied().find(|k| k.name == name)
}

/// Deserialises a kind's parameters; the error names the offending field.
pub fn params<P: DeserializeOwned>(table: toml::Table) -> Result<P, String> {
    toml::Value::Table(table).try_into::<P>().map_err(|e| e.message().trim().to_string())
}

/// Parameters of kinds that take none.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// `build` for kinds that take no parameters: any given is an error.
pub fn without_params(table: toml::Table, check: impl Check + 'static) -> Result<Box<dyn Check>, String> {
    let NoParams {} = params(table)?;
    Ok(Box::new(check))
}

/// Runs one check of a kind through the real manifest loader and engine.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::engine::{Ctx, Selection, run};
    use crate::envctx::{EnvSet, EnvView};
    use crate::manifest::{Source, load};
    use crate::report::CheckResult;

    pub async fn run_kind(kind: &str, params: &str, env: &[(&str, &str)], environment: &str) -> CheckResult {
        let text = format!("[[check]]\nid = \"t\"\nkind = \"{kind}\"\n{params}\n");
        let decls = load(&[Source { label: "test.toml".into(), text }]).expect("test manifest loads");
        let view = EnvView::new(Arc::new(EnvSet::from_pairs(env.iter().copied())));
        let ctx = Arc::new(Ctx::new(view, environment, Duration::from_secs(5)));
        run(&decls, &Selection::all(), ctx).await.remove(0)
    }
}
