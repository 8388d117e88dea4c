//! The env-file loaders (npm dotenv's grammar, Node's `--env-file`); the input
//! is the file's bytes. Properties: they never panic and are deterministic;
//! dotenv's reading equals dotenv's own LINE expression run by an ECMAScript
//! engine (`regress`) with dotenv's post-processing; what the report says of
//! a file — a note per file with lines the loader ignores, a variable's
//! reading — is one line, names the file and a line within it, and never
//! quotes a value: a marker (`Zq9x`, which the seeds carry) that appears only
//! after an `=` on its line never shows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mockmate_diag::envctx::{EnvSet, Loader, dotenv};

const MARK: &str = "Zq9x";
const LABEL: &str = ".env.fuzz";

fn js_space(c: char) -> bool {
    dotenv::is_js_space(c)
}

/// dotenv's `parse`: its expression, then trim, quotes and `\n` in double quotes.
fn by_the_regex(text: &str) -> Vec<(String, String)> {
    const LINE: &str = r#"(?:^|^)\s*(?:export\s+)?([\w.-]+)(?:\s*=\s*?|:\s+?)(\s*'(?:\\'|[^'])*'|\s*"(?:\\"|[^"])*"|\s*`(?:\\`|[^`])*`|[^#\r\n]+)?\s*(?:#.*)?(?:$|$)"#;
    static REGEXES: std::sync::OnceLock<(regress::Regex, regress::Regex)> = std::sync::OnceLock::new();
    let (line, quotes) = REGEXES.get_or_init(|| {
        (
            regress::Regex::with_flags(LINE, "m").expect("dotenv's LINE"),
            regress::Regex::with_flags(r#"^(['"`])([\s\S]*)\1$"#, "m").expect("dotenv's quotes"),
        )
    });
    let lines = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = Vec::new();
    for m in line.find_iter(&lines) {
        let Some(key) = m.group(1) else { continue };
        let key = lines[key].to_string();
        let value = m.group(2).map(|r| &lines[r]).unwrap_or("").trim_matches(js_space);
        let mut stripped = String::new();
        let mut last = 0;
        for q in quotes.find_iter(value) {
            let Some(inner) = q.group(2) else { continue };
            stripped.push_str(&value[last..q.range().start]);
            stripped.push_str(&value[inner]);
            last = q.range().end;
        }
        stripped.push_str(&value[last..]);
        if value.starts_with('"') {
            stripped = stripped.replace("\\n", "\n").replace("\\r", "\r");
        }
        if key != "__proto__" {
            out.push((key, stripped));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Lines as dotenv counts them: `\r\n`, a lone `\r` and `\n` each end one (Node,
    // which drops every `\r`, counts no more).
    let lines = text.replace("\r\n", "\n").replace('\r', "\n").split('\n').count();
    // Every marker sits in a value (after an `=` on its line).
    let in_values = text.split(['\n', '\r']).all(|l| l.find(MARK).is_none_or(|i| l[..i].contains('=')));
    for loader in [Loader::Dotenv, Loader::Node] {
        let read = |set: &EnvSet| set.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let set = EnvSet::from_file_text(&text, LABEL, loader);
        assert_eq!(read(&set), read(&EnvSet::from_file_text(&text, LABEL, loader)), "the same file must read the same");
        for note in set.notes() {
            assert!(!note.contains(['\n', '\r']), "not one line: {note:?}");
            let after = note.split_once(&format!("{LABEL} line")).map(|(_, a)| a).unwrap_or_else(|| panic!("no file: {note}"));
            let numbers = after.split(':').next().unwrap_or_default();
            for n in numbers.split(',') {
                let n: usize = n.trim().trim_start_matches('s').trim().parse().unwrap_or_else(|_| panic!("no line: {note}"));
                assert!(n >= 1 && n <= lines, "line {n} of {lines}: {note}");
            }
            if in_values {
                assert!(!note.contains(MARK), "a value shows: {note}");
            }
        }
        for (name, value) in set.iter() {
            // The checks ask about names like JWT_SECRET: a name is never a value.
            if name.contains(MARK) || name.contains(['\n', '\r']) {
                continue;
            }
            let Some(said) = set.reading(name).and_then(|r| r.describe(name, value)) else { continue };
            assert!(!said.contains(['\n', '\r']), "not one line: {said:?}");
            assert!(said.contains(LABEL), "no file: {said}");
            if in_values {
                assert!(!said.contains(MARK), "a value shows: {said}");
            }
        }
    }
    let ours: Vec<(String, String)> =
        dotenv::parse(&text).assignments.into_iter().map(|a| (a.name, a.value)).collect();
    assert_eq!(ours, by_the_regex(&text), "dotenv's expression reads {text:?} otherwise");
});
