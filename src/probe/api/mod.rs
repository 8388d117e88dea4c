//! The MockMate API itself as a service under diagnosis: where it is
//! ([`target`], parsed once), one HTTP/1 exchange with every phase — DNS, TCP,
//! TLS, request and answer — under the caller's deadline ([`http`]), and the
//! bearer token the API's JWT middleware accepts ([`jwt`]).
//!
//! No HTTP client crate: hyper's HTTP/1 connection over our own TCP
//! ([`super::net`]) and TLS ([`super::tls`]), so that a hang names its phase and
//! the certificate is judged by the probe's one verifier, with the roots Node
//! ships (and `NODE_EXTRA_CA_CERTS`, as Node reads it).

pub mod http;
pub mod jwt;
pub mod target;

pub use http::{Answer, Exchange, NoAnswer, NodeRoots, send};
pub use target::{ApiSource, ApiTarget};
