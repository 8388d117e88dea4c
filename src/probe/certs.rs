//! What a connection saw of certificates: each one's validity window and who
//! issued it. Recorded by the probe's one verifier ([`super::tls`]) for every TLS
//! connection, judged by the `*.cert_expiry` checks.
//!
//! Times are seconds since the Unix epoch, as certificates state them.

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use rustls::pki_types::CertificateDer;

/// A PEM file named by configuration, and the setting that named it (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemFile {
    pub path: PathBuf,
    /// `sslrootcert`, `REDIS_CA_CERT` …: what the operator edits.
    pub origin: &'static str,
}

/// One certificate's validity window and names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifetime {
    /// The subject's common name, else the whole subject (`CN=db.internal`).
    pub name: String,
    /// `notBefore`, seconds since the epoch.
    pub not_before: i64,
    /// `notAfter`, seconds since the epoch.
    pub not_after: i64,
    /// DER of the subject and issuer names: which certificate issued which.
    subject: Vec<u8>,
    issuer: Vec<u8>,
}

impl Lifetime {
    /// The lifetime of a DER certificate; `None` when it does not parse (the
    /// handshake judges such a certificate, not this report).
    pub fn of(der: &[u8]) -> Option<Lifetime> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject();
        let name = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| subject.to_string());
        let validity = cert.validity();
        Some(Lifetime {
            name,
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            subject: subject.as_raw().to_vec(),
            issuer: cert.issuer().as_raw().to_vec(),
        })
    }

    /// `ca`'s subject is this certificate's issuer.
    pub fn issued_by(&self, ca: &Lifetime) -> bool {
        self.issuer == ca.subject
    }

    pub fn is_self_signed(&self) -> bool {
        self.issued_by(self)
    }
}

/// A private CA file a connection trusted, with its certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFile {
    pub file: PemFile,
    pub certs: Vec<Lifetime>,
}

/// The certificates one TLS connection dealt with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Certificates {
    /// The chain the server presented, leaf first; empty without TLS.
    pub presented: Vec<Lifetime>,
    /// The private CA file the connection verified against, when it used one.
    pub ca_file: Option<CaFile>,
}

impl Certificates {
    pub(super) fn presented(certs: impl IntoIterator<Item = impl AsRef<[u8]>>) -> Vec<Lifetime> {
        certs.into_iter().filter_map(|der| Lifetime::of(der.as_ref())).collect()
    }

    pub(super) fn ca_file(file: &PemFile, certs: &[CertificateDer<'_>]) -> CaFile {
        CaFile { file: file.clone(), certs: certs.iter().filter_map(|der| Lifetime::of(der)).collect() }
    }

    /// The CA file's certificates that issued the top of the presented chain:
    /// the ones this server's chain depends on. A bundle's other certificates
    /// (a provider's file holds one per region and generation) do not matter here.
    pub fn anchors(&self) -> Vec<&Lifetime> {
        let (Some(ca), Some(top)) = (&self.ca_file, self.presented.last()) else {
            return Vec::new();
        };
        ca.certs.iter().filter(|c| top.issued_by(c) && !self.presented.contains(c)).collect()
    }
}

/// `2026-12-14T09:00:00Z`.
pub fn date(secs: i64) -> String {
    let secs = u64::try_from(secs).unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    fn ca(name: &str) -> (rcgen::Certificate, Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.not_after = rcgen::date_time_ymd(2031, 1, 2);
        let cert = params.self_signed(&key).expect("self-signed");
        (cert, Issuer::new(params, key))
    }

    #[test]
    fn lifetimes_name_the_certificate_and_who_issued_it() {
        let (root, issuer) = ca("Test Root");
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["db.test".to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, "db.test");
        params.not_before = rcgen::date_time_ymd(2026, 1, 1);
        params.not_after = rcgen::date_time_ymd(2026, 12, 14);
        let leaf = params.signed_by(&key, &issuer).expect("signed");

        let leaf = Lifetime::of(leaf.der()).expect("parses");
        let root = Lifetime::of(root.der()).expect("parses");
        assert_eq!(leaf.name, "db.test");
        assert_eq!(date(leaf.not_after), "2026-12-14T00:00:00Z");
        assert_eq!(date(leaf.not_before), "2026-01-01T00:00:00Z");
        assert!(leaf.issued_by(&root) && !root.issued_by(&leaf));
        assert!(root.is_self_signed() && !leaf.is_self_signed());
        assert_eq!(Lifetime::of(b"not a certificate"), None);

        let (other, _) = ca("Other Root");
        let other = Lifetime::of(other.der()).expect("parses");
        let file = PemFile { path: "/ca.pem".into(), origin: "sslrootcert" };
        let certs = Certificates {
            presented: vec![leaf.clone()],
            ca_file: Some(CaFile { file, certs: vec![other, root.clone()] }),
        };
        assert_eq!(certs.anchors(), vec![&root], "only the CA that issued the chain");
        assert!(Certificates { presented: vec![leaf], ca_file: None }.anchors().is_empty());
    }
}
