//! The manifest loader (`--checks` files: TOML, validated, every kind's
//! parameters built); the input is the file, loaded after the built-in suite
//! when it starts with `# with builtin` (so `needs` can name built-in checks).
//! Properties: it never panics; it is deterministic; an error is one line that
//! names the file (with a line and column within it where it gives them); a
//! loaded suite has unique ids, and every `needs` names a loaded check.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use mockmate_diag::manifest::{self, Source};

const LABEL: &str = "fuzz.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let with_builtin = text.starts_with("# with builtin");
    let sources = || {
        let mut s = if with_builtin { vec![Source::builtin()] } else { Vec::new() };
        s.push(Source { label: LABEL.to_string(), text: text.to_string() });
        s
    };
    let read = |r: Result<Vec<manifest::CheckDecl>, mockmate_diag::error::UsageError>| match r {
        Ok(decls) => Ok(decls
            .iter()
            .map(|d| {
                format!("{} {} {:?} {:?} {} {:?} {}", d.id, d.kind.name, d.severity, d.needs, d.title, d.hint, d.origin)
            })
            .collect::<Vec<_>>()),
        Err(e) => Err(e.0),
    };
    let first = read(manifest::load(&sources()));
    assert_eq!(first, read(manifest::load(&sources())), "the same manifest must load the same");

    match &first {
        Err(message) => {
            assert!(!message.contains(['\n', '\r']), "not one line: {message:?}");
            let place = message.strip_prefix(LABEL).unwrap_or_else(|| panic!("no file: {message}"));
            if let Some(rest) = place.strip_prefix(':') {
                let mut parts = rest.splitn(3, ':');
                let line: usize = parts.next().and_then(|l| l.parse().ok()).unwrap_or_else(|| panic!("{message}"));
                let col: usize = parts.next().and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{message}"));
                assert!(line >= 1 && line <= text.lines().count() + 1, "line {line}: {message}");
                assert!(col >= 1, "column {col}: {message}");
            }
        }
        Ok(decls) => {
            let loaded = manifest::load(&sources()).unwrap_or_default();
            let ids: HashSet<&str> = loaded.iter().map(|d| d.id.as_str()).collect();
            assert_eq!(ids.len(), loaded.len(), "duplicate ids: {decls:?}");
            for d in &loaded {
                for need in &d.needs {
                    assert!(ids.contains(need.as_str()), "{} needs undeclared {need}", d.id);
                }
            }
        }
    }
});
