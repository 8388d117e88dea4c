//! The Redis probe: where to connect ([`target`]), how ([`connect`]), the open
//! session ([`session`]), what the server is part of ([`topology`]) and the words
//! for what failed ([`failure`]).
//!
//! MockMate caches interview sessions in Redis, so the checks built on this
//! probe report a non-fatal failure; the probe itself only says what broke.

pub mod connect;
pub mod failure;
pub mod info;
pub mod session;
pub mod target;
pub mod topology;

pub use connect::connect;
pub use info::parse_info;
pub use session::{RedisInfo, RedisSession, Reply};
pub use target::{RedisTarget, RedisTls};
pub use topology::{ClusterState, Mode, Monitored, Topology};
