//! `mockmate-diag serve`: the checks over HTTP, for Prometheus (`/probe`,
//! `/metrics`) and Kubernetes (`/healthz`), never writing to a target.
//!
//! - [`targets`]: what is watched (the environment's own target, or a targets file);
//! - [`runner`]: one target's cache, single flight and deadlines, each run on its own runtime;
//! - [`http`]: the endpoints; [`metrics`]: the exporter's own metrics;
//! - [`listener`]: connections: backlog, cap, timeouts, TLS;
//! - [`web_config`], [`auth`]: `--web.config.file` (TLS, client certificates, basic auth).
//!
//! Shutdown (SIGTERM, SIGINT): no new connection is accepted, requests in flight
//! are answered, and the process exits 0 — within [`SHUTDOWN_LIMIT`]: runs still
//! going after [`FINISH_GRACE`] are interrupted (their checks end as `skip`).

mod auth;
mod http;
mod listener;
mod metrics;
mod runner;
mod targets;
mod web_config;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{CommonArgs, RunArgs, ServeArgs};
use crate::error::UsageError;
use crate::output::Body;
use crate::output::Output;
use crate::report::ExitCode;
use crate::run::{self, Interrupt, Threads};

/// How long runs in flight at shutdown may go on before they are interrupted.
pub const FINISH_GRACE: Duration = Duration::from_secs(5);
/// How long after the signal the process is gone, whatever is still open.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(9);

/// What is refused, and why, when given with `serve`.
const NEVER_WRITES: &str = "serve never writes to a target: --allow-writes (and the session-creation dry run it \
enables) is for a run by hand (mockmate-diag --allow-writes)";

/// Serves until SIGTERM or SIGINT. `vars` is the process environment (the
/// default target's), `cwd` where its `.env` files are looked for.
pub fn main(
    common: &CommonArgs,
    run: &RunArgs,
    args: ServeArgs,
    vars: Vec<(String, String)>,
    cwd: &Path,
    out: &mut Output,
) -> Result<ExitCode, UsageError> {
    if args.allow_writes || run.allow_writes {
        return Err(UsageError::new(NEVER_WRITES));
    }
    if let Some(flag) = run.given().first() {
        return Err(UsageError::new(format!(
            "{flag} is for runs, not for `serve` (serve takes --env, --env-file, --checks, --timeout, --listen, --targets, --cache, --web.config.file)"
        )));
    }
    let loaded = targets::load(common, args.targets.as_deref(), vars, cwd)?;
    let web = match &args.web_config {
        Some(path) => Some(web_config::load(path)?),
        None => None,
    };
    // Each target's responses are redacted with the process's secrets and its
    // own (a weak password of one target must not mask words in another's);
    // what the process prints (and a panic) with all of them.
    let process = out.redactor().clone();
    let mut everything = process.clone();
    for target in &loaded {
        everything.extend(&target.plan.secrets());
    }
    out.set_redactor(everything);

    let runtime = run::runtime(Threads::All)?;
    let interrupt = Interrupt::default();
    let names: Vec<String> = loaded.iter().map(|t| t.name.clone()).collect();
    let metrics = Arc::new(metrics::Metrics::new(names.iter().map(String::as_str)));
    let runners: BTreeMap<String, Arc<runner::Runner>> = loaded
        .into_iter()
        .map(|t| {
            let mut own = process.clone();
            own.extend(&t.plan.secrets());
            (t.name, Arc::new(runner::Runner::new(t.plan, Body::new(own), args.cache, interrupt.clone())))
        })
        .collect();
    let app = Arc::new(http::App { runners, metrics: metrics.clone(), body: Body::new(process) });
    let (tls, auth, headers, security) = match web {
        Some(web) => {
            (web.tls.clone(), auth::Auth::new(web.users.clone()).map(Arc::new), web.headers.clone(), web.describe())
        }
        None => (None, None, Vec::new(), "no TLS, no login".to_string()),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let serving =
        listener::Serving { router: http::router(app, auth, &headers), tls: tls.map(tokio_rustls::TlsAcceptor::from) };

    let listener = runtime
        .block_on(async { listener::bind(args.listen) })
        .map_err(|e| UsageError::new(format!("--listen {}: cannot listen: {e}", args.listen)))?;
    let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| args.listen.to_string());
    out.stderr(&format!(
        "mockmate-diag: serving {} on {scheme}://{address} (/probe, /healthz, /report, /metrics; cache {}; {security})\n",
        names.iter().map(|n| format!("target {n}")).collect::<Vec<_>>().join(", "),
        humantime::format_duration(args.cache),
    ));
    let conns = listener::Conns::new(listener::MAX_CONNECTIONS, metrics.connections(), metrics.shed());
    let signal = runtime
        .block_on(async { shutdown_signal() })
        .map_err(|e| UsageError::new(format!("cannot listen for signals: {e}")))?;

    runtime.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(listener::serve(listener, serving, conns, stop_rx));
        let name = signal.await;
        let _ = stop_tx.send(true);
        let finish = async {
            tokio::time::sleep(FINISH_GRACE).await;
            interrupt.trigger(name);
            std::future::pending::<()>().await;
        };
        tokio::select! {
            _ = server => {}
            () = finish => {}
            () = tokio::time::sleep(SHUTDOWN_LIMIT) => {}
        }
    });
    // Runs still going hold blocking threads; never wait on them past the limit.
    runtime.shutdown_timeout(Duration::from_millis(200));
    out.stderr("mockmate-diag: stopped\n");
    Ok(ExitCode::Ok)
}

/// Resolves with the signal's name at the first SIGTERM or SIGINT. Installed
/// before the first connection is accepted, so no signal falls between.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = &'static str> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}
