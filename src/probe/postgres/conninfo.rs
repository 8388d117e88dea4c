//! libpq connection strings (`host=… port=…`, or a URI), as PostgreSQL keeps
//! them in `primary_conninfo`: only where they point is read, never the rest
//! (the string may hold a password).

use crate::probe::net;

/// `host:port` (IPv6 in brackets), or the host alone when no port is known.
pub fn endpoint(host: &str, port: Option<u16>) -> String {
    match port {
        Some(p) => net::endpoint(host.trim_matches(|c| c == '[' || c == ']'), p),
        None if host.contains(':') && !host.starts_with('[') => format!("[{host}]"),
        None => host.to_string(),
    }
}

/// The upstream a connection string names: its host and port, nothing else.
pub fn upstream(conninfo: &str) -> Option<String> {
    let conninfo = conninfo.trim();
    if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
        let url = url::Url::parse(conninfo).ok()?;
        let host = url.host_str()?.trim_matches(|c| c == '[' || c == ']').to_string();
        return Some(endpoint(&host, url.port()));
    }
    let (mut host, mut port) = (None, None);
    for (key, value) in pairs(conninfo) {
        match key.as_str() {
            "host" | "hostaddr" if host.is_none() || key == "host" => host = Some(value),
            "port" => port = value.parse::<u16>().ok(),
            _ => {}
        }
    }
    host.filter(|h| !h.is_empty()).map(|h| endpoint(&h, port))
}

/// `key = value` pairs; values may be single-quoted with `\'` and `\\` escapes.
fn pairs(s: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        if key.is_empty() {
            return pairs;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&'=').is_none() {
            return pairs;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            value.extend(std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())));
        }
        pairs.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_yields_host_and_port_only() {
        let c = "user=rep password='s3c\\'ret' host=10.0.0.5 port=5433 sslmode=prefer";
        assert_eq!(upstream(c).as_deref(), Some("10.0.0.5:5433"));
        assert_eq!(upstream("host = 'db a' ").as_deref(), Some("db a"));
        assert_eq!(upstream("postgresql://rep:pw@[::1]:6000/x").as_deref(), Some("[::1]:6000"));
        assert_eq!(upstream("hostaddr=10.1.1.1 host=db").as_deref(), Some("db"));
        assert_eq!(upstream(""), None);
        assert_eq!(endpoint("::1", Some(5432)), "[::1]:5432");
    }
}
