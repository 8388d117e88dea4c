//! mockmate-diag: diagnoses whether a MockMate environment (PostgreSQL, Redis,
//! configuration) can actually work.

pub mod probe;
