//! `postgres.schema`: the tables, columns and foreign keys session creation relies on
//! exist where the API's role finds them (runbook: "relation 'sessions' does not
//! exist" → run the migrations — but only when the table really is absent).
//!
//! The contract is what the API touches: the columns the session route reads
//! and inserts and those the runbook's `INSERT INTO users …` fills are required;
//! other columns a full migration creates (`created_at`, `status`) are expected,
//! and their absence is said in a pass, never a failure. A NOT NULL column with
//! no default that the route's insert leaves out fails every session creation:
//! that is a failure (`postgres.session_insert`'s dry run proves it).
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

use super::shared::postgres::{MIGRATE_HINT, SchemaParam, get, hint_name, plural, query_one, quote_ident, session};
use super::shared::visibility::{Candidate, Place, SCOPE_SQL, Scope, candidates_sql, place, resolved_sql};
use crate::check::{Check, Ctx, KindDef, Outcome, Premise};

pub static KIND: KindDef = KindDef {
    name: "postgres.schema",
    title: "Database schema",
    description: "the manifest's tables, columns and foreign keys exist where the role finds them (pg_catalog): absent, outside search_path or without schema USAGE are told apart; unindexed foreign keys are reported",
    build: |t| Ok(Box::new(Schema::new(crate::check::params(t)?)?)),
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    /// Where the tables live; default: wherever `search_path` finds them, like the app.
    schema: SchemaParam,
    /// Table → the columns it must have: what the API and the runbook touch.
    tables: BTreeMap<String, Vec<String>>,
    /// Table → columns a full migration creates that the API does not need:
    /// their absence is said, never a failure (list one in `tables` to require it).
    expected: BTreeMap<String, Vec<String>>,
    /// Table → the columns the API's INSERT fills: any other NOT NULL column
    /// without a default makes the insert fail.
    inserts: BTreeMap<String, Vec<String>>,
    /// `"sessions.user_id -> users.id"`.
    foreign_keys: Vec<String>,
}

fn cols(c: &[&str]) -> Vec<String> {
    c.iter().map(|s| s.to_string()).collect()
}

/// The route's insert: `INSERT INTO sessions (user_id, job_title, difficulty,
/// duration, session_type) … RETURNING id` (see `postgres.session_insert`).
const SESSION_INSERT: [&str; 5] = ["user_id", "job_title", "difficulty", "duration", "session_type"];

/// The runbook's `INSERT INTO users (…)` (the fix for "no users in production").
const RUNBOOK_USER_INSERT: [&str; 7] =
    ["id", "email", "first_name", "last_name", "credits", "is_active", "is_verified"];

impl Default for Params {
    fn default() -> Self {
        let mut sessions = cols(&["id"]);
        sessions.extend(cols(&SESSION_INSERT));
        Params {
            schema: SchemaParam::default(),
            tables: BTreeMap::from([
                ("users".to_string(), cols(&RUNBOOK_USER_INSERT)),
                ("sessions".to_string(), sessions),
            ]),
            expected: BTreeMap::from([
                ("users".to_string(), cols(&["created_at"])),
                ("sessions".to_string(), cols(&["status", "created_at"])),
            ]),
            inserts: BTreeMap::from([("sessions".to_string(), cols(&SESSION_INSERT))]),
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
    expected: BTreeMap<String, Vec<String>>,
    inserts: BTreeMap<String, Vec<String>>,
    fks: Vec<ForeignKey>,
}

impl Schema {
    fn new(params: Params) -> Result<Schema, String> {
        let fks = params.foreign_keys.iter().map(|s| ForeignKey::parse(s)).collect::<Result<Vec<_>, _>>()?;
        if params.tables.is_empty() && fks.is_empty() {
            return Err("`tables`: name at least one table (or a foreign key)".into());
        }
        // A column listed in both is required: `tables` promotes it.
        let expected = params
            .expected
            .into_iter()
            .map(|(t, cs)| {
                let required = params.tables.get(&t).cloned().unwrap_or_default();
                let cs: Vec<String> = cs.into_iter().filter(|c| !required.contains(c)).collect();
                (t, cs)
            })
            .collect();
        Ok(Schema { schema: params.schema, tables: params.tables, expected, inserts: params.inserts, fks })
    }
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
            'no_default', (SELECT coalesce(json_agg(a.attname::text ORDER BY a.attnum), '[]')
                        FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                          AND a.attnotnull AND NOT a.atthasdef
                          AND coalesce(to_jsonb(a) ->> 'attidentity', '') = ''
                          AND coalesce(to_jsonb(a) ->> 'attgenerated', '') = ''),
            'insert_triggers', (SELECT count(*) FROM pg_trigger tg WHERE tg.tgrelid = c.oid AND NOT tg.tgisinternal
                        AND tg.tgenabled <> 'D' AND (tg.tgtype & 7) = 7),
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
    /// NOT NULL columns without a default (nor identity, nor generated).
    #[serde(default)]
    no_default: Vec<String>,
    /// Enabled BEFORE INSERT row triggers (one may fill such a column).
    #[serde(default)]
    insert_triggers: u32,
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
                names.extend(self.expected.keys().cloned());
                names.extend(self.inserts.keys().cloned());
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
        // What a full migration creates but the API does not need: said, never failed.
        let mut absent_expected = Vec::new();
        for (table, columns) in &self.expected {
            match by_name.get(table.as_str()) {
                Some(f) => {
                    for c in columns {
                        if f.columns.iter().any(|x| x == c) {
                            column_count += 1;
                        } else {
                            absent_expected.push(format!("{table}.{c}"));
                        }
                    }
                }
                None if !self.tables.contains_key(table) => absent_expected.push(format!("{table} (table)")),
                None => {}
            }
        }
        // NOT NULL without a default, left out of the API's insert: every insert fails,
        // unless a BEFORE INSERT trigger fills it (then the dry run tells).
        let mut unfilled = Vec::new();
        let mut maybe_filled = Vec::new();
        for (table, filled) in &self.inserts {
            let Some(f) = by_name.get(table.as_str()) else { continue };
            for c in f.no_default.iter().filter(|c| !filled.contains(c)) {
                let column = format!("{table}.{c}");
                if f.insert_triggers > 0 { maybe_filled.push(column) } else { unfilled.push(column) }
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
        if !unfilled.is_empty() {
            parts.push(format!(
                "{} NOT NULL with no default, and the API's insert does not fill {}: every session creation \
                 fails (23502)",
                unfilled.join(", "),
                if unfilled.len() == 1 { "it" } else { "them" }
            ));
        }
        // What the pass (or the failure) adds without failing on it.
        let mut remarks = Vec::new();
        if !unindexed.is_empty() {
            remarks.push(format!("no index on {}", unindexed.join(", ")));
        }
        if !absent_expected.is_empty() {
            remarks.push(format!("not present, and not used by the API: {}", absent_expected.join(", ")));
        }
        if !maybe_filled.is_empty() {
            remarks.push(format!(
                "{} NOT NULL with no default, left out of the API's insert: a BEFORE INSERT trigger may fill it \
                 (postgres.session_insert's dry run tells)",
                maybe_filled.join(", ")
            ));
        }
        let outcome = if parts.is_empty() {
            let tables: BTreeSet<&String> = self.tables.keys().chain(self.expected.keys()).collect();
            let mut message = format!(
                "{}, {} and {} present",
                plural(tables.len(), "table", "tables"),
                plural(column_count, "column", "columns"),
                plural(self.fks.len(), "foreign key", "foreign keys")
            );
            if !remarks.is_empty() {
                message.push_str(&format!(" ({})", remarks.join("; ")));
            }
            Outcome::pass(message)
        } else {
            // The migrations only for what is absent; a table the role cannot see has
            // its own fix, and never the migrations.
            let mut fixes: Vec<String> = Vec::new();
            if !missing_tables.is_empty() || !missing_columns.is_empty() || !missing_fks.is_empty() {
                fixes.push(MIGRATE_HINT.to_string());
            }
            for column in &unfilled {
                let (table, c) = column.rsplit_once('.').unwrap_or((column, ""));
                fixes.push(format!(
                    "a migration ran ahead of the API: allow NULL (ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL;), \
                     give the column a DEFAULT, or deploy the API version that fills it",
                    hint_name(table),
                    quote_ident(c)
                ));
            }
            for (table, p) in &invisible {
                if let Some(fix) = p.fix(table, scope).filter(|f| !fixes.contains(f)) {
                    fixes.push(fix);
                }
            }
            for (fk, found) in &misdirected {
                let name = quote_ident(&found.name);
                fixes.push(format!(
                    "ALTER TABLE {} DROP CONSTRAINT {name}, ADD CONSTRAINT {name} FOREIGN KEY ({}) REFERENCES {} ({});",
                    hint_name(&fk.table),
                    quote_ident(&fk.column),
                    hint_name(&fk.ref_table),
                    quote_ident(&fk.ref_column)
                ));
            }
            Outcome::problem(parts.join("; ")).hint(fixes.join("; "))
        };
        // This check owns every table the API cannot use as it is: the others'
        // "relation does not exist" defer to it.
        let mut unusable: Vec<&String> = missing_tables.iter().chain(invisible.iter().map(|(t, _)| t)).collect();
        unusable.extend(
            self.tables
                .keys()
                .filter(|t| missing_columns.iter().chain(&unfilled).any(|c| c.starts_with(&format!("{t}.")))),
        );
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
            .detail("absent_expected_columns", absent_expected)
            .detail("unfilled_not_null_columns", unfilled)
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
    use crate::check::Verdict;

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
            no_default: vec![],
            insert_triggers: 0,
            fks,
        }
    }

    fn elsewhere(name: &str, schema: &str, usage: bool) -> Found {
        Found {
            name: name.into(),
            found: false,
            candidates: vec![Candidate { schema: schema.into(), usage, in_path: false }],
            columns: vec![],
            no_default: vec![],
            insert_triggers: 0,
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
        Schema::new(Params::default()).expect("the default contract")
    }

    const USERS: [&str; 8] =
        ["id", "email", "first_name", "last_name", "credits", "is_active", "is_verified", "created_at"];
    const SESSIONS: [&str; 8] =
        ["id", "user_id", "job_title", "difficulty", "duration", "session_type", "status", "created_at"];

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
        let o = s.judge(&[found("sessions", &SESSIONS, vec![fk(false)]), found("users", &USERS, vec![])], &scope());
        assert_eq!(o.message, "2 tables, 16 columns and 1 foreign key present (no index on sessions.user_id)");
        let o = s.judge(&[found("users", &USERS[..5], vec![])], &scope());
        assert_eq!(o.message, "missing table: sessions; missing columns: users.is_active, users.is_verified");
        assert_eq!(o.hint.as_deref(), Some(MIGRATE_HINT));
        assert_eq!(o.causes.reports, [Premise::Table("sessions".into()), Premise::Table("users".into())]);
        let o = s.judge(&[found("sessions", &SESSIONS, vec![]), found("users", &USERS, vec![])], &scope());
        assert_eq!(o.message, "missing foreign key: sessions.user_id → users.id");
    }

    /// The case: tables with exactly the columns the route and the runbook use.
    #[test]
    fn the_route_and_runbook_columns_alone_pass() {
        let s = schema();
        let users = &USERS[..7];
        let sessions = &SESSIONS[..6];
        let o = s.judge(&[found("sessions", sessions, vec![fk(true)]), found("users", users, vec![])], &scope());
        assert_eq!(o.verdict, Verdict::Pass, "{}", o.message);
        assert_eq!(
            o.message,
            "2 tables, 13 columns and 1 foreign key present (not present, and not used by the API: \
             sessions.status, sessions.created_at, users.created_at)"
        );
        assert!(o.causes.reports.is_empty());
    }

    #[test]
    fn a_not_null_column_the_insert_leaves_out_fails_unless_a_trigger_may_fill_it() {
        let s = schema();
        let mut sessions = found("sessions", &SESSIONS, vec![fk(true)]);
        sessions.no_default = vec!["interview_kind".into(), "user_id".into()];
        let o = s.judge(&[sessions, found("users", &USERS, vec![])], &scope());
        assert_eq!(o.verdict, Verdict::Problem);
        assert_eq!(
            o.message,
            "sessions.interview_kind NOT NULL with no default, and the API's insert does not fill it: every \
             session creation fails (23502)"
        );
        assert_eq!(
            o.hint.as_deref(),
            Some(
                "a migration ran ahead of the API: allow NULL (ALTER TABLE sessions ALTER COLUMN \
                 interview_kind DROP NOT NULL;), give the column a DEFAULT, or deploy the API version that fills it"
            )
        );
        assert_eq!(o.causes.reports, [Premise::Table("sessions".into())]);
        let mut sessions = found("sessions", &SESSIONS, vec![fk(true)]);
        sessions.no_default = vec!["interview_kind".into()];
        sessions.insert_triggers = 1;
        let o = s.judge(&[sessions, found("users", &USERS, vec![])], &scope());
        assert_eq!(o.verdict, Verdict::Pass);
        assert!(o.message.contains("a BEFORE INSERT trigger may fill it"), "{}", o.message);
    }

    #[test]
    fn a_manifest_promotes_an_expected_column_or_adds_one() {
        let params = |t: &str| crate::check::params::<Params>(toml::from_str(t).expect("toml")).expect("params");
        let s = Schema::new(params(
            "tables = { users = [\"id\", \"credits\", \"is_active\"], sessions = [\"id\", \"status\", \"rubric\"] }",
        ))
        .expect("builds");
        let o = s.judge(&[found("sessions", &SESSIONS[..6], vec![fk(true)]), found("users", &USERS, vec![])], &scope());
        assert_eq!(o.message, "missing columns: sessions.status, sessions.rubric");
        assert_eq!(o.verdict, Verdict::Problem);
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
