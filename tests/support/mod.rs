//! Test harness: real PostgreSQL and Redis servers started by the tests themselves.
#![allow(dead_code)]

pub mod cmd;
pub mod pg;
pub mod redis;
pub mod tarpit;
pub mod tls;
