//! Harness: a hot standby streaming from a throwaway primary, as a failover
//! leaves one behind, and certificates reissued in place.

use std::fs;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use super::{HBA_REPLICATION, PgServer, SUPERUSER, SUPERUSER_PASSWORD, append, bindir, command, is_root, run};
use crate::support::free_port;
use crate::support::tls::{Lifetimes, SERVER_SANS, TestCa};

impl PgServer {
    /// A hot standby of `primary`, as a failover leaves one behind: `pg_basebackup
    /// -R` (as the postgres user when root), its own port and socket directory,
    /// started and streaming. The primary's pg_hba.conf must allow replication
    /// ([`HBA_REPLICATION`]).
    pub fn standby_of(primary: &PgServer) -> PgServer {
        let bindir = bindir();
        let as_postgres = is_root();
        let dir =
            tempfile::Builder::new().prefix("mockmate-pg-standby-").tempdir().expect("create a temporary directory");
        let root = dir.path().to_path_buf();
        let datadir = root.join("data");
        let socket_dir = root.join("sock");
        fs::create_dir(&socket_dir).expect("create the socket directory");
        if as_postgres {
            run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&root));
        }
        // The password goes in the connection string, so -R writes it into primary_conninfo.
        let conninfo = format!("host=127.0.0.1 port={} user={SUPERUSER} password={SUPERUSER_PASSWORD}", primary.port);
        run(command(as_postgres, &bindir.join("pg_basebackup"))
            .arg("-d")
            .arg(conninfo)
            .arg("-D")
            .arg(&datadir)
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"]));
        // Later lines win: the copied postgresql.conf still names the primary's port and socket.
        append(
            &datadir.join("postgresql.conf"),
            &format!(
                "\n# standby\nunix_socket_directories = '{}'\nwal_receiver_status_interval = 1s\n",
                socket_dir.display()
            ),
        );
        let mut standby = PgServer {
            port: 0,
            bindir,
            datadir,
            socket_dir,
            tls: None,
            log: root.join("server.log"),
            as_postgres,
            running: AtomicBool::new(false),
            dbs: AtomicUsize::new(0),
            _dir: dir,
        };
        standby.watch_test_process();
        for attempt in 1..=3 {
            standby.port = free_port();
            append(&standby.datadir.join("postgresql.conf"), &format!("port = {}\n", standby.port));
            match standby.try_start() {
                Ok(()) => break,
                Err(log) if attempt < 3 && log.contains("could not bind") => continue,
                Err(log) => panic!("PostgreSQL standby did not start:\n{log}"),
            }
        }
        standby.wait_for("SELECT status FROM pg_stat_wal_receiver", "streaming");
        standby
    }

    /// Polls `sql` (as the superuser, database postgres) until it prints `want`, for up to 20 s.
    pub fn wait_for(&self, sql: &str, want: &str) {
        let started = Instant::now();
        loop {
            let got = self.try_sql("postgres", sql).unwrap_or_default();
            if got == want {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{sql} printed {got:?}, not {want:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Issues a TLS cluster a new CA and server certificate with `lifetimes` (same
    /// files) and reloads the server, which picks them up for new connections.
    pub fn reissue_certificate(&self, lifetimes: Lifetimes) {
        let ca = self.tls.as_ref().expect("a TLS cluster");
        TestCa::generate_valid(&ca.dir, "", SERVER_SANS, Some(lifetimes));
        if self.as_postgres {
            run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&ca.dir));
        }
        run(self.pg_ctl().args(["reload", "-s"]));
    }
}

/// A primary and a hot standby streaming from it, started once per test binary.
/// Tests that change replication (pause replay, synchronous_standby_names) hold
/// [`Replicated::lock`] and put things back before they release it.
pub struct Replicated {
    pub primary: PgServer,
    pub standby: PgServer,
    lock: Mutex<()>,
}

impl Replicated {
    pub fn shared() -> &'static Replicated {
        static SHARED: OnceLock<Replicated> = OnceLock::new();
        SHARED.get_or_init(|| {
            let primary = PgServer::new();
            primary.reload_hba(HBA_REPLICATION);
            let standby = PgServer::standby_of(&primary);
            Replicated { primary, standby, lock: Mutex::new(()) }
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Commits on the primary and waits until the standby has replayed it.
    pub fn commit_and_sync(&self) {
        // A transaction with an xid writes a commit record, which the standby replays.
        // The insert position, not the write position: with synchronous_commit = off
        // the commits before this one may still be in WAL buffers.
        self.primary.sql("postgres", "SELECT txid_current()");
        let lsn = self.primary.sql("postgres", "SELECT pg_current_wal_insert_lsn()");
        self.standby.wait_for(&format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"), "t");
    }
}
