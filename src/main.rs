//! The `mockmate-diag` binary: the real process wired to [`app::main`]. Every
//! byte written goes through `Output`, which redacts.

use mockmate_diag::app::{self, Process};
use mockmate_diag::output::Output;
use mockmate_diag::redact::{self, Redactor};

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

    let mut out = Output::process(redactor);
    let cwd = std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from("."));
    let code = app::main(std::env::args_os(), Process { vars, cwd: &cwd, signals: true }, &mut out);
    std::process::ExitCode::from(code as u8)
}
