//! Harness: the stand-in MockMate API (tests/node/api/server.js — Express,
//! node-postgres, node-redis, jsonwebtoken, pinned) as a real process on a free
//! port, against the harness's own PostgreSQL and Redis. Both versions of the
//! session route (the runbook's "Before" and its fix) and switches that break it
//! the ways production breaks. Killed on drop.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::tls::TestCa;

/// How long the API gets to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Which `POST /api/sessions/create` it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The original: a direct insert, 201 whatever happens.
    Before,
    /// The runbook's fix: transaction, user and credit checks, 400/403 codes, cache.
    Fixed,
}

/// How to start it.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    pub route: Route,
    pub database_url: String,
    pub redis_url: Option<String>,
    pub jwt_secret: String,
    /// Every route accepts the request and never answers.
    pub hang: bool,
    /// The create route answers 500.
    pub fail_create: bool,
    /// A 201 without the session's id in the body.
    pub no_id: bool,
    /// No `GET /health` (a 404).
    pub no_health: bool,
    /// The fixed route creates and caches the session, then never answers.
    pub create_then_hang: bool,
    /// A user who has a session gets it back, and none is created.
    pub idempotent: bool,
    /// Someone else changes the user's credits by this much during the request.
    pub other_change: Option<i32>,
    /// The create route answers 500 quoting this variable's value (set in its
    /// environment), across the 200th character.
    pub leak: Option<(String, String)>,
    /// HTTPS with this CA's server certificate.
    pub tls: Option<TestCa>,
}

impl ApiOptions {
    pub fn new(route: Route, database_url: &str, jwt_secret: &str) -> ApiOptions {
        ApiOptions {
            route,
            database_url: database_url.to_string(),
            redis_url: None,
            jwt_secret: jwt_secret.to_string(),
            hang: false,
            fail_create: false,
            no_id: false,
            no_health: false,
            create_then_hang: false,
            idempotent: false,
            other_change: None,
            leak: None,
            tls: None,
        }
    }
}

/// A running stand-in API.
pub struct StandIn {
    pub port: u16,
    /// `http://127.0.0.1:PORT` (`https://localhost:PORT` with TLS: the certificate's name).
    pub url: String,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl StandIn {
    pub fn start(options: &ApiOptions) -> StandIn {
        let dir = super::node::dir();
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("api/server.js"))
            .args(["--route", if options.route == Route::Before { "before" } else { "fixed" }])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PORT", "0")
            .env("DATABASE_URL", &options.database_url)
            .env("JWT_SECRET", &options.jwt_secret)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(redis) = &options.redis_url {
            cmd.env("REDIS_URL", redis);
        }
        for (on, switch) in [
            (options.hang, "--hang"),
            (options.fail_create, "--fail-create"),
            (options.no_id, "--no-id"),
            (options.no_health, "--no-health"),
            (options.create_then_hang, "--create-then-hang"),
            (options.idempotent, "--idempotent"),
        ] {
            if on {
                cmd.arg(switch);
            }
        }
        if let Some(n) = options.other_change {
            cmd.args(["--other-change", &n.to_string()]);
        }
        if let Some((var, value)) = &options.leak {
            cmd.args(["--leak", var]).env(var, value);
        }
        if let Some(ca) = &options.tls {
            cmd.arg("--tls-cert").arg(&ca.server_cert).arg("--tls-key").arg(&ca.server_key);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start node tests/node/api/server.js: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = mpsc::channel::<u16>();
        let stdout = child.stdout.take().expect("piped stdout");
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(port) = line.strip_prefix("listening ").and_then(|p| p.trim().parse().ok()) {
                        let _ = port_tx.send(port);
                    }
                    log.lock().unwrap_or_else(|e| e.into_inner()).push_str(&format!("{line}\n"));
                }
            });
        }
        let stderr = child.stderr.take().expect("piped stderr");
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stderr);
                let mut buf = [0u8; 4096];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    log.lock().unwrap_or_else(|e| e.into_inner()).push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let port = match port_rx.recv_timeout(START_TIMEOUT) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "the stand-in API did not listen within {START_TIMEOUT:?}:\n{}",
                    log.lock().unwrap_or_else(|e| e.into_inner())
                );
            }
        };
        let url = match options.tls {
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://127.0.0.1:{port}"),
        };
        StandIn { port, url, child, log }
    }

    /// What it printed so far (stdout and stderr), for assertion messages.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The requests it received so far (`GET /health`, `POST /api/sessions/create`).
    pub fn requests(&self) -> Vec<String> {
        self.log().lines().filter_map(|l| l.strip_prefix("request ")).map(str::to_string).collect()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
