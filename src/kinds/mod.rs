//! Check kinds: one file per kind, one registry ([`KINDS`]).
//!
//! A kind never imports another kind: what several share lives in
//! `env_common`, `pg_common`, `redis_common` and `expect`. Kind names, the `list` output and
//! the docs all derive from [`KINDS`].

use crate::check::KindDef;

pub mod env_common;
pub mod env_database_url;
pub mod env_node_env;
pub mod env_redis_url;
pub mod env_required;
pub mod env_secrets;
pub mod expect;
pub mod pg_common;
pub mod pg_role_settings;
pub mod pg_visibility;
pub mod redis_common;
pub mod tls_common;
// postgres kinds — one `pub mod` per kind, here
pub mod pg_active_users;
pub mod pg_cert_expiry;
pub mod pg_connect;
pub mod pg_connections;
pub mod pg_extensions;
pub mod pg_locks;
pub mod pg_migrations;
pub mod pg_privileges;
pub mod pg_query;
pub mod pg_replication;
pub mod pg_schema;
pub mod pg_settings;
pub mod pg_tls;
pub mod pg_writable;
// end postgres kinds
// redis kinds — one `pub mod` per kind, here
pub mod redis_cert_expiry;
pub mod redis_connect;
pub mod redis_info;
pub mod redis_memory;
pub mod redis_permissions;
pub mod redis_persistence;
pub mod redis_roundtrip;
pub mod redis_topology;
pub mod redis_writable;
// end redis kinds
// incident kinds — one `pub mod` per kind, here
pub mod consistency_cached_sessions;
pub mod pg_orphan_sessions;
pub mod pg_session_insert;
pub mod pg_user;
// end incident kinds

/// Every kind this binary implements.
#[rustfmt::skip]
pub static KINDS: &[&KindDef] = &[
    &env_required::KIND,
    &env_database_url::KIND,
    &env_redis_url::KIND,
    &env_node_env::KIND,
    &env_secrets::KIND,
    // postgres kinds (issue 3)
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
    // end postgres kinds
    // topology kinds (issue 16)
    &pg_replication::KIND,
    &pg_cert_expiry::KIND,
    &redis_cert_expiry::KIND,
    &redis_topology::KIND,
    // end topology kinds
    // redis kinds (issue 4)
    &redis_connect::KIND,
    &redis_writable::KIND,
    &redis_permissions::KIND,
    &redis_memory::KIND,
    &redis_persistence::KIND,
    &redis_roundtrip::KIND,
    &redis_info::KIND,
    // end redis kinds
    // incident kinds (issue 5)
    &pg_session_insert::KIND,
    &pg_user::KIND,
    &pg_orphan_sessions::KIND,
    &consistency_cached_sessions::KIND,
    // end incident kinds
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
