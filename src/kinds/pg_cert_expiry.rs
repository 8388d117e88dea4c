//! `postgres.cert_expiry`: the certificates of the PostgreSQL connection are not
//! expired or about to expire — the server's chain and the `sslrootcert` CA
//! that issued it. The judgement is shared with Redis (`tls_common`).

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::pg_common::session;
use super::tls_common::{ExpiryParams, Service, judge, now};
use crate::check::{Check, Ctx, KindDef, Outcome, params};

pub static KIND: KindDef = KindDef {
    name: "postgres.cert_expiry",
    title: "PostgreSQL certificates are not expiring",
    description: "the server's certificate chain and the sslrootcert CA are valid, and none expires within warn_within (14d)",
    build: |t| {
        let p: ExpiryParams = params(t)?;
        Ok(Box::new(CertExpiry { warn_within: p.warn_within()? }))
    },
};

const SERVICE: Service = Service {
    unencrypted: "unencrypted connection: no certificate to check (postgres.tls judges encryption)",
    renew: "renew the server's certificate (ssl_cert_file on a self-managed server, then SELECT pg_reload_conf(); \
            a managed service rotates it in its console)",
};

struct CertExpiry {
    warn_within: Duration,
}

impl Check for CertExpiry {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            match session(ctx).await {
                Ok(session) => {
                    let info = &session.info;
                    judge(&info.certificates, info.tls.is_some(), now(), self.warn_within, &SERVICE)
                }
                Err(outcome) => outcome,
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use crate::check::testing::run_kind;

    #[tokio::test]
    async fn bad_warn_within_is_a_manifest_error() {
        let table: toml::Table = "warn_within = \"soon\"".parse().expect("toml");
        let err = (super::KIND.build)(table).err().unwrap_or_default();
        assert!(err.starts_with("`warn_within`"), "{err}");
        // Without a database the check says why, like every postgres.* check.
        let r = run_kind(&super::KIND, "", &[], "production").await;
        assert!(r.message.contains("DATABASE_URL"), "{}", r.message);
    }
}
