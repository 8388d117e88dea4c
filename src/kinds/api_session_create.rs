//! `api.session_create`: the runbook's Step 3 ("Verify the Fix"), done by the
//! tool — ask the running API to create a session, then check the database and
//! the cache behind its answer, then remove exactly what it created.
//!
//! The incident was an HTTP 201 while the insert had failed. `postgres.session_insert`
//! predicts the route from outside; this check asks the route itself and
//! compares: the API's answer against the run's own prediction (it runs
//! `after` the dry run and reads its result), and a 201 against the row in
//! `sessions` and the key in Redis. A 201 without a row is the incident.
//!
//! Only with `--allow-writes` and a user (`--user-id`, or `user_id` in the
//! manifest): the API really creates a session (and may take a credit). Only
//! what carries the request's marker — its job title, `mockmate-diag probe
//! <uuid>`, unique to the request — is deleted: a row the answer names without
//! it (an API that answers an existing session) is left alone, and said so.
//! The user's credits are set back only when this request's transaction took
//! them (compare-and-set on the value seen after it); else the SQL is given to
//! run by hand. What was created and undone is in the details.
//!
//! Time: the request goes out only while the look-up and the clean-up keep
//! their reserve of `--timeout`, and everything ends before the engine's
//! backstop; when the row is unknown after a 201 (or no answer came), the
//! marker's `DELETE` is given to run by hand.
//!
//! The bearer token is `MOCKMATE_API_TOKEN` when set, else an HS256 JWT valid
//! for 60 s, signed with this environment's `JWT_SECRET`; it is never sent over
//! plain HTTP to another machine. Neither it nor any secret of the environment
//! reaches a message: the API's words are masked with the run's redactor
//! before they are cut.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::shared::api::{UNREACHABLE, ms, quote, request_path, roots, target};
use super::shared::postgres::{ApiError, ident};
use crate::check::{Check, Ctx, KindDef, Outcome, Owner, Premise, Service, Verdict, params};
use crate::probe::api::jwt::{self, Token};
use crate::probe::api::{Answer, ApiTarget, Exchange, NoAnswer, send};
use crate::probe::postgres::{APPLICATION_NAME, PgSession, PgWriter, describe};
use crate::probe::{Cause, Failure, human};
use crate::redact::Redactor;
use crate::report::{CheckResult, Status};

pub static KIND: KindDef = KindDef {
    name: "api.session_create",
    title: "The API creates a session and stores it",
    description: "with --allow-writes and a user (--user-id or user_id): POST /api/sessions/create as the runbook's Step 3, the answer compared with postgres.session_insert's prediction; a 201 must have its row in sessions (else: the incident) and its Redis key; deletes exactly what the request created and restores credits",
    build: |t| Ok(Box::new(SessionCreate::build(params(t)?)?)),
};

/// The skip message without `--allow-writes` (a contract: scripts match it).
pub const READ_ONLY_RUN: &str =
    "read-only run; pass --allow-writes and --user-id to create a session through the API (deleted afterwards)";
/// The skip message without a user.
pub const NO_USER: &str =
    "no user to create a session for: pass --user-id (or set user_id in a manifest's api.session_create)";

/// The placeholder in the body's strings replaced by a fresh id per request.
const PROBE: &str = "{probe}";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    path: String,
    body: toml::Table,
    user_claims: Vec<String>,
    claims: toml::Table,
    user_id: Option<String>,
    session_id_pointers: Vec<String>,
    users: String,
    sessions: String,
    key_prefix: String,
    predicted_by: String,
}

impl Default for Params {
    fn default() -> Self {
        let mut body = toml::Table::new();
        // The runbook's request; the job title names the probe, so a row left
        // behind is recognisable, and unique, so it can be found without its id.
        body.insert("jobTitle".into(), format!("mockmate-diag probe {PROBE}").into());
        body.insert("difficulty".into(), "intermediate".into());
        body.insert("duration".into(), 30.into());
        body.insert("sessionType".into(), "technical".into());
        Params {
            path: "/api/sessions/create".into(),
            body,
            user_claims: vec!["id".into(), "userId".into(), "sub".into()],
            claims: toml::Table::new(),
            user_id: None,
            session_id_pointers: ["/session/id", "/id", "/data/id", "/sessionId", "/data/session/id"]
                .map(String::from)
                .to_vec(),
            users: "users".into(),
            sessions: "sessions".into(),
            key_prefix: "session:".into(),
            predicted_by: "postgres.session_insert".into(),
        }
    }
}

struct SessionCreate {
    path: String,
    body: Value,
    user_claims: Vec<String>,
    claims: Map<String, Value>,
    user_id: Option<Uuid>,
    pointers: Vec<String>,
    users: String,
    sessions: String,
    key_prefix: String,
    predicted_by: String,
}

impl SessionCreate {
    fn build(p: Params) -> Result<SessionCreate, String> {
        let path = request_path("path", &p.path)?;
        let user_id = match &p.user_id {
            Some(u) => Some(Uuid::parse_str(u.trim()).map_err(|_| format!("`user_id`: {u:?} is not a UUID"))?),
            None => None,
        };
        if p.user_claims.is_empty() || p.user_claims.iter().any(|c| c.trim().is_empty()) {
            return Err("`user_claims`: the claims that carry the user id, e.g. [\"id\", \"userId\", \"sub\"]".into());
        }
        if let Some(bad) = p.session_id_pointers.iter().find(|ptr| !ptr.starts_with('/')) {
            return Err(format!("`session_id_pointers`: {bad:?} is not a JSON pointer (like \"/session/id\")"));
        }
        if p.session_id_pointers.is_empty() {
            return Err("`session_id_pointers`: at least one JSON pointer (like \"/session/id\")".into());
        }
        super::shared::redis::key_prefix(&p.key_prefix)?;
        // The marker is what makes a session this request's: without it the
        // clean-up could not tell the probe's session from a user's.
        let marked = p.body.get("jobTitle").and_then(toml::Value::as_str).is_some_and(|t| t.contains(PROBE));
        if !marked {
            return Err(format!(
                "`body`: jobTitle must contain {PROBE} (replaced by an id unique to the request: the clean-up deletes \
                 only the session whose job_title carries it), e.g. jobTitle = \"mockmate-diag probe {PROBE}\""
            ));
        }
        let json = |t: toml::Table, field: &str| {
            serde_json::to_value(t).map_err(|e| format!("`{field}`: cannot be sent as JSON ({e})"))
        };
        let claims = match json(p.claims, "claims")? {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        Ok(SessionCreate {
            path,
            body: json(p.body, "body")?,
            user_claims: p.user_claims,
            claims,
            user_id,
            pointers: p.session_id_pointers,
            users: p.users,
            sessions: p.sessions,
            key_prefix: p.key_prefix,
            predicted_by: p.predicted_by,
        })
    }
}

/// What the run's dry run predicted the API would answer for this user.
#[derive(Debug, Clone, PartialEq)]
enum Prediction {
    /// 201: it inserted a session and read it back.
    Created,
    /// 400 INVALID_USER_REFERENCE or 403 INSUFFICIENT_CREDITS.
    Refused(ApiError),
    /// Another failure (schema drift, a read-only database …): its message.
    Fails(String),
    /// Nothing to compare with, and why.
    Absent(String),
}

impl Prediction {
    fn read(result: Option<CheckResult>, id: &str, user: Uuid) -> Prediction {
        // The manifest loader put `id` in this check's `after`: its result is
        // recorded before this check starts, unless the run stopped it first.
        let Some(r) = result else {
            return Prediction::Absent(format!("{id} has not finished"));
        };
        if r.status == Status::Skip {
            return Prediction::Absent(format!("{id} was skipped ({})", r.message));
        }
        let str_detail = |k: &str| r.details.get(k).and_then(Value::as_str).map(str::to_string);
        if let Some(other) = str_detail("user_id").filter(|u| *u != user.to_string()) {
            return Prediction::Absent(format!(
                "{id} dry-ran for user {other}, not {user} (pass --user-id {user} to compare)"
            ));
        }
        match str_detail("api_error").as_deref().and_then(ApiError::from_code) {
            Some(e) => Prediction::Refused(e),
            None if r.status == Status::Pass => Prediction::Created,
            None => Prediction::Fails(r.message),
        }
    }

    /// For messages and `details.predicted`.
    fn describe(&self) -> String {
        match self {
            Prediction::Created => "201 (the dry run created the session)".into(),
            Prediction::Refused(e) => format!("{} {e}", e.status()),
            Prediction::Fails(why) => format!("a failure: {why}"),
            Prediction::Absent(why) => format!("none: {why}"),
        }
    }
}

/// What the API answered, read.
#[derive(Debug)]
enum Said {
    /// 2xx, with the session id its body names (a UUID), if any.
    Created { id: Option<Uuid> },
    /// 400/403 with one of the fixed route's codes.
    Refused(ApiError),
    /// 401, or 403 without a code: the token was not accepted.
    Unauthorized,
    /// 5xx.
    Failed,
    /// Anything else (a 404: no such route; a 400 of another kind …).
    Other,
}

/// The API's answer and the words it came with.
struct Heard {
    said: Said,
    status: u16,
    /// `404 Not Found`.
    status_line: String,
    /// The body's error, masked and truncated.
    words: String,
    latency_ms: f64,
}

impl Heard {
    fn read(answer: &Answer, pointers: &[String], secrets: &Redactor) -> Heard {
        let status = answer.status;
        let reason = hyper::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
        let json = answer.json();
        let code = json.as_ref().and_then(|j| j.get("code")).and_then(Value::as_str).and_then(ApiError::from_code);
        let said = match (status, code) {
            (200..=299, _) => Said::Created {
                id: json.as_ref().and_then(|j| {
                    pointers.iter().find_map(|p| j.pointer(p).and_then(Value::as_str)?.trim().parse::<Uuid>().ok())
                }),
            },
            (400 | 403, Some(code)) => Said::Refused(code),
            (401 | 403, None) => Said::Unauthorized,
            (500..=599, _) => Said::Failed,
            _ => Said::Other,
        };
        Heard {
            said,
            status,
            status_line: format!("{status} {reason}").trim_end().to_string(),
            words: quote(&answer.body, secrets),
            latency_ms: ms(answer.timings.answer),
        }
    }
}

/// Where the bearer token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    ApiToken,
    Minted,
}

/// A row of `sessions` as the look-up saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    id: Uuid,
    owner: Option<Uuid>,
    /// Its `job_title` is this request's marker: the request created it.
    ours: bool,
    /// The transaction that wrote it (`xmin`), to tell who took a credit.
    xmin: Option<String>,
}

/// What the request left in the database and the cache, as looked up after it.
#[derive(Debug, Default)]
struct Left {
    /// The row the answer's id names, if it exists.
    named: Option<Row>,
    /// The row carrying the request's marker: the session this request created.
    marked: Option<Row>,
    /// Why the rows could not be looked up.
    row_unknown: Option<String>,
    /// The Redis key of the session, when it exists.
    key: Option<String>,
    /// The key's value carries the request's marker (the cached session is this request's).
    key_marked: bool,
    /// Why the key could not be looked up (`None`: looked, or nothing to look for).
    key_unknown: Option<String>,
    /// The user's credits after the request, and the transaction that last
    /// wrote the user's row (`None`: no such user, or unknown).
    credits_after: Option<(Option<i64>, String)>,
}

impl Left {
    /// The row this request created for `user`: the one the clean-up deletes.
    fn ours(&self, user: Uuid) -> Option<&Row> {
        self.marked.as_ref().filter(|r| r.owner == Some(user))
    }

    /// The stored row the answer is judged by: the one it names, else the marked one.
    fn stored(&self) -> Option<&Row> {
        self.named.as_ref().or(self.marked.as_ref())
    }
}

/// What the clean-up did, and what it could not do.
#[derive(Debug, Default)]
struct Undone {
    created: Vec<String>,
    undone: Vec<String>,
    /// What the request did not create (or cannot be shown to have), left as it is.
    left_alone: Vec<String>,
    /// What is left to do by hand: complete statements.
    by_hand: Vec<String>,
    /// What a person must judge by hand (no statement fits every case), in words.
    to_judge: Vec<String>,
    /// Why the clean-up failed.
    errors: Vec<String>,
}

/// A change of the user's credits across the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Credits {
    before: i64,
    after: i64,
}

/// What is kept of `--timeout` after the request for the look-up and the
/// clean-up: a third of it, at least [`MIN_RESERVE`], at most [`MAX_RESERVE`];
/// half each.
const MIN_RESERVE: Duration = Duration::from_millis(300);
const MAX_RESERVE: Duration = Duration::from_millis(1500);
/// The least time a request is sent with: less, and it is not sent at all.
const MIN_REQUEST: Duration = Duration::from_millis(150);
/// The engine cuts a check at `--timeout` plus a grace (100 ms, counted from
/// about when this check starts): our own deadline ends this much before
/// `--timeout`, so the clean-up is never cut midway.
const END_MARGIN: Duration = Duration::from_millis(100);

/// The check's time, laid out once when it starts.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    /// Everything is done by then.
    end: Instant,
    /// The look-up gives up at `end - cleanup`.
    cleanup: Duration,
    /// The request's answer must come by `end - reserve`.
    reserve: Duration,
}

impl Schedule {
    fn new(started: Instant, timeout: Duration) -> Schedule {
        let reserve = (timeout / 3).clamp(MIN_RESERVE, MAX_RESERVE);
        Schedule { end: started + timeout.saturating_sub(END_MARGIN), cleanup: reserve / 2, reserve }
    }

    /// How long the request may take if it is sent now: `None` when what is
    /// left would not keep the reserve (and a useful time to answer).
    fn request(&self, now: Instant) -> Option<Duration> {
        let left = self.end.saturating_duration_since(now).saturating_sub(self.reserve);
        (left >= MIN_REQUEST).then_some(left)
    }

    fn lookup_end(&self) -> Instant {
        self.end.checked_sub(self.cleanup).unwrap_or(self.end)
    }
}

impl Check for SessionCreate {
    /// It makes the API write: never before its needs have passed.
    fn only_reads(&self) -> bool {
        false
    }

    /// It compares the API's answer with the dry run's result.
    fn reads_results_of(&self) -> Vec<(&'static str, String)> {
        vec![("predicted_by", self.predicted_by.clone())]
    }

    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let schedule = Schedule::new(Instant::now(), ctx.timeout);
            let target = match target(ctx) {
                Ok(t) => t,
                Err(outcome) => return outcome,
            };
            if !ctx.allow_writes {
                return Outcome::skip(READ_ONLY_RUN);
            }
            let Some(user) = ctx.user_id.or(self.user_id) else {
                return Outcome::skip(NO_USER);
            };
            let (token, via) = match self.token(ctx, user) {
                Ok(t) => t,
                Err(outcome) => return outcome,
            };
            if let Err(outcome) = refuse_plain_http(&target, via) {
                return outcome;
            }
            // It runs after api.reachable: an API that did not answer that check
            // would only cost this one its deadline again.
            let unreachable = ctx
                .finished(Owner::ApiReachable.id())
                .is_some_and(|r| r.details.get(UNREACHABLE).and_then(Value::as_bool) == Some(true));
            if unreachable {
                return Outcome::skip(format!(
                    "the API did not answer (see {}): no session was requested",
                    Owner::ApiReachable
                ))
                .see(Owner::ApiReachable);
            }
            // Masked before the API's words are cut: the token and every secret of the run.
            let mut secrets = ctx.secrets();
            secrets.add(token.expose());
            let prediction = Prediction::read(ctx.finished(&self.predicted_by), &self.predicted_by, user);

            let (body, marker) = self.body(Uuid::new_v4());
            let exchange = Exchange {
                method: hyper::Method::POST,
                path: target.path(&self.path),
                headers: vec![
                    ("content-type", "application/json".into()),
                    ("accept", "application/json".into()),
                    ("authorization", token.bearer()),
                ],
                body: Some(body.to_string().into_bytes()),
            };
            let (roots, _) = roots(ctx);
            let writer_deadline = schedule.request(Instant::now()).unwrap_or_default();
            let ask = async {
                // Nothing is asked of the API that cannot be checked and undone.
                let pg = ctx.postgres().await.map_err(|f| {
                    let message =
                        format!("cannot check what the API would store, so the request was not sent: {}", f.message);
                    Outcome::unreachable(Failure { message, ..f }, Service::Postgres)
                })?;
                // Not past the time the request must go out by.
                let cutoff = schedule.end.checked_sub(schedule.reserve).unwrap_or(schedule.end);
                let within = cutoff.saturating_duration_since(Instant::now());
                let before = match tokio::time::timeout(within, self.user_row(&pg, user)).await {
                    Ok(read) => read.map_err(|why| {
                        Outcome::problem(format!(
                            "cannot read user {user}'s credits, so the request was not sent: {why}"
                        ))
                        .premise(Premise::Table(self.users.clone()))
                    })?,
                    Err(_) => Err(Outcome::problem(format!(
                        "user {user}'s credits were not read within {}, so the request was not sent",
                        human(within)
                    ))
                    .hint("PostgreSQL is slow to answer: see postgres.connect's latency, or raise --timeout"))?,
                };
                let Some(budget) = schedule.request(Instant::now()) else {
                    return Err(Outcome::problem(format!(
                        "the request was not sent: {} of --timeout {} was left, and checking and undoing what it \
                         creates keeps {} of it",
                        human(schedule.end.saturating_duration_since(Instant::now())),
                        human(ctx.timeout),
                        human(schedule.reserve)
                    ))
                    .hint("raise --timeout: after the request, the look-up and the clean-up keep a third of it"));
                };
                let answer = send(&target, &roots, &exchange, budget).await;
                Ok::<_, Outcome>((pg, before, answer))
            };
            // The clean-up's connection opens while the API is asked: ready when its answer is.
            let (asked, writer) = futures::join!(ask, ctx.postgres_write(writer_deadline));
            let (pg, before, answer) = match asked {
                Ok(asked) => asked,
                Err(outcome) => return outcome,
            };
            drop(token);

            let heard = answer.as_ref().ok().map(|a| Heard::read(a, &self.pointers, &secrets));
            let id = match &heard {
                Some(Heard { said: Said::Created { id }, .. }) => *id,
                _ => None,
            };
            // A request that never left cannot have created anything.
            let sent = answer.as_ref().map_or_else(|no| no.sent, |_| true);
            let left = if sent {
                self.left(ctx, &pg, user, id, &marker, schedule.lookup_end()).await
            } else {
                Left::default()
            };
            let before = before.and_then(|(credits, _)| credits);
            let credits = match (before, left.credits_after.as_ref().and_then(|(c, _)| *c)) {
                (Some(before), Some(after)) if before != after => Some(Credits { before, after }),
                _ => None,
            };
            let undone = self.undo(ctx, user, &marker, credits, &left, writer, schedule.end).await;
            let line = exchange.line();
            let outcome = match (&answer, &heard) {
                (Ok(_), Some(heard)) => self.judge(heard, &line, &prediction, &left, &marker, user, via),
                (Err(no), _) => self.no_answer(no, &line, user, &marker, &undone),
                (Ok(_), None) => Outcome::fail("internal error: an answer that was not read"),
            };
            let outcome = self.with_cleanup(outcome, heard.as_ref(), &left, user, credits, undone);
            outcome
                .detail("url", target.url(&self.path))
                .detail("user_id", user.to_string())
                .detail(
                    "token",
                    match via {
                        Via::ApiToken => "MOCKMATE_API_TOKEN".to_string(),
                        Via::Minted => format!(
                            "HS256 JWT signed with JWT_SECRET, valid 60s, claims {}",
                            self.user_claims.join(", ")
                        ),
                    },
                )
                .detail("marker", marker.clone())
                .detail("predicted", prediction.describe())
                .detail("api_status", heard.as_ref().map(|h| h.status))
                .detail(
                    "api_code",
                    match heard.as_ref().map(|h| &h.said) {
                        Some(Said::Refused(e)) => Value::from(*e),
                        _ => Value::Null,
                    },
                )
                .detail("latency_ms", heard.as_ref().map(|h| h.latency_ms))
                .detail("session_id", left.stored().map(|r| r.id.to_string()).or(id.map(|i| i.to_string())))
                .detail(
                    "found_by",
                    match (&left.named, &left.marked) {
                        (Some(named), _) if named.ours => Some("id"),
                        (_, Some(_)) => Some("job title"),
                        _ => None,
                    },
                )
        }
        .boxed()
    }
}

/// The token is a credential: over plain HTTP anyone on the path reads it.
/// Only to this machine (loopback) is `http://` fine.
fn refuse_plain_http(target: &ApiTarget, via: Via) -> Result<(), Outcome> {
    if target.tls || is_loopback(&target.host) {
        return Ok(());
    }
    let token = match via {
        Via::ApiToken => "MOCKMATE_API_TOKEN",
        Via::Minted => "a token signed with JWT_SECRET",
    };
    Err(Outcome::problem(format!(
        "not sending {token} over plain HTTP to {}: anyone on the way could read it and act as the user for as long \
         as it is valid",
        target.addr()
    ))
    .hint(format!(
        "use the API's https:// address in {}, or run mockmate-diag on the API's host against http://127.0.0.1:$PORT",
        target.source.label()
    )))
}

/// `localhost`, a name under `.localhost` (RFC 6761), or a loopback address.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl SessionCreate {
    /// `MOCKMATE_API_TOKEN`, else a JWT signed with `JWT_SECRET` for `user`.
    fn token(&self, ctx: &Ctx, user: Uuid) -> Result<(Token, Via), Outcome> {
        if let Some(token) = ctx.env.non_empty("MOCKMATE_API_TOKEN") {
            return Ok((jwt::given(&token), Via::ApiToken));
        }
        let Some(secret) = ctx.env.non_empty("JWT_SECRET") else {
            return Err(Outcome::problem("no token for the API: neither MOCKMATE_API_TOKEN nor JWT_SECRET is set")
                .hint("set JWT_SECRET to the API's (the checks sign a 60-second token with it), or MOCKMATE_API_TOKEN to a token for the user")
                .premise(Premise::Set("JWT_SECRET".into())));
        };
        let mut claims = self.claims.clone();
        for name in &self.user_claims {
            claims.insert(name.clone(), user.to_string().into());
        }
        Ok((jwt::sign(&secret, &claims, jwt::now()), Via::Minted))
    }

    /// The request body with `{probe}` replaced, and the job title that marks
    /// it (the build made sure the title carries the placeholder).
    fn body(&self, probe: Uuid) -> (Value, String) {
        fn fill(v: &Value, probe: &str) -> Value {
            match v {
                Value::String(s) => Value::String(s.replace(PROBE, probe)),
                Value::Array(items) => Value::Array(items.iter().map(|i| fill(i, probe)).collect()),
                Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), fill(v, probe))).collect()),
                other => other.clone(),
            }
        }
        let body = fill(&self.body, &probe.to_string());
        let marker = body.get("jobTitle").and_then(Value::as_str).unwrap_or_default().to_string();
        (body, marker)
    }

    /// The user's credits and the transaction that last wrote the user's row
    /// (`None`: no such user).
    async fn user_row(&self, pg: &PgSession, user: Uuid) -> Result<Option<(Option<i64>, String)>, String> {
        let sql = format!("SELECT credits::bigint, xmin::text FROM {} WHERE id = $1", ident(&self.users));
        match pg.query_typed_opt(&sql, &[(&user, Type::UUID)]).await {
            Ok(row) => Ok(row.map(|r| {
                (r.try_get::<_, Option<i64>>(0).ok().flatten(), r.try_get::<_, String>(1).unwrap_or_default())
            })),
            Err(e) => Err(describe(&e)),
        }
    }

    /// What the request left: the row its answer names, the row that carries
    /// its marker, the session's Redis key, the user's credits. One pipelined
    /// round on the shared session, the Redis look-up beside it; all by `until`.
    async fn left(
        &self,
        ctx: &Ctx,
        pg: &Arc<PgSession>,
        user: Uuid,
        id: Option<Uuid>,
        marker: &str,
        until: Instant,
    ) -> Left {
        let sessions = ident(&self.sessions);
        let read = |r: &tokio_postgres::Row| {
            Some(Row {
                id: r.try_get::<_, Uuid>(0).ok()?,
                owner: r.try_get(1).ok().flatten(),
                ours: r.try_get::<_, Option<bool>>(2).ok().flatten().unwrap_or(false),
                xmin: r.try_get(3).ok(),
            })
        };
        let named = async {
            let Some(id) = id else { return Ok(None) };
            let sql = format!(
                "SELECT id, user_id, coalesce(job_title = $2, false), xmin::text FROM {sessions} WHERE id = $1"
            );
            let rows = pg.query_typed(&sql, &[(&id, Type::UUID), (&marker, Type::TEXT)]).await;
            rows.map(|rows| rows.first().and_then(read)).map_err(|e| describe(&e))
        };
        let marked = async {
            let sql = format!("SELECT id, user_id, true, xmin::text FROM {sessions} WHERE job_title = $1 LIMIT 1");
            let rows = pg.query_typed(&sql, &[(&marker, Type::TEXT)]).await;
            rows.map(|rows| rows.first().and_then(read)).map_err(|e| describe(&e))
        };
        let user = self.user_row(pg, user);
        let remaining = until.saturating_duration_since(Instant::now());
        let (rows, redis) = futures::join!(
            tokio::time::timeout(remaining, async { futures::join!(named, marked, user) }),
            tokio::time::timeout(remaining, self.key(ctx, id, marker)),
        );
        let mut left = Left::default();
        match rows {
            Ok((Ok(named), Ok(marked), user)) => {
                left.named = named;
                left.marked = marked;
                left.credits_after = user.ok().flatten();
            }
            Ok((Err(why), _, _) | (_, Err(why), _)) => left.row_unknown = Some(why),
            Err(_) => left.row_unknown = Some(format!("timed out after {}", human(remaining))),
        }
        let no_answer = || format!("Redis did not answer within {}", human(remaining));
        match redis {
            Ok(Ok(key)) => (left.key, left.key_marked) = key.map_or((None, false), |(k, m)| (Some(k), m)),
            Ok(Err(why)) => left.key_unknown = Some(why),
            Err(_) => left.key_unknown = Some(no_answer()),
        }
        // The marked row names the key when the answer named another id, or none.
        if let Some(row) = left.marked.as_ref().filter(|r| Some(r.id) != id)
            && left.key.is_none()
            && left.key_unknown.is_none()
        {
            let remaining = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, self.key(ctx, Some(row.id), marker)).await {
                Ok(Ok(key)) => (left.key, left.key_marked) = key.map_or((None, false), |(k, m)| (Some(k), m)),
                Ok(Err(why)) => left.key_unknown = Some(why),
                Err(_) => left.key_unknown = Some("Redis did not answer in time".into()),
            }
        }
        left
    }

    /// `Some((key, marked))` when the session's key exists, `marked` when its
    /// value carries the request's marker; `Err` when Redis cannot be asked.
    async fn key(&self, ctx: &Ctx, id: Option<Uuid>, marker: &str) -> Result<Option<(String, bool)>, String> {
        let Some(id) = id else { return Ok(None) };
        let session = ctx.redis().await.map_err(|f| match f.cause {
            Some(Cause::Unset(_)) => "REDIS_URL is not set here".to_string(),
            _ => f.message,
        })?;
        let key = format!("{}{id}", self.key_prefix);
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS").arg(&key).cmd("GET").arg(&key);
        let replies = session.round(&pipe, "EXISTS").await.map_err(|f| f.message)?;
        let marked = match replies.get(1) {
            Some(Ok(redis::Value::BulkString(bytes))) => String::from_utf8_lossy(bytes).contains(marker),
            // Not a string (a hash …): its value is not read, so it is not shown to be ours.
            _ => false,
        };
        match replies.first() {
            Some(Ok(redis::Value::Int(1))) => Ok(Some((key, marked))),
            Some(Ok(_)) => Ok(None),
            Some(Err(words)) => Err(format!("EXISTS {key} failed: {words}")),
            None => Err("no reply to EXISTS".into()),
        }
    }

    /// Undoes what the request created, and only that: the row that carries
    /// its marker (and is the user's), the Redis key of that row or whose value
    /// carries the marker, and the credits — set back only when this request's
    /// transaction took them, compare-and-set on the value seen after it. The
    /// SQL in one transaction, one round trip, on `writer` (connected while the
    /// API answered), the Redis DEL beside it; all by `end`.
    #[allow(clippy::too_many_arguments)]
    async fn undo(
        &self,
        ctx: &Ctx,
        user: Uuid,
        marker: &str,
        credits: Option<Credits>,
        left: &Left,
        writer: Result<PgWriter, Failure>,
        end: Instant,
    ) -> Undone {
        let mut out = Undone::default();
        let (sessions, users) = (ident(&self.sessions), ident(&self.users));
        let quoted = marker.replace('\'', "''");
        let row = left.ours(user).map(|r| r.id);
        if let Some(named) = left.named.as_ref().filter(|r| !r.ours) {
            out.left_alone.push(format!(
                "session {} (the answer names it, but its job title is not this request's marker)",
                named.id
            ));
        }
        if let Some(other) = left.marked.as_ref().filter(|r| r.owner != Some(user)) {
            out.errors.push(format!(
                "session {} carries this request's marker but belongs to {}, not to user {user}: left alone",
                other.id,
                other.owner.map(|o| o.to_string()).unwrap_or_else(|| "no user".into())
            ));
            out.by_hand.push(format!("DELETE FROM {sessions} WHERE id = '{}' AND job_title = '{quoted}';", other.id));
        }
        // Credits go back only when the transaction that created this request's
        // session is the last that wrote the user's row, and took rather than gave.
        let ours_xmin = left.ours(user).and_then(|r| r.xmin.clone());
        let user_xmin = left.credits_after.as_ref().map(|(_, xmin)| xmin.clone());
        let restore = credits.filter(|c| c.after < c.before && ours_xmin.is_some() && ours_xmin == user_xmin);
        if let Some(id) = row {
            out.created.push(format!("row {id} in {}", self.sessions));
        }
        if let Some(c) = credits {
            out.created.push(format!("credits of user {user}: {} → {}", c.before, c.after));
            if restore.is_none() {
                out.errors.push(format!(
                    "user {user}'s credits changed {} → {} during the request, not (only) by the transaction that \
                     created this request's session: not set back",
                    c.before, c.after
                ));
                // Which part was this request's is unknown: no statement would be right.
                out.to_judge.push(format!(
                    "set user {user}'s credits back by what this request took, if anything (they were {} before it, \
                     {} after it)",
                    c.before, c.after
                ));
            }
        }
        let key = left
            .key
            .as_ref()
            .filter(|k| left.key_marked || row.is_some_and(|id| **k == format!("{}{id}", self.key_prefix)));
        if let Some(k) = &left.key {
            if key.is_some() {
                out.created.push(format!("Redis key {k}"));
            } else {
                out.left_alone.push(format!("Redis key {k} (not shown to be this request's)"));
            }
        }
        let remaining = end.saturating_duration_since(Instant::now());
        let sql = async {
            if row.is_none() && restore.is_none() {
                return None;
            }
            let writer = match writer {
                Ok(w) => w,
                Err(f) => return Some(Ok(Err(format!("cannot connect to clean up: {}", f.message)))),
            };
            let undo = self.undo_sql(&writer, user, row, marker, restore, remaining);
            Some(tokio::time::timeout(remaining, undo).await)
        };
        let del = async {
            let key = key?;
            let del = async {
                let session = ctx.redis().await.map_err(|f| f.message)?;
                let mut pipe = redis::pipe();
                pipe.cmd("DEL").arg(key);
                match session.round(&pipe, "DEL").await.map_err(|f| f.message)?.first() {
                    Some(Ok(_)) => Ok(()),
                    Some(Err(words)) => Err(format!("DEL {key} failed: {words}")),
                    None => Err("no reply to DEL".to_string()),
                }
            };
            Some((key, tokio::time::timeout(remaining, del).await))
        };
        let (sql, del) = futures::join!(sql, del);

        let delete_sql = |id: Uuid| {
            format!("DELETE FROM {sessions} WHERE id = '{id}' AND user_id = '{user}' AND job_title = '{quoted}';")
        };
        let restore_sql = |c: Credits| {
            format!("UPDATE {users} SET credits = {} WHERE id = '{user}' AND credits = {};", c.before, c.after)
        };
        let failed = match sql {
            None => None,
            Some(Ok(Ok((deleted, restored)))) => {
                if let Some(id) = row {
                    if deleted {
                        out.undone.push(format!("deleted row {id}"));
                    } else {
                        out.errors.push(format!("row {id} was gone before the clean-up deleted it"));
                    }
                }
                if let Some(c) = restore {
                    if restored {
                        out.undone.push(format!("credits back to {}", c.before));
                    } else {
                        out.errors.push(format!(
                            "user {user}'s credits changed again after the request ({} expected): not set back to {}",
                            c.after, c.before
                        ));
                        out.by_hand.push(format!(
                            "UPDATE {users} SET credits = credits + {} WHERE id = '{user}';",
                            c.before - c.after
                        ));
                    }
                }
                None
            }
            Some(Ok(Err(why))) => Some(why),
            Some(Err(_)) => Some(format!("the clean-up did not finish within {}", human(remaining))),
        };
        if let Some(why) = failed {
            out.errors.push(why);
            out.by_hand.extend(row.map(delete_sql));
            out.by_hand.extend(restore.map(restore_sql));
        }
        match del {
            None => {}
            Some((key, Ok(Ok(())))) => out.undone.push(format!("DEL {key}")),
            Some((key, Ok(Err(why)))) => {
                out.errors.push(why);
                out.by_hand.push(format!("redis-cli DEL {key}"));
            }
            Some((key, Err(_))) => {
                out.errors.push(format!("DEL {key} did not answer in time"));
                out.by_hand.push(format!("redis-cli DEL {key}"));
            }
        }
        out
    }

    /// `(row deleted, credits restored)`, in one transaction on a connection of its own.
    async fn undo_sql(
        &self,
        writer: &PgWriter,
        user: Uuid,
        row: Option<Uuid>,
        marker: &str,
        credits: Option<Credits>,
        budget: Duration,
    ) -> Result<(bool, bool), String> {
        let client = writer.client();
        let server_ms = budget.as_millis().max(100);
        // Settings LOCAL to the transaction: behind a pooler nothing outlives it.
        let begin = format!(
            "BEGIN; SET LOCAL statement_timeout = {server_ms}; SET LOCAL lock_timeout = {server_ms}; \
             SET LOCAL application_name = '{APPLICATION_NAME}'"
        );
        // The marker as well as the id: never a row this request did not create.
        let delete_sql = format!(
            "DELETE FROM {} WHERE id = $1 AND user_id = $2 AND job_title = $3 RETURNING id",
            ident(&self.sessions)
        );
        let restore_sql =
            format!("UPDATE {} SET credits = $1 WHERE id = $2 AND credits = $3 RETURNING id", ident(&self.users));
        let delete = async {
            match row {
                Some(id) => client
                    .query_typed(&delete_sql, &[(&id, Type::UUID), (&user, Type::UUID), (&marker, Type::TEXT)])
                    .await
                    .map(|r| !r.is_empty()),
                None => Ok(false),
            }
        };
        let restore = async {
            match credits {
                Some(c) => client
                    .query_typed(&restore_sql, &[(&c.before, Type::INT8), (&user, Type::UUID), (&c.after, Type::INT8)])
                    .await
                    .map(|r| !r.is_empty()),
                None => Ok(false),
            }
        };
        // Queued back to back: one round trip. A failed statement aborts the
        // transaction, and COMMIT then rolls it back.
        let (begun, deleted, restored, committed) =
            futures::join!(client.batch_execute(&begin), delete, restore, client.batch_execute("COMMIT"));
        begun.map_err(|e| format!("cannot start the clean-up: {}", describe(&e)))?;
        let deleted = deleted.map_err(|e| format!("cannot delete the session: {}", describe(&e)))?;
        let restored = restored.map_err(|e| format!("cannot set the credits back: {}", describe(&e)))?;
        committed.map_err(|e| format!("cannot commit the clean-up: {}", describe(&e)))?;
        Ok((deleted, restored))
    }

    /// `DELETE … WHERE user_id = … AND job_title = '<marker>';`: what to run by
    /// hand when it is unknown whether (or which) session the API stored.
    fn delete_by_marker(&self, user: Uuid, marker: &str) -> String {
        format!(
            "DELETE FROM {} WHERE user_id = '{user}' AND job_title = '{}';",
            ident(&self.sessions),
            marker.replace('\'', "''")
        )
    }

    /// The API's answer against the prediction and what the request left.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &self,
        heard: &Heard,
        request: &str,
        prediction: &Prediction,
        left: &Left,
        marker: &str,
        user: Uuid,
        via: Via,
    ) -> Outcome {
        let (line, words) = (&heard.status_line, &heard.words);
        let sessions = &self.sessions;
        let predicted = match prediction {
            Prediction::Absent(why) => format!(" (no prediction to compare: {why})"),
            p => format!(" (the dry run predicted {})", p.describe()),
        };
        match &heard.said {
            Said::Created { id } => {
                if let Some(why) = &left.row_unknown {
                    return Outcome::problem(format!(
                        "the API answered {line} for user {user}, but whether it stored the session is unknown: {why}"
                    ))
                    .hint(format!(
                        "look for the probe's session and delete it: {} (and redis-cli DEL {}<its id>)",
                        self.delete_by_marker(user, marker),
                        self.key_prefix
                    ));
                }
                let Some(row) = left.stored() else {
                    let missing = match id {
                        Some(id) => format!("no row {id} in {sessions}"),
                        None => format!("no row in {sessions} with the probe's job title '{marker}'"),
                    };
                    let cached = match &left.key {
                        Some(key) => format!("; Redis has {key}, so the desktop app gets \"Session not found\""),
                        None => String::new(),
                    };
                    return Outcome::fail(format!(
                        "the API answers {line} and stores nothing: {missing} for user {user}{cached} — the masked failure of production-session-fix.md{predicted}"
                    ))
                    .hint(
                        "deploy the fixed routes/sessions.js (a transaction, the user check, 400 INVALID_USER_REFERENCE / \
                         403 INSUFFICIENT_CREDITS instead of 201) and restart the API (runbook Step 2); if it is deployed, \
                         the API writes to another database than DATABASE_URL names here",
                    )
                    .detail("incident", true);
                };
                if let (Some(id), None) = (id, &left.named) {
                    return Outcome::fail(format!(
                        "the API answered {line} with session {id}, but stored this request's session as {}: the desktop app gets \"Session not found\"",
                        row.id
                    ))
                    .hint("answer with the id of the row the route inserted (RETURNING id)");
                }
                if !row.ours {
                    return Outcome::warn(format!(
                        "the API answered {line} with session {}, which this request did not create (its job title is not the probe's '{marker}'): it returned an existing session, so what it stores for a new one was not seen",
                        row.id
                    ))
                    .hint("if the route returns an existing session on purpose (an idempotent create), give api.session_create a user without one; else answer with the row the route inserted");
                }
                if let Prediction::Refused(e) = prediction {
                    return Outcome::fail(format!(
                        "the API created session {} for user {user} ({line}), but the dry run predicted {} {e}: the API checks the user (or credits) differently, or uses another database",
                        row.id,
                        e.status()
                    ))
                    .hint("compare the deployed routes/sessions.js with the fixed one, and the API's DATABASE_URL with this environment's");
                }
                let stored =
                    format!("the API created session {} for user {user} ({line} in {}ms)", row.id, heard.latency_ms);
                if id.is_none() {
                    return Outcome::warn(format!(
                        "{stored}, but its answer has no session id (tried {}): the desktop app cannot open it",
                        self.pointers.join(", ")
                    ))
                    .hint("answer with the session (res.status(201).json({ session })), or set session_id_pointers to where the id is");
                }
                match (&left.key, &left.key_unknown) {
                    (Some(key), _) => {
                        Outcome::pass(format!("{stored} and stored it: the row in {sessions} and {key} in Redis"))
                    }
                    (None, None) => Outcome::warn(format!(
                        "{stored} and its row, but not the Redis key {}{}: caching is off (non-fatal: sessions work without it)",
                        self.key_prefix, row.id
                    ))
                    .hint("check the API's log for Redis errors at session creation and its REDIS_URL (runbook Issue 4)"),
                    (None, Some(why)) => Outcome::pass(format!(
                        "{stored} and its row in {sessions} (the cache was not checked: {why})"
                    )),
                }
            }
            Said::Refused(code) => match prediction {
                Prediction::Refused(p) if p == code => Outcome::pass(format!(
                    "the API refused as predicted: {line} {code} for user {user} ({words})"
                )),
                Prediction::Absent(why) => Outcome::pass(format!(
                    "the API refused properly: {line} {code} for user {user} ({words}); no prediction to compare: {why}"
                )),
                Prediction::Created => Outcome::fail(format!(
                    "the API answered {line} {code} for user {user}, but the dry run created a session for that user: the API reads another database than DATABASE_URL here, or checks the user differently"
                ))
                .hint("compare the API's DATABASE_URL with this environment's, and its user check with the fixed route's (SELECT id, credits FROM users WHERE id = $1 AND is_active = true)"),
                other => Outcome::fail(format!(
                    "the API answered {line} {code} for user {user}, but the dry run predicted {}",
                    other.describe()
                ))
                .hint("the API and this environment disagree: compare the API's DATABASE_URL with this one's"),
            },
            Said::Unauthorized => match via {
                Via::Minted => Outcome::fail(format!(
                    "the API rejected the token ({line}: {words}): its JWT_SECRET differs from this environment's, or it reads the user from other claims than {}",
                    self.user_claims.join(", ")
                ))
                .hint("give the API and this environment the same JWT_SECRET (and restart the API), or set user_claims (and claims) to what its auth middleware reads"),
                Via::ApiToken => Outcome::fail(format!(
                    "the API rejected MOCKMATE_API_TOKEN ({line}: {words}): it has expired, or was issued for another environment"
                ))
                .hint(format!("set MOCKMATE_API_TOKEN to a fresh token for user {user}, or unset it to have one signed with JWT_SECRET")),
            },
            Said::Failed => {
                let why = match prediction {
                    Prediction::Created => " though the dry run created one: the API's own code or configuration fails (its log has the error)".to_string(),
                    Prediction::Refused(e) => format!(" where the fixed route answers {} {e}", e.status()),
                    Prediction::Fails(m) => format!(", as the dry run predicted: {m}"),
                    Prediction::Absent(why) => format!(" (no prediction to compare: {why})"),
                };
                Outcome::fail(format!("the API failed to create a session for user {user}: {line}: {words}{why}"))
                    .hint("read the API's log for this request's error; the runbook's fixed route answers 400/403 with a code, never 5xx for a user problem")
            }
            Said::Other => Outcome::fail(format!("the API answered {request} with {line}: {words}{predicted}")).hint(
                if heard.status == 404 {
                    "no such route: check the base path in API_URL (or --api-url), or set path to the API's session-creation route"
                } else {
                    "expected 201, or 400 INVALID_USER_REFERENCE / 403 INSUFFICIENT_CREDITS (runbook Step 3)"
                },
            ),
        }
    }

    /// No answer (refused, timed out, TLS). When the API cannot be reached,
    /// the finding rests on that (`api.reachable` owns it) unless the clean-up
    /// has something to say. When the request went out, the API may still
    /// create the session: the marker's `DELETE` is given to run by hand.
    fn no_answer(&self, no: &NoAnswer, request: &str, user: Uuid, marker: &str, undone: &Undone) -> Outcome {
        let f = &no.failure;
        let mut hint: Vec<String> = f.hint.iter().cloned().collect();
        if no.sent {
            hint.push(format!(
                "if the API creates the session after all: {} (and redis-cli DEL {}<its id>)",
                self.delete_by_marker(user, marker),
                self.key_prefix
            ));
        }
        let mut outcome = Outcome::problem(format!("{request}: {}", f.message));
        if !hint.is_empty() {
            outcome = outcome.hint(hint.join("; "));
        }
        for (k, v) in &f.details {
            outcome = outcome.detail(k, v.clone());
        }
        let nothing_to_say = undone.created.is_empty() && undone.errors.is_empty() && undone.left_alone.is_empty();
        if no.unreachable && nothing_to_say && f.cause.is_none() {
            outcome = outcome.premise(Premise::Reachable(Service::Api));
        }
        outcome
    }

    /// The clean-up's findings on top of the verdict: an answer other than 201
    /// that still stored a session or took a credit, and a clean-up that
    /// failed, are failures; what was left alone is said.
    fn with_cleanup(
        &self,
        mut outcome: Outcome,
        heard: Option<&Heard>,
        left: &Left,
        user: Uuid,
        credits: Option<Credits>,
        undone: Undone,
    ) -> Outcome {
        let refused = heard.is_some_and(|h| !matches!(h.said, Said::Created { .. }));
        let mut anyway = Vec::new();
        if let Some(row) = left.ours(user).filter(|_| refused) {
            anyway.push(format!("stored session {}", row.id));
        }
        if refused && credits.is_some_and(|c| c.after < c.before) {
            anyway.push("took a credit".to_string());
        }
        if !anyway.is_empty() {
            outcome.verdict = Verdict::Fail;
            outcome.message = format!(
                "{}; yet it {} anyway: the route is not one transaction",
                outcome.message,
                anyway.join(" and ")
            );
            outcome.hint = Some(
                "deploy the fixed routes/sessions.js: BEGIN … COMMIT around the user check, the insert and the credits, ROLLBACK on any error".into(),
            );
        }
        if !undone.undone.is_empty() {
            outcome.message = format!("{}; undone: {}", outcome.message, undone.undone.join(", "));
        }
        if !undone.left_alone.is_empty() {
            outcome.message = format!("{}; left alone: {}", outcome.message, undone.left_alone.join(", "));
        }
        if !undone.errors.is_empty() {
            outcome.verdict = Verdict::Fail;
            outcome.message = format!("{}; clean-up failed: {}", outcome.message, undone.errors.join("; "));
            let mut hint = Vec::new();
            if !undone.by_hand.is_empty() {
                hint.push(format!("finish the clean-up by hand: {}", undone.by_hand.join(" ")));
            }
            hint.extend(undone.to_judge);
            if !hint.is_empty() {
                outcome.hint = Some(hint.join("; "));
            }
        }
        outcome
            .detail("created", undone.created)
            .detail("undone", undone.undone)
            .detail("left_alone", undone.left_alone)
            .detail("by_hand", undone.by_hand)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::run_kind;
    use crate::report::Severity;
    use serde_json::json;

    const USER: &str = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";

    fn dry_run(status: Status, message: &str, details: Value) -> Option<CheckResult> {
        Some(CheckResult {
            id: "postgres.session_insert".into(),
            kind: "postgres.session_insert".into(),
            category: "postgres".into(),
            title: String::new(),
            severity: Severity::Fail,
            status,
            message: message.into(),
            hint: None,
            duration_ms: 0,
            details: details.as_object().cloned().unwrap_or_default(),
            ending: crate::report::Ending::Ran,
            needs: Vec::new(),
            from_configuration: false,
        })
    }

    #[test]
    fn the_prediction_is_read_from_the_dry_runs_result_for_the_same_user() {
        let user: Uuid = USER.parse().expect("uuid");
        let read = |r| Prediction::read(r, "postgres.session_insert", user);
        assert_eq!(
            read(dry_run(Status::Pass, "inserted", json!({"user_id": USER, "api_error": null}))),
            Prediction::Created
        );
        assert_eq!(
            read(dry_run(Status::Fail, "x", json!({"user_id": USER, "api_error": "INVALID_USER_REFERENCE"}))),
            Prediction::Refused(ApiError::InvalidUserReference)
        );
        assert_eq!(
            read(dry_run(Status::Warn, "x", json!({"user_id": USER, "api_error": "INSUFFICIENT_CREDITS"}))),
            Prediction::Refused(ApiError::InsufficientCredits)
        );
        assert_eq!(
            read(dry_run(Status::Fail, "schema drift", json!({"user_id": USER, "api_error": null}))),
            Prediction::Fails("schema drift".into())
        );
        assert_eq!(
            read(dry_run(Status::Skip, "skipped by --skip", json!({}))),
            Prediction::Absent("postgres.session_insert was skipped (skipped by --skip)".into())
        );
        let other = read(dry_run(Status::Pass, "inserted", json!({"user_id": "00000000-0000-0000-0000-000000000001"})));
        assert!(matches!(&other, Prediction::Absent(why) if why.contains("pass --user-id")), "{other:?}");
        assert_eq!(read(None), Prediction::Absent("postgres.session_insert has not finished".into()));
    }

    #[test]
    fn the_body_carries_a_marker_unique_to_the_request() {
        let check = SessionCreate::build(Params::default()).expect("defaults build");
        let probe = Uuid::new_v4();
        let (body, marker) = check.body(probe);
        assert_eq!(body["jobTitle"], format!("mockmate-diag probe {probe}"));
        assert_eq!((body["difficulty"].as_str(), body["duration"].as_i64()), (Some("intermediate"), Some(30)));
        assert_eq!(marker, format!("mockmate-diag probe {probe}"));
        // Without the marker the clean-up could not tell the probe's session from a user's.
        let table: toml::Table = "body = { jobTitle = \"Test Session\", duration = 30 }".parse().expect("TOML");
        let err = (super::KIND.build)(table).err().map(|e| e.0).unwrap_or_default();
        assert!(err.starts_with("`body`: jobTitle must contain {probe}"), "{err}");
    }

    #[test]
    fn the_request_goes_out_only_while_the_look_up_and_clean_up_keep_their_reserve() {
        let start = Instant::now();
        let s = Schedule::new(start, Duration::from_secs(3));
        assert_eq!((s.reserve, s.cleanup), (Duration::from_secs(1), Duration::from_millis(500)));
        // 3 s − 100 ms margin − 1 s reserve.
        assert_eq!(s.request(start), Some(Duration::from_millis(1900)));
        assert_eq!(s.request(start + Duration::from_millis(1800)), None, "100 ms would be left for the request");
        assert_eq!(s.lookup_end(), start + Duration::from_millis(2400));
        // The whole check ends before the engine's backstop (--timeout + 100 ms).
        assert!(s.end < start + Duration::from_secs(3));
        let tight = Schedule::new(start, Duration::from_millis(400));
        assert_eq!(tight.request(start), None, "nothing would be left after the reserve");
        let long = Schedule::new(start, Duration::from_secs(30));
        assert_eq!(long.reserve, MAX_RESERVE);
    }

    #[test]
    fn no_answer_says_what_to_do_without_a_stray_separator() {
        let check = SessionCreate::build(Params::default()).expect("defaults build");
        let user: Uuid = USER.parse().expect("uuid");
        let line = "POST /api/sessions/create";
        let bare = NoAnswer { failure: Failure::new("no route"), unreachable: false, sent: false };
        let o = check.no_answer(&bare, line, user, "mockmate-diag probe 1", &Undone::default());
        assert_eq!((o.message.as_str(), o.hint), ("POST /api/sessions/create: no route", None));
        let sent = NoAnswer { sent: true, unreachable: true, ..bare };
        let o = check.no_answer(&sent, line, user, "mockmate-diag probe 1", &Undone::default());
        assert_eq!(
            o.hint.as_deref(),
            Some(
                "if the API creates the session after all: DELETE FROM \"sessions\" WHERE user_id = \
                 '3f2504e0-4f89-11d3-9a0c-0305e82c3301' AND job_title = 'mockmate-diag probe 1'; (and redis-cli DEL \
                 session:<its id>)"
            )
        );
        // Unreachable with nothing created: the finding is api.reachable's.
        assert_eq!(o.causes.premises, [Premise::Reachable(Service::Api)]);
    }

    #[test]
    fn the_token_goes_over_plain_http_only_to_this_machine() {
        let at = |url: &str| {
            let vars = crate::probe::failure::lookup(&[]);
            ApiTarget::resolve(Some(url), &vars).expect("valid").expect("set")
        };
        for ok in [
            "http://127.0.0.1:3000",
            "http://localhost:3000",
            "http://[::1]:3000",
            "http://api.localhost",
            "https://api.example.com",
        ] {
            assert!(refuse_plain_http(&at(ok), Via::Minted).is_ok(), "{ok}");
        }
        let refused = refuse_plain_http(&at("http://10.0.0.5:3000"), Via::ApiToken).expect_err("another machine");
        assert_eq!(
            refused.message,
            "not sending MOCKMATE_API_TOKEN over plain HTTP to 10.0.0.5:3000: anyone on the way could read it and act \
             as the user for as long as it is valid"
        );
        assert!(refused.hint.unwrap_or_default().starts_with("use the API's https:// address in --api-url"));
    }

    #[tokio::test]
    async fn a_read_only_run_skips_saying_how_to_enable_it() {
        let r = run_kind(&super::KIND, "", &[("API_URL", "http://127.0.0.1:9")], "production").await;
        assert_eq!((r.status, r.message.as_str()), (Status::Skip, READ_ONLY_RUN));
    }

    #[test]
    fn parameters_are_checked_when_the_manifest_loads() {
        for (params, field) in [
            ("path = \"api/sessions\"", "path"),
            ("user_id = \"me\"", "user_id"),
            ("user_claims = []", "user_claims"),
            ("session_id_pointers = [\"session.id\"]", "session_id_pointers"),
            ("key_prefix = \"\"", "key_prefix"),
            ("bdy = {}", "bdy"),
        ] {
            let table: toml::Table = params.parse().expect("TOML");
            let err = (super::KIND.build)(table).err().map(|e| e.0).unwrap_or_default();
            assert!(err.contains(field), "{params}: {err}");
        }
    }
}
