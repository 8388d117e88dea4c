//! `--format markdown`: a support-ticket report that renders in GitHub, GitLab
//! and Jira. Presence, length and source of variables — never their values.

use std::fmt::Write;

use super::{short_duration, status_label};
use crate::report::{Report, Status, SummaryStatus};

fn icon(status: Status) -> &'static str {
    match status {
        Status::Pass => "✅",
        Status::Warn => "⚠️",
        Status::Fail => "❌",
        Status::Skip => "⏭️",
    }
}

/// Escapes text for a GFM table cell: no pipes, no line breaks, no stray markup.
fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '\n' => out.push_str("<br>"),
            '\r' => {}
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // Intraword `_` is literal in CommonMark; leaving it keeps the raw text readable.
            '\\' | '*' | '`' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

pub fn format(report: &Report) -> String {
    let mut md = String::new();
    let overall = match report.summary.status {
        SummaryStatus::Pass => Status::Pass,
        SummaryStatus::Warn => Status::Warn,
        SummaryStatus::Fail => Status::Fail,
    };
    let files = if report.env_files.is_empty() {
        "none".to_string()
    } else {
        report.env_files.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
    };
    let _ = writeln!(md, "## mockmate-diag report: {} {}\n", icon(overall), status_label(overall));
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| Tool | {} {} |", report.tool, cell(report.version));
    let _ = writeln!(md, "| Environment | {} |", cell(&report.environment));
    let _ = writeln!(md, "| Env files | {files} |");
    let _ = writeln!(md, "| Started (UTC) | {} |", cell(&report.started_at));
    let _ = writeln!(md, "| OS | {} |", cell(&report.os));
    let _ = writeln!(md, "| Result | {} in {} |\n", report.summary.line(), short_duration(report.duration_ms));

    let _ = writeln!(md, "| Status | Check | Duration | Message |\n|---|---|---:|---|");
    for c in &report.checks {
        let _ = writeln!(
            md,
            "| {} {} | `{}` | {} | {} |",
            icon(c.status),
            status_label(c.status),
            c.id,
            short_duration(c.duration_ms),
            cell(&c.message)
        );
    }
    let hinted: Vec<_> = report.checks.iter().filter(|c| c.hint.is_some()).collect();
    if !hinted.is_empty() {
        let _ = writeln!(md, "\n### What to do\n");
        for c in hinted {
            let _ = writeln!(
                md,
                "- **`{}`** ({}): {}",
                c.id,
                status_label(c.status),
                cell(c.hint.as_deref().unwrap_or_default())
            );
        }
    }
    if !report.variables.is_empty() {
        let _ = writeln!(md, "\n### Environment variables read (values never shown)\n");
        let _ = writeln!(md, "| Variable | Present | Length | Source |\n|---|---|---:|---|");
        for v in &report.variables {
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {} |",
                v.name,
                if v.present { "yes" } else { "no" },
                v.length,
                cell(&v.source)
            );
        }
    }
    md
}

#[cfg(test)]
mod tests {
    #[test]
    fn snapshot() {
        insta::assert_snapshot!(super::format(&crate::format::fixture()));
    }

    #[test]
    fn cells_cannot_break_the_table() {
        assert_eq!(super::cell("a|b\nc <d> *e*"), "a\\|b<br>c &lt;d&gt; \\*e\\*");
    }
}
