//! Under load: 2,000 scrapes at concurrency 16 against a working environment,
//! every scrape running the checks (`--cache 0s`, single flight only). Memory
//! stays flat, every PostgreSQL connection a run opened is closed after it, and
//! no response carries a secret.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{check_status, sample};
use crate::support::pg::PgServer;
use crate::support::redis::RedisServer;
use crate::support::serve::{Serve, agent, get};

const SCRAPES: usize = 2_000;
const CONCURRENCY: usize = 16;
/// Scrapes before memory is first measured: allocators and caches settle.
const WARM_UP: usize = 200;

const DB_PASSWORD: &str = "S3NTINEL-serve-db-password";
const REDIS_PASSWORD: &str = "S3NTINEL-serve-redis-password";
const JWT_SECRET: &str = "S3NTINEL-serve-jwt-Zq3v9LrT0pXy2Wn8KbD4sHf7";

/// Backends connected to `db`, other than the one counting.
fn connections(pg: &PgServer, db: &str) -> u64 {
    let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()");
    pg.sql(db, &sql).trim().parse().expect("a count")
}

/// Sessions ever established to `db` (pg_stat_database.sessions, PostgreSQL 14+).
fn sessions(pg: &PgServer, db: &str) -> u64 {
    let sql = format!("SELECT sessions FROM pg_stat_database WHERE datname = '{db}'");
    pg.sql(db, &sql).trim().parse().expect("a count")
}

#[test]
fn two_thousand_scrapes_at_concurrency_16_keep_memory_flat_close_every_connection_and_leak_no_secret() {
    let pg = PgServer::shared();
    let db = pg.create_mockmate_db("serve_soak");
    pg.create_user("serve_soak", DB_PASSWORD);
    pg.sql(&db, "ALTER ROLE serve_soak SUPERUSER");
    let redis = RedisServer::builder().requirepass(REDIS_PASSWORD).start();
    let env = vec![
        ("NODE_ENV", "production".to_string()),
        ("JWT_SECRET", JWT_SECRET.to_string()),
        ("DATABASE_URL", pg.url("serve_soak", DB_PASSWORD, &db)),
        ("REDIS_URL", redis.url_as(None, Some(REDIS_PASSWORD))),
    ];
    let baseline = connections(pg, &db);
    let sessions_before = sessions(pg, &db);
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = Serve::start(dir.path(), &env, &["--cache", "0s"]);
    let paths = ["/probe", "/probe", "/probe", "/healthz", "/report?format=markdown", "/probe?target=production"];

    let next = AtomicUsize::new(0);
    let warm_rss = std::sync::Mutex::new(None);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..CONCURRENCY {
            scope.spawn(|| {
                let agent = agent();
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= SCRAPES {
                        break;
                    }
                    if n == WARM_UP {
                        *warm_rss.lock().expect("lock") = Some(serve.rss_kib());
                    }
                    let path = paths[n % paths.len()];
                    let reply = get(&agent, &serve.url(path), &[("X-Prometheus-Scrape-Timeout-Seconds", "10")]);
                    assert!(!reply.body.contains("S3NTINEL"), "{path}: a secret leaked:\n{}", reply.body);
                    match path {
                        "/healthz" => assert_eq!(reply.status, 200, "{}", reply.body),
                        "/report?format=markdown" => assert!(reply.body.contains("postgres.active_users")),
                        _ => assert_eq!(check_status(&reply.body, "postgres.active_users"), Some(0), "{}", reply.body),
                    }
                }
            });
        }
    });
    let took = started.elapsed();
    let warm = warm_rss.lock().expect("lock").expect("measured after the warm-up");
    let end = serve.rss_kib();
    let metrics = serve.get("/metrics").body;
    let runs = sample(&metrics, "mockmate_runs_total{target=\"production\"}").expect("runs counted");
    let shared = sample(&metrics, "mockmate_shared_runs_total{target=\"production\"}").expect("shared runs counted");

    // Every connection a run opened is closed: back to the baseline within a second.
    let waited = Instant::now();
    while connections(pg, &db) != baseline && waited.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(connections(pg, &db), baseline, "connections left open after the soak");
    let opened = sessions(pg, &db) - sessions_before;
    let report = format!(
        "{SCRAPES} scrapes at concurrency {CONCURRENCY} in {took:?}: {runs} runs ({shared} scrapes shared one), \
         {:.2} scrapes per run, {opened} PostgreSQL connections ({:.2} per run), RSS {warm} KiB after {WARM_UP} \
         scrapes, {end} KiB at the end",
        SCRAPES as f64 / runs,
        opened as f64 / runs
    );
    // BENCHMARKS.md's numbers: MOCKMATE_SOAK_REPORT=path cargo test --test main soak
    if let Some(path) = std::env::var_os("MOCKMATE_SOAK_REPORT") {
        std::fs::write(path, format!("{report}\n")).expect("write the soak report");
    }
    // With no cache, every scrape ran the checks or shared a run in flight.
    assert_eq!(runs + shared, SCRAPES as f64, "{report}");
    // Flat: within 25 % (and 8 MiB) of the warmed-up size.
    assert!(end <= warm + (warm / 4).max(8 * 1024), "memory grew: {report}");
    assert!(took < Duration::from_secs(60), "{report}");
}
