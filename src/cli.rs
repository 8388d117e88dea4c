//! Command-line definitions (clap). Names here are a public contract.
//!
//! No argument reads its default from the environment through clap (`env = …`):
//! `--help` must never print a variable's value.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::format::Format;
use crate::output::ColorWhen;
use crate::report::FailOn;

pub const EXAMPLES: &str = "\
Examples:
  Ops, on a server:         mockmate-diag --env production
  CI gate before a deploy:  mockmate-diag --env production --wait 60s --format junit --report json=report.json > report.xml
  Support ticket:           mockmate-diag --env production --format markdown > report.md   (paste it: secrets are removed)

Exit codes: 0 nothing at or above --fail-on, 1 something is, 2 usage or configuration error.";

#[derive(Debug, Parser)]
#[command(
    name = "mockmate-diag",
    version,
    about = "Tells whether a MockMate environment (configuration, PostgreSQL, Redis) can actually work",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the checks (the default)
    Run(RunArgs),
    /// List the checks a run would execute
    List(ListArgs),
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    Man,
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Environment to diagnose; loads .env.NAME then .env [default: $NODE_ENV, else development]
    #[arg(long, value_name = "NAME", value_parser = parse_env_name)]
    pub env: Option<String>,

    /// Load variables from this file too (repeatable; the process environment still wins)
    #[arg(long = "env-file", value_name = "PATH")]
    pub env_file: Vec<PathBuf>,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Run only these checks (and what they need)
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    pub only: Vec<String>,

    /// Do not run these checks (reported as skip)
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    pub skip: Vec<String>,

    /// Deadline for each check, e.g. 500ms, 2s, 1m
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// Exit 1 when any check is at or above this status
    #[arg(long = "fail-on", value_enum, default_value_t = FailOn::Fail)]
    pub fail_on: FailOn,

    /// Add checks from a manifest file or a directory of .toml files (repeatable)
    #[arg(long, value_name = "PATH")]
    pub checks: Vec<PathBuf>,

    /// Allow probes that write (always rolled back or deleted); read-only without it
    #[arg(long = "allow-writes")]
    pub allow_writes: bool,

    /// When to use colour
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto, value_name = "WHEN")]
    pub color: ColorWhen,

    /// Re-run what fails, with backoff, until the gate passes or DURATION is up (deploy pipelines)
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub wait: Option<Duration>,

    /// Diagnose one user's ability to create sessions (support tickets): their row, credits, cached sessions
    #[arg(long = "user-id", value_name = "UUID", value_parser = parse_user_id)]
    pub user_id: Option<uuid::Uuid>,

    /// Also write a report to a file, e.g. junit=report.xml, markdown=report.md (repeatable)
    #[arg(long, value_name = "FORMAT=PATH", value_parser = parse_report)]
    pub report: Vec<ReportTarget>,
}

/// `--report FORMAT=PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportTarget {
    pub format: Format,
    pub path: PathBuf,
}

fn parse_report(s: &str) -> Result<ReportTarget, String> {
    let (format, path) = s.split_once('=').ok_or("expected FORMAT=PATH, e.g. junit=report.xml")?;
    let format = <Format as clap::ValueEnum>::from_str(format, true)
        .map_err(|_| format!("unknown format `{format}` (table, json, markdown, junit)"))?;
    if path.is_empty() {
        return Err("expected FORMAT=PATH, e.g. junit=report.xml".into());
    }
    Ok(ReportTarget { format, path: PathBuf::from(path) })
}

#[derive(Debug, Args, Clone)]
pub struct ListArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Add checks from a manifest file or a directory of .toml files (repeatable)
    #[arg(long, value_name = "PATH")]
    pub checks: Vec<PathBuf>,
}

fn parse_user_id(s: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(s.trim()).map_err(|_| "must be a UUID, e.g. 3f2504e0-4f89-11d3-9a0c-0305e82c3301".into())
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 500ms, 2s, 1m)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// The name becomes a file name (`.env.NAME`): no paths, no surprises.
fn parse_env_name(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !s.starts_with('.')
    {
        Ok(s.to_string())
    } else {
        Err("use letters, digits, '-', '_' or '.' (e.g. production)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_is_the_default_subcommand() {
        let cli = Cli::try_parse_from(["mockmate-diag", "--env", "production", "--only", "a,b"]).expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(cli.run.only, ["a", "b"]);
        let cli = Cli::try_parse_from(["mockmate-diag", "run", "--timeout", "500ms"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Run(a)) if a.timeout == Duration::from_millis(500)));
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Cli::try_parse_from(["mockmate-diag", "--timeout", "0s"]).is_err());
        assert!(Cli::try_parse_from(["mockmate-diag", "--timeout", "soon"]).is_err());
        assert!(Cli::try_parse_from(["mockmate-diag", "--env", "../etc"]).is_err());
    }
}

#[cfg(test)]
mod report_tests {
    use super::*;

    #[test]
    fn report_targets_parse() {
        assert_eq!(
            parse_report("junit=out/report.xml"),
            Ok(ReportTarget { format: Format::Junit, path: "out/report.xml".into() })
        );
        assert!(parse_report("yaml=x").is_err());
        assert!(parse_report("report.xml").is_err());
        assert!(parse_report("json=").is_err());
    }
}
