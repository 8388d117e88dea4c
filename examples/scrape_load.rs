//! Benchmark helper (`bench/run`, measurement 7): scrape latency of `serve`
//! under hostile load. Opens `--slow` connections that send a request's headers
//! one byte every `--drip` and never finish (slowloris; reopened when serve
//! closes them), then runs `--clients` concurrent scrapers, each looping GET
//! `--path` with Prometheus's timeout header over a keep-alive connection, for
//! `--duration`.
//!
//! ```sh
//! cargo run --release --example scrape_load -- --port 9839 --clients 200 --slow 500 --duration 20s
//! ```
//!
//! Prints one line: scrapes, errors (anything but a 200 within the timeout),
//! and latency percentiles (p50, p90, p99, max) in milliseconds.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// serve's port on 127.0.0.1
    #[arg(long)]
    port: u16,
    #[arg(long, default_value = "/probe")]
    path: String,
    #[arg(long, default_value_t = 200)]
    clients: usize,
    #[arg(long, default_value_t = 500)]
    slow: usize,
    /// How long the scrapers run (after the slow connections are open)
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// The scrape timeout sent (X-Prometheus-Scrape-Timeout-Seconds), in seconds
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// How often a slow connection sends one more byte of its headers
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    drip: Duration,
}

fn slowloris(port: u16, drip: Duration, stop: &AtomicBool, open: &AtomicUsize) {
    let head = b"GET /probe HTTP/1.1\r\nHost: serve\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        open.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_read_timeout(Some(drip));
        let mut sent = 0;
        let mut byte = [0u8; 1];
        while !stop.load(Ordering::Relaxed) {
            if stream.write_all(&head[sent % head.len()..][..1]).is_err() {
                break;
            }
            sent += 1;
            match stream.read(&mut byte) {
                Ok(0) => break,
                Err(e) if !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
                _ => {}
            }
        }
        open.fetch_sub(1, Ordering::Relaxed);
        // A persistent attacker: back a moment after each close.
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let args = Args::parse();
    let stop_slow = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let open = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::new());
    let errors = AtomicUsize::new(0);
    let url = format!("http://127.0.0.1:{}{}", args.port, args.path);
    let timeout = args.timeout.to_string();
    std::thread::scope(|scope| {
        for _ in 0..args.slow {
            scope.spawn(|| slowloris(args.port, args.drip, &stop_slow, &open));
        }
        let waited = Instant::now();
        while open.load(Ordering::Relaxed) < args.slow && waited.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let slow_open = open.load(Ordering::Relaxed);
        let scrapers: Vec<_> = (0..args.clients)
            .map(|_| {
                scope.spawn(|| {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(Duration::from_secs_f64(args.timeout)))
                        .build()
                        .into();
                    let mut mine = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let ok = agent
                            .get(&url)
                            .header("X-Prometheus-Scrape-Timeout-Seconds", &timeout)
                            .call()
                            .ok()
                            .and_then(|mut r| (r.status() == 200).then(|| r.body_mut().read_to_string().ok()).flatten())
                            .is_some();
                        if ok {
                            mine.push(started.elapsed().as_secs_f64() * 1000.0);
                        } else {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    latencies.lock().expect("lock").extend(mine);
                })
            })
            .collect();
        std::thread::sleep(args.duration);
        stop.store(true, Ordering::Relaxed);
        for s in scrapers {
            let _ = s.join();
        }
        stop_slow.store(true, Ordering::Relaxed);
        let mut all = latencies.lock().expect("lock").clone();
        all.sort_by(f64::total_cmp);
        let out = format!(
            "{} scrapes in {:?} by {} clients with {} slow connections open at the start: {} errors; latency ms p50 {:.1}, p90 {:.1}, p99 {:.1}, max {:.1}\n",
            all.len(),
            args.duration,
            args.clients,
            slow_open,
            errors.load(Ordering::Relaxed),
            percentile(&all, 50.0),
            percentile(&all, 90.0),
            percentile(&all, 99.0),
            all.last().copied().unwrap_or(f64::NAN),
        );
        let _ = std::io::stdout().write_all(out.as_bytes());
    });
}
