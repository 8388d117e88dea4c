//! Command-line definitions (clap). Names here are a public contract.
//!
//! Three layers:
//! - [`CommonArgs`]: what every command that reads an environment shares
//!   (`--env`, `--env-file`, `--checks`, `--timeout`, `--color`). They are
//!   *global*: accepted before or after any subcommand (`mockmate-diag --env
//!   production list`), and a new subcommand (`serve`) gets them for free.
//! - [`RunArgs`]: the run's own flags, accepted without a subcommand (the run is
//!   the default) or after `run`; flags given on both sides of `run` are merged
//!   ([`RunArgs::merge`]), so `mockmate-diag --format json run` works too.
//! - [`Command`]: the subcommands.
//!
//! No argument reads its default from the environment through clap (`env = …`):
//! `--help` must never print a variable's value.

pub mod complete;
pub mod man;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueHint};

use crate::format::{Format, Verbosity};
use crate::output::ColorWhen;
use crate::report::{FailOn, VERSION_LINE};

/// The examples `--help` and the man page show: what it is for, and the command.
pub const EXAMPLES: &[(&str, &str)] = &[
    ("Ops, on a server", "mockmate-diag --env production"),
    (
        "CI gate before a deploy",
        "mockmate-diag --env production --wait 60s --format junit --report json=report.json > report.xml",
    ),
    ("Support ticket (paste it: secrets are removed)", "mockmate-diag --env production --format markdown > report.md"),
    (
        "Verify a deploy by asking the API (one test session, made then removed)",
        "mockmate-diag --env production --allow-writes --user-id 8c6f0a52-3a51-4c39-9d55-2d8c1b6f4e10 --api-url https://api.example.com",
    ),
    (
        "Prometheus, Kubernetes (Prometheus scrapes /probe)",
        "mockmate-diag --env production serve --listen 0.0.0.0:9839",
    ),
];

/// Exit codes, as `--help` ends.
pub const EXIT_CODES: &str =
    "Exit codes: 0 nothing at or above --fail-on, 1 something is, 2 usage or configuration error, 130 interrupted.";

/// Columns an example's command lines take at most, indentation included, so
/// that `--help` at 80 columns never wraps inside a command.
const EXAMPLE_WIDTH: usize = 78;

/// `command` on lines of at most `width` columns, broken between words and
/// continued with ` \` as a shell reads it: each line can be copied as is.
pub fn fold_command(command: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in command.split(' ') {
        // Room for " \" after the word, unless it ends the command.
        if !line.is_empty() && line.len() + 1 + word.len() + 2 > width {
            lines.push(format!("{line} \\"));
            line = format!("  {word}");
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines.push(line);
    lines
}

/// The examples and the exit codes as `--help` ends: each command on lines of
/// its own, indented under what it is for.
fn after_help() -> String {
    let mut text = String::from("Examples:\n");
    for (what, command) in EXAMPLES {
        text.push_str(&format!("  {what}:\n"));
        for line in fold_command(command, EXAMPLE_WIDTH - 4) {
            text.push_str(&format!("    {line}\n"));
        }
    }
    text.push('\n');
    text.push_str(EXIT_CODES);
    text
}

#[derive(Debug, Parser)]
#[command(
    name = "mockmate-diag",
    version = VERSION_LINE,
    about = "Tells whether a MockMate environment (configuration, PostgreSQL, Redis) can actually work",
    after_help = after_help(),
    subcommand_value_name = "COMMAND",
    subcommand_help_heading = "Commands"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the checks (the default when no command is given)
    Run(RunArgs),
    /// List the checks a run would execute
    List(ListArgs),
    /// Print a shell completion script (check ids complete after --only and --skip)
    Completions {
        /// The shell to complete for
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): mockmate-diag man > mockmate-diag.1
    Man,
    /// Serve the checks over HTTP for Prometheus and Kubernetes (/probe, /healthz, /report, /metrics); never writes
    Serve(ServeArgs),
}

/// What every command that reads an environment shares. Global: accepted before
/// or after the subcommand.
#[derive(Debug, Args, Clone)]
pub struct CommonArgs {
    /// Environment to diagnose; loads .env.NAME then .env [default: $NODE_ENV, else development]
    #[arg(long, global = true, value_name = "NAME", value_parser = parse_env_name)]
    pub env: Option<String>,

    /// Load variables from this file too (repeatable; the process environment still wins)
    #[arg(long = "env-file", global = true, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub env_file: Vec<PathBuf>,

    /// Add checks from a manifest file or a directory of .toml files (repeatable)
    #[arg(long, global = true, value_name = "PATH", value_hint = ValueHint::AnyPath)]
    pub checks: Vec<PathBuf>,

    /// Deadline for each check, e.g. 500ms, 2s, 1m
    #[arg(long, global = true, value_name = "DURATION", default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// When to use colour (auto: on a terminal, unless NO_COLOR is set)
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto, value_name = "WHEN")]
    pub color: ColorWhen,
}

/// The run's own flags. Options without a default here so that the values given
/// before and after `run` can be merged; [`RunArgs::format`] and friends apply
/// the defaults.
#[derive(Debug, Args, Clone, Default, PartialEq)]
#[command(next_help_heading = "Run options")]
pub struct RunArgs {
    /// Output format [default: table]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Print only the checks that did not pass, what to do, and the verdict (stdout only: report files are always whole)
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Also print every check (none folded away), each check's details, and the variables read with their source (stdout only)
    #[arg(short, long)]
    pub verbose: bool,

    /// Run only these checks (and what they need)
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    pub only: Vec<String>,

    /// Do not run these checks (reported as skip)
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    pub skip: Vec<String>,

    /// Exit 1 when any check is at or above this status [default: fail]
    #[arg(long = "fail-on", value_enum, value_name = "STATUS")]
    pub fail_on: Option<FailOn>,

    /// Allow probes that write (always rolled back or deleted); read-only without it
    #[arg(long = "allow-writes")]
    pub allow_writes: bool,

    /// Re-run what fails, with backoff, until the gate passes or DURATION is up (deploy pipelines)
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub wait: Option<Duration>,

    /// Diagnose one user's ability to create sessions (support tickets): their row, credits, cached sessions
    #[arg(long = "user-id", value_name = "UUID", value_parser = parse_user_id)]
    pub user_id: Option<uuid::Uuid>,

    /// The MockMate API's base address, for the api.* checks [default: $API_URL, else http://127.0.0.1:$PORT]
    #[arg(long = "api-url", value_name = "URL", value_parser = parse_api_url, value_hint = ValueHint::Url)]
    pub api_url: Option<String>,

    /// Also write a report to a file, e.g. junit=report.xml, markdown=report.md (repeatable; one path per report)
    #[arg(long, value_name = "FORMAT=PATH", value_parser = parse_report)]
    pub report: Vec<ReportTarget>,
}

impl RunArgs {
    /// The flags given before `run` (`self`) and after it (`after`): a value
    /// given after wins, lists add up, switches are on when either says so.
    pub fn merge(self, after: RunArgs) -> RunArgs {
        let cat = |mut a: Vec<String>, b: Vec<String>| {
            a.extend(b);
            a
        };
        RunArgs {
            format: after.format.or(self.format),
            quiet: self.quiet || after.quiet,
            verbose: self.verbose || after.verbose,
            only: cat(self.only, after.only),
            skip: cat(self.skip, after.skip),
            fail_on: after.fail_on.or(self.fail_on),
            allow_writes: self.allow_writes || after.allow_writes,
            wait: after.wait.or(self.wait),
            user_id: after.user_id.or(self.user_id),
            api_url: after.api_url.or(self.api_url),
            report: self.report.into_iter().chain(after.report).collect(),
        }
    }

    /// The flags given, by name (`--only`, …): for "this flag is for runs" errors.
    pub fn given(&self) -> Vec<&'static str> {
        let flags = [
            ("--format", self.format.is_some()),
            ("--quiet", self.quiet),
            ("--verbose", self.verbose),
            ("--only", !self.only.is_empty()),
            ("--skip", !self.skip.is_empty()),
            ("--fail-on", self.fail_on.is_some()),
            ("--allow-writes", self.allow_writes),
            ("--wait", self.wait.is_some()),
            ("--user-id", self.user_id.is_some()),
            ("--api-url", self.api_url.is_some()),
            ("--report", !self.report.is_empty()),
        ];
        flags.into_iter().filter(|(_, on)| *on).map(|(name, _)| name).collect()
    }

    pub fn format(&self) -> Format {
        self.format.unwrap_or_default()
    }

    pub fn fail_on(&self) -> FailOn {
        self.fail_on.unwrap_or_default()
    }

    /// How much the table shows.
    pub fn verbosity(&self) -> Verbosity {
        match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, true) => Verbosity::Verbose,
            (false, false) => Verbosity::Normal,
        }
    }
}

/// `--report FORMAT=PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportTarget {
    pub format: Format,
    pub path: PathBuf,
}

impl ReportTarget {
    /// `junit=out/r.xml`, as given.
    pub fn spec(&self) -> String {
        let format = clap::ValueEnum::to_possible_value(&self.format).map(|v| v.get_name().to_string());
        format!("{}={}", format.unwrap_or_default(), self.path.display())
    }
}

fn parse_report(s: &str) -> Result<ReportTarget, String> {
    let (format, path) = s.split_once('=').ok_or("expected FORMAT=PATH, e.g. junit=report.xml")?;
    let format = <Format as clap::ValueEnum>::from_str(format, true)
        .map_err(|_| format!("unknown format `{format}` [possible values: table, json, markdown, junit]"))?;
    if path.is_empty() {
        return Err("expected FORMAT=PATH, e.g. junit=report.xml".into());
    }
    Ok(ReportTarget { format, path: PathBuf::from(path) })
}

#[derive(Debug, Args, Clone, Default)]
pub struct ListArgs {
    /// Output format [default: table]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<ListFormat>,
}

/// `list --format`: the run formats that make sense for a list of checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ListFormat {
    /// A table that fits the terminal (the default).
    #[default]
    Table,
    /// A JSON array.
    Json,
    /// A Markdown table (the README's).
    Markdown,
}

impl ListFormat {
    /// `mockmate-diag --format json list`: the run's `--format` given before `list`.
    pub fn from_run(format: Format) -> Option<ListFormat> {
        match format {
            Format::Table => Some(ListFormat::Table),
            Format::Json => Some(ListFormat::Json),
            Format::Markdown => Some(ListFormat::Markdown),
            Format::Junit => None,
        }
    }
}

/// `serve`'s own flags. The environment of the default target comes from the
/// common flags (`--env`, `--env-file`, `--checks`, `--timeout`), as for a run.
#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on (IP:PORT; 0.0.0.0:9839 for every interface, e.g. in a container)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9839", value_parser = parse_listen)]
    pub listen: std::net::SocketAddr,

    /// TOML file naming the environments to watch ([targets.NAME] with env, env_files, checks, timeout); without it, one target named after the environment (--env)
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub targets: Option<PathBuf>,

    /// How long a run's results answer scrapes before the checks run again (0s: every scrape runs them)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_cache)]
    pub cache: Duration,

    /// TLS, client certificates and basic-auth users, in Prometheus exporter-toolkit's web configuration format (YAML)
    #[arg(long = "web.config.file", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub web_config: Option<PathBuf>,

    /// Refused: serve never writes (accepted only to say so clearly)
    #[arg(long = "allow-writes", hide = true)]
    pub allow_writes: bool,
}

fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    s.trim().parse().map_err(|_| "expected IP:PORT, e.g. 127.0.0.1:9839 or 0.0.0.0:9839".into())
}

/// `--cache`: like `--timeout`, but `0s` (no cache) is allowed.
fn parse_cache(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 0s, 10s, 1m)"))
}

fn parse_user_id(s: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(s.trim()).map_err(|_| "must be a UUID, e.g. 3f2504e0-4f89-11d3-9a0c-0305e82c3301".into())
}

/// `--api-url`: read by the one parser of the API's address (a bad value is exit 2, before anything runs).
fn parse_api_url(s: &str) -> Result<String, String> {
    crate::probe::api::target::parse_url(s).map(|_| s.trim().to_string())
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 500ms, 2s, 1m)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// The name becomes a file name (`.env.NAME`): no paths, no surprises. A file
/// name given where the environment's name goes gets both ways to say it.
fn parse_env_name(s: &str) -> Result<String, String> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && !s.starts_with('.')
    };
    if valid(s) {
        return Ok(s.to_string());
    }
    let file = s.rsplit('/').next().unwrap_or(s);
    match file.strip_prefix(".env.").filter(|name| valid(name)) {
        // `--env .env.production` (or a path to one here): the name, or the file itself.
        Some(name) if file == s => Err(format!(
            "{s} is an env file, not an environment: use --env {name} (which reads .env.{name} and .env from \
             this directory) or --env-file {s}"
        )),
        Some(_) => Err(format!("{s} is an env file: read it with --env-file {s}")),
        None if file == ".env" => Err(format!("{s} is an env file: read it with --env-file {s}")),
        None => Err("use letters, digits, '-', '_' or '.' (e.g. production)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("mockmate-diag").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// `--help` at 80 columns wraps no example inside a command, and every
    /// example, its continuation lines joined, is a command line this parser takes.
    #[test]
    fn the_examples_fit_80_columns_and_parse() {
        let help = Cli::command().term_width(80).render_help().to_string();
        for line in help.lines() {
            assert!(line.chars().count() <= 80, "wider than 80 columns: {line:?}");
        }
        let examples = help.split("Examples:\n").nth(1).expect("examples").split("\n\n").next().unwrap_or_default();
        let mut commands: Vec<String> = Vec::new();
        for line in examples.lines() {
            match line.strip_prefix("    ") {
                Some(continued) if commands.last().is_some_and(|c| c.ends_with('\\')) => {
                    let last = commands.last_mut().expect("a command");
                    last.pop();
                    last.push_str(continued.trim_start());
                }
                Some(command) => commands.push(command.to_string()),
                None => assert!(line.starts_with("  ") && line.ends_with(':'), "{line:?}"),
            }
        }
        assert_eq!(commands.len(), EXAMPLES.len(), "{examples}");
        for (command, (_, written)) in commands.iter().zip(EXAMPLES) {
            assert_eq!(command, written);
            // What the shell hands over: the words before a redirection.
            let words: Vec<&str> = command.split(" > ").next().unwrap_or_default().split(' ').collect();
            assert_eq!(words[0], "mockmate-diag");
            Cli::try_parse_from(&words).unwrap_or_else(|e| panic!("{command}: {e}"));
        }
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Issue 26: `--env .env.production` names both ways to say it.
    #[test]
    fn an_env_file_given_as_the_environment_suggests_both_flags() {
        assert_eq!(parse_env_name("production"), Ok("production".into()));
        assert_eq!(
            parse_env_name(".env.production"),
            Err("\
                .env.production is an env file, not an environment: use --env production (which reads \
                 .env.production and .env from this directory) or --env-file .env.production"
                .into())
        );
        assert_eq!(
            parse_env_name("deploy/.env.staging"),
            Err("deploy/.env.staging is an env file: read it with --env-file deploy/.env.staging".into())
        );
        assert_eq!(parse_env_name(".env"), Err(".env is an env file: read it with --env-file .env".into()));
        assert!(parse_env_name("../x").unwrap_err().starts_with("use letters"));
    }

    #[test]
    fn run_is_the_default_subcommand() {
        let cli = parse(&["--env", "production", "--only", "a,b"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.run.only, ["a", "b"]);
        assert_eq!(cli.common.env.as_deref(), Some("production"));
        let cli = parse(&["run", "--timeout", "500ms"]);
        assert!(matches!(cli.command, Some(Command::Run(_))));
        assert_eq!(cli.common.timeout, Duration::from_millis(500));
    }

    #[test]
    fn common_flags_go_before_or_after_the_subcommand() {
        for args in [&["--env", "production", "list"][..], &["list", "--env", "production"]] {
            let cli = parse(args);
            assert!(matches!(cli.command, Some(Command::List(_))), "{args:?}");
            assert_eq!(cli.common.env.as_deref(), Some("production"), "{args:?}");
        }
        let cli = parse(&["--color", "never", "run", "--timeout", "2s"]);
        assert_eq!(cli.common.color, ColorWhen::Never);
        assert_eq!(cli.common.timeout, Duration::from_secs(2));
    }

    #[test]
    fn run_flags_before_and_after_run_are_merged() {
        let cli = parse(&["--format", "json", "--only", "a", "run", "--only", "b", "--quiet"]);
        let Some(Command::Run(after)) = cli.command else { panic!("run") };
        let merged = cli.run.merge(after);
        assert_eq!(merged.format(), Format::Json);
        assert_eq!(merged.only, ["a", "b"]);
        assert_eq!(merged.verbosity(), Verbosity::Quiet);
        assert_eq!(merged.given(), ["--format", "--quiet", "--only"]);
        assert_eq!(RunArgs::default().given(), Vec::<&str>::new());
    }

    #[test]
    fn bad_values_are_rejected() {
        for args in [
            &["--timeout", "0s"][..],
            &["--timeout", "soon"],
            &["--env", "../etc"],
            &["--quiet", "--verbose"],
            &["list", "--format", "junit"],
            &["--api-url", "backend.mock-mate.com"],
        ] {
            let argv = std::iter::once("mockmate-diag").chain(args.iter().copied());
            assert!(Cli::try_parse_from(argv).is_err(), "{args:?}");
        }
    }

    #[test]
    fn serve_takes_the_common_flags_and_its_own() {
        let cli = parse(&["--env", "production", "serve", "--listen", "0.0.0.0:9100", "--cache", "0s"]);
        let Some(Command::Serve(args)) = cli.command else { panic!("serve") };
        assert_eq!(args.listen.port(), 9100);
        assert_eq!(args.cache, Duration::ZERO);
        assert_eq!(cli.common.env.as_deref(), Some("production"));
        let Some(Command::Serve(args)) = parse(&["serve"]).command else { panic!("serve") };
        assert_eq!((args.listen.to_string().as_str(), args.cache), ("127.0.0.1:9839", Duration::from_secs(10)));
        for bad in [&["serve", "--listen", "localhost"][..], &["serve", "--cache", "soon"]] {
            assert!(Cli::try_parse_from(std::iter::once("mockmate-diag").chain(bad.iter().copied())).is_err());
        }
    }

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
