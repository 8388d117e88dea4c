//! Every way a PostgreSQL connection can fail, in words an operator can act on:
//! the layer (TCP, TLS, startup/authentication, session setup) and the SQLSTATE.

use std::io;
use std::time::Duration;

use tokio_postgres::error::{DbError, SqlState};

use super::psql::{self, NodeFailure};
use super::ssl::ClientKind;
use super::target::{PgSource, PgTarget};
use crate::probe::net::{self, Phase};
use crate::probe::{Failure, tls};

/// Describes a tokio-postgres error with its layer and SQLSTATE, e.g.
/// `password authentication failed for user "app" (28P01)` or
/// `error connecting to server: Connection refused (os error 111)`.
/// (tokio-postgres's own Display is just "db error".)
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut text = String::new();
    for cause in net::causes(e) {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// The SQLSTATE of a server error.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<&SqlState> {
    e.as_db_error().map(DbError::code)
}

pub(super) fn socket_failure(target: &PgTarget, e: &io::Error) -> Failure {
    let at = target.endpoint();
    let check = target.var_for("host");
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Failure::new(format!("connection refused at {at}"))
            .with_hint(format!("is PostgreSQL running and listening on {at}? check {check}")),
        io::ErrorKind::NotFound if target.is_unix_socket() => Failure::new(format!("no PostgreSQL socket at {at}"))
            .with_hint(format!("is PostgreSQL running with this socket directory and port? check {check}")),
        io::ErrorKind::PermissionDenied => Failure::new(format!("permission denied at {at}"))
            .with_hint("the socket's directory or file does not let this user in"),
        _ => Failure::new(format!("cannot connect to {at}: {e}"))
            .with_hint(format!("check {check} and that the network path to the server is open")),
    }
}

pub(super) fn resolve_failure(target: &PgTarget, e: &io::Error) -> Failure {
    Failure::new(format!("cannot resolve host \"{}\": {e}", target.host))
        .with_hint(format!("check {}", target.var_for("host")))
}

pub(super) fn timeout_failure(target: &PgTarget, deadline: Duration, phase: Phase) -> Failure {
    let after = crate::probe::human(deadline);
    let at = target.endpoint();
    match phase {
        Phase::Resolve | Phase::Connect => Failure::new(format!("timed out after {after} connecting to {at}"))
            .with_hint(format!(
                "nothing answered: a firewall may be dropping packets; check {} and network access",
                target.var_for("host")
            )),
        Phase::TlsHandshake => Failure::new(format!("timed out after {after} during the TLS handshake with {at}"))
            .with_hint("the server accepted TLS but stalled; check its load and TLS configuration"),
        Phase::Reply(_) => Failure::new(format!("timed out after {after} waiting for the server's reply to startup"))
            .with_hint(format!(
                "something at {at} accepts connections but does not answer like PostgreSQL \
                 (overloaded server, proxy, or the wrong port)"
            )),
    }
}

/// A failed startup (TLS, authentication, database selection).
/// The first statement on a fresh connection failed (behind a pooler: the first
/// moment PostgreSQL itself is reached).
pub(super) fn first_query_failure(target: &PgTarget, e: &tokio_postgres::Error) -> Failure {
    if let Some(failure) = e.as_db_error().and_then(|db| pooler_failure(target, db)) {
        return failure;
    }
    Failure::new(format!("logged in, but the first query failed: {}", describe(e)))
        .with_hint("the server (or a pooler in front of it) accepted the login but cannot run a statement")
}

pub(super) fn connect_failure(target: &PgTarget, e: &tokio_postgres::Error) -> Failure {
    let (failure, kind) = classify(target, e);
    with_views(target, failure, kind)
}

/// Says whose view a failure is and, where psql would decide otherwise, says so
/// in the message and the details.
fn with_views(target: &PgTarget, failure: Failure, kind: NodeFailure) -> Failure {
    let libpq = psql::libpq_where_node_fails(target, kind);
    let mut failure = failure
        .detail("client", target.client.as_str())
        .detail("tls_mode", target.tls.label)
        .detail("tls_origin", target.tls.origin.clone())
        .detail("sslmode", target.tls.sslmode.clone())
        .detail("libpq", target.libpq.describe())
        .detail("libpq_verdict", libpq.clone().unwrap_or_else(|| "the same".to_string()));
    if let Some(note) = libpq {
        failure.message = format!("{} — {note}", failure.message);
    }
    failure
}

fn classify(target: &PgTarget, e: &tokio_postgres::Error) -> (Failure, NodeFailure) {
    if let Some(db) = e.as_db_error() {
        return db_failure(target, db);
    }
    if let Some(tls) = net::find_cause::<rustls::Error>(e) {
        return tls_failure(target, tls);
    }
    // tokio-postgres reports these as plain text; there is no typed form to match.
    let text = describe(e);
    if text.contains("server does not support TLS") {
        return (no_tls_on_server(target), NodeFailure::NoTlsOnServer);
    }
    let failure = if text.contains("password missing") {
        Failure::new("the server asks for a password but none is configured").with_hint(format!(
            "set {} (node-postgres would also try ~/.pgpass or PGPASSFILE of the API's user, which this \
                 tool does not read)",
            target.var_for("password")
        ))
    } else if e.is_closed() || net::causes(e).any(net::is_disconnect) {
        Failure::new(format!("the server at {} closed the connection during startup", target.endpoint()))
            .with_hint("is this port really PostgreSQL? the server's log may say why it hung up")
    } else if text.starts_with("unexpected message")
        || text.starts_with("error parsing response")
        || text.contains("bytes remaining on stream")
    {
        // tokio-postgres's words for bytes that are not PostgreSQL messages.
        Failure::new(format!("the server at {} does not speak the PostgreSQL protocol ({text})", target.endpoint()))
            .with_hint(format!("check {}: is this the right port?", target.var_for("host")))
    } else {
        Failure::new(format!("startup failed: {text}"))
    };
    (failure, NodeFailure::Other)
}

/// `the API (node-postgres) cannot connect: ` for the driver's own TLS decisions.
fn api_cannot(target: &PgTarget) -> &'static str {
    match target.client {
        ClientKind::NodePostgres => "the API (node-postgres) cannot connect: ",
        ClientKind::Libpq => "",
    }
}

/// TLS asked for, and the server answered that it has none.
fn no_tls_on_server(target: &PgTarget) -> Failure {
    let (origin, label) = (&target.tls.origin, target.tls.label);
    match target.client {
        ClientKind::NodePostgres if target.is_unix_socket() => Failure::new(format!(
            "{}{origin} asks for TLS over a Unix socket, and the server does not offer it there \
             (The server does not support SSL connections)",
            api_cannot(target)
        ))
        .with_hint("drop the TLS setting for a socket connection: TLS over a local socket protects nothing"),
        ClientKind::NodePostgres => Failure::new(format!(
            "{}{origin} asks for TLS ({label}) and the server does not support it \
             (The server does not support SSL connections: node-postgres never falls back to plain text)",
            api_cannot(target)
        ))
        .with_hint(
            "enable ssl on the server (ssl = on, with a certificate); or, on a trusted network only, \
             drop the TLS setting (sslmode=disable)",
        ),
        ClientKind::Libpq => Failure::new(format!("server does not support TLS but sslmode={label}")).with_hint(
            "enable ssl on the server, or (on a trusted network only) use sslmode=prefer in DATABASE_URL or PGSSLMODE",
        ),
    }
}

/// What PgBouncer itself says (it answers with SQLSTATE 08P01, which PostgreSQL
/// uses only for protocol violations), in words for the operator; `None` when the
/// error is not one of PgBouncer's.
pub(super) fn pooler_failure(target: &PgTarget, db: &DbError) -> Option<Failure> {
    if *db.code() != SqlState::PROTOCOL_VIOLATION {
        return None;
    }
    let message = db.message();
    let said = format!("the pooler (PgBouncer) says: {message} (08P01)");
    // PgBouncer's own texts are its only API; these are the ones of 1.17+.
    let hint = if message.contains("SASL authentication failed") || message.contains("password authentication failed") {
        format!(
            "check {}; PgBouncer checks it against its auth_file or auth_query, which may differ from PostgreSQL's",
            target.var_for("password")
        )
    } else if message.starts_with("no such database") {
        format!(
            "add the database to PgBouncer's [databases] section (or a `*` fallback), or fix {}",
            target.var_for("database name")
        )
    } else if message.contains("does not exist") {
        format!("create the database or fix the database name ({})", target.var_for("database name"))
    } else if message.starts_with("server login has been failing") || message.contains("server down") {
        "PgBouncer cannot log in to PostgreSQL: is the server up, and do PgBouncer's credentials for it work? \
         (PgBouncer's log says why)"
            .to_string()
    } else if message.starts_with("query_wait_timeout") || message.starts_with("no more connections allowed") {
        "every server connection of the pool is busy: see SHOW POOLS (cl_waiting, maxwait) on PgBouncer's admin \
         console, raise default_pool_size/max_client_conn, or find the long transactions"
            .to_string()
    } else if message.starts_with("unsupported startup parameter") {
        "PgBouncer refuses this startup parameter: list it in ignore_startup_parameters, or drop it from the URL"
            .to_string()
    } else {
        return None;
    };
    Some(Failure::new(said).with_hint(hint))
}

fn db_failure(target: &PgTarget, db: &DbError) -> (Failure, NodeFailure) {
    if let Some(failure) = pooler_failure(target, db) {
        return (failure, NodeFailure::Other);
    }
    let code = db.code();
    let message = db.message();
    let base = format!("{message} ({})", code.code());
    // The server's texts are the only way to tell these 28000 cases apart.
    if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
        if message.contains("no encryption") {
            return (server_requires_tls(target, &base), NodeFailure::ServerRequiresTls);
        }
        let failure = if message.contains("client certificate") {
            Failure::new(format!("the server requires a client certificate: {base}")).with_hint(format!(
                "give the API one: sslcert and sslkey in {} (files it can read; node-postgres sends them when both \
                 are set)",
                target.var()
            ))
        } else if message.contains("role") && message.contains("does not exist") {
            Failure::new(base).with_hint(format!("create the role or fix {}", target.var_for("user")))
        } else {
            Failure::new(base).with_hint(
                "the server's pg_hba.conf lets no rule match this host, user and database: \
                 add one, or connect as an allowed user",
            )
        };
        return (failure, NodeFailure::Other);
    }
    let hint = if *code == SqlState::INVALID_PASSWORD {
        format!("check {}", target.var_for("password"))
    } else if *code == SqlState::INVALID_CATALOG_NAME {
        format!("create the database or fix the database name ({})", target.var_for("database name"))
    } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        format!("GRANT CONNECT ON DATABASE \"{}\" TO \"{}\"", target.dbname, target.user)
    } else if *code == SqlState::TOO_MANY_CONNECTIONS {
        "the server is out of connection slots: find who holds them (pg_stat_activity), or raise max_connections"
            .to_string()
    } else if *code == SqlState::CANNOT_CONNECT_NOW {
        "the server is starting up, shutting down or in recovery: retry shortly".to_string()
    } else {
        return (Failure::new(base), NodeFailure::Other);
    };
    (Failure::new(base).with_hint(hint), NodeFailure::Other)
}

/// The server's pg_hba.conf rejects a connection without TLS.
fn server_requires_tls(target: &PgTarget, base: &str) -> Failure {
    match target.client {
        ClientKind::NodePostgres => {
            let fix = if target.source == PgSource::DbVars {
                "set PGSSLMODE=verify-full (the certificate must be trusted) or PGSSLMODE=no-verify in the API's \
                 environment, or pass ssl to new Pool(...)"
                    .to_string()
            } else {
                format!(
                    "add sslmode=verify-full (the certificate must be trusted) or sslmode=no-verify to {}, \
                     or pass ssl to new Pool(...)",
                    target.var()
                )
            };
            Failure::new(format!(
                "the server requires TLS: {base}; the API (node-postgres) connects in plain text: {}",
                target.tls.origin
            ))
            .with_hint(fix)
        }
        ClientKind::Libpq => Failure::new(format!("server requires TLS: {base}"))
            .with_hint("set sslmode=require in DATABASE_URL or PGSSLMODE"),
    }
}

fn tls_failure(target: &PgTarget, e: &rustls::Error) -> (Failure, NodeFailure) {
    let problem = tls::Problem::of(e);
    let described = problem.describe(&target.host);
    if !problem.is_untrusted() {
        let hint = problem.generic_hint().unwrap_or("check the server's TLS configuration");
        return (Failure::new(format!("TLS handshake failed: {described}")).with_hint(hint), NodeFailure::Other);
    }
    let kind = match problem {
        tls::Problem::NameMismatch { .. } => NodeFailure::NameMismatch,
        _ => NodeFailure::Untrusted,
    };
    let ca = target.tls_setup().and_then(|s| s.trust.file.as_ref());
    let message = match target.client {
        ClientKind::NodePostgres => format!(
            "{}TLS {described}; {} makes node-postgres verify it ({})",
            api_cannot(target),
            target.tls.origin,
            target.tls.label
        ),
        ClientKind::Libpq => format!("TLS: {described}"),
    };
    let hint = match (&problem, target.client) {
        (tls::Problem::SelfSigned, _) if ca.is_some() => format!(
            "the server's certificate is self-signed and not in {} ({}): point it at that certificate itself",
            ca.map(|f| f.path.display().to_string()).unwrap_or_default(),
            ca.map(|f| f.origin).unwrap_or_default()
        ),
        (tls::Problem::SelfSigned, ClientKind::NodePostgres) => format!(
            "trust it: add sslrootcert=/path/to/server.crt (the certificate itself) to {} (or set \
             NODE_EXTRA_CA_CERTS to it in the API's environment); or encrypt without verifying: sslmode=no-verify",
            if target.source == PgSource::DbVars { "DATABASE_URL" } else { target.var() }
        ),
        (tls::Problem::SelfSigned, ClientKind::Libpq) => {
            "the server's certificate is self-signed: set sslrootcert (in DATABASE_URL or PGSSLROOTCERT) to the \
             certificate itself, or use sslmode=require"
                .to_string()
        }
        (tls::Problem::UnknownIssuer, _) if ca.is_some() => format!(
            "the server's certificate does not chain to {} ({}): point it at the CA that signed the certificate",
            ca.map(|f| f.path.display().to_string()).unwrap_or_default(),
            ca.map(|f| f.origin).unwrap_or_default()
        ),
        (tls::Problem::UnknownIssuer, ClientKind::NodePostgres) => format!(
            "trust the CA: add sslrootcert=/path/to/ca.pem to {} (or set NODE_EXTRA_CA_CERTS=/path/to/ca.pem in the \
             API's environment); or encrypt without verifying: sslmode=no-verify",
            if target.source == PgSource::DbVars { "DATABASE_URL" } else { target.var() }
        ),
        (tls::Problem::UnknownIssuer, ClientKind::Libpq) => "the server's certificate is not from a public CA: set \
             sslrootcert (in DATABASE_URL or PGSSLROOTCERT) to its CA certificate"
            .to_string(),
        (tls::Problem::NameMismatch { .. }, ClientKind::NodePostgres) => "connect by a name the certificate lists; or \
             encrypt without checking: sslmode=no-verify (node-postgres's verify-ca checks the name too)"
            .to_string(),
        (tls::Problem::NameMismatch { .. }, ClientKind::Libpq) => {
            "connect with a host name the certificate lists, or use sslmode=verify-ca".to_string()
        }
        (other, _) => other.generic_hint().unwrap_or("check the server's certificate").to_string(),
    };
    (Failure::new(message).with_hint(hint), kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_name_the_phase() {
        let t = PgTarget::from_env(&crate::probe::failure::lookup(&[("DATABASE_URL", "postgresql://u@10.0.0.5/db")]))
            .expect("parses");
        let f = timeout_failure(&t, Duration::from_secs(5), Phase::Reply("startup"));
        assert_eq!(f.message, "timed out after 5s waiting for the server's reply to startup");
        let f = timeout_failure(&t, Duration::from_millis(500), Phase::Connect);
        assert_eq!(f.message, "timed out after 500ms connecting to 10.0.0.5:5432");
        // What is left of a --wait budget reads to the millisecond.
        let f = timeout_failure(&t, Duration::from_nanos(2_849_999_551), Phase::Connect);
        assert_eq!(f.message, "timed out after 2s 849ms connecting to 10.0.0.5:5432");
    }
}
