//! `postgres.settings`: settings the API's sessions inherit from its role and
//! database (`ALTER ROLE … SET`, `ALTER DATABASE … SET`, `ALTER ROLE … IN DATABASE
//! … SET`, or the server's configuration) that will break requests:
//! - `statement_timeout` below `min_statement_timeout` (1s): every query of the API
//!   that takes longer is cancelled (57014);
//! - `lock_timeout` below `min_lock_timeout` (100ms): a statement that waits for a
//!   lock longer gives up (55P03);
//! - `idle_in_transaction_session_timeout` below `min_idle_in_transaction_session_timeout`
//!   (1s): the server closes a connection whose transaction waits between statements (25P03).
//!
//! It names where each is set and the exact statement that resets it. Values come
//! from `pg_settings.reset_val` (what a new session of the role starts with) and
//! `pg_db_role_setting` (where), never `current_setting()`: mockmate-diag's own
//! session sets its own timeouts. `default_transaction_read_only` is
//! `postgres.writable`'s finding and `search_path` `postgres.schema`'s: they are
//! listed in the details (and the message) but judged there.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;

use super::shared::postgres::{duration, get, human, query_one, session};
use super::shared::role_settings::{Inherited, inherited_sql, pg_duration, reset_duration};
use crate::check::{Check, Ctx, KindDef, Outcome, Owner, Verdict};

pub static KIND: KindDef = KindDef {
    name: "postgres.settings",
    title: "Settings the API's role inherits",
    description: "role- and database-level settings (pg_db_role_setting, pg_settings.reset_val) that break requests: statement_timeout, lock_timeout, idle_in_transaction_session_timeout below their minimums; names where each is set and the RESET",
    build: |t| {
        let p: Params = crate::check::params(t)?;
        let timeouts = [
            (STATEMENT_TIMEOUT, duration("min_statement_timeout", &p.min_statement_timeout)?),
            (LOCK_TIMEOUT, duration("min_lock_timeout", &p.min_lock_timeout)?),
            (
                IDLE_TIMEOUT,
                duration("min_idle_in_transaction_session_timeout", &p.min_idle_in_transaction_session_timeout)?,
            ),
        ];
        let password_expiry = duration("password_expires_within", &p.password_expires_within)?;
        Ok(Box::new(Settings { timeouts, password_expiry }))
    },
};

const STATEMENT_TIMEOUT: &str = "statement_timeout";
const LOCK_TIMEOUT: &str = "lock_timeout";
const IDLE_TIMEOUT: &str = "idle_in_transaction_session_timeout";
/// Judged by other checks, shown here so that one place lists what the role inherits.
const SHOWN: [&str; 2] = ["default_transaction_read_only", "search_path"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    min_statement_timeout: String,
    min_lock_timeout: String,
    min_idle_in_transaction_session_timeout: String,
    /// A role password (VALID UNTIL) that expires within this is a finding.
    password_expires_within: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            min_statement_timeout: "1s".into(),
            min_lock_timeout: "100ms".into(),
            min_idle_in_transaction_session_timeout: "1s".into(),
            password_expires_within: "14d".into(),
        }
    }
}

/// The role's password lifetime (`pg_roles.rolvaliduntil`, readable by every role),
/// NULL when it has none: PostgreSQL tells a client whose password expired only
/// "password authentication failed" (28P01), so the catalog is where it shows.
const VALID_UNTIL_SQL: &str = "(SELECT json_build_object('until', r.rolvaliduntil::text,
    'seconds_left', extract(epoch FROM r.rolvaliduntil - now())::float8)
  FROM pg_roles r WHERE r.rolname = current_user AND r.rolvaliduntil IS NOT NULL
    AND r.rolvaliduntil <> 'infinity')";

#[derive(Debug, Clone, Deserialize)]
struct ValidUntil {
    until: String,
    seconds_left: f64,
}

struct Settings {
    /// (setting, the least value that does not break requests); 0 (off) never does.
    timeouts: [(&'static str, Duration); 3],
    password_expiry: Duration,
}

impl Check for Settings {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let result = async {
                let session = session(ctx).await?;
                let names: Vec<&str> = self.timeouts.iter().map(|(n, _)| *n).chain(SHOWN).collect();
                let list = names.iter().map(|n| super::shared::postgres::literal(n)).collect::<Vec<_>>().join(", ");
                let sql = format!("SELECT {}, {VALID_UNTIL_SQL}", inherited_sql(&format!("ARRAY[{list}]")));
                let what = "the settings query";
                let row = query_one(&session, what, &sql, &[]).await?;
                let json: Value = get(&row, 0, what)?;
                let inherited: Inherited = serde_json::from_value(json)
                    .map_err(|e| Outcome::problem(format!("unexpected reply to {what}: {e}")))?;
                let valid: Option<Value> = get(&row, 1, what)?;
                let valid: Option<ValidUntil> = valid.and_then(|v| serde_json::from_value(v).ok());
                Ok(self.judge(&inherited, valid.as_ref()))
            };
            result.await.unwrap_or_else(|o| o)
        }
        .boxed()
    }
}

/// What a too-short timeout does to the API.
fn effect(name: &str, value: &str) -> String {
    match name {
        STATEMENT_TIMEOUT => format!("the API's queries that take longer than {value} are cancelled (57014)"),
        LOCK_TIMEOUT => format!("the API's statements give up after waiting {value} for a lock (55P03)"),
        _ => format!("the server closes an API connection whose transaction waits {value} between statements (25P03)"),
    }
}

impl Settings {
    fn judge(&self, inherited: &Inherited, valid: Option<&ValidUntil>) -> Outcome {
        let outcome = self.judge_settings(inherited);
        let Some(v) = valid else { return outcome };
        let role = &inherited.role;
        let left = Duration::from_secs_f64(v.seconds_left.max(0.0));
        let finding = if v.seconds_left <= 0.0 {
            format!(
                "role \"{role}\"'s password expired {} (VALID UNTIL): every login with it fails with 28P01 \
                 (\"password authentication failed\"); this connection did not need it",
                v.until
            )
        } else if left < self.password_expiry {
            format!(
                "role \"{role}\"'s password expires in {} ({}, VALID UNTIL): from then on every login of the API \
                 fails with 28P01 (\"password authentication failed\")",
                human(Duration::from_secs(left.as_secs() / 60 * 60)),
                v.until
            )
        } else {
            return outcome.detail("password_valid_until", v.until.clone());
        };
        let fix = format!("ALTER ROLE \"{}\" VALID UNTIL 'infinity';", role.replace('"', "\"\""));
        let (message, hint) = match outcome.verdict {
            Verdict::Pass => (finding, fix),
            _ => (
                format!("{}; {finding}", outcome.message),
                format!("{} {fix}", outcome.hint.clone().unwrap_or_default()),
            ),
        };
        let mut o = Outcome::problem(message).hint(hint);
        o.details = outcome.details;
        o.detail("password_valid_until", v.until.clone())
    }

    fn judge_settings(&self, inherited: &Inherited) -> Outcome {
        let mut problems: Vec<String> = Vec::new();
        let mut fixes: Vec<String> = Vec::new();
        let mut noted: Vec<String> = Vec::new();
        let mut listed: Vec<Value> = Vec::new();
        for (name, least) in &self.timeouts {
            let levels = inherited.levels_of(name);
            let Some(top) = levels.first() else { continue };
            let effective = inherited.setting(name).and_then(reset_duration);
            let set_by = inherited.set_by(top.level);
            let too_short = |d: Duration| !d.is_zero() && d < *least;
            listed.push(serde_json::json!({
                "name": name, "value": top.value, "set_by": set_by,
                "effective_ms": effective.map(|d| d.as_millis() as u64),
            }));
            match effective {
                Some(d) if too_short(d) => {
                    let shown = human(d);
                    problems.push(format!("{name} = {shown} ({set_by}): {}", effect(name, &shown)));
                    // Resetting one level exposes the next one down: reset down to the
                    // first level whose value is long enough, so that the fix is complete.
                    for at in &levels {
                        let bad = at.level == top.level
                            || pg_duration(&at.value, Duration::from_millis(1)).is_some_and(too_short);
                        if !bad {
                            break;
                        }
                        fixes.push(inherited.reset(at.level, name));
                    }
                }
                _ => noted.push(format!("{name} = {} ({set_by})", top.value)),
            }
        }
        // Settings another check judges: listed, never judged (nor cleared) here.
        let mut elsewhere: Vec<String> = Vec::new();
        for name in SHOWN {
            if let Some(top) = inherited.levels_of(name).first() {
                let set_by = inherited.set_by(top.level);
                let owner = if name == "search_path" { Owner::PostgresSchema } else { Owner::PostgresWritable };
                elsewhere.push(format!("{name} = {} ({set_by}; {owner} judges it)", top.value));
                listed.push(serde_json::json!({"name": name, "value": top.value, "set_by": set_by}));
            }
        }
        let who = format!("role \"{}\" in database \"{}\"", inherited.role, inherited.database);
        let outcome = if !problems.is_empty() {
            let raise: Vec<String> = self
                .timeouts
                .iter()
                .filter(|(n, _)| problems.iter().any(|p| p.starts_with(&format!("{n} "))))
                .map(|(n, least)| format!("{n} ≥ {}", human(*least)))
                .collect();
            Outcome::problem(format!("{who}: {}", problems.join("; "))).hint(format!(
                "{} — new connections of the API get the server default then (or set {} there instead); \
                 restart the API or let its pool reconnect",
                fixes.join(" "),
                raise.join(", ")
            ))
        } else if noted.is_empty() && elsewhere.is_empty() {
            Outcome::pass(format!("no role or database setting for {who}"))
        } else {
            // The pass is about the timeouts alone: what it lists of the rest is another check's to judge.
            let timeouts = if noted.is_empty() {
                format!("{who} inherits no timeout setting")
            } else {
                format!("the timeouts {who} inherits are long enough or off: {}", noted.join("; "))
            };
            let also = if elsewhere.is_empty() {
                String::new()
            } else {
                format!("; also inherited: {}", elsewhere.join("; "))
            };
            Outcome::pass(format!("{timeouts}{also}"))
        };
        let thresholds: serde_json::Map<String, Value> = self
            .timeouts
            .iter()
            .map(|(n, least)| (n.to_string(), Value::from(u64::try_from(least.as_millis()).unwrap_or(u64::MAX))))
            .collect();
        outcome.detail("inherited", listed).detail("min_ms", thresholds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;
    use crate::kinds::shared::role_settings::{RawLevel, Setting};

    fn settings() -> Settings {
        Settings {
            timeouts: [
                (STATEMENT_TIMEOUT, Duration::from_secs(1)),
                (LOCK_TIMEOUT, Duration::from_millis(100)),
                (IDLE_TIMEOUT, Duration::from_secs(1)),
            ],
            password_expiry: Duration::from_secs(14 * 86400),
        }
    }

    fn inherited(levels: &[(bool, bool, &str)], reset: &[(&str, &str)]) -> Inherited {
        Inherited {
            role: "app".into(),
            database: "mockmate".into(),
            settings: reset
                .iter()
                .map(|(name, value)| Setting {
                    name: name.to_string(),
                    reset_val: Some(value.to_string()),
                    unit: Some("ms".into()),
                    boot_val: Some("0".into()),
                })
                .collect(),
            levels: levels
                .iter()
                .map(|(role, database, config)| RawLevel {
                    role: *role,
                    database: *database,
                    config: config.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_role_statement_timeout_below_the_minimum_is_named_with_its_reset() {
        let o = settings()
            .judge_settings(&inherited(&[(true, false, "statement_timeout=20ms")], &[("statement_timeout", "20")]));
        assert_eq!(o.verdict, Verdict::Problem);
        assert_eq!(
            o.message,
            "role \"app\" in database \"mockmate\": statement_timeout = 20ms (ALTER ROLE \"app\"): \
             the API's queries that take longer than 20ms are cancelled (57014)"
        );
        let hint = o.hint.unwrap_or_default();
        assert!(hint.starts_with("ALTER ROLE \"app\" RESET statement_timeout; — new connections"), "{hint}");
        assert!(hint.contains("statement_timeout ≥ 1s"), "{hint}");
    }

    #[test]
    fn resetting_one_level_exposes_the_next_so_the_fix_resets_down_to_a_good_one() {
        // Precedence: role in database, role, database. The role's 5ms would take over
        // from the 10ms; the database's 5s would not be reached.
        let o = settings().judge_settings(&inherited(
            &[(true, true, "lock_timeout=10ms"), (false, true, "lock_timeout=5s"), (true, false, "lock_timeout=5ms")],
            &[("lock_timeout", "10")],
        ));
        let hint = o.hint.unwrap_or_default();
        assert!(
            hint.starts_with(
                "ALTER ROLE \"app\" IN DATABASE \"mockmate\" RESET lock_timeout; ALTER ROLE \"app\" RESET lock_timeout; —"
            ),
            "{hint}"
        );
        assert!(!hint.contains("ALTER DATABASE"), "{hint}");
    }

    #[test]
    fn long_enough_or_off_passes_and_other_findings_are_left_to_their_checks() {
        let o = settings().judge_settings(&inherited(
            &[
                (true, false, "statement_timeout=30s"),
                (false, true, "default_transaction_read_only=on"),
                (false, true, "idle_in_transaction_session_timeout=0"),
            ],
            &[("statement_timeout", "30000"), ("idle_in_transaction_session_timeout", "0")],
        ));
        assert_eq!(o.verdict, Verdict::Pass, "{}", o.message);
        // A pass about the timeouts: the read-only default is listed for postgres.writable, never cleared here.
        assert_eq!(
            o.message,
            "the timeouts role \"app\" in database \"mockmate\" inherits are long enough or off: statement_timeout \
             = 30s (ALTER ROLE \"app\"); idle_in_transaction_session_timeout = 0 (ALTER DATABASE \"mockmate\"); also \
             inherited: default_transaction_read_only = on (ALTER DATABASE \"mockmate\"; postgres.writable judges it)"
        );
        assert!(!o.message.contains("breaks requests"), "{}", o.message);
        let o = settings().judge_settings(&inherited(&[], &[]));
        assert_eq!(o.message, "no role or database setting for role \"app\" in database \"mockmate\"");
    }

    #[test]
    fn a_password_that_expires_soon_is_named_with_its_fix_and_a_distant_one_is_not() {
        let soon = ValidUntil { until: "2026-12-10 00:00:00+00".into(), seconds_left: 3.0 * 86400.0 + 59.0 };
        let o = settings().judge(&inherited(&[], &[]), Some(&soon));
        assert_eq!(o.verdict, Verdict::Problem);
        assert_eq!(
            o.message,
            "role \"app\"'s password expires in 3days (2026-12-10 00:00:00+00, VALID UNTIL): from then on every \
             login of the API fails with 28P01 (\"password authentication failed\")"
        );
        assert_eq!(o.hint.as_deref(), Some("ALTER ROLE \"app\" VALID UNTIL 'infinity';"));
        let far = ValidUntil { until: "2030-01-01 00:00:00+00".into(), seconds_left: 400.0 * 86400.0 };
        assert_eq!(settings().judge(&inherited(&[], &[]), Some(&far)).verdict, Verdict::Pass);
        let gone = ValidUntil { until: "2001-01-01 00:00:00+00".into(), seconds_left: -1.0 };
        assert!(settings().judge(&inherited(&[], &[]), Some(&gone)).message.contains("expired 2001-01-01"));
    }

    #[test]
    fn a_server_wide_timeout_is_named_as_such() {
        let o = settings().judge_settings(&inherited(&[], &[("statement_timeout", "50")]));
        assert!(o.message.contains("statement_timeout = 50ms (the server's configuration)"), "{}", o.message);
        assert!(
            o.hint.unwrap_or_default().starts_with("ALTER SYSTEM RESET statement_timeout; SELECT pg_reload_conf();")
        );
    }
}
