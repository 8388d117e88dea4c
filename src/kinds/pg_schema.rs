//! `postgres.schema`: the tables, columns and foreign keys session creation relies on
//! exist where the API's role finds them (runbook: "relation 'sessions' does not
//! exist" → run the migrations — but only when the table really is absent).
//!
//! One query over `pg_catalog` — not `information_schema`, which hides the objects
//! the role has no privilege on and would report them as missing. A table the role
//! cannot find is told apart from an absent one (see `shared::visibility`): in a schema
//! outside its search_path, or in one it has no USAGE on, the fix is not the
//! migrations.

use std::collections::{BTreeMap, BTreeSet};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;
use tokio_postgres::types::Type;

use super::shared::postgres::{MIGRATE_HINT, SchemaParam, get, plural, query_one, session};
use super::shared::visibility::{Candidate, Place, SCOPE_SQL, Scope, candidates_sql, ident, place, resolved_sql};
use crate::check::{Check, Ctx, KindDef, Outcome, Premise};

pub static KIND: KindDef = KindDef {
    name: "postgres.schema",
    title: "Database schema",
    description: "the manifest's tables, columns and foreign keys exist where the role finds them (pg_catalog): absent, outside search_path or without schema USAGE are told apart; unindexed foreign keys are reported",
    build: |t| {
        let params: Params = crate::check::params(t)?;
        let fks = params.foreign_keys.iter().map(|s| ForeignKey::parse(s)).collect::<Result<Vec<_>, _>>()?;
        if params.tables.is_empty() && fks.is_empty() {
            return Err("`tables`: name at least one table (or a foreign key)".into());
        }
        Ok(Box::new(Schema { schema: params.schema, tables: params.tables, fks }))
    },
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    /// Where the tables live; default: wherever `search_path` finds them, like the app.
    schema: SchemaParam,
    /// Table → the columns it must have.
    tables: BTreeMap<String, Vec<String>>,
    /// `"sessions.user_id -> users.id"`.
    foreign_keys: Vec<String>,
}

impl Default for Params {
    fn default() -> Self {
        let cols = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Params {
            schema: SchemaParam::default(),
            tables: BTreeMap::from([
                (
                    "users".to_string(),
                    cols(&[
                        "id",
                        "email",
                        "first_name",
                        "last_name",
                        "credits",
                        "is_active",
                        "is_verified",
                        "created_at",
                    ]),
                ),
                (
                    "sessions".to_string(),
                    cols(&[
                        "id",
                        "user_id",
                        "job_title",
                        "difficulty",
                        "duration",
                        "session_type",
                        "status",
                        "created_at",
                    ]),
                ),
            ]),
            foreign_keys: vec!["sessions.user_id -> users.id".to_string()],
        }
    }
}

/// A single-column foreign key `table.column -> ref_table.ref_column`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ForeignKey {
    table: String,
    column: String,
    ref_table: String,
    ref_column: String,
}

impl ForeignKey {
    fn parse(text: &str) -> Result<ForeignKey, String> {
        let bad = || format!("`foreign_keys`: \"{text}\" is not like \"sessions.user_id -> users.id\"");
        let (from, to) = text.split_once("->").or_else(|| text.split_once('→')).ok_or_else(bad)?;
        let pair = |s: &str| {
            let (t, c) = s.trim().split_once('.').ok_or_else(bad)?;
            let ok = |x: &str| !x.is_empty() && !x.contains(char::is_whitespace) && !x.contains('.');
            if ok(t) && ok(c) { Ok((t.to_string(), c.to_string())) } else { Err(bad()) }
        };
        let ((table, column), (ref_table, ref_column)) = (pair(from)?, pair(to)?);
        Ok(ForeignKey { table, column, ref_table, ref_column })
    }
}

impl std::fmt::Display for ForeignKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{} → {}.{}", self.table, self.column, self.ref_table, self.ref_column)
    }
}

struct Schema {
    schema: SchemaParam,
    tables: BTreeMap<String, Vec<String>>,
    fks: Vec<ForeignKey>,
}

/// For each table name in `$1`: whether it resolves, its columns, and its foreign keys
/// (columns, referenced table and columns, whether an index leads with the columns);
/// for one that does not, the relations of that name in every schema. With the
/// role's point of view (search_path and where it is set).
fn sql(schema: Option<&str>) -> String {
    format!(
        "SELECT json_build_object('scope', {SCOPE_SQL}, 'tables', coalesce(json_agg(json_build_object(
            'name', t.name,
            'found', c.oid IS NOT NULL,
            'candidates', CASE WHEN c.oid IS NULL THEN {candidates} ELSE '[]'::json END,
            'columns', (SELECT coalesce(json_agg(a.attname::text ORDER BY a.attnum), '[]')
                        FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
            'fks', (SELECT coalesce(json_agg(json_build_object(
                        'name', con.conname::text,
                        'ref', con.confrelid::regclass::text,
                        'columns', (SELECT json_agg(a.attname::text ORDER BY k.ord)
                                    FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
                                    JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum),
                        'ref_table', (SELECT r.relname::text FROM pg_class r WHERE r.oid = con.confrelid),
                        'ref_columns', (SELECT json_agg(a.attname::text ORDER BY k.ord)
                                        FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
                                        JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum),
                        'indexed', EXISTS (
                            SELECT 1 FROM pg_index i
                            WHERE i.indrelid = con.conrelid
                              AND (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality(con.conkey)] @> con.conkey
                              AND (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality(con.conkey)] <@ con.conkey))), '[]')
                    FROM pg_constraint con WHERE con.conrelid = c.oid AND con.contype = 'f')
         ) ORDER BY t.ord), '[]'))
         FROM unnest($1::text[]) WITH ORDINALITY AS t(name, ord)
         LEFT JOIN pg_class c ON c.oid = {resolved}",
        candidates = candidates_sql("t.name"),
        resolved = resolved_sql("t.name", schema),
    )
}

#[derive(Debug, Deserialize)]
struct Reply {
    scope: Scope,
    tables: Vec<Found>,
}

#[derive(Debug, Deserialize)]
struct Found {
    name: String,
    found: bool,
    #[serde(default)]
    candidates: Vec<Candidate>,
    #[serde(default)]
    columns: Vec<String>,
    #[serde(default)]
    fks: Vec<FoundFk>,
}

#[derive(Debug, Deserialize)]
struct FoundFk {
    /// The constraint's name, kept as it is in fixes.
    #[serde(default)]
    name: String,
    /// The referenced table as the role would write it (`legacy_users`, `old.users`).
    #[serde(default)]
    r#ref: Option<String>,
    #[serde(default)]
    columns: Vec<String>,
    ref_table: Option<String>,
    #[serde(default)]
    ref_columns: Vec<String>,
    indexed: bool,
}

impl Check for Schema {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let result = async {
                let session = session(ctx).await?;
                let mut names: BTreeSet<String> = self.tables.keys().cloned().collect();
                names.extend(self.fks.iter().flat_map(|fk| [fk.table.clone(), fk.ref_table.clone()]));
                let names: Vec<String> = names.into_iter().collect();
                let row =
                    query_one(&session, "the catalog query", &sql(self.schema.get()), &[(&names, Type::TEXT_ARRAY)])
                        .await?;
                let json: Value = get(&row, 0, "the catalog query")?;
                let reply: Reply = serde_json::from_value(json)
                    .map_err(|e| Outcome::problem(format!("unexpected reply to the catalog query: {e}")))?;
                Ok(self.judge(&reply.tables, &reply.scope))
            };
            result.await.unwrap_or_else(|o| o)
        }
        .boxed()
    }
}

impl Schema {
    fn judge(&self, found: &[Found], scope: &Scope) -> Outcome {
        let by_name: BTreeMap<&str, &Found> = found.iter().filter(|f| f.found).map(|f| (f.name.as_str(), f)).collect();
        // Where each table the role cannot find is (absent, or invisible to the role).
        let where_is = |table: &str| {
            let f = found.iter().find(|f| f.name == table);
            place(false, f.map(|f| f.candidates.as_slice()).unwrap_or_default(), self.schema.get(), scope)
        };
        let mut missing_tables = Vec::new();
        let mut invisible: Vec<(String, Place)> = Vec::new();
        let mut missing_columns = Vec::new();
        let mut column_count = 0;
        let mut not_found = |table: &String, missing_tables: &mut Vec<String>| match where_is(table) {
            Place::Absent | Place::Found => {
                if !missing_tables.contains(table) {
                    missing_tables.push(table.clone());
                }
            }
            other => {
                if !invisible.iter().any(|(t, _)| t == table) {
                    invisible.push((table.clone(), other));
                }
            }
        };
        for (table, columns) in &self.tables {
            match by_name.get(table.as_str()) {
                None => not_found(table, &mut missing_tables),
                Some(f) => {
                    for c in columns {
                        if f.columns.iter().any(|x| x == c) {
                            column_count += 1;
                        } else {
                            missing_columns.push(format!("{table}.{c}"));
                        }
                    }
                }
            }
        }
        // A foreign key of a missing table is implied by the table: not repeated.
        let mut missing_fks = Vec::new();
        // A key on the right columns that references another table: every insert for a
        // user missing there fails with 23503, whatever the users table holds.
        let mut misdirected: Vec<(&ForeignKey, &FoundFk)> = Vec::new();
        let mut unindexed = Vec::new();
        for fk in &self.fks {
            let Some(f) = by_name.get(fk.table.as_str()) else {
                not_found(&fk.table, &mut missing_tables);
                continue;
            };
            let matching = f.fks.iter().find(|x| {
                x.columns == [fk.column.as_str()]
                    && x.ref_table.as_deref() == Some(fk.ref_table.as_str())
                    && x.ref_columns == [fk.ref_column.as_str()]
            });
            match matching {
                Some(x) if !x.indexed => unindexed.push(format!("{}.{}", fk.table, fk.column)),
                Some(_) => {}
                None => match f.fks.iter().find(|x| x.columns == [fk.column.as_str()]) {
                    Some(other) => misdirected.push((fk, other)),
                    None => missing_fks.push(fk.to_string()),
                },
            }
        }
        let mut parts = Vec::new();
        if !missing_tables.is_empty() {
            parts.push(format!(
                "missing {}: {}",
                if missing_tables.len() == 1 { "table" } else { "tables" },
                missing_tables.join(", ")
            ));
        }
        parts.extend(invisible.iter().filter_map(|(t, p)| p.problem(t, scope)));
        if !missing_columns.is_empty() {
            parts.push(format!(
                "missing {}: {}",
                if missing_columns.len() == 1 { "column" } else { "columns" },
                missing_columns.join(", ")
            ));
        }
        if !missing_fks.is_empty() {
            parts.push(format!(
                "missing foreign {}: {}",
                if missing_fks.len() == 1 { "key" } else { "keys" },
                missing_fks.join(", ")
            ));
        }
        for (fk, found) in &misdirected {
            let target = found.r#ref.clone().or(found.ref_table.clone()).unwrap_or_else(|| "?".into());
            parts.push(format!(
                "foreign key {} on {}.{} references {}({}), not {}.{}: every session insert for a user missing \
                 from {target} fails with 23503 (INVALID_USER_REFERENCE)",
                found.name,
                fk.table,
                fk.column,
                target,
                found.ref_columns.join(", "),
                fk.ref_table,
                fk.ref_column
            ));
        }
        let outcome = if parts.is_empty() {
            let mut message = format!(
                "{}, {} and {} present",
                plural(self.tables.len(), "table", "tables"),
                plural(column_count, "column", "columns"),
                plural(self.fks.len(), "foreign key", "foreign keys")
            );
            if !unindexed.is_empty() {
                message.push_str(&format!(" (no index on {})", unindexed.join(", ")));
            }
            Outcome::pass(message)
        } else {
            // The migrations only for what is absent; a table the role cannot see has
            // its own fix, and never the migrations.
            let mut fixes: Vec<String> = Vec::new();
            if !missing_tables.is_empty() || !missing_columns.is_empty() || !missing_fks.is_empty() {
                fixes.push(MIGRATE_HINT.to_string());
            }
            for (table, p) in &invisible {
                if let Some(fix) = p.fix(table, scope).filter(|f| !fixes.contains(f)) {
                    fixes.push(fix);
                }
            }
            for (fk, found) in &misdirected {
                let name = ident(&found.name);
                fixes.push(format!(
                    "ALTER TABLE {} DROP CONSTRAINT {name}, ADD CONSTRAINT {name} FOREIGN KEY ({}) REFERENCES {} ({});",
                    ident(&fk.table),
                    ident(&fk.column),
                    ident(&fk.ref_table),
                    ident(&fk.ref_column)
                ));
            }
            Outcome::problem(parts.join("; ")).hint(fixes.join("; "))
        };
        // This check owns every table the API cannot use as it is: the others'
        // "relation does not exist" defer to it.
        let mut unusable: Vec<&String> = missing_tables.iter().chain(invisible.iter().map(|(t, _)| t)).collect();
        unusable.extend(self.tables.keys().filter(|t| missing_columns.iter().any(|c| c.starts_with(&format!("{t}.")))));
        unusable.extend(misdirected.iter().map(|(fk, _)| &fk.table));
        let outcome = unusable.into_iter().fold(outcome, |o, t| o.reports(Premise::Table(t.clone())));
        let invisible_detail: Vec<Value> = invisible
            .iter()
            .map(|(table, p)| {
                let (schema, reason) = match p {
                    Place::NoUsage { schema } => (schema, "no_schema_usage"),
                    Place::OutsidePath { schema } => (schema, "outside_search_path"),
                    Place::OtherSchema { schema, .. } => (schema, "other_schema"),
                    Place::Absent | Place::Found => (table, "absent"),
                };
                serde_json::json!({"table": table, "schema": schema, "reason": reason})
            })
            .collect();
        outcome
            .detail("role", scope.role.clone())
            .detail("search_path", scope.search_path.clone())
            .detail("effective_search_path", scope.effective_path.clone())
            .detail("invisible_tables", invisible_detail)
            .detail("missing_tables", missing_tables)
            .detail("missing_columns", missing_columns)
            .detail("missing_foreign_keys", missing_fks)
            .detail(
                "misdirected_foreign_keys",
                misdirected
                    .iter()
                    .map(|(fk, f)| serde_json::json!({"constraint": f.name, "column": format!("{}.{}", fk.table, fk.column), "references": f.r#ref}))
                    .collect::<Vec<_>>(),
            )
            .detail("unindexed_foreign_keys", unindexed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_keys_parse_or_name_the_field() {
        let fk = ForeignKey::parse("sessions.user_id -> users.id").unwrap();
        assert_eq!(fk.to_string(), "sessions.user_id → users.id");
        assert_eq!(ForeignKey::parse("sessions.user_id→users.id"), Ok(fk));
        for bad in ["sessions.user_id", "sessions -> users.id", "a.b -> c.", "a b.c -> d.e"] {
            assert!(ForeignKey::parse(bad).unwrap_err().starts_with("`foreign_keys`:"), "{bad}");
        }
    }

    fn found(name: &str, columns: &[&str], fks: Vec<FoundFk>) -> Found {
        Found {
            name: name.into(),
            found: true,
            candidates: vec![],
            columns: columns.iter().map(|s| s.to_string()).collect(),
            fks,
        }
    }

    fn elsewhere(name: &str, schema: &str, usage: bool) -> Found {
        Found {
            name: name.into(),
            found: false,
            candidates: vec![Candidate { schema: schema.into(), usage, in_path: false }],
            columns: vec![],
            fks: vec![],
        }
    }

    fn scope() -> Scope {
        Scope {
            role: "app".into(),
            database: "mockmate".into(),
            search_path: "\"$user\", public".into(),
            search_path_source: Some("user".into()),
            effective_path: vec!["public".into()],
        }
    }

    fn schema() -> Schema {
        let p = Params::default();
        Schema {
            schema: p.schema,
            tables: p.tables,
            fks: p.foreign_keys.iter().map(|f| ForeignKey::parse(f).unwrap()).collect(),
        }
    }

    const USERS: [&str; 8] =
        ["id", "email", "first_name", "last_name", "credits", "is_active", "is_verified", "created_at"];

    fn fk(indexed: bool) -> FoundFk {
        FoundFk {
            name: "sessions_user_id_fkey".into(),
            r#ref: Some("users".into()),
            columns: vec!["user_id".into()],
            ref_table: Some("users".into()),
            ref_columns: vec!["id".into()],
            indexed,
        }
    }

    #[test]
    fn message_names_every_missing_thing() {
        let s = schema();
        let users = USERS;
        let sessions = ["id", "user_id", "job_title", "difficulty", "duration", "session_type", "status", "created_at"];
        let o = s.judge(&[found("sessions", &sessions, vec![fk(false)]), found("users", &users, vec![])], &scope());
        assert_eq!(o.message, "2 tables, 16 columns and 1 foreign key present (no index on sessions.user_id)");
        let o = s.judge(&[found("users", &users[..5], vec![])], &scope());
        assert_eq!(
            o.message,
            "missing table: sessions; missing columns: users.is_active, users.is_verified, users.created_at"
        );
        assert_eq!(o.hint.as_deref(), Some(MIGRATE_HINT));
        assert_eq!(o.causes.reports, [Premise::Table("sessions".into()), Premise::Table("users".into())]);
        let o = s.judge(&[found("sessions", &sessions, vec![]), found("users", &users, vec![])], &scope());
        assert_eq!(o.message, "missing foreign key: sessions.user_id → users.id");
    }

    #[test]
    fn a_key_that_references_another_table_is_named_with_its_target_not_sent_to_the_migrations() {
        let s = schema();
        let sessions = ["id", "user_id", "job_title", "difficulty", "duration", "session_type", "status", "created_at"];
        let legacy = FoundFk { r#ref: Some("legacy_users".into()), ref_table: Some("legacy_users".into()), ..fk(true) };
        let o = s.judge(&[found("sessions", &sessions, vec![legacy]), found("users", &USERS, vec![])], &scope());
        assert_eq!(
            o.message,
            "foreign key sessions_user_id_fkey on sessions.user_id references legacy_users(id), not users.id: every \
             session insert for a user missing from legacy_users fails with 23503 (INVALID_USER_REFERENCE)"
        );
        assert_eq!(
            o.hint.as_deref(),
            Some(
                "ALTER TABLE sessions DROP CONSTRAINT sessions_user_id_fkey, ADD CONSTRAINT sessions_user_id_fkey \
                 FOREIGN KEY (user_id) REFERENCES users (id);"
            )
        );
        assert_eq!(o.causes.reports, [Premise::Table("sessions".into())]);
        assert_eq!(o.details["misdirected_foreign_keys"][0]["references"], "legacy_users");
    }

    #[test]
    fn a_table_the_role_cannot_see_is_not_sent_to_the_migrations() {
        let s = schema();
        let o = s.judge(&[elsewhere("sessions", "app", true), found("users", &USERS, vec![])], &scope());
        assert_eq!(o.message, "sessions is in schema app, outside role \"app\"'s search_path ($user, public)");
        let hint = o.hint.clone().unwrap_or_default();
        assert!(hint.starts_with("ALTER ROLE \"app\" SET search_path = \"$user\", public, app;"), "{hint}");
        assert!(!hint.contains("migrat"), "{hint}");
        assert_eq!(o.causes.reports, [Premise::Table("sessions".into())]);
        assert_eq!(o.details["invisible_tables"][0]["reason"], "outside_search_path");

        let o = s.judge(&[elsewhere("sessions", "app", false), elsewhere("users", "app", false)], &scope());
        assert_eq!(
            o.message,
            "sessions is in schema app, on which role \"app\" has no USAGE (the table is invisible to it); \
             users is in schema app, on which role \"app\" has no USAGE (the table is invisible to it)"
        );
        let hint = o.hint.unwrap_or_default();
        assert!(hint.starts_with("GRANT USAGE ON SCHEMA app TO \"app\";"), "{hint}");
        assert!(!hint.contains("migrat"), "{hint}");
    }
}
