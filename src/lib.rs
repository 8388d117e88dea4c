//! mockmate-diag: diagnoses whether a MockMate environment (PostgreSQL, Redis,
//! configuration) can actually work.
//!
//! Public: what the binary (`app`, `output`, `redact`), the integration tests
//! and the fuzz targets drive (`probe`, `manifest`, `envctx`, `report`,
//! `error`, and `format::text`, whose SQL splitting the tests use to check that
//! hints paste). Everything else is the crate's own.

pub mod app;
pub(crate) mod check;
pub(crate) mod cli;
pub(crate) mod engine;
pub mod envctx;
pub mod error;
pub mod format;
pub(crate) mod kinds;
pub mod manifest;
pub mod output;
pub mod probe;
pub(crate) mod progress;
pub mod redact;
pub mod report;
pub(crate) mod run;
pub(crate) mod serve;
