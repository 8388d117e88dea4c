//! The PostgreSQL probe against real servers, broken the ways production breaks.
//!
//! `url_target` reads settings as the API's driver does (node-postgres);
//! `libpq_target` as libpq does (a manifest's `client = "libpq"`), whose TLS
//! meanings these tests pin down too. Where the two disagree, tests/concordance.rs
//! holds the tool to the real node-postgres.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::pg::{PgOptions, PgServer, SUPERUSER, SUPERUSER_PASSWORD, encode, free_port};
use crate::support::tarpit::Tarpit;
use crate::support::tls::TestCa;
use mockmate_diag::probe::Failure;
use mockmate_diag::probe::postgres::{ApiClient, ClientKind, PgSession, PgTarget, connect, describe, unit_begin_sql};

const DEADLINE: Duration = Duration::from_secs(5);

fn target(vars: &[(&str, &str)]) -> PgTarget {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let get = move |name: &str| map.get(name).cloned();
    PgTarget::from_env(&get).expect("valid configuration")
}

fn url_target(url: &str) -> PgTarget {
    target(&[("DATABASE_URL", url)])
}

/// `url` read with libpq's meanings (`[postgres] client = "libpq"` in a manifest).
fn libpq_target(url: &str) -> PgTarget {
    let get = move |name: &str| (name == "DATABASE_URL").then(|| url.to_string());
    let api = ApiClient { client: ClientKind::Libpq, ..ApiClient::default() };
    PgTarget::from_env_for(&get, &api).expect("valid configuration")
}

async fn connect_ok(target: &PgTarget) -> PgSession {
    match connect(target, DEADLINE).await {
        Ok(conn) => PgSession::read_only(conn, DEADLINE),
        Err(f) => panic!("connect to {target:?} failed: {f:?}"),
    }
}

async fn connect_err(target: &PgTarget, deadline: Duration) -> Failure {
    match connect(target, deadline).await {
        Ok(session) => panic!("connect to {target:?} succeeded: {:?}", session.info),
        Err(f) => f,
    }
}

#[tokio::test]
async fn healthy_server_reports_version_latency_and_no_tls() {
    let pg = PgServer::shared();
    let db = pg.create_db("healthy");
    let t = url_target(&pg.superuser_url(&db));
    // No TLS setting: node-postgres connects in plain text (it never tries TLS).
    assert_eq!(t.tls.label, "disable");

    let session = connect_ok(&t).await;
    let info = &session.info;
    assert!(info.server_version.starts_with(|c: char| c.is_ascii_digit()), "{info:?}");
    assert_eq!(info.tls, None);
    assert!(info.latency_ms > 0.0 && info.latency_ms < 5000.0, "{info:?}");
    assert_eq!((info.host.as_str(), info.port, info.dbname.as_str()), ("127.0.0.1", pg.port, db.as_str()));
    assert!(info.local);
    assert_eq!(info.source.as_str(), "DATABASE_URL");

    let rows = session
        .query_typed(
            "SELECT current_setting('application_name'), current_setting('statement_timeout'), \
             current_setting('lock_timeout'), current_setting('transaction_read_only')",
            &[],
        )
        .await
        .expect("query");
    let settings: (String, String, String, String) = (rows[0].get(0), rows[0].get(1), rows[0].get(2), rows[0].get(3));
    assert_eq!(settings, ("mockmate-diag".into(), "4750ms".into(), "500ms".into(), "on".into()));
    // The version comes from the startup's ParameterStatus, not a query: the same text.
    let rows = session.query_typed("SELECT current_setting('server_version')", &[]).await.unwrap();
    assert_eq!(info.server_version, rows[0].get::<_, String>(0));
}

#[tokio::test]
async fn a_refused_transaction_start_fails_closed() {
    // A unit's statement is queued before the reply to its BEGIN … SET LOCAL is in.
    // If any part of that opening fails, the transaction is aborted and the
    // statement is refused (25P02) instead of running outside read-only.
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db("setup_fails");
    let (client, connection) =
        tokio_postgres::connect(&pg.superuser_url(&db), tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let begin = unit_begin_sql(Duration::from_secs(5));
    assert!(begin.starts_with("BEGIN READ ONLY;") && begin.contains("SET LOCAL statement_timeout"), "{begin}");
    let failing = format!("{begin}; SELECT 1/0");
    // Sent together, as a unit is.
    let opening = client.batch_execute(&failing);
    let insert = client.batch_execute("INSERT INTO users (email) VALUES ('eve@example.com')");
    let end = client.batch_execute("ROLLBACK");
    let (opening, insert, end) = futures::join!(opening, insert, end);
    assert!(describe(&opening.unwrap_err()).ends_with("(22012)"));
    let text = describe(&insert.unwrap_err());
    assert!(text.ends_with("(25P02)"), "{text}");
    end.expect("ROLLBACK ends the aborted transaction");
    assert_eq!(pg.sql(&db, "SELECT count(*) FROM users"), "1");
}

#[tokio::test]
async fn between_units_the_backend_is_idle_and_unnamed() {
    // Every unit ends its transaction, and application_name is set LOCAL in it:
    // between units, the backend is what a pooler would hand the next client.
    // (The settings themselves are proven through a real pooler in tests/pooler.rs.)
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db("no_session_state");
    let session = connect_ok(&url_target(&pg.superuser_url(&db))).await;
    let pid: i32 = session.query_typed("SELECT pg_backend_pid()", &[]).await.expect("pid")[0].get(0);
    let activity =
        pg.sql(&db, &format!("SELECT state || '|' || application_name FROM pg_stat_activity WHERE pid = {pid}"));
    assert_eq!(activity, "idle|");
}

#[tokio::test]
async fn concurrent_queries_share_the_one_connection() {
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db("pipelined");
    let session = Arc::new(connect_ok(&url_target(&pg.superuser_url(&db))).await);
    let pid: i32 = session.query_typed("SELECT pg_backend_pid()", &[]).await.unwrap()[0].get(0);
    let queries = (0..8).map(|i| {
        let session = session.clone();
        async move {
            let rows = session
                .query_typed(
                    "SELECT pg_backend_pid(), count(*) FROM users WHERE is_active AND $1::int >= 0",
                    &[(&i, tokio_postgres::types::Type::INT4)],
                )
                .await
                .expect("query");
            (rows[0].get::<_, i32>(0), rows[0].get::<_, i64>(1))
        }
    });
    for (backend, active) in futures::future::join_all(queries).await {
        assert_eq!((backend, active), (pid, 1));
    }
}

#[tokio::test]
async fn refused_port_names_host_and_port() {
    let port = free_port();
    let t = url_target(&format!("postgresql://app:pw@127.0.0.1:{port}/db"));
    let f = connect_err(&t, DEADLINE).await;
    assert_eq!(f.message, format!("connection refused at 127.0.0.1:{port}"));
    let hint = f.hint.unwrap();
    assert!(hint.contains(&format!("127.0.0.1:{port}")) && hint.contains("DATABASE_URL"), "{hint}");
}

#[tokio::test]
async fn server_down_then_up_then_down() {
    let pg = PgServer::with(PgOptions { no_start: true, ..PgOptions::default() });
    let t = url_target(&pg.superuser_url("postgres"));
    let refused = format!("connection refused at 127.0.0.1:{}", pg.port);
    assert_eq!(connect_err(&t, DEADLINE).await.message, refused);
    pg.start();
    let session = connect_ok(&t).await;
    pg.stop();
    assert!(session.simple_query("SELECT 1").await.is_err());
    assert_eq!(connect_err(&t, DEADLINE).await.message, refused);
}

#[tokio::test]
async fn silent_server_costs_at_most_the_deadline() {
    let tarpit = Tarpit::start();
    let t = url_target(&format!("postgresql://app:pw@127.0.0.1:{}/db", tarpit.port));
    let started = Instant::now();
    let f = connect_err(&t, Duration::from_secs(1)).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(took >= Duration::from_secs(1), "took {took:?}");
    assert_eq!(f.message, "timed out after 1s waiting for the server's reply to startup");
    assert!(f.hint.is_some());
}

#[tokio::test]
async fn wrong_password_is_28p01_and_never_shows_the_password() {
    let pg = PgServer::shared();
    let db = pg.create_db("wrong_pw");
    let user = format!("app_{db}");
    pg.create_user(&user, "the-right-password");
    let sentinel = "S3NTINEL-wrong-pw-xyzzy";

    let t = url_target(&pg.url(&user, sentinel, &db));
    let f = connect_err(&t, DEADLINE).await;
    assert_eq!(f.message, format!("password authentication failed for user \"{user}\" (28P01)"));
    // Wrong, or expired (VALID UNTIL): PostgreSQL says the same to a client for both.
    let hint = f.hint.clone().unwrap_or_default();
    assert!(
        hint.starts_with("check the password in DATABASE_URL; if it is right, the role's password has expired"),
        "{hint}"
    );
    for shown in [format!("{f:?}"), format!("{t:?}")] {
        assert!(!shown.contains(sentinel), "password leaked: {shown}");
    }

    let port = pg.port.to_string();
    let t = target(&[
        ("DB_HOST", "127.0.0.1"),
        ("DB_PORT", &port),
        ("DB_USER", &user),
        ("DB_PASSWORD", sentinel),
        ("DB_NAME", &db),
    ]);
    let f = connect_err(&t, DEADLINE).await;
    assert!(f.message.ends_with("(28P01)"), "{f:?}");
    assert!(f.hint.as_deref().unwrap_or_default().starts_with("check DB_PASSWORD; "), "{f:?}");
    for shown in [format!("{f:?}"), format!("{t:?}")] {
        assert!(!shown.contains(sentinel), "password leaked: {shown}");
    }
}

#[tokio::test]
async fn missing_password_says_so() {
    let pg = PgServer::shared();
    let t = url_target(&format!("postgresql://{SUPERUSER}@127.0.0.1:{}/postgres", pg.port));
    let f = connect_err(&t, DEADLINE).await;
    assert_eq!(f.message, "the server asks for a password but none is configured");
}

#[tokio::test]
async fn unknown_database_is_3d000() {
    let pg = PgServer::shared();
    let t = url_target(&pg.superuser_url("mockmate_prod"));
    let f = connect_err(&t, DEADLINE).await;
    assert_eq!(f.message, "database \"mockmate_prod\" does not exist (3D000)");
    assert!(f.hint.unwrap().contains("create the database"));
}

#[tokio::test]
async fn db_vars_work_without_database_url() {
    let pg = PgServer::shared();
    let db = pg.create_db("db_vars");
    let port = pg.port.to_string();
    let t = target(&[
        ("DB_HOST", "localhost"),
        ("DB_PORT", &port),
        ("DB_USER", SUPERUSER),
        ("DB_PASSWORD", SUPERUSER_PASSWORD),
        ("DB_NAME", &db),
        ("PGSSLMODE", "disable"),
    ]);
    let session = connect_ok(&t).await;
    assert_eq!(session.info.source.as_str(), "DB_*");
    assert_eq!((session.info.tls_mode, session.info.sslmode.as_deref()), ("disable", Some("disable")));
    assert_eq!(session.info.dbname, db);
}

#[tokio::test]
async fn unix_socket_directory_as_host() {
    let pg = PgServer::shared();
    let db = pg.create_db("socket");
    let url = format!(
        "postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@{}:{}/{db}?sslmode=require",
        encode(&pg.socket_dir.display().to_string()),
        pg.port
    );
    let session = connect_ok(&libpq_target(&url)).await;
    // libpq never uses TLS over a Unix socket, whatever sslmode says.
    assert_eq!(session.info.tls, None);
    assert!(session.info.local);
    // node-postgres still asks for TLS there, and the server refuses.
    let f = connect_err(&url_target(&url), DEADLINE).await;
    assert!(
        f.message.starts_with(
            "the API (node-postgres) cannot connect: sslmode=require in DATABASE_URL asks for TLS over a Unix socket"
        ),
        "{f:?}"
    );
    assert!(f.message.ends_with("psql would connect: libpq never uses TLS over a Unix socket"), "{f:?}");
}

#[tokio::test]
async fn session_is_read_only() {
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db("read_only");
    let session = connect_ok(&url_target(&pg.superuser_url(&db))).await;
    // Sent at once, before the setup's reply is in: the SETs precede them on the wire.
    for sql in [
        "CREATE TABLE scratch (x int)",
        "INSERT INTO users (email) VALUES ('eve@example.com')",
        "UPDATE users SET credits = 0",
    ] {
        let e = session.simple_query(sql).await.unwrap_err();
        let text = describe(&e);
        assert!(text.ends_with("(25006)"), "{sql}: {text}");
    }
    assert_eq!(pg.sql(&db, "SELECT count(*) FROM users"), "1");
}

#[tokio::test]
async fn plain_server_with_sslmode_require() {
    let pg = PgServer::shared();
    let url = format!("{}?sslmode=require", pg.superuser_url("postgres"));
    let f = connect_err(&libpq_target(&url), DEADLINE).await;
    assert_eq!(f.message, "server does not support TLS but sslmode=require");
    // node-postgres: the same verdict (libpq's require needs TLS too), in the API's words.
    let f = connect_err(&url_target(&url), DEADLINE).await;
    assert!(f.message.contains("asks for TLS (verify-full) and the server does not support it"), "{f:?}");
    assert_eq!(f.details["libpq_verdict"], "the same");
    // prefer: node-postgres fails where psql falls back to plain text.
    let url = format!("{}?sslmode=prefer", pg.superuser_url("postgres"));
    let f = connect_err(&url_target(&url), DEADLINE).await;
    assert!(f.message.ends_with("psql would connect unencrypted (sslmode=prefer falls back to plain text)"), "{f:?}");
}

// ---- TLS-only server ------------------------------------------------------

fn tls_url(pg: &PgServer, db: &str, query: &str) -> String {
    format!("{}?{query}", pg.superuser_url(db))
}

fn ca(pg: &PgServer) -> &TestCa {
    pg.tls.as_ref().expect("a TLS cluster")
}

#[tokio::test]
async fn tls_server_sslmode_require_and_prefer_encrypt() {
    let pg = PgServer::shared_tls();
    for query in ["sslmode=require", "sslmode=prefer"] {
        let session = connect_ok(&libpq_target(&tls_url(pg, "postgres", query))).await;
        assert_eq!(session.info.tls.as_deref(), Some("TLSv1.3"), "{query}");
        let ssl: bool =
            session.query_typed("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap()[0]
                .get(0);
        assert!(ssl, "{query}");
    }
}

#[tokio::test]
async fn tls_server_sslmode_disable_is_rejected_by_pg_hba() {
    let pg = PgServer::shared_tls();
    let f = connect_err(&libpq_target(&tls_url(pg, "postgres", "sslmode=disable")), DEADLINE).await;
    assert_eq!(
        f.message,
        "server requires TLS: pg_hba.conf rejects connection for host \"127.0.0.1\", \
         user \"postgres\", database \"postgres\", no encryption (28000)"
    );
    assert_eq!(f.hint.as_deref(), Some("set sslmode=require in DATABASE_URL or PGSSLMODE"));
    // The classic outage: no TLS setting at all, node-postgres connects in plain text.
    let f = connect_err(&url_target(&pg.superuser_url("postgres")), DEADLINE).await;
    assert!(f.message.starts_with("the server requires TLS: pg_hba.conf rejects connection"), "{f:?}");
    assert!(f.message.contains("the API (node-postgres) connects in plain text"), "{f:?}");
    assert!(
        f.message.ends_with("psql would connect: it tries TLS first (sslmode=prefer) and does not verify"),
        "{f:?}"
    );
    assert!(f.hint.unwrap_or_default().contains("sslmode=no-verify"));
}

#[tokio::test]
async fn tls_verify_full_with_the_right_ca() {
    let pg = PgServer::shared_tls();
    let root = ca(pg).ca_cert.display().to_string();
    for host in ["127.0.0.1", "localhost"] {
        let url = format!(
            "postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@{host}:{}/postgres?sslmode=verify-full&sslrootcert={root}",
            pg.port
        );
        let session = connect_ok(&url_target(&url)).await;
        assert_eq!(session.info.tls.as_deref(), Some("TLSv1.3"), "{host}");
    }
}

#[tokio::test]
async fn tls_verify_full_against_public_roots_is_not_trusted() {
    let pg = PgServer::shared_tls();
    let t = libpq_target(&tls_url(pg, "postgres", "sslmode=verify-full"));
    let f = connect_err(&t, DEADLINE).await;
    assert_eq!(f.message, "TLS: certificate not trusted (unknown issuer)");
    assert!(f.hint.unwrap().contains("sslrootcert"));
    // node-postgres verifies sslmode=require too; psql would not.
    let f = connect_err(&url_target(&tls_url(pg, "postgres", "sslmode=require")), DEADLINE).await;
    assert_eq!(
        f.message,
        "the API (node-postgres) cannot connect: TLS certificate not trusted (unknown issuer); sslmode=require in \
         DATABASE_URL makes node-postgres verify it (verify-full) — psql would connect: sslmode=require does not \
         verify the certificate there"
    );
    let hint = f.hint.unwrap_or_default();
    assert!(hint.contains("sslmode=no-verify") && hint.contains("NODE_EXTRA_CA_CERTS"), "{hint}");
    // sslmode=no-verify: encrypted, nothing checked.
    let session = connect_ok(&url_target(&tls_url(pg, "postgres", "sslmode=no-verify"))).await;
    assert_eq!((session.info.tls.as_deref(), session.info.tls_mode), (Some("TLSv1.3"), "no-verify"));
    assert!(session.info.libpq_note.as_deref().unwrap_or_default().contains("invalid sslmode value"));
}

#[tokio::test]
async fn tls_wrong_ca_is_not_trusted_even_for_require() {
    let pg = PgServer::shared_tls();
    let dir = tempfile::tempdir().unwrap();
    let other = TestCa::other(dir.path());
    let root = other.ca_cert.display().to_string();
    // libpq: `require` with a root certificate verifies the chain like verify-ca.
    for mode in ["verify-ca", "verify-full", "require"] {
        let t = libpq_target(&tls_url(pg, "postgres", &format!("sslmode={mode}&sslrootcert={root}")));
        let f = connect_err(&t, DEADLINE).await;
        assert_eq!(f.message, "TLS: certificate not trusted (unknown issuer)", "{mode}");
        assert!(f.hint.unwrap().contains(&root), "{mode}");
    }
}

#[tokio::test]
async fn tls_unreadable_root_certificate_file() {
    let url = "postgresql://u:p@127.0.0.1:1/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.crt";
    let f = connect_err(&libpq_target(url), DEADLINE).await;
    assert!(f.message.starts_with("cannot read sslrootcert /nonexistent/ca.crt"), "{f:?}");
    // node-postgres reads it when the URL is parsed, and throws from pool.connect().
    let get = |name: &str| (name == "DATABASE_URL").then(|| url.to_string());
    let f = PgTarget::from_env(&get).unwrap_err();
    assert!(f.message.starts_with("node-postgres cannot read sslrootcert=/nonexistent/ca.crt"), "{f:?}");
}

#[tokio::test]
async fn tls_name_mismatch_fails_verify_full_but_passes_verify_ca() {
    let pg = PgServer::with(PgOptions {
        tls: true,
        tls_sans: Some(vec!["db.mockmate.invalid".to_string()]),
        ..PgOptions::default()
    });
    let root = ca(&pg).ca_cert.display().to_string();
    let t = libpq_target(&tls_url(&pg, "postgres", &format!("sslmode=verify-full&sslrootcert={root}")));
    let f = connect_err(&t, DEADLINE).await;
    assert!(f.message.starts_with("TLS: certificate not trusted (name mismatch: not valid for \"127.0.0.1\""), "{f:?}");
    assert!(f.hint.unwrap().contains("verify-ca"));

    let url = tls_url(&pg, "postgres", &format!("sslmode=verify-ca&sslrootcert={root}"));
    let session = connect_ok(&libpq_target(&url)).await;
    assert_eq!(session.info.tls.as_deref(), Some("TLSv1.3"));
    // node-postgres's verify-ca checks the name too; psql's does not.
    let f = connect_err(&url_target(&url), DEADLINE).await;
    assert!(f.message.contains("name mismatch"), "{f:?}");
    assert!(f.message.ends_with("psql would connect: sslmode=verify-ca does not check the host name there"), "{f:?}");
}
