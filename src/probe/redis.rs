//! Redis probe (issue 4).
