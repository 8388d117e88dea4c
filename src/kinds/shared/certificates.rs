//! Judging the lifetimes of the certificates one connection dealt with — the
//! chain the server presented and the private CA it was verified against —
//! for `postgres.cert_expiry`, `redis.cert_expiry` and `api.reachable`.
//!
//! A verifying connection to an expired chain never gets here: the handshake
//! fails and `*.connect` says "certificate not trusted (expired on …)". What is
//! left to say: a chain that expires soon; a chain that has expired behind a
//! connection that does not check certificates (`sslmode=require`,
//! `rediss://…#insecure`), which clients that do check will refuse; and an
//! expired private CA, which webpki (our verifier) accepts as a trust anchor but
//! OpenSSL (Node's) does not.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::check::Outcome;
use crate::probe::certs::{Certificates, Lifetime, date};
use crate::probe::tls::PemFile;

/// `warn_within = "14d"`: how close an expiry must be to warn.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpiryParams {
    #[serde(default = "default_warn_within")]
    warn_within: String,
}

fn default_warn_within() -> String {
    "14d".to_string()
}

impl ExpiryParams {
    pub fn warn_within(&self) -> Result<Duration, String> {
        humantime::parse_duration(self.warn_within.trim()).map_err(|e| {
            format!("`warn_within`: \"{}\" is not a duration like \"14d\" or \"72h\" ({e})", self.warn_within)
        })
    }
}

/// The words a service puts around the judgement.
pub struct Words {
    /// The skip message for an unencrypted connection.
    pub unencrypted: &'static str,
    /// How the server's certificate is renewed.
    pub renew: &'static str,
}

/// Where a certificate sits, for the message.
#[derive(Debug, Clone, Copy)]
enum Role<'a> {
    Server,
    Intermediate,
    /// A self-signed certificate the server sends along with its chain.
    Root,
    /// A certificate of the private CA file that issued the server's chain.
    Anchor(&'a PemFile),
}

impl Role<'_> {
    fn key(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Intermediate => "intermediate",
            Role::Root => "root",
            Role::Anchor(_) => "ca_file",
        }
    }

    fn label(self, cert: &Lifetime) -> String {
        let name = &cert.name;
        match self {
            Role::Server => format!("the server certificate \"{name}\""),
            Role::Intermediate => format!("the intermediate CA \"{name}\" in the server's chain"),
            Role::Root => format!("the root CA \"{name}\" the server sends"),
            Role::Anchor(file) => format!("the {} CA \"{name}\" ({})", file.origin, file.path.display()),
        }
    }

    fn fix(self, service: &Words) -> String {
        match self {
            Role::Anchor(file) => format!(
                "point {} at the CA's current certificate ({} is out of date); if the CA was replaced, \
                 the server needs a certificate from the new one",
                file.origin,
                file.path.display()
            ),
            _ => service.renew.to_string(),
        }
    }
}

/// How a certificate stands at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Standing {
    Valid,
    ExpiresSoon,
    NotYetValid,
    Expired,
}

/// The judgement. `now` in seconds since the epoch.
pub fn judge(certs: &Certificates, encrypted: bool, now: i64, warn_within: Duration, service: &Words) -> Outcome {
    if !encrypted {
        return Outcome::skip(service.unencrypted);
    }
    if certs.presented.is_empty() {
        return Outcome::warn(
            "the connection is encrypted but no server certificate was seen; cannot judge its lifetime",
        );
    }
    let window = i64::try_from(warn_within.as_secs()).unwrap_or(i64::MAX);
    let last = certs.presented.len() - 1;
    let mut all: Vec<(Role, &Lifetime)> = certs
        .presented
        .iter()
        .enumerate()
        .map(|(i, c)| match i {
            0 => (Role::Server, c),
            // A server may send the root along (Redis does): when it is the CA
            // file's, the file is what the client trusts, and what to fix.
            i if i == last && c.is_self_signed() => match &certs.ca_file {
                Some(ca) if ca.certs.contains(c) => (Role::Anchor(&ca.file), c),
                _ => (Role::Root, c),
            },
            _ => (Role::Intermediate, c),
        })
        .collect();
    if let Some(ca) = &certs.ca_file {
        all.extend(certs.anchors().into_iter().map(|c| (Role::Anchor(&ca.file), c)));
    }
    let standing = |c: &Lifetime| {
        if c.not_after <= now {
            Standing::Expired
        } else if c.not_before > now {
            Standing::NotYetValid
        } else if c.not_after - now <= window {
            Standing::ExpiresSoon
        } else {
            Standing::Valid
        }
    };
    // The worst standing; among equals, the earliest expiry.
    let Some(&(role, cert)) = all.iter().max_by_key(|(_, c)| (standing(c), -c.not_after)) else {
        return Outcome::warn("no certificate could be read; cannot judge lifetimes");
    };
    let earliest = all.iter().map(|(_, c)| c.not_after).min().unwrap_or(cert.not_after);
    let label = role.label(cert);
    let outcome = match standing(cert) {
        Standing::Expired => Outcome::problem(format!(
            "{label} expired {} ago ({}): clients that verify certificates refuse the connection",
            span(now - cert.not_after),
            date(cert.not_after)
        ))
        .hint(role.fix(service)),
        Standing::NotYetValid => Outcome::problem(format!(
            "{label} is not valid until {}: clients that verify certificates refuse the connection",
            date(cert.not_before)
        ))
        .hint("check the clocks of this machine and of the certificate's issuer"),
        Standing::ExpiresSoon => {
            Outcome::warn(format!("{label} expires in {} ({})", span(cert.not_after - now), date(cert.not_after)))
                .hint(format!("before {}: {}", date(cert.not_after), role.fix(service)))
        }
        Standing::Valid => Outcome::pass(format!(
            "earliest expiry in {} ({}): {label}; {} checked",
            span(cert.not_after - now),
            date(cert.not_after),
            count(all.len())
        )),
    };
    let list: Vec<Value> = all
        .iter()
        .map(|(role, c)| {
            json!({"role": role.key(), "name": c.name, "not_before": date(c.not_before), "not_after": date(c.not_after)})
        })
        .collect();
    outcome
        .detail("earliest_not_after", date(earliest))
        .detail("days_left", (earliest - now).div_euclid(86_400))
        .detail("warn_within", humantime::format_duration(warn_within).to_string())
        .detail("certificates", list)
}

fn count(n: usize) -> String {
    if n == 1 { "1 certificate".to_string() } else { format!("{n} certificates") }
}

/// `3 days`, `1 day`, `5 hours`, `12 minutes`: how far an expiry is.
fn span(secs: i64) -> String {
    let secs = secs.max(0);
    let (n, unit) = match secs {
        s if s >= 2 * 86_400 => (s / 86_400, "days"),
        s if s >= 86_400 => (1, "day"),
        s if s >= 7_200 => (s / 3_600, "hours"),
        s if s >= 3_600 => (1, "hour"),
        s if s >= 120 => (s / 60, "minutes"),
        s => (s, if s == 1 { "second" } else { "seconds" }),
    };
    format!("{n} {unit}")
}

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;
    use crate::probe::certs::CaFile;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    const DAY: i64 = 86_400;
    /// 2026-12-01T00:00:00Z
    const NOW: i64 = 1_796_083_200;
    const SERVICE: Words = Words { unencrypted: "unencrypted", renew: "renew the server's certificate" };

    /// A CA valid for `ca_days` from NOW and a leaf it signed valid for `leaf_days`
    /// (negative: expired that many days ago), as Lifetimes.
    fn chain(ca_days: i64, leaf_days: i64) -> (Lifetime, Lifetime) {
        let at = |days: i64| {
            let base = rcgen::date_time_ymd(2026, 12, 1);
            let span = std::time::Duration::from_secs(days.unsigned_abs() * DAY as u64);
            if days >= 0 { base + span } else { base - span }
        };
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "Test CA");
        ca.not_before = at(-400);
        ca.not_after = at(ca_days);
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("key");
        let mut leaf = CertificateParams::new(vec!["db.test".to_string()]).expect("params");
        leaf.distinguished_name.push(DnType::CommonName, "db.test");
        leaf.not_before = at(-30);
        leaf.not_after = at(leaf_days);
        let leaf = leaf.signed_by(&key, &issuer).expect("leaf");
        (Lifetime::of(ca_cert.der()).expect("ca"), Lifetime::of(leaf.der()).expect("leaf"))
    }

    fn certs(ca_days: i64, leaf_days: i64, with_file: bool) -> Certificates {
        let (ca, leaf) = chain(ca_days, leaf_days);
        let file = PemFile { path: "/etc/ca.pem".into(), origin: "sslrootcert" };
        Certificates { presented: vec![leaf], ca_file: with_file.then(|| CaFile { file, certs: vec![ca] }) }
    }

    fn judged(certs: &Certificates) -> Outcome {
        judge(certs, true, NOW, Duration::from_secs(14 * DAY as u64), &SERVICE)
    }

    #[test]
    fn thresholds() {
        let o = judged(&certs(3650, 90, true));
        assert_eq!(o.verdict, Verdict::Pass);
        assert_eq!(
            o.message,
            "earliest expiry in 90 days (2027-03-01T00:00:00Z): the server certificate \"db.test\"; 2 certificates checked"
        );
        assert_eq!(o.details["days_left"], 90);

        let o = judged(&certs(3650, 9, false));
        assert_eq!(
            (o.verdict, o.message.as_str()),
            (Verdict::Warn, "the server certificate \"db.test\" expires in 9 days (2026-12-10T00:00:00Z)")
        );
        assert!(o.hint.unwrap_or_default().starts_with("before 2026-12-10T00:00:00Z: renew"));

        let o = judged(&certs(3650, -3, false));
        assert_eq!(o.verdict, Verdict::Problem);
        assert_eq!(
            o.message,
            "the server certificate \"db.test\" expired 3 days ago (2026-11-28T00:00:00Z): \
             clients that verify certificates refuse the connection"
        );
        assert_eq!(o.details["days_left"], -3);
    }

    #[test]
    fn an_expired_private_ca_is_named_with_its_file() {
        let o = judged(&certs(-1, 300, true));
        assert_eq!(o.verdict, Verdict::Problem);
        assert!(
            o.message.starts_with("the sslrootcert CA \"Test CA\" (/etc/ca.pem) expired 1 day ago"),
            "{}",
            o.message
        );
        assert!(o.hint.unwrap_or_default().starts_with("point sslrootcert at the CA's current certificate"));
        assert_eq!(o.details["certificates"][1]["role"], "ca_file");
        // The same root, sent by the server too, is still the file's to fix.
        let mut sent = certs(-1, 300, true);
        let root = sent.ca_file.as_ref().map(|f| f.certs[0].clone()).expect("ca");
        sent.presented.push(root);
        let o = judged(&sent);
        assert!(o.message.starts_with("the sslrootcert CA \"Test CA\" (/etc/ca.pem) expired"), "{}", o.message);
        assert_eq!(o.details["certificates"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn unencrypted_is_skipped_and_spans_read_naturally() {
        assert_eq!(judge(&Certificates::default(), false, NOW, Duration::ZERO, &SERVICE).verdict, Verdict::Skip);
        assert_eq!(judge(&Certificates::default(), true, NOW, Duration::ZERO, &SERVICE).verdict, Verdict::Warn);
        assert_eq!(span(DAY + 5), "1 day");
        assert_eq!(span(5 * 3600 + 1), "5 hours");
        assert_eq!(span(59), "59 seconds");
        assert_eq!(span(-5), "0 seconds");
    }

    #[test]
    fn warn_within_is_a_duration() {
        let p = |s: &str| ExpiryParams { warn_within: s.to_string() }.warn_within();
        assert_eq!(p("14d"), Ok(Duration::from_secs(14 * DAY as u64)));
        assert!(p("soon").unwrap_err().starts_with("`warn_within`: \"soon\""));
    }
}
