//! The environment being diagnosed: process variables layered over env files.
//!
//! Precedence follows the dotenv convention: the process environment always
//! wins; then `--env-file` files in the order given; then `.env.NAME`; then
//! `.env` (with `[env] loader = "dotenv-flow"`, dotenv-flow's cascade instead).
//! Each file is read as the API's loader reads it ([`Loader`]: npm dotenv by
//! default, else Node's `--env-file`): what it ignores is ignored, never an
//! error, and where its reading would surprise a person or a shell the
//! variable's [`Reading`] says so. Checks read variables only through
//! [`EnvView`], which records what they looked at so the report can list each
//! variable's source (never its value).

pub mod dotenv;
pub mod node;
pub mod reading;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

pub use reading::{Difference, Loader, Reading};

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

/// Where the env files were looked for, and under which names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Searched {
    pub dir: PathBuf,
    pub names: Vec<String>,
}

/// A line of an env file with text the loader reads nothing from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    pub file: String,
    pub line: usize,
}

/// All variables visible to the checks, with their sources.
#[derive(Debug, Default)]
pub struct EnvSet {
    vars: BTreeMap<String, (String, Source)>,
    files: Vec<String>,
    loader: Loader,
    /// How the loader read each variable that came from a file.
    readings: BTreeMap<String, Reading>,
    ignored: Vec<Ignored>,
    searched: Option<Searched>,
}

impl EnvSet {
    /// Layers env files under the process environment, read by `loader`.
    ///
    /// `explicit` files (`--env-file`) must exist; the environment's own files
    /// in `dir` (`.env.NAME` and `.env`, or dotenv-flow's cascade) are read
    /// when they exist.
    pub fn load(
        process: impl IntoIterator<Item = (String, String)>,
        dir: &Path,
        env_name: &str,
        explicit: &[PathBuf],
        loader: Loader,
    ) -> Result<EnvSet, UsageError> {
        let mut set = EnvSet { loader, ..EnvSet::default() };
        for (name, value) in process {
            set.vars.insert(name, (value, Source::Process));
        }
        for path in explicit {
            if !path.is_file() {
                return Err(UsageError::new(format!("env file {}: not found (given with --env-file)", path.display())));
            }
            set.load_file(path, path.display().to_string())?;
        }
        let names = environment_files(loader, env_name);
        for name in &names {
            let path = dir.join(name);
            // An explicit --env-file of the same file was already loaded.
            if path.is_file() && !explicit.iter().any(|p| same_file(p, &path)) {
                set.load_file(&path, name.clone())?;
            }
        }
        set.searched = Some(Searched { dir: dir.to_path_buf(), names });
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

    /// One env file's text, on its own, read by `loader` (the fuzz target's
    /// entry point: the same reading as `--env-file`, without the file system).
    pub fn from_file_text(text: &str, label: &str, loader: Loader) -> EnvSet {
        let mut set = EnvSet { loader, ..EnvSet::default() };
        set.load_text(text, label.to_string());
        set
    }

    fn load_file(&mut self, path: &Path, label: String) -> Result<(), UsageError> {
        let bytes = std::fs::read(path).map_err(|e| UsageError::new(format!("env file {label}: cannot read: {e}")))?;
        // Node decodes the file as UTF-8, an invalid byte becoming U+FFFD: so do we.
        self.load_text(&String::from_utf8_lossy(&bytes), label);
        Ok(())
    }

    fn load_text(&mut self, text: &str, label: String) {
        let parsed = match self.loader {
            Loader::Dotenv | Loader::DotenvFlow => dotenv::parse(text),
            Loader::Node => node::parse(text),
        };
        // Within a file the last assignment wins; across layers the first layer does.
        let mut last: BTreeMap<&str, &dotenv::Assignment> = BTreeMap::new();
        let mut lines: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for a in &parsed.assignments {
            last.insert(&a.name, a);
            lines.entry(&a.name).or_default().push(a.line);
        }
        for (name, a) in last {
            if self.vars.contains_key(name) {
                continue;
            }
            self.vars.insert(name.to_string(), (a.value.clone(), Source::File(label.clone())));
            let reading = Reading::of(a, self.loader, &label, &lines[name]);
            self.readings.insert(name.to_string(), reading);
        }
        self.ignored.extend(parsed.ignored.iter().map(|line| Ignored { file: label.clone(), line: *line }));
        self.files.push(label);
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

    /// The loader the files were read with.
    pub fn loader(&self) -> Loader {
        self.loader
    }

    /// Where the environment's own files were looked for (`None`: no file
    /// system, as in tests).
    pub fn searched(&self) -> Option<&Searched> {
        self.searched.as_ref()
    }

    /// How the loader read `name`, when it came from a file.
    pub fn reading(&self, name: &str) -> Option<&Reading> {
        self.readings.get(name)
    }

    /// Lines with text the loader read nothing from.
    pub fn ignored(&self) -> &[Ignored] {
        &self.ignored
    }

    /// Run-level remarks: the lines the loader ignores, one note per file.
    pub fn notes(&self) -> Vec<String> {
        let mut by_file: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for i in &self.ignored {
            by_file.entry(&i.file).or_default().push(i.line);
        }
        // Files in precedence order.
        self.files
            .iter()
            .filter_map(|file| {
                let lines = by_file.get(file.as_str())?;
                let list: Vec<String> = lines.iter().map(usize::to_string).collect();
                let (word, these, them) =
                    if lines.len() == 1 { ("line", "it is", "it") } else { ("lines", "they are", "them") };
                Some(format!(
                    "{} reads nothing from {file} {word} {}: {these} not NAME=value as it understands it, so the \
                     API never sees {them}",
                    self.loader.name(),
                    list.join(", ")
                ))
            })
            .collect()
    }

    /// Every (name, value) pair: the redactor learns secrets from this.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, (v, _))| (k.as_str(), v.as_str()))
    }
}

/// The files of environment `env_name` a loader reads, highest precedence first.
pub fn environment_files(loader: Loader, env_name: &str) -> Vec<String> {
    match loader {
        Loader::Dotenv | Loader::Node => vec![format!(".env.{env_name}"), ".env".to_string()],
        // dotenv-flow 4: `.env.defaults`, `.env`, `.env.local` (not for `test`),
        // `.env.NAME`, `.env.NAME.local`, each overriding the one before.
        Loader::DotenvFlow => {
            let mut names = vec![format!(".env.{env_name}.local"), format!(".env.{env_name}")];
            if env_name != "test" {
                names.push(".env.local".to_string());
            }
            names.extend([".env".to_string(), ".env.defaults".to_string()]);
            names
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
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

    /// Where `name`'s value comes from (`None`: unset). Not recorded as a use.
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.set.source(name)
    }

    /// The secrets of the whole environment (process and env files), as the
    /// output stream masks them.
    pub fn secrets(&self) -> crate::redact::Redactor {
        crate::redact::Redactor::from_env(self.set.iter())
    }

    /// The value of `name` when set and not blank.
    pub fn non_empty(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.trim().is_empty())
    }

    /// Where the loader's reading of `name` would surprise a person or a shell,
    /// in words (never the value): `None` when it came from the process, or
    /// its file holds no surprise for it.
    pub fn reading_note(&self, name: &str) -> Option<String> {
        let value = self.set.get(name)?;
        self.set.reading(name)?.describe(name, value)
    }

    /// How the loader read `name`, when it came from a file.
    pub fn reading(&self, name: &str) -> Option<&Reading> {
        self.set.reading(name)
    }

    /// The env files loaded, in precedence order.
    pub fn files(&self) -> &[String] {
        self.set.files()
    }

    /// Where the environment's own env files were looked for.
    pub fn searched(&self) -> Option<&Searched> {
        self.set.searched()
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

    fn load(dir: &Path, env: &str, explicit: &[PathBuf]) -> Result<EnvSet, UsageError> {
        EnvSet::load([("D".to_string(), "process".to_string())], dir, env, explicit, Loader::Dotenv)
    }

    #[test]
    fn process_wins_then_explicit_then_named_then_dotenv() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), ".env", "A=dotenv\nB=dotenv\nC=dotenv\nD=dotenv\n");
        write(dir.path(), ".env.production", "B=named\nC=named\nD=named\n");
        write(dir.path(), "extra.env", "C=explicit\nD=explicit\n");
        let explicit = [dir.path().join("extra.env")];
        let set = load(dir.path(), "production", &explicit).expect("loads");
        assert_eq!(set.get("A"), Some("dotenv"));
        assert_eq!(set.get("B"), Some("named"));
        assert_eq!(set.get("C"), Some("explicit"));
        assert_eq!(set.get("D"), Some("process"));
        assert_eq!(set.source("B"), Some(&Source::File(".env.production".into())));
        assert_eq!(set.source("D"), Some(&Source::Process));
        assert_eq!(set.files().len(), 3);
        assert_eq!(set.reading("D"), None, "the process wins: no file reading");
        assert_eq!(set.searched().map(|s| s.names.clone()), Some(vec![".env.production".into(), ".env".into()]));
    }

    #[test]
    fn missing_explicit_file_is_a_usage_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = load(dir.path(), "x", &[dir.path().join("nope.env")]).expect_err("must fail");
        assert!(err.0.contains("nope.env"), "{err}");
    }

    #[test]
    fn what_dotenv_reads_is_never_an_error_and_the_last_duplicate_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            ".env",
            "A=1\nJWT_SECRET='s3ntinel-unterminated\nB=words then more\nhunter2 alone\nB=again\nC=x\\q\n",
        );
        let set = load(dir.path(), "x", &[]).expect("dotenv reads every line");
        assert_eq!(set.get("JWT_SECRET"), Some("'s3ntinel-unterminated"));
        assert_eq!(set.get("B"), Some("again"));
        assert_eq!(set.get("C"), Some("x\\q"));
        assert_eq!(set.ignored(), [Ignored { file: ".env".into(), line: 4 }]);
        let notes = set.notes();
        assert_eq!(
            notes,
            [
                "dotenv reads nothing from .env line 4: it is not NAME=value as it understands it, so the API never sees it"
            ]
        );
        assert!(!notes[0].contains("hunter2"));
        let b = set.reading("B").expect("read from .env");
        assert_eq!(b.differences, [Difference::Duplicate(vec![3, 5])]);
    }

    #[test]
    fn dotenv_flow_reads_its_cascade() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), ".env.defaults", "A=defaults\nB=defaults\nC=defaults\nD=defaults\nE=defaults\n");
        write(dir.path(), ".env", "B=dotenv\nC=dotenv\nD=dotenv\nE=dotenv\n");
        write(dir.path(), ".env.local", "C=local\nD=local\nE=local\n");
        write(dir.path(), ".env.production", "D=named\nE=named\n");
        write(dir.path(), ".env.production.local", "E=named-local\n");
        let set = EnvSet::load([], dir.path(), "production", &[], Loader::DotenvFlow).expect("loads");
        let got: Vec<&str> = ["A", "B", "C", "D", "E"].iter().filter_map(|v| set.get(v)).collect();
        assert_eq!(got, ["defaults", "dotenv", "local", "named", "named-local"]);
        let set = EnvSet::load([], dir.path(), "test", &[], Loader::DotenvFlow).expect("loads");
        assert_eq!(set.get("C"), Some("dotenv"), "no .env.local for test");
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), ".env", "\u{feff}NODE_ENV=production\n");
        let set = load(dir.path(), "x", &[]).expect("loads");
        assert_eq!(set.get("NODE_ENV"), Some("production"));
    }

    #[test]
    fn the_view_says_how_the_loader_read_a_variable_never_its_value() {
        let set = EnvSet::from_file_text("JWT_SECRET=abc#9f8e7d6c\n", ".env.production", Loader::Dotenv);
        let view = EnvView::new(Arc::new(set));
        let note = view.reading_note("JWT_SECRET").expect("a note");
        assert!(note.starts_with("dotenv reads JWT_SECRET (.env.production:1) as 3 characters"), "{note}");
        assert!(!note.contains("9f8e"), "{note}");
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
