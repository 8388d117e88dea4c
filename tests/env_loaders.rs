//! Env files read as the API reads them: the real loaders (npm dotenv and
//! dotenv-flow, pinned in tests/node; Node's own `--env-file`) are the oracles,
//! and mockmate-diag must read every case exactly as they do.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use mockmate_diag::envctx::{EnvSet, Loader, dotenv, node};

use crate::support::node as node_packages;

/// Env files, each a case: the issue's lines (quotes of three kinds, `$` and
/// `${}`, spaces inside, before and after, multi-line values, CRLF, `export`,
/// `#` with and without a space before it, empty values) and the corners of
/// dotenv's expression (a value on the line after `=`, `NAME:` with a line
/// break, `__proto__`, quotes closed lines later, escaped quotes, tabs, a
/// byte-order mark, U+2028, invalid UTF-8).
const CASES: &[&[u8]] = &[
    b"JWT_SECRET=abc#9f8e7d6c5b4a39281706f5e4d3c2b1a0\n",
    b"DATABASE_URL=postgres://app:Pa#ss-2024@db.internal:5432/mockmate\n",
    b"DATABASE_URL='postgres://app:Pa#ss-2024@db.internal:5432/mockmate'\n",
    b"DB_PASSWORD=pa$word\nB=pa${word}\nC=\"pa$word\"\nD='pa${word}'\nE=$\n",
    b"KEY=words then more\n",
    b"KEY = spaced value\n",
    b"KEY=   leading\n",
    b"KEY=trailing   \n",
    b"KEY=\t tabs and spaces \t\n",
    b"A='single'\nB=\"double\"\nC=`backtick`\n",
    b"A=' padded '\nB=\" padded \"\nC=` padded `\n",
    b"A=\"it's\"\nB='say \"hi\"'\nC=`both \"a\" 'b'`\n",
    b"A=\"line one\nline two\"\nB='x\ny'\nC=`p\nq`\n",
    b"A=one\r\nB=\"two\r\nlines\"\r\nC=three\r\n",
    b"A=lone\rB=cr\r",
    b"export A=1\nexport  B=2\nexport\tC=3\nexport=4\nexportD=5\n",
    b"A=value # comment\nB=value# comment\nC=#all comment\nD= # only a comment\n",
    b"A=\"v#1\" # c\nB='v#2'#c\nC=`v#3`# c\n",
    b"A=\nB=''\nC=\"\"\nD=``\nE\n",
    b"A=\"one\\ntwo\\rthree\"\nB='one\\ntwo'\nC=one\\ntwo\nD=`one\\ntwo`\n",
    b"A=\"a \\\"quoted\\\" word\"\nB='it\\'s'\nC=`tick\\`s`\n",
    b"A='open\nB=2\n",
    b"A=\"open\nB=2\nC=\"closed\"\n",
    b"A=\"x\" trailing\nB='y' more\n",
    b"A: colon\nB:nospace\nC : spaced\n",
    b"URL:\nB=2\n",
    b"A=\n'next line'\nB=2\n",
    b"__proto__=x\nconstructor=y\ntoString=z\n",
    b"A=1\nA=2\nA=3\n",
    b"  INDENTED = 1\n\tTABBED=2\n",
    b"1ABC=digits\nJWT-SECRET=dash\na.b=dot\n",
    b"JWT SECRET=space in name\nhunter2\n: nothing\n=novalue\n",
    b"\xef\xbb\xbfBOM=1\n",
    b"A=x\xe2\x80\xa8B=y\n\xe2\x80\xa8C=z\n",
    b"A=\xff\xfe invalid\nB=\"\xc3\"\n",
    b"A=\"a\"b\"\nB='''\n",
    b"A=`a\nB=2`\nC=3\n",
    b"# only comments\n   # indented comment\n",
    b"A=1 # one\n\n\n# c\nB=2",
    b"A=\\\nB=2\n",
    b"REDIS_URL=redis://hunter2@cache.internal:6379\n",
    b"A='\\''\nB=\"\\\\\"\n",
];

fn grammar_fixture() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/env/dotenv-grammar.env"))
        .expect("tests/fixtures/env/dotenv-grammar.env")
}

fn all_cases() -> Vec<Vec<u8>> {
    let mut cases: Vec<Vec<u8>> = CASES.iter().map(|c| c.to_vec()).collect();
    cases.push(grammar_fixture());
    cases
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn node_json(args: &[&str], stdin: Option<String>, env: &[(&str, &str)]) -> serde_json::Value {
    // `node` by its path: the environment is cleared, PATH with it.
    let mut cmd = Command::new(which_node());
    cmd.current_dir(node_packages::dir()).arg("env_loaders.js").args(args).env_clear().envs(env.iter().copied());
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("node runs");
    let input = stdin.unwrap_or_default();
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), input.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("node finishes");
    assert!(out.status.success(), "node {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("node prints JSON")
}

/// Node's path (after `node_packages::dir()`, which fails loudly without Node).
fn which_node() -> String {
    node_packages::dir();
    let out = Command::new("sh").args(["-c", "command -v node"]).output().expect("sh runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

type Vars = BTreeMap<String, String>;

fn as_vars(value: &serde_json::Value) -> Vars {
    value
        .as_object()
        .expect("an object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("a string").to_string()))
        .collect()
}

/// The last assignment of each name wins, as in a JavaScript object.
fn last_wins(parsed: mockmate_diag::envctx::dotenv::Parsed) -> Vars {
    parsed.assignments.into_iter().map(|a| (a.name, a.value)).collect()
}

#[test]
fn every_case_reads_as_npm_dotenv_reads_it() {
    let cases = all_cases();
    let input = serde_json::to_string(&cases.iter().map(|c| base64(c)).collect::<Vec<_>>()).expect("json");
    let theirs = node_json(&["parse"], Some(input), &[]);
    let theirs = theirs.as_array().expect("one object per case");
    assert_eq!(theirs.len(), cases.len());
    let mut differ = Vec::new();
    for (case, dotenv_read) in cases.iter().zip(theirs) {
        let ours = last_wins(dotenv::parse(&String::from_utf8_lossy(case)));
        if ours != as_vars(dotenv_read) {
            differ.push(format!(
                "{:?}\n  dotenv: {:?}\n  ours:   {ours:?}",
                String::from_utf8_lossy(case),
                as_vars(dotenv_read)
            ));
        }
    }
    assert!(differ.is_empty(), "{} of {} cases read differently:\n{}", differ.len(), cases.len(), differ.join("\n"));
}

#[test]
fn every_case_reads_as_node_env_file_reads_it() {
    let node = which_node();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut differ = Vec::new();
    let cases = all_cases();
    for (i, case) in cases.iter().enumerate() {
        let file = dir.path().join(format!("case{i}.env"));
        std::fs::write(&file, case).expect("write");
        let out = Command::new(&node)
            .arg(format!("--env-file={}", file.display()))
            .args(["-e", "process.stdout.write(JSON.stringify(process.env))"])
            .env_clear()
            .output()
            .expect("node runs");
        assert!(out.status.success(), "{:?}: {}", String::from_utf8_lossy(case), String::from_utf8_lossy(&out.stderr));
        let theirs = as_vars(&serde_json::from_slice(&out.stdout).expect("json"));
        let ours = last_wins(node::parse(&String::from_utf8_lossy(case)));
        if ours != theirs {
            differ.push(format!("{:?}\n  node:  {theirs:?}\n  ours:  {ours:?}", String::from_utf8_lossy(case)));
        }
    }
    assert!(differ.is_empty(), "{} of {} cases read differently:\n{}", differ.len(), cases.len(), differ.join("\n"));
}

fn write(dir: &Path, name: &str, body: &str) {
    std::fs::write(dir.join(name), body).expect("write fixture");
}

fn ours(dir: &Path, env: &str, process: &[(&str, &str)], loader: Loader) -> Vars {
    let vars = process.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let set = EnvSet::load(vars, dir, env, &[], loader).expect("loads");
    set.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn files_layer_as_dotenv_config_layers_them_and_the_process_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), ".env", "A=dotenv\nB=dotenv\nC=dotenv # c\n");
    write(dir.path(), ".env.production", "B=named\nC=named\nC=named-again\n");
    let process = [("C", "process")];
    let theirs = node_json(&["config", &dir.path().display().to_string(), ".env.production", ".env"], None, &process);
    assert_eq!(ours(dir.path(), "production", &process, Loader::Dotenv), as_vars(&theirs));
}

#[test]
fn dotenv_flow_cascade_reads_as_dotenv_flow_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), ".env.defaults", "A=defaults\nB=defaults\nC=defaults\nD=defaults\nE=defaults\nF=defaults\n");
    write(dir.path(), ".env", "B=dotenv\nC=dotenv\nD=dotenv\nE=dotenv\nF=dotenv#cut\n");
    write(dir.path(), ".env.local", "C=local\nD=local\nE=local\n");
    write(dir.path(), ".env.production", "D=named\nE=named\nG='named'\n");
    write(dir.path(), ".env.production.local", "E=named-local\n");
    write(dir.path(), ".env.test", "D=test\n");
    for env in ["production", "test", "staging"] {
        let process = [("F", "process")];
        let theirs = node_json(&["flow", &dir.path().display().to_string(), env], None, &process);
        assert_eq!(ours(dir.path(), env, &process, Loader::DotenvFlow), as_vars(&theirs), "{env}");
    }
}
