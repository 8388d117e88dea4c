//! What every probe answers when it cannot do its work: a [`Failure`] — data,
//! not an error — that the check which needed the connection turns into its
//! status, message and hint; and how probes read configuration ([`EnvLookup`]).

/// `2s`, `1m 30s`, `2s 850ms`: how durations read in messages — to the
/// millisecond, never `2s 849ms 999us 551ns` (a deadline's remainder).
pub fn human(d: std::time::Duration) -> String {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

/// Why a service could not be reached, in words an operator can act on.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// What failed and why, naming the layer (`connection refused at 10.0.0.5:5432`).
    pub message: String,
    /// The fix, when there is one to suggest.
    pub hint: Option<String>,
    /// Facts for the report's `details` (which client's view, the TLS mode …).
    pub details: serde_json::Map<String, serde_json::Value>,
    /// Why, when the configuration is to blame rather than the service: set where
    /// the target parsers fail, so a check can tell "REDIS_URL is not set" (which
    /// `env.required` reports) from "connection refused" (which is its own finding).
    pub cause: Option<Cause>,
}

/// A configuration problem behind a [`Failure`], naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Cause {
    /// The variable is unset or empty (`REDIS_URL`, `DB_HOST` …).
    Unset(String),
    /// The variable is set but cannot be read (`DATABASE_URL` with a `#` in the password).
    Malformed(String),
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Failure { message: message.into(), hint: None, details: serde_json::Map::new(), cause: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }

    /// Names the configuration problem behind this failure (keeps one already named:
    /// the innermost parser knows best which variable it was reading).
    pub fn because(mut self, cause: Cause) -> Self {
        self.cause.get_or_insert(cause);
        self
    }
}

/// Looks a variable up in the run's environment (process, then env files).
/// Probes read configuration only through this, never through `std::env`.
pub type EnvLookup<'a> = &'a (dyn Fn(&str) -> Option<String> + Send + Sync);

/// An environment lookup over fixed pairs, for the probes' unit tests.
#[cfg(test)]
pub(crate) fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Send + Sync + use<> {
    let map: std::collections::HashMap<String, String> =
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name: &str| map.get(name).cloned()
}
