//! `--format json`: exactly one document, schema_version 1.

use crate::report::Report;

pub fn format(report: &Report) -> String {
    // Serialising plain data with string keys cannot fail; fall back to a valid document anyway.
    let mut s = serde_json::to_string_pretty(report)
        .unwrap_or_else(|e| format!("{{\"tool\":\"mockmate-diag\",\"error\":{:?}}}", e.to_string()));
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn snapshot() {
        insta::assert_snapshot!(super::format(&crate::format::fixture()));
    }
}
