//! Settings a role's sessions inherit (`ALTER ROLE … SET`, `ALTER DATABASE … SET`,
//! `ALTER ROLE … IN DATABASE … SET`, or the server's configuration), where each is
//! set and how to reset it. Shared by `postgres.settings` and `postgres.writable`.
//!
//! Read from `pg_db_role_setting` (where) and `pg_settings.reset_val` (the value a
//! new session of the role gets), never from `current_setting()`: mockmate-diag's
//! own session sets its own timeouts and read-only default, which would hide them.

use std::time::Duration;

use serde::Deserialize;

use super::postgres::literal;

/// SQL for a JSON object describing `names` (SQL text array expression) for the
/// session's role in its database: [`Inherited`].
pub fn inherited_sql(names: &str) -> String {
    format!(
        "json_build_object(
            'role', session_user::text,
            'database', current_database()::text,
            'settings', (SELECT coalesce(json_agg(json_build_object(
                             'name', s.name, 'reset_val', s.reset_val, 'unit', s.unit, 'boot_val', s.boot_val)), '[]')
                         FROM pg_settings s WHERE s.name = ANY ({names})),
            'levels', (SELECT coalesce(json_agg(json_build_object(
                           'role', d.setrole <> 0, 'database', d.setdatabase <> 0, 'config', cfg)), '[]')
                       FROM pg_db_role_setting d, unnest(d.setconfig) cfg
                       WHERE d.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = session_user))
                         AND d.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))))"
    )
}

/// [`inherited_sql`] for one setting named by a literal.
pub fn inherited_one_sql(name: &str) -> String {
    inherited_sql(&format!("ARRAY[{}]", literal(name)))
}

/// What the role's sessions inherit.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Inherited {
    pub role: String,
    pub database: String,
    #[serde(default)]
    pub settings: Vec<Setting>,
    /// Every `pg_db_role_setting` entry for the role (any database), the database
    /// (any role), or both; not only the named settings.
    #[serde(default)]
    pub levels: Vec<RawLevel>,
}

/// One row of `pg_settings` for a named setting.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Setting {
    pub name: String,
    /// The value a new session starts with, in the setting's base unit.
    pub reset_val: Option<String>,
    pub unit: Option<String>,
    pub boot_val: Option<String>,
}

/// One `name=value` of `pg_db_role_setting.setconfig`, and whom it applies to.
#[derive(Debug, Clone, Deserialize)]
pub struct RawLevel {
    /// Set for a role (else for all roles).
    pub role: bool,
    /// Set in a database (else in all databases).
    pub database: bool,
    pub config: String,
}

/// Where a setting comes from, strongest first (PostgreSQL applies them in this
/// order of precedence when a session starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `ALTER ROLE r IN DATABASE d SET`
    RoleInDatabase,
    /// `ALTER ROLE r SET`
    Role,
    /// `ALTER DATABASE d SET`
    Database,
    /// `ALTER ROLE ALL SET`
    AllRoles,
    /// postgresql.conf, `ALTER SYSTEM` or the command line.
    Server,
}

/// A setting as it is set at one level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAt {
    pub level: Level,
    /// The value as written (`20ms`).
    pub value: String,
}

impl Inherited {
    /// Where `name` is set for the role, strongest first; the server's configuration
    /// when no role or database entry sets it but new sessions differ from the default.
    pub fn levels_of(&self, name: &str) -> Vec<SetAt> {
        let mut found: Vec<SetAt> = self
            .levels
            .iter()
            .filter_map(|raw| {
                let (key, value) = raw.config.split_once('=')?;
                (key.trim() == name).then(|| SetAt {
                    level: match (raw.role, raw.database) {
                        (true, true) => Level::RoleInDatabase,
                        (true, false) => Level::Role,
                        (false, true) => Level::Database,
                        (false, false) => Level::AllRoles,
                    },
                    value: value.to_string(),
                })
            })
            .collect();
        found.sort_by_key(|s| s.level);
        if found.is_empty()
            && let Some(s) = self.setting(name)
            && s.reset_val.is_some()
            && s.reset_val != s.boot_val
        {
            let value = format!("{}{}", s.reset_val.clone().unwrap_or_default(), s.unit.clone().unwrap_or_default());
            found.push(SetAt { level: Level::Server, value });
        }
        found
    }

    pub fn setting(&self, name: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| s.name == name)
    }

    /// `ALTER ROLE "app"`, `ALTER DATABASE "mockmate"` …: who set it.
    pub fn set_by(&self, level: Level) -> String {
        let (role, db) = (&self.role, &self.database);
        match level {
            Level::RoleInDatabase => format!("ALTER ROLE \"{role}\" IN DATABASE \"{db}\""),
            Level::Role => format!("ALTER ROLE \"{role}\""),
            Level::Database => format!("ALTER DATABASE \"{db}\""),
            Level::AllRoles => "ALTER ROLE ALL".to_string(),
            Level::Server => "the server's configuration".to_string(),
        }
    }

    /// The statement that removes `name` at `level`.
    pub fn reset(&self, level: Level, name: &str) -> String {
        match level {
            Level::Server => {
                format!("ALTER SYSTEM RESET {name}; SELECT pg_reload_conf(); (or remove it from postgresql.conf)")
            }
            other => format!("{} RESET {name};", self.set_by(other)),
        }
    }
}

/// A time setting's value in milliseconds when its unit is ms: `reset_val` `20`
/// with unit `ms` → 20 ms. `None` for another unit or an unreadable value.
pub fn reset_duration(setting: &Setting) -> Option<Duration> {
    let value: u64 = setting.reset_val.as_deref()?.trim().parse().ok()?;
    match setting.unit.as_deref() {
        Some("ms") => Some(Duration::from_millis(value)),
        Some("s") => Some(Duration::from_secs(value)),
        Some("min") => Some(Duration::from_secs(value * 60)),
        _ => None,
    }
}

/// A time as written in `SET`/`ALTER … SET` (`20ms`, `5s`, `1min`, `'250'`), in
/// PostgreSQL's units; a bare number is in `default_unit`.
pub fn pg_duration(text: &str, default_unit: Duration) -> Option<Duration> {
    let text = text.trim().trim_matches('\'').trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = match unit.trim() {
        "" => default_unit,
        "us" => Duration::from_micros(1),
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        "d" => Duration::from_secs(86_400),
        _ => return None,
    };
    Some(unit.mul_f64(number))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inherited(levels: &[(bool, bool, &str)], settings: Vec<Setting>) -> Inherited {
        Inherited {
            role: "app".into(),
            database: "mockmate".into(),
            settings,
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
    fn levels_come_strongest_first_and_name_their_statements() {
        let i = inherited(
            &[
                (false, true, "statement_timeout=10ms"),
                (true, false, "statement_timeout=20ms"),
                (true, true, "lock_timeout=1s"),
            ],
            vec![],
        );
        let levels = i.levels_of("statement_timeout");
        assert_eq!(levels.iter().map(|s| s.level).collect::<Vec<_>>(), [Level::Role, Level::Database]);
        assert_eq!(levels[0].value, "20ms");
        assert_eq!(i.reset(Level::Role, "statement_timeout"), "ALTER ROLE \"app\" RESET statement_timeout;");
        assert_eq!(
            i.reset(Level::RoleInDatabase, "lock_timeout"),
            "ALTER ROLE \"app\" IN DATABASE \"mockmate\" RESET lock_timeout;"
        );
        assert_eq!(i.reset(Level::Database, "x"), "ALTER DATABASE \"mockmate\" RESET x;");
        assert_eq!(i.set_by(Level::AllRoles), "ALTER ROLE ALL");
    }

    #[test]
    fn a_value_set_nowhere_in_the_catalog_but_not_the_default_comes_from_the_server() {
        let s = |reset: &str| Setting {
            name: "statement_timeout".into(),
            reset_val: Some(reset.into()),
            unit: Some("ms".into()),
            boot_val: Some("0".into()),
        };
        let i = inherited(&[], vec![s("20")]);
        assert_eq!(i.levels_of("statement_timeout"), [SetAt { level: Level::Server, value: "20ms".into() }]);
        assert!(inherited(&[], vec![s("0")]).levels_of("statement_timeout").is_empty());
        assert_eq!(reset_duration(&s("20")), Some(Duration::from_millis(20)));
    }

    #[test]
    fn durations_read_like_postgres() {
        let ms = Duration::from_millis(1);
        assert_eq!(pg_duration("20ms", ms), Some(Duration::from_millis(20)));
        assert_eq!(pg_duration("'250'", ms), Some(Duration::from_millis(250)));
        assert_eq!(pg_duration("1.5s", ms), Some(Duration::from_millis(1500)));
        assert_eq!(pg_duration("2min", ms), Some(Duration::from_secs(120)));
        assert_eq!(pg_duration("soon", ms), None);
    }
}
