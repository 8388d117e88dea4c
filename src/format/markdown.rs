//! `--format markdown`: a support-ticket report that renders in GitHub, GitLab
//! and Jira. Presence, length and source of variables — never their values.

use std::fmt::Write;

use super::text::{Piece, hint_pieces};
use super::{short_duration, status_label};
use crate::report::{Report, RunOptions, Status, SummaryStatus};

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

/// Escapes text outside a table for GFM, keeping `code spans` as code.
fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 && text.matches('`').count().is_multiple_of(2) {
            out.push('`');
            out.push_str(part);
            out.push('`');
        } else {
            out.push_str(&cell(part).replace("\\|", "|").replace("<br>", " "));
        }
    }
    out
}

/// `--timeout 5s --only env.required`: the options as a command line would give them.
fn options(o: &RunOptions) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(env) = &o.env {
        parts.push(format!("--env {env}"));
    }
    parts.extend(o.env_files.iter().map(|f| format!("--env-file {f}")));
    parts.extend(o.checks.iter().map(|c| format!("--checks {c}")));
    if !o.only.is_empty() {
        parts.push(format!("--only {}", o.only.join(",")));
    }
    if !o.skip.is_empty() {
        parts.push(format!("--skip {}", o.skip.join(",")));
    }
    parts.push(format!("--timeout {}", humantime::format_duration(std::time::Duration::from_millis(o.timeout_ms))));
    parts.push(format!(
        "--fail-on {}",
        match o.fail_on {
            crate::report::FailOn::Fail => "fail",
            crate::report::FailOn::Warn => "warn",
        }
    ));
    if o.allow_writes {
        parts.push("--allow-writes".into());
    }
    if let Some(id) = &o.user_id {
        parts.push(format!("--user-id {id}"));
    }
    if let Some(url) = &o.api_url {
        parts.push(format!("--api-url {url}"));
    }
    if let Some(ms) = o.wait_ms {
        parts.push(format!("--wait {}", humantime::format_duration(std::time::Duration::from_millis(ms))));
    }
    format!("`{}`", parts.join(" ").replace('|', "\\|"))
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
    let _ = writeln!(md, "| Tool | {} |", cell(&report.build_line()));
    let _ = writeln!(md, "| Environment | {} |", cell(&report.environment));
    let _ = writeln!(md, "| Env files | {files} |");
    let _ = writeln!(md, "| Started (UTC) | {} |", cell(&report.started_at));
    let _ = writeln!(md, "| OS | {} |", cell(&report.os));
    let _ = writeln!(md, "| Options | {} |", options(&report.options));
    let mut result = format!("{} in {}", report.summary.line(), short_duration(report.duration_ms));
    if let Some(ran) = super::ran_only(report) {
        let _ = write!(result, "; {} of {} checks run (--only/--skip)", ran.len(), report.checks.len());
    }
    if report.options.wait_ms.is_some() {
        let _ = write!(result, " ({} {})", report.attempts, if report.attempts == 1 { "attempt" } else { "attempts" });
    }
    if report.interrupted {
        result.push_str("; interrupted: checks that had not finished are skipped");
    }
    let _ = writeln!(md, "| Result | {} |\n", cell(&result));

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
    let todo: Vec<_> = report.checks.iter().filter(|c| matches!(c.status, Status::Warn | Status::Fail)).collect();
    if !todo.is_empty() || !report.notes.is_empty() {
        let _ = writeln!(md, "\n### What to do\n");
        for note in &report.notes {
            let _ = writeln!(md, "- ℹ️ {}", inline(note));
        }
        for c in todo {
            let _ = writeln!(
                md,
                "- {} **`{}`** ({}): {}",
                icon(c.status),
                c.id,
                status_label(c.status),
                inline(&c.message)
            );
            for piece in c.hint.as_deref().map(hint_pieces).unwrap_or_default() {
                match piece {
                    Piece::Prose(text) => {
                        let _ = writeln!(md, "\n  {}", inline(&text));
                    }
                    Piece::Sql(sql) => {
                        let _ = writeln!(md, "\n  ```sql\n  {sql}\n  ```");
                    }
                }
            }
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
