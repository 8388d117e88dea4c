//! harness: pg
