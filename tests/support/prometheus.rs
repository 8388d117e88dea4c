//! Harness: a real Prometheus server (Debian's `prometheus` package) on a free
//! port, with the scrape configuration a test gives, queried through its HTTP API.
//!
//! A missing prometheus binary fails the run loudly (`.ci/run` installs it).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::serve::{agent, get, try_get};

pub struct Prometheus {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

fn binary() -> PathBuf {
    let installed = PathBuf::from("/usr/bin/prometheus");
    if installed.exists() { installed } else { PathBuf::from("prometheus") }
}

impl Prometheus {
    /// Starts Prometheus with `global` settings and `scrape_configs` (YAML, as
    /// they appear under those keys) and waits until it is ready.
    pub fn start(global: &str, scrape_configs: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, format!("global:\n{global}\nscrape_configs:\n{scrape_configs}")).expect("write config");
        let port = super::free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("create log");
        let child = Command::new(binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start prometheus ({e}): apt-get install prometheus"));
        let mut prometheus = Prometheus { child, port, dir };
        let agent = agent();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", prometheus.log());
            }
            if try_get(&agent, &prometheus.url("/-/ready"), &[]).is_ok_and(|r| r.status == 200) {
                return prometheus;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "prometheus not ready in 30s:\n{}", prometheus.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query's result vector (`data.result`).
    pub fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let encoded: String = url::form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        let reply = get(&agent(), &self.url(&format!("/api/v1/query?query={encoded}")), &[]);
        let doc: serde_json::Value =
            serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body));
        assert_eq!(doc["status"], "success", "{promql}: {doc}");
        doc["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The value of the single series `promql` selects, once there is one.
    pub fn value(&self, promql: &str) -> Option<String> {
        let result = self.query(promql);
        assert!(result.len() <= 1, "{promql} selects several series: {result:?}");
        result.first().and_then(|s| s["value"][1].as_str()).map(str::to_string)
    }

    /// Polls `promql` until its value is `want`, for at most `limit`.
    pub fn wait_for(&self, promql: &str, want: &str, limit: Duration) {
        let started = Instant::now();
        let mut last = None;
        while started.elapsed() < limit {
            last = self.value(promql);
            if last.as_deref() == Some(want) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let targets = get(&agent(), &self.url("/api/v1/targets"), &[]).body;
        panic!("{promql} was {last:?}, not {want}, after {limit:?}\ntargets: {targets}\n{}", self.log());
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
