//! Hostile clients: hundreds of connections that send nothing, or their
//! headers a byte at a time (slowloris), while a real Prometheus keeps scraping
//! within its timeout; and requests that fish for secrets in the answers (a
//! response that repeats the request through the redactor is an oracle).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::{sample, site_env};
use crate::support::pg::PgServer;
use crate::support::prometheus::Prometheus;
use crate::support::redis::RedisServer;
use crate::support::serve::{Serve, agent, get};

/// Attackers' connections kept open at any moment.
const SILENT: usize = 250;
const SLOW: usize = 250;

/// Keeps `SILENT` connections that send nothing and `SLOW` that send a request's
/// headers one byte every 200 ms, reopening each one serve closes, until `stop`.
fn attack(port: u16, stop: &AtomicBool, opened: &AtomicUsize) {
    std::thread::scope(|scope| {
        for i in 0..(SILENT + SLOW) {
            scope.spawn(move || {
                let slow = i >= SILENT;
                let head = b"GET /probe HTTP/1.1\r\nHost: serve\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
                while !stop.load(Ordering::SeqCst) {
                    // A persistent attacker: back a moment after each close.
                    std::thread::sleep(Duration::from_millis(100));
                    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    opened.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                    let mut sent = 0;
                    let mut byte = [0u8; 1];
                    while !stop.load(Ordering::SeqCst) {
                        if slow && stream.write_all(&head[sent % head.len()..][..1]).is_err() {
                            break;
                        }
                        sent += 1;
                        // Closed by serve (read returns 0 or an error other than a timeout): reconnect.
                        match stream.read(&mut byte) {
                            Ok(0) => break,
                            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut => break,
                            _ => {}
                        }
                    }
                }
            });
        }
    });
}

#[test]
fn five_hundred_silent_and_slow_connections_do_not_keep_prometheus_from_scraping_within_its_timeout() {
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db("serve_hostile");
    let dir = tempfile::tempdir().expect("tempdir");
    let serve =
        Serve::start(dir.path(), &site_env(pg.superuser_url(&db), RedisServer::shared().url()), &["--cache", "5s"]);
    let stop = AtomicBool::new(false);
    let opened = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| attack(serve.port, &stop, &opened));
        // Let the attack fill every slot serve has before Prometheus starts.
        while opened.load(Ordering::SeqCst) < SILENT + SLOW {
            std::thread::sleep(Duration::from_millis(50));
        }
        let prometheus = Prometheus::start(
            "  scrape_interval: 1s\n  scrape_timeout: 1s\n",
            &format!(
                "  - job_name: mockmate\n    metrics_path: /probe\n    params:\n      target: [production]\n    \
                 static_configs:\n      - targets: ['127.0.0.1:{}']\n",
                serve.port
            ),
        );
        // Ten scrapes under attack, each answered within Prometheus's 1 s timeout.
        prometheus.wait_for("count_over_time(up{job=\"mockmate\"}[1m]) >= bool 10", "1", Duration::from_secs(40));
        let (up, checks) = (
            prometheus.value("min_over_time(up{job=\"mockmate\"}[1m])"),
            prometheus.value("max_over_time(scrape_duration_seconds{job=\"mockmate\"}[1m]) < 1"),
        );
        let metrics = get(&agent(), &serve.url("/metrics"), &[]).body;
        stop.store(true, Ordering::SeqCst);
        assert_eq!(up.as_deref(), Some("1"), "a scrape failed under attack\n{}", prometheus.log());
        assert!(checks.is_some(), "a scrape took 1 s or more");
        assert_eq!(
            prometheus.value("min_over_time(mockmate_check_status{check=\"postgres.connect\"}[1m])").as_deref(),
            Some("0")
        );
        // The attack was real: serve was full and closed idle connections to make room.
        assert!(sample(&metrics, "mockmate_http_connections_shed_total").is_some_and(|n| n > 0.0), "{metrics}");
        assert!(sample(&metrics, "mockmate_http_connections").is_some_and(|n| n >= 200.0), "{metrics}");
    });
}

#[test]
fn no_response_repeats_the_request_so_no_guess_comes_back_masked() {
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db("serve_oracle");
    let password = "S3NTINEL-oracle-db-password";
    pg.create_user("serve_oracle", password);
    pg.sql(&db, "ALTER ROLE serve_oracle SUPERUSER");
    let dir = tempfile::tempdir().expect("tempdir");
    let env = site_env(pg.url("serve_oracle", password, &db), RedisServer::shared().url());
    let serve = Serve::start(dir.path(), &env, &[]);
    // One request carrying guesses — the right one among them — in every place a request has.
    let guesses = format!("wrong-guess|{password}|another-guess");
    let encoded = crate::support::encode(&guesses);
    let agent = agent();
    for path in [
        format!("/probe?target={encoded}"),
        format!("/healthz?target={encoded}"),
        format!("/report?format={encoded}"),
        format!("/report?target=production&format={encoded}"),
        format!("/{encoded}"),
        format!("/probe?target=production&{encoded}={encoded}"),
    ] {
        let reply = get(&agent, &serve.url(&path), &[("X-Guess", &guesses)]);
        let everything = format!("{:?}\n{}", reply.headers, reply.body);
        for needle in ["wrong-guess", "another-guess", "****", "S3NTINEL"] {
            assert!(!everything.contains(needle), "{path}: {needle} came back:\n{everything}");
        }
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"), "{path}");
    }
    let unknown = serve.get(&format!("/probe?target={encoded}"));
    assert_eq!((unknown.status, unknown.body.as_str()), (404, "unknown target; targets: production\n"));
    let format = serve.get(&format!("/report?format={encoded}"));
    assert_eq!((format.status, format.body.as_str()), (400, "unknown format; formats: json, markdown\n"));
}
