//! `postgres.cert_expiry` and `redis.cert_expiry`: one kind, parameterised by
//! service: the lifetimes of the certificates the run's connection dealt with
//! (the server's chain, the `sslrootcert` / `REDIS_CA_CERT` CA), judged by
//! [`super::shared::certificates`].

use std::time::Duration;

use super::shared::certificates::{ExpiryParams, Words, judge, now};
use super::shared::{postgres, redis};
use crate::check::{Check, Ctx, KindDef, Outcome, ParamError, Service, params};
use futures::FutureExt;
use futures::future::BoxFuture;

pub static POSTGRES: KindDef = KindDef {
    name: "postgres.cert_expiry",
    title: "PostgreSQL certificates are not expiring",
    description: "the server's certificate chain and the sslrootcert CA are valid, and none expires within warn_within (14d)",
    build: |t| build(t, Service::Postgres),
};

pub static REDIS: KindDef = KindDef {
    name: "redis.cert_expiry",
    title: "Redis certificates are not expiring",
    description: "with rediss://, the server's certificate chain and the REDIS_CA_CERT CA are valid, and none expires within warn_within (14d)",
    build: |t| build(t, Service::Redis),
};

fn build(table: toml::Table, service: Service) -> Result<Box<dyn Check>, ParamError> {
    let p: ExpiryParams = params(table)?;
    Ok(Box::new(CertExpiry { service, warn_within: p.warn_within()? }))
}

struct CertExpiry {
    service: Service,
    warn_within: Duration,
}

impl Check for CertExpiry {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let words = words(self.service);
            match self.service {
                Service::Postgres => match postgres::session(ctx).await {
                    Ok(session) => {
                        let info = &session.info;
                        judge(&info.certificates, info.tls.is_some(), now(), self.warn_within, &words)
                    }
                    Err(outcome) => outcome,
                },
                Service::Redis => match redis::session(ctx).await {
                    Ok(session) => {
                        let info = &session.info;
                        judge(&info.certificates, info.tls, now(), self.warn_within, &words)
                    }
                    Err(outcome) => outcome,
                },
                // Never built (see POSTGRES, REDIS): the API's chain is api.reachable's.
                Service::Api => Outcome::skip("api.reachable judges the API's certificate"),
            }
        }
        .boxed()
    }
}

/// What each service says around the judgement.
fn words(service: Service) -> Words {
    match service {
        Service::Postgres => Words {
            unencrypted: "unencrypted connection: no certificate to check (postgres.tls judges encryption)",
            renew: "renew the server's certificate (ssl_cert_file on a self-managed server, then SELECT \
                    pg_reload_conf(); a managed service rotates it in its console)",
        },
        Service::Redis => Words {
            unencrypted: "unencrypted connection (redis://): no certificate to check",
            renew: "renew the server's certificate (tls-cert-file on a self-managed server, then CONFIG SET \
                    tls-cert-file to reload it; a managed service rotates it in its console)",
        },
        Service::Api => super::shared::api::CERTIFICATE_WORDS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_warn_within_is_a_manifest_error() {
        let table: toml::Table = "warn_within = \"soon\"".parse().expect("toml");
        let err = (POSTGRES.build)(table).err().map(|e| e.0).unwrap_or_default();
        assert!(err.starts_with("`warn_within`"), "{err}");
        // Without a database the check says why, like every postgres.* check.
        let r = crate::check::testing::run_kind(&POSTGRES, "", &[], "production").await;
        assert!(r.message.contains("DATABASE_URL"), "{}", r.message);
    }
}
