//! `postgres.privileges`: the application's role may do what session creation does —
//! read users, read and insert sessions (`has_table_privilege`, per table).

use std::collections::BTreeMap;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use tokio_postgres::types::Type;

use super::pg_common::{SchemaParam, get, regclass_sql, session};
use crate::check::{Check, Ctx, KindDef, Outcome};

pub static KIND: KindDef = KindDef {
    name: "postgres.privileges",
    title: "Role privileges",
    description: "the connected role has the required privileges per table (default: SELECT on users; SELECT, INSERT on sessions)",
    build: |t| {
        let mut p: Params = crate::check::params(t)?;
        for (table, privs) in p.require.iter_mut() {
            for privilege in privs.iter_mut() {
                *privilege = privilege.trim().to_ascii_uppercase();
                if !PRIVILEGES.contains(&privilege.as_str()) {
                    return Err(format!(
                        "`require`: unknown privilege \"{privilege}\" for {table} (one of {})",
                        PRIVILEGES.join(", ")
                    ));
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

/// Existence first (to_regclass is NULL, never an error, for a missing table), then
/// the privilege only where the table exists.
fn sql(schema: Option<&str>) -> String {
    format!(
        "SELECT x.name, x.privilege, c.oid IS NOT NULL,
                CASE WHEN c.oid IS NULL THEN NULL ELSE has_table_privilege(c.oid, x.privilege) END,
                current_user::text
         FROM unnest($1::text[], $2::text[]) AS x(name, privilege)
         LEFT JOIN pg_class c ON c.oid = {}",
        regclass_sql("x.name", schema)
    )
}

impl Check for Privileges {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let result = async {
                let session = session(ctx).await?;
                let (names, privs): (Vec<String>, Vec<String>) =
                    self.0.require.iter().flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), p.clone()))).unzip();
                let rows = session
                    .query_typed(&sql(self.0.schema.get()), &[(&names, Type::TEXT_ARRAY), (&privs, Type::TEXT_ARRAY)])
                    .await
                    .map_err(|e| super::pg_common::query_failed("the privilege query", &e))?;
                let mut role = session.info.user.clone();
                // table → privileges lacking, in the manifest's order
                let mut lacking: BTreeMap<String, Vec<String>> = BTreeMap::new();
                let mut missing: Vec<String> = Vec::new();
                let mut granted = 0usize;
                for row in &rows {
                    let what = "the privilege query";
                    let table: String = get(row, 0, what)?;
                    let privilege: String = get(row, 1, what)?;
                    let exists: bool = get(row, 2, what)?;
                    let has: Option<bool> = get(row, 3, what)?;
                    role = get(row, 4, what)?;
                    match (exists, has) {
                        (false, _) => {
                            if !missing.contains(&table) {
                                missing.push(table);
                            }
                        }
                        (true, Some(true)) => granted += 1,
                        (true, _) => lacking.entry(table).or_default().push(privilege),
                    }
                }
                Ok(judge(&role, &lacking, &missing, granted))
            };
            result.await.unwrap_or_else(|o| o)
        }
        .boxed()
    }
}

fn judge(role: &str, lacking: &BTreeMap<String, Vec<String>>, missing: &[String], granted: usize) -> Outcome {
    let missing_note = if missing.is_empty() {
        String::new()
    } else {
        format!(" ({} missing: see postgres.schema)", missing.join(", "))
    };
    let outcome = if !lacking.is_empty() {
        let what: Vec<String> = lacking.iter().map(|(t, ps)| format!("{} on {t}", ps.join(", "))).collect();
        let grants: Vec<String> =
            lacking.iter().map(|(t, ps)| format!("GRANT {} ON {t} TO \"{role}\";", ps.join(", "))).collect();
        Outcome::problem(format!("role \"{role}\" lacks {}{missing_note}", what.join("; ")))
            .hint(format!("as the tables' owner: {}", grants.join(" ")))
    } else if !missing.is_empty() {
        // Nothing to judge on a table that does not exist; the schema check fails on it.
        Outcome::skip(format!("cannot check privileges on missing {}: see postgres.schema", missing.join(", ")))
    } else {
        Outcome::pass(format!("role \"{role}\" has all {granted} required privileges"))
    };
    let lacking_detail: serde_json::Map<String, serde_json::Value> =
        lacking.iter().map(|(t, ps)| (t.clone(), serde_json::Value::from(ps.clone()))).collect();
    outcome.detail("role", role).detail("lacking", lacking_detail).detail("missing_tables", missing.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;

    #[test]
    fn lacking_privileges_are_named_with_the_grant() {
        let lacking = BTreeMap::from([("sessions".to_string(), vec!["INSERT".to_string()])]);
        let o = judge("app", &lacking, &[], 2);
        assert_eq!(o.message, "role \"app\" lacks INSERT on sessions");
        assert_eq!(o.hint.as_deref(), Some("as the tables' owner: GRANT INSERT ON sessions TO \"app\";"));
        assert_eq!(judge("app", &BTreeMap::new(), &["sessions".into()], 1).verdict, Verdict::Skip);
        assert_eq!(judge("app", &BTreeMap::new(), &[], 3).message, "role \"app\" has all 3 required privileges");
    }
}
