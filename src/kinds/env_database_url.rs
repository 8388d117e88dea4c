//! `env.database_url`: `DATABASE_URL` / `DB_*` are well-formed and agree.

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::check::{Check, Ctx, KindDef, Outcome};

pub static KIND: KindDef = KindDef {
    name: "env.database_url",
    title: "Database URL is valid",
    description: "DATABASE_URL is a postgres:// URL with a host, DB_PORT is a port, and DATABASE_URL and DB_* agree",
    build: |t| crate::check::without_params(t, DatabaseUrl),
};

pub const ENCODE_HINT: &str =
    "percent-encode special characters of the password in the URL (@ → %40, / → %2F, # → %23, ? → %3F, : → %3A)";

/// Parses a service URL without ever echoing it: errors describe, never quote.
pub fn parse_service_url(var: &str, raw: &str, schemes: &[&str]) -> Result<url::Url, Outcome> {
    let raw = raw.trim();
    let suspicious = raw.split_once("://").is_some_and(|(_, rest)| {
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        rest.matches('@').count() > 1 || rest.contains('#') || (authority.is_empty() && rest.contains('@'))
    });
    let with_hint = |o: Outcome| if suspicious { o.hint(ENCODE_HINT) } else { o };
    let url = url::Url::parse(raw).map_err(|e| {
        with_hint(Outcome::problem(format!("{var} is not a valid URL: {e}"))).hint(if suspicious {
            ENCODE_HINT.to_string()
        } else {
            format!("{var} should look like {}://<user>:<password>@<host>:<port>/<name>", schemes[0])
        })
    })?;
    if !schemes.contains(&url.scheme()) {
        return Err(Outcome::problem(format!(
            "{var} has scheme \"{}\", expected {}",
            url.scheme(),
            schemes.iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(" or ")
        ))
        .hint(format!("{var} should look like {}://<user>:<password>@<host>:<port>/<name>", schemes[0])));
    }
    if url.fragment().is_some() && url.scheme() != "rediss" {
        return Err(with_hint(Outcome::problem(format!("{var} contains '#': the rest of the URL is ignored")))
            .hint(ENCODE_HINT));
    }
    Ok(url)
}

fn socket_host(url: &url::Url) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == "host").map(|(_, v)| v.into_owned())
}

struct DatabaseUrl;

impl Check for DatabaseUrl {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let db_host = ctx.env.non_empty("DB_HOST");
            let db_name = ctx.env.non_empty("DB_NAME");
            let db_port = ctx.env.non_empty("DB_PORT");
            if let Some(port) = &db_port
                && port.trim().parse::<u16>().map_or(true, |p| p == 0)
            {
                return Outcome::problem(format!("DB_PORT is not a port number (1–65535): \"{}\"", port.trim()))
                    .hint("set DB_PORT to the PostgreSQL port, usually 5432");
            }
            let Some(raw) = ctx.env.non_empty("DATABASE_URL") else {
                return match (db_host, db_name) {
                    (Some(h), Some(n)) => Outcome::pass(format!("DB_* variables: {n} on {h}")).detail("source", "DB_*"),
                    _ => Outcome::skip("neither DATABASE_URL nor DB_HOST/DB_NAME is set (see env.required)"),
                };
            };
            let url = match parse_service_url("DATABASE_URL", &raw, &["postgres", "postgresql"]) {
                Ok(url) => url,
                Err(outcome) => return outcome,
            };
            let host = url.host_str().filter(|h| !h.is_empty()).map(str::to_string).or_else(|| socket_host(&url));
            let Some(host) = host else {
                return Outcome::problem("DATABASE_URL has no host")
                    .hint("DATABASE_URL should look like postgres://<user>:<password>@<host>:5432/<name>");
            };
            let name = url.path().trim_start_matches('/').to_string();
            if name.contains(['@', '/']) {
                // `postgres://app:p@ss/word@db/x` parses, with the wrong host: never quote it.
                return Outcome::problem("DATABASE_URL is malformed: its database name contains '@' or '/' (an unescaped character in the password?)")
                    .hint(ENCODE_HINT);
            }
            let port = url.port().unwrap_or(5432);
            let mut outcome = Outcome::pass(format!(
                "{} on {host}:{port}",
                if name.is_empty() { "(default database)" } else { &name }
            ))
            .detail("source", "DATABASE_URL")
            .detail("host", host.clone())
            .detail("port", port)
            .detail("database", name.clone());
            if db_host.is_some() || db_name.is_some() {
                let dh = db_host.unwrap_or_else(|| host.clone());
                let dn = db_name.unwrap_or_else(|| name.clone());
                let dp = db_port.and_then(|p| p.trim().parse::<u16>().ok()).unwrap_or(5432);
                if dh != host || dn != name || dp != port {
                    outcome = Outcome::warn(format!(
                        "DATABASE_URL ({name} on {host}:{port}) and DB_* ({dn} on {dh}:{dp}) point at different databases; DATABASE_URL wins"
                    ))
                    .hint("remove the DB_* variables or make them match DATABASE_URL");
                }
            }
            outcome
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use crate::check::testing::run_kind;
    use crate::report::Status;

    #[tokio::test]
    async fn table() {
        let cases: &[(&[(&str, &str)], Status, &str)] = &[
            (&[("DATABASE_URL", "postgres://app:pw@db:5432/mm")], Status::Pass, "mm on db:5432"),
            (
                &[("DATABASE_URL", "mysql://app:pw@db/mm")],
                Status::Fail,
                "DATABASE_URL has scheme \"mysql\", expected postgres:// or postgresql://",
            ),
            (
                &[("DATABASE_URL", "postgres://app:p/w@db/mm")],
                Status::Fail,
                "DATABASE_URL is not a valid URL: invalid port number",
            ),
            (&[("DATABASE_URL", "postgres:///mm")], Status::Fail, "DATABASE_URL has no host"),
            (
                &[("DATABASE_URL", "postgresql:///mm?host=/var/run/postgresql")],
                Status::Pass,
                "mm on /var/run/postgresql:5432",
            ),
            (&[("DB_PORT", "54x")], Status::Fail, "DB_PORT is not a port number (1–65535): \"54x\""),
            (
                &[("DATABASE_URL", "postgres://a:b@db/mm"), ("DB_HOST", "other"), ("DB_NAME", "mm")],
                Status::Warn,
                "DATABASE_URL (mm on db:5432) and DB_* (mm on other:5432) point at different databases; DATABASE_URL wins",
            ),
            (
                &[("DATABASE_URL", "postgres://a:b@db/mm"), ("DB_HOST", "db"), ("DB_NAME", "mm")],
                Status::Pass,
                "mm on db:5432",
            ),
            (&[], Status::Skip, "neither DATABASE_URL nor DB_HOST/DB_NAME is set (see env.required)"),
        ];
        for (env, status, message) in cases {
            let r = run_kind(&super::KIND, "", env, "production").await;
            assert_eq!((r.status, r.message.as_str()), (*status, *message), "{env:?}");
        }
    }

    #[tokio::test]
    async fn unescaped_at_in_password_gets_the_encoding_hint() {
        let r = run_kind(&super::KIND, "", &[("DATABASE_URL", "postgres://app:p@ss/word@db/mm")], "production").await;
        assert_eq!(r.status, Status::Fail);
        assert!(r.hint.as_deref().unwrap_or("").contains("percent-encode"), "{r:?}");
        assert!(!r.message.contains("ss/word"), "{}", r.message);
    }
}
