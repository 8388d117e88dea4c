//! The run command: plan, progress line, `--wait`, signals, and the report on
//! stdout and in `--report` files.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::Process;
use crate::cli::{CommonArgs, ReportTarget, RunArgs};
use crate::engine::{Observer, Quiet, Selection};
use crate::error::UsageError;
use crate::format::table::Layout;
use crate::format::{self, Format, Verbosity};
use crate::output::Output;
use crate::progress::Progress;
use crate::report::{ExitCode, FailOn, Report};
use crate::run::{Interrupt, Plan, Request, Retry};

/// Renders `report` in `format`: the one dispatch over formats.
fn render(report: &Report, format: Format, fail_on: FailOn, layout: Layout) -> String {
    match format {
        Format::Table => format::table::format(report, layout),
        Format::Json => format::json::format(report),
        Format::Markdown => format::markdown::format(report),
        Format::Junit => format::junit::format(report, fail_on),
    }
}

/// Opens every `--report` file before any check runs: a bad path is a usage error, not a lost artifact.
fn open_reports(targets: &[ReportTarget]) -> Result<Vec<(Format, File, String)>, UsageError> {
    targets
        .iter()
        .map(|t| {
            let label = t.path.display().to_string();
            File::create(&t.path)
                .map(|f| (t.format, f, label.clone()))
                .map_err(|e| UsageError::new(format!("--report {label}: cannot write: {e}")))
        })
        .collect()
}

pub(super) fn run(
    common: &CommonArgs,
    args: RunArgs,
    process: Process<'_>,
    out: &mut Output,
) -> Result<ExitCode, UsageError> {
    let width = process.width(out.stdout_columns());
    // A file is not a terminal: COLUMNS, else the default.
    let file_width = process.width(None);
    let in_ci = process.var("CI").is_some_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"));
    let format = args.format();
    let fail_on = args.fail_on();
    let request = Request {
        env: common.env.clone(),
        env_files: common.env_file.clone(),
        checks: common.checks.clone(),
        only: args.only.clone(),
        skip: args.skip.clone(),
        timeout: common.timeout,
        allow_writes: args.allow_writes,
        user_id: args.user_id,
        api_url: args.api_url.clone(),
        fail_on,
        wait: args.wait,
    };
    let signals = process.signals;
    let plan = Plan::load(request, process.vars, process.cwd)?;
    // From here on the redactor knows the secrets of the env files too.
    let mut redactor = out.redactor().clone();
    redactor.extend(&plan.secrets());
    out.set_redactor(redactor);
    let mut report_files = open_reports(&args.report)?;
    if let Some(wait) = args.wait
        && wait < common.timeout
    {
        out.stderr(&format!(
            "mockmate-diag: warning: --wait {} is shorter than --timeout {}: each check gets only what is left of the wait\n",
            humantime::format_duration(wait),
            humantime::format_duration(common.timeout),
        ));
    }
    let view = plan.view();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| UsageError::new(format!("cannot start the async runtime: {e}")))?;
    let interrupt = Interrupt::default();
    if signals {
        listen_for_signals(&runtime, &interrupt);
    }
    let verbosity = args.verbosity();
    let show_progress = format == Format::Table
        && verbosity != Verbosity::Quiet
        && !in_ci
        && out.stderr_is_terminal()
        && out.stdout_is_terminal();
    let started = SystemTime::now();
    let clock = Instant::now();
    let shown: &Output = out;
    let observe = |selection: &Selection| -> Arc<dyn Observer> {
        if show_progress {
            // indicatif pads its line to the width it is given. Three columns short of the
            // edge, the "^C" the terminal echoes after it stays on the same line, which the
            // bar then clears; at the edge it would wrap onto a line the bar never clears.
            Arc::new(Progress::new(plan.running(selection), shown.stderr_term(width.saturating_sub(3))))
        } else {
            Arc::new(Quiet)
        }
    };
    let on_retry = |retry: &Retry<'_>| {
        let failing: Vec<String> = retry.failing.iter().map(|c| format!("{} ({})", c.id, c.message)).collect();
        shown.stderr(&format!(
            "mockmate-diag: waiting: attempt {} still failing: {}; retrying in {}\n",
            retry.attempt,
            failing.join("; "),
            humantime::format_duration(Duration::from_millis(retry.pause.as_millis() as u64))
        ));
    };
    let diagnosis = runtime.block_on(plan.diagnose(&view, &interrupt, observe, on_retry));
    let mut report = plan.report(diagnosis.checks, &view, started, clock.elapsed());
    report.attempts = diagnosis.attempts;
    report.interrupted = diagnosis.interrupted.is_some();
    if report.interrupted {
        // Not a verdict on the environment: a gate that reads summary.status must
        // not take an interrupted run for a pass or a mere warning (the table says FAIL too).
        report.summary.status = crate::report::SummaryStatus::Fail;
    }
    // Connections close with the runtime; never wait on a hung server's goodbye.
    runtime.shutdown_timeout(Duration::from_millis(100));
    out.redactor().redact_report(&mut report);
    if let Some(signal) = diagnosis.interrupted {
        let finished = report.checks.iter().filter(|c| !is_interrupted(c)).count();
        let during = match args.wait {
            Some(wait) => format!(
                " during --wait {} (after {} {}): the wait was interrupted",
                humantime::format_duration(wait),
                report.attempts,
                if report.attempts == 1 { "attempt" } else { "attempts" }
            ),
            None => String::new(),
        };
        out.stderr(&format!(
            "mockmate-diag: interrupted by {signal}{during}; reporting what finished ({finished} of {} checks)\n",
            report.checks.len()
        ));
    }

    for (file_format, file, label) in &mut report_files {
        let layout = Layout { width: file_width, verbosity };
        // Files never get colour, whatever --color says.
        let text = anstream::adapter::strip_str(&render(&report, *file_format, fail_on, layout)).to_string();
        let clean = out.redactor().redact(&text).into_owned();
        file.write_all(clean.as_bytes())
            .map_err(|e| UsageError::new(format!("--report {label}: cannot write: {e}")))?;
    }
    let text = render(&report, format, fail_on, Layout { width, verbosity });
    if format == Format::Table {
        out.stdout(&text);
    } else {
        out.stdout_plain(&text);
    }
    Ok(report.exit_code(fail_on))
}

fn is_interrupted(c: &crate::report::CheckResult) -> bool {
    c.details.get(crate::run::INTERRUPTED).and_then(serde_json::Value::as_bool) == Some(true)
}

/// SIGINT and SIGTERM interrupt the run (the report of what finished is still
/// printed); a second one ends the process at once. The handlers are installed
/// before the run starts, so no signal can fall between.
fn listen_for_signals(runtime: &tokio::runtime::Runtime, interrupt: &Interrupt) {
    use tokio::signal::unix::{SignalKind, signal};
    let _entered = runtime.enter();
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return;
    };
    let interrupt = interrupt.clone();
    runtime.spawn(async move {
        let first = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        interrupt.trigger(first);
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        std::process::exit(ExitCode::Interrupted as i32);
    });
}
