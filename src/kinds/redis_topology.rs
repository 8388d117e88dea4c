//! `redis.topology`: what `REDIS_URL` names can serve the API's client — a
//! standalone primary or replica (with its replication healthy), not a Sentinel
//! (which holds no data) and not a Cluster node behind a single-URL client, nor a
//! Cluster that is down.
//!
//! The API's client is a parameter: `client = "single"` (default: node-redis's
//! `createClient({ url })`), `"cluster"` (`createCluster`) or `"sentinel"`
//! (`createSentinel`). Standalone servers are judged from the connect-time INFO;
//! Sentinels and Cluster nodes from one round of read-only commands (see
//! [`crate::probe::redis::topology`]). Whether writes are refused on a replica
//! stays `redis.writable`'s finding.

use std::collections::HashMap;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::shared::redis::{IMPACT, session};
use crate::check::{Check, Ctx, KindDef, Outcome};
use crate::probe::Failure;
use crate::probe::redis::topology::CLUSTER_SLOTS;
use crate::probe::redis::{ClusterState, Mode, Monitored, Topology};

pub static KIND: KindDef = KindDef {
    name: "redis.topology",
    title: "Redis topology",
    description: "REDIS_URL names what the API's client (client: single, cluster, sentinel) can use: not a Sentinel, not a Cluster node behind createClient, not a Cluster that is down (CLUSTER INFO); replicas keep up within max_lag (30s)",
    build: |t| {
        let p: Params = crate::check::params(t)?;
        let max_lag = humantime::parse_duration(p.max_lag.trim())
            .map_err(|e| format!("`max_lag`: \"{}\" is not a duration like \"30s\" ({e})", p.max_lag))?;
        Ok(Box::new(TopologyCheck { client: p.client, max_lag }))
    },
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    client: Client,
    max_lag: String,
}

impl Default for Params {
    fn default() -> Self {
        Params { client: Client::Single, max_lag: "30s".to_string() }
    }
}

/// How the API connects (node-redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Client {
    /// `createClient({ url })`: one server, database `/n`.
    Single,
    /// `createCluster({ rootNodes })`: follows MOVED, database 0 only.
    Cluster,
    /// `createSentinel({ name, sentinelRootNodes })`: asks Sentinels for the master.
    Sentinel,
}

impl Client {
    fn call(self) -> &'static str {
        match self {
            Client::Single => "createClient({ url })",
            Client::Cluster => "createCluster",
            Client::Sentinel => "createSentinel",
        }
    }
}

struct TopologyCheck {
    client: Client,
    max_lag: Duration,
}

impl Check for TopologyCheck {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let session = match session(ctx).await {
                Ok(s) => s,
                Err(outcome) => return outcome,
            };
            let addr = session.addr();
            let outcome = match session.mode() {
                Mode::Standalone => self.standalone(&session.info_fields),
                Mode::Sentinel => self.sentinel(session.topology().await, &addr, session.info.tls),
                Mode::Cluster => self.cluster(session.topology().await, &addr),
            };
            outcome.detail("client", self.client.call())
        }
        .boxed()
    }
}

impl TopologyCheck {
    fn standalone(&self, info: &HashMap<String, String>) -> Outcome {
        if self.client != Client::Single {
            let expected = if self.client == Client::Cluster { "a Cluster node" } else { "a Sentinel" };
            return Outcome::problem(format!(
                "REDIS_URL names a standalone Redis, but the API connects with {} (client = \"{}\"), which needs {expected}",
                self.client.call(),
                if self.client == Client::Cluster { "cluster" } else { "sentinel" }
            ))
            .hint(format!(
                "point REDIS_URL at {expected}, or, if the API uses createClient({{ url }}), drop `client` from this check ({IMPACT} until then)"
            ))
            .detail("mode", "standalone");
        }
        let field = |name: &str| info.get(name).map(String::as_str);
        let number = |name: &str| field(name).and_then(|v| v.trim().parse::<u64>().ok());
        let limit = self.max_lag.as_secs();
        let max_lag = humantime::format_duration(self.max_lag);
        match field("role") {
            Some("slave") => {
                let primary =
                    format!("{}:{}", field("master_host").unwrap_or("?"), field("master_port").unwrap_or("?"));
                let link = field("master_link_status").unwrap_or("unknown");
                let io_ago = number("master_last_io_seconds_ago");
                let details = |o: Outcome| {
                    o.detail("mode", "standalone")
                        .detail("role", "replica")
                        .detail("primary", primary.clone())
                        .detail("master_link_status", link)
                        .detail("master_last_io_seconds_ago", io_ago)
                };
                let outcome = if link != "up" {
                    let since = number("master_link_down_since_seconds")
                        .map(|s| format!(" for {}", humantime::format_duration(Duration::from_secs(s))))
                        .unwrap_or_default();
                    Outcome::warn(format!(
                        "replica of {primary} with its link down{since} (master_link_status:{link}): it serves what it \
                         had at the last sync, and a full resync will replace it"
                    ))
                    .hint(format!(
                        "check that {primary} is up and reachable from the replica (masterauth, firewall); the replica's log says why the link fails"
                    ))
                } else if field("master_sync_in_progress") == Some("1") {
                    Outcome::warn(format!(
                        "replica of {primary}, full sync in progress: it answers from its old data (or LOADING) until the sync ends"
                    ))
                } else if let Some(ago) = io_ago.filter(|s| *s > limit) {
                    Outcome::warn(format!(
                        "replica of {primary}: link up, but nothing heard from the primary for {ago}s (max_lag {max_lag})"
                    ))
                    .hint(format!("check the network between the replica and {primary}, and the primary's load"))
                } else {
                    let heard = io_ago.map(|s| format!(", last heard from the primary {s}s ago")).unwrap_or_default();
                    Outcome::pass(format!("replica of {primary}, link up{heard} (redis.writable judges its writes)"))
                };
                details(outcome)
            }
            Some("master") => {
                let replicas = replicas(info);
                let problems: Vec<String> = replicas
                    .iter()
                    .filter_map(|r| match (r.state.as_str(), r.lag) {
                        ("online", Some(lag)) if lag > limit => {
                            Some(format!("replica {} last acknowledged {lag}s ago (max_lag {max_lag})", r.addr))
                        }
                        ("online", _) => None,
                        (state, _) => Some(format!("replica {} is not in sync (state {state})", r.addr)),
                    })
                    .collect();
                let list: Vec<_> =
                    replicas.iter().map(|r| json!({"addr": r.addr, "state": r.state, "lag_seconds": r.lag})).collect();
                let outcome = if !problems.is_empty() {
                    Outcome::warn(format!(
                        "{}: its copy of the cache is behind, which matters when it is promoted",
                        problems.join("; ")
                    ))
                    .hint("check the replica's log, its link to this primary and the network between them")
                } else if replicas.is_empty() {
                    Outcome::pass("standalone primary, no replicas")
                } else {
                    let words: Vec<String> =
                        replicas.iter().map(|r| format!("{} online, lag {}s", r.addr, r.lag.unwrap_or(0))).collect();
                    Outcome::pass(format!(
                        "standalone primary with {}: {}",
                        plural(replicas.len(), "replica", "replicas"),
                        words.join("; ")
                    ))
                };
                outcome.detail("mode", "standalone").detail("role", "primary").detail("replicas", list)
            }
            other => Outcome::warn(format!(
                "INFO has {}; cannot tell the server's replication role",
                other.map(|r| format!("role:{r}")).unwrap_or_else(|| "no role field".to_string())
            ))
            .hint("the server may restrict INFO (ACL or managed service)")
            .detail("mode", "standalone"),
        }
    }

    fn sentinel(&self, topology: Result<&Topology, Failure>, addr: &str, tls: bool) -> Outcome {
        let monitored = match topology {
            Ok(Topology::Sentinel(m)) => Ok(m.as_slice()),
            Ok(_) => Ok(&[][..]),
            Err(f) => Err(f),
        };
        let (words, list) = match &monitored {
            Ok(masters) => (
                match masters {
                    [] => "it monitors no master (SENTINEL MASTERS is empty)".to_string(),
                    [one] => format!("it monitors {}", monitored_words(one)),
                    many => format!(
                        "it monitors {} masters: {}",
                        many.len(),
                        many.iter().map(monitored_words).collect::<Vec<_>>().join("; ")
                    ),
                },
                masters.iter().map(monitored_json).collect::<Vec<_>>(),
            ),
            Err(f) => (format!("its masters could not be read ({})", f.message), Vec::new()),
        };
        let details = |o: Outcome| o.detail("mode", "sentinel").detail("monitored", list.clone());
        if self.client == Client::Sentinel {
            return details(match monitored {
                Err(f) => Outcome::warn(format!("cannot tell whether the Sentinel's masters are healthy: {}", f.message))
                    .hint(f.hint.unwrap_or_default()),
                Ok(m) if m.iter().any(|m| m.is_down() || m.ckquorum.is_err()) => {
                    Outcome::problem(format!("Sentinel at {addr}: {words}"))
                        .hint("bring the master back or let the Sentinels fail over (they need their quorum); SENTINEL MASTERS on each Sentinel shows what it sees")
                }
                Ok([]) => Outcome::problem(format!("Sentinel at {addr}: {words}"))
                    .hint("configure the Sentinel to monitor the master (sentinel monitor <name> <host> <port> <quorum>)"),
                Ok(_) => Outcome::pass(format!("Sentinel at {addr}: {words}")),
            });
        }
        let scheme = if tls { "rediss" } else { "redis" };
        // The hint names a master that is up, when there is one.
        let up = monitored.as_ref().ok().and_then(|m| m.iter().find(|m| !m.is_down()).or(m.first()));
        let (name, master) = match up {
            Some(m) => (m.name.as_str(), m.master.as_deref().unwrap_or("the master")),
            None => ("<name>", "the master"),
        };
        details(
            Outcome::problem(format!(
                "REDIS_URL names a Redis Sentinel, not a Redis server: the app's cache commands fail with \
                 \"unknown command\"; {words}"
            ))
            .hint(format!(
                "point REDIS_URL at the master the Sentinel reports ({scheme}://{master}, keeping the current URL's \
                 credentials), or have the API ask the Sentinels for it: node-redis's createSentinel({{ name: '{name}', \
                 sentinelRootNodes: [...] }}) with this Sentinel ({addr}) among the root nodes ({IMPACT} until then)"
            )),
        )
    }

    fn cluster(&self, topology: Result<&Topology, Failure>, addr: &str) -> Outcome {
        let state = match topology {
            Ok(Topology::Cluster(state)) => state,
            Ok(_) => return Outcome::warn("a Cluster node returned no cluster state"),
            Err(f) => {
                return Outcome::warn(format!("REDIS_URL names a Redis Cluster node, but {}", f.message))
                    .hint(f.hint.unwrap_or_default())
                    .detail("mode", "cluster");
            }
        };
        let details = |o: Outcome| {
            o.detail("mode", "cluster")
                .detail("cluster_state", state.state.clone())
                .detail("slots_assigned", state.slots_assigned)
                .detail("slots_ok", state.slots_ok)
                .detail("slots_pfail", state.slots_pfail)
                .detail("slots_fail", state.slots_fail)
                .detail("known_nodes", state.known_nodes)
                .detail("size", state.size)
        };
        if !state.is_ok() {
            return details(cluster_down(state, addr));
        }
        let served = format!(
            "cluster_state:ok, {} of {CLUSTER_SLOTS} slots on {}",
            state.slots_ok,
            plural(state.size as usize, "master", "masters")
        );
        details(match self.client {
            Client::Single => Outcome::problem(format!(
                "REDIS_URL names a Redis Cluster node ({served}): createClient({{ url }}) gets MOVED for every key \
                 another master serves and CROSSSLOT for multi-key commands, and only database 0 exists"
            ))
            .hint(format!(
                "point REDIS_URL at a standalone Redis, or make the API use createCluster({{ rootNodes: [{{ url }}] }}) \
                 and say so to mockmate-diag (a redis.topology check with client = \"cluster\") ({IMPACT} until then)"
            )),
            Client::Sentinel => Outcome::problem(format!(
                "REDIS_URL names a Redis Cluster node ({served}), but the API connects with createSentinel, which needs a Sentinel"
            ))
            .hint("point REDIS_URL at a Sentinel, or set client = \"cluster\" if the API uses createCluster"),
            Client::Cluster if state.slots_pfail > 0 || state.slots_fail > 0 => Outcome::warn(format!(
                "Redis Cluster serving, but {} slots are on masters that some nodes cannot reach (pfail {}, fail {}): their keys may soon answer CLUSTERDOWN",
                state.slots_pfail + state.slots_fail,
                state.slots_pfail,
                state.slots_fail
            ))
            .hint(format!("redis-cli --cluster check {addr} names the unreachable masters")),
            Client::Cluster => Outcome::pass(format!("Redis Cluster healthy: {served}, {} in all", plural(state.known_nodes as usize, "node", "nodes"))),
        })
    }
}

/// `cluster_state:fail`: every command on a key answers CLUSTERDOWN, whatever the client.
fn cluster_down(state: &ClusterState, addr: &str) -> Outcome {
    let mut why = Vec::new();
    let mut fixes = Vec::new();
    let unassigned = CLUSTER_SLOTS.saturating_sub(state.slots_assigned);
    if unassigned > 0 {
        why.push(format!("{unassigned} of {CLUSTER_SLOTS} hash slots are assigned to no master"));
        fixes.push(format!("assign the missing slots (redis-cli --cluster fix {addr})"));
    }
    if state.slots_fail > 0 || state.slots_pfail > 0 {
        why.push(format!("{} slots are on masters that are down or unreachable", state.slots_fail + state.slots_pfail));
        fixes.push(format!(
            "restart the failed masters or fail over to their replicas (redis-cli --cluster check {addr} names them)"
        ));
    }
    if why.is_empty() {
        why.push("this node cannot reach a majority of the masters".to_string());
        fixes.push(format!("check the network between the nodes (redis-cli --cluster check {addr})"));
    }
    Outcome::problem(format!(
        "Redis Cluster is down (cluster_state:{}): {}; every command on a key answers CLUSTERDOWN",
        state.state,
        why.join(", and ")
    ))
    .hint(format!("{} ({IMPACT} until then)", fixes.join("; ")))
}

/// `mymaster at 10.0.0.5:6379 (quorum 2 reachable)`.
fn monitored_words(m: &Monitored) -> String {
    let mut notes = Vec::new();
    if m.is_down() {
        notes.push(format!("DOWN ({})", m.flags.join(",")));
    }
    let quorum = m.quorum.map(|q| format!("quorum {q}")).unwrap_or_else(|| "quorum".to_string());
    notes.push(match &m.ckquorum {
        Ok(_) => format!("{quorum} reachable"),
        Err(e) => format!("{quorum} NOT reachable: {e}"),
    });
    format!("{} at {} ({})", m.name, m.master.as_deref().unwrap_or("an unknown address"), notes.join("; "))
}

fn monitored_json(m: &Monitored) -> serde_json::Value {
    json!({"name": m.name, "master": m.master, "flags": m.flags, "quorum": m.quorum, "replicas": m.replicas,
           "other_sentinels": m.other_sentinels, "quorum_reachable": m.ckquorum.is_ok(),
           "ckquorum": match &m.ckquorum { Ok(s) | Err(s) => s }})
}

/// A replica as its primary's INFO lists it (`slave0:ip=…,port=…,state=online,offset=…,lag=0`).
struct Replica {
    addr: String,
    state: String,
    lag: Option<u64>,
}

fn replicas(info: &HashMap<String, String>) -> Vec<Replica> {
    let mut found: Vec<(u32, Replica)> = info
        .iter()
        .filter_map(|(k, v)| {
            let index = k.strip_prefix("slave")?.parse::<u32>().ok()?;
            let fields: HashMap<&str, &str> = v.split(',').filter_map(|kv| kv.split_once('=')).collect();
            let addr = format!("{}:{}", fields.get("ip")?, fields.get("port")?);
            let state = fields.get("state").unwrap_or(&"unknown").to_string();
            Some((index, Replica { addr, state, lag: fields.get("lag").and_then(|l| l.parse().ok()) }))
        })
        .collect();
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, r)| r).collect()
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Verdict;

    fn check(client: Client) -> TopologyCheck {
        TopologyCheck { client, max_lag: Duration::from_secs(30) }
    }

    fn info(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn monitored(name: &str, flags: &str, quorum: Result<&str, &str>) -> Monitored {
        Monitored {
            name: name.into(),
            master: Some("10.0.0.5:6379".into()),
            flags: flags.split(',').map(str::to_string).collect(),
            quorum: Some(2),
            replicas: Some(1),
            other_sentinels: Some(2),
            ckquorum: quorum.map(str::to_string).map_err(str::to_string),
        }
    }

    #[test]
    fn standalone_primary_and_replica() {
        let c = check(Client::Single);
        let o = c.standalone(&info(&[("role", "master"), ("connected_slaves", "0")]));
        assert_eq!((o.verdict, o.message.as_str()), (Verdict::Pass, "standalone primary, no replicas"));
        let o = c.standalone(&info(&[
            ("role", "master"),
            ("slave1", "ip=10.0.0.7,port=6379,state=wait_bgsave,offset=0,lag=0"),
            ("slave0", "ip=10.0.0.6,port=6379,state=online,offset=9,lag=45"),
        ]));
        assert_eq!(o.verdict, Verdict::Warn);
        assert!(
            o.message.starts_with(
                "replica 10.0.0.6:6379 last acknowledged 45s ago (max_lag 30s); replica 10.0.0.7:6379 is not in sync (state wait_bgsave)"
            ),
            "{}",
            o.message
        );
        let replica = [("role", "slave"), ("master_host", "10.0.0.5"), ("master_port", "6379")];
        let o = c.standalone(&info(&[
            replica[0],
            replica[1],
            replica[2],
            ("master_link_status", "up"),
            ("master_last_io_seconds_ago", "1"),
        ]));
        assert_eq!(
            (o.verdict, o.message.as_str()),
            (
                Verdict::Pass,
                "replica of 10.0.0.5:6379, link up, last heard from the primary 1s ago (redis.writable judges its writes)"
            )
        );
        let o = c.standalone(&info(&[
            replica[0],
            replica[1],
            replica[2],
            ("master_link_status", "down"),
            ("master_link_down_since_seconds", "120"),
        ]));
        assert_eq!(o.verdict, Verdict::Warn);
        assert!(
            o.message.starts_with("replica of 10.0.0.5:6379 with its link down for 2m (master_link_status:down)"),
            "{}",
            o.message
        );
        let o = check(Client::Cluster).standalone(&info(&[("role", "master")]));
        assert_eq!(o.verdict, Verdict::Problem);
        assert!(
            o.message.contains("createCluster (client = \"cluster\"), which needs a Cluster node"),
            "{}",
            o.message
        );
    }

    #[test]
    fn a_sentinel_is_named_with_its_masters_and_quorum() {
        let masters = vec![monitored("mymaster", "master", Ok("OK 3 usable Sentinels"))];
        let o = check(Client::Single).sentinel(Ok(&Topology::Sentinel(masters.clone())), "10.0.0.9:26379", false);
        assert_eq!(o.verdict, Verdict::Problem);
        assert_eq!(
            o.message,
            "REDIS_URL names a Redis Sentinel, not a Redis server: the app's cache commands fail with \"unknown command\"; \
             it monitors mymaster at 10.0.0.5:6379 (quorum 2 reachable)"
        );
        let hint = o.hint.unwrap_or_default();
        assert!(
            hint.starts_with("point REDIS_URL at the master the Sentinel reports (redis://10.0.0.5:6379"),
            "{hint}"
        );
        assert!(hint.contains("createSentinel({ name: 'mymaster'"), "{hint}");
        assert_eq!(o.details["monitored"][0]["quorum_reachable"], true);

        let o = check(Client::Sentinel).sentinel(Ok(&Topology::Sentinel(masters)), "10.0.0.9:26379", false);
        assert_eq!(o.verdict, Verdict::Pass);
        let bad = vec![monitored("mymaster", "s_down,master", Err("NOQUORUM 1 usable Sentinels"))];
        let o = check(Client::Sentinel).sentinel(Ok(&Topology::Sentinel(bad)), "10.0.0.9:26379", false);
        assert_eq!(o.verdict, Verdict::Problem);
        assert!(
            o.message.ends_with(
                "mymaster at 10.0.0.5:6379 (DOWN (s_down,master); quorum 2 NOT reachable: NOQUORUM 1 usable Sentinels)"
            ),
            "{}",
            o.message
        );
    }

    #[test]
    fn cluster_state_and_what_a_single_url_client_meets() {
        let ok = ClusterState {
            state: "ok".into(),
            slots_assigned: 16384,
            slots_ok: 16384,
            known_nodes: 3,
            size: 3,
            ..ClusterState::default()
        };
        let o = check(Client::Single).cluster(Ok(&Topology::Cluster(ok.clone())), "n1:7000");
        assert_eq!(o.verdict, Verdict::Problem);
        assert!(o.message.contains("createClient({ url }) gets MOVED"), "{}", o.message);
        let o = check(Client::Cluster).cluster(Ok(&Topology::Cluster(ok.clone())), "n1:7000");
        assert_eq!(
            (o.verdict, o.message.as_str()),
            (
                Verdict::Pass,
                "Redis Cluster healthy: cluster_state:ok, 16384 of 16384 slots on 3 masters, 3 nodes in all"
            )
        );
        let down = ClusterState { state: "fail".into(), slots_assigned: 10923, slots_ok: 10923, ..ok };
        for client in [Client::Single, Client::Cluster] {
            let o = check(client).cluster(Ok(&Topology::Cluster(down.clone())), "n1:7000");
            assert_eq!(o.verdict, Verdict::Problem);
            assert_eq!(
                o.message,
                "Redis Cluster is down (cluster_state:fail): 5461 of 16384 hash slots are assigned to no master; \
                 every command on a key answers CLUSTERDOWN"
            );
            assert!(
                o.hint
                    .clone()
                    .unwrap_or_default()
                    .starts_with("assign the missing slots (redis-cli --cluster fix n1:7000)")
            );
        }
    }

    #[test]
    fn client_is_a_known_word() {
        assert!((KIND.build)("client = \"ioredis\"".parse().expect("toml")).is_err());
        assert!((KIND.build)("client = \"cluster\"\nmax_lag = \"10s\"".parse().expect("toml")).is_ok());
    }
}
