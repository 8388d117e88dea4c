//! harness: tarpit
