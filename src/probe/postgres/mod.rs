//! The PostgreSQL probe: where to connect ([`target`]), how ([`connect`]), the
//! open session ([`session`]) and the words for what failed ([`failure`]).

pub mod conn_string;
pub mod connect;
pub mod conninfo;
pub mod failure;
pub mod lost;
pub mod pgbouncer;
pub mod pooler;
pub mod psql;
pub mod refusal;
pub mod session;
pub mod ssl;
pub mod target;

pub use connect::connect;
pub use connect::{Connection, PgInfo};
pub use failure::{describe, sqlstate};
pub use lost::{Lost, QueryError, Reason};
pub use session::{APPLICATION_NAME, Param, PgSession, PgWriter, unit_begin_sql};
pub use ssl::{ApiClient, ClientKind, PoolSsl, SslMode};
pub use target::{PgSource, PgTarget};
