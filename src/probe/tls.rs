//! TLS for both services: one certificate verifier, one way to load PEM files,
//! and one wording of what went wrong with a certificate. Each service decides
//! *what* to verify (its URL's rules) and words the fix with its own variables.
//!
//! The provider is always ring, passed explicitly: nothing depends on a
//! process-wide rustls provider being installed.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::Failure;
pub use super::certs::PemFile;
use super::certs::{Certificates, Lifetime};

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Encrypt, accept any certificate (the handshake signatures are still checked).
    Nothing,
    /// The chain must lead to a trusted root; the name is not checked.
    Chain,
    /// The chain and the host name.
    ChainAndName,
}

/// Which roots a verifying connection trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    /// The public web PKI (Mozilla's roots, as Node and browsers ship them).
    pub public: bool,
    /// A private CA's certificates.
    pub file: Option<PemFile>,
}

/// A client certificate and its key, for servers that require one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub cert: PemFile,
    pub key: PemFile,
}

/// Everything a TLS connection needs to know before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    pub verify: Verify,
    pub trust: Trust,
    pub identity: Option<Identity>,
}

/// What the handshake showed: its version, once it is known, and the
/// certificates it dealt with (the server's chain, the private CA file).
#[derive(Debug, Clone, Default)]
pub struct Seen(Arc<Mutex<SeenState>>);

#[derive(Debug, Default)]
struct SeenState {
    version: Option<&'static str>,
    completed: bool,
    certificates: Certificates,
}

impl Seen {
    fn state(&self) -> std::sync::MutexGuard<'_, SeenState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record_version(&self, version: &'static str) {
        self.state().version = Some(version);
    }

    /// The chain the server presented, whether or not it is then trusted.
    fn record_chain(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) {
        self.state().certificates.presented = Certificates::presented(std::iter::once(end_entity).chain(intermediates));
    }

    fn record_ca_file(&self, file: &PemFile, certs: &[CertificateDer<'_>]) {
        self.state().certificates.ca_file = Some(Certificates::ca_file(file, certs));
    }

    /// The certificates seen so far (none before the handshake, none without TLS).
    pub fn certificates(&self) -> Certificates {
        self.state().certificates.clone()
    }

    /// The handshake finished (the connector knows; the verifier may not have run).
    pub fn completed(&self) {
        self.state().completed = true;
    }

    /// `TLSv1.3`, `TLSv1.2`, `on` (encrypted, version unseen), or `None` (no TLS).
    pub fn version(&self) -> Option<String> {
        let state = self.state();
        match (state.version, state.completed) {
            (Some(v), _) => Some(v.to_string()),
            (None, true) => Some("on".to_string()),
            (None, false) => None,
        }
    }
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configuration for `setup`. Files are read here, before any network
/// traffic: a missing or broken file is a configuration error, not a TLS error.
pub fn client_config(setup: &Setup, seen: &Seen) -> Result<ClientConfig, Failure> {
    let provider = provider();
    let (chain, anchors) = match setup.verify {
        Verify::Nothing => (None, Vec::new()),
        Verify::Chain | Verify::ChainAndName => {
            let (roots, anchors) = roots(&setup.trust, seen)?;
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| Failure::new(format!("TLS: cannot use the root certificates: {e}")))?;
            (Some(verifier), anchors)
        }
    };
    let verifier = Verifier {
        chain,
        anchors,
        verify_name: setup.verify == Verify::ChainAndName,
        provider: provider.clone(),
        seen: seen.clone(),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::new(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    match &setup.identity {
        None => Ok(builder.with_no_client_auth()),
        Some(identity) => {
            let certs = load_certs(&identity.cert)?;
            let key = load_key(&identity.key)?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                Failure::new(format!(
                    "{} {} and {} {} do not make a client certificate: {e}",
                    identity.cert.origin,
                    identity.cert.path.display(),
                    identity.key.origin,
                    identity.key.path.display()
                ))
                .with_hint("the key must be the private key of the certificate (PEM, unencrypted)")
            })
        }
    }
}

/// The roots a verifying connection trusts, and the private CA file's own
/// certificates (a self-signed server certificate may be one of them).
fn roots(trust: &Trust, seen: &Seen) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), Failure> {
    let mut roots = if trust.public {
        RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
    } else {
        RootCertStore::empty()
    };
    let mut anchors = Vec::new();
    if let Some(file) = &trust.file {
        let certs = load_certs(file)?;
        // Webpki does not check a trust anchor's dates; OpenSSL (Node) does: the report must.
        seen.record_ca_file(file, &certs);
        for cert in certs {
            roots.add(cert.clone()).map_err(|e| {
                Failure::new(format!("{} {} holds an unusable certificate: {e}", file.origin, file.path.display()))
                    .with_hint(pem_hint(file))
            })?;
            anchors.push(cert);
        }
    }
    Ok((roots, anchors))
}

fn pem_hint(file: &PemFile) -> String {
    format!("point {} at a readable PEM file (-----BEGIN CERTIFICATE----- blocks)", file.origin)
}

fn read(file: &PemFile) -> Result<Vec<u8>, Failure> {
    std::fs::read(&file.path).map_err(|e| {
        Failure::new(format!("cannot read {} {}: {e}", file.origin, file.path.display())).with_hint(pem_hint(file))
    })
}

/// The TLS handshake of both services, over a connected stream: tokio-rustls
/// with a configuration from [`client_config`]; `seen` records that it completed.
pub async fn handshake<S>(
    config: Arc<ClientConfig>,
    host: &str,
    stream: S,
    seen: &Seen,
) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let name =
        ServerName::try_from(host.to_string()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let stream = tokio_rustls::TlsConnector::from(config).connect(name, stream).await?;
    seen.completed();
    Ok(stream)
}

/// Every certificate in a PEM file. One rule for both services: a section that
/// does not decode is an error naming the file (a half-read CA bundle would fail
/// later, and more obscurely); a file with no certificate at all is one too.
pub fn load_certs(file: &PemFile) -> Result<Vec<CertificateDer<'static>>, Failure> {
    certs_from_pem(&read(file)?)
        .map_err(|why| Failure::new(format!("{} {} {why}", file.origin, file.path.display())).with_hint(pem_hint(file)))
}

/// The certificates of a PEM text, or why it holds none that can be used.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("holds no certificate".to_string());
    }
    Ok(certs)
}

fn load_key(file: &PemFile) -> Result<PrivateKeyDer<'static>, Failure> {
    PrivateKeyDer::from_pem_slice(&read(file)?).map_err(|e| {
        Failure::new(format!("{} {} holds no usable private key: {e}", file.origin, file.path.display()))
            .with_hint(format!("point {} at the client certificate's private key (PEM, unencrypted)", file.origin))
    })
}

/// Checks the server's certificate as far as asked (or not at all), always
/// checks the handshake signatures, and notes the TLS version and the chain it saw.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// The private CA file's certificates.
    anchors: Vec<CertificateDer<'static>>,
    verify_name: bool,
    provider: Arc<CryptoProvider>,
    seen: Seen,
}

impl Verifier {
    /// A self-signed certificate found in the trust store: valid now, and (when
    /// the name is checked) naming the host.
    fn trusted_as_is(
        &self,
        cert: &CertificateDer<'_>,
        leaf: &Lifetime,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let at =
            |secs: i64| UnixTime::since_unix_epoch(std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0)));
        let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if secs > leaf.not_after {
            return Err(CertificateError::ExpiredContext { time: now, not_after: at(leaf.not_after) }.into());
        }
        if secs < leaf.not_before {
            return Err(CertificateError::NotValidYetContext { time: now, not_before: at(leaf.not_before) }.into());
        }
        if self.verify_name {
            rustls::client::verify_server_name(&rustls::server::ParsedCertificate::try_from(cert)?, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }
}

/// A self-signed server certificate that is not in the trust store.
#[derive(Debug)]
struct SelfSigned;

impl std::fmt::Display for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("self-signed certificate")
    }
}

impl std::error::Error for SelfSigned {}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.seen.record_chain(end_entity, intermediates);
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            // webpki checks the name last, so the chain is good.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.verify_name => Ok(ServerCertVerified::assertion()),
            Err(e) => match Lifetime::of(end_entity).filter(Lifetime::is_self_signed) {
                // OpenSSL (Node, libpq) trusts a self-signed certificate that is itself
                // in the trust store, even one marked CA:TRUE — what `openssl req -x509`
                // makes, the PostgreSQL manual's recipe — which webpki refuses as a
                // server's certificate. Judge it as they do: dates, then the name.
                Some(leaf) if self.anchors.iter().any(|a| a.as_ref() == end_entity.as_ref()) => {
                    self.trusted_as_is(end_entity, &leaf, server_name, now)
                }
                // Not trusted, and no issuer to trust instead: say so, as Node does
                // (DEPTH_ZERO_SELF_SIGNED_CERT), not "unknown issuer" or webpki's words.
                Some(_)
                    if matches!(
                        e,
                        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::Other(_))
                    ) =>
                {
                    Err(rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
                        SelfSigned,
                    )))))
                }
                _ => Err(e),
            },
            ok => ok,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.seen.record_version("TLSv1.2");
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.seen.record_version("TLSv1.3");
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// What went wrong in a handshake, in one vocabulary for both services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    UnknownIssuer,
    /// A self-signed certificate that is not in the trust store.
    SelfSigned,
    /// The certificate does not name the host; `presented` is what it names.
    NameMismatch {
        presented: Vec<String>,
    },
    /// With the certificate's `notAfter` (seconds since the epoch) when rustls says it.
    Expired {
        not_after: Option<i64>,
    },
    NotYetValid,
    /// Another certificate problem (revoked, bad signature …).
    Certificate(String),
    /// The server refused our handshake with an alert.
    Alert(String),
    /// The peer's bytes are not TLS (a plain-text port).
    NotTls(String),
    Other(String),
}

impl Problem {
    pub fn of(e: &rustls::Error) -> Problem {
        match e {
            rustls::Error::InvalidCertificate(cert) => match cert {
                CertificateError::UnknownIssuer => Problem::UnknownIssuer,
                CertificateError::NotValidForName => Problem::NameMismatch { presented: Vec::new() },
                CertificateError::NotValidForNameContext { presented, .. } => {
                    Problem::NameMismatch { presented: presented.clone() }
                }
                CertificateError::Expired => Problem::Expired { not_after: None },
                CertificateError::ExpiredContext { not_after, .. } => {
                    Problem::Expired { not_after: i64::try_from(not_after.as_secs()).ok() }
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => Problem::NotYetValid,
                CertificateError::Other(other) if other.0.downcast_ref::<SelfSigned>().is_some() => Problem::SelfSigned,
                other => Problem::Certificate(format!("{other:?}")),
            },
            rustls::Error::AlertReceived(alert) => Problem::Alert(format!("{alert:?}")),
            err @ (rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. }) => Problem::NotTls(err.to_string()),
            other => Problem::Other(other.to_string()),
        }
    }

    /// The server's certificate was rejected (as opposed to a protocol failure).
    pub fn is_untrusted(&self) -> bool {
        matches!(
            self,
            Problem::UnknownIssuer
                | Problem::SelfSigned
                | Problem::NameMismatch { .. }
                | Problem::Expired { .. }
                | Problem::NotYetValid
                | Problem::Certificate(_)
        )
    }

    /// `certificate not trusted (unknown issuer)`, `the server sent alert HandshakeFailure` …
    pub fn describe(&self, host: &str) -> String {
        match self {
            Problem::UnknownIssuer => "certificate not trusted (unknown issuer)".to_string(),
            Problem::SelfSigned => "certificate not trusted (self-signed)".to_string(),
            Problem::NameMismatch { presented } => {
                let names =
                    if presented.is_empty() { String::new() } else { format!("; it names {}", presented.join(", ")) };
                format!("certificate not trusted (name mismatch: not valid for \"{host}\"{names})")
            }
            Problem::Expired { not_after: None } => "certificate not trusted (expired)".to_string(),
            Problem::Expired { not_after: Some(at) } => {
                format!("certificate not trusted (expired on {})", super::certs::date(*at))
            }
            Problem::NotYetValid => "certificate not trusted (not valid yet)".to_string(),
            Problem::Certificate(why) => format!("certificate not trusted ({why})"),
            Problem::Alert(alert) => format!("the server sent alert {alert}"),
            Problem::NotTls(why) => format!("the server did not answer in TLS ({why})"),
            Problem::Other(why) => why.clone(),
        }
    }

    /// The fix for problems whose fix does not depend on the service.
    pub fn generic_hint(&self) -> Option<&'static str> {
        match self {
            Problem::Expired { .. } => Some("renew the server's certificate"),
            Problem::NotYetValid => Some("check the clocks of this machine and of the certificate's issuer"),
            Problem::Alert(_) => {
                Some("the server rejected our handshake: compare its TLS settings (versions, client certificates)")
            }
            _ => None,
        }
    }
}

/// Node's own variable for a private CA: its certificates join Mozilla's roots
/// for every TLS client in the process (node-postgres, node-redis, https).
pub const NODE_EXTRA_CA_CERTS: &str = "NODE_EXTRA_CA_CERTS";

/// Whether Node reads `name` only from its own process environment, once, when
/// it starts: an env file loaded later (npm `dotenv`, and Node's own
/// `--env-file` too, nodejs/node#51426) sets `process.env` but changes nothing.
/// The run's lookup ([`crate::check::Ctx::lookup`]) hides such a variable when
/// an env file sets it.
pub fn process_only(name: &str) -> bool {
    name == NODE_EXTRA_CA_CERTS
}

/// The one reader of `NODE_EXTRA_CA_CERTS` (PostgreSQL, Redis and the API):
/// the file Node adds to its roots, from a lookup that holds only what the
/// process environment sets for it ([`process_only`]). A blank value is none,
/// as Node reads it.
pub fn node_extra_ca(get: &dyn Fn(&str) -> Option<String>) -> Option<PemFile> {
    get(NODE_EXTRA_CA_CERTS).filter(|v| !v.trim().is_empty()).map(|path| pem_file(&path, NODE_EXTRA_CA_CERTS))
}

/// What to say when an env file sets `NODE_EXTRA_CA_CERTS` (`file` its label).
pub fn extra_ca_in_file(file: &str) -> String {
    format!(
        "{NODE_EXTRA_CA_CERTS} is set in {file}, but Node ignores NODE_EXTRA_CA_CERTS from .env files (it reads it \
         only from its own environment when it starts), so the API's TLS clients do not trust that CA and neither \
         do these checks: set it in the API's process environment (systemd Environment=, docker -e, the platform's \
         settings)"
    )
}

/// A PEM file path from configuration, trimmed.
pub fn pem_file(path: &str, origin: &'static str) -> PemFile {
    PemFile { path: Path::new(path.trim()).to_path_buf(), origin }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOT_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";

    #[test]
    fn one_rule_for_pem_files_a_broken_section_is_an_error() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).expect("certificate");
        let good = ca.cert.pem();
        assert_eq!(certs_from_pem(good.as_bytes()).map(|c| c.len()), Ok(1));
        // A good certificate followed by a broken one: the whole file is refused.
        let mixed = format!("{good}{}", String::from_utf8_lossy(NOT_PEM));
        assert!(certs_from_pem(mixed.as_bytes()).unwrap_err().starts_with("is not valid PEM"));
        assert_eq!(certs_from_pem(b"just text\n").unwrap_err(), "holds no certificate");
    }

    #[test]
    fn files_are_named_by_the_setting_that_named_them() {
        let file = pem_file(" /nonexistent/ca.pem ", "sslrootcert");
        let f = load_certs(&file).unwrap_err();
        assert!(f.message.starts_with("cannot read sslrootcert /nonexistent/ca.pem: "), "{f:?}");
        assert!(f.hint.unwrap_or_default().contains("sslrootcert"));
    }

    #[test]
    fn problems_are_worded_once() {
        let host = "127.0.0.1";
        assert_eq!(Problem::UnknownIssuer.describe(host), "certificate not trusted (unknown issuer)");
        assert_eq!(
            Problem::NameMismatch { presented: vec!["DnsName(\"db.test\")".into()] }.describe(host),
            "certificate not trusted (name mismatch: not valid for \"127.0.0.1\"; it names DnsName(\"db.test\"))"
        );
        assert!(Problem::of(&rustls::Error::InvalidCertificate(CertificateError::Expired)).is_untrusted());
        let expired = CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000)),
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_797_206_400)),
        };
        assert_eq!(
            Problem::of(&rustls::Error::InvalidCertificate(expired)).describe(host),
            "certificate not trusted (expired on 2026-12-14T00:00:00Z)"
        );
        assert!(!Problem::of(&rustls::Error::DecryptError).is_untrusted());
    }

    /// A self-signed certificate for `localhost`, as `openssl req -x509` makes it
    /// (CA:TRUE) or not, valid from `from` to `to` (seconds since the epoch).
    fn self_signed(ca: bool, from: i64, to: i64) -> CertificateDer<'static> {
        self_signed_named("localhost", ca, from, to)
    }

    fn self_signed_named(cn: &str, ca: bool, from: i64, to: i64) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(vec![cn.to_string()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        if ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + time::Duration::seconds(from);
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + time::Duration::seconds(to);
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("self-sign").der().clone()
    }

    fn verify(cert: &CertificateDer<'static>, trusted: bool, host: &str, now: i64) -> Result<(), Problem> {
        let mut roots = RootCertStore::empty();
        let anchor =
            if trusted { cert.clone() } else { self_signed_named("another.test", true, 0, i64::from(i32::MAX)) };
        roots.add(anchor).expect("a usable anchor");
        let provider = provider();
        let verifier = Verifier {
            chain: Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().expect("roots"),
            ),
            anchors: if trusted { vec![cert.clone()] } else { Vec::new() },
            verify_name: true,
            provider,
            seen: Seen::default(),
        };
        let name = ServerName::try_from(host.to_string()).expect("a name");
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(u64::try_from(now).unwrap_or(0)));
        verifier.verify_server_cert(cert, &[], &name, &[], now).map(|_| ()).map_err(|e| Problem::of(&e))
    }

    #[test]
    fn a_self_signed_certificate_in_the_trust_store_is_trusted_as_openssl_trusts_it() {
        const DAY: i64 = 86_400;
        let now = 1_800_000_000;
        for ca in [true, false] {
            let cert = self_signed(ca, now - DAY, now + DAY);
            assert_eq!(verify(&cert, true, "localhost", now), Ok(()), "CA:{ca}");
            // Still judged: the name, then the dates.
            assert!(matches!(verify(&cert, true, "db.example", now), Err(Problem::NameMismatch { .. })), "CA:{ca}");
            assert!(matches!(verify(&cert, true, "localhost", now + 2 * DAY), Err(Problem::Expired { .. })));
            assert_eq!(verify(&cert, true, "localhost", now - 2 * DAY), Err(Problem::NotYetValid));
            // Not in the trust store: "self-signed", as Node says, not webpki's words.
            assert_eq!(verify(&cert, false, "localhost", now), Err(Problem::SelfSigned), "CA:{ca}");
        }
        assert_eq!(Problem::SelfSigned.describe("localhost"), "certificate not trusted (self-signed)");
    }

    #[test]
    fn node_extra_ca_certs_is_read_once_here() {
        let get = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        assert_eq!(node_extra_ca(&get(&[])), None);
        assert_eq!(node_extra_ca(&get(&[("NODE_EXTRA_CA_CERTS", " ")])), None);
        let file = node_extra_ca(&get(&[("NODE_EXTRA_CA_CERTS", " /etc/ca.pem ")])).expect("a file");
        assert_eq!((file.path.as_path(), file.origin), (Path::new("/etc/ca.pem"), "NODE_EXTRA_CA_CERTS"));
        assert!(process_only("NODE_EXTRA_CA_CERTS") && !process_only("REDIS_CA_CERT"));
    }

    #[test]
    fn seen_reports_the_version_or_on() {
        let seen = Seen::default();
        assert_eq!(seen.version(), None);
        seen.completed();
        assert_eq!(seen.version().as_deref(), Some("on"));
        seen.record_version("TLSv1.3");
        assert_eq!(seen.version().as_deref(), Some("TLSv1.3"));
    }
}
