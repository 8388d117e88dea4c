//! Check kinds: one file per kind, one registry ([`KINDS`]).
//!
//! A kind never imports another kind: what several share lives in [`shared`].
//! Kind names, the `list` output and the docs all derive from [`KINDS`].

use crate::check::KindDef;

pub mod shared;

mod api_reachable;
mod api_session_create;
mod cert_expiry;
mod consistency_cached_sessions;
mod env_database_url;
mod env_node_env;
mod env_redis_url;
mod env_required;
mod env_secrets;
mod pg_active_users;
mod pg_connect;
mod pg_connections;
mod pg_extensions;
mod pg_locks;
mod pg_migrations;
mod pg_orphan_sessions;
mod pg_privileges;
mod pg_query;
mod pg_replication;
mod pg_schema;
mod pg_session_insert;
mod pg_settings;
mod pg_tls;
mod pg_user;
mod pg_writable;
mod redis_connect;
mod redis_info;
mod redis_memory;
mod redis_permissions;
mod redis_persistence;
mod redis_roundtrip;
mod redis_topology;
mod redis_writable;

/// Every kind this binary implements, in the order `list` shows them: the
/// environment, PostgreSQL, the topology of both services, Redis, the
/// incident's own (the session route and the data behind it), then the API.
#[rustfmt::skip]
pub static KINDS: &[&KindDef] = &[
    &env_required::KIND,
    &env_database_url::KIND,
    &env_redis_url::KIND,
    &env_node_env::KIND,
    &env_secrets::KIND,

    &pg_connect::KIND,
    &pg_tls::KIND,
    &pg_writable::KIND,
    &pg_settings::KIND,
    &pg_schema::KIND,
    &pg_extensions::KIND,
    &pg_active_users::KIND,
    &pg_privileges::KIND,
    &pg_connections::KIND,
    &pg_locks::KIND,
    &pg_migrations::KIND,
    &pg_query::KIND,

    &pg_replication::KIND,
    &cert_expiry::POSTGRES,
    &cert_expiry::REDIS,
    &redis_topology::KIND,

    &redis_connect::KIND,
    &redis_writable::KIND,
    &redis_permissions::KIND,
    &redis_memory::KIND,
    &redis_persistence::KIND,
    &redis_roundtrip::KIND,
    &redis_info::KIND,

    &pg_session_insert::KIND,
    &pg_user::KIND,
    &pg_orphan_sessions::KIND,
    &consistency_cached_sessions::KIND,

    &api_reachable::KIND,
    &api_session_create::KIND,
];

pub fn find(name: &str) -> Option<&'static KindDef> {
    KINDS.iter().copied().find(|k| k.name == name)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::KINDS;

    /// Kind names are a contract (manifests name them): renames show up here.
    #[test]
    fn every_kind_in_the_registry() {
        let rows: Vec<String> = KINDS.iter().map(|k| format!("{:<28} {}", k.name, k.title)).collect();
        insta::assert_snapshot!(rows.join("\n"));
    }

    #[test]
    fn kind_names_are_unique_and_dotted() {
        let mut seen = HashSet::new();
        for kind in KINDS {
            assert!(seen.insert(kind.name), "{} is registered twice", kind.name);
            assert!(kind.name.contains('.') && !kind.name.contains(char::is_whitespace), "{}", kind.name);
            assert!(!kind.description.is_empty(), "{} has no description", kind.name);
        }
    }
}
