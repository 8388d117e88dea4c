//! The check API: what a check sees ([`Ctx`]), what it answers ([`Outcome`],
//! [`Verdict`]), what it is ([`Check`]) and how a kind is registered ([`KindDef`]).
//!
//! Imports run one way: this module ← `kinds` ← `manifest` ← `engine` ← `app`.
//! A *kind* is code (one file under `kinds/`); a *check* is an instance of a
//! kind declared in a manifest with an id, a severity and parameters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::envctx::EnvView;
use crate::probe::failure::{Cause, Failure};
use crate::probe::postgres::{PgSession, PgTarget, PgWriter};
use crate::probe::redis::{RedisSession, RedisTarget};
use crate::probe::shared::Probes;
use crate::report::{CheckResult, Ending, Severity, Status};

/// What a check keeps of its `--timeout` to report a slow PgBouncer console itself.
const CONSOLE_MARGIN: Duration = Duration::from_millis(250);

/// Everything a check may see of the world.
pub struct Ctx {
    pub env: EnvView,
    /// The environment being diagnosed (`--env`).
    pub environment: String,
    /// The per-check deadline (`--timeout`).
    pub timeout: Duration,
    /// `--allow-writes`: write probes may run (and always roll back / clean up).
    pub allow_writes: bool,
    /// `--user-id`: the user a support ticket is about.
    pub user_id: Option<uuid::Uuid>,
    /// `--api-url`: where the API is, over `API_URL` and `PORT`.
    pub api_url: Option<String>,
    /// The shared connections, opened on first use, one per service.
    pub probes: Probes,
    /// The results of the checks that have finished so far (the engine records them).
    pub results: Finished,
}

/// The results of a run's finished checks, as the engine records them (before
/// causes are settled). A check reads those it is declared `after`: they are
/// there, whatever their status, by the time it starts.
#[derive(Debug, Clone, Default)]
pub struct Finished(Arc<Mutex<HashMap<String, CheckResult>>>);

impl Finished {
    pub fn record(&self, result: &CheckResult) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(result.id.clone(), result.clone());
    }

    pub fn get(&self, id: &str) -> Option<CheckResult> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(id).cloned()
    }
}

impl Ctx {
    pub fn new(env: EnvView, environment: impl Into<String>, timeout: Duration) -> Ctx {
        Ctx {
            env,
            environment: environment.into(),
            timeout,
            allow_writes: false,
            user_id: None,
            api_url: None,
            probes: Probes::default(),
            results: Finished::default(),
        }
    }

    /// The result of check `id`, if it has finished: for a check declared
    /// `after = ["id"]` (the manifest), it has, whatever its status; `None`
    /// when `id` is not in the manifest.
    pub fn finished(&self, id: &str) -> Option<CheckResult> {
        self.results.get(id)
    }

    /// How the probes read the environment. A variable Node reads only from
    /// its own process environment at start (`NODE_EXTRA_CA_CERTS`) is not
    /// seen when an env file sets it: the API would not see it either.
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + Send + Sync + use<> {
        let env = self.env.clone();
        move |name: &str| {
            let value = env.get(name)?;
            let from_file = !matches!(env.source(name), Some(crate::envctx::Source::Process));
            if from_file && crate::probe::tls::process_only(name) { None } else { Some(value) }
        }
    }

    /// Every secret of the run's environment (what the output stream masks):
    /// for a kind that must mask before it cuts a text (a quoted answer).
    pub fn secrets(&self) -> crate::redact::Redactor {
        self.env.secrets()
    }

    /// Where the run's PostgreSQL connections go, read as the API's driver reads it
    /// (the one parser: a check that judges the configuration reports this).
    pub fn postgres_target(&self) -> Result<PgTarget, Failure> {
        self.probes.postgres_target(&self.lookup())
    }

    /// Where the run's Redis connection goes, read as node-redis reads `REDIS_URL`.
    pub fn redis_target(&self) -> Result<RedisTarget, Failure> {
        self.probes.redis_target(&self.lookup())
    }

    /// The run's one PostgreSQL session (connected by the first check that asks).
    pub async fn postgres(&self) -> Result<Arc<PgSession>, Failure> {
        self.probes.postgres(&self.lookup(), self.timeout).await
    }

    /// PgBouncer's admin console, when `PGBOUNCER_URL` names one (else `None`).
    /// Its visit ends [`CONSOLE_MARGIN`] before the check's `--timeout`, so a
    /// console that hangs is reported in its own words, beside what the
    /// check already knows, not by the engine's backstop.
    pub async fn pgbouncer(&self) -> Option<Result<crate::probe::postgres::pgbouncer::BouncerState, Failure>> {
        let budget = self.timeout.saturating_sub(CONSOLE_MARGIN).max(CONSOLE_MARGIN);
        crate::probe::postgres::pgbouncer::admin_console(&self.lookup(), budget).await
    }

    /// The run's one Redis connection (connected by the first check that asks).
    pub async fn redis(&self) -> Result<Arc<RedisSession>, Failure> {
        self.probes.redis(&self.lookup(), self.timeout).await
    }

    /// Starts opening the read-only scan session (see [`Probes`]), bounded by `--timeout`.
    pub fn warm_postgres_scan(&self) {
        self.probes.warm_postgres_scan(&self.lookup(), self.timeout);
    }

    /// The read-only scan session beside the shared one, shared by the scanning checks.
    pub async fn postgres_scan(&self) -> Result<Arc<PgSession>, Failure> {
        self.probes.postgres_scan(&self.lookup(), self.timeout).await
    }

    /// Starts opening a connection for one check's writes, bounded by `deadline`.
    pub fn warm_postgres_write(&self, deadline: Duration) {
        self.probes.warm_postgres_write(&self.lookup(), deadline);
    }

    /// A connection of the caller's own (the warmed one if still there, else a new
    /// one bounded by `deadline`).
    pub async fn postgres_write(&self, deadline: Duration) -> Result<PgWriter, Failure> {
        self.probes.postgres_write(&self.lookup(), deadline).await
    }

    pub fn is_production(&self) -> bool {
        self.environment.eq_ignore_ascii_case("production")
    }
}

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

impl Verdict {
    /// The status a check of `severity` reports for this verdict.
    pub fn status(self, severity: Severity) -> Status {
        match self {
            Verdict::Pass => Status::Pass,
            Verdict::Problem => severity.status(),
            Verdict::Warn => Status::Warn,
            Verdict::Fail => Status::Fail,
            Verdict::Skip => Status::Skip,
        }
    }
}

/// A service the checks reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Postgres,
    Redis,
    /// The MockMate API itself (`api.reachable` owns "it cannot be reached").
    Api,
}

/// A fact a finding rests on, which one check owns: "one root cause, one failure".
///
/// A check whose failure *reports* a premise owns that finding ([`Outcome::reports`]);
/// a check whose failure *rests on* one ([`Outcome::premise`]) is turned into `skip`
/// "see <owner>" by the engine when the owner, in the same run, did not pass. When
/// the owner is not in the run (`--only`, `--skip`), the dependent keeps its failure.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Premise {
    /// The variable is set and not empty (`env.required`).
    Set(String),
    /// The variable's value can be read (`env.database_url`, `env.redis_url`).
    Valid(String),
    /// The service accepts a connection and a login (`postgres.connect`, `redis.connect`);
    /// for the API: DNS, TCP and TLS succeed and it answers in time (`api.reachable`).
    Reachable(Service),
    /// The service accepts writes (`postgres.writable`; `redis.writable`, and
    /// `redis.memory`/`redis.persistence` when writes fail with OOM/MISCONF).
    Writable(Service),
    /// The table exists where the API's role finds it, with its columns (`postgres.schema`).
    Table(String),
    /// The API's role may do what the API does on the table: schema USAGE, GRANTs,
    /// sequences, row-level security (`postgres.privileges`).
    Privileges(String),
    /// The Redis user may run the API's commands on its keys (`redis.permissions`).
    RedisAcl,
    /// The user in the support ticket can create a session: the row exists, is
    /// active and has credits (`postgres.user`, with `--user-id`).
    User(uuid::Uuid),
    /// The run's connection to the service stayed up until the check's statement
    /// was answered. Lost mid-run, it is one cause however many statements it
    /// cut: the check whose statement was `running` owns it; those queued behind
    /// (or sent after) see that one, or the first of them when none was running.
    Connection { service: Service, running: bool },
}

impl From<&Cause> for Premise {
    fn from(cause: &Cause) -> Premise {
        match cause {
            Cause::Unset(var) => Premise::Set(var.clone()),
            Cause::Malformed(var) => Premise::Valid(var.clone()),
        }
    }
}

/// A check of the built-in suite that owns a cause other checks' findings point
/// at ("REDIS_URL is not set (see env.required)"). Typed, so that a renamed id
/// is caught when the registry is loaded ([`crate::manifest::load_all`] checks
/// that the built-in suite declares each, with its kind), not by a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    EnvRequired,
    PostgresWritable,
    PostgresSchema,
    RedisTopology,
    RedisWritable,
    ApiReachable,
}

impl Owner {
    pub const ALL: [Owner; 4] =
        [Owner::EnvRequired, Owner::PostgresWritable, Owner::PostgresSchema, Owner::RedisTopology];

    /// The check's id in the built-in suite (its kind has the same name).
    pub const fn id(self) -> &'static str {
        match self {
            Owner::EnvRequired => "env.required",
            Owner::PostgresWritable => "postgres.writable",
            Owner::PostgresSchema => "postgres.schema",
            Owner::RedisTopology => "redis.topology",
            Owner::RedisWritable => "redis.writable",
            Owner::ApiReachable => "api.reachable",
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// How the run's bounds stopped a check ([`crate::run`]), before it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// SIGINT/SIGTERM; what it was waiting on, when known.
    Interrupted { phase: Option<String> },
    /// An attempt's deadline (`--wait`, a scrape's timeout).
    Cut,
}

/// The message of a check the interrupt stopped or never let start.
pub(crate) const INTERRUPTED_MESSAGE: &str = "interrupted before it finished";

/// A check's finding: verdict, message, hint and machine-readable details.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Verdict,
    pub message: String,
    pub hint: Option<String>,
    pub details: Map<String, Value>,
    /// What the finding rests on and what it reports (boxed: most outcomes have neither).
    pub causes: Box<Causes>,
    /// The check that owns this finding's cause, when the check knows it itself
    /// (a skip "see env.required"); the engine settles the causes it finds.
    pub see: Option<Owner>,
    /// Set by the run's bounds alone: the check did not get to answer.
    pub(crate) stopped: Option<Stopped>,
}

/// The premises of an [`Outcome`]: what it rests on, what it reports as the owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Causes {
    /// If another check of the run reports one of these, this finding defers to it.
    pub premises: Vec<Premise>,
    /// This finding is the one that reports these.
    pub reports: Vec<Premise>,
}

impl Outcome {
    fn new(verdict: Verdict, message: impl Into<String>) -> Self {
        Outcome {
            verdict,
            message: message.into(),
            hint: None,
            details: Map::new(),
            causes: Box::default(),
            see: None,
            stopped: None,
        }
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
    /// A check the interrupt stopped (or never let start), `phase` what it was waiting on.
    pub(crate) fn interrupted(phase: Option<String>) -> Self {
        let message = match &phase {
            Some(phase) => format!("interrupted after {phase}"),
            None => INTERRUPTED_MESSAGE.to_string(),
        };
        let mut outcome = Self::new(Verdict::Skip, message);
        outcome.stopped = Some(Stopped::Interrupted { phase });
        outcome
    }

    /// Marks this outcome as the run's bounds' answer for a check they stopped.
    pub(crate) fn stopped_by(mut self, stopped: Stopped) -> Self {
        self.stopped = Some(stopped);
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    /// Names the check that reports this finding's cause (JSON `see`).
    pub fn see(mut self, owner: Owner) -> Self {
        self.see = Some(owner);
        self
    }
    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }
    /// Adds a premise this finding rests on: if another check in the run reports it
    /// failing, this one is `skip` "see <that check>".
    pub fn premise(mut self, premise: Premise) -> Self {
        if !self.causes.premises.contains(&premise) {
            self.causes.premises.push(premise);
        }
        self
    }

    /// Marks this finding as the one that reports `premise` failing.
    pub fn reports(mut self, premise: Premise) -> Self {
        if !self.causes.reports.contains(&premise) {
            self.causes.reports.push(premise);
        }
        self
    }

    /// A probe failure as this check's problem; a configuration cause (an unset or
    /// malformed variable) becomes its premise.
    pub fn from_failure(f: Failure) -> Self {
        let mut outcome = Outcome::problem(f.message);
        outcome.details = f.details;
        let outcome = match f.hint {
            Some(hint) => outcome.hint(hint),
            None => outcome,
        };
        match &f.cause {
            Some(cause) => outcome.premise(cause.into()),
            None => outcome,
        }
    }

    /// A failure to reach `service` as this check's problem: it rests on the
    /// configuration when that is the cause, else on the connection.
    pub fn unreachable(f: Failure, service: Service) -> Self {
        let configured = f.cause.is_none();
        let outcome = Outcome::from_failure(f);
        if configured { outcome.premise(Premise::Reachable(service)) } else { outcome }
    }

    /// The result a declared check reports: the verdict under its severity; a
    /// hint only when it did not pass (the manifest's when the check gave none).
    pub fn into_result(self, decl: &Declared<'_>, elapsed: Duration) -> CheckResult {
        let status = self.verdict.status(decl.severity);
        let ending = match (self.stopped, self.see) {
            (Some(Stopped::Interrupted { phase }), _) => Ending::Interrupted { phase },
            (Some(Stopped::Cut), _) => Ending::Cut,
            (None, Some(owner)) => Ending::Deferred { owner: owner.id().to_string() },
            (None, None) => Ending::Ran,
        };
        let hint = match status {
            Status::Warn | Status::Fail => self.hint.or_else(|| decl.hint.map(str::to_string)),
            Status::Pass | Status::Skip => None,
        };
        CheckResult {
            id: decl.id.to_string(),
            kind: decl.kind.name.to_string(),
            category: decl.kind.category().to_string(),
            title: decl.title.to_string(),
            severity: decl.severity,
            status,
            message: self.message,
            hint,
            duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            details: self.details,
            ending,
            needs: decl.needs.to_vec(),
            from_configuration: self.causes.premises.iter().any(|p| matches!(p, Premise::Set(_) | Premise::Valid(_))),
        }
    }
}

/// What a result needs to know of the check that produced it.
pub struct Declared<'a> {
    pub id: &'a str,
    pub needs: &'a [String],
    pub kind: &'static KindDef,
    pub severity: Severity,
    pub title: &'a str,
    pub hint: Option<&'a str>,
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

    /// Whether the check only reads, so the engine may start it before its
    /// `needs` have passed — its queries then travel with the one that decides
    /// them (`postgres.connect`'s first statement) instead of a round trip later —
    /// and drop it if one of them fails. A check that writes (with
    /// `--allow-writes`) says `false`: it starts only once its needs have passed.
    /// Default: `true`.
    fn only_reads(&self) -> bool {
        true
    }

    /// The checks whose results this one reads ([`Ctx::finished`]), each with
    /// the parameter that names it: the manifest loader adds them to the
    /// check's `after` (and rejects an id no manifest declares), so the
    /// parameter and the order cannot disagree. Default: none.
    fn reads_results_of(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// A kind in the registry (`kinds::KINDS`).
pub struct KindDef {
    /// The `kind = "…"` name in manifests.
    pub name: &'static str,
    /// Title used when a manifest entry gives none.
    pub title: &'static str,
    /// One line for `list` and the docs.
    pub description: &'static str,
    /// Builds a check from its manifest parameters (unknown fields are errors).
    pub build: fn(toml::Table) -> Result<Box<dyn Check>, ParamError>,
}

impl KindDef {
    /// `env`, `postgres`, `redis`, `consistency`: the part before the first dot.
    pub fn category(&self) -> &'static str {
        self.name.split('.').next().unwrap_or(self.name)
    }
}

/// A kind's manifest parameters are wrong. The message names the field in
/// backquotes (serde's words, or the kind's own: "`warn_within`: …"), which
/// the manifest loader turns into the field's file:line:col.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);

impl From<String> for ParamError {
    fn from(message: String) -> Self {
        ParamError(message)
    }
}

impl From<&str> for ParamError {
    fn from(message: &str) -> Self {
        ParamError(message.to_string())
    }
}

/// Deserialises a kind's parameters; the error names the offending field.
pub fn params<P: DeserializeOwned>(table: toml::Table) -> Result<P, ParamError> {
    toml::Value::Table(table).try_into::<P>().map_err(|e| ParamError(e.message().trim().to_string()))
}

/// Parameters of kinds that take none.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// `build` for kinds that take no parameters: any given is an error.
pub fn without_params(table: toml::Table, check: impl Check + 'static) -> Result<Box<dyn Check>, ParamError> {
    let NoParams {} = params(table)?;
    Ok(Box::new(check))
}

/// Runs one check of a kind the way the engine would, for the kinds' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Ctx, Declared, KindDef};
    use crate::envctx::{EnvSet, EnvView};
    use crate::report::{CheckResult, Severity};

    /// `params` is the manifest entry's TOML without id and kind (`severity` may
    /// be among them); `env` the variables the check sees.
    pub async fn run_kind(
        kind: &'static KindDef,
        params: &str,
        env: &[(&str, &str)],
        environment: &str,
    ) -> CheckResult {
        run_kind_in(kind, params, EnvSet::from_pairs(env.iter().copied()), environment).await
    }

    /// [`run_kind`] over an environment read from files.
    pub async fn run_kind_in(kind: &'static KindDef, params: &str, set: EnvSet, environment: &str) -> CheckResult {
        let mut table: toml::Table = params.parse().expect("test parameters are TOML");
        let severity = match table.remove("severity").as_ref().and_then(toml::Value::as_str) {
            Some("warn") => Severity::Warn,
            _ => Severity::Fail,
        };
        let check = (kind.build)(table).unwrap_or_else(|e| panic!("{}: {e}", kind.name));
        let view = EnvView::new(Arc::new(set));
        let ctx = Ctx::new(view, environment, Duration::from_secs(5));
        let outcome = check.run(&ctx).await;
        let decl = Declared { id: "t", needs: &[], kind, severity, title: kind.title, hint: None };
        outcome.into_result(&decl, Duration::ZERO)
    }
}
