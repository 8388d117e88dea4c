//! Problems with the tool's own input: flags, env files, manifests, URLs given on
//! the command line. Each ends the run with exit code 2 and one line on stderr.

/// A usage or configuration error. The message names the file, line or variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        UsageError(message.into())
    }
}
