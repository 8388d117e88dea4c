//! Where the API is: `--api-url`, else `API_URL` (process, then env files), else
//! `http://127.0.0.1:$PORT` when `PORT` is set (the Express convention: the
//! API listens on it, and mockmate-diag usually runs beside it). One parser:
//! the flag's value parser, the checks and their messages all use [`parse_url`].

use url::Url;

use crate::probe::net::endpoint;
use crate::probe::{Cause, EnvLookup, Failure};

/// What named the API's address (for messages and hints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiSource {
    /// `--api-url`.
    Flag,
    /// `API_URL`.
    ApiUrl,
    /// `PORT`: the API on this machine.
    Port,
}

impl ApiSource {
    pub fn label(self) -> &'static str {
        match self {
            ApiSource::Flag => "--api-url",
            ApiSource::ApiUrl => "API_URL",
            ApiSource::Port => "PORT",
        }
    }
}

/// The API's base address, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTarget {
    /// Scheme, host, port and base path (no trailing `/`), e.g. `https://api.example.com/backend`.
    pub base: String,
    /// The host as DNS and TLS see it: no brackets around an IPv6 address.
    pub host: String,
    pub port: u16,
    /// `https`.
    pub tls: bool,
    /// The path every request's path is appended to (`/backend`, or empty).
    prefix: String,
    pub source: ApiSource,
}

/// The skip message when nothing says where the API is (a contract: scripts match it).
pub const NOT_CONFIGURED: &str =
    "no API to ask: set API_URL (or pass --api-url http://host:port), or PORT for an API on this machine";

/// An `http://` or `https://` URL with a host, no query or fragment: the API's base address.
pub fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("not a URL ({e}); expected e.g. https://api.example.com"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {}: expected http:// or https://", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host; expected e.g. https://api.example.com".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a base address has no ?query or #fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials do not go in the URL: the checks send a bearer token (MOCKMATE_API_TOKEN or one signed with JWT_SECRET)".into());
    }
    Ok(url)
}

impl ApiTarget {
    /// The API's address from the flag or the environment; `Ok(None)` when
    /// nothing names it; a malformed value is a failure naming its variable.
    pub fn resolve(flag: Option<&str>, get: EnvLookup<'_>) -> Result<Option<ApiTarget>, Failure> {
        let nonblank = |v: String| (!v.trim().is_empty()).then_some(v);
        if let Some(flag) = flag {
            return ApiTarget::from_url(flag, ApiSource::Flag).map(Some);
        }
        if let Some(url) = get("API_URL").and_then(nonblank) {
            return ApiTarget::from_url(&url, ApiSource::ApiUrl)
                .map(Some)
                .map_err(|f| f.because(Cause::Malformed("API_URL".into())));
        }
        let Some(port) = get("PORT").and_then(nonblank) else { return Ok(None) };
        match port.trim().parse::<u16>() {
            Ok(port) if port > 0 => ApiTarget::from_url(&format!("http://127.0.0.1:{port}"), ApiSource::Port).map(Some),
            _ => Err(Failure::new("PORT is not a port number (1-65535), so the API's address is unknown")
                .with_hint("set PORT to the port the API listens on, or API_URL to its address")
                .because(Cause::Malformed("PORT".into()))),
        }
    }

    fn from_url(text: &str, source: ApiSource) -> Result<ApiTarget, Failure> {
        let url = parse_url(text).map_err(|why| {
            Failure::new(format!("{} is not the API's address: {why}", source.label()))
                .with_hint("give the API's base address, e.g. API_URL=https://backend.mock-mate.com")
        })?;
        let tls = url.scheme() == "https";
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => String::new(),
        };
        let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
        let prefix = url.path().trim_end_matches('/').to_string();
        let target = ApiTarget { base: String::new(), host, port, tls, prefix, source };
        Ok(ApiTarget { base: target.url(""), ..target })
    }

    /// `host:port`, brackets around IPv6.
    pub fn addr(&self) -> String {
        endpoint(&self.host, self.port)
    }

    /// The request path for `path` (`/health` under a base path `/backend`: `/backend/health`).
    pub fn path(&self, path: &str) -> String {
        let path = path.trim();
        if path.starts_with('/') { format!("{}{path}", self.prefix) } else { format!("{}/{path}", self.prefix) }
    }

    /// The `Host` header: the port only when it is not the scheme's.
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        match (self.port == default, self.host.contains(':')) {
            (false, _) => self.addr(),
            (true, true) => format!("[{}]", self.host),
            (true, false) => self.host.clone(),
        }
    }

    /// The full URL of `path`, for messages.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        let path = if path.is_empty() { self.prefix.clone() } else { self.path(path) };
        format!("{scheme}://{}{path}", self.authority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::failure::lookup;

    fn resolve(flag: Option<&str>, vars: &[(&str, &str)]) -> Result<Option<ApiTarget>, Failure> {
        ApiTarget::resolve(flag, &lookup(vars))
    }

    #[test]
    fn the_flag_wins_then_api_url_then_port_on_this_machine() {
        let vars = [("API_URL", "https://backend.mock-mate.com/"), ("PORT", "3000")];
        let t = resolve(Some("http://10.0.0.5:8080/api-root/"), &vars).expect("valid").expect("set");
        assert_eq!((t.source, t.base.as_str(), t.tls), (ApiSource::Flag, "http://10.0.0.5:8080/api-root", false));
        assert_eq!(t.path("/api/sessions/create"), "/api-root/api/sessions/create");
        let t = resolve(None, &vars).expect("valid").expect("set");
        assert_eq!((t.source, t.addr(), t.tls), (ApiSource::ApiUrl, "backend.mock-mate.com:443".into(), true));
        assert_eq!(t.url("/health"), "https://backend.mock-mate.com/health");
        assert_eq!(t.base, "https://backend.mock-mate.com");
        let t = resolve(None, &[("PORT", "3000"), ("API_URL", " ")]).expect("valid").expect("set");
        assert_eq!((t.source, t.base.as_str()), (ApiSource::Port, "http://127.0.0.1:3000"));
        assert_eq!(resolve(None, &[]).expect("valid"), None);
        let t = resolve(Some("https://[::1]:8443"), &[]).expect("valid").expect("set");
        assert_eq!((t.host.as_str(), t.addr()), ("::1", "[::1]:8443".to_string()));
    }

    #[test]
    fn a_bad_address_names_its_variable() {
        let f = resolve(None, &[("API_URL", "backend.mock-mate.com")]).expect_err("no scheme");
        assert_eq!(f.cause, Some(Cause::Malformed("API_URL".into())));
        assert!(f.message.starts_with("API_URL is not the API's address: not a URL"), "{}", f.message);
        let f = resolve(None, &[("PORT", "http")]).expect_err("not a port");
        assert_eq!(f.cause, Some(Cause::Malformed("PORT".into())));
        for bad in ["ftp://h", "https://h/?x=1", "https://u:p@h", "http://"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
