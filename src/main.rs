//! The `mockmate-diag` binary: parse, run, print, exit. Every byte written goes
//! through `Output`, which redacts.

use clap::Parser;

use mockmate_diag::app::{self, Process};
use mockmate_diag::cli::Cli;
use mockmate_diag::output::{ColorWhen, Output};
use mockmate_diag::redact::{self, Redactor};
use mockmate_diag::report::ExitCode;

fn main() -> std::process::ExitCode {
    // Exactly one rustls crypto provider, before anything builds a TLS config.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let vars: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
        .collect();
    // Secrets of the process environment are known before the first byte is written.
    let redactor = Redactor::from_env(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    redact::install_global(&redactor);
    redact::install_panic_hook();

    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(e, redactor),
    };
    let color = match &cli.command {
        Some(mockmate_diag::cli::Command::Run(a)) => a.color,
        Some(_) => ColorWhen::Auto,
        None => cli.run.color,
    };
    let mut out = Output::new(redactor, color);
    let cwd = std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from("."));
    let code = match app::execute(cli, Process { vars, cwd: &cwd }, &mut out) {
        Ok(code) => code,
        Err(e) => {
            out.stderr(&format!("mockmate-diag: {e}\n"));
            ExitCode::Usage
        }
    };
    std::process::ExitCode::from(code as u8)
}

/// `--help`/`--version` go to stdout; argument errors are one redacted line on stderr.
fn clap_error(e: clap::Error, redactor: Redactor) -> std::process::ExitCode {
    let out = Output::new(redactor, ColorWhen::Auto);
    match e.kind() {
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
            out.stdout(&e.render().ansi().to_string());
            std::process::ExitCode::SUCCESS
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
            let first = first.trim_start_matches("error: ");
            out.stderr(&format!("mockmate-diag: {first} (see --help)\n"));
            std::process::ExitCode::from(ExitCode::Usage as u8)
        }
    }
}
