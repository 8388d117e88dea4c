//! TLS as the API's driver (node-postgres) sees it, through the binary: a
//! TLS-only server, a private CA, `no-verify`, `require`, `verify-full`, and
//! what psql would do instead. (tests/concordance.rs holds every set-up against
//! the real driver; these pin the messages and details a person reads.)

use serde_json::Value;

use crate::postgres::run_url;
use crate::support::cmd::{assert_status, check, hint, message};
use crate::support::pg::{PgServer, SUPERUSER, SUPERUSER_PASSWORD};

#[test]
fn tls_only_server_with_a_private_ca_passes_no_verify_and_fails_require_as_node_postgres_does() {
    let pg = PgServer::shared_tls();
    let (_, report) = run_url(&format!("{}?sslmode=no-verify", pg.superuser_url("postgres")));
    assert_status(&report, "postgres.connect", "pass");
    let msg = message(&report, "postgres.connect");
    assert!(msg.contains(", TLSv1.3 no-verify (sslmode=no-verify in DATABASE_URL)"), "{msg}");
    assert!(msg.ends_with("psql would refuse these settings (invalid sslmode value: \"no-verify\")"), "{msg}");
    let d = &check(&report, "postgres.connect")["details"];
    assert_eq!(
        (&d["tls"], &d["tls_version"], &d["client"]),
        (&Value::from(true), &Value::from("TLSv1.3"), &Value::from("node-postgres"))
    );
    assert_status(&report, "postgres.tls", "pass");
    assert!(message(&report, "postgres.tls").starts_with("encrypted (TLSv1.3), certificate not verified"));
    // sslmode=require verifies in node-postgres: the test CA is not trusted.
    let (_, report) = run_url(&format!("{}?sslmode=require", pg.superuser_url("postgres")));
    assert_status(&report, "postgres.connect", "fail");
    let msg = message(&report, "postgres.connect");
    assert!(msg.ends_with("psql would connect: sslmode=require does not verify the certificate there"), "{msg}");
    assert_eq!(
        check(&report, "postgres.connect")["details"]["libpq_verdict"],
        "psql would connect: sslmode=require does not verify the certificate there"
    );
}

#[test]
fn tls_only_server_with_sslmode_disable_fails_with_the_pg_hba_reason() {
    let pg = PgServer::shared_tls();
    let (_, report) = run_url(&format!("{}?sslmode=disable", pg.superuser_url("postgres")));
    assert_status(&report, "postgres.connect", "fail");
    let msg = message(&report, "postgres.connect");
    assert!(
        msg.starts_with("the server requires TLS: pg_hba.conf rejects connection")
            && msg.contains("no encryption (28000); the API (node-postgres) connects in plain text: sslmode=disable"),
        "{msg}"
    );
    assert!(hint(&report, "postgres.connect").contains("sslmode=no-verify"));
}

#[test]
fn verify_full_against_the_test_ca_passes() {
    let pg = PgServer::shared_tls();
    let root = pg.tls.as_ref().expect("TLS cluster").ca_cert.display().to_string();
    let url = format!(
        "postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={root}",
        pg.port
    );
    let (_, report) = run_url(&url);
    assert_status(&report, "postgres.connect", "pass");
    assert!(message(&report, "postgres.connect").contains("TLSv1.3 verify-full (sslmode=verify-full in DATABASE_URL)"));
    // Public roots do not know the test CA.
    let (_, report) = run_url(&format!("{}?sslmode=verify-full", pg.superuser_url("postgres")));
    assert!(
        message(&report, "postgres.connect")
            .starts_with("the API (node-postgres) cannot connect: TLS certificate not trusted (unknown issuer)"),
        "{report:#}"
    );
}
