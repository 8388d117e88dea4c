//! A diagnosis ready to run: the request, the environment read (process and
//! env files), the manifests loaded and validated, the selection made.
//! Loading is where every usage error of a run happens.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::engine::Selection;
use crate::envctx::{EnvSet, EnvView};
use crate::error::UsageError;
use crate::manifest::{self, CheckDecl, Loaded, Source};
use crate::probe::postgres::ApiClient;
use crate::redact::Redactor;
use crate::report::{FailOn, RunOptions};

/// What a diagnosis is asked to look at, before anything is read.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `--env`; `None`: `$NODE_ENV`, else `development`.
    pub env: Option<String>,
    pub env_files: Vec<PathBuf>,
    /// Extra manifests (`--checks`).
    pub checks: Vec<PathBuf>,
    pub only: Vec<String>,
    pub skip: Vec<String>,
    pub timeout: Duration,
    pub allow_writes: bool,
    pub user_id: Option<uuid::Uuid>,
    /// `--api-url`: where the API is (over `API_URL` and `PORT`).
    pub api_url: Option<String>,
    /// `--fail-on`: what `--wait` waits out, and what the report is judged by.
    pub fail_on: FailOn,
    /// `--wait`: re-run what keeps the gate closed until it opens or this is up.
    pub wait: Option<Duration>,
}

impl Request {
    /// The options as every report records them.
    pub fn options(&self) -> RunOptions {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let paths = |p: &[PathBuf]| p.iter().map(|p| p.display().to_string()).collect();
        RunOptions {
            env: self.env.clone(),
            env_files: paths(&self.env_files),
            checks: paths(&self.checks),
            only: self.only.clone(),
            skip: self.skip.clone(),
            timeout_ms: ms(self.timeout),
            fail_on: self.fail_on,
            allow_writes: self.allow_writes,
            user_id: self.user_id.map(|u| u.to_string()),
            wait_ms: self.wait.map(ms),
            api_url: self.api_url.clone(),
        }
    }
}

/// A diagnosis ready to run: the environment read, the manifests loaded and
/// validated, the selection made. Loading is where every usage error happens.
pub struct Plan {
    pub environment: String,
    pub set: Arc<EnvSet>,
    pub decls: Vec<CheckDecl>,
    pub selection: Selection,
    pub request: Request,
    /// What the API's code sets for its PostgreSQL client (`[postgres]`).
    pub postgres: ApiClient,
    /// Run-level remarks for the report (see [`Report::notes`]).
    pub notes: Vec<String>,
}

/// Where the environment's name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chosen {
    Flag,
    NodeEnv,
    Default,
}

fn choose_environment(flag: Option<&str>, node_env: Option<&str>) -> (String, Chosen) {
    let nonblank = |v: &str| !v.trim().is_empty();
    match (flag.filter(|v| nonblank(v)), node_env.filter(|v| nonblank(v))) {
        (Some(f), _) => (f.to_string(), Chosen::Flag),
        (None, Some(n)) => (n.trim().to_string(), Chosen::NodeEnv),
        (None, None) => ("development".to_string(), Chosen::Default),
    }
}

/// The built-in suite and every `--checks` path, loaded and validated, grouped
/// by category (env, postgres, redis, …, in order of first appearance) so that
/// every output lists a service's checks together.
pub fn load_manifests(extra: &[PathBuf]) -> Result<Loaded, UsageError> {
    let mut sources = vec![Source::builtin()];
    for path in extra {
        sources.extend(Source::from_path(path)?);
    }
    let Loaded { checks: mut decls, postgres, loader } = manifest::load_all(&sources)?;
    let mut categories: Vec<&'static str> = Vec::new();
    for d in &decls {
        if !categories.contains(&d.kind.category()) {
            categories.push(d.kind.category());
        }
    }
    // A stable sort: within a category, manifest order.
    decls.sort_by_key(|d| categories.iter().position(|c| *c == d.kind.category()));
    Ok(Loaded { checks: decls, postgres, loader })
}

/// Env files that are examples or local overrides, not an environment of their own.
pub const NOT_ENVIRONMENTS: &[&str] = &["example", "sample", "template", "dist", "defaults", "local", "vault"];

/// `.env.NAME` files in `dir` (their NAMEs, sorted) that name an environment.
fn env_files_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix(".env.")).map(str::to_string))
        .filter(|n| {
            !n.is_empty()
                && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
                && !NOT_ENVIRONMENTS.contains(&n.to_ascii_lowercase().as_str())
        })
        .collect();
    names.sort();
    names
}

/// "did you mean `--env production`?" when the environment chosen has no
/// `.env.NAME` in `dir` but other environments do.
fn wrong_environment_note(dir: &Path, environment: &str, chosen: Chosen) -> Option<String> {
    let others = env_files_in(dir);
    if others.is_empty() || others.iter().any(|n| n == environment) {
        return None;
    }
    let why = match chosen {
        Chosen::Flag => format!("--env {environment}"),
        Chosen::NodeEnv => format!("NODE_ENV is {environment}"),
        Chosen::Default => "the default without --env or NODE_ENV".to_string(),
    };
    let files: Vec<String> = others.iter().map(|n| format!(".env.{n}")).collect();
    let suggestion = match others.as_slice() {
        [one] => format!("did you mean --env {one}?"),
        _ => format!(
            "did you mean one of: {}?",
            others.iter().map(|n| format!("--env {n}")).collect::<Vec<_>>().join(", ")
        ),
    };
    Some(format!(
        "diagnosing environment {environment} ({why}), but this directory has no .env.{environment}, only {}: {suggestion}",
        files.join(", ")
    ))
}

impl Plan {
    /// Reads the env files over `vars` (the process environment) in `cwd`, loads
    /// the manifests and makes the selection.
    pub fn load(request: Request, vars: Vec<(String, String)>, cwd: &Path) -> Result<Plan, UsageError> {
        let node_env = vars.iter().find(|(k, _)| k == "NODE_ENV").map(|(_, v)| v.clone());
        let (environment, chosen) = choose_environment(request.env.as_deref(), node_env.as_deref());
        // The manifests first: `[env] loader` says how the API reads its env files.
        let Loaded { checks: decls, postgres, loader } = load_manifests(&request.checks)?;
        let set = EnvSet::load(vars, cwd, &environment, &request.env_files, loader)?;
        let selection = Selection::new(&decls, &request.only, &request.skip)?;
        // With --env-file the files are chosen by hand: nothing to second-guess.
        let mut notes: Vec<String> = if request.env_files.is_empty() {
            wrong_environment_note(cwd, &environment, chosen).into_iter().collect()
        } else {
            Vec::new()
        };
        notes.extend(set.notes());
        // Node reads it only from its own environment at start: from a file it does nothing.
        if let Some(crate::envctx::Source::File(file)) = set.source(crate::probe::tls::NODE_EXTRA_CA_CERTS) {
            notes.push(crate::probe::tls::extra_ca_in_file(file));
        }
        Ok(Plan { environment, set: Arc::new(set), decls, selection, request, notes, postgres })
    }

    /// The secrets of the environment this plan read (process and env files).
    pub fn secrets(&self) -> Redactor {
        Redactor::from_env(self.set.iter())
    }

    /// A fresh window on the environment: it records what the checks read.
    pub fn view(&self) -> EnvView {
        EnvView::new(self.set.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_comes_from_the_flag_then_node_env_then_the_default() {
        assert_eq!(choose_environment(Some("staging"), Some("production")), ("staging".into(), Chosen::Flag));
        assert_eq!(choose_environment(None, Some(" production ")), ("production".into(), Chosen::NodeEnv));
        assert_eq!(choose_environment(None, Some(" ")), ("development".into(), Chosen::Default));
    }

    #[test]
    fn a_lone_env_file_for_another_environment_is_pointed_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(".env.production"), "A=1\n").expect("write");
        std::fs::write(dir.path().join(".env.example"), "A=\n").expect("write");
        let note = wrong_environment_note(dir.path(), "development", Chosen::Default).expect("a note");
        assert_eq!(
            note,
            "diagnosing environment development (the default without --env or NODE_ENV), but this directory has \
             no .env.development, only .env.production: did you mean --env production?"
        );
        assert!(wrong_environment_note(dir.path(), "production", Chosen::Flag).is_none());
        std::fs::write(dir.path().join(".env.staging"), "A=1\n").expect("write");
        let note = wrong_environment_note(dir.path(), "prod", Chosen::NodeEnv).expect("a note");
        assert!(note.contains("(NODE_ENV is prod)"), "{note}");
        assert!(note.ends_with("did you mean one of: --env production, --env staging?"), "{note}");
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(wrong_environment_note(empty.path(), "development", Chosen::Default).is_none());
    }

    #[test]
    fn manifests_are_grouped_by_category() {
        let decls = load_manifests(&[]).expect("built-in manifest").checks;
        let categories: Vec<&str> = decls.iter().map(|d| d.kind.category()).collect();
        let mut seen: Vec<&str> = Vec::new();
        for c in &categories {
            if seen.last() != Some(c) {
                assert!(!seen.contains(c), "{c} appears in two groups: {categories:?}");
                seen.push(c);
            }
        }
    }
}
