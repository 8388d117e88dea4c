//! Connections to the services under diagnosis, in layers. The ground floor:
//! [`failure`] (what a probe answers when it cannot do its work), [`activity`]
//! (what a check is waiting on, for an interruption's words), [`net`] (TCP under the caller's deadline, addresses, phases),
//! [`tls`] (one verifier, one PEM loader, one wording of certificate problems),
//! [`certs`] (what a connection saw of certificates: lifetimes, issuers)
//! and [`url`] (one percent-decoder, passwords that cannot be printed), then one
//! folder per service: `target` (parsing its configuration, once), `connect`,
//! `session` and `failure`; on top, [`shared`]: the run's connections, one per
//! service, opened by the first check that asks.

pub mod activity;
pub mod api;
pub mod certs;
pub mod failure;
pub mod net;
pub mod postgres;
pub mod redis;
pub mod shared;
pub mod tls;
pub mod url;

pub use failure::{Cause, EnvLookup, Failure, human};
