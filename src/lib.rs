//! mockmate-diag: diagnoses whether a MockMate environment (PostgreSQL, Redis,
//! configuration) can actually work.

pub mod app;
pub mod check;
pub mod cli;
pub mod engine;
pub mod envctx;
pub mod error;
pub mod format;
pub mod kinds;
pub mod manifest;
pub mod output;
pub mod probe;
pub mod progress;
pub mod redact;
pub mod report;
pub mod run;
pub mod serve;
