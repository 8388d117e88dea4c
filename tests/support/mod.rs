//! Test harness: real PostgreSQL and Redis servers started by the tests themselves.
#![allow(dead_code)]

pub mod api;
pub mod cmd;
pub mod node;
pub mod pg;
pub mod pgbouncer;
pub mod prometheus;
pub mod pty;
pub mod redis;
pub mod serve;
pub mod site;
pub mod tarpit;
pub mod tls;

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Starts a detached shell `script` that cleans up after this test process ends:
/// statics are never dropped, so shared servers need someone to stop them.
pub fn spawn_watchdog(script: String) {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // Its own process group: a Ctrl-C aimed at cargo test must not kill it first.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    // Not waited for: it outlives us by design (and is reparented to init).
    let _ = cmd.spawn();
}
