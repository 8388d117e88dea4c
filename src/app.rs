//! One invocation, from arguments to an exit code. `main` only wires this to
//! the real process (arguments, environment, stdout/stderr); tests drive it
//! in-process with an in-memory [`Output`].

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command, ListArgs, ReportTarget, RunArgs};
use crate::engine::{Observer, Quiet, Selection};
use crate::error::UsageError;
use crate::format::{self, Format};
use crate::output::Output;
use crate::progress::Progress;
use crate::report::{CheckResult, ExitCode, FailOn, Report, Status};
use crate::run::{Plan, Request, load_manifests};

/// The process's inputs, so tests and `main` drive the same code.
pub struct Process<'a> {
    pub vars: Vec<(String, String)>,
    pub cwd: &'a Path,
}

impl Process<'_> {
    fn var(&self, name: &str) -> Option<&str> {
        self.vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Parses `args` (the program name first) and runs them. Help and version go to
/// stdout; an argument error is one redacted line on stderr and exit code 2.
pub fn main<I, T>(args: I, process: Process<'_>, out: &mut Output) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return clap_error(&e, out),
    };
    let color = match &cli.command {
        Some(Command::Run(a)) => a.color,
        Some(_) => crate::output::ColorWhen::Auto,
        None => cli.run.color,
    };
    out.set_color(color);
    match execute(cli, process, out) {
        Ok(code) => code,
        Err(e) => {
            out.stderr(&format!("mockmate-diag: {e}\n"));
            ExitCode::Usage
        }
    }
}

fn clap_error(e: &clap::Error, out: &mut Output) -> ExitCode {
    match e.kind() {
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
            out.stdout(&e.render().ansi().to_string());
            ExitCode::Ok
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
            let first = first.trim_start_matches("error: ");
            out.stderr(&format!("mockmate-diag: {first} (see --help)\n"));
            ExitCode::Usage
        }
    }
}

pub fn execute(cli: Cli, process: Process<'_>, out: &mut Output) -> Result<ExitCode, UsageError> {
    match cli.command {
        Some(Command::List(args)) => list(&args, out),
        Some(Command::Run(args)) => run(args, process, out),
        Some(Command::Completions { shell }) => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "mockmate-diag", &mut buf);
            out.stdout_plain(&String::from_utf8_lossy(&buf));
            Ok(ExitCode::Ok)
        }
        Some(Command::Man) => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut buf)
                .map_err(|e| UsageError::new(format!("cannot render the man page: {e}")))?;
            out.stdout_plain(&String::from_utf8_lossy(&buf));
            Ok(ExitCode::Ok)
        }
        None => run(cli.run, process, out),
    }
}

fn list(args: &ListArgs, out: &mut Output) -> Result<ExitCode, UsageError> {
    let decls = load_manifests(&args.checks)?.checks;
    match args.format {
        Format::Table => out.stdout(&format::list::table(&decls)),
        Format::Json => out.stdout_plain(&format::list::json(&decls)),
        Format::Markdown => out.stdout_plain(&format::list::markdown(&decls)),
        Format::Junit => return Err(UsageError::new("list: --format junit is for runs; use table, json or markdown")),
    }
    Ok(ExitCode::Ok)
}

/// Renders `report` in `format`: the one dispatch over formats.
fn render(report: &Report, format: Format, fail_on: FailOn, width: Option<u16>) -> String {
    match format {
        Format::Table => format::table::format(report, width),
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

fn run(args: RunArgs, process: Process<'_>, out: &mut Output) -> Result<ExitCode, UsageError> {
    let columns = process.var("COLUMNS").and_then(|c| c.trim().parse::<u16>().ok());
    let in_ci = process.var("CI").is_some_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"));
    let request = Request {
        env: args.env.clone(),
        env_files: args.env_file.clone(),
        checks: args.checks.clone(),
        only: args.only.clone(),
        skip: args.skip.clone(),
        timeout: args.timeout,
        allow_writes: args.allow_writes,
        user_id: args.user_id,
    };
    let plan = Plan::load(request, process.vars, process.cwd)?;
    // From here on the redactor knows the secrets of the env files too.
    let mut redactor = out.redactor().clone();
    redactor.extend(&plan.secrets());
    out.set_redactor(redactor);
    let mut report_files = open_reports(&args.report)?;
    let view = plan.view();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| UsageError::new(format!("cannot start the async runtime: {e}")))?;
    let show_progress = args.format == Format::Table && !in_ci && out.stderr_is_terminal() && out.stdout_is_terminal();
    let started = SystemTime::now();
    let clock = Instant::now();

    let attempt = |selection: &Selection| {
        let observer: Arc<dyn Observer> = if show_progress {
            Arc::new(Progress::new(plan.running(selection), out.stderr_term(table_width(columns))))
        } else {
            Arc::new(Quiet)
        };
        let results = runtime.block_on(plan.attempt(selection, &view, observer.clone()));
        drop(observer);
        results
    };
    let mut checks = attempt(&plan.selection);
    if let Some(wait) = args.wait {
        checks = wait_until_settled(&plan, &args, checks, clock + wait, out, attempt);
    }
    let mut report = plan.report(checks, &view, started, clock.elapsed());
    // Connections close with the runtime; never wait on a hung server's goodbye.
    runtime.shutdown_timeout(Duration::from_millis(100));
    out.redactor().redact_report(&mut report);

    let width = Some(table_width(columns));
    for (format, file, label) in &mut report_files {
        let text = render(&report, *format, args.fail_on, None);
        let clean = out.redactor().redact(&text).into_owned();
        file.write_all(clean.as_bytes())
            .map_err(|e| UsageError::new(format!("--report {label}: cannot write: {e}")))?;
    }
    let text = render(&report, args.format, args.fail_on, width);
    if args.format == Format::Table {
        out.stdout(&text);
    } else {
        out.stdout_plain(&text);
    }
    Ok(report.exit_code(args.fail_on))
}

/// `--wait`: re-runs what keeps the gate closed — service checks at or above
/// `--fail-on`, and checks skipped because something they need did not pass —
/// with exponential backoff (250 ms doubling to 5 s) until none is left or the
/// deadline passes. Skips by choice (`--skip`, read-only runs) are final.
fn wait_until_settled(
    plan: &Plan,
    args: &RunArgs,
    mut checks: Vec<CheckResult>,
    deadline: Instant,
    out: &Output,
    attempt: impl Fn(&Selection) -> Vec<CheckResult>,
) -> Vec<CheckResult> {
    let mut backoff = Duration::from_millis(250);
    for n in 2.. {
        let retry: Vec<&CheckResult> =
            checks.iter().filter(|c| plan.worth_retrying(&c.id, &checks, args.fail_on)).collect();
        let now = Instant::now();
        if retry.is_empty() || now >= deadline {
            break;
        }
        let pause = backoff.min(deadline - now);
        let failing: Vec<String> =
            retry.iter().filter(|c| c.status != Status::Skip).map(|c| format!("{} ({})", c.id, c.message)).collect();
        out.stderr(&format!(
            "mockmate-diag: waiting: attempt {} still failing: {}; retrying in {}\n",
            n - 1,
            failing.join("; "),
            humantime::format_duration(Duration::from_millis(pause.as_millis() as u64))
        ));
        std::thread::sleep(pause);
        backoff = (backoff * 2).min(Duration::from_secs(5));
        let ids: Vec<String> = retry.iter().map(|c| c.id.clone()).collect();
        let Ok(selection) = Selection::new(&plan.decls, &ids, &args.skip) else { break };
        for fresh in attempt(&selection) {
            if selection.runs(&fresh.id)
                && let Some(slot) = checks.iter_mut().find(|c| c.id == fresh.id)
            {
                *slot = fresh;
            }
        }
    }
    checks
}

/// Wrap the table to `COLUMNS` or the terminal, else to 120 columns (a pipe, a pasted ticket).
fn table_width(columns: Option<u16>) -> u16 {
    // comfy-table asks the terminal for its size when stdout is one.
    columns.or_else(|| comfy_table::Table::new().width()).filter(|w| *w >= 60).unwrap_or(120)
}

/// The whole invocation in-process: arguments in, exit code and bytes out.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Captured;
    use crate::redact::Redactor;

    const SENTINEL: &str = "S3ntinel-in-process-9f2";

    fn invoke<S: AsRef<str>>(args: &[S], vars: &[(&str, &str)], cwd: &Path) -> (ExitCode, Captured) {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let redactor = Redactor::from_env(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let (mut out, captured) = Output::memory(redactor);
        let argv = std::iter::once("mockmate-diag").chain(args.iter().map(AsRef::as_ref));
        let code = main(argv, Process { vars, cwd }, &mut out);
        (code, captured)
    }

    fn env_only(extra: &[&str]) -> Vec<String> {
        ["--env", "production", "--only", "env.required,env.secrets,env.node_env"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn exit_codes_follow_the_report_and_fail_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = [
            ("NODE_ENV", "production"),
            ("JWT_SECRET", "Zq3v9LrT0pXy2Wn8KbD4sHf7JmC1gQe6Ab"),
            ("REDIS_URL", "redis://127.0.0.1:1"),
            ("DATABASE_URL", "postgres://app:pw@127.0.0.1:1/mockmate"),
        ];
        let (code, out) = invoke(&env_only(&["--format", "json"]), &good, dir.path());
        assert_eq!(code, ExitCode::Ok, "{}", out.stdout());
        let report: serde_json::Value = serde_json::from_str(&out.stdout()).expect("one JSON document");
        assert_eq!(report["summary"]["status"], "pass");
        let (code, _) = invoke(&env_only(&[]), &[], dir.path());
        assert_eq!(code, ExitCode::ChecksFailed);
        let (code, out) = invoke(&["--formt", "json"], &[], dir.path());
        assert_eq!(code, ExitCode::Usage);
        assert!(out.stdout().is_empty() && out.stderr().starts_with("mockmate-diag: "), "{}", out.stderr());
    }

    #[test]
    fn no_format_and_no_error_path_prints_a_planted_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("postgres://app:{SENTINEL}@127.0.0.1:1/mockmate");
        let vars = [
            ("NODE_ENV", "production"),
            ("JWT_SECRET", SENTINEL),
            ("DATABASE_URL", url.as_str()),
            ("REDIS_URL", "redis://:S3ntinel-redis-pw@127.0.0.1:1/0"),
        ];
        for format in ["table", "json", "markdown", "junit"] {
            let args = ["--env", "production", "--timeout", "500ms", "--format", format];
            let (_, out) = invoke(&args, &vars, dir.path());
            for text in [out.stdout(), out.stderr()] {
                assert!(!text.contains(SENTINEL) && !text.contains("S3ntinel-redis-pw"), "{format}: {text}");
            }
        }
        let (code, out) = invoke(&["--env", "production", "--only", "nope"], &vars, dir.path());
        assert_eq!(code, ExitCode::Usage);
        assert!(!out.stderr().contains(SENTINEL));
    }

    #[test]
    fn formats_are_chosen_by_flag_and_machine_formats_never_get_colour() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, out) = invoke(&env_only(&["--format", "junit", "--color", "always"]), &[], dir.path());
        assert!(out.stdout().starts_with("<?xml"), "{}", out.stdout());
        assert!(!out.stdout().contains('\x1b'));
        let (_, out) = invoke(&env_only(&["--format", "markdown"]), &[], dir.path());
        assert!(out.stdout().starts_with("## mockmate-diag report"), "{}", out.stdout());
        let (_, out) = invoke(&env_only(&["--color", "always"]), &[], dir.path());
        assert!(out.stdout().contains('\x1b'), "table in colour when asked");
    }
}
