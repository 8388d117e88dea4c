//! A real Prometheus scrapes `serve` the blackbox way (one job, the targets as
//! `?target=` through relabelling) and sees the incident: the users deleted,
//! `postgres.active_users` goes from 0 (pass) to 2 (fail) — through its own API.

use std::time::Duration;

use super::site_env;
use crate::support::pg::PgServer;
use crate::support::prometheus::Prometheus;
use crate::support::redis::RedisServer;
use crate::support::serve::Serve;

#[test]
fn prometheus_sees_active_users_go_from_pass_to_fail_when_the_users_are_deleted() {
    let pg = PgServer::shared();
    let production = pg.create_mockmate_db("serve_prom_production");
    let staging = pg.create_mockmate_db("serve_prom_staging");
    let redis = RedisServer::shared().url();
    let dir = tempfile::tempdir().expect("tempdir");
    // Each target's secrets in its own env file, as deploy/ sets it up.
    for (name, db) in [("production", &production), ("staging", &staging)] {
        let env: String =
            site_env(pg.superuser_url(db), redis.clone()).iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(dir.path().join(format!("{name}.env")), env).expect("write env file");
    }
    std::fs::write(
        dir.path().join("targets.toml"),
        "[targets.production]\nenv_files = [\"production.env\"]\n\n[targets.staging]\nenv_files = [\"staging.env\"]\n",
    )
    .expect("write targets");
    let serve = Serve::start(dir.path(), &[], &["--targets", "targets.toml", "--cache", "500ms"]);
    // deploy/prometheus/prometheus.yml's job, pointed at this serve, scraping every second.
    let prometheus = Prometheus::start(
        "  scrape_interval: 1s\n  scrape_timeout: 1s\n",
        &format!(
            "  - job_name: mockmate\n    metrics_path: /probe\n    static_configs:\n      - targets: [production, staging]\n    \
             relabel_configs:\n      - source_labels: [__address__]\n        target_label: __param_target\n      \
             - source_labels: [__param_target]\n        target_label: instance\n      \
             - target_label: __address__\n        replacement: 127.0.0.1:{}\n",
            serve.port
        ),
    );
    let query = |target: &str| format!("mockmate_check_status{{check=\"postgres.active_users\",target=\"{target}\"}}");
    prometheus.wait_for(&query("production"), "0", Duration::from_secs(20));
    prometheus.wait_for(&query("staging"), "0", Duration::from_secs(20));
    prometheus.wait_for("mockmate_up{instance=\"production\"}", "1", Duration::from_secs(5));

    pg.sql(&production, "DELETE FROM users");
    prometheus.wait_for(&query("production"), "2", Duration::from_secs(20));
    // The other environment is its own target: untouched.
    assert_eq!(prometheus.value(&query("staging")).as_deref(), Some("0"));
    // And the alert rule's expression (deploy/prometheus/alerts.yml) selects it, and nothing of staging's users.
    let firing = prometheus.query("mockmate_check_status == 2");
    let fails = |target: &str| {
        firing.iter().any(|s| s["metric"]["check"] == "postgres.active_users" && s["metric"]["target"] == target)
    };
    assert!(fails("production") && !fails("staging"), "{firing:?}");
}
