//! Harness: `mockmate-diag serve` as a real process on a free port, and an
//! HTTP(S) client (ureq; rustls with ring, a chosen root and maybe a client
//! certificate) to scrape it the way Prometheus and a kubelet do.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};

/// A running `serve`; killed on drop.
pub struct Serve {
    child: Child,
    pub port: u16,
    log: std::path::PathBuf,
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    /// Every header, as (lower-case name, value).
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// A header's value, if the response has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// An HTTP client that reads every status as an answer (404 and 503 are answers here).
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// An HTTPS client trusting only `ca_pem`, presenting `client` (certificate and
/// key, PEM) when given.
pub fn https_agent(ca_pem: &str, client: Option<(&str, &str)>) -> ureq::Agent {
    let root = Certificate::from_pem(ca_pem.as_bytes()).expect("the CA certificate");
    let client = client.map(|(cert, key)| {
        let cert = Certificate::from_pem(cert.as_bytes()).expect("the client certificate");
        let key = PrivateKey::from_pem(key.as_bytes()).expect("the client key");
        ClientCert::new_with_certs(&[cert], key)
    });
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .root_certs(RootCerts::new_with_certs(&[root]))
        .client_cert(client)
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// GET `url` with `headers`.
pub fn get(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)]) -> Reply {
    try_get(agent, url, headers).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// GET `url` with `headers`; a connection error is an `Err` (a server still starting).
pub fn try_get(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)]) -> Result<Reply, ureq::Error> {
    let mut request = agent.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call()?;
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = response.body_mut().read_to_string()?;
    Ok(Reply { status: response.status().as_u16(), content_type, headers, body })
}

impl Serve {
    /// `mockmate-diag serve --listen 127.0.0.1:<free port> ARGS` in `dir` with only
    /// `envs` (and PATH) in its environment; returns once it says it serves and
    /// accepts connections (over TLS or behind a login too).
    pub fn start(dir: &Path, envs: &[(&str, String)], args: &[&str]) -> Serve {
        let mut last = String::new();
        // Another test may take the free port first: try another.
        for _ in 0..3 {
            match Serve::try_start(dir, envs, args) {
                Ok(serve) => return serve,
                Err(log) if log.contains("cannot listen") => last = log,
                Err(log) => panic!("serve did not start:\n{log}"),
            }
        }
        panic!("serve did not start:\n{last}");
    }

    fn try_start(dir: &Path, envs: &[(&str, String)], args: &[&str]) -> Result<Serve, String> {
        let port = super::free_port();
        let log = dir.join(format!("serve-{port}.log"));
        let stderr = std::fs::File::create(&log).expect("create the serve log");
        let child = Command::new(assert_cmd::cargo::cargo_bin("mockmate-diag"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(dir)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn mockmate-diag serve");
        let mut serve = Serve { child, port, log };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = serve.child.try_wait() {
                return Err(serve.log());
            }
            // The startup line names the address (words of it may be masked by a weak secret).
            if serve.log().contains(&format!("://127.0.0.1:{port} ("))
                && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            {
                return Ok(serve);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("no answer within 10s\n{}", serve.log()))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The same over TLS, by a name the harness's server certificate has.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    pub fn get(&self, path: &str) -> Reply {
        get(&agent(), &self.url(path), &[])
    }

    /// What the process wrote on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Sends SIGTERM, as Kubernetes and systemd stop a service.
    pub fn terminate(&self) {
        let ok = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("run kill");
        assert!(ok.success(), "kill -TERM failed");
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
