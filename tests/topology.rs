//! Topology as an on-call engineer meets it: a failover that left DATABASE_URL on
//! a hot standby, a standby that fell behind, a synchronous standby that is not
//! there; REDIS_URL on a Sentinel or a Cluster node, a Cluster that lost slot
//! coverage, a replica whose link broke; certificates that expire. Real servers
//! the harness starts: a streaming standby (pg_basebackup -R), a Sentinel, three-
//! node Clusters, and certificates from the harness CA with chosen lifetimes.

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use crate::support::cmd::{assert_status, check, diag, hint, json_run, message};
use crate::support::pg::{PgServer, Replicated, SUPERUSER_PASSWORD};
use crate::support::redis::{RedisCluster, RedisServer, free_port};
use crate::support::tls::Lifetimes;
use serde_json::Value;

const PG_IDS: &str = "postgres.connect,postgres.writable,postgres.replication,postgres.cert_expiry";
const REDIS_IDS: &str = "redis.connect,redis.topology,redis.cert_expiry,redis.writable,redis.permissions,redis.memory,redis.persistence,redis.roundtrip";

/// Runs the checks `only` with `env` and `args` in an empty directory holding
/// `manifest` (when given) as `extra.toml`.
fn run(env: &[(&str, &str)], only: &str, manifest: Option<&str>, args: &[&str]) -> (i32, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = diag(dir.path());
    if let Some(manifest) = manifest {
        fs::write(dir.path().join("extra.toml"), manifest).expect("write manifest");
        cmd.args(["--checks", "extra.toml"]);
    }
    // States, not speed, are under test here: room for a machine loaded by other test binaries.
    cmd.envs(env.iter().copied()).args(["--format", "json", "--timeout", "15s", "--only", only]).args(args);
    json_run(&mut cmd)
}

fn run_pg(url: &str) -> (i32, Value) {
    run(&[("DATABASE_URL", url)], PG_IDS, None, &[])
}

/// Resumes WAL replay on the standby and puts replication settings back, even when
/// an assertion failed first (the pair is shared by the tests of this binary).
struct Restore<'a>(&'a Replicated);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let _ = self.0.standby.try_sql("postgres", "SELECT pg_wal_replay_resume()");
        let _ = self.0.primary.try_sql("postgres", "ALTER SYSTEM RESET synchronous_standby_names");
        let _ = self.0.primary.try_sql("postgres", "ALTER SYSTEM RESET synchronous_commit");
        let _ = self.0.primary.try_sql("postgres", "SELECT pg_reload_conf()");
    }
}

#[test]
fn failover_left_database_url_on_a_hot_standby_and_postgres_writable_says_where_it_replays_from() {
    let pair = Replicated::shared();
    let _guard = pair.lock();
    pair.commit_and_sync();

    let (code, report) = run_pg(&pair.standby.superuser_url("postgres"));
    assert_eq!(code, 1, "{report:#}");
    assert_status(&report, "postgres.connect", "pass");
    assert_status(&report, "postgres.writable", "fail");
    let msg = message(&report, "postgres.writable");
    let upstream = format!("127.0.0.1:{}", pair.primary.port);
    assert!(
        msg.starts_with(&format!("connected to a hot standby (pg_is_in_recovery), replaying from {upstream}, "))
            && msg.ends_with(": every insert will fail (25006)"),
        "{msg}"
    );
    let hint = hint(&report, "postgres.writable");
    assert!(hint.starts_with("point DATABASE_URL at the primary, or at the failover endpoint"), "{hint}");
    assert!(hint.contains(&format!("this standby replays from {upstream}")), "{hint}");
    let standby = &check(&report, "postgres.writable")["details"]["standby"];
    assert_eq!((standby["status"].as_str(), standby["upstream"].as_str()), (Some("streaming"), Some(&*upstream)));
    // One cause, one failure: replication steps aside on a standby.
    assert_status(&report, "postgres.replication", "skip");
    assert_eq!(
        message(&report, "postgres.replication"),
        "this server is a standby: postgres.writable reports it, with its upstream and replay lag"
    );
    assert_eq!(check(&report, "postgres.replication")["see"], "postgres.writable");
    // primary_conninfo holds the replication password; only its host and port are read.
    assert!(!report.to_string().contains(SUPERUSER_PASSWORD));

    let (code, report) = run_pg(&pair.primary.superuser_url("postgres"));
    assert_eq!(code, 0, "{report:#}");
    assert_status(&report, "postgres.writable", "pass");
    assert_status(&report, "postgres.replication", "pass");
    let msg = message(&report, "postgres.replication");
    assert!(msg.starts_with("primary with 1 standby: walreceiver (127.0.0.1) streaming, "), "{msg}");
    assert_eq!(check(&report, "postgres.replication")["details"]["standbys"][0]["state"], "streaming");
}

#[test]
fn paused_replay_shows_the_backlog_and_the_primary_warns_over_max_lag() {
    let pair = Replicated::shared();
    let _guard = pair.lock();
    let _restore = Restore(pair);
    pair.commit_and_sync();
    pair.standby.sql("postgres", "SELECT pg_wal_replay_pause()");
    pair.primary.sql("postgres", "SELECT txid_current()");
    pair.standby.wait_for("SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()", "t");
    pair.primary.wait_for("SELECT extract(epoch FROM replay_lag) >= 1.5 FROM pg_stat_replication", "t");

    let (_, report) = run_pg(&pair.standby.superuser_url("postgres"));
    let msg = message(&report, "postgres.writable");
    let behind = regex::Regex::new(
        r", replay paused \(pg_wal_replay_resume\(\) resumes it\), [0-9.]+ (B|kB|MB) of WAL not yet replayed, last replayed commit [0-9a-z ]+ ago: every insert",
    )
    .expect("regex");
    assert!(behind.is_match(msg), "{msg}");
    let standby = &check(&report, "postgres.writable")["details"]["standby"];
    assert_eq!(standby["replay_paused"], true);
    assert!(standby["unreplayed_bytes"].as_u64() > Some(0), "{standby}");

    let manifest = "[[check]]\nid = \"custom.replication\"\nkind = \"postgres.replication\"\nseverity = \"warn\"\n\
                    needs = [\"postgres.connect\"]\nmax_lag = \"1s\"\n";
    let (code, report) = run(
        &[("DATABASE_URL", &pair.primary.superuser_url("postgres"))],
        "postgres.connect,custom.replication",
        Some(manifest),
        &[],
    );
    assert_eq!(code, 0, "a lagging standby is a warning: {report:#}");
    assert_status(&report, "custom.replication", "warn");
    let msg = message(&report, "custom.replication");
    let lagging = regex::Regex::new(
        r"^walreceiver \(127\.0\.0\.1\) is \d+s behind in replay \(max_lag 1s\): reads from it are stale, and a failover to it waits until it has replayed the backlog$",
    )
    .expect("regex");
    assert!(lagging.is_match(msg), "{msg}");
}

#[test]
fn a_role_without_pg_monitor_is_told_what_it_cannot_see() {
    let pair = Replicated::shared();
    let _guard = pair.lock();
    let (role, password) = ("app_topology", "app-topology-pw");
    if pair.primary.sql("postgres", &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'")) == "0" {
        pair.primary.create_user(role, password);
    }
    pair.commit_and_sync();

    let (_, report) = run_pg(&pair.standby.url(role, password, "postgres"));
    let msg = message(&report, "postgres.writable");
    assert!(
        msg.starts_with(
            "connected to a hot standby (pg_is_in_recovery), replaying from an upstream this role cannot see \
             (GRANT pg_read_all_stats to see it)"
        ),
        "{msg}"
    );

    let (_, report) = run_pg(&pair.primary.url(role, password, "postgres"));
    assert_status(&report, "postgres.replication", "pass");
    assert_eq!(
        message(&report, "postgres.replication"),
        "primary with 1 standby (walreceiver); their state and lag are hidden from role \"app_topology\" \
         (to see them: GRANT pg_monitor TO \"app_topology\";)"
    );
}

#[test]
fn synchronous_standby_names_naming_a_missing_standby_fails_because_every_commit_would_hang() {
    let pair = Replicated::shared();
    let _guard = pair.lock();
    let _restore = Restore(pair);
    pair.primary.sql("postgres", "ALTER SYSTEM SET synchronous_standby_names = 'replica_gone'");
    pair.primary.sql("postgres", "ALTER SYSTEM SET synchronous_commit = on");
    pair.primary.sql("postgres", "SELECT pg_reload_conf()");
    pair.primary.wait_for("SHOW synchronous_standby_names", "replica_gone");

    let (code, report) = run_pg(&pair.primary.superuser_url("postgres"));
    assert_eq!(code, 1, "severity warn, but hanging commits always fail: {report:#}");
    assert_status(&report, "postgres.replication", "fail");
    assert_eq!(
        message(&report, "postgres.replication"),
        "synchronous_standby_names = 'replica_gone' but none of the 1 standby connected is synchronous: \
         every commit waits for one (synchronous_commit = on), so the API's inserts hang"
    );
    assert!(hint(&report, "postgres.replication").contains("ALTER SYSTEM SET synchronous_standby_names = ''"));
}

/// Reissues the cluster's certificate and waits until new connections get it.
fn reissue(pg: &PgServer, lifetimes: Lifetimes) {
    let before = pg.sql("postgres", "SELECT pg_conf_load_time()");
    pg.reissue_certificate(lifetimes);
    let started = Instant::now();
    while pg.sql("postgres", "SELECT pg_conf_load_time()") == before {
        assert!(started.elapsed() < Duration::from_secs(10), "the server never reloaded");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn postgres_certificates_warn_before_they_expire_and_fail_once_expired() {
    let pg = PgServer::new_tls();
    let ca = pg.tls.as_ref().expect("TLS cluster").ca_cert.display().to_string();
    // no-verify: encrypted, nothing checked (node-postgres's sslmode=require verifies).
    let require = format!("{}?sslmode=no-verify", pg.superuser_url("postgres"));
    let verify = format!("{}?sslmode=verify-ca&sslrootcert={ca}", pg.superuser_url("postgres"));

    reissue(&pg, Lifetimes::server_for(90));
    let (code, report) = run_pg(&verify);
    assert_eq!(code, 0, "{report:#}");
    assert_status(&report, "postgres.cert_expiry", "pass");
    let msg = message(&report, "postgres.cert_expiry");
    assert!(msg.starts_with("earliest expiry in 90 days ("), "{msg}");
    assert!(msg.ends_with("): the server certificate \"localhost\"; 2 certificates checked"), "{msg}");
    let details = &check(&report, "postgres.cert_expiry")["details"];
    assert_eq!(details["days_left"], 90);
    assert_eq!(details["certificates"][1]["role"], "ca_file");

    reissue(&pg, Lifetimes::server_for(5));
    let (_, report) = run_pg(&require);
    assert_status(&report, "postgres.cert_expiry", "warn");
    assert!(
        message(&report, "postgres.cert_expiry")
            .starts_with("the server certificate \"localhost\" expires in 5 days (")
    );
    assert!(hint(&report, "postgres.cert_expiry").contains("renew the server's certificate"));

    // Expired: sslmode=no-verify does not check dates, so only this check can say it.
    reissue(&pg, Lifetimes::server_for(-2));
    let (_, report) = run_pg(&require);
    assert_status(&report, "postgres.connect", "pass");
    assert_status(&report, "postgres.cert_expiry", "fail");
    let msg = message(&report, "postgres.cert_expiry");
    assert!(msg.starts_with("the server certificate \"localhost\" expired 2 days ago ("), "{msg}");
    assert!(msg.ends_with("): clients that verify certificates refuse the connection"), "{msg}");
    // A verifying connection is refused, with the date.
    let (_, report) = run_pg(&verify);
    assert_status(&report, "postgres.connect", "fail");
    assert!(
        message(&report, "postgres.connect")
            .starts_with("the API (node-postgres) cannot connect: TLS certificate not trusted (expired on "),
        "{report:#}"
    );
    assert_status(&report, "postgres.cert_expiry", "skip");

    // An expired private CA: webpki trusts the anchor anyway, OpenSSL (Node) does not.
    reissue(&pg, Lifetimes::ca_expired(1));
    let (_, report) = run_pg(&verify);
    assert_status(&report, "postgres.connect", "pass");
    assert_status(&report, "postgres.cert_expiry", "fail");
    let msg = message(&report, "postgres.cert_expiry");
    assert!(
        msg.starts_with(&format!("the sslrootcert CA \"mockmate-diag test CA \" ({ca}) expired 1 day ago")),
        "{msg}"
    );
    assert!(hint(&report, "postgres.cert_expiry").starts_with("point sslrootcert at the CA's current certificate"));
}

#[test]
fn redis_certificates_warn_before_they_expire_and_an_expired_one_is_refused() {
    let soon = RedisServer::builder().tls().tls_lifetimes(Lifetimes::server_for(3)).start();
    let ca = soon.ca.as_ref().expect("TLS").ca_cert.display().to_string();
    let (code, report) = run(&[("REDIS_URL", &soon.url()), ("REDIS_CA_CERT", &ca)], REDIS_IDS, None, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_status(&report, "redis.cert_expiry", "warn");
    assert!(
        message(&report, "redis.cert_expiry").starts_with("the server certificate \"localhost\" expires in 3 days (")
    );

    // node-redis always verifies (it ignores #insecure): an expired certificate is
    // refused at the handshake, with its date.
    let expired = RedisServer::builder().tls().tls_lifetimes(Lifetimes::server_for(-1)).start();
    let (code, report) = run(&[("REDIS_URL", &format!("{}#insecure", expired.url()))], REDIS_IDS, None, &[]);
    assert_eq!(code, 0, "Redis is non-fatal: {report:#}");
    assert_status(&report, "redis.connect", "warn");
    assert!(message(&report, "redis.connect").contains("certificate not trusted (expired on "), "{report:#}");
    let ca = expired.ca.as_ref().expect("TLS").ca_cert.display().to_string();
    let (_, report) = run(&[("REDIS_URL", &expired.url()), ("REDIS_CA_CERT", &ca)], REDIS_IDS, None, &[]);
    assert_status(&report, "redis.connect", "warn");
    assert!(message(&report, "redis.connect").contains("failed: certificate not trusted (expired on "), "{report:#}");
    assert_status(&report, "redis.cert_expiry", "skip");

    let old_ca = RedisServer::builder().tls().tls_lifetimes(Lifetimes::ca_expired(2)).start();
    let ca = old_ca.ca.as_ref().expect("TLS").ca_cert.display().to_string();
    let (_, report) = run(&[("REDIS_URL", &old_ca.url()), ("REDIS_CA_CERT", &ca)], REDIS_IDS, None, &[]);
    assert_status(&report, "redis.connect", "pass");
    assert_status(&report, "redis.cert_expiry", "warn");
    let msg = message(&report, "redis.cert_expiry");
    assert!(
        msg.starts_with(&format!("the REDIS_CA_CERT CA \"mockmate-diag test CA \" ({ca}) expired 2 days ago")),
        "{msg}"
    );
}

#[test]
fn redis_url_on_a_sentinel_names_it_with_the_masters_it_monitors_and_their_quorum() {
    let master = RedisServer::start();
    let gone = free_port();
    let sentinel = RedisServer::builder().monitor("mymaster", master.port, 1).monitor("cache-b", gone, 2).start();
    // The Sentinel flags a master it cannot reach after down-after-milliseconds.
    let started = Instant::now();
    while !sentinel.cli(&["SENTINEL", "MASTER", "cache-b"]).contains("s_down") {
        assert!(started.elapsed() < Duration::from_secs(10), "cache-b never flagged s_down");
        std::thread::sleep(Duration::from_millis(50));
    }

    let (code, report) = run(&[("REDIS_URL", &sentinel.url())], REDIS_IDS, None, &[]);
    assert_eq!(code, 0, "Redis is non-fatal: {report:#}");
    assert_status(&report, "redis.connect", "pass");
    assert!(message(&report, "redis.connect").contains(" (sentinel) at "), "{report:#}");
    assert_status(&report, "redis.topology", "warn");
    let msg = message(&report, "redis.topology");
    assert!(
        msg.starts_with(
            "REDIS_URL names a Redis Sentinel, not a Redis server: the app's cache commands fail with \
             \"unknown command\"; it monitors 2 masters: "
        ),
        "{msg}"
    );
    assert!(msg.contains(&format!("mymaster at {} (quorum 1 reachable)", master.addr())), "{msg}");
    assert!(msg.contains(&format!("cache-b at 127.0.0.1:{gone} (DOWN (s_down,")), "{msg}");
    assert!(msg.contains("quorum 2 NOT reachable: NOQUORUM"), "{msg}");
    let hint = hint(&report, "redis.topology");
    assert!(
        hint.starts_with(&format!("point REDIS_URL at the master the Sentinel reports (redis://{}", master.addr())),
        "{hint}"
    );
    assert!(hint.contains("createSentinel({ name: 'mymaster'"), "{hint}");
    // No "cannot tell" warnings: the checks of data step aside.
    for id in ["redis.writable", "redis.memory", "redis.persistence", "redis.permissions"] {
        assert_status(&report, id, "skip");
        assert_eq!(message(&report, id), "REDIS_URL names a Sentinel, which holds no data: see redis.topology");
        assert_eq!(check(&report, id)["see"], "redis.topology", "{report:#}");
    }
}

/// `INFO commandstats` as command → calls.
fn command_calls(server: &RedisServer) -> BTreeMap<String, u64> {
    server
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|l| l.trim().strip_prefix("cmdstat_")?.split_once(":calls="))
        .map(|(cmd, rest)| (cmd.to_owned(), rest.split(',').next().and_then(|n| n.parse().ok()).unwrap_or(0)))
        .filter(|(cmd, _)| cmd != "config|resetstat")
        .collect()
}

#[test]
fn a_cluster_node_behind_a_single_url_client_warns_of_moved_and_a_cluster_client_passes() {
    let node = &RedisCluster::healthy().nodes[0];
    node.cli(&["CONFIG", "RESETSTAT"]);
    let manifest = "[[check]]\nid = \"custom.topology\"\nkind = \"redis.topology\"\nseverity = \"warn\"\n\
                    needs = [\"redis.connect\"]\nclient = \"cluster\"\n";
    let only = format!("{REDIS_IDS},custom.topology");
    let (code, report) = run(&[("REDIS_URL", &node.url())], &only, Some(manifest), &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_status(&report, "redis.topology", "warn");
    assert_eq!(
        message(&report, "redis.topology"),
        "REDIS_URL names a Redis Cluster node (cluster_state:ok, 16384 of 16384 slots on 3 masters): \
         createClient({ url }) gets MOVED for every key another master serves and CROSSSLOT for multi-key \
         commands, and only database 0 exists"
    );
    assert!(hint(&report, "redis.topology").contains("createCluster({ rootNodes: [{ url }] })"));
    assert_status(&report, "custom.topology", "pass");
    assert_eq!(
        message(&report, "custom.topology"),
        "Redis Cluster healthy: cluster_state:ok, 16384 of 16384 slots on 3 masters, 3 nodes in all"
    );
    assert_status(&report, "redis.writable", "pass");
    assert!(message(&report, "redis.writable").starts_with("cluster master (role:master)"));
    // Read-only, and one CLUSTER INFO for every check that needed the cluster state.
    // redis.permissions' four no-ops and redis.writable's SET … XX, on keys that
    // cannot exist, change nothing; they run here or, when the random key's slot is
    // another master's, answer MOVED.
    let mut calls = command_calls(node);
    for noop in ["set", "get", "expire", "del"] {
        let most = if noop == "set" { 2 } else { 1 };
        assert!(calls.remove(noop).unwrap_or(0) <= most, "{noop}");
    }
    assert_eq!(calls, BTreeMap::from([("cluster|info".to_owned(), 1), ("info".to_owned(), 1), ("ping".to_owned(), 5)]));
    assert_eq!(node.cli(&["DBSIZE"]), "0");
    // What a single-URL client meets: a key served by another master.
    let other = (0..100)
        .map(|i| format!("session:{i}"))
        .find(|k| node.cli(&["CLUSTER", "KEYSLOT", k]).parse::<u32>().is_ok_and(|s| s > 5460));
    let key = other.expect("a key on another master");
    assert!(node.cli(&["SET", &key, "x"]).starts_with("MOVED "));
}

#[test]
fn a_cluster_with_unassigned_slots_is_down_and_redis_writable_does_not_claim_writes_are_accepted() {
    let node = &RedisCluster::with_unassigned_slots().nodes[0];
    let (code, report) = run(&[("REDIS_URL", &node.url())], REDIS_IDS, None, &["--allow-writes"]);
    assert_eq!(code, 0, "{report:#}");
    assert_status(&report, "redis.topology", "warn");
    assert_eq!(
        message(&report, "redis.topology"),
        "Redis Cluster is down (cluster_state:fail): 5461 of 16384 hash slots are assigned to no master; \
         every command on a key answers CLUSTERDOWN"
    );
    assert!(
        hint(&report, "redis.topology")
            .starts_with(&format!("assign the missing slots (redis-cli --cluster fix {})", node.addr()))
    );
    assert_eq!(check(&report, "redis.topology")["details"]["slots_assigned"], 10923);
    for id in ["redis.writable", "redis.roundtrip"] {
        assert_status(&report, id, "skip");
        assert_eq!(
            message(&report, id),
            "the Redis Cluster is down (cluster_state:fail), so every command on a key answers CLUSTERDOWN: see redis.topology"
        );
    }
    // The claim, proven: even a key on this node's own slots is refused.
    assert!(node.cli(&["SET", "session:1", "x"]).starts_with("CLUSTERDOWN"));
}

#[test]
fn a_replica_names_its_primary_and_warns_when_the_link_breaks() {
    let primary = RedisServer::start();
    let replica = RedisServer::builder().replica_of(&primary).start();
    replica.wait_for_sync();
    primary.wait_for_online_replicas(1);

    let (_, report) = run(&[("REDIS_URL", &primary.url())], "redis.connect,redis.topology", None, &[]);
    assert_status(&report, "redis.topology", "pass");
    let msg = message(&report, "redis.topology");
    assert!(msg.starts_with(&format!("standalone primary with 1 replica: {} online, lag ", replica.addr())), "{msg}");

    let (_, report) = run(&[("REDIS_URL", &replica.url())], "redis.connect,redis.topology", None, &[]);
    assert_status(&report, "redis.topology", "pass");
    let msg = message(&report, "redis.topology");
    assert!(msg.starts_with(&format!("replica of {}, link up", primary.addr())), "{msg}");

    let primary_addr = primary.addr();
    drop(primary);
    let started = Instant::now();
    while replica.info_field("master_link_status").as_deref() != Some("down") {
        assert!(started.elapsed() < Duration::from_secs(10), "the replica never noticed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, report) = run(&[("REDIS_URL", &replica.url())], "redis.connect,redis.topology", None, &[]);
    assert_eq!(code, 0);
    assert_status(&report, "redis.topology", "warn");
    let msg = message(&report, "redis.topology");
    assert!(msg.starts_with(&format!("replica of {primary_addr} with its link down")), "{msg}");
    assert!(msg.contains("(master_link_status:down): it serves what it had at the last sync"), "{msg}");
}
