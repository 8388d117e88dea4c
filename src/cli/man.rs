//! `mockmate-diag man`: one page, mockmate-diag(1), that names every argument
//! with its value (`--env NAME`), describes the commands in place (there are no
//! mockmate-diag-run(1) pages to refer to), and says what the tool reads from
//! the environment and what its exit codes mean. clap_mangen renders the title,
//! NAME and the option lists; the rest is written here.

use clap::{Arg, ArgAction, CommandFactory};
use clap_mangen::Man;
use clap_mangen::roff::{Inline, Roff, bold, italic, roman};

use super::{Cli, EXAMPLES, fold_command};
use crate::report::{BUILD_DATE, VERSION, VERSION_LINE};

const DESCRIPTION: &str = "mockmate-diag runs a suite of checks against the environment MockMate would run in \
(its variables and .env files, PostgreSQL, Redis) and prints a verdict with what to do for every check that did \
not pass. It is read-only unless --allow-writes is given, every network step runs under --timeout, and \
passwords, tokens and secrets are removed from everything it prints.";

const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "No check is at or above --fail-on (default: fail). serve: stopped by SIGTERM or SIGINT."),
    ("1", "At least one check is at or above --fail-on."),
    (
        "2",
        "Usage or configuration error: a bad flag, an unknown check id, an env file or manifest that cannot be read or parsed. One line on stderr names the problem; nothing is written to stdout.",
    ),
    (
        "130",
        "Interrupted by SIGINT or SIGTERM: the report of the checks that finished was printed, the others are skipped.",
    ),
];

const ENVIRONMENT: &[(&str, &str)] = &[
    ("NODE_ENV", "The environment to diagnose when --env is not given (else development)."),
    (
        "DATABASE_URL",
        "postgres:// or postgresql:// URL of the database; else DB_HOST, DB_PORT, DB_USER, DB_PASSWORD and DB_NAME.",
    ),
    ("PGUSER, PGPASSWORD", "The user and password when DATABASE_URL has none, as libpq reads them."),
    ("PGSSLMODE, PGSSLROOTCERT", "sslmode and the CA file when DATABASE_URL does not set them."),
    ("REDIS_URL", "redis:// or rediss:// URL of the cache. REDIS_CA_CERT names a private CA's PEM file."),
    ("JWT_SECRET", "Checked for strength; its value is never printed."),
    ("COLUMNS", "The width to lay the table out at; else the terminal's, else 100."),
    ("NO_COLOR, CLICOLOR_FORCE", "Turn colour off, or on when not writing to a terminal (with --color auto)."),
    ("CI", "When set (and not 0 or false), no progress line is drawn."),
];

const FILES: &[(&str, &str)] = &[
    (
        ".env.NAME",
        "Variables for environment NAME, from the working directory, under the process environment and --env-file files.",
    ),
    (".env", "Variables for every environment, under .env.NAME."),
    (
        "targets.toml",
        "serve --targets: one [targets.NAME] table per environment watched, with env, env_files, checks, timeout and dir; relative paths are relative to the file.",
    ),
];

/// `--env NAME`, `[--only ID]...`, `-q|--quiet`.
fn synopsis_arg(arg: &Arg) -> Vec<Inline> {
    let mut out = vec![roman("[")];
    if let Some(short) = arg.get_short() {
        out.push(bold(format!("-{short}")));
        out.push(roman("|"));
    }
    if let Some(long) = arg.get_long() {
        out.push(bold(format!("--{long}")));
    }
    if arg.get_action().takes_values() {
        let name = arg.get_value_names().map(|v| v.join(" ")).unwrap_or_else(|| arg.get_id().to_string());
        out.push(roman(" "));
        out.push(italic(name));
    }
    out.push(roman("]"));
    if matches!(arg.get_action(), ArgAction::Append) {
        out.push(roman("..."));
    }
    out.push(roman(" "));
    out
}

fn shown(arg: &&Arg) -> bool {
    !arg.is_hide_set() && !matches!(arg.get_id().as_str(), "help" | "version")
}

fn synopsis(roff: &mut Roff, cmd: &clap::Command) {
    roff.control("SH", ["SYNOPSIS"]);
    let mut line = vec![bold("mockmate-diag"), roman(" ["), bold("run"), roman("] ")];
    for arg in cmd.get_arguments().filter(shown) {
        line.extend(synopsis_arg(arg));
    }
    roff.text(line);
    for sub in cmd.get_subcommands().filter(|s| !matches!(s.get_name(), "run" | "help")) {
        roff.control("br", [] as [&str; 0]);
        let mut line = vec![bold("mockmate-diag"), roman(" "), bold(sub.get_name()), roman(" ")];
        for arg in sub.get_arguments().filter(shown).filter(|a| !a.is_global_set() && !a.is_positional()) {
            line.extend(synopsis_arg(arg));
        }
        for arg in sub.get_positionals() {
            line.push(italic(arg.get_value_names().map(|v| v.join(" ")).unwrap_or_default()));
            line.push(roman(" "));
        }
        if sub.get_arguments().any(|a| a.is_global_set()) {
            line.push(roman("[common options]"));
        }
        roff.text(line);
    }
    roff.control("br", [] as [&str; 0]);
    roff.text([bold("mockmate-diag"), roman(" "), bold("help"), roman(" ["), italic("COMMAND"), roman("]")]);
}

fn commands(roff: &mut Roff, cmd: &clap::Command) {
    roff.control("SH", ["COMMANDS"]);
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        roff.control("TP", [] as [&str; 0]);
        let mut head = vec![bold(sub.get_name())];
        for arg in sub.get_positionals() {
            head.push(roman(" "));
            head.push(italic(arg.get_value_names().map(|v| v.join(" ")).unwrap_or_default()));
        }
        roff.text(head);
        roff.text([roman(sub.get_about().map(|a| a.to_string()).unwrap_or_default())]);
        let own: Vec<&Arg> = sub.get_arguments().filter(shown).filter(|a| !a.is_global_set()).collect();
        if sub.get_name() == "run" {
            roff.control("IP", [] as [&str; 0]);
            roff.text([roman("Takes the run options above, given before or after run.")]);
            continue;
        }
        for arg in own {
            roff.control("IP", [] as [&str; 0]);
            let mut text = Vec::new();
            if let Some(long) = arg.get_long() {
                text.push(bold(format!("--{long}")));
                text.push(roman(" "));
            }
            if arg.get_action().takes_values() {
                text.push(italic(arg.get_value_names().map(|v| v.join(" ")).unwrap_or_default()));
                text.push(roman(" "));
            }
            text.push(roman(arg.get_help().map(|h| h.to_string()).unwrap_or_default()));
            let values: Vec<String> = arg.get_possible_values().iter().map(|v| v.get_name().to_string()).collect();
            if !values.is_empty() {
                text.push(roman(format!(" [possible values: {}]", values.join(", "))));
            }
            roff.text(text);
        }
    }
    roff.control("TP", [] as [&str; 0]);
    roff.text([bold("help"), roman(" "), italic("COMMAND")]);
    roff.text([roman("Print the help of mockmate-diag, or of COMMAND.")]);
}

fn list(roff: &mut Roff, heading: &str, items: &[(&str, &str)]) {
    roff.control("SH", [heading]);
    for (name, text) in items {
        roff.control("TP", [] as [&str; 0]);
        roff.text([bold(*name)]);
        roff.text([roman(*text)]);
    }
}

/// The page, in roff.
pub fn render() -> std::io::Result<String> {
    let mut cmd = Cli::command();
    cmd.build();
    let man = Man::new(cmd.clone()).date(BUILD_DATE).source(format!("mockmate-diag {VERSION}"));
    let mut buf: Vec<u8> = Vec::new();
    man.render_title(&mut buf)?;
    // No hyphenation: a flag or a value broken at a hyphen (`--re‐port`) would
    // not paste back into a shell.
    buf.extend_from_slice(b".hy 0\n");
    man.render_name_section(&mut buf)?;
    let mut roff = Roff::new();
    synopsis(&mut roff, &cmd);
    roff.control("SH", ["DESCRIPTION"]);
    roff.text([roman(DESCRIPTION)]);
    roff.to_writer(&mut buf)?;
    man.render_options_section(&mut buf)?;
    let mut roff = Roff::new();
    commands(&mut roff, &cmd);
    list(&mut roff, "EXIT STATUS", EXIT_STATUS);
    list(&mut roff, "ENVIRONMENT", ENVIRONMENT);
    list(&mut roff, "FILES", FILES);
    roff.control("SH", ["EXAMPLES"]);
    for (what, command) in EXAMPLES {
        roff.control("PP", [] as [&str; 0]);
        roff.text([roman(format!("{what}:"))]);
        // Unfilled and indented, so a command is never hyphenated or broken
        // where a shell would not continue it.
        roff.control("RS", ["4"]);
        roff.control("nf", [] as [&str; 0]);
        for line in fold_command(command, 70) {
            roff.text([bold(line)]);
        }
        roff.control("fi", [] as [&str; 0]);
        roff.control("RE", [] as [&str; 0]);
    }
    roff.control("SH", ["VERSION"]);
    roff.text([roman(format!("mockmate-diag {VERSION_LINE}"))]);
    roff.to_writer(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    /// The page through groff's man macros, as `man` renders it (`args` added).
    fn groff(args: &[&str]) -> std::process::Output {
        use std::io::Write;
        let page = super::render().expect("renders");
        let mut groff = std::process::Command::new("groff")
            .args(["-man", "-Tutf8"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("groff is needed to check the man page ({e}): apt-get install groff-base"));
        groff.stdin.take().expect("stdin").write_all(page.as_bytes()).expect("write the page");
        groff.wait_with_output().expect("groff runs")
    }

    #[test]
    fn the_page_names_arguments_and_refers_to_no_missing_page() {
        let page = super::render().expect("renders");
        assert!(!page.contains("mockmate\\-diag\\-"), "refers to a page that does not exist");
        for want in [
            "\\fB\\-\\-env\\fR \\fINAME\\fR",
            "\\fB\\-\\-only\\fR \\fIID\\fR]...",
            "\\fBcompletions\\fR \\fISHELL\\fR",
            ".SH \"EXIT STATUS\"",
            "PGPASSWORD",
            "\\fBserve\\fR",
            "\\fB\\-\\-targets\\fR \\fIFILE\\fR",
        ] {
            assert!(page.contains(want), "{want} missing:\n{page}");
        }
    }

    /// Rendered at 80 columns, nothing is hyphenated (a flag broken at a
    /// hyphen would not paste into a shell) and every example command is whole.
    #[test]
    fn at_80_columns_nothing_is_hyphenated_and_commands_stay_whole() {
        let out = groff(&["-rLL=78n"]);
        // Bold and italics are overstruck (`m\bm`, `_\bm`): keep the letters.
        let text = regex::Regex::new(".\u{8}")
            .expect("regex")
            .replace_all(&String::from_utf8_lossy(&out.stdout), "")
            .into_owned();
        // groff's hyphen (U+2010) marks a word it broke; an ASCII '-' is ours.
        assert!(!text.contains('\u{2010}'), "hyphenated:\n{text}");
        for (_, command) in super::EXAMPLES {
            for line in super::fold_command(command, 70) {
                assert!(text.lines().any(|l| l.trim() == line.trim()), "{line} is not whole:\n{text}");
            }
        }
    }

    /// groff reads it without a warning (what `man ./mockmate-diag.1` runs).
    #[test]
    fn groff_renders_the_page_without_warnings() {
        let out = groff(&["-ww", "-z"]);
        assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
