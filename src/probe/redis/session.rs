//! An open Redis connection, what the server said about itself (INFO) and how
//! fast it answered (PING); checks send their own commands through [`RedisSession::round`].

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{RedisError, Value};

use super::failure::{command_failure, is_transport, server_words, transport_failure};
use super::info::parse_info;
use super::target::RedisTarget;
use super::topology::{ClusterState, Mode, Topology, monitored, one, refused, sentinel_names, text};
use crate::probe::{Failure, activity};

/// A live connection and what the server said about itself.
pub struct RedisSession {
    pub conn: MultiplexedConnection,
    pub info: RedisInfo,
    /// Parsed `INFO all`: field → value, sections flattened. Fetched in the same
    /// pipelined round as the PINGs, so it is as fresh as the run: checks judge
    /// from it instead of sending more commands.
    pub info_fields: HashMap<String, String>,
    /// Where we connected, for messages.
    target: RedisTarget,
    deadline: Duration,
    /// Fetched by the first check that asks (see [`RedisSession::topology`]).
    topology: tokio::sync::OnceCell<Result<Topology, Failure>>,
}

/// One command's answer in a [`RedisSession::round`]: the value, or the server's
/// error in its own words (`READONLY You can't write against a read only replica.`).
pub type Reply = Result<Value, String>;

impl RedisSession {
    /// `host:port` of the server.
    pub fn addr(&self) -> String {
        self.target.addr()
    }

    /// The ACL user REDIS_URL logs in as (`default` when it names none).
    pub fn username(&self) -> &str {
        self.target.username.as_deref().unwrap_or("default")
    }

    /// One field of the connect-time `INFO all`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.info_fields.get(name).map(String::as_str)
    }

    /// Standalone, Sentinel or Cluster node, from the connect-time INFO.
    pub fn mode(&self) -> Mode {
        Mode::of(&self.info_fields)
    }

    /// What the server is part of (a Sentinel's masters, a Cluster's state): one
    /// round of read-only commands, sent once per run whoever asks first.
    pub async fn topology(&self) -> Result<&Topology, Failure> {
        let fetched = self.topology.get_or_init(|| self.fetch_topology());
        fetched.await.as_ref().map_err(Clone::clone)
    }

    /// Sends the commands the server's mode calls for and reads their replies.
    async fn fetch_topology(&self) -> Result<Topology, Failure> {
        match Mode::of(&self.info_fields) {
            Mode::Standalone => Ok(Topology::Standalone),
            Mode::Cluster => {
                let mut pipe = redis::pipe();
                pipe.cmd("CLUSTER").arg("INFO");
                let reply = one(self.round(&pipe, "CLUSTER INFO").await?, "CLUSTER INFO")?;
                Ok(Topology::Cluster(ClusterState::parse(&text(&reply, "CLUSTER INFO")?)))
            }
            Mode::Sentinel => {
                // INFO names the monitored masters (`master0:name=mymaster,…`), so the
                // quorum checks go out with SENTINEL MASTERS, in the same round.
                let names = sentinel_names(&self.info_fields);
                let mut pipe = redis::pipe();
                pipe.cmd("SENTINEL").arg("MASTERS");
                for name in &names {
                    pipe.cmd("SENTINEL").arg("CKQUORUM").arg(name);
                }
                let mut replies = self.round(&pipe, "SENTINEL MASTERS").await?.into_iter();
                let masters = replies
                    .next()
                    .ok_or_else(|| Failure::new("no reply to SENTINEL MASTERS"))?
                    .map_err(|e| refused("SENTINEL MASTERS", &e))?;
                let mut quorum: HashMap<&str, Result<String, String>> = HashMap::new();
                for (name, reply) in names.iter().zip(replies) {
                    quorum.insert(name, reply.and_then(|v| text(&v, "CKQUORUM").map_err(|f| f.message)));
                }
                let mut monitored = monitored(&masters);
                for m in &mut monitored {
                    m.ckquorum = quorum.remove(m.name.as_str()).unwrap_or_else(|| Err("not checked".to_string()));
                }
                Ok(Topology::Sentinel(monitored))
            }
        }
    }

    /// A fresh `INFO <section>` (read-only), parsed.
    pub async fn info_section(&self, section: &str) -> Result<HashMap<String, String>, Failure> {
        let mut cmd = redis::cmd("INFO");
        cmd.arg(section);
        let reply =
            send(self.conn.clone(), cmd).await.map_err(|e| command_failure(&self.target, &e, "INFO", self.deadline))?;
        Ok(parse_info(&info_text(&self.target, reply)?))
    }

    /// Sends `pipe` as one write and waits for every reply. A server error is that
    /// command's `Err`; a broken or silent connection is the round's `Failure`.
    /// Every command is on the wire before any reply is awaited, so a later one
    /// (a clean-up `DEL`) runs whatever an earlier one answers.
    pub async fn round(&self, pipe: &redis::Pipeline, what: &'static str) -> Result<Vec<Reply>, Failure> {
        let count = pipe.cmd_iter().count();
        let mut conn = self.conn.clone();
        activity::waiting("Redis", what);
        let sent = conn.send_packed_commands(pipe, 0, count).await;
        activity::idle();
        let values = sent.map_err(|e| {
            if is_transport(&e) {
                transport_failure(&self.target, &e, what, self.deadline)
            } else {
                Failure::new(format!("{what} failed: {}", server_words(&e)))
            }
        })?;
        Ok(values
            .into_iter()
            .map(|v| match v {
                Value::ServerError(e) => Err(server_words(&RedisError::from(e))),
                v => Ok(v),
            })
            .collect())
    }
}

impl fmt::Debug for RedisSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSession")
            .field("info", &self.info)
            .field("info_fields", &self.info_fields.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedisInfo {
    pub version: String,
    /// `master` or `slave`, as INFO spells it.
    pub role: String,
    pub tls: bool,
    /// `standalone`, `cluster` or `sentinel`.
    pub mode: String,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    /// The server's chain and the REDIS_CA_CERT CA, as the handshake saw them.
    pub certificates: crate::probe::certs::Certificates,
}

impl RedisSession {
    pub(super) fn new(
        conn: MultiplexedConnection,
        info: RedisInfo,
        info_fields: HashMap<String, String>,
        target: RedisTarget,
        deadline: Duration,
    ) -> RedisSession {
        RedisSession { conn, info, info_fields, target, deadline, topology: tokio::sync::OnceCell::new() }
    }
}

pub(super) fn info_text(target: &RedisTarget, reply: Value) -> Result<String, Failure> {
    match reply {
        Value::BulkString(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => Ok(text),
        other => Err(Failure::new(format!("INFO from {} returned an unexpected reply: {other:?}", target.addr()))),
    }
}

/// Sends one command; a server error reply becomes `Err` either way the crate hands it over.
pub(super) async fn send(mut conn: MultiplexedConnection, cmd: redis::Cmd) -> Result<Value, RedisError> {
    match conn.send_packed_command(&cmd).await? {
        Value::ServerError(e) => Err(e.into()),
        v => Ok(v),
    }
}

/// Nearest-rank percentile of `samples` (milliseconds); 0 when empty.
pub(super) fn percentile(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&samples, 0.50), 3.0);
        assert_eq!(percentile(&samples, 0.99), 5.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
