//! Harness: throwaway redis-server processes started by the tests themselves.
//!
//! `RedisServer::shared()` is one plain, password-less server per test binary for
//! tests that only read; `RedisServer::builder()…start()` gives a private server for
//! tests that need a password, ACL users, TLS, a replica or a memory limit. Each one
//! listens on 127.0.0.1 at a free port, keeps its files in a temporary directory, and
//! is killed on drop or, for the shared one (statics are never dropped), when the
//! test process exits.
//!
//! A missing redis-server fails the run loudly: these tests are the point, skipping
//! them would hide breakage.

pub use super::{encode, free_port};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use super::tls::{Lifetimes, SERVER_SANS, TestCa};

/// How long a server gets to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What kind of server to start; see `RedisServer::builder()`.
#[derive(Debug, Clone, Default)]
pub struct RedisBuilder {
    requirepass: Option<String>,
    users: Vec<(String, String)>,
    tls: bool,
    replica_of: Option<(u16, Option<String>)>,
    maxmemory: Option<(String, String)>,
    args: Vec<String>,
    /// Sentinel mode: (name, master port on 127.0.0.1, quorum) per monitored master.
    monitors: Vec<(String, u16, u32)>,
    tls_lifetimes: Option<Lifetimes>,
    self_signed: bool,
}

impl RedisBuilder {
    /// `requirepass`: the `default` user needs this password.
    pub fn requirepass(mut self, password: &str) -> Self {
        self.requirepass = Some(password.to_owned());
        self
    }

    /// An ACL user with every permission: `user NAME on >PASSWORD ~* &* +@all`.
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.to_owned(), password.to_owned()));
        self
    }

    /// TLS only (`--port 0 --tls-port N`), with a fresh test CA in the server's
    /// directory (`RedisServer::ca`); client certificates are not required.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// `replicaof` a plain-text `primary` (with `masterauth` if it has a password).
    pub fn replica_of(mut self, primary: &RedisServer) -> Self {
        assert!(primary.ca.is_none(), "the harness only replicates from plain-text primaries");
        self.replica_of = Some((primary.port, primary.password.clone()));
        self
    }

    /// `maxmemory LIMIT` (e.g. "10mb") and `maxmemory-policy POLICY`.
    pub fn maxmemory(mut self, limit: &str, policy: &str) -> Self {
        self.maxmemory = Some((limit.to_owned(), policy.to_owned()));
        self
    }

    /// Any other `--name value` setting, as separate arguments.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// Makes this a Sentinel (`redis-server sentinel.conf --sentinel`) that
    /// monitors the master at 127.0.0.1:`port` as `name`; repeat for more masters.
    /// A master that is down is flagged `s_down` after 500 ms.
    pub fn monitor(mut self, name: &str, port: u16, quorum: u32) -> Self {
        self.monitors.push((name.to_owned(), port, quorum));
        self
    }

    /// TLS with a self-signed server certificate (no CA; see `TestCa::self_signed`).
    pub fn self_signed(mut self) -> Self {
        self.tls = true;
        self.self_signed = true;
        self
    }

    /// With `tls()`: the CA and server certificate have these validity windows.
    pub fn tls_lifetimes(mut self, lifetimes: Lifetimes) -> Self {
        self.tls_lifetimes = Some(lifetimes);
        self
    }

    /// Starts the server and waits until it answers PING.
    pub fn start(self) -> RedisServer {
        // Another test may grab the free port between our probe and redis binding
        // it; a fresh port on "Address already in use" makes that harmless.
        let mut last_log = String::new();
        for _ in 0..3 {
            match RedisServer::try_start(&self) {
                Ok(server) => return server,
                Err(log) if log.contains("already in use") => last_log = log,
                Err(log) => panic!("redis-server did not start:\n{log}"),
            }
        }
        panic!("redis-server did not start (port clashes):\n{last_log}");
    }
}

#[derive(Debug)]
pub struct RedisServer {
    /// The port clients use: the TLS port for a TLS server.
    pub port: u16,
    /// The test CA whose server certificate the TLS port presents.
    pub ca: Option<TestCa>,
    /// `requirepass`, used by `url()` and `cli()`.
    password: Option<String>,
    /// `cli()` skips certificate checks (a certificate with chosen, maybe past, dates).
    cli_insecure: bool,
    child: Child,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn builder() -> RedisBuilder {
        RedisBuilder::default()
    }

    /// A plain server with no password.
    pub fn start() -> RedisServer {
        RedisServer::builder().start()
    }

    /// One plain, password-less server per test binary, for tests that do not
    /// change its configuration.
    pub fn shared() -> &'static RedisServer {
        static SHARED: OnceLock<RedisServer> = OnceLock::new();
        SHARED.get_or_init(RedisServer::start)
    }

    fn try_start(options: &RedisBuilder) -> Result<RedisServer, String> {
        let dir = tempfile::Builder::new()
            .prefix("mockmate-redis-")
            .tempdir()
            .map_err(|e| format!("create the server directory: {e}"))?;
        let port = free_port();
        let log = dir.path().join("redis.log");

        let mut args: Vec<String> = Vec::new();
        let mut set = |name: &str, values: &[&str]| {
            args.push(format!("--{name}"));
            args.extend(values.iter().map(|v| v.to_string()));
        };
        set("save", &[""]);
        set("appendonly", &["no"]);
        set("bind", &["127.0.0.1"]);
        set("dir", &[&dir.path().display().to_string()]);
        set("logfile", &[&log.display().to_string()]);
        set("daemonize", &["no"]);
        // Replicas sync at once instead of after the default 5 s pause.
        set("repl-diskless-sync-delay", &["0"]);
        let ca = options.tls.then(|| match options.self_signed {
            true => TestCa::self_signed(&dir.path().join("tls")),
            false => TestCa::generate_valid(&dir.path().join("tls"), "", SERVER_SANS, options.tls_lifetimes),
        });
        match &ca {
            Some(ca) => {
                set("port", &["0"]);
                set("tls-port", &[&port.to_string()]);
                set("tls-cert-file", &[&ca.server_cert.display().to_string()]);
                set("tls-key-file", &[&ca.server_key.display().to_string()]);
                set("tls-ca-cert-file", &[&ca.ca_cert.display().to_string()]);
                set("tls-auth-clients", &["no"]);
            }
            None => set("port", &[&port.to_string()]),
        }
        if let Some(password) = &options.requirepass {
            set("requirepass", &[password]);
        }
        for (name, password) in &options.users {
            set("user", &[name, "on", &format!(">{password}"), "~*", "&*", "+@all"]);
        }
        if let Some((primary, auth)) = &options.replica_of {
            set("replicaof", &["127.0.0.1", &primary.to_string()]);
            if let Some(auth) = auth {
                set("masterauth", &[auth]);
            }
        }
        if let Some((limit, policy)) = &options.maxmemory {
            set("maxmemory", &[limit]);
            set("maxmemory-policy", &[policy]);
        }
        args.extend(options.args.iter().cloned());
        if !options.monitors.is_empty() {
            // A Sentinel reads (and rewrites) its monitors from a config file named first.
            let conf = dir.path().join("sentinel.conf");
            let monitors: String = options
                .monitors
                .iter()
                .map(|(name, port, quorum)| {
                    format!(
                        "sentinel monitor {name} 127.0.0.1 {port} {quorum}\nsentinel down-after-milliseconds {name} 500\n"
                    )
                })
                .collect();
            fs::write(&conf, monitors).map_err(|e| format!("write {}: {e}", conf.display()))?;
            args.splice(0..0, [conf.display().to_string(), "--sentinel".to_string()]);
        }

        let child = Command::new(redis_server_bin())
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}", missing("redis-server", &redis_server_bin(), &e)));

        let cli_insecure = options.tls_lifetimes.is_some();
        let mut server = RedisServer { port, ca, password: options.requirepass.clone(), cli_insecure, child, dir };
        server.watch_test_process();
        server.wait_until_ready(&log)?;
        Ok(server)
    }

    /// Polls PING until it answers, the process exits, or `START_TIMEOUT` passes.
    fn wait_until_ready(&mut self, log: &Path) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let stderr = self.child.stderr.take().map(read_all).unwrap_or_default();
                let log = fs::read_to_string(log).unwrap_or_default();
                return Err(format!("redis-server exited ({status}):\n{stderr}\n{log}"));
            }
            if let Ok(reply) = self.try_cli(&["PING"])
                && reply == "PONG"
            {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "no PONG from 127.0.0.1:{} within {START_TIMEOUT:?}:\n{}",
                    self.port,
                    fs::read_to_string(log).unwrap_or_default()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's own directory (for a Unix socket, say).
    /// Freezes the server (SIGSTOP): connections are accepted by the kernel and
    /// nothing answers, as a hung Redis does. Thawed on drop of the returned guard.
    pub fn freeze(&self) -> Frozen<'_> {
        let pid = self.child.id().to_string();
        let ok = std::process::Command::new("kill").args(["-STOP", &pid]).status().expect("run kill");
        assert!(ok.success(), "kill -STOP {pid} failed");
        Frozen(self)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The URL a client would use: rediss:// for TLS, with the `requirepass`
    /// password if there is one.
    pub fn url(&self) -> String {
        self.url_as(None, self.password.as_deref())
    }

    /// The URL with the given credentials (percent-encoded here).
    pub fn url_as(&self, user: Option<&str>, password: Option<&str>) -> String {
        let scheme = if self.ca.is_some() { "rediss" } else { "redis" };
        let auth = match (user, password) {
            (None, None) => String::new(),
            (user, password) => {
                format!("{}:{}@", encode(user.unwrap_or("")), encode(password.unwrap_or("")))
            }
        };
        format!("{scheme}://{auth}127.0.0.1:{}", self.port)
    }

    /// Runs redis-cli against this server (TLS and password handled) and returns
    /// its output, trimmed. Server errors come back as text (`ERR …`), not panics.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args).unwrap_or_else(|e| panic!("redis-cli {args:?} failed: {e}"))
    }

    fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(redis_cli_bin());
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--no-auth-warning"]);
        if let Some(ca) = &self.ca {
            cmd.arg("--tls").arg("--cacert").arg(&ca.ca_cert);
            if self.cli_insecure {
                cmd.arg("--insecure");
            }
        }
        if let Some(password) = &self.password {
            cmd.args(["-a", password]);
        }
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{}", missing("redis-cli", &redis_cli_bin(), &e)));
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// One field of `INFO` (e.g. "role", "master_link_status").
    pub fn info_field(&self, field: &str) -> Option<String> {
        self.cli(&["INFO", "all"])
            .lines()
            .find_map(|line| line.trim().strip_prefix(field)?.strip_prefix(':').map(str::to_owned))
    }

    /// Waits (up to 10 s) until a replica reports `master_link_status:up`.
    pub fn wait_for_sync(&self) {
        let started = Instant::now();
        while self.info_field("master_link_status").as_deref() != Some("up") {
            assert!(started.elapsed() < START_TIMEOUT, "replica on {} never synced", self.addr());
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until this primary counts `n` replicas `online`: a replica says its
    /// link is up a moment before its primary stops calling it `wait_bgsave`.
    pub fn wait_for_online_replicas(&self, n: usize) {
        let started = Instant::now();
        loop {
            let online = (0..n)
                .filter(|i| self.info_field(&format!("slave{i}")).is_some_and(|s| s.contains("state=online")))
                .count();
            if online == n {
                return;
            }
            assert!(started.elapsed() < START_TIMEOUT, "{} never saw {n} replicas online", self.addr());
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Statics are never dropped and tests can be killed: a detached shell waits for
    /// this test process (or the server) to end, then kills the server and removes
    /// its directory. It kills only a process still working in that directory, so a
    /// reused pid is left alone.
    fn watch_test_process(&self) {
        let dir = self.dir.path().canonicalize().unwrap_or_else(|_| self.dir.path().to_path_buf());
        let script = format!(
            "while kill -0 {test} 2>/dev/null && kill -0 {redis} 2>/dev/null; do sleep 1; done; \
             if [ \"$(readlink /proc/{redis}/cwd 2>/dev/null)\" = '{dir}' ]; then kill -9 {redis}; fi; \
             rm -rf '{dir}'",
            test = std::process::id(),
            redis = self.child.id(),
            dir = dir.display(),
        );
        super::spawn_watchdog(script);
    }
}

/// A frozen server (see [`RedisServer::freeze`]); SIGCONT when dropped.
pub struct Frozen<'a>(&'a RedisServer);

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").args(["-CONT", &self.0.child.id().to_string()]).status();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three Redis Cluster masters on 127.0.0.1 that have met, each serving the
/// slot range it was given (or none). Started once per test binary per shape.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// All 16384 slots served, `cluster_state:ok`.
    pub fn healthy() -> &'static RedisCluster {
        static SHARED: OnceLock<RedisCluster> = OnceLock::new();
        SHARED.get_or_init(|| RedisCluster::start(&[Some((0, 5460)), Some((5461, 10922)), Some((10923, 16383))]))
    }

    /// Slots 10923–16383 assigned to no master: `cluster_state:fail`, CLUSTERDOWN.
    pub fn with_unassigned_slots() -> &'static RedisCluster {
        static SHARED: OnceLock<RedisCluster> = OnceLock::new();
        SHARED.get_or_init(|| RedisCluster::start(&[Some((0, 5460)), Some((5461, 10922)), None]))
    }

    /// Starts one node per entry (cluster bus on a free port of its own), assigns
    /// the slots, makes them meet, and waits until every node knows the others and
    /// the slots they serve.
    pub fn start(slots: &[Option<(u16, u16)>]) -> RedisCluster {
        let nodes: Vec<RedisServer> = slots
            .iter()
            .map(|_| {
                RedisServer::builder()
                    .arg("--cluster-enabled")
                    .arg("yes")
                    .arg("--cluster-config-file")
                    .arg("nodes.conf")
                    .arg("--cluster-port")
                    .arg(&free_port().to_string())
                    .arg("--cluster-node-timeout")
                    .arg("2000")
                    .start()
            })
            .collect();
        let assigned: u32 = slots.iter().flatten().map(|(a, b)| u32::from(b - a) + 1).sum();
        for (epoch, (node, range)) in nodes.iter().zip(slots).enumerate() {
            node.cli(&["CLUSTER", "SET-CONFIG-EPOCH", &(epoch + 1).to_string()]);
            if let Some((first, last)) = range {
                node.cli(&["CLUSTER", "ADDSLOTSRANGE", &first.to_string(), &last.to_string()]);
            }
        }
        for node in &nodes[1..] {
            let bus = node.cli(&["CONFIG", "GET", "cluster-port"]).lines().nth(1).unwrap_or_default().to_owned();
            nodes[0].cli(&["CLUSTER", "MEET", "127.0.0.1", &node.port.to_string(), &bus]);
        }
        let started = Instant::now();
        let want_state = if assigned == 16384 { "ok" } else { "fail" };
        for node in &nodes {
            loop {
                let info = node.cli(&["CLUSTER", "INFO"]);
                let field = |name: &str| {
                    info.lines().find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':').map(str::to_owned))
                };
                if field("cluster_known_nodes") == Some(nodes.len().to_string())
                    && field("cluster_slots_assigned") == Some(assigned.to_string())
                    && field("cluster_state").as_deref() == Some(want_state)
                {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(20), "cluster never settled:\n{info}");
                thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes }
    }
}

/// `$REDIS_SERVER_BIN`, else `redis-server` on PATH.
fn redis_server_bin() -> PathBuf {
    std::env::var_os("REDIS_SERVER_BIN").map(PathBuf::from).unwrap_or_else(|| "redis-server".into())
}

/// `$REDIS_CLI_BIN`, else `redis-cli` on PATH.
fn redis_cli_bin() -> PathBuf {
    std::env::var_os("REDIS_CLI_BIN").map(PathBuf::from).unwrap_or_else(|| "redis-cli".into())
}

fn missing(what: &str, path: &Path, e: &std::io::Error) -> String {
    format!(
        "cannot run {what} ({}): {e}\n\
         The Redis tests need a real Redis 6+ server: apt-get install redis-server \
         (brings redis-cli too), or set REDIS_SERVER_BIN / REDIS_CLI_BIN.",
        path.display()
    )
}

fn read_all(mut r: impl std::io::Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}
