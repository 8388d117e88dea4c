//! `--format table`: what a person reads at a terminal, top to bottom:
//! the build and environment, a table of checks (one line each where the width
//! allows), a "What to do" block with each non-passing check's hint in full on
//! lines of its own (SQL on lines of its own, copyable, never inside a table),
//! and the verdict as the last line. Styled with ANSI; the output stream strips
//! the styling when colour is off (one colour policy, in `output`).

use std::fmt::Write;

use anstyle::{AnsiColor, Style};
use comfy_table::{Cell, CellAlignment, ColumnConstraint, ContentArrangement, Table, Width, presets};
use serde_json::Value;

use super::text::{Piece, hint_pieces, wrap, wrap_sql};
use super::{MIN_WIDTH, Verbosity, short_duration, status_label};
use crate::report::{CheckResult, Ending, Report, Status, SummaryStatus};

/// How to lay the report out.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Columns to fit (the terminal's, `COLUMNS`, or [`super::DEFAULT_WIDTH`]).
    pub width: u16,
    pub verbosity: Verbosity,
}

fn style(status: Status) -> Style {
    match status {
        Status::Pass => Style::new().fg_color(Some(AnsiColor::Green.into())).bold(),
        Status::Warn => Style::new().fg_color(Some(AnsiColor::Yellow.into())).bold(),
        Status::Fail => Style::new().fg_color(Some(AnsiColor::Red.into())).bold(),
        Status::Skip => Style::new().dimmed(),
    }
}

fn overall(report: &Report) -> Status {
    match report.summary.status {
        SummaryStatus::Pass => Status::Pass,
        SummaryStatus::Warn => Status::Warn,
        SummaryStatus::Fail => Status::Fail,
    }
}

/// `Status` and its padding.
const STATUS_WIDTH: usize = 8;
/// `Duration` (its header is the widest value) and its padding.
const DURATION_WIDTH: usize = 10;

/// `text` cut to `room` columns, at a word when one ends late enough, with `…`.
fn truncate(text: &str, room: usize) -> String {
    if super::text::width(text) <= room {
        return text.to_string();
    }
    let mut cut = String::new();
    for c in text.chars() {
        if super::text::width(&cut) + super::text::width(c.encode_utf8(&mut [0; 4])) + 1 > room {
            break;
        }
        cut.push(c);
    }
    if let Some(space) = cut.rfind(' ').filter(|i| *i > room / 2) {
        cut.truncate(space);
    }
    format!("{}…", cut.trim_end_matches([' ', ',', ';', ':']))
}

/// Why a row is folded out of the default table, if it is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Folded {
    NotSelected,
    Interrupted,
    /// Skipped because this need did not pass.
    Blocked(String),
}

fn folded(c: &CheckResult) -> Option<Folded> {
    match &c.ending {
        Ending::NotSelected => Some(Folded::NotSelected),
        // One that was waiting on a service keeps its row: it says on what.
        Ending::Interrupted { phase: None } => Some(Folded::Interrupted),
        Ending::Interrupted { phase: Some(_) } => None,
        Ending::Blocked { need, .. } => Some(Folded::Blocked(need.clone())),
        Ending::Ran | Ending::SkippedByFlag | Ending::Deferred { .. } | Ending::Cut => None,
    }
}

pub fn format(report: &Report, layout: Layout) -> String {
    let width = usize::from(layout.width.max(MIN_WIDTH));
    let mut out = String::new();
    if layout.verbosity != Verbosity::Quiet {
        for line in wrap(&header(report), width, 0, 2) {
            let _ = writeln!(out, "{line}");
        }
        out.push_str(&table(report, layout.verbosity, width));
        if layout.verbosity == Verbosity::Verbose {
            out.push_str(&details(report, width));
            out.push_str(&variables(report, width));
        }
    }
    out.push_str(&what_to_do(report, width));
    out.push_str(&verdict(report, width));
    if layout.verbosity == Verbosity::Quiet {
        // Nothing above the first block to set it apart from.
        return out.trim_start_matches('\n').to_string();
    }
    out
}

/// `mockmate-diag 0.1.0 (commit …, built …) · environment production · env files: .env.production`
/// (attempts are the verdict's business).
fn header(report: &Report) -> String {
    let files = if report.env_files.is_empty() { "none".to_string() } else { report.env_files.join(", ") };
    format!("{} · environment {} · env files: {files}", report.build_line(), report.environment)
}

fn table(report: &Report, verbosity: Verbosity, width: usize) -> String {
    let rows: Vec<&CheckResult> = report
        .checks
        .iter()
        .filter(|c| match verbosity {
            Verbosity::Verbose => folded(c) != Some(Folded::NotSelected),
            _ => folded(c).is_none(),
        })
        .collect();
    let mut out = String::new();
    // Ids and statuses are never wrapped; the message takes what is left. By
    // default one line per check (the non-passing ones are in full under What to
    // do); --verbose wraps every message in full.
    let id_width = rows.iter().map(|c| c.id.len()).max().unwrap_or(5).max(5);
    let room = width.saturating_sub(STATUS_WIDTH + id_width + 2 + DURATION_WIDTH);
    let one_line = verbosity != Verbosity::Verbose && room >= 24;
    let mut truncated = false;
    if !rows.is_empty() {
        let mut table = Table::new();
        table.load_style(presets::NOTHING).force_no_tty();
        table.set_width(u16::try_from(width).unwrap_or(u16::MAX)).set_content_arrangement(ContentArrangement::Dynamic);
        let bold = Style::new().bold();
        table.set_header(
            ["Status", "Check", "Duration", "Message"].iter().map(|h| Cell::new(format!("{bold}{h}{bold:#}"))),
        );
        for c in &rows {
            let st = style(c.status);
            table.add_row(vec![
                Cell::new(format!("{st}{}{st:#}", status_label(c.status))),
                Cell::new(&c.id),
                Cell::new(short_duration(c.duration_ms)).set_alignment(CellAlignment::Right),
                Cell::new(if one_line {
                    let line = truncate(&c.message, room);
                    truncated |= line.len() != c.message.len();
                    line
                } else {
                    c.message.clone()
                }),
            ]);
        }
        // Two spaces between columns, none at the edges: the message gets the room.
        for (i, column) in table.column_iter_mut().enumerate() {
            column.set_padding((0, if i == 3 { 0 } else { 2 }));
        }
        if let Some(column) = table.column_mut(1) {
            column.set_constraint(ColumnConstraint::Absolute(Width::Fixed(u16::try_from(id_width + 2).unwrap_or(40))));
        }
        for line in table.lines() {
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    let hidden = hidden_line(report, verbosity, truncated);
    if !hidden.is_empty() {
        let dim = Style::new().dimmed();
        for line in wrap(&hidden, width, 0, 2) {
            let _ = writeln!(out, "{dim}{line}{dim:#}");
        }
    }
    out
}

/// What the table folded away, in one sentence: `12 checks not run: they need
/// postgres.connect, which failed; 4 need redis.connect, which warned. --verbose lists them.`
fn hidden_line(report: &Report, verbosity: Verbosity, truncated: bool) -> String {
    let mut blocked: Vec<(String, usize)> = Vec::new();
    let (mut not_selected, mut stopped) = (0, 0);
    for c in &report.checks {
        match folded(c) {
            Some(Folded::NotSelected) => not_selected += 1,
            Some(Folded::Interrupted) if verbosity != Verbosity::Verbose => stopped += 1,
            Some(Folded::Blocked(need)) if verbosity != Verbosity::Verbose => {
                match blocked.iter_mut().find(|(n, _)| *n == need) {
                    Some((_, count)) => *count += 1,
                    None => blocked.push((need, 1)),
                }
            }
            _ => {}
        }
    }
    let mut parts: Vec<String> = Vec::new();
    for (i, (need, count)) in blocked.iter().enumerate() {
        let status = report.checks.iter().find(|c| &c.id == need).map_or(Status::Skip, |c| c.status);
        let verb = match (i, *count) {
            (0, 1) => "1 check skipped: it needs".to_string(),
            (0, n) => format!("{n} checks skipped: they need"),
            (_, 1) => "1 needs".to_string(),
            (_, n) => format!("{n} need"),
        };
        parts.push(format!("{verb} {need}, which {}", status.past_tense()));
    }
    if stopped > 0 {
        parts.push(format!("{stopped} not run: interrupted"));
    }
    if not_selected > 0 {
        parts.push(format!("{not_selected} not selected by --only"));
    }
    let folded = !blocked.is_empty() || stopped > 0;
    let more = match (folded, truncated) {
        (true, true) => "--verbose lists them, and every message in full.",
        (true, false) => "--verbose lists them.",
        (false, true) => "--verbose shows every message in full.",
        (false, false) => "",
    };
    match (parts.is_empty(), more.is_empty()) {
        (true, true) => String::new(),
        (true, false) => more.to_string(),
        (false, true) => format!("{}.", parts.join("; ")),
        (false, false) => format!("{}. {more}", parts.join("; ")),
    }
}

/// `--verbose`: each check's details, `key: value` on wrapped lines.
fn details(report: &Report, width: usize) -> String {
    let with: Vec<&CheckResult> = report.checks.iter().filter(|c| !c.details.is_empty()).collect();
    if with.is_empty() {
        return String::new();
    }
    let bold = Style::new().bold();
    let mut out = format!("\n{bold}Details{bold:#}\n");
    for c in with {
        let fields: Vec<String> = c.details.iter().map(|(k, v)| format!("{k}: {}", detail_value(v))).collect();
        let _ = writeln!(out, "{}", c.id);
        for line in wrap(&fields.join(", "), width, 2, 2) {
            let _ = writeln!(out, "  {}", line.trim_start());
        }
    }
    out
}

/// A detail for people: strings without quotes, lists joined by commas.
fn detail_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "none".to_string(),
        Value::Array(items) => format!("[{}]", items.iter().map(detail_value).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

/// `--verbose`: the variables the checks read, where each came from, never its value.
fn variables(report: &Report, width: usize) -> String {
    if report.variables.is_empty() {
        return String::new();
    }
    let bold = Style::new().bold();
    let mut out = format!("\n{bold}Variables read{bold:#} (values never shown)\n");
    let name_width = report.variables.iter().map(|v| v.name.len()).max().unwrap_or(0);
    for v in &report.variables {
        let what = if v.present { format!("set, {} bytes, from {}", v.length, v.source) } else { "unset".to_string() };
        let lines = wrap(&what, width, name_width + 4, name_width + 4);
        let _ = writeln!(out, "  {:<name_width$}  {}", v.name, lines.join("\n"));
    }
    out
}

/// Each non-passing check: its status, id and message, then its hint in full,
/// prose wrapped, SQL on lines of its own. Notes first.
fn what_to_do(report: &Report, width: usize) -> String {
    let todo: Vec<&CheckResult> =
        report.checks.iter().filter(|c| matches!(c.status, Status::Warn | Status::Fail)).collect();
    if todo.is_empty() && report.notes.is_empty() {
        return String::new();
    }
    let bold = Style::new().bold();
    let mut out = format!("\n{bold}What to do{bold:#}\n");
    const INDENT: usize = 6;
    for note in &report.notes {
        let st = Style::new().fg_color(Some(AnsiColor::Cyan.into())).bold();
        let lines = wrap(note, width, INDENT, INDENT);
        let _ = writeln!(out, "{st}NOTE{st:#}  {}", lines.join("\n"));
    }
    for c in todo {
        let st = style(c.status);
        let lines = wrap(&format!("{}: {}", c.id, c.message), width, INDENT, INDENT);
        let first = lines.first().cloned().unwrap_or_default();
        let (id, rest) = first.split_at(c.id.len().min(first.len()));
        let _ = writeln!(out, "{st}{}{st:#}  {bold}{id}{bold:#}{rest}", status_label(c.status));
        for line in lines.iter().skip(1) {
            let _ = writeln!(out, "{line}");
        }
        let Some(hint) = &c.hint else { continue };
        for piece in hint_pieces(hint) {
            match piece {
                Piece::Prose(text) => {
                    let pad = " ".repeat(INDENT);
                    for line in wrap(&text, width, INDENT, INDENT) {
                        let line = if line.starts_with(&pad) { line } else { format!("{pad}{line}") };
                        let _ = writeln!(out, "{line}");
                    }
                }
                Piece::Sql(sql) => {
                    for line in wrap_sql(&sql, width, INDENT + 2) {
                        let _ = writeln!(out, "{line}");
                    }
                }
            }
        }
    }
    out
}

/// The last line: the judgement, in words, with the counts:
/// `FAIL  production is not ready: 2 failed, 1 warned, 4 passed, 17 skipped (7ms)`.
fn verdict(report: &Report, width: usize) -> String {
    let s = &report.summary;
    let status = overall(report);
    let env = &report.environment;
    // After an interrupt the skips are the line above the table's business; the
    // verdict says how many checks got an answer.
    let stopped = report.checks.iter().filter(|c| c.ending.interrupted()).count();
    // Part of the suite (`--only`, `--skip`): a pass speaks for the checks run, never
    // for the environment, and the line says how much ran.
    let ran_only = super::ran_only(report);
    let left_out = ran_only.as_ref().map_or(0, |ran| report.checks.len() - ran.len());
    let counts = || {
        let skipped = if report.interrupted { 0 } else { s.skip - left_out.min(s.skip) };
        [(s.fail, "failed"), (s.warn, "warned"), (s.pass, "passed"), (skipped, "skipped")]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, w)| format!("{n} {w}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let judgement = if report.interrupted {
        let finished = report.checks.len() - stopped;
        format!("interrupted after {finished} of {} checks: {}", report.checks.len(), counts())
    } else if let Some(ran) = &ran_only {
        let subject = if ran.len() <= 3 { ran.join(", ") } else { format!("the {} checks run", ran.len()) };
        let one = ran.len() == 1;
        let words = match status {
            Status::Fail => format!("{env} is not ready: {}", counts()),
            Status::Warn if report.options.fail_on.trips(Status::Warn) => {
                format!("{env} is not ready (--fail-on warn): {}", counts())
            }
            Status::Warn => format!(
                "{subject} {}, with {}: {}",
                if one { "works" } else { "work" },
                if s.warn == 1 { "a warning" } else { "warnings" },
                counts()
            ),
            // Every check run passed: the counts would only repeat it.
            Status::Pass | Status::Skip if s.pass == ran.len() => {
                format!("{subject} {}", if one { "passes" } else { "pass" })
            }
            Status::Pass | Status::Skip => format!("{subject}: {}", counts()),
        };
        format!("{words} — {} of {} checks run", ran.len(), report.checks.len())
    } else {
        let words = match status {
            Status::Fail => format!("{env} is not ready"),
            Status::Warn if report.options.fail_on.trips(Status::Warn) => {
                format!("{env} is not ready (--fail-on warn)")
            }
            Status::Warn => format!("{env} works, with {}", if s.warn == 1 { "a warning" } else { "warnings" }),
            Status::Pass | Status::Skip => format!("{env} is ready"),
        };
        format!("{words}: {}", counts())
    };
    let mut timing = short_duration(report.duration_ms);
    if report.attempts > 1 {
        let _ = write!(timing, ", {} attempts", report.attempts);
    }
    let st = style(status);
    let label = status_label(status);
    let lines = wrap(&format!("{judgement} ({timing})"), width, label.len() + 2, label.len() + 2);
    let mut out = format!("\n{st}{label}{st:#}  {}\n", lines.first().cloned().unwrap_or_default());
    for line in lines.iter().skip(1) {
        let _ = writeln!(out, "{line}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{fixture, text::width};

    fn plain(report: &Report, width: u16, verbosity: Verbosity) -> String {
        anstream::adapter::strip_str(&format(report, Layout { width, verbosity })).to_string()
    }

    #[test]
    fn snapshot_80_columns() {
        insta::assert_snapshot!(plain(&fixture(), 80, Verbosity::Normal));
    }

    #[test]
    fn snapshot_120_columns_verbose() {
        insta::assert_snapshot!(plain(&fixture(), 120, Verbosity::Verbose));
    }

    #[test]
    fn snapshot_quiet() {
        insta::assert_snapshot!(plain(&fixture(), 80, Verbosity::Quiet));
    }

    #[test]
    fn every_line_fits_and_the_sql_hint_is_whole_on_lines_of_its_own() {
        for w in [40, 60, 80, 100, 120] {
            let out = plain(&fixture(), w, Verbosity::Verbose);
            for line in out.lines() {
                // Only a single unbreakable word may overflow.
                assert!(width(line) <= usize::from(w) || !line.trim().contains(' '), "{w}: {line:?}\n{out}");
            }
            let sql: Vec<&str> = out
                .lines()
                .skip_while(|l| !l.trim_start().starts_with("INSERT INTO users"))
                .take_while(|l| l.starts_with("        "))
                .map(str::trim)
                .collect();
            assert_eq!(
                sql.join(" "),
                "INSERT INTO users (id, email, first_name, last_name, credits, is_active, is_verified) VALUES \
                 (gen_random_uuid(), 'test@mock-mate.com', 'Test', 'User', 10, true, true);",
                "{w}:\n{out}"
            );
        }
    }

    #[test]
    fn the_verdict_is_the_last_line_and_says_what_it_means() {
        let mut report = fixture();
        let out = plain(&report, 100, Verbosity::Normal);
        assert_eq!(
            out.lines().last(),
            Some("FAIL  production is not ready: 2 failed, 1 warned, 2 passed, 2 skipped (41ms)")
        );
        report.checks.retain(|c| c.status != Status::Fail);
        report.summary = crate::report::Summary::of(&report.checks);
        let out = plain(&report, 100, Verbosity::Normal);
        assert_eq!(
            out.lines().last(),
            Some("WARN  production works, with a warning: 1 warned, 2 passed, 2 skipped (41ms)")
        );
        report.options.fail_on = crate::report::FailOn::Warn;
        let out = plain(&report, 100, Verbosity::Normal);
        assert_eq!(
            out.lines().last(),
            Some("WARN  production is not ready (--fail-on warn): 1 warned, 2 passed, 2 skipped (41ms)")
        );
        report.checks.retain(|c| c.status != Status::Warn);
        report.summary = crate::report::Summary::of(&report.checks);
        report.attempts = 3;
        let out = plain(&report, 100, Verbosity::Normal);
        assert_eq!(out.lines().last(), Some("PASS  production is ready: 2 passed, 2 skipped (41ms, 3 attempts)"));
    }

    /// `--only postgres.connect`: never "production is ready".
    #[test]
    fn a_verdict_on_part_of_the_suite_says_how_much_ran() {
        let mut report = fixture();
        let total = report.checks.len();
        let first_pass = report.checks.iter().position(|c| c.status == Status::Pass).expect("a pass");
        let only = report.checks[first_pass].id.clone();
        for (i, c) in report.checks.iter_mut().enumerate() {
            if i != first_pass {
                c.status = Status::Skip;
                c.message = "not selected by --only".to_string();
                c.ending = Ending::NotSelected;
            }
        }
        report.options.only = vec![only.clone()];
        report.summary = crate::report::Summary::of(&report.checks);
        let out = plain(&report, 100, Verbosity::Normal);
        let want = format!("PASS  {only} passes — 1 of {total} checks run (41ms)");
        assert_eq!(out.lines().last(), Some(want.as_str()));
        assert!(!out.contains("is ready"), "{out}");
        // A failure among them: the environment is not ready, whatever else was left out.
        report.checks[first_pass].status = Status::Fail;
        report.summary = crate::report::Summary::of(&report.checks);
        let out = plain(&report, 100, Verbosity::Normal);
        let want = format!("FAIL  production is not ready: 1 failed — 1 of {total} checks run (41ms)");
        assert_eq!(out.lines().last(), Some(want.as_str()));
    }
}
