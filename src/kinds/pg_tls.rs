//! `postgres.tls`: production traffic to a remote database is encrypted.

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::check::{Check, Ctx, KindDef, Outcome};
use crate::probe::postgres::PgInfo;

pub static KIND: KindDef = KindDef {
    name: "postgres.tls",
    title: "PostgreSQL connection is encrypted",
    description: "with --env production, the connection to a host that is not loopback or a Unix socket uses TLS",
    build: |t| crate::check::without_params(t, Tls),
};

struct Tls;

impl Check for Tls {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            match super::shared::postgres::session(ctx).await {
                Ok(session) => judge(&session.info, ctx.is_production()),
                Err(outcome) => outcome,
            }
        }
        .boxed()
    }
}

fn judge(info: &PgInfo, production: bool) -> Outcome {
    let at = if info.host.starts_with('/') { "a Unix socket".to_string() } else { info.host.clone() };
    let origin = &info.tls_origin;
    let outcome = match (&info.tls, info.local) {
        (Some(version), _) if info.tls_mode == "no-verify" => Outcome::pass(format!(
            "encrypted ({version}), certificate not verified ({origin}): a man in the middle would go unnoticed"
        )),
        (Some(version), _) => Outcome::pass(format!("encrypted ({version}, {})", info.tls_mode)),
        (None, true) if info.host.starts_with('/') => Outcome::pass("unencrypted, over a Unix socket (local)"),
        (None, true) => Outcome::pass(format!("unencrypted, to a local host ({at})")),
        (None, false) if !production => {
            Outcome::pass(format!("unencrypted to {at} ({origin}); required only with --env production"))
        }
        (None, false) => Outcome::problem(format!(
            "unencrypted connection to {at} in production ({origin}): passwords and data cross the network in clear"
        ))
        .hint(
            "enable ssl on the server and add sslmode=verify-full to DATABASE_URL (the certificate must be trusted: \
             sslrootcert=/path/to/ca.pem for a private CA), or sslmode=no-verify to encrypt without verifying",
        ),
    };
    outcome
        .detail("tls", info.tls.is_some())
        .detail("local", info.local)
        .detail("tls_mode", info.tls_mode)
        .detail("sslmode", info.sslmode.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;
    use crate::probe::postgres::{ClientKind, PgSource};

    fn info(host: &str, local: bool, tls: Option<&str>) -> PgInfo {
        PgInfo {
            server_version: "15.4".into(),
            tls: tls.map(str::to_string),
            latency_ms: 1.0,
            client: ClientKind::NodePostgres,
            tls_mode: if tls.is_some() { "verify-full" } else { "disable" },
            tls_origin: if tls.is_some() {
                "sslmode=require in DATABASE_URL"
            } else {
                "no TLS setting in DATABASE_URL"
            }
            .into(),
            sslmode: None,
            libpq_note: None,
            pg9_change: false,
            source: PgSource::DatabaseUrl,
            host: host.into(),
            port: 5432,
            user: "app".into(),
            dbname: "mockmate".into(),
            local,
            certificates: Default::default(),
        }
    }

    #[test]
    fn unencrypted_remote_in_production_is_the_only_problem() {
        let cases: &[(PgInfo, bool, Verdict, &str)] = &[
            (
                info("db.internal", false, None),
                true,
                Verdict::Problem,
                "unencrypted connection to db.internal in production (no TLS setting in DATABASE_URL): passwords and data cross the network in clear",
            ),
            (
                info("db.internal", false, None),
                false,
                Verdict::Pass,
                "unencrypted to db.internal (no TLS setting in DATABASE_URL); required only with --env production",
            ),
            (info("db.internal", false, Some("TLSv1.3")), true, Verdict::Pass, "encrypted (TLSv1.3, verify-full)"),
            (info("127.0.0.1", true, None), true, Verdict::Pass, "unencrypted, to a local host (127.0.0.1)"),
            (info("/var/run/postgresql", true, None), true, Verdict::Pass, "unencrypted, over a Unix socket (local)"),
        ];
        for (info, production, verdict, message) in cases {
            let o = judge(info, *production);
            assert_eq!((o.verdict, o.message.as_str()), (*verdict, *message));
        }
        let no_verify = PgInfo { tls_mode: "no-verify", ..info("db.internal", false, Some("TLSv1.3")) };
        assert!(judge(&no_verify, true).message.contains("not verified"));
    }
}
