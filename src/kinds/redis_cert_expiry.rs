//! `redis.cert_expiry`: the certificates of the Redis connection (`rediss://`)
//! are not expired or about to expire — the server's chain and the
//! `REDIS_CA_CERT` CA that issued it. The judgement is shared with PostgreSQL
//! (`tls_common`); Redis being non-fatal, the default suite warns.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::redis_common::session;
use super::tls_common::{ExpiryParams, Service, judge, now};
use crate::check::{Check, Ctx, KindDef, Outcome, params};

pub static KIND: KindDef = KindDef {
    name: "redis.cert_expiry",
    title: "Redis certificates are not expiring",
    description: "with rediss://, the server's certificate chain and the REDIS_CA_CERT CA are valid, and none expires within warn_within (14d)",
    build: |t| {
        let p: ExpiryParams = params(t)?;
        Ok(Box::new(CertExpiry { warn_within: p.warn_within()? }))
    },
};

const SERVICE: Service = Service {
    unencrypted: "unencrypted connection (redis://): no certificate to check",
    renew: "renew the server's certificate (tls-cert-file on a self-managed server, then CONFIG SET tls-cert-file \
            to reload it; a managed service rotates it in its console)",
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
                    judge(&info.certificates, info.tls, now(), self.warn_within, &SERVICE)
                }
                Err(outcome) => outcome,
            }
        }
        .boxed()
    }
}
