//! The env-file loader (dotenvy, and our diagnosis of a line it refuses); the
//! input is the file. Properties: it never panics; it is deterministic; an error
//! is one line that names the file and a line within it, and never quotes a
//! value: a marker (`Zq9x`, which the seeds carry) that appears only after an
//! `=` on its line never shows in an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mockmate_diag::envctx::EnvSet;
use mockmate_diag::error::UsageError;

const MARK: &str = "Zq9x";
const LABEL: &str = ".env.fuzz";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let read = |r: Result<EnvSet, UsageError>| match r {
        Ok(set) => Ok(set.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>()),
        Err(e) => Err(e.0),
    };
    let first = read(EnvSet::from_file_text(text, LABEL));
    assert_eq!(first, read(EnvSet::from_file_text(text, LABEL)), "the same file must read the same");

    let Err(message) = &first else { return };
    assert!(!message.contains(['\n', '\r']), "not one line: {message:?}");
    let place = message.strip_prefix(&format!("env file {LABEL}")).unwrap_or_else(|| panic!("no file: {message}"));
    // `:line[:col]: …`: a line of this file.
    if let Some(line) = place.strip_prefix(':').and_then(|p| p.split(':').next()) {
        let line: usize = line.parse().unwrap_or_else(|_| panic!("no line: {message}"));
        assert!(line >= 1 && line <= text.lines().count() + 1, "line {line}: {message}");
    }
    // Every marker sits in a value (after an `=` on its line): none may show.
    let in_values = text.split(['\n', '\r']).all(|l| l.find(MARK).is_none_or(|i| l[..i].contains('=')));
    if in_values {
        assert!(!message.contains(MARK), "a value shows: {message}");
    }
});
