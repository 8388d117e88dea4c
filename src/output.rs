//! The only place bytes leave the process. Everything written here passes
//! through the redactor; colour follows one policy (`--color`, `NO_COLOR`,
//! `CLICOLOR_FORCE`, terminal or not).

use std::io::Write;

use crate::redact::Redactor;

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorWhen {
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorWhen {
    fn choice(self) -> anstream::ColorChoice {
        match self {
            ColorWhen::Auto => anstream::ColorChoice::Auto,
            ColorWhen::Always => anstream::ColorChoice::Always,
            ColorWhen::Never => anstream::ColorChoice::Never,
        }
    }
}

pub struct Output {
    redactor: Redactor,
    color: ColorWhen,
}

impl Output {
    pub fn new(redactor: Redactor, color: ColorWhen) -> Output {
        Output { redactor, color }
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub fn set_redactor(&mut self, redactor: Redactor) {
        crate::redact::install_global(&redactor);
        self.redactor = redactor;
    }

    /// Writes to stdout. Broken pipes (`| head`) are not an error worth a panic.
    pub fn stdout(&self, text: &str) {
        let clean = self.redactor.redact(text);
        let mut out = anstream::AutoStream::new(std::io::stdout().lock(), self.color.choice());
        let _ = out.write_all(clean.as_bytes()).and_then(|()| out.flush());
    }

    /// Writes to stdout with no colour at all (machine formats).
    pub fn stdout_plain(&self, text: &str) {
        let clean = self.redactor.redact(text);
        let mut out = anstream::AutoStream::never(std::io::stdout().lock());
        let _ = out.write_all(clean.as_bytes()).and_then(|()| out.flush());
    }

    pub fn stderr(&self, text: &str) {
        let clean = self.redactor.redact(text);
        let mut err = anstream::AutoStream::new(std::io::stderr().lock(), self.color.choice());
        let _ = err.write_all(clean.as_bytes()).and_then(|()| err.flush());
    }

    /// Whether stdout is a terminal that gets colour under the current policy.
    pub fn stdout_is_terminal(&self) -> bool {
        std::io::IsTerminal::is_terminal(&std::io::stdout())
    }
}
