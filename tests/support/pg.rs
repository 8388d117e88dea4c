//! Harness: throwaway PostgreSQL clusters started by the tests themselves.
//!
//! `PgServer::shared()` is one cluster per test binary (a fresh database per test);
//! `PgServer::new()` / `new_tls()` are private clusters for tests that stop, break or
//! reconfigure the server. Every cluster listens on 127.0.0.1 at a free port, keeps
//! its socket and data in a temporary directory and is stopped when the value drops
//! or, for the shared ones (statics are never dropped), when the test process exits.

pub use super::{encode, free_port};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::tls::{SERVER_SANS, TestCa};

mod standby;
pub use standby::Replicated;

/// The cluster's superuser, created by initdb.
pub const SUPERUSER: &str = "postgres";
/// The superuser's password (scram-sha-256 everywhere, like production).
pub const SUPERUSER_PASSWORD: &str = "harness-superuser-pw";

/// The MockMate tables, as the API's migrations create them.
pub const MOCKMATE_SCHEMA: &str = include_str!("../fixtures/mockmate_schema.sql");

/// One active, verified user with credits: the seed a working environment has.
pub const MOCKMATE_ACTIVE_USER: &str = include_str!("../fixtures/mockmate_active_user.sql");

/// pg_hba.conf of a TLS cluster: TCP only over TLS; non-TLS TCP is rejected.
pub const HBA_TLS_ONLY: &str = "\
local all all scram-sha-256
hostssl all all 127.0.0.1/32 scram-sha-256
hostnossl all all 127.0.0.1/32 reject
";

/// pg_hba.conf of a plain cluster (TLS is not even offered), or of a TLS cluster
/// that also takes plain connections.
pub const HBA_PLAIN: &str = "\
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
";

/// pg_hba.conf of a TLS cluster that requires a client certificate (its CN must be
/// the user name) on top of the password.
pub const HBA_CLIENT_CERT: &str = "\
local all all scram-sha-256
hostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-full
";

/// pg_hba.conf of a primary that standbys stream from (plain TCP, scram-sha-256).
pub const HBA_REPLICATION: &str = "\
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
host replication all 127.0.0.1/32 scram-sha-256
";

/// What kind of cluster to start.
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// `ssl=on` with a fresh test CA's certificate and `HBA_TLS_ONLY`.
    pub tls: bool,
    /// The names in the server certificate of a TLS cluster (default `SERVER_SANS`):
    /// e.g. a name the test does not connect by, for host-name mismatch tests.
    pub tls_sans: Option<Vec<String>>,
    /// Start after initdb (`false`: the test calls `start()` itself, later).
    pub no_start: bool,
    /// With `tls`: take plain connections too (pg_hba `host`, not `hostssl` only).
    pub tls_optional: bool,
    /// With `tls`: a self-signed server certificate instead of one from a test CA.
    pub self_signed: bool,
    /// With `tls`: require a client certificate signed by the test CA.
    pub client_cert: bool,
}

#[derive(Debug)]
pub struct PgServer {
    pub port: u16,
    pub bindir: PathBuf,
    pub datadir: PathBuf,
    /// `unix_socket_directories`: also a valid `host` for libpq-style URLs.
    pub socket_dir: PathBuf,
    /// The CA whose certificate the server presents, for TLS clusters.
    pub tls: Option<TestCa>,
    log: PathBuf,
    as_postgres: bool,
    running: AtomicBool,
    dbs: AtomicUsize,
    // Dropped last: the directory holding everything above.
    _dir: tempfile::TempDir,
}

impl PgServer {
    /// A private plain cluster, started.
    pub fn new() -> PgServer {
        PgServer::with(PgOptions::default())
    }

    /// A private TLS-only cluster, started.
    pub fn new_tls() -> PgServer {
        PgServer::with(PgOptions { tls: true, ..PgOptions::default() })
    }

    /// The plain cluster this test binary shares: use `create_db` per test.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(|| PgServer::with(PgOptions::default()))
    }

    /// The TLS-only cluster this test binary shares.
    pub fn shared_tls() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(PgServer::new_tls)
    }

    pub fn with(options: PgOptions) -> PgServer {
        let bindir = bindir();
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("mockmate-pg-")
            .tempdir()
            .expect("create a temporary directory for the cluster");
        let root = dir.path().to_path_buf();
        let datadir = root.join("data");
        let socket_dir = root.join("sock");
        fs::create_dir(&socket_dir).expect("create the socket directory");
        let pwfile = root.join("pwfile");
        fs::write(&pwfile, SUPERUSER_PASSWORD).expect("write the password file");
        let tls = options.tls.then(|| {
            let sans: Vec<&str> = match &options.tls_sans {
                Some(sans) => sans.iter().map(String::as_str).collect(),
                None => SERVER_SANS.to_vec(),
            };
            if options.self_signed {
                TestCa::self_signed(&root.join("certs"))
            } else {
                TestCa::generate_named(&root.join("certs"), "", &sans)
            }
        });
        if as_postgres {
            run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&root));
        }

        let mut initdb = command(as_postgres, &bindir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&datadir)
            .args([
                "--auth=scram-sha-256",
                "--username",
                SUPERUSER,
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ])
            .arg(format!("--pwfile={}", pwfile.display()));
        run(&mut initdb);

        let mut conf = format!(
            "\n# mockmate-diag test harness\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             shared_buffers = 16MB\nmax_connections = 40\n\
             log_min_messages = warning\n",
            socket_dir.display()
        );
        if let Some(ca) = &tls {
            conf.push_str(&format!(
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                ca.server_cert.display(),
                ca.server_key.display()
            ));
            if options.client_cert {
                conf.push_str(&format!("ssl_ca_file = '{}'\n", ca.ca_cert.display()));
            }
        }
        append(&datadir.join("postgresql.conf"), &conf);
        let hba = match (&tls, options.client_cert, options.tls_optional) {
            (None, _, _) | (Some(_), false, true) => HBA_PLAIN,
            (Some(_), true, _) => HBA_CLIENT_CERT,
            (Some(_), false, false) => HBA_TLS_ONLY,
        };
        fs::write(datadir.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
        if as_postgres {
            run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&root));
        }

        let mut server = PgServer {
            port: 0,
            bindir,
            datadir,
            socket_dir,
            tls,
            log: root.join("server.log"),
            as_postgres,
            running: AtomicBool::new(false),
            dbs: AtomicUsize::new(0),
            _dir: dir,
        };
        server.watch_test_process();
        // A free port can be taken by another test binary before the server binds
        // it: retry with another one.
        for attempt in 1..=3 {
            server.port = free_port();
            append(&server.datadir.join("postgresql.conf"), &format!("port = {}\n", server.port));
            if options.no_start {
                break;
            }
            match server.try_start() {
                Ok(()) => break,
                Err(log) if attempt < 3 && log.contains("could not bind") => continue,
                Err(log) => panic!("PostgreSQL test cluster did not start:\n{log}"),
            }
        }
        server
    }

    /// Starts a stopped cluster (waiting until it accepts connections).
    pub fn start(&self) {
        if let Err(log) = self.try_start() {
            panic!("PostgreSQL test cluster did not start:\n{log}");
        }
    }

    fn try_start(&self) -> Result<(), String> {
        let out = self
            .pg_ctl()
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "60", "start"])
            .output()
            .expect("run pg_ctl start");
        if out.status.success() {
            self.running.store(true, Ordering::SeqCst);
            Ok(())
        } else {
            Err(format!(
                "{}{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                fs::read_to_string(&self.log).unwrap_or_default()
            ))
        }
    }

    /// Stops the cluster at once (`-m immediate`), like a crash or an outage.
    pub fn stop(&self) {
        if self.running.swap(false, Ordering::SeqCst) {
            let _ = self
                .pg_ctl()
                .args(["-w", "-m", "immediate", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Restarts the cluster as a deploy or a failover does (`-m fast`): every
    /// session hears "terminating connection due to administrator command" (57P01).
    pub fn restart(&self) {
        run(self.pg_ctl().arg("-l").arg(&self.log).args(["-w", "-t", "60", "-m", "fast", "restart"]));
    }

    /// Kills the postmaster with SIGKILL, as the OOM killer or a crashed host does:
    /// its backends exit without a word. The cluster counts as stopped.
    pub fn kill_postmaster(&self) {
        let pid = fs::read_to_string(self.datadir.join("postmaster.pid")).expect("read postmaster.pid");
        let pid = pid.lines().next().expect("postmaster.pid names the pid").trim().to_string();
        let status = Command::new("kill").args(["-KILL", &pid]).status().expect("run kill");
        assert!(status.success(), "kill -KILL {pid}");
        self.running.store(false, Ordering::SeqCst);
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Replaces pg_hba.conf and makes the running server reread it.
    pub fn reload_hba(&self, hba: &str) {
        fs::write(self.datadir.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
        if self.is_running() {
            run(self.pg_ctl().args(["reload", "-s"]));
        }
    }

    /// Runs SQL as the superuser in `db` (psql, stop at the first error); returns
    /// psql's unaligned, tuples-only output. Panics with psql's complaint on error.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        match self.try_sql(db, sql) {
            Ok(out) => out,
            Err(e) => panic!("SQL failed in database {db}: {e}\n{sql}"),
        }
    }

    /// Like `sql`, returning psql's error instead of panicking.
    pub fn try_sql(&self, db: &str, sql: &str) -> Result<String, String> {
        let psql = self.bindir.join("psql");
        let psql = if psql.exists() { psql } else { PathBuf::from("psql") };
        let out = Command::new(psql)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", db, "-c", sql])
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .env_remove("PGSERVICE")
            .output()
            .expect("run psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim_end().to_string())
        }
    }

    /// Creates a fresh, empty database named after `name` (made unique) and returns
    /// its name.
    pub fn create_db(&self, name: &str) -> String {
        let n = self.dbs.fetch_add(1, Ordering::SeqCst);
        let clean: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .take(40)
            .collect();
        let db = format!("{clean}_{n}");
        self.sql("postgres", &format!("CREATE DATABASE \"{db}\""));
        db
    }

    /// A fresh database with the MockMate schema and one active user.
    pub fn create_mockmate_db(&self, name: &str) -> String {
        let db = self.create_db(name);
        self.sql(&db, MOCKMATE_SCHEMA);
        self.sql(&db, MOCKMATE_ACTIVE_USER);
        db
    }

    /// Creates a login role (no special privileges) with a password.
    pub fn create_user(&self, user: &str, password: &str) {
        self.sql(
            "postgres",
            &format!("CREATE ROLE \"{}\" LOGIN PASSWORD '{}'", user.replace('"', "\"\""), password.replace('\'', "''")),
        );
    }

    /// `postgresql://user:password@127.0.0.1:port/db`, percent-encoded.
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        format!("postgresql://{}:{}@127.0.0.1:{}/{}", encode(user), encode(password), self.port, encode(db))
    }

    /// The superuser's URL for `db`.
    pub fn superuser_url(&self, db: &str) -> String {
        self.url(SUPERUSER, SUPERUSER_PASSWORD, db)
    }

    /// A psql session of the superuser holding `LOCK TABLE <table> IN ACCESS
    /// EXCLUSIVE MODE` in `db` until [`TableLock::release`] or drop: the lock a
    /// migration or a long ALTER holds in production.
    pub fn lock_table(&self, db: &str, table: &str) -> TableLock {
        let psql = self.bindir.join("psql");
        let psql = if psql.exists() { psql } else { PathBuf::from("psql") };
        let mut child = Command::new(psql)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", SUPERUSER, "-d", db])
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start psql");
        let stdin = child.stdin.as_mut().expect("psql stdin");
        stdin
            .write_all(format!("BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;\n").as_bytes())
            .expect("write to psql");
        stdin.flush().expect("flush");
        let started = std::time::Instant::now();
        let held = format!(
            "SELECT count(*) FROM pg_locks WHERE relation = '{table}'::regclass AND mode = 'AccessExclusiveLock' AND granted"
        );
        while self.sql(db, &held) != "1" {
            assert!(started.elapsed() < std::time::Duration::from_secs(10), "psql never took the lock on {table}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        TableLock { child }
    }

    /// The server's log so far (for assertion messages).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pg_ctl(&self) -> Command {
        let mut cmd = command(self.as_postgres, &self.bindir.join("pg_ctl"));
        cmd.arg("-D").arg(&self.datadir);
        cmd
    }

    /// Statics are never dropped and tests can be killed: a detached shell waits for
    /// this test process to end, then stops the cluster and removes its directory.
    fn watch_test_process(&self) {
        let pg_ctl = self.bindir.join("pg_ctl");
        let stop = if self.as_postgres {
            format!("runuser -u postgres -- '{}'", pg_ctl.display())
        } else {
            format!("'{}'", pg_ctl.display())
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {stop} -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{root}'",
            pid = std::process::id(),
            data = self.datadir.display(),
            root = self._dir.path().display(),
        );
        super::spawn_watchdog(script);
    }
}

/// A psql session holding a table lock (see [`PgServer::lock_table`]).
pub struct TableLock {
    child: std::process::Child,
}

impl TableLock {
    /// Rolls the locking transaction back and ends psql.
    pub fn release(mut self) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(b"ROLLBACK;\n\\q\n");
        }
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for TableLock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The PostgreSQL server binaries: `$PG_BINDIR`, `pg_config --bindir`, or the newest
/// `/usr/lib/postgresql/*/bin`. Missing binaries fail the test run loudly: these
/// tests are the point, skipping them would hide breakage.
pub fn bindir() -> PathBuf {
    static BINDIR: OnceLock<PathBuf> = OnceLock::new();
    BINDIR.get_or_init(find_bindir).clone()
}

fn find_bindir() -> PathBuf {
    let has_initdb = |p: &Path| p.join("initdb").is_file() && p.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        let dir = PathBuf::from(dir);
        assert!(has_initdb(&dir), "PG_BINDIR={} has no initdb/pg_ctl", dir.display());
        return dir;
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_initdb(&dir) {
            return dir;
        }
    }
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_initdb(&bin).then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, dir)) => dir,
        None => panic!(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: these tests start \
             real servers. Install them (`apt-get install postgresql`) or set PG_BINDIR \
             to the directory holding initdb."
        ),
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// initdb, pg_ctl and postgres refuse to run as root.
fn command(as_postgres: bool, program: &Path) -> Command {
    if as_postgres {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn append(path: &Path, text: &str) {
    let mut file =
        fs::OpenOptions::new().append(true).open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.write_all(text.as_bytes()).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
