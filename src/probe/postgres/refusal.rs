//! The one place that reads the words of a refused connection. PostgreSQL gives
//! several refusals one SQLSTATE (53300 for a role's, a database's and the server's
//! connection limit), and PgBouncer answers all of its own with 08P01: the text is
//! the only field that tells them apart. These are PostgreSQL's own message formats
//! (`src/backend/utils/init/postinit.c`, `miscinit.c`, `libpq/auth.c`, 9.6–17) and
//! PgBouncer's (1.12–1.24), matched with the SQLSTATE they come with; a server with
//! translated messages (`lc_messages`) falls back to the SQLSTATE alone.

use tokio_postgres::error::SqlState;

/// Why PostgreSQL refused the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 53300 `too many connections for role "app"`: the role's CONNECTION LIMIT.
    RoleConnectionLimit { role: String },
    /// 53300 `too many connections for database "mockmate"`: the database's CONNECTION LIMIT.
    DatabaseConnectionLimit { database: String },
    /// 53300 `sorry, too many clients already`, or only reserved slots are left:
    /// the server's `max_connections`.
    ServerFull,
    /// 53300 with a text this table does not know (translated messages).
    TooManyConnections,
    /// 55000 `database "mockmate" is not currently accepting connections`: ALLOW_CONNECTIONS false.
    NotAcceptingConnections { database: String },
    /// 28000 `role "app" is not permitted to log in`: NOLOGIN.
    CannotLogin { role: String },
    /// 28P01 `password authentication failed for user "app"`: a wrong password, or an
    /// expired one (VALID UNTIL) — the server says the same to the client for both.
    PasswordFailed { user: String },
}

impl Refusal {
    /// Reads a refusal from the SQLSTATE and PostgreSQL's message; `None` for others.
    pub fn of(code: &SqlState, message: &str) -> Option<Refusal> {
        if *code == SqlState::TOO_MANY_CONNECTIONS {
            return Some(if let Some(role) = quoted_after(message, "too many connections for role ") {
                Refusal::RoleConnectionLimit { role }
            } else if let Some(database) = quoted_after(message, "too many connections for database ") {
                Refusal::DatabaseConnectionLimit { database }
            } else if message.starts_with("sorry, too many clients already")
                || message.starts_with("remaining connection slots are reserved")
            {
                Refusal::ServerFull
            } else {
                Refusal::TooManyConnections
            });
        }
        if *code == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE {
            let database = between(message, "database ", " is not currently accepting connections")?;
            return Some(Refusal::NotAcceptingConnections { database });
        }
        if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            let role = between(message, "role ", " is not permitted to log in")?;
            return Some(Refusal::CannotLogin { role });
        }
        if *code == SqlState::INVALID_PASSWORD {
            let user = quoted_after(message, "password authentication failed for user ")?;
            return Some(Refusal::PasswordFailed { user });
        }
        None
    }
}

impl Refusal {
    /// A refusal PgBouncer relayed from PostgreSQL (it sends PostgreSQL's words with
    /// its own 08P01): read by the words alone.
    pub fn relayed(message: &str) -> Option<Refusal> {
        [
            &SqlState::TOO_MANY_CONNECTIONS,
            &SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            &SqlState::INVALID_PASSWORD,
            &SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
        ]
        .into_iter()
        .find_map(|code| Refusal::of(code, message).filter(|r| *r != Refusal::TooManyConnections))
    }
}

/// What PgBouncer itself said (SQLSTATE 08P01, which PostgreSQL uses only for
/// protocol violations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BouncerSays {
    /// `server login has been failing, try again later (server_login_retry)`: its last
    /// login to PostgreSQL failed and no server connection is left.
    ServerLoginFailing,
    /// `client_login_timeout (server down)`: no server connection came up while the
    /// client waited to log in.
    ServerDown,
    /// PostgreSQL refused PgBouncer's own login, relayed with PostgreSQL's words
    /// (`password authentication failed for user "app"` …).
    ServerRefusedLogin,
    /// PgBouncer refused the client's password itself (`SASL authentication failed`,
    /// `password authentication failed`), against its auth_file or auth_query.
    ClientPasswordFailed,
    /// `no such database: x`.
    NoSuchDatabase,
    /// `no such user: x`.
    NoSuchUser,
    /// `no more connections allowed (max_client_conn)`.
    MaxClientConn,
    /// `query_wait_timeout`: the client waited longer for a server connection.
    QueryWaitTimeout,
    /// `unsupported startup parameter: x`.
    UnsupportedStartupParameter,
    /// PostgreSQL's "database … does not exist", relayed.
    DatabaseMissing,
}

impl BouncerSays {
    /// Reads PgBouncer's words; `None` when it is not one of its answers.
    pub fn of(code: &SqlState, message: &str) -> Option<BouncerSays> {
        if *code != SqlState::PROTOCOL_VIOLATION {
            return None;
        }
        Some(if message.starts_with("server login has been failing") {
            BouncerSays::ServerLoginFailing
        } else if message.starts_with("client_login_timeout") {
            BouncerSays::ServerDown
        } else if message == "SASL authentication failed" || message == "password authentication failed" {
            BouncerSays::ClientPasswordFailed
        } else if message.starts_with("password authentication failed for user ")
            || message.starts_with("server login failed")
            || message.contains("is not permitted to log in")
            || message.starts_with("too many connections for")
        {
            BouncerSays::ServerRefusedLogin
        } else if message.starts_with("no such database") {
            BouncerSays::NoSuchDatabase
        } else if message.starts_with("no such user") {
            BouncerSays::NoSuchUser
        } else if message.starts_with("no more connections allowed") {
            BouncerSays::MaxClientConn
        } else if message.starts_with("query_wait_timeout") {
            BouncerSays::QueryWaitTimeout
        } else if message.starts_with("unsupported startup parameter") {
            BouncerSays::UnsupportedStartupParameter
        } else if message.starts_with("database ") && message.ends_with("does not exist") {
            BouncerSays::DatabaseMissing
        } else {
            return None;
        })
    }
}

/// `"app"` after `prefix` at the start of `message`, unquoted (`""` inside a name is `"`).
fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    unquote(message.strip_prefix(prefix)?)
}

/// The quoted name between `prefix` and `suffix`.
fn between(message: &str, prefix: &str, suffix: &str) -> Option<String> {
    unquote(message.strip_prefix(prefix)?.strip_suffix(suffix)?)
}

/// PostgreSQL quotes names in these messages with `"` and does not double inner quotes.
fn unquote(text: &str) -> Option<String> {
    let text = text.trim_end_matches('.');
    Some(text.strip_prefix('"')?.strip_suffix('"')?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_refusals_are_told_apart_by_code_and_words() {
        let of = |code: &SqlState, m: &str| Refusal::of(code, m);
        let too_many = &SqlState::TOO_MANY_CONNECTIONS;
        assert_eq!(
            of(too_many, "too many connections for role \"app\""),
            Some(Refusal::RoleConnectionLimit { role: "app".into() })
        );
        assert_eq!(
            of(too_many, "too many connections for database \"mock mate\""),
            Some(Refusal::DatabaseConnectionLimit { database: "mock mate".into() })
        );
        assert_eq!(of(too_many, "sorry, too many clients already"), Some(Refusal::ServerFull));
        assert_eq!(
            of(too_many, "remaining connection slots are reserved for non-replication superuser connections"),
            Some(Refusal::ServerFull)
        );
        assert_eq!(of(too_many, "demasiados clientes"), Some(Refusal::TooManyConnections));
        assert_eq!(
            of(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE, "database \"mm\" is not currently accepting connections"),
            Some(Refusal::NotAcceptingConnections { database: "mm".into() })
        );
        assert_eq!(
            of(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION, "role \"app\" is not permitted to log in"),
            Some(Refusal::CannotLogin { role: "app".into() })
        );
        assert_eq!(
            of(&SqlState::INVALID_PASSWORD, "password authentication failed for user \"app\""),
            Some(Refusal::PasswordFailed { user: "app".into() })
        );
        assert_eq!(of(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION, "no pg_hba.conf entry for host"), None);
    }

    #[test]
    fn pgbouncers_own_words_are_read_only_with_its_code() {
        let p = &SqlState::PROTOCOL_VIOLATION;
        let cases = [
            ("server login has been failing, try again later (server_login_retry)", BouncerSays::ServerLoginFailing),
            ("client_login_timeout (server down)", BouncerSays::ServerDown),
            ("SASL authentication failed", BouncerSays::ClientPasswordFailed),
            ("password authentication failed", BouncerSays::ClientPasswordFailed),
            ("password authentication failed for user \"app\"", BouncerSays::ServerRefusedLogin),
            ("no such database: x", BouncerSays::NoSuchDatabase),
            ("no more connections allowed (max_client_conn)", BouncerSays::MaxClientConn),
            ("query_wait_timeout", BouncerSays::QueryWaitTimeout),
            ("database \"x\" does not exist", BouncerSays::DatabaseMissing),
        ];
        for (words, says) in cases {
            assert_eq!(BouncerSays::of(p, words), Some(says), "{words}");
        }
        assert_eq!(BouncerSays::of(&SqlState::INVALID_PASSWORD, "SASL authentication failed"), None);
        assert_eq!(BouncerSays::of(p, "invalid frontend message type 0"), None);
    }
}
