//! The run command: plan, progress line, `--wait`, signals, and the report on
//! stdout and in `--report` files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::process::Process;
use crate::cli::{CommonArgs, ReportTarget, RunArgs};
use crate::engine::{Observer, Quiet, Selection};
use crate::error::UsageError;
use crate::format::table::Layout;
use crate::format::{self, Format, Verbosity};
use crate::output::Output;
use crate::progress::Progress;
use crate::report::{Ending, ExitCode, Report};
use crate::run::{self, Interrupt, Plan, Request, Retry, Threads};

/// Renders `report` in `format`: the one dispatch over formats.
fn render(report: &Report, format: Format, layout: Layout) -> String {
    match format {
        Format::Table => format::table::format(report, layout),
        Format::Json => format::json::format(report),
        Format::Markdown => format::markdown::format(report),
        Format::Junit => format::junit::format(report),
    }
}

pub(super) fn command(
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
        fail_on: args.fail_on(),
        wait: args.wait,
    };
    let signals = process.signals;
    let plan = Plan::load(request, process.vars, process.cwd)?;
    // From here on the redactor knows the secrets of the env files too.
    let mut redactor = out.redactor().clone();
    redactor.extend(&plan.secrets());
    out.set_redactor(redactor);
    one_path_per_report(&args.report, process.cwd)?;
    let report_files = args
        .report
        .iter()
        .map(|t| out.open_file(&t.path, process.cwd).map(|id| (t.format, id)))
        .collect::<Result<Vec<_>, _>>()?;
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

    let runtime = run::runtime(Threads::All)?;
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
            Arc::new(Progress::new(selection.count(&plan.decls), shown.stderr_term(width.saturating_sub(3))))
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
    // A second signal abandons the run: no report, exit at once.
    let diagnosis = runtime.block_on(async {
        tokio::select! {
            diagnosis = plan.diagnose(&view, &interrupt, observe, on_retry) => Some(diagnosis),
            () = interrupt.abandoned() => None,
        }
    });
    let Some(diagnosis) = diagnosis else {
        runtime.shutdown_background();
        return Ok(ExitCode::Interrupted);
    };
    let signal = diagnosis.interrupted;
    let report = plan.report(diagnosis, &view, started, clock.elapsed());
    // Connections close with the runtime; never wait on a hung server's goodbye.
    runtime.shutdown_timeout(Duration::from_millis(100));
    let report = out.redacted(&report);
    if let Some(signal) = signal {
        let finished = report.checks.iter().filter(|c| !c.ending.interrupted()).count();
        let during = match args.wait {
            Some(wait) => format!(
                " during --wait {} (after {} {}): the wait was interrupted",
                humantime::format_duration(wait),
                report.attempts,
                if report.attempts == 1 { "attempt" } else { "attempts" }
            ),
            None => String::new(),
        };
        let running: Vec<String> = report
            .checks
            .iter()
            .filter_map(|c| match &c.ending {
                Ending::Interrupted { phase: Some(phase) } => Some(format!("{}: {phase}", c.id)),
                _ => None,
            })
            .collect();
        let running = match running.is_empty() {
            true => String::new(),
            false => format!("; still running: {}", running.join("; ")),
        };
        out.stderr(&format!(
            "mockmate-diag: interrupted by {signal}{during}; reporting what finished ({finished} of {} checks){running}\n",
            report.checks.len()
        ));
    }

    // Report files are artifacts: whole whatever --quiet or --verbose says of stdout.
    for (file_format, file) in &report_files {
        out.file(*file, &render(&report, *file_format, Layout { width: file_width, verbosity: Verbosity::Normal }))?;
    }
    let text = render(&report, format, Layout { width, verbosity });
    if format == Format::Table {
        out.stdout(&text);
    } else {
        out.stdout_plain(&text);
    }
    Ok(report.exit_code())
}

/// Two `--report` flags naming one file would leave only the last one's
/// report in it: a usage error, before anything runs.
fn one_path_per_report(targets: &[ReportTarget], cwd: &Path) -> Result<(), UsageError> {
    // Lexically, from the working directory: `out/r.xml` and `./out/r.xml` are one file.
    let key = |path: &Path| -> PathBuf {
        cwd.join(path).components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect()
    };
    for (i, later) in targets.iter().enumerate() {
        if let Some(first) = targets[..i].iter().find(|t| key(&t.path) == key(&later.path)) {
            return Err(UsageError::new(format!(
                "--report {} and --report {} both write {}: give each report its own path",
                first.spec(),
                later.spec(),
                later.path.display()
            )));
        }
    }
    Ok(())
}

/// SIGINT and SIGTERM interrupt the run (the report of what finished is still
/// printed); a second one abandons it ([`Interrupt::abandoned`]). The handlers
/// are installed before the run starts, so no signal can fall between.
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
        let again = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        interrupt.trigger(again);
    });
}
