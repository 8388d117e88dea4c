//! Laws of the pure parts, checked on generated inputs (proptest): redaction is
//! idempotent and leaves secret-free text alone; a URL as the report shows it
//! (password masked) reads back to the same server, user and database; a
//! manifest written by a TOML serializer loads back to the same checks.

use mockmate_diag::manifest::{self, Source};
use mockmate_diag::probe::postgres::{ApiClient, ClientKind, PgTarget, PoolSsl};
use mockmate_diag::probe::redis::RedisTarget;
use mockmate_diag::redact::{MASK, Redactor};
use mockmate_diag::report::Severity;
use proptest::prelude::*;

/// A secret as people write them: any printable character but the mask's own `*`.
fn secret() -> impl Strategy<Value = String> {
    "[^*\\p{C}]{3,24}".prop_filter("not a flag word or a short number", |s| {
        let t = s.trim();
        t.len() >= 3
            && !(t.len() < 6 && t.bytes().all(|b| b.is_ascii_digit()))
            && !matches!(
                t.to_ascii_lowercase().as_str(),
                "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "none"
            )
    })
}

/// How a password looks inside a URL's userinfo.
fn userinfo(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every form of `secret` the redactor masks.
fn forms(secret: &str) -> Vec<String> {
    let s = secret.trim();
    vec![s.to_string(), url::form_urlencoded::byte_serialize(s.as_bytes()).collect(), userinfo(s)]
}

fn redactor(names: &[String], secrets: &[String]) -> Redactor {
    Redactor::from_env(names.iter().zip(secrets).map(|(n, s)| (n.as_str(), s.as_str())))
}

fn get<'a>(vars: &'a [(&'a str, String)]) -> impl Fn(&str) -> Option<String> + Send + Sync + 'a {
    move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
}

proptest! {
    /// Masking what is already masked changes nothing, whatever the text and secrets.
    #[test]
    fn redaction_is_idempotent(
        text in "(password=|\"token\": \"|postgres://|redis://:|@|:|[a-zA-Z0-9 %+/._-]{1,8}|\\PC){0,30}",
        names in proptest::collection::vec("(JWT_SECRET|DB_PASSWORD|API_KEY|GITHUB_TOKEN|DATABASE_URL|NODE_ENV)", 0..4),
        secrets in proptest::collection::vec(secret(), 0..4),
    ) {
        let r = redactor(&names, &secrets);
        let once = r.redact(&text).into_owned();
        prop_assert_eq!(r.redact(&once).into_owned(), once);
    }

    /// Text holding no secret (no learned value, no `password=`, no userinfo) is
    /// printed as it is: never longer, never changed.
    #[test]
    fn secret_free_text_is_left_alone(
        text in "(postgres://db.internal:5432/mockmate|redis://cache:6379/0|password authentication failed for user|[a-zA-Z0-9 %+/:._,;()'-]{1,12}|\\p{L}){0,20}"
            // Shrinking may step outside the pattern: keep to secret-free text.
            .prop_filter("no userinfo, no key=value, no JSON key", |t| !t.contains(['@', '=', '"']) && !t.contains(char::is_control)),
        secrets in proptest::collection::vec(secret(), 0..4),
    ) {
        prop_assume!(secrets.iter().all(|s| forms(s).iter().all(|f| !text.contains(f.as_str()))));
        let names: Vec<String> = (0..secrets.len()).map(|i| format!("SECRET_{i}")).collect();
        let out = redactor(&names, &secrets).redact(&text).into_owned();
        prop_assert!(out.len() <= text.len());
        prop_assert_eq!(out, text);
    }

    /// `DATABASE_URL` as a report prints it — password masked — still names the
    /// same server, user and database.
    #[test]
    fn a_masked_database_url_reads_back_to_the_same_target(
        user in "[a-z_][a-z0-9_]{0,10}",
        password in secret(),
        host in "([a-z][a-z0-9-]{0,10}(\\.[a-z]{2,6}){0,2}|127\\.0\\.[0-9]{1,2}\\.[1-9])",
        port in 1u16..,
        db in "[a-z_][a-z0-9_]{0,12}",
        scheme in "(postgres|postgresql)",
    ) {
        let url = format!("{scheme}://{user}:{}@{host}:{port}/{db}", userinfo(&password));
        // A password that is also part of the URL's other text is masked there too: not this law.
        let rest = format!("{scheme}://{user}:\0@{host}:{port}/{db}");
        prop_assume!(forms(&password).iter().all(|f| !rest.contains(f.as_str())));
        let shown = Redactor::from_env([("DATABASE_URL", url.as_str())]).redact(&url).into_owned();
        prop_assert!(forms(&password).iter().all(|f| !shown.contains(f.as_str())), "{}", shown);
        prop_assert!(shown.contains(&format!(":{MASK}@")), "{}", shown);
        let read = |u: &str| {
            let vars = [("DATABASE_URL", u.to_string())];
            PgTarget::from_env(&get(&vars)).map(|t| (t.has_password(), t.host, t.port, t.user, t.dbname))
        };
        let original = read(&url);
        prop_assert!(original.is_ok(), "{:?}", original);
        prop_assert_eq!(read(&shown), original);
    }

    /// The same for `REDIS_URL`: host, port, user and database survive masking.
    #[test]
    fn a_masked_redis_url_reads_back_to_the_same_target(
        user in proptest::option::of("[a-z][a-z0-9_]{0,8}"),
        password in secret(),
        host in "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,6}){0,2}",
        port in 1u16..,
        db in 0u8..16,
        tls in any::<bool>(),
    ) {
        let scheme = if tls { "rediss" } else { "redis" };
        let user = user.unwrap_or_default();
        let url = format!("{scheme}://{user}:{}@{host}:{port}/{db}", userinfo(&password));
        let rest = format!("{scheme}://{user}:\0@{host}:{port}/{db}");
        prop_assume!(forms(&password).iter().all(|f| !rest.contains(f.as_str())));
        let shown = Redactor::from_env([("REDIS_URL", url.as_str())]).redact(&url).into_owned();
        prop_assert!(forms(&password).iter().all(|f| !shown.contains(f.as_str())), "{}", shown);
        let read = |u: &str| {
            let vars = [("REDIS_URL", u.to_string())];
            RedisTarget::from_env(&get(&vars)).map(|t| (t.has_password(), t.host, t.port, t.username, t.db, t.tls))
        };
        let original = read(&url);
        prop_assert!(original.is_ok(), "{:?}", original);
        prop_assert_eq!(read(&shown), original);
    }

    /// A manifest a TOML serializer writes (any title or hint text, any order of
    /// `needs` on earlier checks, a `[postgres]` table) loads back to the same checks.
    #[test]
    fn manifests_round_trip(
        checks in proptest::collection::vec(
            (
                "[a-z][a-z0-9_.-]{0,15}",
                proptest::sample::select(PARAMLESS_KINDS),
                any::<bool>(),
                any::<String>(),
                proptest::option::of(any::<String>()),
                proptest::collection::vec(any::<prop::sample::Index>(), 0..3),
            ),
            1..8,
        ),
        client in proptest::option::of(any::<bool>()),
        ssl in proptest::option::of(0usize..3),
    ) {
        // Unique ids; `needs` only on earlier checks (no cycles by construction).
        let mut ids: Vec<String> = Vec::new();
        let mut written = Vec::new();
        for (id, kind, warn, title, hint, needs) in checks {
            if ids.contains(&id) {
                continue;
            }
            let mut needs: Vec<String> = needs.iter().filter(|_| !ids.is_empty()).map(|i| i.get(&ids).clone()).collect();
            needs.dedup();
            written.push(WrittenCheck {
                id: id.clone(),
                kind: kind.to_string(),
                severity: if warn { "warn" } else { "fail" }.to_string(),
                needs,
                title,
                hint,
            });
            ids.push(id);
        }
        let postgres = (client.is_some() || ssl.is_some()).then(|| WrittenPostgres {
            client: client.map(|libpq| if libpq { "libpq" } else { "node-postgres" }.to_string()),
            ssl: ssl.map(|i| ["verify-full", "no-verify", "disable"][i].to_string()),
        });
        let text = toml::to_string(&WrittenFile { check: written.clone(), postgres })
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let loaded = manifest::load_all(&[Source { label: "laws.toml".into(), text: text.clone() }])
            .map_err(|e| TestCaseError::fail(format!("{}\n{text}", e.0)))?;
        let read: Vec<WrittenCheck> = loaded
            .checks
            .iter()
            .map(|d| WrittenCheck {
                id: d.id.clone(),
                kind: d.kind.name.to_string(),
                severity: if d.severity == Severity::Warn { "warn" } else { "fail" }.to_string(),
                needs: d.needs.clone(),
                title: d.title.clone(),
                hint: d.hint.clone(),
            })
            .collect();
        prop_assert_eq!(read, written);
        let expected = ApiClient {
            client: if client == Some(true) { ClientKind::Libpq } else { ClientKind::NodePostgres },
            ssl: ssl.map(|i| [PoolSsl::VerifyFull, PoolSsl::NoVerify, PoolSsl::Disable][i]),
            ca: None,
        };
        prop_assert_eq!(loaded.postgres, expected);
    }
}

/// Kinds that take no parameters beyond the common fields.
const PARAMLESS_KINDS: &[&str] = &[
    "env.database_url",
    "env.node_env",
    "env.redis_url",
    "postgres.connect",
    "postgres.extensions",
    "postgres.tls",
    "redis.connect",
    "redis.memory",
];

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct WrittenCheck {
    id: String,
    kind: String,
    severity: String,
    needs: Vec<String>,
    title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
}

#[derive(serde::Serialize)]
struct WrittenPostgres {
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ssl: Option<String>,
}

#[derive(serde::Serialize)]
struct WrittenFile {
    check: Vec<WrittenCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    postgres: Option<WrittenPostgres>,
}
