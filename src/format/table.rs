//! `--format table`: what ops read at a terminal. Styled with ANSI; the output
//! stream strips the styling when colour is off (one colour policy, in `output`).

use anstyle::{AnsiColor, Style};
use comfy_table::{ContentArrangement, Table, presets};

use super::{short_duration, status_label};
use crate::engine::NOT_SELECTED;
use crate::report::{Report, Status};

fn style(status: Status) -> Style {
    match status {
        Status::Pass => Style::new().fg_color(Some(AnsiColor::Green.into())).bold(),
        Status::Warn => Style::new().fg_color(Some(AnsiColor::Yellow.into())).bold(),
        Status::Fail => Style::new().fg_color(Some(AnsiColor::Red.into())).bold(),
        Status::Skip => Style::new().dimmed(),
    }
}

/// `width`: where to wrap long messages; `None` never wraps.
pub fn format(report: &Report, width: Option<u16>) -> String {
    let mut table = Table::new();
    table.load_style(presets::UTF8_FULL_CONDENSED).force_no_tty();
    if let Some(w) = width {
        table.set_width(w).set_content_arrangement(ContentArrangement::Dynamic);
    }
    table.set_header(vec!["Status", "Check", "Time", "Message"]);
    let dim = Style::new().dimmed();
    // Rows for checks `--only` left out say nothing an operator needs: count them instead.
    let deselected = report.checks.iter().filter(|c| c.status == Status::Skip && c.message == NOT_SELECTED).count();
    for c in report.checks.iter().filter(|c| !(c.status == Status::Skip && c.message == NOT_SELECTED)) {
        let st = style(c.status);
        let mut message = c.message.clone();
        if let Some(hint) = &c.hint {
            message.push_str(&format!("\n{dim}→ {hint}{dim:#}"));
        }
        table.add_row(vec![
            format!("{st}{}{st:#}", status_label(c.status)),
            c.id.clone(),
            short_duration(c.duration_ms),
            message,
        ]);
    }
    let files = if report.env_files.is_empty() { "none".to_string() } else { report.env_files.join(", ") };
    let overall = match report.summary.status {
        crate::report::SummaryStatus::Pass => Status::Pass,
        crate::report::SummaryStatus::Warn => Status::Warn,
        crate::report::SummaryStatus::Fail => Status::Fail,
    };
    let st = style(overall);
    let folded = if deselected > 0 { format!(" ({deselected} not selected)") } else { String::new() };
    format!(
        "{} {} · environment {} · env files: {}\n{table}\n{st}{}{st:#}{folded} in {}\n",
        report.tool,
        report.version,
        report.environment,
        files,
        report.summary.line(),
        short_duration(report.duration_ms),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn snapshot_plain() {
        let out = super::format(&crate::format::fixture(), None);
        insta::assert_snapshot!(anstream::adapter::strip_str(&out).to_string());
    }

    #[test]
    fn wraps_to_width() {
        let out = super::format(&crate::format::fixture(), Some(80));
        let plain = anstream::adapter::strip_str(&out).to_string();
        assert!(plain.lines().all(|l| l.chars().count() <= 80), "{plain}");
    }
}
