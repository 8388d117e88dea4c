//! Where the API's role finds a table — or why it does not. Shared by
//! `postgres.schema` and `postgres.privileges` (a kind never imports another).
//!
//! "relation does not exist" has three causes with three different fixes, and
//! only one of them is "run the migrations":
//! - the table is in no schema at all (absent → migrations);
//! - it is in a schema the role may use but its `search_path` leaves out
//!   (→ `ALTER ROLE … SET search_path`, or the connection's options);
//! - it is in a schema the role has no `USAGE` on (→ `GRANT USAGE ON SCHEMA`):
//!   PostgreSQL silently skips such schemas when it resolves a name.
//!
//! `pg_class` and `pg_namespace` show every relation whatever the role may use,
//! so the SQL here sees through the role's visibility; `current_schemas(true)` is
//! the path the role's sessions really search (existing schemas it may use).

use super::postgres::quote_ident;
use serde::Deserialize;

use super::postgres::{MIGRATE_HINT, literal};

/// SQL for the oid of the relation named by the text expression `name` that the API
/// resolves: in `schema` (when the manifest names one, and the role may use it),
/// else as `search_path` resolves an unqualified name. NULL when it resolves none.
pub fn resolved_sql(name: &str, schema: Option<&str>) -> String {
    match schema {
        Some(s) => format!(
            "(SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE n.nspname = {} AND c.relname = {name} AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
                AND has_schema_privilege(n.oid, 'USAGE'))",
            literal(s)
        ),
        // to_regclass never raises for an unqualified name: schemas without USAGE
        // are skipped, exactly as for the API's queries.
        None => format!("to_regclass(format('%I', {name}))"),
    }
}

/// SQL for a JSON array of every table-like relation named `name` in any schema:
/// `[{"schema", "usage", "in_path"}]`, for [`place`].
pub fn candidates_sql(name: &str) -> String {
    format!(
        "(SELECT coalesce(json_agg(json_build_object(
            'schema', n.nspname::text,
            'usage', has_schema_privilege(n.oid, 'USAGE'),
            'in_path', n.nspname = ANY (current_schemas(true))) ORDER BY n.nspname), '[]')
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relname = {name} AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
            AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast%')"
    )
}

/// SQL for a JSON object of the role's point of view: [`Scope`].
pub const SCOPE_SQL: &str = "json_build_object(
    'role', current_user::text,
    'database', current_database()::text,
    'search_path', current_setting('search_path'),
    'search_path_source', (SELECT source FROM pg_settings WHERE name = 'search_path'),
    'effective_path', to_json(current_schemas(false)::text[]))";

/// The role's point of view, from [`SCOPE_SQL`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Scope {
    pub role: String,
    pub database: String,
    /// `search_path` as configured (`"$user", public`).
    pub search_path: String,
    /// Where it comes from (`pg_settings.source`: `user`, `database`, `database user`,
    /// `configuration file`, `default`, `client` …).
    #[serde(default)]
    pub search_path_source: Option<String>,
    /// The schemas really searched (existing, with USAGE), without pg_catalog.
    #[serde(default)]
    pub effective_path: Vec<String>,
}

/// One relation of the name, from [`candidates_sql`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Candidate {
    pub schema: String,
    /// The role has USAGE on the schema.
    pub usage: bool,
    /// The schema is on the role's effective search path.
    pub in_path: bool,
}

/// Where a table is, as the API's role sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// The role resolves it (by search_path, or in the manifest's schema).
    Found,
    /// In no schema at all: the migrations have not created it.
    Absent,
    /// In a schema the role has no USAGE on (so PostgreSQL skips that schema).
    NoUsage { schema: String },
    /// In a schema the role may use, which its search_path leaves out.
    OutsidePath { schema: String },
    /// Not in the manifest's `schema`, but in another one.
    OtherSchema { schema: String, expected: String },
}

/// Judges where a table is from whether it resolved and the relations of its name.
/// Several candidates: the one in a schema the configured search_path names comes
/// first (the likeliest intended), then the alphabetical first.
pub fn place(resolved: bool, candidates: &[Candidate], schema: Option<&str>, scope: &Scope) -> Place {
    if resolved {
        return Place::Found;
    }
    if let Some(expected) = schema {
        return match candidates.iter().find(|c| c.schema == expected) {
            Some(c) => Place::NoUsage { schema: c.schema.clone() },
            None => match candidates.first() {
                Some(c) => Place::OtherSchema { schema: c.schema.clone(), expected: expected.to_string() },
                None => Place::Absent,
            },
        };
    }
    let named = configured_path(&scope.search_path, &scope.role);
    let best = candidates.iter().find(|c| named.contains(&c.schema)).or_else(|| candidates.first());
    match best {
        None => Place::Absent,
        Some(c) if !c.usage => Place::NoUsage { schema: c.schema.clone() },
        Some(c) => Place::OutsidePath { schema: c.schema.clone() },
    }
}

impl Place {
    /// What is wrong with `table`, for a message (`None` when found).
    pub fn problem(&self, table: &str, scope: &Scope) -> Option<String> {
        let role = &scope.role;
        Some(match self {
            Place::Found => return None,
            Place::Absent => format!("{table} does not exist in any schema"),
            Place::NoUsage { schema } => {
                format!(
                    "{table} is in schema {schema}, on which role \"{role}\" has no USAGE (the table is invisible to it)"
                )
            }
            Place::OutsidePath { schema } => format!(
                "{table} is in schema {schema}, outside role \"{role}\"'s search_path ({})",
                shown_path(&scope.search_path)
            ),
            Place::OtherSchema { schema, expected } => {
                format!("{table} is not in schema {expected} (the check's `schema`) but in {schema}")
            }
        })
    }

    /// The fix for `table`, for a hint (`None` when found).
    pub fn fix(&self, table: &str, scope: &Scope) -> Option<String> {
        let role = &scope.role;
        Some(match self {
            Place::Found => return None,
            Place::Absent => MIGRATE_HINT.to_string(),
            Place::NoUsage { schema } => {
                let grant = format!("GRANT USAGE ON SCHEMA {} TO \"{role}\";", quote_ident(schema));
                if configured_path(&scope.search_path, role).contains(schema) {
                    grant
                } else {
                    format!("{grant} then add {schema} to its search_path: {}", set_search_path(schema, scope))
                }
            }
            Place::OutsidePath { schema } => format!(
                "{} — or, if the API sets search_path per connection, add {schema} to its connection options",
                set_search_path(schema, scope)
            ),
            Place::OtherSchema { schema, expected } => format!(
                "if the API uses schema {schema}, set schema = \"{schema}\" for this check; \
                 if it uses {expected}, move the table: ALTER TABLE {}.{} SET SCHEMA {};",
                quote_ident(schema),
                quote_ident(table),
                quote_ident(expected)
            ),
        })
    }
}

/// `ALTER ROLE "app" SET search_path = "$user", public, app;` — at the level the
/// current value comes from (`pg_settings.source`), so the fix lands where the
/// cause is; a server-wide or default path is best overridden for the role alone.
pub fn set_search_path(schema: &str, scope: &Scope) -> String {
    let current = scope.search_path.trim();
    let value = if current.is_empty() || current == "\"\"" {
        quote_ident(schema)
    } else {
        format!("{current}, {}", quote_ident(schema))
    };
    let (role, db) = (&scope.role, &scope.database);
    match scope.search_path_source.as_deref() {
        Some("database") => format!("ALTER DATABASE \"{db}\" SET search_path = {value};"),
        Some("database user") => format!("ALTER ROLE \"{role}\" IN DATABASE \"{db}\" SET search_path = {value};"),
        _ => format!("ALTER ROLE \"{role}\" SET search_path = {value};"),
    }
}

/// The schemas a `search_path` setting names, `$user` read as `role`
/// (`"$user", public, "My Schema"` → `[role, public, My Schema]`).
pub fn configured_path(setting: &str, role: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = setting.chars().peekable();
    let push = |name: &mut String, names: &mut Vec<String>| {
        let n = std::mem::take(name);
        if n == "$user" {
            names.push(role.to_string());
        } else if !n.is_empty() {
            names.push(n);
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => push(&mut current, &mut names),
            c if c.is_whitespace() && !quoted => {}
            c if quoted => current.push(c),
            c => current.extend(c.to_lowercase()),
        }
    }
    push(&mut current, &mut names);
    names
}

/// `"$user", public` as a message shows it: `$user, public`, or `empty`.
fn shown_path(setting: &str) -> String {
    let shown = setting.replace('"', "");
    if shown.trim().is_empty() { "empty".to_string() } else { shown }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(path: &str, source: &str) -> Scope {
        Scope {
            role: "app".into(),
            database: "mockmate".into(),
            search_path: path.into(),
            search_path_source: Some(source.into()),
            effective_path: vec!["public".into()],
        }
    }

    fn cand(schema: &str, usage: bool) -> Candidate {
        Candidate { schema: schema.into(), usage, in_path: false }
    }

    #[test]
    fn search_path_settings_parse_like_postgres() {
        assert_eq!(configured_path("\"$user\", public", "app"), ["app", "public"]);
        assert_eq!(configured_path("Public,\"My \"\"S\"\"\" ,  x", "r"), ["public", "My \"S\"", "x"]);
        assert_eq!(configured_path("\"\"", "r"), Vec::<String>::new());
        assert_eq!(configured_path("", "r"), Vec::<String>::new());
    }

    #[test]
    fn a_table_is_absent_invisible_or_outside_the_path() {
        let s = scope("\"$user\", public", "default");
        assert_eq!(place(true, &[], None, &s), Place::Found);
        assert_eq!(place(false, &[], None, &s), Place::Absent);
        assert_eq!(place(false, &[cand("app", true)], None, &s), Place::OutsidePath { schema: "app".into() });
        assert_eq!(place(false, &[cand("app", false)], None, &s), Place::NoUsage { schema: "app".into() });
        // The schema the configured path names wins over the alphabetical first.
        let s = scope("\"$user\", public, zeta", "user");
        assert_eq!(
            place(false, &[cand("alpha", true), cand("zeta", false)], None, &s),
            Place::NoUsage { schema: "zeta".into() }
        );
        // The manifest's schema.
        assert_eq!(place(false, &[cand("app", false)], Some("app"), &s), Place::NoUsage { schema: "app".into() });
        assert_eq!(
            place(false, &[cand("old", true)], Some("app"), &s),
            Place::OtherSchema { schema: "old".into(), expected: "app".into() }
        );
        assert_eq!(place(false, &[], Some("app"), &s), Place::Absent);
    }

    #[test]
    fn only_an_absent_table_is_sent_to_the_migrations() {
        let s = scope("\"$user\", public", "user");
        let places = [
            Place::NoUsage { schema: "app".into() },
            Place::OutsidePath { schema: "app".into() },
            Place::OtherSchema { schema: "old".into(), expected: "app".into() },
        ];
        for p in &places {
            let fix = p.fix("sessions", &s).unwrap_or_default();
            assert!(!fix.contains("migrat"), "{p:?}: {fix}");
        }
        assert_eq!(Place::Absent.fix("sessions", &s).as_deref(), Some(MIGRATE_HINT));
        assert_eq!(Place::Found.fix("sessions", &s), None);
    }

    #[test]
    fn fixes_name_the_statement_at_the_level_the_path_is_set() {
        let outside = Place::OutsidePath { schema: "app".into() };
        let fix = |source: &str| outside.fix("sessions", &scope("\"$user\", public", source)).unwrap_or_default();
        assert!(
            fix("user").starts_with("ALTER ROLE \"app\" SET search_path = \"$user\", public, app;"),
            "{}",
            fix("user")
        );
        assert!(fix("database").starts_with("ALTER DATABASE \"mockmate\" SET search_path = \"$user\", public, app;"));
        assert!(fix("database user").starts_with("ALTER ROLE \"app\" IN DATABASE \"mockmate\" SET search_path"));
        assert!(fix("default").contains("connection options"));
        let s = scope("\"$user\", public", "default");
        assert_eq!(
            outside.problem("sessions", &s).as_deref(),
            Some("sessions is in schema app, outside role \"app\"'s search_path ($user, public)")
        );
        let no_usage = Place::NoUsage { schema: "App".into() };
        assert_eq!(
            no_usage.fix("sessions", &scope("\"$user\", public, \"App\"", "user")).as_deref(),
            Some("GRANT USAGE ON SCHEMA \"App\" TO \"app\";")
        );
        let fix = no_usage.fix("sessions", &s).unwrap_or_default();
        assert!(
            fix.contains(
                "then add App to its search_path: ALTER ROLE \"app\" SET search_path = \"$user\", public, \"App\";"
            ),
            "{fix}"
        );
        assert_eq!(set_search_path("x", &scope("\"\"", "user")), "ALTER ROLE \"app\" SET search_path = x;");
    }
}
