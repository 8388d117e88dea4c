//! One invocation, from arguments to an exit code. `main` only wires this to
//! the real process (arguments, environment, stdout/stderr, signals); tests
//! drive it in-process with an in-memory [`Output`].

mod diagnose;
mod process;

use clap::Parser;

pub use process::Process;

use crate::cli::{self, Cli, Command, CommonArgs, ListFormat};
use crate::error::UsageError;
use crate::format;
use crate::output::Output;
use crate::report::ExitCode;
use crate::run::load_manifests;

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
    out.set_color(cli.common.color);
    match execute(cli, process, out) {
        Ok(code) => code,
        Err(e) => {
            out.stderr(&format!("mockmate-diag: {e}\n"));
            ExitCode::Usage
        }
    }
}

/// clap's error on one line, keeping what helps: the valid values, the "did you
/// mean", the names of missing arguments. Never its usage block.
fn clap_error(e: &clap::Error, out: &mut Output) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let mut text = e.render().ansi().to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        out.stdout(&text);
        return ExitCode::Ok;
    }
    out.stderr(&format!("mockmate-diag: {}\n", one_line(&e.render().to_string())));
    ExitCode::Usage
}

/// `error: invalid value 'yaml' for '--format <FORMAT>'\n  [possible values: …]\n\nUsage: …`
/// → `invalid value 'yaml' for '--format <FORMAT>' [possible values: …] (see --help)`.
fn one_line(rendered: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if line.is_empty() {
            continue;
        }
        let line = line.strip_prefix("error: ").unwrap_or(line);
        match parts.last_mut() {
            // Missing arguments, one per line after "…were not provided:".
            Some(last) if line.starts_with('<') && last.ends_with('>') => {
                last.push_str(", ");
                last.push_str(line);
            }
            // `[possible values: …]`, or a list after a colon: part of the line before.
            Some(last) if line.starts_with('[') || line.starts_with('<') || last.ends_with(':') => {
                last.push(' ');
                last.push_str(line);
            }
            _ => parts.push(line.to_string()),
        }
    }
    let text = if parts.is_empty() { "invalid arguments".to_string() } else { parts.join("; ") };
    format!("{text} (see --help)")
}

pub fn execute(cli: Cli, process: Process<'_>, out: &mut Output) -> Result<ExitCode, UsageError> {
    let Cli { common, run, command } = cli;
    let Some(command) = command else {
        return diagnose::command(&common, run, process, out);
    };
    // The run's own flags before another subcommand are a mistake, except
    // `--format` before `list`.
    let misplaced = |name: &str, allowed: &[&str]| -> Result<(), UsageError> {
        match run.given().into_iter().find(|f| !allowed.contains(f)) {
            Some(flag) => Err(UsageError::new(format!(
                "{flag} is for runs, not for `{name}` (give it without a subcommand, or after `run`)"
            ))),
            None => Ok(()),
        }
    };
    match command {
        Command::Run(after) => diagnose::command(&common, run.merge(after), process, out),
        Command::List(args) => {
            misplaced("list", &["--format"])?;
            let format = match (args.format, run.format) {
                (Some(f), _) => f,
                (None, Some(f)) => ListFormat::from_run(f)
                    .ok_or_else(|| UsageError::new("list: --format junit is for runs; use table, json or markdown"))?,
                (None, None) => ListFormat::Table,
            };
            list(&common, format, &process, out)
        }
        Command::Completions { shell } => {
            misplaced("completions", &[])?;
            let decls = load_manifests(&common.checks)?.checks;
            out.stdout_plain(&cli::complete::script(shell, &decls));
            Ok(ExitCode::Ok)
        }
        Command::Serve(args) => crate::serve::main(&common, &run, args, process.vars, process.cwd, out),
        Command::Man => {
            misplaced("man", &[])?;
            let page = cli::man::render().map_err(|e| UsageError::new(format!("cannot render the man page: {e}")))?;
            out.stdout_plain(&page);
            Ok(ExitCode::Ok)
        }
    }
}

fn list(
    common: &CommonArgs,
    format: ListFormat,
    process: &Process<'_>,
    out: &mut Output,
) -> Result<ExitCode, UsageError> {
    let decls = load_manifests(&common.checks)?.checks;
    match format {
        ListFormat::Table => out.stdout(&format::list::table(&decls, process.width(out.stdout_columns()))),
        ListFormat::Json => out.stdout_plain(&format::list::json(&decls)),
        ListFormat::Markdown => out.stdout_plain(&format::list::markdown(&decls)),
    }
    Ok(ExitCode::Ok)
}

/// The whole invocation in-process: arguments in, exit code and bytes out.
#[cfg(test)]
mod tests;
