//! Check manifests: the default suite (`checks/mockmate.toml`, embedded) and any
//! `--checks PATH` files. Every error names file, line and column.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use crate::check::{Check, KindDef, Owner, ParamError};
use crate::envctx::Loader;
use crate::error::UsageError;
use crate::kinds;
use crate::probe::postgres::{ApiClient, ClientKind, PoolSsl};
use crate::report::Severity;

/// The default MockMate suite, compiled into the binary.
pub const DEFAULT_MANIFEST: &str = include_str!("../checks/mockmate.toml");
pub const DEFAULT_LABEL: &str = "checks/mockmate.toml";

/// One `[[check]]`, validated and built.
#[derive(Clone)]
pub struct CheckDecl {
    pub id: String,
    pub kind: &'static KindDef,
    pub severity: Severity,
    pub needs: Vec<String>,
    /// Ids this check starts after, once they have finished whatever their
    /// status (`after = [...]`): it reads their results (`Ctx::finished`).
    pub after: Vec<String>,
    pub title: String,
    /// A manifest-level hint, used when the check itself gives none.
    pub hint: Option<String>,
    pub check: Arc<dyn Check>,
    /// `file:line:col` of the declaration.
    pub origin: String,
}

impl std::fmt::Debug for CheckDecl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckDecl").field("id", &self.id).field("kind", &self.kind.name).finish_non_exhaustive()
    }
}

/// A manifest text and the label (path) errors name.
pub struct Source {
    pub label: String,
    pub text: String,
}

impl Source {
    pub fn builtin() -> Source {
        Source { label: DEFAULT_LABEL.to_string(), text: DEFAULT_MANIFEST.to_string() }
    }

    /// A `--checks` path: a `.toml` file, or a directory of them (sorted by name).
    pub fn from_path(path: &Path) -> Result<Vec<Source>, UsageError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map(|text| Source { label: p.display().to_string(), text })
                .map_err(|e| UsageError::new(format!("manifest {}: cannot read: {e}", p.display())))
        };
        if path.is_dir() {
            let entries = std::fs::read_dir(path)
                .map_err(|e| UsageError::new(format!("manifest directory {}: cannot read: {e}", path.display())))?;
            let mut files: Vec<_> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(UsageError::new(format!("manifest directory {}: no .toml files", path.display())));
            }
            files.iter().map(|p| read(p)).collect()
        } else {
            Ok(vec![read(path)?])
        }
    }
}

type RawCheck = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    check: Vec<Spanned<RawCheck>>,
    /// What the API's code passes to `new Pool(...)`, which the environment cannot show.
    postgres: Option<RawPostgres>,
    /// How the API loads its env files.
    env: Option<RawEnv>,
}

/// `[env]`: the API's env-file loader (`loader = "dotenv"`, `"node"`, `"dotenv-flow"`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnv {
    loader: Option<Loader>,
}

/// `[postgres]`: the API's client and the `ssl` its code gives `new Pool`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgres {
    client: Option<ClientKind>,
    ssl: Option<PoolSsl>,
    ca: Option<std::path::PathBuf>,
}

/// Every manifest, loaded: the checks and the settings of the run's connections.
pub struct Loaded {
    pub checks: Vec<CheckDecl>,
    /// `[postgres]`: a later manifest's value wins over an earlier one's.
    pub postgres: ApiClient,
    /// `[env] loader`: a later manifest's value wins over an earlier one's.
    pub loader: Loader,
}

const COMMON_FIELDS: &[&str] = &["id", "kind", "severity", "needs", "after", "title", "hint"];

/// Loads, validates and builds every check of `sources`, in order.
pub fn load(sources: &[Source]) -> Result<Vec<CheckDecl>, UsageError> {
    load_all(sources).map(|loaded| loaded.checks)
}

/// [`load`], with the connection settings the manifests declare.
pub fn load_all(sources: &[Source]) -> Result<Loaded, UsageError> {
    // An error quotes what the manifest says (a kind, an id): control characters
    // in it are escaped, so the error stays one line.
    load_checks(sources).map_err(|e| {
        UsageError::new(
            e.0.chars()
                .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
                .collect::<String>(),
        )
    })
}

fn load_checks(sources: &[Source]) -> Result<Loaded, UsageError> {
    let mut postgres = ApiClient::default();
    let mut loader = Loader::default();
    let mut decls: Vec<CheckDecl> = Vec::new();
    // id → where it was declared, for duplicate and `needs` errors.
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut pending_needs: Vec<(String, String, String, &str)> = Vec::new(); // (needed id, at, by, field)
    for src in sources {
        let at = |span: Range<usize>| position(&src.label, &src.text, span.start);
        let raw: RawFile = toml::from_str(&src.text).map_err(|e| {
            let where_ = e.span().map(&at).unwrap_or_else(|| src.label.clone());
            UsageError::new(format!("{where_}: {}", e.message().trim()))
        })?;
        if let Some(l) = raw.env.and_then(|e| e.loader) {
            loader = l;
        }
        if let Some(pg) = raw.postgres {
            postgres.client = pg.client.unwrap_or(postgres.client);
            postgres.ssl = pg.ssl.or(postgres.ssl);
            // A relative CA path is relative to the manifest that names it.
            let dir = Path::new(&src.label).parent().filter(|d| !d.as_os_str().is_empty());
            postgres.ca = match (pg.ca, dir) {
                (Some(ca), Some(dir)) if ca.is_relative() => Some(dir.join(ca)),
                (Some(ca), _) => Some(ca),
                (None, _) => postgres.ca,
            };
        }
        for entry in raw.check {
            let table_at = at(entry.span());
            let mut fields: HashMap<String, (Range<usize>, Range<usize>, toml::Value)> = HashMap::new();
            for (k, v) in entry.into_inner() {
                let key_span = k.span();
                let val_span = v.span();
                fields.insert(k.into_inner(), (key_span, val_span, v.into_inner()));
            }
            let string_field = |name: &str| -> Result<Option<(String, String)>, UsageError> {
                match fields.get(name) {
                    None => Ok(None),
                    Some((_, span, toml::Value::String(s))) => Ok(Some((s.clone(), at(span.clone())))),
                    Some((_, span, _)) => {
                        Err(UsageError::new(format!("{}: `{name}` must be a string", at(span.clone()))))
                    }
                }
            };
            let (id, id_at) =
                string_field("id")?.ok_or_else(|| UsageError::new(format!("{table_at}: check has no `id`")))?;
            if id.trim().is_empty() || id.contains(char::is_whitespace) || id.contains(',') {
                return Err(UsageError::new(format!("{id_at}: invalid check id `{id}` (no spaces or commas)")));
            }
            if let Some(first) = seen.get(&id) {
                return Err(UsageError::new(format!("{id_at}: duplicate check id `{id}` (first declared at {first})")));
            }
            let (kind_name, kind_at) = string_field("kind")?
                .ok_or_else(|| UsageError::new(format!("{table_at}: check `{id}` has no `kind`")))?;
            let kind = kinds::find(&kind_name).ok_or_else(|| {
                let known: Vec<_> = kinds::KINDS.iter().map(|k| k.name).collect();
                UsageError::new(format!("{kind_at}: unknown kind `{kind_name}` (known: {})", known.join(", ")))
            })?;
            let severity = match string_field("severity")? {
                None => Severity::Fail,
                Some((s, _)) if s == "fail" => Severity::Fail,
                Some((s, _)) if s == "warn" => Severity::Warn,
                Some((s, sev_at)) => {
                    return Err(UsageError::new(format!(
                        "{sev_at}: severity must be \"fail\" or \"warn\", not \"{s}\""
                    )));
                }
            };
            let title = string_field("title")?.map(|(t, _)| t).unwrap_or_else(|| kind.title.to_string());
            let hint = string_field("hint")?.map(|(h, _)| h);
            let mut ids_of = |field: &'static str| -> Result<Vec<String>, UsageError> {
                let mut ids = Vec::new();
                if let Some((_, span, value)) = fields.get(field) {
                    let not_ids =
                        || UsageError::new(format!("{}: `{field}` must be a list of check ids", at(span.clone())));
                    for item in value.as_array().ok_or_else(not_ids)? {
                        let other = item.as_str().ok_or_else(not_ids)?;
                        ids.push(other.to_string());
                        pending_needs.push((other.to_string(), at(span.clone()), id.clone(), field));
                    }
                }
                Ok(ids)
            };
            let needs = ids_of("needs")?;
            let mut after = ids_of("after")?;
            let params: toml::Table = fields
                .iter()
                .filter(|(k, _)| !COMMON_FIELDS.contains(&k.as_str()))
                .map(|(k, (_, _, v))| (k.clone(), v.clone()))
                .collect();
            let check = (kind.build)(params).map_err(|ParamError(message)| {
                // Point at the offending parameter when serde names it: the one named
                // first (`unknown field `x`, expected `y``: x, even when y is set too).
                let field_at = fields
                    .iter()
                    .filter(|(k, _)| !COMMON_FIELDS.contains(&k.as_str()))
                    .filter_map(|(k, (key_span, _, _))| message.find(&format!("`{k}`")).map(|i| (i, key_span)))
                    .min_by_key(|(i, _)| *i)
                    .map(|(_, key_span)| at(key_span.clone()))
                    .unwrap_or_else(|| table_at.clone());
                UsageError::new(format!("{field_at}: check `{id}` (kind {}): {message}", kind.name))
            })?;
            // A check that reads another's result (a parameter names it) runs
            // after it: derived here, so the parameter and the order cannot disagree.
            for (param, other) in check.reads_results_of() {
                let param_at = fields.get(param).map(|(key_span, _, _)| at(key_span.clone()));
                pending_needs.push((other.clone(), param_at.unwrap_or_else(|| table_at.clone()), id.clone(), param));
                if !after.contains(&other) {
                    after.push(other);
                }
            }
            seen.insert(id.clone(), id_at.clone());
            decls.push(CheckDecl {
                id,
                kind,
                severity,
                needs,
                after,
                title,
                hint,
                check: Arc::from(check),
                origin: id_at,
            });
        }
    }
    for (need, at, by, field) in &pending_needs {
        if !seen.contains_key(need) {
            let (verb, by_param) = match *field {
                "after" => ("runs after", String::new()),
                "needs" => ("needs", String::new()),
                param => ("reads the result of", format!(" (its {param})")),
            };
            return Err(UsageError::new(format!(
                "{at}: check `{by}` {verb} `{need}`{by_param}, which no manifest declares"
            )));
        }
    }
    check_cycles(&decls)?;
    if sources.iter().any(|s| s.label == DEFAULT_LABEL) {
        check_owners(&decls)?;
    }
    Ok(Loaded { checks: decls, postgres, loader })
}

/// Every check other checks' findings point at ([`Owner`]) is declared, with
/// its kind: a renamed id in the built-in suite is caught here, at load.
fn check_owners(decls: &[CheckDecl]) -> Result<(), UsageError> {
    for owner in Owner::ALL {
        if !decls.iter().any(|d| d.id == owner.id() && d.kind.name == owner.id()) {
            return Err(UsageError::new(format!(
                "{DEFAULT_LABEL}: the built-in suite must declare `{owner}` (kind {owner}): other checks point at it"
            )));
        }
    }
    Ok(())
}

/// `needs` and `after` must form no cycle, or the engine would wait forever.
fn check_cycles(decls: &[CheckDecl]) -> Result<(), UsageError> {
    let by_id: HashMap<&str, &CheckDecl> = decls.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut done: HashSet<&str> = HashSet::new();
    fn visit<'a>(
        id: &'a str,
        by_id: &HashMap<&'a str, &'a CheckDecl>,
        path: &mut Vec<&'a str>,
        done: &mut HashSet<&'a str>,
    ) -> Result<(), UsageError> {
        if done.contains(id) {
            return Ok(());
        }
        if let Some(pos) = path.iter().position(|p| *p == id) {
            let cycle = path[pos..].join(" → ");
            let origin = by_id.get(id).map(|d| d.origin.as_str()).unwrap_or("manifest");
            return Err(UsageError::new(format!("{origin}: `needs` and `after` form a cycle: {cycle} → {id}")));
        }
        path.push(id);
        if let Some(d) = by_id.get(id) {
            for n in d.needs.iter().chain(&d.after) {
                visit(n, by_id, path, done)?;
            }
        }
        path.pop();
        done.insert(id);
        Ok(())
    }
    for d in decls {
        visit(&d.id, &by_id, &mut Vec::new(), &mut done)?;
    }
    Ok(())
}

/// `label:line:col` (1-based) of a byte offset.
pub(crate) fn position(label: &str, text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    format!("{label}:{line}:{col}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Vec<Source> {
        vec![Source { label: "extra.toml".into(), text: text.into() }]
    }

    fn err(text: &str) -> String {
        load(&src(text)).expect_err("should be rejected").0
    }

    #[test]
    fn builtin_manifest_loads() {
        let decls = load(&[Source::builtin()]).expect("built-in manifest is valid");
        assert!(decls.iter().any(|d| d.id == "env.required"));
    }

    #[test]
    fn unknown_kind_names_file_line_col() {
        let e = err("[[check]]\nid = \"x\"\nkind = \"nope\"\n");
        assert!(e.starts_with("extra.toml:3:8: unknown kind `nope`"), "{e}");
    }

    #[test]
    fn unknown_field_names_its_line() {
        let e = err("[[check]]\nid = \"x\"\nkind = \"env.required\"\nbogus = 1\n");
        assert!(e.starts_with("extra.toml:4:1:"), "{e}");
        assert!(e.contains("bogus"), "{e}");
    }

    /// Found by fuzzing (fuzz/ manifest): a kind name with a carriage return
    /// (`kind = "a\rb"`) was quoted raw, breaking the one-line error.
    #[test]
    fn quoted_values_with_control_characters_stay_on_one_line() {
        let e = err("[[check]]\nid = \"x\"\nkind = \"no\\rpe\\n\"\n");
        assert!(e.starts_with("extra.toml:3:8: unknown kind `no\\rpe\\n`"), "{e}");
        assert!(!e.contains(['\r', '\n']), "{e:?}");
    }

    /// Found by fuzzing (fuzz/ manifest): serde's message names the unknown field
    /// and the expected ones; when an expected one is set too, the position
    /// depended on a HashMap's order. It is the unknown field's, every time.
    #[test]
    fn unknown_field_beside_a_valid_one_names_the_unknown_ones_line() {
        let text = "[[check]]\nid = \"c\"\nkind = \"postgres.connections\"\nfail_percent = 95\nwarn_percnt = 80\n";
        for _ in 0..20 {
            let e = err(text);
            assert!(e.starts_with("extra.toml:5:1: ") && e.contains("unknown field `warn_percnt`"), "{e}");
        }
    }

    #[test]
    fn duplicate_id_and_dangling_needs() {
        let e = err("[[check]]\nid = \"x\"\nkind = \"env.required\"\n[[check]]\nid = \"x\"\nkind = \"env.required\"\n");
        assert!(e.starts_with("extra.toml:5:6: duplicate check id `x`"), "{e}");
        let e = err("[[check]]\nid = \"x\"\nkind = \"env.required\"\nneeds = [\"y\"]\n");
        assert!(e.starts_with("extra.toml:4:9:") && e.contains("needs `y`"), "{e}");
    }

    #[test]
    fn cycles_are_rejected() {
        let e = err(
            "[[check]]\nid = \"a\"\nkind = \"env.required\"\nneeds = [\"b\"]\n[[check]]\nid = \"b\"\nkind = \"env.required\"\nneeds = [\"a\"]\n",
        );
        assert!(e.contains("cycle"), "{e}");
    }

    #[test]
    fn after_names_declared_checks_and_joins_the_cycle_check() {
        let decls = load(&src(
            "[[check]]\nid = \"a\"\nkind = \"env.required\"\n[[check]]\nid = \"b\"\nkind = \"env.required\"\nafter = [\"a\"]\n",
        ))
        .expect("valid");
        assert_eq!((decls[1].after.as_slice(), decls[1].needs.len()), (&["a".to_string()][..], 0));
        let e = err("[[check]]\nid = \"x\"\nkind = \"env.required\"\nafter = [\"y\"]\n");
        assert!(e.starts_with("extra.toml:4:9: check `x` runs after `y`, which no manifest declares"), "{e}");
        let e = err("[[check]]\nid = \"x\"\nkind = \"env.required\"\nafter = \"y\"\n");
        assert!(e.contains("`after` must be a list of check ids"), "{e}");
        let e = err(
            "[[check]]\nid = \"a\"\nkind = \"env.required\"\nafter = [\"b\"]\n[[check]]\nid = \"b\"\nkind = \"env.required\"\nneeds = [\"a\"]\n",
        );
        assert!(e.contains("cycle"), "{e}");
    }

    /// `api.session_create` compares with the check `predicted_by` names: it
    /// runs after it whether or not the manifest says so, and an id no manifest
    /// declares is an error at the parameter.
    #[test]
    fn a_check_that_reads_another_s_result_runs_after_it() {
        let decls = load(&src("[[check]]\nid = \"dry\"\nkind = \"env.required\"\n\
             [[check]]\nid = \"ask\"\nkind = \"api.session_create\"\npredicted_by = \"dry\"\n"))
        .expect("valid");
        assert_eq!(decls[1].after, ["dry"]);
        let e = err("[[check]]\nid = \"ask\"\nkind = \"api.session_create\"\npredicted_by = \"gone\"\n");
        assert!(
            e.starts_with(
                "extra.toml:4:1: check `ask` reads the result of `gone` (its predicted_by), which no manifest declares"
            ),
            "{e}"
        );
        let builtin = load(&[Source::builtin()]).expect("built-in manifest");
        let ask = builtin.iter().find(|d| d.id == "api.session_create").expect("declared");
        assert!(ask.after.contains(&"postgres.session_insert".to_string()), "{:?}", ask.after);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = err("[[check]\nid = 1\n");
        assert!(e.starts_with("extra.toml:1:"), "{e}");
    }

    #[test]
    fn the_postgres_table_declares_what_the_apis_code_sets() {
        let loaded = load_all(&[
            Source {
                label: "/etc/mockmate/a.toml".into(),
                text: "[postgres]\nssl = \"no-verify\"\nca = \"ca.pem\"\n".into(),
            },
            Source { label: "b.toml".into(), text: "[postgres]\nclient = \"libpq\"\n".into() },
        ])
        .expect("loads");
        assert_eq!(loaded.postgres.client, ClientKind::Libpq);
        assert_eq!(loaded.postgres.ssl, Some(PoolSsl::NoVerify));
        assert_eq!(loaded.postgres.ca.as_deref(), Some(Path::new("/etc/mockmate/ca.pem")));
        let e = err("[postgres]\nssl = \"maybe\"\n");
        assert!(e.starts_with("extra.toml:2:7:") && e.contains("verify-full"), "{e}");
        let e = err("[postgres]\nsslmode = \"require\"\n");
        assert!(e.starts_with("extra.toml:2:1:") && e.contains("sslmode"), "{e}");
    }

    #[test]
    fn unknown_top_level_table_is_rejected() {
        let e = err("[checks]\nid = 1\n");
        assert!(e.starts_with("extra.toml:1:"), "{e}");
    }
}
