//! `mockmate-diag list`: the checks a run would execute.

use comfy_table::{Table, presets};
use serde::Serialize;

use crate::manifest::CheckDecl;

#[derive(Serialize)]
struct Entry<'a> {
    id: &'a str,
    kind: &'a str,
    category: &'a str,
    severity: &'a str,
    needs: &'a [String],
    title: &'a str,
    description: &'a str,
}

fn entries(decls: &[CheckDecl]) -> Vec<Entry<'_>> {
    decls
        .iter()
        .map(|d| Entry {
            id: &d.id,
            kind: d.kind.name,
            category: d.kind.category(),
            severity: d.severity.as_str(),
            needs: &d.needs,
            title: &d.title,
            description: d.kind.description,
        })
        .collect()
}

pub fn table(decls: &[CheckDecl]) -> String {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED).force_no_tty();
    t.set_header(vec!["Check", "Severity", "Needs", "Title"]);
    for e in entries(decls) {
        t.add_row(vec![e.id.to_string(), e.severity.to_string(), e.needs.join(", "), e.title.to_string()]);
    }
    format!("{t}\n")
}

/// The table of checks the README includes.
pub fn markdown(decls: &[CheckDecl]) -> String {
    let mut md = String::from("| id | severity | needs | what it checks |\n|---|---|---|---|\n");
    for e in entries(decls) {
        let needs = e.needs.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        md.push_str(&format!("| `{}` | {} | {} | {} |\n", e.id, e.severity, needs, e.description.replace('|', "\\|")));
    }
    md
}

pub fn json(decls: &[CheckDecl]) -> String {
    let mut s = serde_json::to_string_pretty(&entries(decls)).unwrap_or_else(|_| "[]".into());
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use crate::manifest::{Source, load};

    /// Check ids and kinds are a public contract: a rename must show up in review.
    #[test]
    fn all_check_ids_and_kinds() {
        let decls = load(&[Source::builtin()]).expect("built-in manifest");
        let ids: Vec<String> = decls
            .iter()
            .map(|d| format!("{} ({}, {}) needs {:?}", d.id, d.kind.name, d.severity.as_str(), d.needs))
            .collect();
        insta::assert_snapshot!(ids.join("\n"));
    }
}
