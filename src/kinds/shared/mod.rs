//! What several kinds share. Nothing here is a kind: each file is a helper one
//! service's kinds (or the user-defined ones) lean on.
//!
//! - [`api`]: where the API is and how its answers are quoted, for the API checks;
//! - [`certificates`]: judging certificate lifetimes, for the `*.cert_expiry` kinds and `api.reachable`;
//! - [`env`]: where the API's env loader reads a value otherwise than a shell or dotenvy, for the env checks;
//! - [`postgres`]: the run's session for a kind, SQL error wording, typed API error codes, reading rows;
//! - [`visibility`]: whether the API's role finds a table (absent vs invisible), for schema and privileges;
//! - [`role_settings`]: settings a role inherits (`ALTER ROLE/DATABASE … SET`), and where they are set;
//! - [`redis`]: the run's Redis session for a kind, the key prefix, stepping aside for `redis.topology`;
//! - [`lock_view`]: what the session route meets in the lock manager, for locks and the dry run;
//! - [`expect`]: the `expect = "…"` rule of user-defined checks.

pub mod api;
pub mod certificates;
pub mod env;
pub mod expect;
pub mod lock_view;
pub mod postgres;
pub mod redis;
pub mod role_settings;
pub mod visibility;
