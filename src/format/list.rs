//! `mockmate-diag list`: the checks a run would execute.

use comfy_table::{ColumnConstraint, ContentArrangement, Table, Width, presets};
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

/// The same names in every format (the Markdown table has room for a Needs column).
const HEADER: [&str; 4] = ["Check", "Severity", "Needs", "What it checks"];

/// A table that fits `width` columns (the run's width rule). Ids are never
/// broken; what a check needs goes under its title.
pub fn table(decls: &[CheckDecl], width: u16) -> String {
    let mut t = Table::new();
    t.load_style(presets::NOTHING).force_no_tty();
    t.set_width(width.max(super::MIN_WIDTH)).set_content_arrangement(ContentArrangement::Dynamic);
    t.set_header(vec![HEADER[0], HEADER[1], HEADER[3]]);
    let entries = entries(decls);
    for e in &entries {
        let what = if e.needs.is_empty() {
            e.title.to_string()
        } else {
            format!("{}\n{dim}needs {}{dim:#}", e.title, e.needs.join(", "), dim = anstyle::Style::new().dimmed())
        };
        t.add_row(vec![e.id.to_string(), e.severity.to_string(), what]);
    }
    let id_width = entries.iter().map(|e| e.id.len()).max().unwrap_or(5);
    for (i, column) in t.column_iter_mut().enumerate() {
        column.set_padding((0, if i == 2 { 0 } else { 2 }));
    }
    if let Some(column) = t.column_mut(0) {
        column.set_constraint(ColumnConstraint::Absolute(Width::Fixed(u16::try_from(id_width + 2).unwrap_or(40))));
    }
    let mut out = String::new();
    for line in t.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The table of checks, for a README or a ticket.
pub fn markdown(decls: &[CheckDecl]) -> String {
    let mut md = format!("| {} |\n|---|---|---|---|\n", HEADER.join(" | "));
    for e in entries(decls) {
        let needs = e.needs.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        md.push_str(&format!("| `{}` | {} | {} | {} |\n", e.id, e.severity, needs, e.title.replace('|', "\\|")));
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

    /// Check ids and kinds are a public contract: a rename must show up in review.
    #[test]
    fn all_check_ids_and_kinds() {
        let decls = crate::run::load_manifests(&[]).expect("built-in manifest").checks;
        let ids: Vec<String> = decls
            .iter()
            .map(|d| format!("{} ({}, {}) needs {:?}", d.id, d.kind.name, d.severity.as_str(), d.needs))
            .collect();
        insta::assert_snapshot!(ids.join("\n"));
    }

    #[test]
    fn the_table_fits_the_width() {
        let decls = crate::run::load_manifests(&[]).expect("built-in manifest").checks;
        for width in [50u16, 80, 120] {
            let out = super::table(&decls, width);
            let plain = anstream::adapter::strip_str(&out).to_string();
            for line in plain.lines() {
                assert!(crate::format::text::width(line) <= usize::from(width), "{width}: {line:?}");
            }
            for d in &decls {
                assert!(
                    plain.lines().any(|l| l.starts_with(&format!("{} ", d.id))),
                    "{width}: {} broken:\n{plain}",
                    d.id
                );
            }
        }
    }
}
