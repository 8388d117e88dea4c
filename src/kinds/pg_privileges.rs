//! `postgres.privileges`: the application's role may do what session creation does —
//! read users, read and insert sessions — all the way down:
//! - `USAGE` on each table's schema (without it the table is invisible);
//! - the table privileges (`has_table_privilege`);
//! - `USAGE` on the sequences behind `serial` defaults of the tables it inserts into
//!   (`nextval()` checks them; identity columns do not need it);
//! - row-level security: with `relrowsecurity` on, a role that neither owns the
//!   table (owners are exempt unless `FORCE ROW LEVEL SECURITY`) nor is a superuser
//!   or `BYPASSRLS` needs a permissive policy for each command, or its inserts fail
//!   (42501 "new row violates row-level security policy") and its reads see nothing.
//!
//! One query over the catalogs, which show every object whatever the role may use.

use std::collections::BTreeMap;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;
use tokio_postgres::types::Type;

use super::shared::postgres::{SchemaParam, get, hint_name, query_one, quote_ident, session};
use super::shared::visibility::{Candidate, Place, SCOPE_SQL, Scope, candidates_sql, place, resolved_sql};
use crate::check::{Check, Ctx, KindDef, Outcome, Owner, Premise};

pub static KIND: KindDef = KindDef {
    name: "postgres.privileges",
    title: "Role privileges",
    description: "the connected role may do what the API does per table (default: SELECT on users; SELECT, INSERT on sessions): schema USAGE, table privileges, USAGE on serial sequences, row-level security policies",
    build: |t| {
        let mut p: Params = crate::check::params(t)?;
        for (table, privs) in p.require.iter_mut() {
            for privilege in privs.iter_mut() {
                *privilege = privilege.trim().to_ascii_uppercase();
                if !PRIVILEGES.contains(&privilege.as_str()) {
                    return Err(format!(
                        "`require`: unknown privilege \"{privilege}\" for {table} (one of {})",
                        PRIVILEGES.join(", ")
                    )
                    .into());
                }
            }
        }
        if p.require.is_empty() {
            return Err("`require`: name at least one table".into());
        }
        Ok(Box::new(Privileges(p)))
    },
};

/// What `has_table_privilege` understands.
const PRIVILEGES: &[&str] = &["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    schema: SchemaParam,
    /// Table → privileges the role needs on it.
    require: BTreeMap<String, Vec<String>>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            schema: SchemaParam::default(),
            require: BTreeMap::from([
                ("users".to_string(), vec!["SELECT".to_string()]),
                ("sessions".to_string(), vec!["SELECT".to_string(), "INSERT".to_string()]),
            ]),
        }
    }
}

struct Privileges(Params);

/// Per table in `$1` (its privileges comma-joined in `$2`): where it is, and, where
/// the role resolves it, each privilege, its row-level security and policies, and
/// the sequences its column defaults call.
fn sql(schema: Option<&str>) -> String {
    format!(
        "SELECT json_build_object('scope', {SCOPE_SQL},
           'bypass_rls', (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user),
           'tables', coalesce(json_agg(json_build_object(
             'name', t.name,
             'found', c.oid IS NOT NULL,
             'candidates', CASE WHEN c.oid IS NULL THEN {candidates} ELSE '[]'::json END,
             'privileges', (SELECT coalesce(json_agg(json_build_object('privilege', p, 'granted', has_table_privilege(c.oid, p))), '[]')
                            FROM unnest(string_to_array(t.privs, ',')) p WHERE c.oid IS NOT NULL),
             'rls', coalesce(c.relrowsecurity, false),
             'force_rls', coalesce(c.relforcerowsecurity, false),
             'owner', c.oid IS NOT NULL AND pg_has_role(c.relowner, 'USAGE'),
             'policies', (SELECT coalesce(json_agg(json_build_object(
                              'cmd', pol.polcmd::text,
                              -- polpermissive exists from PostgreSQL 10; before, every policy was permissive.
                              'permissive', (to_jsonb(pol) ->> 'polpermissive')::bool IS NOT FALSE,
                              'applies', EXISTS (SELECT 1 FROM unnest(pol.polroles) r(oid)
                                                 WHERE CASE WHEN r.oid = 0 THEN true ELSE pg_has_role(r.oid, 'MEMBER') END))), '[]')
                          FROM pg_policy pol WHERE pol.polrelid = c.oid),
             'sequences', (SELECT coalesce(json_agg(json_build_object(
                               'sequence', s.oid::regclass::text,
                               'column', a.attname::text,
                               'usage', has_sequence_privilege(s.oid, 'USAGE') OR has_sequence_privilege(s.oid, 'UPDATE'))), '[]')
                           FROM pg_attrdef d
                           JOIN pg_depend dep ON dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid
                                             AND dep.refclassid = 'pg_class'::regclass
                           JOIN pg_class s ON s.oid = dep.refobjid AND s.relkind = 'S'
                           JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum AND NOT a.attisdropped
                           WHERE d.adrelid = c.oid)
           ) ORDER BY t.ord), '[]'))
         FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(name, privs, ord)
         LEFT JOIN pg_class c ON c.oid = {resolved}",
        candidates = candidates_sql("t.name"),
        resolved = resolved_sql("t.name", schema),
    )
}

#[derive(Debug, Deserialize)]
struct Reply {
    scope: Scope,
    #[serde(default)]
    bypass_rls: Option<bool>,
    tables: Vec<Table>,
}

#[derive(Debug, Default, Deserialize)]
struct Table {
    name: String,
    found: bool,
    #[serde(default)]
    candidates: Vec<Candidate>,
    #[serde(default)]
    privileges: Vec<Granted>,
    #[serde(default)]
    rls: bool,
    #[serde(default)]
    force_rls: bool,
    /// The role is (a member of) the table's owner.
    #[serde(default)]
    owner: bool,
    #[serde(default)]
    policies: Vec<Policy>,
    #[serde(default)]
    sequences: Vec<Sequence>,
}

#[derive(Debug, Deserialize)]
struct Granted {
    privilege: String,
    granted: bool,
}

#[derive(Debug, Deserialize)]
struct Policy {
    /// `pg_policy.polcmd`: `r` SELECT, `a` INSERT, `w` UPDATE, `d` DELETE, `*` ALL.
    cmd: String,
    permissive: bool,
    /// The policy is for PUBLIC or a role the connected role is a member of.
    applies: bool,
}

#[derive(Debug, Deserialize)]
struct Sequence {
    sequence: String,
    column: String,
    usage: bool,
}

impl Check for Privileges {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let result = async {
                let session = session(ctx).await?;
                let (names, privs): (Vec<String>, Vec<String>) =
                    self.0.require.iter().map(|(t, ps)| (t.clone(), ps.join(","))).unzip();
                let what = "the privilege query";
                let row = query_one(
                    &session,
                    what,
                    &sql(self.0.schema.get()),
                    &[(&names, Type::TEXT_ARRAY), (&privs, Type::TEXT_ARRAY)],
                )
                .await?;
                let json: Value = get(&row, 0, what)?;
                let reply: Reply = serde_json::from_value(json)
                    .map_err(|e| Outcome::problem(format!("unexpected reply to {what}: {e}")))?;
                Ok(self.judge(&reply))
            };
            result.await.unwrap_or_else(|o| o)
        }
        .boxed()
    }
}

/// What the role lacks on one table, with the statement that gives it.
#[derive(Debug, Default)]
struct Lacks {
    /// `USAGE on schema mm`, `INSERT`, `USAGE on sequence public.sessions_n_seq (default of sessions.n)` …
    items: Vec<String>,
    fixes: Vec<String>,
    /// Table privileges lacking (`details.lacking`).
    privileges: Vec<String>,
    /// Commands row-level security lets the role do nothing with.
    rls: Vec<&'static str>,
    /// The only thing lacking is schema USAGE (`postgres.schema`'s finding too).
    only_schema_usage: bool,
}

impl Privileges {
    fn judge(&self, reply: &Reply) -> Outcome {
        let scope = &reply.scope;
        let role = &scope.role;
        let bypass = reply.bypass_rls.unwrap_or(false);
        let mut lacking: Vec<(String, Lacks)> = Vec::new();
        let mut unseen: Vec<String> = Vec::new();
        let mut granted = 0usize;
        for (name, required) in &self.0.require {
            let none = Table::default();
            let t = reply.tables.iter().find(|t| &t.name == name).unwrap_or(&none);
            let mut lacks = Lacks::default();
            if !t.found {
                match place(false, &t.candidates, self.0.schema.get(), scope) {
                    Place::NoUsage { schema } => {
                        lacks.items.push(format!("USAGE on schema {schema} (which holds {name})"));
                        lacks.fixes.push(format!("GRANT USAGE ON SCHEMA {} TO \"{role}\";", quote_ident(&schema)));
                        lacks.only_schema_usage = true;
                        lacking.push((name.clone(), lacks));
                    }
                    _ => unseen.push(name.clone()),
                }
                continue;
            }
            for p in &t.privileges {
                if p.granted {
                    granted += 1;
                } else {
                    lacks.privileges.push(p.privilege.clone());
                }
            }
            if !lacks.privileges.is_empty() {
                lacks.items.push(format!("{} on {name}", lacks.privileges.join(", ")));
                lacks.fixes.push(format!(
                    "GRANT {} ON {} TO \"{role}\";",
                    lacks.privileges.join(", "),
                    hint_name(name)
                ));
            }
            if required.iter().any(|p| p == "INSERT") {
                for s in t.sequences.iter().filter(|s| !s.usage) {
                    lacks.items.push(format!("USAGE on sequence {} (the default of {name}.{})", s.sequence, s.column));
                    lacks.fixes.push(format!("GRANT USAGE ON SEQUENCE {} TO \"{role}\";", s.sequence));
                }
            }
            // Owners are exempt unless FORCE; superusers and BYPASSRLS roles always.
            if t.rls && !bypass && (t.force_rls || !t.owner) {
                for privilege in required {
                    let Some((cmd, verb, clause)) = rls_command(privilege) else { continue };
                    let allowed =
                        t.policies.iter().any(|p| p.permissive && p.applies && (p.cmd == cmd || p.cmd == "*"));
                    if !allowed {
                        lacks.rls.push(verb);
                        lacks.fixes.push(format!(
                            "CREATE POLICY mockmate_api_{verb} ON {} FOR {privilege} TO \"{role}\" {clause} (true);",
                            hint_name(name)
                        ));
                    }
                }
                if !lacks.rls.is_empty() {
                    lacks.items.push(format!(
                        "a row-level security policy on {name} that lets it {} (RLS is on; no permissive policy applies to it)",
                        lacks.rls.join(" or ")
                    ));
                }
            }
            if !lacks.items.is_empty() {
                lacking.push((name.clone(), lacks));
            }
        }
        let unseen_note = if unseen.is_empty() {
            String::new()
        } else {
            format!(" ({} not found by the role: see postgres.schema)", unseen.join(", "))
        };
        let outcome = if !lacking.is_empty() {
            let what: Vec<String> = lacking.iter().flat_map(|(_, l)| l.items.iter().cloned()).collect();
            let mut fixes: Vec<String> = Vec::new();
            for fix in lacking.iter().flat_map(|(_, l)| &l.fixes) {
                if !fixes.contains(fix) {
                    fixes.push(fix.clone());
                }
            }
            let narrow = if lacking.iter().any(|(_, l)| !l.rls.is_empty()) {
                " (narrow each policy's (true) to the rows the API may touch)"
            } else {
                ""
            };
            let outcome = Outcome::problem(format!("role \"{role}\" lacks {}{unseen_note}", what.join("; ")))
                .hint(format!("as the tables' owner: {}{narrow}", fixes.join(" ")));
            let outcome = lacking.iter().fold(outcome, |o, (t, _)| o.reports(Premise::Privileges(t.clone())));
            // Schema USAGE alone is also postgres.schema's finding (the table is
            // invisible): then this one defers to it.
            if lacking.iter().all(|(_, l)| l.only_schema_usage) {
                lacking.iter().fold(outcome, |o, (t, _)| o.premise(Premise::Table(t.clone())))
            } else {
                outcome
            }
        } else if !unseen.is_empty() {
            // Nothing to judge on a table the role does not find; the schema check says why.
            Outcome::skip(format!(
                "cannot check privileges on {}: not found by role \"{role}\" (see {})",
                unseen.join(", "),
                Owner::PostgresSchema
            ))
            .see(Owner::PostgresSchema)
        } else {
            Outcome::pass(format!("role \"{role}\" has all {granted} required privileges"))
        };
        let lacking_detail: serde_json::Map<String, Value> = lacking
            .iter()
            .filter(|(_, l)| !l.privileges.is_empty())
            .map(|(t, l)| (t.clone(), Value::from(l.privileges.clone())))
            .collect();
        let rls_detail: serde_json::Map<String, Value> = lacking
            .iter()
            .filter(|(_, l)| !l.rls.is_empty())
            .map(|(t, l)| (t.clone(), Value::from(l.rls.clone())))
            .collect();
        outcome
            .detail("role", role.clone())
            .detail("bypass_rls", bypass)
            .detail("lacking", lacking_detail)
            .detail("rls_blocks", rls_detail)
            .detail("missing_tables", unseen)
    }
}

/// For a table privilege row-level security governs: `pg_policy.polcmd`, the verb
/// for messages and the policy clause that allows it.
fn rls_command(privilege: &str) -> Option<(&'static str, &'static str, &'static str)> {
    match privilege {
        "SELECT" => Some(("r", "select", "USING")),
        "INSERT" => Some(("a", "insert", "WITH CHECK")),
        "UPDATE" => Some(("w", "update", "USING")),
        "DELETE" => Some(("d", "delete", "USING")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;

    fn scope() -> Scope {
        Scope {
            role: "app".into(),
            database: "mockmate".into(),
            search_path: "\"$user\", public".into(),
            search_path_source: None,
            effective_path: vec!["public".into()],
        }
    }

    fn table(name: &str, privileges: &[(&str, bool)]) -> Table {
        Table {
            name: name.into(),
            found: true,
            privileges: privileges.iter().map(|(p, g)| Granted { privilege: p.to_string(), granted: *g }).collect(),
            ..Table::default()
        }
    }

    fn judge(tables: Vec<Table>, bypass: bool) -> Outcome {
        Privileges(Params::default()).judge(&Reply { scope: scope(), bypass_rls: Some(bypass), tables })
    }

    fn all_granted() -> Vec<Table> {
        vec![table("sessions", &[("SELECT", true), ("INSERT", true)]), table("users", &[("SELECT", true)])]
    }

    #[test]
    fn lacking_privileges_are_named_with_the_grant() {
        let mut tables = all_granted();
        tables[0].privileges[1].granted = false;
        let o = judge(tables, false);
        assert_eq!(o.message, "role \"app\" lacks INSERT on sessions");
        assert_eq!(o.hint.as_deref(), Some("as the tables' owner: GRANT INSERT ON sessions TO \"app\";"));
        assert_eq!(o.causes.reports, [Premise::Privileges("sessions".into())]);
        assert!(o.causes.premises.is_empty());
        assert_eq!(judge(all_granted(), false).message, "role \"app\" has all 3 required privileges");
        let missing = vec![Table { name: "sessions".into(), ..Table::default() }, table("users", &[("SELECT", true)])];
        assert_eq!(judge(missing, false).verdict, Verdict::Skip);
    }

    #[test]
    fn sequences_behind_serial_defaults_need_usage() {
        let mut tables = all_granted();
        tables[0].sequences = vec![Sequence { sequence: "sessions_n_seq".into(), column: "n".into(), usage: false }];
        let o = judge(tables, false);
        assert_eq!(o.message, "role \"app\" lacks USAGE on sequence sessions_n_seq (the default of sessions.n)");
        assert!(o.hint.unwrap_or_default().contains("GRANT USAGE ON SEQUENCE sessions_n_seq TO \"app\";"));
    }

    #[test]
    fn row_level_security_without_a_policy_for_the_role_blocks_it_unless_it_bypasses() {
        let rls = |policies: Vec<Policy>, owner: bool, force: bool| {
            let mut tables = all_granted();
            tables[0].rls = true;
            tables[0].force_rls = force;
            tables[0].owner = owner;
            tables[0].policies = policies;
            tables
        };
        let o = judge(rls(vec![], false, false), false);
        assert_eq!(
            o.message,
            "role \"app\" lacks a row-level security policy on sessions that lets it select or insert \
             (RLS is on; no permissive policy applies to it)"
        );
        let hint = o.hint.unwrap_or_default();
        assert!(
            hint.contains("CREATE POLICY mockmate_api_insert ON sessions FOR INSERT TO \"app\" WITH CHECK (true);"),
            "{hint}"
        );
        assert!(!hint.contains("GRANT"), "the role has its GRANTs: {hint}");
        assert_eq!(o.details["rls_blocks"]["sessions"], serde_json::json!(["select", "insert"]));
        // A policy for ALL commands that applies to the role lets it through.
        let all = Policy { cmd: "*".into(), permissive: true, applies: true };
        assert_eq!(judge(rls(vec![all], false, false), false).verdict, Verdict::Pass);
        // A policy for another role, or a restrictive one, does not.
        let other = Policy { cmd: "a".into(), permissive: true, applies: false };
        let restrictive = Policy { cmd: "a".into(), permissive: false, applies: true };
        assert_eq!(judge(rls(vec![other, restrictive], false, false), false).verdict, Verdict::Problem);
        // Owners bypass unless FORCE; superusers and BYPASSRLS always.
        assert_eq!(judge(rls(vec![], true, false), false).verdict, Verdict::Pass);
        assert_eq!(judge(rls(vec![], true, true), false).verdict, Verdict::Problem);
        assert_eq!(judge(rls(vec![], true, true), true).verdict, Verdict::Pass);
    }

    #[test]
    fn schema_usage_alone_defers_to_the_schema_check() {
        let no_usage = Table {
            name: "sessions".into(),
            candidates: vec![Candidate { schema: "mm".into(), usage: false, in_path: false }],
            ..Table::default()
        };
        let o = judge(vec![no_usage, table("users", &[("SELECT", true)])], false);
        assert_eq!(o.message, "role \"app\" lacks USAGE on schema mm (which holds sessions)");
        assert!(o.hint.unwrap_or_default().contains("GRANT USAGE ON SCHEMA mm TO \"app\";"));
        assert_eq!(o.causes.premises, [Premise::Table("sessions".into())]);
    }
}
