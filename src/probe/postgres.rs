//! PostgreSQL probe (issue 3).
