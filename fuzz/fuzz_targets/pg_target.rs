//! The PostgreSQL target parser (`DATABASE_URL`, else `DB_*`, read as
//! node-postgres or libpq reads them). The input is an environment, one
//! `NAME=value` a line (a line `LIBPQ` makes the API's client libpq).
//! Properties: it never panics; it is deterministic; a password — `DB_PASSWORD`,
//! `PGPASSWORD`, or the URL's password as a URL parser reads it — never shows in
//! the target or the failure (message, hint, details); `DB_*` are taken as given
//! (trimmed); a target's port is never 0. Passwords are recognised by a marker
//! the seeds carry (`Zq9x`), checked only where no other variable holds it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mockmate_diag::probe::Failure;
use mockmate_diag::probe::postgres::conn_string;
use mockmate_diag::probe::postgres::{ApiClient, ClientKind, PgSource, PgTarget};

const MARK: &str = "Zq9x";
const PASSWORDS: &[&str] = &["DB_PASSWORD", "PGPASSWORD"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut libpq = false;
    let mut vars: Vec<(&str, &str)> = Vec::new();
    for line in text.lines() {
        match line.split_once('=') {
            Some((name, value)) => vars.push((name, value)),
            None => libpq |= line == "LIBPQ",
        }
    }
    // The first definition wins, as in an env file.
    let var = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let get = |name: &str| var(name).map(str::to_string);
    let api =
        ApiClient { client: if libpq { ClientKind::Libpq } else { ClientKind::NodePostgres }, ..ApiClient::default() };

    let shown = |r: &Result<PgTarget, Failure>| match r {
        Ok(t) => format!("{t:?} {} {} {}", t.endpoint(), t.is_local(), t.has_password()),
        Err(f) => format!("{f:?}"),
    };
    let first = PgTarget::from_env_for(&get, &api);
    let text = shown(&first);
    assert_eq!(text, shown(&PgTarget::from_env_for(&get, &api)), "the same environment must read the same");

    // Where the marker is only in passwords, it must not show.
    let marked = |v: &str| v.contains(MARK);
    let url = var("DATABASE_URL").map(str::trim).filter(|u| !u.is_empty());
    let elsewhere = vars
        .iter()
        .filter(|(k, _)| !PASSWORDS.contains(k) && *k != "DATABASE_URL")
        .any(|(k, v)| marked(k) || marked(v));
    let url_marker_only_in_password = match url.map(conn_string::parse) {
        None | Some(Err(_)) => true, // an unparsable URL is never quoted
        Some(Ok(c)) => {
            ![&c.user, &c.host, &c.port, &c.database].iter().any(|v| v.as_deref().is_some_and(marked))
                && !c.params.iter().any(|(k, v)| marked(k) || marked(v))
                && !marked(&c.scheme)
        }
    };
    if !elsewhere && url_marker_only_in_password {
        assert!(!text.contains(MARK), "a password shows: {text}");
    }

    if let Ok(t) = &first {
        assert_ne!(t.port, 0);
        if url.is_none() {
            // DB_* are taken as they are, trimmed.
            assert_eq!(t.source, PgSource::DbVars);
            assert_eq!(Some(t.host.as_str()), var("DB_HOST").map(str::trim));
            assert_eq!(Some(t.user.as_str()), var("DB_USER").map(str::trim));
            assert_eq!(Some(t.dbname.as_str()), var("DB_NAME").map(str::trim));
        }
    }
});
