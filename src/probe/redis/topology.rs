//! What a Redis server is part of, beyond its own INFO: the masters a Sentinel
//! monitors (and whether its quorum can be reached), a Cluster's state and slot
//! coverage. Fetched once per run, by the first check that asks, in one
//! pipelined round of read-only commands — `SENTINEL MASTERS` and `SENTINEL
//! CKQUORUM <name>` on a Sentinel, `CLUSTER INFO` on a Cluster node, nothing on
//! a standalone server (INFO already says everything about its replication).

use std::collections::HashMap;

use redis::Value;

use super::info::parse_info;
use crate::probe::Failure;

/// Every hash slot a Cluster has.
pub const CLUSTER_SLOTS: u64 = 16_384;

/// What kind of server `REDIS_URL` names, from INFO (`redis_mode`, `cluster_enabled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Standalone,
    /// A Sentinel: it monitors masters and answers `SENTINEL …`, but holds no data.
    Sentinel,
    /// A Redis Cluster node: it serves some hash slots and redirects the rest.
    Cluster,
}

impl Mode {
    pub fn of(info: &HashMap<String, String>) -> Mode {
        match info.get("redis_mode").map(String::as_str) {
            Some("sentinel") => Mode::Sentinel,
            Some("cluster") => Mode::Cluster,
            _ if info.get("cluster_enabled").map(String::as_str) == Some("1") => Mode::Cluster,
            _ => Mode::Standalone,
        }
    }
}

/// The topology around the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Topology {
    Standalone,
    /// The masters the Sentinel monitors, in its order.
    Sentinel(Vec<Monitored>),
    Cluster(ClusterState),
}

/// One master a Sentinel monitors (`SENTINEL MASTERS`, `SENTINEL CKQUORUM`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitored {
    /// The name clients ask for (`mymaster`).
    pub name: String,
    /// `host:port` of the master as this Sentinel knows it now (after any failover).
    pub master: Option<String>,
    /// `master`, `s_down`, `o_down`, `disconnected` …
    pub flags: Vec<String>,
    pub quorum: Option<u64>,
    pub replicas: Option<u64>,
    /// Other Sentinels this one knows for the master.
    pub other_sentinels: Option<u64>,
    /// `CKQUORUM`'s answer: `OK 3 usable Sentinels…` or the `NOQUORUM …` error.
    pub ckquorum: Result<String, String>,
}

impl Monitored {
    /// The Sentinel considers the master down (subjectively or objectively).
    pub fn is_down(&self) -> bool {
        self.flags.iter().any(|f| f == "s_down" || f == "o_down")
    }
}

/// `CLUSTER INFO`, the fields that matter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterState {
    /// `ok` or `fail`.
    pub state: String,
    pub slots_assigned: u64,
    pub slots_ok: u64,
    /// Slots whose master some node cannot reach (not yet agreed to be failing).
    pub slots_pfail: u64,
    pub slots_fail: u64,
    pub known_nodes: u64,
    /// Masters serving at least one slot.
    pub size: u64,
}

impl ClusterState {
    pub fn is_ok(&self) -> bool {
        self.state == "ok"
    }

    pub fn parse(text: &str) -> ClusterState {
        let fields = parse_info(text);
        let number = |name: &str| fields.get(name).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
        ClusterState {
            state: fields.get("cluster_state").map(|s| s.trim().to_string()).unwrap_or_default(),
            slots_assigned: number("cluster_slots_assigned"),
            slots_ok: number("cluster_slots_ok"),
            slots_pfail: number("cluster_slots_pfail"),
            slots_fail: number("cluster_slots_fail"),
            known_nodes: number("cluster_known_nodes"),
            size: number("cluster_size"),
        }
    }
}

pub(super) fn one(replies: Vec<Result<Value, String>>, what: &str) -> Result<Value, Failure> {
    match replies.into_iter().next() {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(refused(what, &e)),
        None => Err(Failure::new(format!("no reply to {what}"))),
    }
}

pub(super) fn refused(what: &str, words: &str) -> Failure {
    Failure::new(format!("{what} refused: {words}"))
        .with_hint("the REDIS_URL user may lack the permission (ACL): allow it, or judge the topology by hand")
}

pub(super) fn text(v: &Value, what: &str) -> Result<String, Failure> {
    match v {
        Value::BulkString(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => Ok(s.clone()),
        Value::Okay => Ok("OK".to_string()),
        other => Err(Failure::new(format!("unexpected reply to {what}: {other:?}"))),
    }
}

/// The names in INFO's sentinel section, in its order.
pub(super) fn sentinel_names(info: &HashMap<String, String>) -> Vec<String> {
    let mut entries: Vec<(u32, String)> = info
        .iter()
        .filter_map(|(k, v)| {
            let index = k.strip_prefix("master")?.parse::<u32>().ok()?;
            let name = v.split(',').find_map(|kv| kv.strip_prefix("name="))?;
            Some((index, name.to_string()))
        })
        .collect();
    entries.sort();
    entries.into_iter().map(|(_, name)| name).collect()
}

/// `SENTINEL MASTERS`: one flat field/value array per master (RESP2), or a map (RESP3).
pub(super) fn monitored(reply: &Value) -> Vec<Monitored> {
    let Value::Array(masters) = reply else { return Vec::new() };
    masters
        .iter()
        .map(|master| {
            let pairs: Vec<(String, String)> = match master {
                Value::Array(flat) => {
                    flat.chunks(2).filter_map(|kv| Some((scalar(kv.first()?)?, scalar(kv.get(1)?)?))).collect()
                }
                Value::Map(map) => map.iter().filter_map(|(k, v)| Some((scalar(k)?, scalar(v)?))).collect(),
                _ => Vec::new(),
            };
            let fields: HashMap<String, String> = pairs.into_iter().collect();
            let number = |name: &str| fields.get(name).and_then(|v| v.parse::<u64>().ok());
            let master = match (fields.get("ip"), fields.get("port")) {
                (Some(ip), Some(port)) => Some(match port.parse::<u16>() {
                    Ok(port) => crate::probe::net::endpoint(ip, port),
                    Err(_) => format!("{ip}:{port}"),
                }),
                _ => None,
            };
            Monitored {
                name: fields.get("name").cloned().unwrap_or_default(),
                master,
                flags: fields.get("flags").map(|f| f.split(',').map(str::to_string).collect()).unwrap_or_default(),
                quorum: number("quorum"),
                replicas: number("num-slaves"),
                other_sentinels: number("num-other-sentinels"),
                ckquorum: Err("not checked".to_string()),
            }
        })
        .collect()
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn modes_from_info() {
        let info = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(Mode::of(&info(&[("redis_mode", "sentinel")])), Mode::Sentinel);
        assert_eq!(Mode::of(&info(&[("redis_mode", "cluster")])), Mode::Cluster);
        assert_eq!(Mode::of(&info(&[("cluster_enabled", "1")])), Mode::Cluster);
        assert_eq!(Mode::of(&info(&[("redis_mode", "standalone"), ("cluster_enabled", "0")])), Mode::Standalone);
        let names = info(&[
            ("master1", "name=other,status=sdown,address=127.0.0.1:17003,slaves=0,sentinels=1"),
            ("master0", "name=mymaster,status=ok,address=127.0.0.1:17001,slaves=0,sentinels=1"),
            ("master_link_status", "up"),
        ]);
        assert_eq!(sentinel_names(&names), ["mymaster", "other"]);
    }

    #[test]
    fn sentinel_masters_in_resp2_and_resp3() {
        let fields = [
            ("name", "mymaster"),
            ("ip", "10.0.0.5"),
            ("port", "6379"),
            ("flags", "s_down,master"),
            ("quorum", "2"),
            ("num-slaves", "1"),
        ];
        let flat = Value::Array(fields.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]).collect());
        let map = Value::Map(fields.iter().map(|(k, v)| (bulk(k), bulk(v))).collect());
        for master in [flat, map] {
            let m = monitored(&Value::Array(vec![master]));
            assert_eq!(m.len(), 1);
            assert_eq!((m[0].name.as_str(), m[0].master.as_deref()), ("mymaster", Some("10.0.0.5:6379")));
            assert_eq!((m[0].quorum, m[0].replicas, m[0].other_sentinels), (Some(2), Some(1), None));
            assert!(m[0].is_down());
        }
    }

    #[test]
    fn cluster_info_parses() {
        let c = ClusterState::parse(
            "cluster_state:fail\r\ncluster_slots_assigned:10923\r\ncluster_slots_ok:10923\r\n\
             cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:3\r\ncluster_size:2\r\n",
        );
        assert!(!c.is_ok());
        assert_eq!((c.slots_assigned, c.known_nodes, c.size), (10923, 3, 2));
    }
}
