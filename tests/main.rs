//! The integration tests, as one binary: one harness (`support`) compiled once,
//! one cluster per binary shared by the tests that only need a fresh database.
//!
//! Tests start real PostgreSQL and Redis servers themselves (throwaway, on free
//! ports), break them the way production breaks, and run the real binary or the
//! library against them. Split by capability, one module each.

mod support;

mod api;
mod cache_writes;
mod causes;
mod cli;
mod concordance;
mod dns;
mod env_loaders;
mod gate;
mod incident;
mod insert_traced;
mod laws;
mod mid_run;
mod pg_probe;
mod pg_tls;
mod pooler;
mod pooler_words;
mod postgres;
mod redaction;
mod redis;
mod redis_probe;
mod refusals;
mod route_locks;
mod serve;
mod terminal;
mod topology;
mod wait;
