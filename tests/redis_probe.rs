//! The Redis probe against real servers, broken the ways production breaks them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::redis::{RedisServer, encode, free_port};
use crate::support::tarpit::Tarpit;
use crate::support::tls::TestCa;
use mockmate_diag::probe::Failure;
use mockmate_diag::probe::redis::{RedisSession, RedisTarget, connect};

const DEADLINE: Duration = Duration::from_secs(5);
/// A password that must never be echoed anywhere.
const SENTINEL: &str = "sentinel-Zq9x-secret";

fn target(vars: &[(&str, &str)]) -> RedisTarget {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let get = move |name: &str| map.get(name).cloned();
    RedisTarget::from_env(&get).unwrap_or_else(|f| panic!("REDIS_URL rejected: {f:?}"))
}

async fn probe(vars: &[(&str, &str)], deadline: Duration) -> Result<RedisSession, Failure> {
    connect(&target(vars), deadline).await
}

async fn probe_url(url: &str) -> Result<RedisSession, Failure> {
    probe(&[("REDIS_URL", url)], DEADLINE).await
}

fn expect_failure(result: Result<RedisSession, Failure>) -> Failure {
    match result {
        Ok(session) => panic!("expected a failure, got {session:?}"),
        Err(f) => f,
    }
}

fn expect_session(result: Result<RedisSession, Failure>) -> RedisSession {
    result.unwrap_or_else(|f| panic!("expected a session, got {f:?}"))
}

fn assert_no_secret(f: &Failure, secret: &str) {
    let everything = format!("{} {:?} {f:?}", f.message, f.hint);
    assert!(!everything.contains(secret), "secret leaked: {everything}");
}

#[tokio::test]
async fn healthy_server_reports_version_role_and_latency() {
    let server = RedisServer::shared();
    let session = expect_session(probe_url(&server.url()).await);

    let info = &session.info;
    assert_eq!(Some(info.version.clone()), server.info_field("redis_version"));
    assert_eq!(info.role, "master");
    assert_eq!(info.mode, "standalone");
    assert!(!info.tls);
    assert!(info.latency_p50_ms > 0.0 && info.latency_p50_ms <= info.latency_p99_ms, "{info:?}");
    assert!(info.latency_p99_ms < 1000.0, "{info:?}");
    // INFO all: every section, not just the default ones (commandstats: the
    // harness PINGed at start-up).
    for field in ["used_memory", "maxmemory_policy", "connected_clients", "cmdstat_ping"] {
        assert!(session.info_fields.contains_key(field), "INFO lacks {field}");
    }
}

#[tokio::test]
async fn probe_sends_only_pings_and_one_info() {
    let server = RedisServer::start();
    server.cli(&["CONFIG", "RESETSTAT"]);
    let session = expect_session(probe_url(&server.url()).await);
    drop(session);

    let stats = server.cli(&["INFO", "commandstats"]);
    let calls: HashMap<&str, &str> = stats
        .lines()
        .filter_map(|l| l.trim().strip_prefix("cmdstat_")?.split_once(":calls="))
        .map(|(cmd, rest)| (cmd, rest.split(',').next().unwrap_or_default()))
        .collect();
    assert_eq!(calls.get("ping"), Some(&"5"), "{stats}");
    assert_eq!(calls.get("info"), Some(&"1"), "{stats}");
    // `config|resetstat` is our own; nothing else may have run.
    let others: Vec<_> = calls.keys().filter(|c| !["ping", "info", "config|resetstat"].contains(c)).collect();
    assert!(others.is_empty(), "unexpected commands {others:?}:\n{stats}");
}

#[tokio::test]
async fn refused_port_names_the_address() {
    let port = free_port();
    let f = expect_failure(probe_url(&format!("redis://127.0.0.1:{port}")).await);
    assert_eq!(f.message, format!("connection refused at 127.0.0.1:{port}"));
    assert!(f.hint.unwrap_or_default().contains("start Redis"));
}

#[tokio::test]
async fn silent_server_costs_one_deadline_waiting_for_ping() {
    let tarpit = Tarpit::start();
    let started = Instant::now();
    let f =
        expect_failure(probe(&[("REDIS_URL", &format!("redis://{}", tarpit.addr()))], Duration::from_secs(1)).await);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(f.message, format!("timed out after 1s waiting for PING reply from {}", tarpit.addr()));
    assert!(f.hint.is_some());
}

#[tokio::test]
async fn silent_tls_server_times_out_in_the_handshake() {
    let tarpit = Tarpit::start();
    let started = Instant::now();
    let f =
        expect_failure(probe(&[("REDIS_URL", &format!("rediss://{}", tarpit.addr()))], Duration::from_secs(1)).await);
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert_eq!(f.message, format!("timed out after 1s during TLS handshake with {}", tarpit.addr()));
    assert!(f.hint.unwrap_or_default().contains("redis://"));
}

#[tokio::test]
async fn password_required_but_missing_says_noauth() {
    let server = RedisServer::builder().requirepass(SENTINEL).start();
    let f = expect_failure(probe_url(&server.url_as(None, None)).await);
    assert_eq!(f.message, "NOAUTH: the server requires a password and REDIS_URL has none");
    assert_eq!(
        f.hint.as_deref(),
        Some(format!("set the password in REDIS_URL as redis://:<password>@{}", server.addr()).as_str())
    );
}

#[tokio::test]
async fn wrong_password_says_wrongpass_and_never_echoes_it() {
    let server = RedisServer::builder().requirepass("the-right-one").start();
    let url = server.url_as(None, Some(SENTINEL));
    let t = target(&[("REDIS_URL", &url)]);
    assert!(!format!("{t:?}").contains(SENTINEL));

    let f = expect_failure(connect(&t, DEADLINE).await);
    assert!(f.message.starts_with("WRONGPASS: invalid username-password pair"), "{f:?}");
    assert!(f.hint.as_deref().unwrap_or_default().contains("password"), "{f:?}");
    assert_no_secret(&f, SENTINEL);
}

#[tokio::test]
async fn right_password_with_special_characters_logs_in() {
    let password = "p@ss:w/rd%#?";
    let server = RedisServer::builder().requirepass(password).start();
    assert!(server.url().contains(&encode(password)));
    let session = expect_session(probe_url(&server.url()).await);
    assert_eq!(session.info.role, "master");
}

#[tokio::test]
async fn acl_user_logs_in_as_itself() {
    let server = RedisServer::builder().requirepass("default-pw").user("mockmate", SENTINEL).start();
    let mut session = expect_session(probe_url(&server.url_as(Some("mockmate"), Some(SENTINEL))).await);
    let whoami: String = redis::cmd("ACL").arg("WHOAMI").query_async(&mut session.conn).await.unwrap();
    assert_eq!(whoami, "mockmate");

    let f = expect_failure(probe_url(&server.url_as(Some("mockmate"), Some("nope"))).await);
    assert!(f.message.starts_with("WRONGPASS"), "{f:?}");
    assert!(f.hint.unwrap_or_default().contains("ACL user"));
}

#[tokio::test]
async fn database_number_is_selected_or_named_when_missing() {
    let server = RedisServer::shared();
    let mut session = expect_session(probe_url(&format!("{}/3", server.url())).await);
    let client: String = redis::cmd("CLIENT").arg("INFO").query_async(&mut session.conn).await.unwrap();
    assert!(client.contains(" db=3 "), "{client}");

    let f = expect_failure(probe_url(&format!("{}/99", server.url())).await);
    assert_eq!(f.message, "SELECT 99 failed: DB index is out of range");
}

#[tokio::test]
async fn tls_with_private_ca_connects() {
    let server = RedisServer::builder().tls().requirepass(SENTINEL).start();
    let ca = server.ca.as_ref().unwrap().ca_cert.display().to_string();
    let session = expect_session(probe(&[("REDIS_URL", &server.url()), ("REDIS_CA_CERT", &ca)], DEADLINE).await);
    assert!(session.info.tls);
    assert_eq!(session.info.role, "master");

    // By name too: the certificate lists localhost, and ::1 (tried first on some
    // systems) refuses, so the probe must move on to 127.0.0.1.
    let by_name = server.url().replace("127.0.0.1", "localhost");
    expect_session(probe(&[("REDIS_URL", &by_name), ("REDIS_CA_CERT", &ca)], DEADLINE).await);
}

#[tokio::test]
async fn tls_without_the_ca_is_not_trusted() {
    let server = RedisServer::builder().tls().start();
    let f = expect_failure(probe_url(&server.url()).await);
    assert!(f.message.contains("certificate not trusted"), "{f:?}");
    assert!(f.hint.unwrap_or_default().contains("REDIS_CA_CERT"));

    let dir = tempfile::tempdir().unwrap();
    let other = TestCa::other(dir.path());
    let ca = other.ca_cert.display().to_string();
    let f = expect_failure(probe(&[("REDIS_URL", &server.url()), ("REDIS_CA_CERT", &ca)], DEADLINE).await);
    assert!(f.message.contains("certificate not trusted"), "{f:?}");
    assert!(f.hint.unwrap_or_default().contains(&ca), "the hint names the CA file that did not match");
}

#[tokio::test]
async fn the_insecure_fragment_is_ignored_as_node_redis_ignores_it() {
    let server = RedisServer::builder().tls().start();
    let f = expect_failure(probe_url(&format!("{}#insecure", server.url())).await);
    assert!(f.message.contains("certificate not trusted"), "{f:?}");
}

#[tokio::test]
async fn tls_client_against_plain_port_fails_within_the_deadline() {
    let server = RedisServer::shared();
    let started = Instant::now();
    let f =
        expect_failure(probe(&[("REDIS_URL", &format!("rediss://{}", server.addr()))], Duration::from_secs(1)).await);
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(f.message.contains("TLS handshake"), "{f:?}");
    assert!(f.hint.unwrap_or_default().contains("redis://"));
}

#[tokio::test]
async fn plain_client_against_tls_port_fails_within_the_deadline() {
    let server = RedisServer::builder().tls().start();
    let started = Instant::now();
    let f =
        expect_failure(probe(&[("REDIS_URL", &format!("redis://{}", server.addr()))], Duration::from_secs(1)).await);
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(f.message.contains("PING"), "{f:?}");
    assert!(f.hint.unwrap_or_default().contains("rediss://"));
}

#[tokio::test]
async fn replica_reports_role_slave() {
    let primary = RedisServer::builder().requirepass(SENTINEL).start();
    let replica = RedisServer::builder().replica_of(&primary).start();
    replica.wait_for_sync();
    let session = expect_session(probe_url(&replica.url()).await);
    assert_eq!(session.info.role, "slave");
    assert_eq!(session.info_fields.get("master_link_status").map(String::as_str), Some("up"));
}

#[tokio::test]
async fn an_http_server_where_redis_should_be_is_named_on_one_line() {
    // A real HTTP server (mockmate-diag serve, hyper) on REDIS_URL's port: it
    // answers the PING with `HTTP/1.1 400 Bad Request`, which the crate's parser
    // reports as a multi-line trace of byte values.
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = crate::support::serve::Serve::start(dir.path(), &[], &[]);
    for url in [format!("redis://127.0.0.1:{}", serve.port), format!("redis://:{SENTINEL}@127.0.0.1:{}", serve.port)] {
        let f = expect_failure(probe_url(&url).await);
        let addr = format!("127.0.0.1:{}", serve.port);
        assert!(f.message.ends_with(&format!("{addr} answered, but not in Redis's protocol")), "{f:?}");
        assert!(!f.message.contains('\n') && !f.message.contains("Unexpected"), "{f:?}");
        assert!(f.hint.as_deref().is_some_and(|h| h.contains("check the host and port in REDIS_URL")), "{f:?}");
        assert_no_secret(&f, SENTINEL);
    }
}
