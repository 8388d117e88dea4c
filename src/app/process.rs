//! The process's inputs (environment, working directory, whether to listen for
//! signals), so tests and `main` drive the same code.

use std::path::Path;

use crate::format::{DEFAULT_WIDTH, MIN_WIDTH};

/// The process's inputs, so tests and `main` drive the same code.
pub struct Process<'a> {
    pub vars: Vec<(String, String)>,
    pub cwd: &'a Path,
    /// Listen for SIGINT and SIGTERM during a run (the real process only: a
    /// test process must keep its own Ctrl-C).
    pub signals: bool,
}

impl Process<'_> {
    pub(super) fn var(&self, name: &str) -> Option<&str> {
        self.vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The width to lay text out at: `COLUMNS` when set, else the terminal's,
    /// else [`DEFAULT_WIDTH`] (a pipe, a file, a ticket).
    pub(super) fn width(&self, terminal: Option<u16>) -> u16 {
        self.var("COLUMNS")
            .and_then(|c| c.trim().parse::<u16>().ok())
            .filter(|c| *c > 0)
            .or(terminal)
            .unwrap_or(DEFAULT_WIDTH)
            .max(MIN_WIDTH)
    }
}
