//! What `serve` watches: without `--targets`, one target built from the
//! process environment and the common flags exactly as a run builds it, named
//! after the environment it diagnoses (`production` for `--env production` or
//! `NODE_ENV=production`), so that `?target=production`, the `target` label and
//! `mockmate-diag --env production` all name the same thing; with it, the
//! environments a TOML file names:
//!
//! ```toml
//! [targets.production]
//! env = "production"              # the environment's name (default: the target's)
//! env_files = ["production.env"]  # relative to this file; its secrets stay in it
//! checks = ["checks"]             # extra manifests, after --checks
//! timeout = "5s"                  # per check (default: --timeout)
//! dir = "/srv/mockmate"           # where .env.NAME and .env are looked for (default: this file's directory)
//! ```
//!
//! A target from a file sees only its own files: the exporter's process
//! environment is not layered in, or one `DATABASE_URL` set for the exporter
//! would point every target at the same database.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::cli::CommonArgs;
use crate::error::UsageError;
use crate::manifest::position;
use crate::report::FailOn;
use crate::run::{Plan, Request};

/// One environment `serve` diagnoses, loaded and validated at start-up.
pub struct Target {
    /// Its name: the `target` label and the `?target=` of every endpoint.
    pub name: String,
    pub plan: Plan,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    targets: BTreeMap<Spanned<String>, Spanned<RawTarget>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    env: Option<Spanned<String>>,
    #[serde(default)]
    env_files: Vec<Spanned<PathBuf>>,
    #[serde(default)]
    checks: Vec<PathBuf>,
    timeout: Option<Spanned<String>>,
    dir: Option<PathBuf>,
}

/// The targets of this invocation. Every problem is a usage error naming the
/// file and line (or the flag).
pub fn load(
    common: &CommonArgs,
    targets: Option<&Path>,
    vars: Vec<(String, String)>,
    cwd: &Path,
) -> Result<Vec<Target>, UsageError> {
    let Some(file) = targets else {
        let request = request(common.env.clone(), common.env_file.clone(), common.checks.clone(), common.timeout);
        let plan = Plan::load(request, vars, cwd)?;
        // --env is checked by the flag's parser; NODE_ENV is whatever the environment says.
        if !valid_name(&plan.environment) {
            return Err(UsageError::new(
                "serve: the environment's name (NODE_ENV) names the target, the `target` label and ?target=: \
                 use letters, digits, '-', '_' or '.', or give --env NAME",
            ));
        }
        return Ok(vec![Target { name: plan.environment.clone(), plan }]);
    };
    if common.env.is_some() || !common.env_file.is_empty() {
        return Err(UsageError::new(format!(
            "serve: --env and --env-file set up the default target; with --targets {}, each target names its own env and env_files",
            file.display()
        )));
    }
    let label = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| UsageError::new(format!("targets file {label}: cannot read: {e}")))?;
    from_text(&label, &text, common)
}

/// Parses a targets file's text (`label` names it in errors) and loads every target.
fn from_text(label: &str, text: &str, common: &CommonArgs) -> Result<Vec<Target>, UsageError> {
    let at = |span: Range<usize>| position(label, text, span.start);
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let where_ = e.span().map(&at).unwrap_or_else(|| label.to_string());
        UsageError::new(format!("{where_}: {}", e.message().trim()))
    })?;
    if raw.targets.is_empty() {
        return Err(UsageError::new(format!(
            "{label}: no targets; name at least one, e.g. [targets.production] with env_files = [\"production.env\"]"
        )));
    }
    // Relative paths are relative to the file that names them.
    let base = Path::new(label).parent().filter(|d| !d.as_os_str().is_empty());
    let resolve = |p: &Path| match base {
        Some(base) if p.is_relative() => base.join(p),
        _ => p.to_path_buf(),
    };
    let mut loaded = Vec::new();
    for (name, target) in raw.targets {
        let where_ = at(name.span());
        let name = name.into_inner();
        if !valid_name(&name) {
            return Err(UsageError::new(format!(
                "{where_}: target name `{name}`: use letters, digits, '-', '_' or '.' (it becomes a Prometheus label)"
            )));
        }
        let t = target.into_inner();
        let env = match t.env {
            Some(env) if valid_name(env.get_ref()) => env.into_inner(),
            Some(env) => {
                return Err(UsageError::new(format!(
                    "{}: env: use letters, digits, '-', '_' or '.' (e.g. production)",
                    at(env.span())
                )));
            }
            None => name.clone(),
        };
        let mut env_files = Vec::new();
        for f in t.env_files {
            let path = resolve(f.get_ref());
            if !path.is_file() {
                return Err(UsageError::new(format!("{}: env file {}: not found", at(f.span()), path.display())));
            }
            env_files.push(path);
        }
        let timeout = match t.timeout {
            None => common.timeout,
            Some(t) => humantime::parse_duration(t.get_ref()).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
                UsageError::new(format!(
                    "{}: timeout: expected a duration above zero, e.g. 500ms, 2s, 1m",
                    at(t.span())
                ))
            })?,
        };
        let checks = common.checks.iter().cloned().chain(t.checks.iter().map(|p| resolve(p))).collect();
        let dir = t.dir.as_deref().map(resolve).unwrap_or_else(|| base.unwrap_or(Path::new(".")).to_path_buf());
        let plan = Plan::load(request(Some(env), env_files, checks, timeout), Vec::new(), &dir)
            .map_err(|e| UsageError::new(format!("{where_}: target {name}: {e}")))?;
        loaded.push(Target { name, plan });
    }
    Ok(loaded)
}

/// A run's request as serve makes it: read-only, no `--wait`, no user.
fn request(env: Option<String>, env_files: Vec<PathBuf>, checks: Vec<PathBuf>, timeout: Duration) -> Request {
    Request { env, env_files, checks, timeout, fail_on: FailOn::Fail, ..Request::default() }
}

/// Target and environment names become labels and file names: no surprises.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !s.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn common() -> CommonArgs {
        crate::cli::Cli::try_parse_from(["mockmate-diag", "--timeout", "3s"]).expect("parses").common
    }

    fn load_text(dir: &Path, text: &str) -> Result<Vec<Target>, UsageError> {
        let file = dir.join("targets.toml");
        std::fs::write(&file, text).expect("write");
        load(&common(), Some(&file), Vec::new(), dir)
    }

    #[test]
    fn a_file_names_targets_with_their_own_env_files_relative_to_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("prod.env"), "DATABASE_URL=postgres://app:pw@db/x\n").expect("write");
        std::fs::write(dir.path().join(".env.staging"), "NODE_ENV=staging\n").expect("write");
        let targets = load_text(
            dir.path(),
            "[targets.production]\nenv_files = [\"prod.env\"]\ntimeout = \"2s\"\n\n[targets.staging]\n",
        )
        .expect("loads");
        let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["production", "staging"]);
        assert_eq!(targets[0].plan.environment, "production");
        assert_eq!(targets[0].plan.request.timeout, Duration::from_secs(2));
        assert_eq!(targets[0].plan.set.get("DATABASE_URL"), Some("postgres://app:pw@db/x"));
        // .env.NAME in the file's directory, and --timeout as the default.
        assert_eq!(targets[1].plan.set.get("NODE_ENV"), Some("staging"));
        assert_eq!(targets[1].plan.request.timeout, Duration::from_secs(3));
        assert!(!targets[1].plan.request.allow_writes);
    }

    #[test]
    fn a_bad_file_is_one_line_naming_the_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let label = dir.path().join("targets.toml").display().to_string();
        for (text, want) in [
            ("[targets.production]\nallow_writes = true\n", ":2:1: unknown field `allow_writes`"),
            ("[targets.production]\nenv_files = [\"missing.env\"]\n", ":2:14: env file"),
            ("[targets.production]\ntimeout = \"soon\"\n", ":2:11: timeout: expected a duration"),
            ("[targets.\"a b\"]\n", ":1:10: target name `a b`"),
            ("[targets.production\n", ":1:"),
            ("", ": no targets"),
        ] {
            let err = load_text(dir.path(), text).err().unwrap_or_else(|| panic!("{text:?} loads")).to_string();
            assert!(err.starts_with(&label) && err.contains(want), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn the_single_target_is_named_after_the_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let parse = |args: &[&str]| crate::cli::Cli::try_parse_from(args).expect("parses").common;
        let name = |common: &CommonArgs, vars: &[(&str, &str)]| {
            let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            load(common, None, vars, dir.path()).map(|t| t.iter().map(|t| t.name.clone()).collect::<Vec<_>>())
        };
        let flag = parse(&["mockmate-diag", "--env", "production"]);
        assert_eq!(name(&flag, &[("NODE_ENV", "staging")]).ok(), Some(vec!["production".to_string()]));
        let none = parse(&["mockmate-diag"]);
        assert_eq!(name(&none, &[("NODE_ENV", "staging")]).ok(), Some(vec!["staging".to_string()]));
        assert_eq!(name(&none, &[]).ok(), Some(vec!["development".to_string()]));
        let err = name(&none, &[("NODE_ENV", "prod uction")]).expect_err("refused").to_string();
        assert!(err.contains("give --env NAME") && !err.contains("prod uction"), "{err}");
    }

    #[test]
    fn env_flags_with_a_targets_file_are_a_usage_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("targets.toml");
        std::fs::write(&file, "[targets.production]\n").expect("write");
        let common = crate::cli::Cli::try_parse_from(["mockmate-diag", "--env", "production"]).expect("parses").common;
        let err = load(&common, Some(&file), Vec::new(), dir.path()).err().expect("refused").to_string();
        assert!(err.contains("--env and --env-file set up the default target"), "{err}");
    }
}
