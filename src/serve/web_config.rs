//! `--web.config.file`: TLS, client certificates and basic auth for `serve`,
//! in the format of Prometheus's exporter-toolkit (node_exporter and the other
//! exporters read the same file):
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt            # or cert: inline PEM; relative to this file
//!   key_file: server.key             # or key: inline PEM
//!   client_auth_type: RequireAndVerifyClientCert   # or VerifyClientCertIfGiven, NoClientCert (default)
//!   client_ca_file: clients-ca.crt   # or client_ca: inline PEM
//!   min_version: TLS12               # TLS12 (default) or TLS13; max_version likewise
//! http_server_config:
//!   headers:
//!     Strict-Transport-Security: max-age=31536000
//! basic_auth_users:
//!   prometheus: $2y$10$...           # bcrypt: htpasswd -nBC 10 "" | tr -d ':\n'
//! ```
//!
//! Read once at start (restart `serve` to pick up a renewed certificate). What
//! exporter-toolkit accepts but `serve` does not do is refused by name, never
//! ignored: a setting that silently does nothing is a hole in the fence.
//! Every problem is one line naming the file and line, exit 2.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Spanned;

use crate::error::UsageError;

/// What a web configuration file sets up.
pub struct WebConfig {
    /// TLS (with client certificates if asked), or `None`: plain HTTP.
    pub tls: Option<Arc<ServerConfig>>,
    /// Basic-auth users: name → bcrypt hash. Empty: no login.
    pub users: BTreeMap<String, String>,
    /// Headers added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Client certificates: `None` not asked, `Some(true)` required, `Some(false)` verified if given.
    client_certificates: Option<bool>,
}

impl WebConfig {
    /// How the startup line describes it.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.tls.is_some() {
            parts.push(match self.client_certificates {
                None => "TLS",
                Some(true) => "TLS, client certificate required",
                Some(false) => "TLS, client certificate verified if given",
            });
        }
        if !self.users.is_empty() {
            parts.push("basic auth");
        }
        if parts.is_empty() { "no TLS, no login".to_string() } else { parts.join(", ") }
    }
}

/// The file's keys, as exporter-toolkit names them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, Spanned<String>>>,
    rate_limit: Option<Spanned<IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    client_ca: Option<Spanned<String>>,
    cert_file: Option<Spanned<PathBuf>>,
    key_file: Option<Spanned<PathBuf>>,
    client_ca_file: Option<Spanned<PathBuf>>,
    client_auth_type: Option<Spanned<String>>,
    client_allowed_sans: Option<Spanned<IgnoredAny>>,
    min_version: Option<Spanned<String>>,
    max_version: Option<Spanned<String>>,
    cipher_suites: Option<Spanned<IgnoredAny>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Spanned<IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<Spanned<bool>>,
    headers: Option<BTreeMap<String, Spanned<String>>>,
}

/// Headers exporter-toolkit lets a web configuration set, with the values it accepts.
const HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Content-Security-Policy", None),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-XSS-Protection", None),
    ("Strict-Transport-Security", None),
];

/// Reads and checks `path`, and every file it names.
pub fn load(path: &Path) -> Result<WebConfig, UsageError> {
    let label = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| UsageError::new(format!("web config {label}: cannot read: {e}")))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    from_text(&label, &text, dir)
}

/// Parses a web configuration's text (`label` names it in errors; `dir` is
/// where its relative paths start).
fn from_text(label: &str, text: &str, dir: &Path) -> Result<WebConfig, UsageError> {
    let err = |at: Option<&serde_saphyr::Location>, what: String| match at {
        Some(at) => UsageError::new(format!("{label}:{}: {what}", at.line())),
        None => UsageError::new(format!("{label}: {what}")),
    };
    let raw: Option<RawFile> = serde_saphyr::from_str(text).map_err(|e| {
        let at = e.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
        UsageError::new(format!("{label}{at}: {}", one_line(&e)))
    })?;
    let raw = raw.unwrap_or(RawFile {
        tls_server_config: None,
        http_server_config: None,
        basic_auth_users: None,
        rate_limit: None,
    });
    if let Some(r) = &raw.rate_limit {
        return Err(err(
            Some(&r.referenced),
            "rate_limit: not supported by serve (it caps runs per target on its own)".into(),
        ));
    }
    let (tls, client_certificates) = match raw.tls_server_config {
        Some(t) => tls(t, dir, &err)?,
        None => (None, None),
    };
    let mut users = BTreeMap::new();
    for (name, hash) in raw.basic_auth_users.unwrap_or_default() {
        if name.is_empty() || name.contains(':') {
            return Err(err(
                Some(&hash.referenced),
                "basic_auth_users: a user name is not empty and has no ':'".into(),
            ));
        }
        if hash.value.parse::<bcrypt::HashParts>().is_err() {
            return Err(err(
                Some(&hash.referenced),
                format!(
                    "basic_auth_users: {name}: not a bcrypt hash (make one with htpasswd -nBC 10 \"\" | tr -d ':\\n')"
                ),
            ));
        }
        users.insert(name, hash.value);
    }
    let mut headers = Vec::new();
    if let Some(http) = raw.http_server_config {
        if let Some(h2) = http.http2.filter(|h| h.value) {
            return Err(err(Some(&h2.referenced),
                "http_server_config.http2: serve speaks HTTP/1.1 only (as Prometheus scrapes); remove it or set it to false"
                    .into(),
            ));
        }
        for (name, value) in http.headers.unwrap_or_default() {
            let Some((canonical, allowed)) = HEADERS.iter().find(|(h, _)| h.eq_ignore_ascii_case(&name)) else {
                let names: Vec<&str> = HEADERS.iter().map(|(h, _)| *h).collect();
                return Err(err(
                    Some(&value.referenced),
                    format!("http_server_config.headers: {name}: not one of {}", names.join(", ")),
                ));
            };
            // Blank: unset, as exporter-toolkit reads it.
            if value.value.trim().is_empty() {
                continue;
            }
            if let Some(allowed) = allowed
                && !allowed.iter().any(|a| a.eq_ignore_ascii_case(value.value.trim()))
            {
                return Err(err(Some(&value.referenced), format!("{canonical}: use {}", allowed.join(" or "))));
            }
            let header_value = HeaderValue::from_str(value.value.trim()).map_err(|_| {
                err(Some(&value.referenced), format!("{canonical}: not a valid header value (printable ASCII)"))
            })?;
            headers.push((HeaderName::from_static(lowercase(canonical)), header_value));
        }
    }
    Ok(WebConfig { tls, users, headers, client_certificates })
}

fn lowercase(name: &'static str) -> &'static str {
    match name {
        "Content-Security-Policy" => "content-security-policy",
        "X-Frame-Options" => "x-frame-options",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "strict-transport-security",
    }
}

/// The parser's message, on one line and without the snippet it draws.
fn one_line(e: &serde_saphyr::Error) -> String {
    let text = e.to_string();
    let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("not valid YAML");
    let first = first.trim_start_matches("error:").trim();
    // The parser starts with "line L column C: ": the prefix says where already.
    let first = match first.split_once(": ") {
        Some((at, rest)) if at.starts_with("line ") && at.contains(" column ") => rest,
        _ => first,
    };
    first.split(" at line ").next().unwrap_or(first).to_string()
}

type Err<'a> = &'a dyn Fn(Option<&serde_saphyr::Location>, String) -> UsageError;

/// PEM from a file (relative to the configuration) or inline, exactly one of them.
fn pem(
    what: &str,
    inline: Option<Spanned<String>>,
    file: Option<Spanned<PathBuf>>,
    dir: &Path,
    err: Err<'_>,
) -> Result<Option<(Vec<u8>, serde_saphyr::Location)>, UsageError> {
    match (inline, file) {
        (Some(_), Some(f)) => Err(err(Some(&f.referenced), format!("give {what} or {what}_file, not both"))),
        (Some(text), None) => Ok(Some((text.value.into_bytes(), text.referenced))),
        (None, Some(f)) => {
            let path = if f.value.is_relative() { dir.join(&f.value) } else { f.value.clone() };
            let bytes = std::fs::read(&path)
                .map_err(|e| err(Some(&f.referenced), format!("{what}_file {}: cannot read: {e}", path.display())))?;
            Ok(Some((bytes, f.referenced)))
        }
        (None, None) => Ok(None),
    }
}

fn version(key: &str, v: &Spanned<String>, err: Err<'_>) -> Result<&'static SupportedProtocolVersion, UsageError> {
    match v.value.as_str() {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err(err(
            Some(&v.referenced),
            format!("{key}: serve speaks TLS 1.2 and 1.3 only (rustls): use TLS12 or TLS13"),
        )),
        _ => Err(err(Some(&v.referenced), format!("{key}: expected TLS12 or TLS13"))),
    }
}

/// The TLS configuration, and whether client certificates are required (see [`WebConfig`]).
fn tls(t: RawTls, dir: &Path, err: Err<'_>) -> Result<(Option<Arc<ServerConfig>>, Option<bool>), UsageError> {
    for (key, span) in [
        ("client_allowed_sans", t.client_allowed_sans.as_ref().map(|s| &s.referenced)),
        ("cipher_suites", t.cipher_suites.as_ref().map(|s| &s.referenced)),
        ("curve_preferences", t.curve_preferences.as_ref().map(|s| &s.referenced)),
    ] {
        if let Some(at) = span {
            return Err(err(
                Some(at),
                format!("tls_server_config.{key}: not supported by serve (rustls's defaults apply)"),
            ));
        }
    }
    let cert = pem("cert", t.cert, t.cert_file, dir, err)?;
    let key = pem("key", t.key, t.key_file, dir, err)?;
    let client_ca = pem("client_ca", t.client_ca, t.client_ca_file, dir, err)?;
    let auth = t.client_auth_type;
    let anything = cert.is_some() || key.is_some() || client_ca.is_some() || auth.is_some();
    if !anything {
        return Ok((None, None));
    }
    let (Some((cert, cert_at)), Some((key, key_at))) = (cert, key) else {
        return Err(err(
            None,
            "tls_server_config: give the server's certificate and key (cert_file and key_file)".into(),
        ));
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<_, _>>()
        .map_err(|e| err(Some(&cert_at), format!("cert: not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(err(Some(&cert_at), "cert: no certificate in it (PEM, BEGIN CERTIFICATE)".into()));
    }
    // The key's own bytes never appear in a message.
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|_| err(Some(&key_at), "key: no private key in it (PEM: PKCS#8, PKCS#1 or SEC1)".into()))?;

    // In order: TLS12, TLS13.
    let all = [&rustls::version::TLS12, &rustls::version::TLS13];
    let index = |v: &SupportedProtocolVersion| all.iter().position(|a| a.version == v.version).unwrap_or(0);
    let min = t.min_version.as_ref().map(|v| version("min_version", v, err)).transpose()?.map_or(0, index);
    let max = t.max_version.as_ref().map(|v| version("max_version", v, err)).transpose()?.map_or(1, index);
    let versions: Vec<&'static SupportedProtocolVersion> = all.get(min..=max).unwrap_or_default().to_vec();
    if versions.is_empty() {
        return Err(err(t.max_version.as_ref().map(|v| &v.referenced), "max_version is below min_version".into()));
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| UsageError::new(format!("TLS: {e}")))?;
    let auth_type = auth.as_ref().map(|a| a.value.as_str()).unwrap_or("NoClientCert");
    let verify = match auth_type {
        "NoClientCert" => None,
        "RequireAndVerifyClientCert" => Some(true),
        "VerifyClientCertIfGiven" => Some(false),
        "RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert" => {
            return Err(err(
                auth.as_ref().map(|a| &a.referenced),
                format!(
                    "client_auth_type: {auth_type} accepts certificates nobody verifies, which authenticates no one: \
                     use RequireAndVerifyClientCert with client_ca_file"
                ),
            ));
        }
        _ => {
            return Err(err(
                auth.as_ref().map(|a| &a.referenced),
                "client_auth_type: expected NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert".into(),
            ));
        }
    };
    let builder = match (verify, client_ca) {
        (None, None) => builder.with_no_client_auth(),
        (None, Some((_, at))) => {
            return Err(err(Some(&at),
                "client_ca: a client CA without client_auth_type checks nothing: set client_auth_type: RequireAndVerifyClientCert".into(),
            ));
        }
        (Some(_), None) => {
            return Err(err(
                auth.as_ref().map(|a| &a.referenced),
                format!("client_auth_type: {auth_type} needs client_ca_file (the CA that signs client certificates)"),
            ));
        }
        (Some(required), Some((ca, at))) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&ca) {
                let c = c.map_err(|e| err(Some(&at), format!("client_ca: not PEM certificates: {e}")))?;
                roots.add(c).map_err(|e| err(Some(&at), format!("client_ca: {e}")))?;
            }
            if roots.is_empty() {
                return Err(err(Some(&at), "client_ca: no certificate in it (PEM, BEGIN CERTIFICATE)".into()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if required { verifier } else { verifier.allow_unauthenticated() };
            let verifier = verifier.build().map_err(|e| err(Some(&at), format!("client_ca: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| err(Some(&key_at), format!("cert and key: {e} (is the key the certificate's?)")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // exporter-toolkit's default (prefer_server_cipher_suites: true).
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    Ok((Some(Arc::new(config)), verify))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$04$3MtLRtVgEhcoCZxDm6pYWOtaH5wIKSeWmVMeUUbbi9J0YfLxRWLUC";

    fn parse(dir: &Path, text: &str) -> Result<WebConfig, String> {
        let path = dir.join("web.yml");
        std::fs::write(&path, text).expect("write");
        load(&path).map_err(|e| e.to_string())
    }

    fn certificates(dir: &Path) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("sign");
        std::fs::write(dir.join("server.crt"), cert.pem()).expect("write");
        std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write");
        std::fs::write(dir.join("ca.crt"), cert.pem()).expect("write");
    }

    #[test]
    fn tls_with_client_certificates_and_users() {
        let dir = tempfile::tempdir().expect("tempdir");
        certificates(dir.path());
        let config = parse(
            dir.path(),
            &format!(
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  \
                 client_ca_file: ca.crt\n  min_version: TLS13\nhttp_server_config:\n  http2: false\n  headers:\n    \
                 x-frame-options: deny\n    Content-Security-Policy: \"\"\nbasic_auth_users:\n  prometheus: {HASH}\n"
            ),
        )
        .expect("loads");
        assert_eq!(config.describe(), "TLS, client certificate required, basic auth");
        assert_eq!(config.users.get("prometheus").map(String::as_str), Some(HASH));
        assert_eq!(config.headers.len(), 1);
        assert_eq!(config.headers[0].0.as_str(), "x-frame-options");
        let tls = config.tls.expect("TLS");
        assert_eq!(tls.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn an_empty_file_is_plain_http_without_a_login() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = parse(dir.path(), "").expect("loads");
        assert!(config.tls.is_none() && config.users.is_empty());
        assert_eq!(config.describe(), "no TLS, no login");
    }

    #[test]
    fn every_problem_is_one_line_naming_the_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        certificates(dir.path());
        let label = dir.path().join("web.yml").display().to_string();
        let tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
        for (text, want) in [
            (
                "tls_server_config:\n  cert_file: server.crt\n  keyfile: server.key\n".to_string(),
                ":3:3: unknown field `keyfile`",
            ),
            ("basic_auth_user:\n  a: b\n".to_string(), ":1:1: unknown field `basic_auth_user`"),
            (
                format!("{tls}  client_auth_type: RequireAnyClientCert\n  client_ca_file: ca.crt\n"),
                ":4: client_auth_type: RequireAnyClientCert accepts",
            ),
            (format!("{tls}  client_auth_type: Sometimes\n"), ":4: client_auth_type: expected"),
            (format!("{tls}  client_ca_file: ca.crt\n"), ":4: client_ca: a client CA without client_auth_type"),
            (
                format!("{tls}  client_auth_type: RequireAndVerifyClientCert\n"),
                ":4: client_auth_type: RequireAndVerifyClientCert needs client_ca_file",
            ),
            (format!("{tls}  min_version: TLS10\n"), ":4: min_version: serve speaks TLS 1.2 and 1.3 only"),
            (
                format!("{tls}  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"),
                ":4: tls_server_config.cipher_suites: not supported",
            ),
            ("tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n".to_string(), ":2: cert_file"),
            (
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.crt\n".to_string(),
                ":3: key: no private key",
            ),
            (
                "basic_auth_users:\n  prometheus: secret\n".to_string(),
                ":2: basic_auth_users: prometheus: not a bcrypt hash",
            ),
            ("http_server_config:\n  http2: true\n".to_string(), ":2: http_server_config.http2"),
            (
                "http_server_config:\n  headers:\n    Server: x\n".to_string(),
                ":3: http_server_config.headers: Server: not one of",
            ),
            (
                "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n".to_string(),
                ":3: X-Content-Type-Options: use nosniff",
            ),
            ("rate_limit:\n  interval: 1s\n".to_string(), ":2: rate_limit: not supported"),
            ("tls_server_config: [\n".to_string(), ":"),
        ] {
            let e = parse(dir.path(), &text).err().unwrap_or_else(|| panic!("{text:?} loads"));
            assert!(e.starts_with(&label) && e.contains(want), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{text:?}: {e}");
        }
    }

    #[test]
    fn an_inline_key_never_appears_in_a_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        certificates(dir.path());
        let secret = "S3NTINEL-not-a-key";
        let e = parse(dir.path(), &format!("tls_server_config:\n  cert_file: server.crt\n  key: \"{secret}\"\n"))
            .err()
            .expect("refused");
        assert!(e.contains(":3: key: no private key") && !e.contains(secret), "{e}");
    }
}
