//! The environment being diagnosed: process variables layered over env files.
//!
//! Precedence follows the dotenv convention: the process environment always
//! wins; then `--env-file` files in the order given; then `.env.NAME`; then
//! `.env`. Checks read variables only through [`EnvView`], which records what
//! they looked at so the report can list each variable's source (never its value).

mod diagnose;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::UsageError;
use crate::report::VarUse;

/// Where a variable's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Process,
    File(String),
}

impl Source {
    pub fn label(&self) -> &str {
        match self {
            Source::Process => "process",
            Source::File(path) => path,
        }
    }
}

/// All variables visible to the checks, with their sources.
#[derive(Debug, Default)]
pub struct EnvSet {
    vars: BTreeMap<String, (String, Source)>,
    files: Vec<String>,
}

impl EnvSet {
    /// Layers env files under the process environment.
    ///
    /// `explicit` files (`--env-file`) must exist and parse; `.env.NAME` and
    /// `.env` in `dir` are loaded when they exist (and must parse when they do).
    pub fn load(
        process: impl IntoIterator<Item = (String, String)>,
        dir: &Path,
        env_name: &str,
        explicit: &[PathBuf],
    ) -> Result<EnvSet, UsageError> {
        let mut set = EnvSet::default();
        for (name, value) in process {
            set.vars.insert(name, (value, Source::Process));
        }
        for path in explicit {
            if !path.is_file() {
                return Err(UsageError::new(format!("env file {}: not found (given with --env-file)", path.display())));
            }
            set.load_file(path, path.display().to_string())?;
        }
        for name in [format!(".env.{env_name}"), ".env".to_string()] {
            let path = dir.join(&name);
            // An explicit --env-file of the same file was already loaded.
            if path.is_file() && !explicit.iter().any(|p| same_file(p, &path)) {
                set.load_file(&path, name)?;
            }
        }
        Ok(set)
    }

    /// For tests and in-process callers: a set with no files.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> EnvSet {
        let mut set = EnvSet::default();
        for (name, value) in pairs {
            set.vars.insert(name.to_string(), (value.to_string(), Source::Process));
        }
        set
    }

    /// One env file's text, on its own (the fuzz target's entry point: the
    /// same reading as `--env-file`, without the file system).
    pub fn from_file_text(text: &str, label: &str) -> Result<EnvSet, UsageError> {
        let mut set = EnvSet::default();
        set.load_text(text, label.to_string())?;
        Ok(set)
    }

    fn load_file(&mut self, path: &Path, label: String) -> Result<(), UsageError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError::new(format!("env file {label}: cannot read: {e}")))?;
        self.load_text(&text, label)
    }

    fn load_text(&mut self, text: &str, label: String) -> Result<(), UsageError> {
        // Editors on Windows save a byte-order mark; dotenvy would read it as part of the first name.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let iter = dotenvy::from_read_iter(text.as_bytes());
        for item in iter {
            match item {
                Ok((name, value)) => {
                    // Earlier layers win: never override what is already set.
                    self.vars.entry(name).or_insert((value, Source::File(label.clone())));
                }
                Err(dotenvy::Error::LineParse(line, index)) => {
                    // Never echo the line: it may hold a secret.
                    if let Some(found) = diagnose::first_problem(text) {
                        return Err(UsageError::new(format!("env file {}", found.message(&label))));
                    }
                    let line_no = locate_line(text, &line, index);
                    return Err(UsageError::new(format!(
                        "env file {label}:{line_no}: cannot parse this line (expected NAME=value)"
                    )));
                }
                Err(e) => {
                    return Err(UsageError::new(format!("env file {label}: {e}")));
                }
            }
        }
        self.files.push(label);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(|(v, _)| v.as_str())
    }

    pub fn source(&self, name: &str) -> Option<&Source> {
        self.vars.get(name).map(|(_, s)| s)
    }

    /// The env files loaded, in precedence order.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Every (name, value) pair: the redactor learns secrets from this.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, (v, _))| (k.as_str(), v.as_str()))
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// 1-based line number of a dotenvy parse error inside `text`.
/// (`line` is the entry dotenvy failed on, which may span lines when a quote is open.)
fn locate_line(text: &str, line: &str, index: usize) -> usize {
    let start = text.find(line).unwrap_or(0);
    let in_entry = &line[..index.min(line.len())];
    // Point at the line of the error, or at the entry's start when it ran to the end of the file.
    let offset = if index >= line.trim_end().len() { start } else { start + in_entry.len() };
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The checks' window on the environment: records each variable they read.
#[derive(Debug, Clone)]
pub struct EnvView {
    set: Arc<EnvSet>,
    used: Arc<Mutex<BTreeSet<String>>>,
}

impl EnvView {
    pub fn new(set: Arc<EnvSet>) -> Self {
        EnvView { set, used: Arc::default() }
    }

    /// The value of `name`, or `None` when unset.
    pub fn get(&self, name: &str) -> Option<String> {
        self.used.lock().unwrap_or_else(PoisonError::into_inner).insert(name.to_string());
        self.set.get(name).map(str::to_string)
    }

    /// The value of `name` when set and not blank.
    pub fn non_empty(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.trim().is_empty())
    }

    /// The variables looked at so far, with presence, length and source.
    pub fn uses(&self) -> Vec<VarUse> {
        let used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        used.iter()
            .map(|name| match self.set.vars.get(name) {
                Some((value, source)) => VarUse {
                    name: name.clone(),
                    source: source.label().to_string(),
                    present: true,
                    length: value.len(),
                },
                None => VarUse { name: name.clone(), source: "unset".into(), present: false, length: 0 },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        std::fs::write(dir.join(name), body).expect("write fixture");
    }

    #[test]
    fn process_wins_then_explicit_then_named_then_dotenv() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), ".env", "A=dotenv\nB=dotenv\nC=dotenv\nD=dotenv\n");
        write(dir.path(), ".env.production", "B=named\nC=named\nD=named\n");
        write(dir.path(), "extra.env", "C=explicit\nD=explicit\n");
        let explicit = [dir.path().join("extra.env")];
        let set = EnvSet::load([("D".to_string(), "process".to_string())], dir.path(), "production", &explicit)
            .expect("loads");
        assert_eq!(set.get("A"), Some("dotenv"));
        assert_eq!(set.get("B"), Some("named"));
        assert_eq!(set.get("C"), Some("explicit"));
        assert_eq!(set.get("D"), Some("process"));
        assert_eq!(set.source("B"), Some(&Source::File(".env.production".into())));
        assert_eq!(set.source("D"), Some(&Source::Process));
        assert_eq!(set.files().len(), 3);
    }

    #[test]
    fn missing_explicit_file_is_a_usage_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = EnvSet::load([], dir.path(), "x", &[dir.path().join("nope.env")]).expect_err("must fail");
        assert!(err.0.contains("nope.env"), "{err}");
    }

    #[test]
    fn parse_error_names_line_column_variable_and_problem_and_hides_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), ".env", "A=1\n# comment\nJWT_SECRET='s3ntinel-unterminated\n");
        let err = EnvSet::load([], dir.path(), "x", &[]).expect_err("must fail");
        assert_eq!(
            err.0,
            "env file .env:3:12: JWT_SECRET: unterminated single quote: it opens here and is never closed"
        );
        write(dir.path(), ".env", "A=1\nDB_PASSWORD=s3ntinel\\q\n");
        let err = EnvSet::load([], dir.path(), "x", &[]).expect_err("must fail");
        assert!(err.0.starts_with("env file .env:2:21: DB_PASSWORD: bad escape"), "{err}");
        assert!(!err.0.contains("s3ntinel"), "{err}");
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), ".env", "\u{feff}NODE_ENV=production\n");
        let set = EnvSet::load([], dir.path(), "x", &[]).expect("loads");
        assert_eq!(set.get("NODE_ENV"), Some("production"));
    }

    #[test]
    fn view_records_uses_without_values() {
        let view = EnvView::new(Arc::new(EnvSet::from_pairs([("JWT_SECRET", "abc")])));
        assert_eq!(view.get("JWT_SECRET").as_deref(), Some("abc"));
        let _ = view.get("MISSING");
        let uses = view.uses();
        assert_eq!(uses.len(), 2);
        assert_eq!(uses[0].name, "JWT_SECRET");
        assert_eq!(uses[0].length, 3);
        assert!(!uses[1].present);
    }
}
