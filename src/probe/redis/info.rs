//! `INFO` replies (and `CLUSTER INFO`, written the same way), parsed.

use std::collections::HashMap;

/// Parse an INFO reply into field → value.
pub fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_parses_fields_across_sections() {
        let text = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n\r\n# Replication\r\nrole:master\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\n";
        let info = parse_info(text);
        assert_eq!(info["redis_version"], "7.0.15");
        assert_eq!(info["role"], "master");
        assert_eq!(info["db0"], "keys=3,expires=1,avg_ttl=0");
        assert_eq!(info.len(), 4);
    }
}
