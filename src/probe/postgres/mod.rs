//! The PostgreSQL probe: where to connect ([`target`]), how ([`connect`]), the
//! open session ([`session`]) and the words for what failed ([`failure`]).

pub mod conn_string;
pub mod connect;
pub mod failure;
pub mod pgbouncer;
pub mod pooler;
pub mod session;
pub mod ssl;
pub mod target;

pub use connect::{APPLICATION_NAME, connect};
pub use failure::{describe, sqlstate};
pub use session::{Connection, Param, PgInfo, PgSession, PgWriter, unit_begin_sql};
pub use ssl::{ApiClient, ClientKind, PoolSsl};
pub use target::{PgSource, PgTarget, SslMode};
