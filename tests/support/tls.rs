//! harness: tls
