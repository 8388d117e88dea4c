//! Every way a PostgreSQL connection can fail, in words an operator can act on:
//! the layer (TCP, TLS, startup/authentication, session setup) and the SQLSTATE.

use std::io;
use std::time::Duration;

use tokio_postgres::error::{DbError, SqlState};

use super::psql::{self, NodeFailure};
use super::refusal::{BouncerSays, Refusal};
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

/// Where a connect stood when its deadline ran out: the phase, and whether the
/// server had already accepted the login (AuthenticationOk) while the session
/// never became ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    pub phase: Phase,
    pub logged_in: bool,
}

pub(super) fn timeout_failure(target: &PgTarget, deadline: Duration, stopped: Stopped) -> Failure {
    let after = crate::probe::human(deadline);
    let at = target.endpoint();
    match stopped.phase {
        Phase::Resolve => Failure::new(format!("timed out after {after} resolving host \"{}\"", target.host))
            .with_hint(format!(
                "this machine's DNS resolver did not answer (the nameservers in /etc/resolv.conf): check them, \
                 and the host name in {}",
                target.var_for("host")
            )),
        Phase::Connect => Failure::new(format!("timed out after {after} connecting to {at}")).with_hint(format!(
            "nothing answered: a firewall may be dropping packets; check {} and network access",
            target.var_for("host")
        )),
        Phase::TlsHandshake => Failure::new(format!("timed out after {after} during the TLS handshake with {at}"))
            .with_hint("the server accepted TLS but stalled; check its load and TLS configuration"),
        // PostgreSQL sends the session's parameters and ReadyForQuery right after
        // accepting a login; a pooler (PgBouncer) accepts it itself, then waits for
        // a connection to the database behind it.
        Phase::Reply(_) if stopped.logged_in => Failure::new(format!(
            "timed out after {after}: {at} accepted the login, but the session never became ready \
             (no ReadyForQuery): a pooler (PgBouncer) there is waiting for the database behind it"
        ))
        .with_hint(
            "the database behind the pooler is down or refuses the pooler's login: start it, or fix the pooler's \
             entry for it (PgBouncer: SHOW DATABASES and its log; it gives up after client_login_timeout)",
        ),
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
/// uses only for protocol violations), kept in its own words, with what they mean
/// for the database behind it and the fix; `None` when the error is not PgBouncer's.
pub(super) fn pooler_failure(target: &PgTarget, db: &DbError) -> Option<Failure> {
    let says = BouncerSays::of(db.code(), db.message())?;
    let message = db.message();
    let password = target.var_for("password");
    let (meaning, hint) = match says {
        BouncerSays::ServerLoginFailing => (
            "the database behind it is down or refuses PgBouncer's login: its last login to PostgreSQL failed and \
             no server connection is left"
                .to_string(),
            "check that PostgreSQL behind PgBouncer is up, and that the password PgBouncer logs in with (auth_file, \
             auth_query, or a password set in its [databases] entry) is the server's; PgBouncer's log says which \
             (\"connect failed\", or the server's own error); it retries every server_login_retry"
                .to_string(),
        ),
        BouncerSays::ServerDown => (
            "the database behind it is down: no server connection came up while the login waited \
             (client_login_timeout)"
                .to_string(),
            "start PostgreSQL behind PgBouncer (SHOW DATABASES on its console names host and port), or fix that \
             entry; PgBouncer's log says why its connects fail"
                .to_string(),
        ),
        BouncerSays::ServerRefusedLogin => {
            let fix = match Refusal::relayed(message) {
                Some(Refusal::PasswordFailed { user }) => format!(
                    "PgBouncer's password for \"{user}\" (auth_file, auth_query, or a password set in its [databases] \
                     entry) is not the one PostgreSQL has (changed, or expired: VALID UNTIL): refresh PgBouncer's \
                     auth_file from the server and RELOAD its console"
                ),
                Some(refusal) => refusal_fix(target, &refusal),
                None => "PgBouncer's log has the server's full answer".to_string(),
            };
            ("the database behind it refused PgBouncer's login, in PostgreSQL's words".to_string(), fix)
        }
        BouncerSays::ClientPasswordFailed => (
            "PgBouncer itself rejected the password: it checks it against its auth_file or auth_query, not \
             against PostgreSQL"
                .to_string(),
            format!(
                "check {password}; if that password works on PostgreSQL directly, PgBouncer's auth_file (or what its \
                 auth_query returns) is stale: refresh it and RELOAD PgBouncer's console"
            ),
        ),
        BouncerSays::NoSuchDatabase => (
            "PgBouncer has no such database in its [databases] section".to_string(),
            format!(
                "add the database to PgBouncer's [databases] section (or a `*` fallback), or fix {}",
                target.var_for("database name")
            ),
        ),
        BouncerSays::NoSuchUser => (
            "PgBouncer knows no such user (auth_file, auth_query)".to_string(),
            format!(
                "add the user to PgBouncer's auth_file (or let auth_query find it), or fix {}",
                target.var_for("user")
            ),
        ),
        BouncerSays::DatabaseMissing => (
            "the database behind it has no such database".to_string(),
            format!("create the database or fix the database name ({})", target.var_for("database name")),
        ),
        BouncerSays::MaxClientConn => (
            "PgBouncer's own client connections are all taken (max_client_conn); the database behind it may be \
             fine"
                .to_string(),
            "raise max_client_conn in pgbouncer.ini, or find who holds the client connections (SHOW CLIENTS on its \
             console)"
                .to_string(),
        ),
        BouncerSays::QueryWaitTimeout => (
            "no server connection of the pool became free (every one busy, or the database behind it accepts no \
             new one) within query_wait_timeout"
                .to_string(),
            "see SHOW POOLS (cl_waiting, maxwait) on PgBouncer's console: raise default_pool_size, end the long \
             transactions holding the pool (postgres.locks), or bring the database back"
                .to_string(),
        ),
        BouncerSays::UnsupportedStartupParameter => (
            "PgBouncer refuses a startup parameter the driver sends".to_string(),
            "list it in PgBouncer's ignore_startup_parameters, or drop it from the URL".to_string(),
        ),
    };
    Some(
        Failure::new(format!("PgBouncer says: {message} (08P01) → {meaning}"))
            .with_hint(hint)
            .detail("pgbouncer_says", message),
    )
}

/// The fix for a refusal of PostgreSQL's, with the exact statement.
fn refusal_fix(target: &PgTarget, refusal: &Refusal) -> String {
    match refusal {
        Refusal::RoleConnectionLimit { role } => format!(
            "see who holds the role's connections: SELECT pid, application_name, state, backend_start FROM \
             pg_stat_activity WHERE usename = {}; then raise or lift its limit: ALTER ROLE {} CONNECTION LIMIT -1; \
             (a limit of 0 locks the role out on purpose)",
            literal(role),
            quoted(role)
        ),
        Refusal::DatabaseConnectionLimit { database } => format!(
            "see who holds the database's connections: SELECT usename, application_name, count(*) FROM \
             pg_stat_activity WHERE datname = {} GROUP BY 1, 2; then raise or lift its limit: ALTER DATABASE {} \
             CONNECTION LIMIT -1;",
            literal(database),
            quoted(database)
        ),
        Refusal::ServerFull => "the server is out of connection slots (max_connections): find who holds them: \
             SELECT usename, application_name, count(*) FROM pg_stat_activity GROUP BY 1, 2 ORDER BY 3 DESC; or \
             raise max_connections (ALTER SYSTEM SET max_connections = 200; then restart the server)"
            .to_string(),
        Refusal::TooManyConnections => "a connection limit is reached: the role's (ALTER ROLE … CONNECTION LIMIT), \
             the database's (ALTER DATABASE … CONNECTION LIMIT) or the server's (max_connections); the server's \
             log names which"
            .to_string(),
        Refusal::NotAcceptingConnections { database } => format!(
            "the database is closed to new connections (ALLOW_CONNECTIONS false): ALTER DATABASE {} \
             ALLOW_CONNECTIONS true; (run it connected to another database, e.g. postgres)",
            quoted(database)
        ),
        Refusal::CannotLogin { role } => {
            format!("the role has NOLOGIN: ALTER ROLE {} LOGIN; (or connect as a role that may log in)", quoted(role))
        }
        Refusal::PasswordFailed { user } => format!(
            "check {}; if it is right, the role's password has expired (VALID UNTIL): PostgreSQL tells a client the \
             same for both (its log says \"has an expired password\"); SELECT rolvaliduntil FROM pg_roles WHERE \
             rolname = {}; as another role shows it, and ALTER ROLE {} VALID UNTIL 'infinity'; lifts it",
            target.var_for("password"),
            literal(user),
            quoted(user)
        ),
    }
}

/// A name as a SQL identifier in a hint: always double-quoted (`"app"`).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL string literal in a hint.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn db_failure(target: &PgTarget, db: &DbError) -> (Failure, NodeFailure) {
    if let Some(failure) = pooler_failure(target, db) {
        return (failure, NodeFailure::Other);
    }
    let code = db.code();
    let message = db.message();
    let base = format!("{message} ({})", code.code());
    if let Some(refusal) = Refusal::of(code, message) {
        let failure = Failure::new(base).with_hint(refusal_fix(target, &refusal));
        return (failure, NodeFailure::Other);
    }
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
        format!("GRANT CONNECT ON DATABASE {} TO {};", quoted(&target.dbname), quoted(&target.user))
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
        let at = |phase: Phase| Stopped { phase, logged_in: false };
        let f = timeout_failure(&t, Duration::from_secs(5), at(Phase::Reply("startup")));
        assert_eq!(f.message, "timed out after 5s waiting for the server's reply to startup");
        let f = timeout_failure(&t, Duration::from_millis(500), at(Phase::Connect));
        assert_eq!(f.message, "timed out after 500ms connecting to 10.0.0.5:5432");
        let f = timeout_failure(&t, Duration::from_secs(2), at(Phase::Resolve));
        assert_eq!(f.message, "timed out after 2s resolving host \"10.0.0.5\"");
        assert!(f.hint.unwrap_or_default().contains("/etc/resolv.conf"));
        let f =
            timeout_failure(&t, Duration::from_secs(2), Stopped { phase: Phase::Reply("startup"), logged_in: true });
        assert!(f.message.contains("accepted the login, but the session never became ready"), "{}", f.message);
        // What is left of a --wait budget reads to the millisecond.
        let f = timeout_failure(&t, Duration::from_nanos(2_849_999_551), at(Phase::Connect));
        assert_eq!(f.message, "timed out after 2s 849ms connecting to 10.0.0.5:5432");
    }
}
