//! harness: redis
