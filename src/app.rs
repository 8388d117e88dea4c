//! One invocation, from parsed arguments to an exit code. `main` only wires
//! this to the real process (arguments, environment, stdout/stderr).

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::cli::{Cli, Command, ListArgs, RunArgs};
use crate::engine::{self, Ctx, Selection};
use crate::envctx::{EnvSet, EnvView};
use crate::error::UsageError;
use crate::format::{self, Format};
use crate::manifest::{self, CheckDecl, Source};
use crate::output::Output;
use crate::redact::Redactor;
use crate::report::{ExitCode, Report, SCHEMA_VERSION, Summary, TOOL, VERSION};

/// The process's inputs, so tests and `main` drive the same code.
pub struct Process<'a> {
    pub vars: Vec<(String, String)>,
    pub cwd: &'a Path,
}

pub fn execute(cli: Cli, process: Process<'_>, out: &mut Output) -> Result<ExitCode, UsageError> {
    match cli.command {
        Some(Command::List(args)) => list(&args, out),
        Some(Command::Run(args)) => run(args, process, out),
        None => run(cli.run, process, out),
    }
}

fn load_manifests(extra: &[std::path::PathBuf]) -> Result<Vec<CheckDecl>, UsageError> {
    let mut sources = vec![Source::builtin()];
    for path in extra {
        sources.extend(Source::from_path(path)?);
    }
    manifest::load(&sources)
}

fn list(args: &ListArgs, out: &mut Output) -> Result<ExitCode, UsageError> {
    let decls = load_manifests(&args.checks)?;
    match args.format {
        Format::Table => out.stdout(&format::list::table(&decls)),
        Format::Json => out.stdout_plain(&format::list::json(&decls)),
    }
    Ok(ExitCode::Ok)
}

fn run(args: RunArgs, process: Process<'_>, out: &mut Output) -> Result<ExitCode, UsageError> {
    let environment = args
        .env
        .clone()
        .or_else(|| process.vars.iter().find(|(k, _)| k == "NODE_ENV").map(|(_, v)| v.trim().to_string()))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "development".to_string());
    let set = EnvSet::load(process.vars, process.cwd, &environment, &args.env_file)?;
    // From here on the redactor knows the secrets of the env files too.
    let mut redactor = out.redactor().clone();
    redactor.extend(&Redactor::from_env(set.iter()));
    out.set_redactor(redactor);

    let decls = load_manifests(&args.checks)?;
    let selection = Selection::new(&decls, &args.only, &args.skip)?;
    let set = Arc::new(set);
    let view = EnvView::new(set.clone());
    let mut ctx = Ctx::new(view.clone(), environment.clone(), args.timeout);
    ctx.allow_writes = args.allow_writes;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| UsageError::new(format!("cannot start the async runtime: {e}")))?;
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let clock = Instant::now();
    let checks = runtime.block_on(engine::run(&decls, &selection, Arc::new(ctx)));
    let report = Report {
        tool: TOOL,
        version: VERSION,
        schema_version: SCHEMA_VERSION,
        environment,
        env_files: set.files().to_vec(),
        started_at,
        duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
        summary: Summary::of(&checks),
        checks,
        variables: view.uses(),
    };
    // Connections close with the runtime; never wait on a hung server's goodbye.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match args.format {
        Format::Table => {
            let width = terminal_width(out);
            out.stdout(&format::table::format(&report, width));
        }
        Format::Json => out.stdout_plain(&format::json::format(&report)),
    }
    Ok(report.exit_code(args.fail_on))
}

fn terminal_width(out: &Output) -> Option<u16> {
    if !out.stdout_is_terminal() {
        return None;
    }
    // COLUMNS is what shells export; fall back to a readable default.
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).or(Some(120))
}
