//! Harness: throwaway PgBouncer processes in front of a test cluster.
//!
//! `PgBouncer::start(&pg, BouncerOptions::default())` starts a private PgBouncer
//! (1.18+, `apt-get install pgbouncer`) in transaction pooling with one server
//! connection per pool, the tight set-up the tool must survive. It listens on
//! 127.0.0.1 at a free port (and on a unix socket in its own directory), keeps its
//! config, auth_file and log in a temporary directory, forwards to `pg` over TCP
//! 127.0.0.1 (so `inet_server_addr()` is meaningful; `server_via_unix_socket` for
//! the other case), and is killed on drop or, by a watchdog, when the test process
//! exits.
//!
//! Logins: the auth_file holds the cluster's own SCRAM verifiers (`pg_authid`), so
//! every role with a password logs in through the pooler with the password it has
//! on the cluster (PgBouncer reuses the client's SCRAM proof to log in to
//! PostgreSQL). Roles created after `start` need `refresh_users`. The admin console
//! (virtual database `pgbouncer`, simple query protocol only) takes `BOUNCER_ADMIN`
//! (`admin_users`) and `BOUNCER_STATS` (`stats_users`): they exist only in the
//! auth_file, not on the cluster.
//!
//! PgBouncer refuses to run as root: as root it runs as `postgres`. A missing
//! pgbouncer fails the run loudly: these tests are the point, skipping them would
//! hide breakage.

pub use super::{encode, free_port};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::pg::{PgServer, SUPERUSER, SUPERUSER_PASSWORD};

/// Admin console user (`admin_users`): SHOW, RELOAD, PAUSE, KILL …
pub const BOUNCER_ADMIN: &str = "bouncer_admin";
pub const BOUNCER_ADMIN_PASSWORD: &str = "harness-bouncer-admin-pw";
/// Read-only console user (`stats_users`): SHOW only.
pub const BOUNCER_STATS: &str = "bouncer_stats";
pub const BOUNCER_STATS_PASSWORD: &str = "harness-bouncer-stats-pw";

/// How long PgBouncer gets to log "process up" and listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolMode {
    /// A server connection per client for the client's whole session;
    /// `server_reset_query` (DISCARD ALL) runs when the client leaves.
    Session,
    /// A server connection per transaction; nothing is reset between clients.
    #[default]
    Transaction,
    /// A server connection per statement; transaction blocks are refused.
    Statement,
}

impl PoolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

/// One `[databases]` entry.
#[derive(Debug, Clone)]
pub enum BouncerDb {
    /// `* = host=… port=…`: every database name is forwarded to the cluster's database
    /// of that name (pools created on first use). An unknown name then fails with the
    /// cluster's "database … does not exist", relayed by PgBouncer.
    All,
    /// `name = host=… port=… dbname=… extra`: only these names exist; any other
    /// fails with PgBouncer's own "no such database: …". `extra` is appended as is
    /// (e.g. "pool_size=2 pool_mode=session"), may be empty.
    Named { name: String, dbname: String, extra: String },
}

/// What kind of PgBouncer to start. `Default`: transaction pooling, pool size 1,
/// every database forwarded, TCP to the cluster.
#[derive(Debug, Clone)]
pub struct BouncerOptions {
    pub pool_mode: PoolMode,
    pub default_pool_size: u32,
    /// `[databases]`; empty means `[BouncerDb::All]`.
    pub databases: Vec<BouncerDb>,
    /// Reach the cluster through its unix socket instead of TCP 127.0.0.1 (then
    /// `inet_server_addr()` is NULL through the pooler).
    pub server_via_unix_socket: bool,
    /// Any other `[pgbouncer]` setting, written as `key = value` after the
    /// harness's own (later ones win), e.g. ("query_wait_timeout", "2"),
    /// ("ignore_startup_parameters", "extra_float_digits,options"),
    /// ("server_reset_query_always", "1").
    pub settings: Vec<(String, String)>,
    /// The port of the first attempt (later attempts take free ports): only for
    /// tests of the harness's port-clash retry.
    pub first_port: Option<u16>,
}

impl Default for BouncerOptions {
    fn default() -> Self {
        BouncerOptions {
            pool_mode: PoolMode::Transaction,
            default_pool_size: 1,
            databases: Vec::new(),
            server_via_unix_socket: false,
            settings: Vec::new(),
            first_port: None,
        }
    }
}

impl BouncerOptions {
    pub fn transaction(pool_size: u32) -> Self {
        BouncerOptions { pool_mode: PoolMode::Transaction, default_pool_size: pool_size, ..Self::default() }
    }

    pub fn session(pool_size: u32) -> Self {
        BouncerOptions { pool_mode: PoolMode::Session, default_pool_size: pool_size, ..Self::default() }
    }

    /// Adds a `[pgbouncer]` setting.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.settings.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds a named `[databases]` entry for the cluster's database `dbname`.
    pub fn database(mut self, name: &str, dbname: &str, extra: &str) -> Self {
        self.databases.push(BouncerDb::Named {
            name: name.to_owned(),
            dbname: dbname.to_owned(),
            extra: extra.to_owned(),
        });
        self
    }

    pub fn via_unix_socket(mut self) -> Self {
        self.server_via_unix_socket = true;
        self
    }
}

#[derive(Debug)]
pub struct PgBouncer {
    /// The TCP port clients use (on 127.0.0.1).
    pub port: u16,
    /// `unix_socket_dir`: PgBouncer also listens on `.s.PGSQL.<port>` here.
    pub socket_dir: PathBuf,
    /// The fronted cluster's port.
    pub pg_port: u16,
    pub options: BouncerOptions,
    psql: PathBuf,
    pid: u32,
    child: Mutex<Child>,
    // Dropped last: the directory holding everything above.
    dir: tempfile::TempDir,
}

impl PgBouncer {
    /// Starts PgBouncer in front of `pg` and waits until it listens.
    pub fn start(pg: &PgServer, options: BouncerOptions) -> PgBouncer {
        // A free port can be taken by another test before PgBouncer binds it, and
        // PgBouncer does not exit then: it logs "cannot listen on …" and serves
        // the unix socket only. The log tells; a fresh port makes it harmless.
        let mut last = String::new();
        for attempt in 0..3 {
            let port = match (attempt, options.first_port) {
                (0, Some(port)) => port,
                _ => free_port(),
            };
            match PgBouncer::try_start(pg, &options, port) {
                Ok(bouncer) => return bouncer,
                Err(Failure::PortTaken(log)) => last = log,
                Err(Failure::Other(log)) => panic!("PgBouncer did not start:\n{log}"),
            }
        }
        panic!("PgBouncer did not start (port clashes):\n{last}");
    }

    fn try_start(pg: &PgServer, options: &BouncerOptions, port: u16) -> Result<PgBouncer, Failure> {
        let bin = pgbouncer_bin();
        let run_as = if is_root() { Some(postgres_ids()) } else { None };
        let dir = tempfile::Builder::new()
            .prefix("mockmate-pgbouncer-")
            .tempdir()
            .map_err(|e| Failure::Other(format!("create the PgBouncer directory: {e}")))?;
        let root = dir.path().to_path_buf();
        let socket_dir = root.join("sock");
        fs::create_dir(&socket_dir).expect("create the PgBouncer socket directory");
        let auth_file = root.join("userlist.txt");
        fs::write(&auth_file, auth_file_text(pg)).expect("write the PgBouncer auth_file");
        let ini = root.join("pgbouncer.ini");
        fs::write(&ini, ini_text(pg, options, port, &root)).expect("write pgbouncer.ini");
        if run_as.is_some() {
            run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&root));
        }
        let stderr = fs::File::create(root.join("stderr.log")).expect("create PgBouncer's stderr log");

        let mut cmd = Command::new(&bin);
        cmd.arg(&ini).current_dir(&root).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
        if let Some((uid, gid)) = run_as {
            // setuid in the child itself (no runuser in between), so `child` is
            // PgBouncer and kill() reaches it.
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{}", missing(&bin, &e)));
        let psql = pg.bindir.join("psql");
        let psql = if psql.exists() { psql } else { PathBuf::from("psql") };
        let pid = child.id();
        let bouncer = PgBouncer {
            port,
            socket_dir,
            pg_port: pg.port,
            options: options.clone(),
            psql,
            pid,
            child: Mutex::new(child),
            dir,
        };
        bouncer.watch_test_process();
        bouncer.wait_until_ready()?;
        Ok(bouncer)
    }

    /// Polls the log until PgBouncer listens on our port, refuses it, or exits.
    fn wait_until_ready(&self) -> Result<(), Failure> {
        let started = Instant::now();
        let listening = format!("listening on 127.0.0.1:{}", self.port);
        let refused = format!("cannot listen on 127.0.0.1:{}", self.port);
        loop {
            if let Ok(Some(status)) = self.child().try_wait() {
                return Err(Failure::Other(format!("pgbouncer exited ({status}):\n{}", self.all_logs())));
            }
            let log = self.log();
            if log.contains(&refused) {
                // Alive but deaf on TCP: not ours to use.
                self.kill();
                return Err(Failure::PortTaken(self.all_logs()));
            }
            if log.contains(&listening) && log.contains("process up") {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(Failure::Other(format!(
                    "PgBouncer did not log \"{listening}\" within {START_TIMEOUT:?}:\n{}",
                    self.all_logs()
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `postgresql://user:password@127.0.0.1:port/db`, percent-encoded.
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        format!("postgresql://{}:{}@127.0.0.1:{}/{}", encode(user), encode(password), self.port, encode(db))
    }

    /// The cluster superuser's URL for `db`, through the pooler.
    pub fn superuser_url(&self, db: &str) -> String {
        self.url(SUPERUSER, SUPERUSER_PASSWORD, db)
    }

    /// The admin console (`BOUNCER_ADMIN` on the virtual database `pgbouncer`).
    pub fn admin_url(&self) -> String {
        self.url(BOUNCER_ADMIN, BOUNCER_ADMIN_PASSWORD, "pgbouncer")
    }

    /// The console as the read-only `BOUNCER_STATS` user.
    pub fn stats_url(&self) -> String {
        self.url(BOUNCER_STATS, BOUNCER_STATS_PASSWORD, "pgbouncer")
    }

    /// Runs one admin console command (`SHOW POOLS`, `RELOAD`, …) as `BOUNCER_ADMIN`
    /// through psql; returns its unaligned, tuples-only output ('|' between columns).
    /// Panics with psql's complaint on error.
    pub fn console(&self, command: &str) -> String {
        self.try_psql(BOUNCER_ADMIN, BOUNCER_ADMIN_PASSWORD, "pgbouncer", command)
            .unwrap_or_else(|e| panic!("admin console command failed: {e}\n{command}\nlog:\n{}", self.log()))
    }

    /// Runs SQL as the cluster superuser in `db`, through the pooler (psql, stop at
    /// the first error); returns psql's unaligned, tuples-only output.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        self.try_psql(SUPERUSER, SUPERUSER_PASSWORD, db, sql)
            .unwrap_or_else(|e| panic!("SQL through PgBouncer failed in database {db}: {e}\n{sql}"))
    }

    /// psql through the pooler as `user`; psql's stderr on failure.
    pub fn try_psql(&self, user: &str, password: &str, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(&self.psql)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", user, "-d", db, "-c", sql])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGSERVICE")
            .env_remove("PGOPTIONS")
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim_end().to_string())
        }
    }

    /// One row of `SHOW POOLS` for `db`/`user` as (column, value) pairs, or None.
    pub fn pool(&self, db: &str, user: &str) -> Option<Vec<(String, String)>> {
        let header = self.console_with_header("SHOW POOLS");
        let mut lines = header.lines();
        let columns: Vec<String> = lines.next()?.split('|').map(str::to_owned).collect();
        lines.map(|l| l.split('|').map(str::to_owned).collect::<Vec<_>>()).find_map(|row| {
            (row.first().map(String::as_str) == Some(db) && row.get(1).map(String::as_str) == Some(user))
                .then(|| columns.iter().cloned().zip(row).collect())
        })
    }

    /// `command`'s output with psql's header line (unaligned, '|' separated).
    fn console_with_header(&self, command: &str) -> String {
        let out = Command::new(&self.psql)
            .args(["-X", "-q", "-A", "-P", "footer=off", "-h", "127.0.0.1"])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", BOUNCER_ADMIN, "-d", "pgbouncer", "-c", command])
            .env("PGPASSWORD", BOUNCER_ADMIN_PASSWORD)
            .env_remove("PGSERVICE")
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        assert!(out.status.success(), "{command} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Re-copies the cluster's SCRAM verifiers into the auth_file and RELOADs, for
    /// roles created (or passwords changed) after `start`.
    pub fn refresh_users(&self, pg: &PgServer) {
        let path = self.dir.path().join("userlist.txt");
        fs::write(&path, auth_file_text(pg)).expect("rewrite the PgBouncer auth_file");
        self.console("RELOAD");
    }

    /// Stops PgBouncer (SIGTERM, "fast exit": server connections are closed, clients
    /// see their connection drop), SIGKILL after 5 s.
    pub fn stop(&self) {
        let mut child = self.child();
        if matches!(child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let started = Instant::now();
            while matches!(child.try_wait(), Ok(None)) {
                if started.elapsed() > Duration::from_secs(5) {
                    let _ = child.kill();
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = child.wait();
    }

    /// SIGKILL, like a crash (clients and servers see their connections drop).
    pub fn kill(&self) {
        let mut child = self.child();
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn is_running(&self) -> bool {
        matches!(self.child().try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn child(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// PgBouncer's log so far (for assertion messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    /// The config file as written (for assertion messages).
    pub fn config(&self) -> String {
        fs::read_to_string(self.dir.path().join("pgbouncer.ini")).unwrap_or_default()
    }

    fn all_logs(&self) -> String {
        let stderr = fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        format!("{stderr}{}\nconfig:\n{}", self.log(), self.config())
    }

    /// Statics are never dropped and tests can be killed: a detached shell waits for
    /// this test process (or PgBouncer) to end, then kills PgBouncer and removes its
    /// directory. It kills only a process still working in that directory, so a
    /// reused pid is left alone.
    fn watch_test_process(&self) {
        let dir = self.dir.path().canonicalize().unwrap_or_else(|_| self.dir.path().to_path_buf());
        let script = format!(
            "while kill -0 {test} 2>/dev/null && kill -0 {bouncer} 2>/dev/null; do sleep 1; done; \
             if [ \"$(readlink /proc/{bouncer}/cwd 2>/dev/null)\" = '{dir}' ]; then kill -9 {bouncer}; fi; \
             rm -rf '{dir}'",
            test = std::process::id(),
            bouncer = self.pid,
            dir = dir.display(),
        );
        super::spawn_watchdog(script);
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        self.kill();
    }
}

enum Failure {
    /// Another process holds the port.
    PortTaken(String),
    Other(String),
}

fn ini_text(pg: &PgServer, options: &BouncerOptions, port: u16, root: &Path) -> String {
    let server = if options.server_via_unix_socket {
        format!("host={} port={}", pg.socket_dir.display(), pg.port)
    } else {
        format!("host=127.0.0.1 port={}", pg.port)
    };
    let mut ini = String::from("; mockmate-diag test harness\n[databases]\n");
    if options.databases.is_empty() {
        let _ = writeln!(ini, "* = {server}");
    }
    for db in &options.databases {
        match db {
            BouncerDb::All => {
                let _ = writeln!(ini, "* = {server}");
            }
            BouncerDb::Named { name, dbname, extra } => {
                let _ = writeln!(ini, "{} = {server} dbname={} {extra}", quote_ident(name), quote_ident(dbname));
            }
        }
    }
    let _ = write!(
        ini,
        "[pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir = {sock}\n\
         auth_type = scram-sha-256\n\
         auth_file = {root}/userlist.txt\n\
         admin_users = {BOUNCER_ADMIN}\n\
         stats_users = {BOUNCER_STATS}\n\
         pool_mode = {mode}\n\
         default_pool_size = {size}\n\
         logfile = {root}/pgbouncer.log\n\
         ; a failed server login otherwise locks a pool out for 15 s\n\
         server_login_retry = 1\n",
        sock = root.join("sock").display(),
        root = root.display(),
        mode = options.pool_mode.as_str(),
        size = options.default_pool_size,
    );
    for (key, value) in &options.settings {
        let _ = writeln!(ini, "{key} = {value}");
    }
    ini
}

/// `"name"` for a `[databases]` key or dbname= value when it needs quoting.
fn quote_ident(name: &str) -> String {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// The auth_file: every cluster role with a password, as its SCRAM verifier (so
/// PgBouncer can both check clients and log in to the cluster as them), plus the
/// console users with plain-text passwords.
fn auth_file_text(pg: &PgServer) -> String {
    let roles = pg.sql(
        "postgres",
        "SELECT '\"' || replace(rolname, '\"', '\"\"') || '\" \"' || replace(rolpassword, '\"', '\"\"') || '\"' \
         FROM pg_authid WHERE rolpassword IS NOT NULL ORDER BY rolname",
    );
    format!(
        "{roles}\n\"{BOUNCER_ADMIN}\" \"{BOUNCER_ADMIN_PASSWORD}\"\n\"{BOUNCER_STATS}\" \"{BOUNCER_STATS_PASSWORD}\"\n"
    )
}

/// `$PGBOUNCER_BIN`, else `pgbouncer` on PATH, else Debian's /usr/sbin/pgbouncer
/// (not on a non-root PATH).
fn pgbouncer_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PGBOUNCER_BIN") {
        return PathBuf::from(bin);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("pgbouncer")).find(|p| p.is_file()))
        .unwrap_or_default();
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/pgbouncer"))
}

fn missing(path: &Path, e: &std::io::Error) -> String {
    format!(
        "cannot run pgbouncer ({}): {e}\n\
         The PgBouncer tests need a real PgBouncer 1.18+: apt-get install pgbouncer \
         (Debian installs it as /usr/sbin/pgbouncer), or set PGBOUNCER_BIN.",
        path.display()
    )
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// The uid and gid of `postgres` (PgBouncer dies with "PgBouncer should not run as
/// root").
fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = run(Command::new("id").args([flag, "postgres"]));
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|e| panic!("id {flag} postgres: {e}"))
    };
    (id("-u"), id("-g"))
}

fn run(cmd: &mut Command) -> std::process::Output {
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
