//! The drivers are the oracles. For every TLS set-up the harness can build
//! (plain, self-signed, a private CA with matching and mismatching names,
//! TLS-only, a client certificate required) and every URL form, the real
//! node-postgres (tests/node, pinned by package-lock.json) connects or fails, and
//! the probe must agree — on the verdict and on whether the connection is
//! encrypted. The same for node-redis on the REDIS_URL forms.
//!
//! Node and npm are needed (the pinned packages are installed from
//! tests/node/package-lock.json on first use). A missing Node fails these tests
//! loudly; they never skip.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use mockmate_diag::probe::postgres::{ApiClient, PgSession, PgTarget, PoolSsl, connect};
use mockmate_diag::probe::redis::RedisTarget;
use serde_json::Value;

use crate::support::pg::{PgOptions, PgServer, SUPERUSER, SUPERUSER_PASSWORD, encode};
use crate::support::redis::RedisServer;
use crate::support::tls::TestCa;

const DEADLINE: Duration = Duration::from_secs(5);

fn node_dir() -> &'static Path {
    crate::support::node::dir()
}

/// What a driver made of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    ok: bool,
    /// Whether the connection is encrypted (only when `ok`).
    tls: bool,
}

/// Runs one of tests/node's probes with `vars` as its whole environment.
async fn node(script: &str, vars: &[(String, String)]) -> (Verdict, String) {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(node_dir().join(script))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PROBE_TIMEOUT_MS", "3000")
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let out = cmd.output().await.expect("run node");
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    let json: Value = serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {line}\n{}", String::from_utf8_lossy(&out.stderr)));
    let ok = json["ok"].as_bool().unwrap_or(false);
    let tls = json["ssl"].as_bool().or(json["tls"].as_bool()).unwrap_or(false);
    (Verdict { ok, tls: ok && tls }, line)
}

fn lookup(vars: &[(String, String)]) -> impl Fn(&str) -> Option<String> + Send + Sync + use<> {
    let vars = vars.to_vec();
    move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// The probe's verdict: parse, connect, run the first statement.
async fn ours_pg(vars: &[(String, String)], api: &ApiClient) -> (Verdict, String) {
    let target = match PgTarget::from_env_for(&lookup(vars), api) {
        Ok(t) => t,
        Err(f) => return (Verdict { ok: false, tls: false }, f.message),
    };
    match connect(&target, DEADLINE).await {
        Ok(conn) => {
            let session = PgSession::read_only(conn, DEADLINE);
            let tls = session.info.tls.is_some();
            match session.route().await {
                Ok(_) => (Verdict { ok: true, tls }, format!("connected (tls {tls})")),
                Err(f) => (Verdict { ok: false, tls: false }, f.message),
            }
        }
        Err(f) => (Verdict { ok: false, tls: false }, f.message),
    }
}

/// One configuration both drivers are given.
struct PgCase {
    name: String,
    vars: Vec<(String, String)>,
    /// What the API's code passes to `new Pool({ ssl })`, as the manifest says it.
    pool: ApiClient,
}

impl PgCase {
    fn url(name: impl Into<String>, url: String) -> PgCase {
        PgCase { name: name.into(), vars: vec![("DATABASE_URL".into(), url)], pool: ApiClient::default() }
    }

    fn env(mut self, key: &str, value: &str) -> PgCase {
        self.vars.push((key.into(), value.into()));
        self
    }

    fn pool(mut self, ssl: Option<PoolSsl>, ca: Option<&Path>) -> PgCase {
        self.pool = ApiClient { ssl, ca: ca.map(Path::to_path_buf), ..ApiClient::default() };
        self
    }

    /// The node probe's inputs for the Pool's ssl (see tests/node/pg_probe.js).
    fn node_vars(&self) -> Vec<(String, String)> {
        let mut vars = self.vars.clone();
        match self.pool.ssl {
            Some(PoolSsl::VerifyFull) => vars.push(("POOL_SSL".into(), "true".into())),
            Some(PoolSsl::NoVerify) => vars.push(("POOL_SSL".into(), r#"{"rejectUnauthorized":false}"#.into())),
            Some(PoolSsl::Disable) => vars.push(("POOL_SSL".into(), "false".into())),
            None => {}
        }
        if let Some(ca) = &self.pool.ca {
            vars.push(("POOL_SSL_CA".into(), ca.display().to_string()));
        }
        vars
    }
}

/// Runs every case through both drivers (a few at a time) and lists every
/// disagreement at once.
async fn assert_concordant(cases: Vec<PgCase>) {
    let count = cases.len();
    let results: Vec<(String, (Verdict, String), (Verdict, String))> = futures::stream::iter(cases)
        .map(|case| async move {
            let node_vars = case.node_vars();
            let (theirs, ours) = futures::join!(node("pg_probe.js", &node_vars), ours_pg(&case.vars, &case.pool));
            (case.name, theirs, ours)
        })
        .buffer_unordered(4)
        .collect()
        .await;
    assert_eq!(results.len(), count);
    let disagreements: Vec<String> = results
        .iter()
        .filter(|(_, (theirs, _), (ours, _))| theirs != ours)
        .map(|(name, (theirs, said), (ours, says))| {
            format!("{name}: node-postgres {theirs:?} {}\n    mockmate-diag {ours:?} {says}", said.trim())
        })
        .collect();
    assert!(disagreements.is_empty(), "{} of {count} disagree:\n{}", disagreements.len(), disagreements.join("\n"));
}

fn url(pg: &PgServer, host: &str, query: &str) -> String {
    let q = if query.is_empty() { String::new() } else { format!("?{query}") };
    format!("postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@{host}:{}/postgres{q}", pg.port)
}

fn ca(pg: &PgServer) -> &TestCa {
    pg.tls.as_ref().expect("a TLS cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_and_the_probe_agree_on_every_tls_set_up_and_url_form() {
    let plain = PgServer::shared();
    let tls_only = PgServer::shared_tls();
    let self_signed =
        PgServer::with(PgOptions { tls: true, self_signed: true, tls_optional: true, ..PgOptions::default() });
    let mismatch = PgServer::with(PgOptions {
        tls: true,
        tls_sans: Some(vec!["db.mockmate.invalid".into()]),
        ..PgOptions::default()
    });
    let client_cert = PgServer::with(PgOptions { tls: true, client_cert: true, ..PgOptions::default() });
    let root = ca(tls_only).ca_cert.clone();
    let root_q = format!("sslrootcert={}", root.display());
    let mismatch_root = format!("sslrootcert={}", ca(&mismatch).ca_cert.display());
    let ip = "127.0.0.1";

    let mut cases = Vec::new();
    for (server, name) in [(plain, "plain"), (&self_signed, "self-signed"), (tls_only, "tls-only CA")] {
        for query in [
            "",
            "sslmode=disable",
            "sslmode=prefer",
            "sslmode=require",
            "sslmode=verify-ca",
            "sslmode=verify-full",
            "sslmode=no-verify",
            "ssl=true",
            "ssl=1",
            "ssl=0",
            "ssl=false",
            "uselibpqcompat=true&sslmode=prefer",
            "uselibpqcompat=true&sslmode=require",
            "uselibpqcompat=true&sslmode=verify-full",
        ] {
            cases.push(PgCase::url(format!("{name} ?{query}"), url(server, ip, query)));
        }
    }
    for (query, server, name) in [
        (root_q.clone(), tls_only, "tls-only CA"),
        (format!("sslmode=require&{root_q}"), tls_only, "tls-only CA"),
        (format!("sslmode=verify-full&{root_q}"), tls_only, "tls-only CA"),
        (format!("uselibpqcompat=true&sslmode=verify-ca&{root_q}"), tls_only, "tls-only CA"),
        (format!("sslmode=verify-ca&{mismatch_root}"), &mismatch, "name mismatch"),
        (format!("sslmode=verify-full&{mismatch_root}"), &mismatch, "name mismatch"),
        (format!("uselibpqcompat=true&sslmode=require&{mismatch_root}"), &mismatch, "name mismatch"),
        ("sslmode=no-verify".to_string(), &mismatch, "name mismatch"),
    ] {
        cases.push(PgCase::url(format!("{name} ?{query}"), url(server, ip, &query)));
    }
    // A self-signed certificate trusted as itself (the manual's openssl recipe: CA:TRUE).
    let itself = format!("sslrootcert={}", ca(&self_signed).ca_cert.display());
    for query in [itself.clone(), format!("sslmode=verify-full&{itself}"), format!("sslmode=require&{itself}")] {
        cases.push(PgCase::url(format!("self-signed ?{query}"), url(&self_signed, "localhost", &query)));
    }
    cases.push(
        PgCase::url("Pool ca = the self-signed certificate", url(&self_signed, "localhost", ""))
            .pool(None, Some(&ca(&self_signed).ca_cert)),
    );
    cases.push(PgCase::url(
        "tls-only by name ?verify-full",
        url(tls_only, "localhost", &format!("sslmode=verify-full&{root_q}")),
    ));
    let cc = ca(&client_cert);
    let with_cert = format!(
        "sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        cc.ca_cert.display(),
        cc.client_cert.display(),
        cc.client_key.display()
    );
    cases.push(PgCase::url("client cert given", url(&client_cert, ip, &with_cert)));
    cases.push(PgCase::url(
        "client cert missing",
        url(&client_cert, ip, &format!("sslmode=verify-full&sslrootcert={}", cc.ca_cert.display())),
    ));
    // What the code passes to new Pool({ ssl }), and the URL that overrides it.
    let base = |server: &PgServer| url(server, ip, "");
    cases.push(PgCase::url("Pool no-verify, self-signed", base(&self_signed)).pool(Some(PoolSsl::NoVerify), None));
    cases.push(
        PgCase::url("Pool no-verify, URL require", url(&self_signed, ip, "sslmode=require"))
            .pool(Some(PoolSsl::NoVerify), None),
    );
    cases.push(PgCase::url("Pool no-verify, plain server", base(plain)).pool(Some(PoolSsl::NoVerify), None));
    cases.push(PgCase::url("Pool ca, tls-only", base(tls_only)).pool(None, Some(&root)));
    cases.push(PgCase::url("Pool ca, URL require", url(tls_only, ip, "sslmode=require")).pool(None, Some(&root)));
    cases.push(PgCase::url("Pool true, tls-only", base(tls_only)).pool(Some(PoolSsl::VerifyFull), None));
    cases.push(
        PgCase::url("Pool false, URL no-verify", url(&self_signed, ip, "sslmode=no-verify"))
            .pool(Some(PoolSsl::Disable), None),
    );
    // The environment fills in only where the URL and the Pool say nothing.
    cases.push(PgCase::url("PGSSLMODE=require, plain", base(plain)).env("PGSSLMODE", "require"));
    cases.push(PgCase::url("PGSSLMODE=require, self-signed", base(&self_signed)).env("PGSSLMODE", "require"));
    cases.push(PgCase::url("PGSSLMODE=no-verify, self-signed", base(&self_signed)).env("PGSSLMODE", "no-verify"));
    cases.push(PgCase::url("PGSSLMODE=disable, tls-only", base(tls_only)).env("PGSSLMODE", "disable"));
    cases.push(
        PgCase::url("PGSSLMODE=verify-full PGSSLROOTCERT", base(tls_only))
            .env("PGSSLMODE", "verify-full")
            .env("PGSSLROOTCERT", &root.display().to_string()),
    );
    cases.push(
        PgCase::url("PGSSLMODE=require, Pool false", base(plain))
            .env("PGSSLMODE", "require")
            .pool(Some(PoolSsl::Disable), None),
    );
    // DB_* instead of a URL.
    for (server, name, mode) in
        [(plain, "plain", None), (tls_only, "tls-only", None), (tls_only, "tls-only", Some("no-verify"))]
    {
        let mut case = PgCase {
            name: format!("DB_* {name} PGSSLMODE={mode:?}"),
            vars: vec![
                ("DB_HOST".into(), ip.into()),
                ("DB_PORT".into(), server.port.to_string()),
                ("DB_USER".into(), SUPERUSER.into()),
                ("DB_PASSWORD".into(), SUPERUSER_PASSWORD.into()),
                ("DB_NAME".into(), "postgres".into()),
            ],
            pool: ApiClient::default(),
        };
        if let Some(mode) = mode {
            case = case.env("PGSSLMODE", mode);
        }
        cases.push(case);
    }
    // Unix sockets, in every form node-postgres knows.
    let dir = plain.socket_dir.display().to_string();
    let port = plain.port;
    for (name, socket_url) in [
        ("?host=/dir", format!("postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@/postgres?host={dir}&port={port}")),
        ("%2Fdir host", format!("postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@{}:{port}/postgres", encode(&dir))),
        ("socket://", format!("socket://{SUPERUSER}:{SUPERUSER_PASSWORD}@{dir}?db=postgres&port={port}")),
        (
            "socket: + sslmode",
            format!(
                "socket:{dir}?db=postgres&port={port}&user={SUPERUSER}&password={SUPERUSER_PASSWORD}&sslmode=require"
            ),
        ),
        (
            "?host=/dir + sslmode=require",
            format!("postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@/postgres?host={dir}&port={port}&sslmode=require"),
        ),
    ] {
        cases.push(PgCase::url(format!("unix {name}"), socket_url));
    }
    // A raw '@' in the password: node-postgres splits at the last one.
    plain.sql(
        "postgres",
        "DO $$ BEGIN CREATE ROLE at_user LOGIN PASSWORD 'p@ss'; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    );
    cases.push(PgCase::url("raw @ in password", format!("postgresql://at_user:p@ss@{ip}:{}/postgres", plain.port)));
    assert_concordant(cases).await;
}

/// The probe's verdict on a REDIS_URL: parse, connect, PING.
async fn ours_redis(vars: &[(String, String)]) -> (Verdict, String) {
    match RedisTarget::from_env(&lookup(vars)) {
        Ok(target) => match mockmate_diag::probe::redis::connect(&target, DEADLINE).await {
            Ok(session) => (Verdict { ok: true, tls: session.info.tls }, "connected".into()),
            Err(f) => (Verdict { ok: false, tls: false }, f.message),
        },
        Err(f) => (Verdict { ok: false, tls: false }, f.message),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_redis_and_the_probe_agree_on_every_url_form() {
    let open = RedisServer::shared();
    let locked = RedisServer::builder().requirepass("defpw-sentinel").user("app", "apppw-sentinel").start();
    let tls = RedisServer::builder().tls().start();
    let self_signed = RedisServer::builder().self_signed().start();
    // A password with a '%' that starts no escape: libpq-style decoding keeps
    // it and logs in; node-redis's decodeURIComponent throws at createClient.
    let percent = RedisServer::builder().requirepass("pct%zz-sentinel").start();
    let socket_dir = tempfile::tempdir().expect("tempdir");
    let socket = socket_dir.path().join("redis.sock");
    let unix = RedisServer::builder()
        .arg("--unixsocket")
        .arg(&socket.display().to_string())
        .arg("--unixsocketperm")
        .arg("700")
        .start();
    let _ = &unix;
    let ca = tls.ca.as_ref().expect("TLS server").ca_cert.display().to_string();
    let at =
        |server: &RedisServer, userinfo: &str, path: &str| format!("redis://{userinfo}127.0.0.1:{}{path}", server.port);
    let mut cases: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut case = |name: &str, url: String, extra: &[(&str, &str)]| {
        let mut vars = vec![("REDIS_URL".to_string(), url)];
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        cases.push((name.to_string(), vars));
    };
    case("open", at(open, "", ""), &[]);
    case("open /2", at(open, "", "/2"), &[]);
    case("open /abc", at(open, "", "/abc"), &[]);
    case("open word@", at(open, "word@", ""), &[]);
    case("open :pw@", at(open, ":extra@", ""), &[]);
    case("locked, nothing", at(&locked, "", ""), &[]);
    case("locked :pw@", at(&locked, ":defpw-sentinel@", ""), &[]);
    case("locked pw@ (a user name)", at(&locked, "defpw-sentinel@", ""), &[]);
    case("locked default:pw@", at(&locked, "default:defpw-sentinel@", ""), &[]);
    case("locked :wrong@", at(&locked, ":wrong@", ""), &[]);
    case("locked app:pw@/3", at(&locked, "app:apppw-sentinel@", "/3"), &[]);
    case("locked app:wrong@", at(&locked, "app:wrong@", ""), &[]);
    case("password with a stray %", at(&percent, ":pct%zz-sentinel@", ""), &[]);
    case("password with %25", at(&percent, ":pct%25zz-sentinel@", ""), &[]);
    case("locked ?password=", format!("{}?password=defpw-sentinel", at(&locked, "", "")), &[]);
    let rediss = |host: &str| format!("rediss://{host}:{}", tls.port);
    case("rediss, no CA", rediss("localhost"), &[]);
    case("rediss #insecure", format!("{}#insecure", rediss("localhost")), &[]);
    case("rediss NODE_EXTRA_CA_CERTS", rediss("localhost"), &[("NODE_EXTRA_CA_CERTS", &ca)]);
    case("rediss by IP, NODE_EXTRA_CA_CERTS", rediss("127.0.0.1"), &[("NODE_EXTRA_CA_CERTS", &ca)]);
    case(
        "rediss, the API's socket.ca",
        rediss("localhost"),
        &[("REDIS_CA_CERT", &ca), ("PROBE_HONOR_REDIS_CA_CERT", "1")],
    );
    case("redis:// to a TLS port", format!("redis://127.0.0.1:{}", tls.port), &[]);
    let itself = self_signed.ca.as_ref().expect("TLS server").ca_cert.display().to_string();
    let self_signed_url = format!("rediss://localhost:{}", self_signed.port);
    case("rediss self-signed, no CA", self_signed_url.clone(), &[]);
    case(
        "rediss self-signed, socket.ca = itself",
        self_signed_url.clone(),
        &[("REDIS_CA_CERT", &itself), ("PROBE_HONOR_REDIS_CA_CERT", "1")],
    );
    case("rediss self-signed, NODE_EXTRA_CA_CERTS = itself", self_signed_url, &[("NODE_EXTRA_CA_CERTS", &itself)]);
    case("unix:///path", format!("unix://{}", socket.display()), &[]);
    case("unix:///path?db=1", format!("unix://{}?db=1", socket.display()), &[]);
    case("unix:/path", format!("unix:{}", socket.display()), &[]);
    case("IPv6 [::1]", format!("redis://[::1]:{}", open.port), &[]);
    let count = cases.len();
    let results: Vec<(String, (Verdict, String), (Verdict, String))> = futures::stream::iter(cases)
        .map(|(name, vars)| async move {
            let (theirs, ours) = futures::join!(node("redis_probe.js", &vars), ours_redis(&vars));
            (name, theirs, ours)
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let disagreements: Vec<String> = results
        .iter()
        .filter(|(_, (theirs, _), (ours, _))| theirs != ours)
        .map(|(name, (theirs, said), (ours, says))| {
            format!("{name}: node-redis {theirs:?} {}\n    mockmate-diag {ours:?} {says}", said.trim())
        })
        .collect();
    assert!(disagreements.is_empty(), "{} of {count} disagree:\n{}", disagreements.len(), disagreements.join("\n"));
}
