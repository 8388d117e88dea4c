//! Harness: a throwaway certificate authority and a server certificate it signed,
//! written as PEM files for PostgreSQL, Redis and the clients under test.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// The names every test server answers to.
pub const SERVER_SANS: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// Validity windows, in days from now (negative: in the past), for certificates
/// that expire, have expired, or come from a CA that has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// The CA's `(notBefore, notAfter)`.
    pub ca: (i64, i64),
    /// The server certificate's `(notBefore, notAfter)`.
    pub server: (i64, i64),
}

impl Lifetimes {
    /// A server certificate good for `days` more days (negative: expired that many
    /// days ago), from a CA good for ten years.
    pub fn server_for(days: i64) -> Lifetimes {
        Lifetimes { ca: (-400, 3650), server: (-400, days) }
    }

    /// A CA that expired `days_ago` days ago, with a server certificate good for a year.
    pub fn ca_expired(days_ago: i64) -> Lifetimes {
        Lifetimes { ca: (-400, -days_ago), server: (-30, 365) }
    }
}

/// Now plus `days`, and half an hour further from now, so that "in 5 days" and
/// "2 days ago" still read so when the check runs seconds later.
fn days_from_now(days: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::days(days) + time::Duration::minutes(30 * days.signum())
}

/// A CA and one server certificate signed by it, as PEM files in `dir`.
#[derive(Debug, Clone)]
pub struct TestCa {
    pub dir: PathBuf,
    /// The CA certificate: what a client trusts (`sslrootcert`, `--tls-ca-cert-file`).
    pub ca_cert: PathBuf,
    /// The server certificate (leaf only), for `SERVER_SANS`.
    pub server_cert: PathBuf,
    /// The server's private key (PKCS#8 PEM, mode 0600).
    pub server_key: PathBuf,
    /// A client certificate signed by the CA for the cluster's superuser
    /// (CN `postgres`), for servers that require one.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestCa {
    /// A fresh CA and server certificate for `SERVER_SANS`, as `ca.crt`, `server.crt`
    /// and `server.key` in `dir` (created if missing).
    pub fn generate(dir: &Path) -> TestCa {
        TestCa::generate_named(dir, "", SERVER_SANS)
    }

    /// An unrelated CA (and server certificate) in the same `dir`, with file names
    /// prefixed `other-`: a root the server's certificate does not chain to, for
    /// "certificate not trusted" tests.
    pub fn other(dir: &Path) -> TestCa {
        TestCa::generate_named(dir, "other-", SERVER_SANS)
    }

    /// Like `generate`, with a file-name prefix and the server certificate's names.
    pub fn generate_named(dir: &Path, prefix: &str, sans: &[&str]) -> TestCa {
        TestCa::generate_valid(dir, prefix, sans, None)
    }

    /// Like `generate_named`, with chosen validity windows (`None`: rcgen's
    /// defaults, 1975 to 4096). Files of the same `dir` and `prefix` are replaced:
    /// a server that reloads them has been issued a new certificate.
    pub fn generate_valid(dir: &Path, prefix: &str, sans: &[&str], lifetimes: Option<Lifetimes>) -> TestCa {
        fs::create_dir_all(dir).expect("create the certificate directory");

        let ca_key = KeyPair::generate().expect("generate the CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, format!("mockmate-diag test CA {prefix}"));
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        if let Some(l) = lifetimes {
            (ca_params.not_before, ca_params.not_after) = (days_from_now(l.ca.0), days_from_now(l.ca.1));
        }
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign the CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("generate the server key");
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("server params");
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if let Some(l) = lifetimes {
            (params.not_before, params.not_after) = (days_from_now(l.server.0), days_from_now(l.server.1));
        }
        let server_cert = params.signed_by(&server_key, &issuer).expect("sign the server certificate");

        let client_key = KeyPair::generate().expect("generate the client key");
        let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        client_params.distinguished_name.push(DnType::CommonName, "postgres");
        client_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params.signed_by(&client_key, &issuer).expect("sign the client certificate");

        let ca = TestCa {
            dir: dir.to_path_buf(),
            ca_cert: dir.join(format!("{prefix}ca.crt")),
            server_cert: dir.join(format!("{prefix}server.crt")),
            server_key: dir.join(format!("{prefix}server.key")),
            client_cert: dir.join(format!("{prefix}client.crt")),
            client_key: dir.join(format!("{prefix}client.key")),
        };
        fs::write(&ca.ca_cert, ca_cert.pem()).expect("write the CA certificate");
        fs::write(&ca.server_cert, server_cert.pem()).expect("write the server certificate");
        fs::write(&ca.server_key, server_key.serialize_pem()).expect("write the server key");
        fs::write(&ca.client_cert, client_cert.pem()).expect("write the client certificate");
        fs::write(&ca.client_key, client_key.serialize_pem()).expect("write the client key");
        set_private(&ca.server_key);
        set_private(&ca.client_key);
        ca
    }

    /// A self-signed server certificate for `SERVER_SANS` (no CA at all): what
    /// many managed databases and quick set-ups present. Made as `openssl req
    /// -x509` (the PostgreSQL manual's recipe) makes it: marked `CA:TRUE`, which
    /// Node and libpq accept from the trust store and webpki, left alone, does not.
    /// `ca_cert` is the certificate itself.
    pub fn self_signed(dir: &Path) -> TestCa {
        let mut ca = TestCa::generate_named(dir, "self-", SERVER_SANS);
        let key = KeyPair::generate().expect("generate the key");
        let sans: Vec<String> = SERVER_SANS.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("self-sign");
        fs::write(&ca.server_cert, cert.pem()).expect("write the certificate");
        fs::write(&ca.server_key, key.serialize_pem()).expect("write the key");
        set_private(&ca.server_key);
        ca.ca_cert = ca.server_cert.clone();
        ca
    }

    /// The CA certificate as PEM text.
    pub fn ca_pem(&self) -> String {
        fs::read_to_string(&self.ca_cert).expect("read the CA certificate")
    }
}

/// Servers refuse keys others can read.
fn set_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod 0600 the key");
    }
}
