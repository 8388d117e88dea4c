//! `serve --web.config.file` as exporter-toolkit's exporters are secured: TLS,
//! client certificates (mTLS) and bcrypt basic auth, tried with real TLS
//! clients (rustls through ureq) and a real Prometheus scraping over TLS with
//! basic auth and a client certificate.

use std::path::Path;
use std::time::Duration;

use base64::Engine;

use super::{check_status, sample, site_env};
use crate::support::pg::PgServer;
use crate::support::prometheus::Prometheus;
use crate::support::redis::RedisServer;
use crate::support::serve::{Serve, get, https_agent, try_get};
use crate::support::tls::TestCa;

const USER: &str = "prometheus";
const PASSWORD: &str = "S3NTINEL-scrape-password";

/// The web configuration of deploy/kubernetes/serve.yaml: TLS, client
/// certificates from `ca`, one bcrypt user (cost 10, as `htpasswd -nBC 10` makes).
fn web_config(dir: &Path, ca: &TestCa) {
    let hash = bcrypt::hash(PASSWORD, 10).expect("bcrypt");
    std::fs::write(
        dir.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  \
             client_ca_file: {}\n  min_version: TLS12\nhttp_server_config:\n  headers:\n    \
             Strict-Transport-Security: max-age=31536000\nbasic_auth_users:\n  {USER}: {hash}\n",
            ca.server_cert.display(),
            ca.server_key.display(),
            ca.ca_cert.display()
        ),
    )
    .expect("write web.yml");
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn start(dir: &Path) -> (Serve, TestCa) {
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db(&format!("serve_secured_{}", crate::support::free_port()));
    let ca = TestCa::generate(&dir.join("certs"));
    web_config(dir, &ca);
    let env = site_env(pg.superuser_url(&db), RedisServer::shared().url());
    let serve = Serve::start(dir, &env, &["--web.config.file", "web.yml", "--cache", "0s"]);
    (serve, ca)
}

#[test]
fn only_a_trusted_client_certificate_with_the_right_login_gets_an_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (serve, ca) = start(dir.path());
    assert!(serve.log().contains("on https://127.0.0.1:"), "{}", serve.log());
    assert!(serve.log().contains("TLS, client certificate required, basic auth"), "{}", serve.log());
    let read = |p: &Path| std::fs::read_to_string(p).expect("read");
    let (client_cert, client_key) = (read(&ca.client_cert), read(&ca.client_key));
    let trusted = https_agent(&ca.ca_pem(), Some((&client_cert, &client_key)));
    let login = basic(USER, PASSWORD);

    // No login, a wrong one, an unknown user: 401 on every endpoint, before any run.
    for path in ["/probe", "/healthz", "/report?format=markdown", "/metrics", "/nowhere"] {
        for auth in [None, Some(basic(USER, "wrong")), Some(basic("grafana", PASSWORD))] {
            let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
            let reply = get(&trusted, &serve.https_url(path), &headers);
            assert_eq!(reply.status, 401, "{path} {auth:?}: {reply:?}");
            assert_eq!(reply.body, "unauthorized\n");
            assert!(reply.header("www-authenticate").is_some_and(|h| h.starts_with("Basic ")), "{reply:?}");
            assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        }
    }
    let probe = get(&trusted, &serve.https_url("/probe"), &[("Authorization", &login)]);
    assert_eq!(probe.status, 200, "{probe:?}");
    assert_eq!(check_status(&probe.body, "postgres.connect"), Some(0), "{}", probe.body);
    assert_eq!(probe.header("strict-transport-security"), Some("max-age=31536000"));
    // The second login is remembered (no bcrypt), and still right.
    let healthz = get(&trusted, &serve.https_url("/healthz"), &[("Authorization", &login)]);
    assert_eq!(healthz.status, 200, "{healthz:?}");
    assert!(!healthz.body.contains(PASSWORD));
    let metrics = get(&trusted, &serve.https_url("/metrics"), &[("Authorization", &login)]).body;
    // The 15 refusals ran nothing: one run each for /probe and /healthz.
    assert_eq!(sample(&metrics, "mockmate_runs_total{target=\"production\"}"), Some(2.0), "{metrics}");
    assert_eq!(sample(&metrics, "mockmate_errors_total{kind=\"unauthorized\"}"), Some(15.0), "{metrics}");

    // Without a client certificate, with one from another CA, or trusting another
    // server CA: no TLS session at all.
    let other = TestCa::other(&dir.path().join("certs"));
    let (other_cert, other_key) = (read(&other.client_cert), read(&other.client_key));
    for (what, agent) in [
        ("no client certificate", https_agent(&ca.ca_pem(), None)),
        ("a client certificate from another CA", https_agent(&ca.ca_pem(), Some((&other_cert, &other_key)))),
        ("a server CA that did not sign serve's", https_agent(&other.ca_pem(), Some((&client_cert, &client_key)))),
    ] {
        let refused = try_get(&agent, &serve.https_url("/metrics"), &[("Authorization", &login)]);
        assert!(refused.is_err(), "{what}: answered {refused:?}");
    }
    // Plain HTTP to the TLS port gets no answer either.
    let plain = try_get(&crate::support::serve::agent(), &serve.url("/metrics"), &[("Authorization", &login)]);
    assert!(plain.is_err() || plain.as_ref().is_ok_and(|r| r.status != 200), "{plain:?}");
    assert!(!serve.log().contains(PASSWORD), "{}", serve.log());
}

#[test]
fn prometheus_scrapes_over_tls_with_basic_auth_and_a_client_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (serve, ca) = start(dir.path());
    let password_file = dir.path().join("scrape-password");
    std::fs::write(&password_file, PASSWORD).expect("write the password file");
    let tls = format!(
        "    scheme: https\n    tls_config:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n      \
         server_name: localhost\n    basic_auth:\n      username: {USER}\n      password_file: {}\n",
        ca.ca_cert.display(),
        ca.client_cert.display(),
        ca.client_key.display(),
        password_file.display()
    );
    // deploy/prometheus/prometheus.yml's jobs, secured as the README shows.
    let prometheus = Prometheus::start(
        "  scrape_interval: 1s\n  scrape_timeout: 1s\n",
        &format!(
            "  - job_name: mockmate\n    metrics_path: /probe\n{tls}    static_configs:\n      - targets: [production]\n    \
             relabel_configs:\n      - source_labels: [__address__]\n        target_label: __param_target\n      \
             - source_labels: [__param_target]\n        target_label: instance\n      \
             - target_label: __address__\n        replacement: 127.0.0.1:{port}\n  \
             - job_name: mockmate-exporter\n{tls}    static_configs:\n      - targets: ['127.0.0.1:{port}']\n",
            port = serve.port
        ),
    );
    prometheus.wait_for(
        "mockmate_check_status{check=\"postgres.active_users\",target=\"production\"}",
        "0",
        Duration::from_secs(30),
    );
    prometheus.wait_for("up{job=\"mockmate-exporter\"}", "1", Duration::from_secs(10));
    prometheus.wait_for("mockmate_up{instance=\"production\"}", "1", Duration::from_secs(10));
}
