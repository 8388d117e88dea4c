//! The one place secrets are removed from everything that leaves the process.
//!
//! Every report format, every stderr line, every error chain and the panic hook
//! pass through [`Redactor::redact`]. It removes:
//! - the password in any `scheme://user:password@host` URL (`postgres://app:****@db:5432/x`);
//! - `password=…` key/value pairs (libpq connection strings) and `"password": "…"`;
//! - SQL's `PASSWORD '…'` (another session's query text, as `pg_stat_activity` shows it);
//! - the value of every variable whose name contains `SECRET`, `PASSWORD`,
//!   `TOKEN` or `KEY`, and passwords embedded in URL-valued variables, wherever
//!   they appear (also percent-encoded, and JSON-escaped).

use std::borrow::Cow;
use std::sync::{LazyLock, RwLock};

use regex::Regex;

use crate::report::Report;

pub const MASK: &str = "****";

/// Userinfo with a password: `scheme://user:password@`. Greedy up to the last `@`
/// before whitespace or a quote, so an unescaped `@` in a password still hides it all.
static URL_PASSWORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)\b([a-z][a-z0-9+.\-]*://)([^\s:/?#@"'`<>]*):[^\s"'`<>]*@"#).expect("valid regex")
});

/// `password=value`, `password = 'value'` (libpq conninfo), `"password":"value"`.
static KV_PASSWORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\b((?:ssl)?pass(?:word|wd)?|pwd)(\s*=\s*)('[^']*'|"[^"]*"|[^\s&;,'"]+)|("(?:password|passwd|secret|token)"\s*:\s*)"[^"]*""#,
    )
    .expect("valid regex")
});

/// SQL's `PASSWORD 'value'` (`CREATE/ALTER ROLE … [ENCRYPTED] PASSWORD`), as
/// another session's query text shows it (lock holders): an escape string too,
/// and a literal cut before its closing quote (a query shown to 200 characters).
static SQL_PASSWORD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?i)\b(password\s+)[eE]?'(?:[^']|'')*(?:'|$)"#).expect("valid regex"));

/// Values too common to mask without mangling the output (flags, not secrets).
const HARMLESS: &[&str] = &["true", "false", "yes", "no", "on", "off", "null", "none"];

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Literal secrets, longest first so that a secret containing another is masked whole.
    secrets: Vec<String>,
}

/// Whether a variable's value is a secret by its name.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["SECRET", "PASSWORD", "TOKEN", "KEY", "PASSWD"].iter().any(|w| upper.contains(w))
}

impl Redactor {
    /// Learns the secrets of an environment.
    pub fn from_env<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Redactor {
        let mut r = Redactor::default();
        for (name, value) in vars {
            if is_secret_name(name) {
                r.add(value);
            }
            // A URL with a password in any variable (DATABASE_URL, REDIS_URL, …).
            if let Some(password) = url_password(value) {
                r.add(&password);
            }
        }
        r
    }

    /// Adds one literal secret (and its percent-encoded and JSON-escaped forms).
    pub fn add(&mut self, secret: &str) {
        let secret = secret.trim();
        if secret.len() < 3
            || HARMLESS.iter().any(|h| secret.eq_ignore_ascii_case(h))
            || (secret.len() < 6 && secret.bytes().all(|b| b.is_ascii_digit()))
        {
            return;
        }
        let encoded = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>();
        // Inside a JSON string (`"`, `\` and control characters escaped): a secret
        // quoted in a driver's JSON error, or in our own JSON report should a string
        // ever reach it unredacted, is masked by the output stream all the same.
        let quoted = serde_json::to_string(secret).unwrap_or_default();
        let json = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')).unwrap_or_default().to_string();
        for s in [secret.to_string(), encoded, percent_encode_userinfo(secret), json] {
            if s.is_empty() {
                continue;
            }
            if !self.secrets.contains(&s) {
                self.secrets.push(s);
            }
        }
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Merges the secrets another redactor knows.
    pub fn extend(&mut self, other: &Redactor) {
        for s in &other.secrets {
            self.add(s);
        }
    }

    /// Masks every secret in `text`. Masking twice changes nothing: the passes
    /// repeat until none masks more (masking one pattern can complete another,
    /// as `s://PASSWD=a/b&:c@h` masked is `s://PASSWD=****&:c@h`, a URL's userinfo).
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = self.pass(text);
        for _ in 0..8 {
            let Cow::Owned(done) = &out else { break };
            match self.pass(done) {
                Cow::Owned(more) if more != *done => out = Cow::Owned(more),
                _ => break,
            }
        }
        out
    }

    fn pass<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            }
        }
        if URL_PASSWORD.is_match(&out) {
            out = Cow::Owned(URL_PASSWORD.replace_all(&out, format!("${{1}}${{2}}:{MASK}@")).into_owned());
        }
        if SQL_PASSWORD.is_match(&out) {
            out = Cow::Owned(SQL_PASSWORD.replace_all(&out, format!("${{1}}'{MASK}'")).into_owned());
        }
        if KV_PASSWORD.is_match(&out) {
            out = Cow::Owned(
                KV_PASSWORD
                    .replace_all(&out, |c: &regex::Captures| match (c.get(1), c.get(2), c.get(4)) {
                        // A quoted value keeps its quotes: `password='****'` masked again stays so
                        // (without them, a second pass would take what follows the quote as the value).
                        (Some(key), Some(eq), _) => {
                            let quote =
                                c.get(3).and_then(|v| v.as_str().chars().next()).filter(|q| matches!(q, '\'' | '"'));
                            let q = quote.map(String::from).unwrap_or_default();
                            format!("{}{}{q}{MASK}{q}", key.as_str(), eq.as_str())
                        }
                        (_, _, Some(key)) => format!("{}\"{MASK}\"", key.as_str()),
                        _ => MASK.to_string(),
                    })
                    .into_owned(),
            );
        }
        out
    }
}

impl Redactor {
    /// Redacts every string of a report before it is formatted, so that a
    /// table's column widths are measured on what will be printed. The output
    /// stream redacts again; on a redacted report that changes nothing.
    pub fn redact_report(&self, report: &mut Report) {
        let fix = |s: &mut String| {
            if let Cow::Owned(clean) = self.redact(s) {
                *s = clean;
            }
        };
        fix(&mut report.environment);
        report.env_files.iter_mut().for_each(fix);
        for c in &mut report.checks {
            // Not the id: a manifest's identifier, never read from the
            // environment. Masking it only breaks what keys on it (a Prometheus
            // label, a JUnit testcase) when a secret is a word like `postgres`.
            fix(&mut c.title);
            fix(&mut c.message);
            if let Some(h) = &mut c.hint {
                fix(h);
            }
            for v in c.details.values_mut() {
                self.redact_json(v);
            }
            if let crate::report::Ending::Interrupted { phase: Some(phase) } = &mut c.ending {
                fix(phase);
            }
        }
        for v in &mut report.variables {
            fix(&mut v.source);
        }
        report.notes.iter_mut().for_each(fix);
    }

    fn redact_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => {
                if let Cow::Owned(clean) = self.redact(s) {
                    *s = clean;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.redact_json(v)),
            _ => {}
        }
    }
}

/// The decoded password in `scheme://user:password@host…`, if any. In a Redis
/// URL a lone `word@` is a user name to node-redis, but people write passwords
/// there (`redis://secret@host`): it is treated as one.
fn url_password(value: &str) -> Option<String> {
    let url = url::Url::parse(value.trim()).ok()?;
    let password = match url.password() {
        Some(p) => p,
        None if url.scheme().starts_with("redis") && !url.username().is_empty() => url.username(),
        None => return None,
    };
    Some(crate::probe::url::percent_decode(password).unwrap_or_else(|_| password.to_string()))
}

/// How a password appears percent-encoded in a URL's userinfo.
fn percent_encode_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The redactor the panic hook uses; set once the environment is known.
static GLOBAL: RwLock<Option<Redactor>> = RwLock::new(None);

/// Makes `r` the redactor of last resort (panics) and installs the panic hook.
pub fn install_global(r: &Redactor) {
    if let Ok(mut g) = GLOBAL.write() {
        *g = Some(r.clone());
    }
}

/// Redacts with the global redactor (patterns only when none is installed).
pub fn redact_global(text: &str) -> String {
    match GLOBAL.read() {
        Ok(g) => match g.as_ref() {
            Some(r) => r.redact(text).into_owned(),
            None => Redactor::default().redact(text).into_owned(),
        },
        Err(_) => Redactor::default().redact(text).into_owned(),
    }
}

/// A panic must never print a secret: replace the default hook with one that
/// prints a single redacted line.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        // Checks run on runtime workers; the engine reports their panics as results.
        if std::thread::current().name().is_some_and(|n| n.starts_with("tokio-runtime-worker")) {
            return;
        }
        let payload = panic_message(info.payload());
        let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let line = redact_global(&format!("mockmate-diag: internal error: {payload}{location}\n"));
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    }));
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENTINEL: &str = "S3ntinel-pa55word";

    #[test]
    fn masks_url_passwords_keeping_user_and_host() {
        let r = Redactor::default();
        assert_eq!(
            r.redact("postgres://app:hunter2@db.internal:5432/mockmate"),
            "postgres://app:****@db.internal:5432/mockmate"
        );
        assert_eq!(r.redact("rediss://:pw@cache:6380/0"), "rediss://:****@cache:6380/0");
        assert_eq!(r.redact("redis://default:p@ss@cache"), "redis://default:****@cache");
        assert_eq!(r.redact("postgresql://app@db/x"), "postgresql://app@db/x");
    }

    /// A lock holder's query, as another session's `pg_stat_activity` row shows it.
    #[test]
    fn masks_passwords_in_sql_even_when_the_literal_is_cut() {
        let r = Redactor::default();
        assert_eq!(
            r.redact("ALTER ROLE other PASSWORD 'other-role-secret' VALID UNTIL 'infinity'"),
            "ALTER ROLE other PASSWORD '****' VALID UNTIL 'infinity'"
        );
        assert_eq!(
            r.redact("create role x encrypted password E'it''s \\ hid'"),
            "create role x encrypted password '****'"
        );
        assert_eq!(r.redact("ALTER USER app WITH PASSWORD 'cut at two hundr"), "ALTER USER app WITH PASSWORD '****'");
        assert_eq!(r.redact(&r.redact("PASSWORD 'x'")), "PASSWORD '****'");
    }

    #[test]
    fn masks_key_value_passwords() {
        let r = Redactor::default();
        assert_eq!(r.redact("host=db password=hunter2 user=app"), "host=db password=**** user=app");
        assert_eq!(r.redact("password = 'a b c'"), "password = '****'");
        // Found by fuzzing (fuzz/ redact): masking twice changed `password='x'@y` again.
        let once = r.redact("password='x'@pas k");
        assert_eq!(once, "password='****'@pas k");
        assert_eq!(r.redact(&once), once);
        assert_eq!(r.redact(r#"{"password":"x1y2"}"#), r#"{"password":"****"}"#);
        assert_eq!(
            r.redact("password authentication failed for user \"app\""),
            "password authentication failed for user \"app\""
        );
    }

    #[test]
    fn redacts_a_report_before_formatting_so_tables_stay_aligned() {
        let mut report = crate::format::fixture();
        report.checks[0].message = format!("saw postgres://u:{SENTINEL}@h/db");
        report.checks[0].details.insert("url".into(), serde_json::json!([format!("x {SENTINEL}")]));
        let r = Redactor::from_env([("DB_PASSWORD", SENTINEL)]);
        r.redact_report(&mut report);
        let json = serde_json::to_string(&report).unwrap_or_default();
        assert!(!json.contains(SENTINEL), "{json}");
        let layout = crate::format::table::Layout { width: 100, verbosity: crate::format::Verbosity::Normal };
        let table = anstream::adapter::strip_str(&crate::format::table::format(&report, layout)).to_string();
        // The message column starts where its header does, in the row that was redacted too.
        let column = |line: &str, text: &str| line.find(text).map(|i| line[..i].chars().count());
        let header = table.lines().find_map(|l| column(l, "Message"));
        let redacted = table.lines().find_map(|l| column(l, "saw postgres://u:****@h/db"));
        assert!(header.is_some() && header == redacted, "{table}");
    }

    /// Found by fuzzing (fuzz/ redact, idempotence): masking a `PASSWD=` value
    /// made the rest a URL with a password, which only a second pass masked.
    #[test]
    fn masking_is_idempotent_when_one_mask_completes_another_pattern() {
        let r = Redactor::default();
        let once = r.redact("s://PASSWD=a/b&:/c:@db/x").into_owned();
        assert_eq!(once, "s://PASSWD=****&:****@db/x");
        assert_eq!(r.redact(&once), once);
    }

    /// Found by fuzzing (fuzz/ redact): a secret with a quote or a backslash,
    /// JSON-escaped, survived.
    #[test]
    fn masks_json_escaped_secrets() {
        let r = Redactor::from_env([("JWT_SECRET", "quo\"te\\back\n1")]);
        let json = serde_json::json!({ "message": "quo\"te\\back\n1" }).to_string();
        assert_eq!(r.redact(&json), r#"{"message":"****"}"#);
    }

    #[test]
    fn masks_values_of_secret_variables_anywhere() {
        let r = Redactor::from_env([
            ("JWT_SECRET", SENTINEL),
            ("DATABASE_URL", "postgres://u:Url%40Secret9@h/db"),
            ("NODE_ENV", "production"),
            ("FEATURE_TOKEN_CACHE", "true"),
        ]);
        let text = format!("saw {SENTINEL} and Url@Secret9 and Url%40Secret9 in production, true");
        assert_eq!(r.redact(&text), "saw **** and **** and **** in production, true");
    }
}
