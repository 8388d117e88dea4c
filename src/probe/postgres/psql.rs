//! Where psql would decide otherwise than the API's driver: the words a verdict
//! adds when libpq (psql, pg_dump, migrations run with psql) reads the same
//! settings differently. The TLS meanings themselves are in `ssl`.

use super::ssl::{ClientKind, Libpq, SslMode};
use super::target::PgTarget;

/// Where psql would decide otherwise though the API's driver connected.
pub fn libpq_on_success(target: &PgTarget) -> Option<String> {
    if target.client == ClientKind::Libpq {
        return None;
    }
    if target.raw_at {
        return Some(format!(
            "psql would read another host: it splits {} at the first '@' (percent-encode @ in the password as %40)",
            target.var()
        ));
    }
    match &target.libpq {
        Libpq::Refuses(why) => Some(format!("psql would refuse these settings ({why})")),
        Libpq::Reads { sslmode: SslMode::VerifyCa | SslMode::VerifyFull, sslrootcert: false }
            if !target.is_unix_socket() =>
        {
            Some(
                "psql would want a root certificate (sslrootcert, or ~/.postgresql/root.crt): libpq does not use \
                 the public roots Node trusts"
                    .to_string(),
            )
        }
        _ => None,
    }
}

/// What psql would do where the API's driver failed, when it differs:
/// `Some("psql would connect (…)")`.
pub fn libpq_where_node_fails(target: &PgTarget, failure: NodeFailure) -> Option<String> {
    if target.client == ClientKind::Libpq {
        return None;
    }
    if let Libpq::Refuses(why) = &target.libpq {
        return Some(format!("psql would refuse these settings too ({why})"));
    }
    let sslmode = match &target.libpq {
        Libpq::Reads { sslmode, .. } => *sslmode,
        Libpq::Refuses(_) => return None,
    };
    let (chain, name) = target.libpq.verifies();
    match failure {
        NodeFailure::NoTlsOnServer if target.is_unix_socket() => {
            Some("psql would connect: libpq never uses TLS over a Unix socket".to_string())
        }
        NodeFailure::NoTlsOnServer if sslmode == SslMode::Disable => {
            Some("psql would connect unencrypted (sslmode=disable)".to_string())
        }
        NodeFailure::NoTlsOnServer if target.libpq.accepts_plain() => {
            Some(format!("psql would connect unencrypted (sslmode={sslmode} falls back to plain text)"))
        }
        NodeFailure::Untrusted if !chain => {
            Some(format!("psql would connect: sslmode={sslmode} does not verify the certificate there"))
        }
        NodeFailure::NameMismatch if !name => {
            Some(format!("psql would connect: sslmode={sslmode} does not check the host name there"))
        }
        NodeFailure::ServerRequiresTls if target.libpq.tries_tls() && !chain => {
            Some(format!("psql would connect: it tries TLS first (sslmode={sslmode}) and does not verify"))
        }
        NodeFailure::ServerRequiresTls if target.libpq.tries_tls() => {
            Some(format!("psql would try TLS first (sslmode={sslmode})"))
        }
        _ => None,
    }
}

/// The driver's failures whose libpq verdict can differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeFailure {
    /// TLS asked for, the server answered `N` to SSLRequest.
    NoTlsOnServer,
    /// The certificate's chain is not trusted (unknown issuer, expired …).
    Untrusted,
    /// The certificate does not name the host.
    NameMismatch,
    /// Plain text, and the server's pg_hba.conf requires TLS.
    ServerRequiresTls,
    Other,
}
