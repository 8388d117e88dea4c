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
//! manifest): the API really creates a session (and may take a credit). What it
//! created is looked up by the id its answer names — or, when it names none, by
//! the probe's job title, unique to this request — and deleted: the row, the
//! Redis key, and the user's credits set back if they changed (compare-and-set,
//! so a concurrent change is never overwritten). What was created and undone is
//! in the details; a clean-up that fails is a failure with the SQL to finish it.
//!
//! The bearer token is `MOCKMATE_API_TOKEN` when set, else an HS256 JWT valid
//! for 60 s, signed with this environment's `JWT_SECRET`. Neither, nor the
//! secret, ever reaches a message: the API's words are quoted with the token masked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::shared::api::{ms, quote, request_path, roots, target};
use super::shared::postgres::{ApiError, ident};
use crate::check::{Check, Ctx, KindDef, Outcome, Premise, Service, Verdict, params};
use crate::probe::api::jwt::{self, Token};
use crate::probe::api::{Answer, Exchange, send};
use crate::probe::postgres::{APPLICATION_NAME, PgSession, PgWriter, describe};
use crate::probe::{Cause, Failure};
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
        let Some(r) = result else {
            return Prediction::Absent(format!("{id} is not in this run's manifest"));
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

/// What the request left in the database and the cache, as looked up after it.
#[derive(Debug, Default)]
struct Left {
    /// The session row this request created: its id, and whose it is.
    row: Option<(Uuid, Option<Uuid>)>,
    /// Why the row could not be looked up.
    row_unknown: Option<String>,
    /// The Redis key of the session, when it exists.
    key: Option<String>,
    /// Why the key could not be looked up (`None`: looked, or nothing to look for).
    key_unknown: Option<String>,
    /// The user's credits after the request (`None`: no row, or unknown).
    credits_after: Option<i64>,
    /// How the row was found: by the id in the answer, or by the probe's job title.
    by_marker: bool,
}

/// What the clean-up did, and what it could not do.
#[derive(Debug, Default)]
struct Undone {
    created: Vec<String>,
    undone: Vec<String>,
    /// What is left to do by hand: complete statements.
    by_hand: Vec<String>,
    /// Why the clean-up failed.
    errors: Vec<String>,
}

/// The least time the clean-up keeps, whatever `--timeout` says; at most this much.
const MIN_RESERVE: Duration = Duration::from_millis(300);
const MAX_RESERVE: Duration = Duration::from_millis(1500);
/// The engine cuts a check at `--timeout` (plus a grace): our own deadline ends before.
const END_MARGIN: Duration = Duration::from_millis(50);

impl Check for SessionCreate {
    /// It makes the API write: never before its needs have passed.
    fn only_reads(&self) -> bool {
        false
    }

    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            let started = Instant::now();
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
            let end = started + ctx.timeout.saturating_sub(END_MARGIN);
            let (token, via) = match self.token(ctx, user) {
                Ok(t) => t,
                Err(outcome) => return outcome,
            };
            let mut secrets = Redactor::default();
            secrets.add(token.expose());
            let prediction = Prediction::read(ctx.finished(&self.predicted_by), &self.predicted_by, user);

            let probe = Uuid::new_v4();
            let (body, marker) = self.body(probe);
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
            let reserve = (ctx.timeout / 3).clamp(MIN_RESERVE, MAX_RESERVE);
            let budget =
                |reserve| end.saturating_duration_since(Instant::now()).saturating_sub(reserve).max(MIN_RESERVE);
            let roots = roots(ctx);
            let ask = async {
                // Nothing is asked of the API that cannot be checked and undone.
                let pg = ctx.postgres().await.map_err(|f| {
                    let message =
                        format!("cannot check what the API would store, so the request was not sent: {}", f.message);
                    Outcome::unreachable(Failure { message, ..f }, Service::Postgres)
                })?;
                let before = self.credits(&pg, user).await.map_err(|why| {
                    Outcome::problem(format!("cannot read user {user}'s credits, so the request was not sent: {why}"))
                        .premise(Premise::Table(self.users.clone()))
                })?;
                let answer = send(&target, &roots, &exchange, budget(reserve)).await;
                Ok::<_, Outcome>((pg, before, answer))
            };
            // The clean-up's connection opens while the API is asked: ready when its answer is.
            let (asked, writer) = futures::join!(ask, ctx.postgres_write(budget(reserve)));
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
            let left = self.left(ctx, &pg, user, id, marker.as_deref(), end).await;
            let undone = self.undo(ctx, user, before, &left, writer, end).await;
            let outcome = match (&answer, &heard) {
                (Ok(_), Some(heard)) => self.judge(heard, &prediction, &left, marker.as_deref(), user, via),
                (Err(f), _) => self.no_answer(f, user, marker.as_deref()),
                (Ok(_), None) => Outcome::fail("internal error: an answer that was not read"),
            };
            let credits_changed = matches!((before, left.credits_after), (Some(b), Some(a)) if a != b);
            let outcome = self.with_cleanup(outcome, heard.as_ref(), &left, credits_changed, undone);
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
                .detail("session_id", left.row.map(|(id, _)| id.to_string()).or(id.map(|i| i.to_string())))
                .detail("found_by", left.row.map(|_| if left.by_marker { "job title" } else { "id" }))
        }
        .boxed()
    }
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

    /// The request body with `{probe}` replaced, and the job title that marks it
    /// (when the title carries the placeholder).
    fn body(&self, probe: Uuid) -> (Value, Option<String>) {
        fn fill(v: &Value, probe: &str) -> Value {
            match v {
                Value::String(s) => Value::String(s.replace(PROBE, probe)),
                Value::Array(items) => Value::Array(items.iter().map(|i| fill(i, probe)).collect()),
                Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), fill(v, probe))).collect()),
                other => other.clone(),
            }
        }
        let marker = self
            .body
            .get("jobTitle")
            .and_then(Value::as_str)
            .filter(|t| t.contains(PROBE))
            .map(|t| t.replace(PROBE, &probe.to_string()));
        (fill(&self.body, &probe.to_string()), marker)
    }

    async fn credits(&self, pg: &PgSession, user: Uuid) -> Result<Option<i64>, String> {
        let sql = format!("SELECT credits::bigint FROM {} WHERE id = $1", ident(&self.users));
        match pg.query_typed_opt(&sql, &[(&user, Type::UUID)]).await {
            Ok(row) => Ok(row.and_then(|r| r.try_get::<_, Option<i64>>(0).ok().flatten())),
            Err(e) => Err(describe(&e)),
        }
    }

    /// What the request left: the row (by the answer's id, else by the probe's
    /// job title), its Redis key, the user's credits. One pipelined round on
    /// the shared session, the Redis lookup beside it.
    async fn left(
        &self,
        ctx: &Ctx,
        pg: &Arc<PgSession>,
        user: Uuid,
        id: Option<Uuid>,
        marker: Option<&str>,
        end: Instant,
    ) -> Left {
        let sessions = ident(&self.sessions);
        let row = async {
            let rows = match (id, marker) {
                (Some(id), _) => {
                    let sql = format!("SELECT id, user_id FROM {sessions} WHERE id = $1");
                    pg.query_typed(&sql, &[(&id, Type::UUID)]).await
                }
                (None, Some(marker)) => {
                    let sql =
                        format!("SELECT id, user_id FROM {sessions} WHERE user_id = $1 AND job_title = $2 LIMIT 2");
                    pg.query_typed(&sql, &[(&user, Type::UUID), (&marker, Type::TEXT)]).await
                }
                (None, None) => return Ok((None, false)),
            };
            let rows = rows.map_err(|e| describe(&e))?;
            let found = rows.first().and_then(|r| Some((r.try_get::<_, Uuid>(0).ok()?, r.try_get(1).ok().flatten())));
            Ok::<_, String>((found, id.is_none()))
        };
        let credits = self.credits(pg, user);
        let remaining = end.saturating_duration_since(Instant::now());
        let (row, redis) = futures::join!(
            tokio::time::timeout(remaining, async { futures::join!(row, credits) }),
            tokio::time::timeout(remaining, self.key_exists(ctx, id)),
        );
        let mut left = Left::default();
        match row {
            Ok((Ok((found, by_marker)), credits)) => {
                left.row = found;
                left.by_marker = by_marker && found.is_some();
                left.credits_after = credits.ok().flatten();
            }
            Ok((Err(why), _)) => left.row_unknown = Some(why),
            Err(_) => left.row_unknown = Some(format!("timed out after {}", crate::probe::human(remaining))),
        }
        match redis {
            Ok(Ok(key)) => left.key = key,
            Ok(Err(why)) => left.key_unknown = Some(why),
            Err(_) => {
                left.key_unknown = Some(format!("Redis did not answer within {}", crate::probe::human(remaining)))
            }
        }
        // A row found by its job title names the key the answer did not.
        if id.is_none()
            && left.key.is_none()
            && left.key_unknown.is_none()
            && let Some((row_id, _)) = left.row
        {
            let remaining = end.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, self.key_exists(ctx, Some(row_id))).await {
                Ok(Ok(key)) => left.key = key,
                Ok(Err(why)) => left.key_unknown = Some(why),
                Err(_) => left.key_unknown = Some("Redis did not answer in time".into()),
            }
        }
        left
    }

    /// `Some(key)` when the session's key exists; `Err` when Redis cannot be asked.
    async fn key_exists(&self, ctx: &Ctx, id: Option<Uuid>) -> Result<Option<String>, String> {
        let Some(id) = id else { return Ok(None) };
        let session = ctx.redis().await.map_err(|f| match f.cause {
            Some(Cause::Unset(_)) => "REDIS_URL is not set here".to_string(),
            _ => f.message,
        })?;
        let key = format!("{}{id}", self.key_prefix);
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS").arg(&key);
        let replies = session.round(&pipe, "EXISTS").await.map_err(|f| f.message)?;
        match replies.first() {
            Some(Ok(redis::Value::Int(1))) => Ok(Some(key)),
            Some(Ok(_)) => Ok(None),
            Some(Err(words)) => Err(format!("EXISTS {key} failed: {words}")),
            None => Err("no reply to EXISTS".into()),
        }
    }

    /// Deletes the row and the key the request created and sets the credits
    /// back (only if nobody changed them since): the SQL in one transaction, one
    /// round trip, on `writer` (connected while the API answered), the Redis DEL
    /// beside it.
    async fn undo(
        &self,
        ctx: &Ctx,
        user: Uuid,
        before: Option<i64>,
        left: &Left,
        writer: Result<PgWriter, Failure>,
        end: Instant,
    ) -> Undone {
        let mut out = Undone::default();
        let (sessions, users) = (ident(&self.sessions), ident(&self.users));
        // Never a row of someone else's: the request was made for `user`.
        let row = left.row.filter(|(_, owner)| *owner == Some(user)).map(|(id, _)| id);
        if let Some((id, owner)) = left.row.filter(|(_, owner)| *owner != Some(user)) {
            out.errors.push(format!(
                "session {id} belongs to {}, not to user {user}: left alone",
                owner.map(|o| o.to_string()).unwrap_or_else(|| "no user".into())
            ));
        }
        let credits = match (before, left.credits_after) {
            (Some(b), Some(a)) if a != b => Some((b, a)),
            _ => None,
        };
        if let Some(id) = row {
            out.created.push(format!("row {id} in {}", self.sessions));
        }
        if let Some((b, a)) = credits {
            out.created.push(format!("credits of user {user}: {b} → {a}"));
        }
        if let Some(key) = &left.key {
            out.created.push(format!("Redis key {key}"));
        }
        let remaining = end.saturating_duration_since(Instant::now());
        let sql = async {
            if row.is_none() && credits.is_none() {
                return None;
            }
            let writer = match writer {
                Ok(w) => w,
                Err(f) => return Some(Ok(Err(format!("cannot connect to clean up: {}", f.message)))),
            };
            Some(tokio::time::timeout(remaining, self.undo_sql(&writer, user, row, credits, remaining)).await)
        };
        let del = async {
            let key = left.key.as_ref()?;
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

        let delete_sql = |id: Uuid| format!("DELETE FROM {sessions} WHERE id = '{id}' AND user_id = '{user}';");
        let restore_sql =
            |b: i64, a: i64| format!("UPDATE {users} SET credits = {b} WHERE id = '{user}' AND credits = {a};");
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
                if let Some((b, a)) = credits {
                    if restored {
                        out.undone.push(format!("credits back to {b}"));
                    } else {
                        out.errors.push(format!(
                            "user {user}'s credits changed again after the request ({a} expected): not set back to {b}"
                        ));
                        out.by_hand
                            .push(format!("UPDATE {users} SET credits = credits + {} WHERE id = '{user}';", b - a));
                    }
                }
                None
            }
            Some(Ok(Err(why))) => Some(why),
            Some(Err(_)) => Some(format!("the clean-up did not finish within {}", crate::probe::human(remaining))),
        };
        if let Some(why) = failed {
            out.errors.push(why);
            out.by_hand.extend(row.map(delete_sql));
            out.by_hand.extend(credits.map(|(b, a)| restore_sql(b, a)));
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
        credits: Option<(i64, i64)>,
        budget: Duration,
    ) -> Result<(bool, bool), String> {
        let client = writer.client();
        let server_ms = budget.as_millis().max(100);
        // Settings LOCAL to the transaction: behind a pooler nothing outlives it.
        let begin = format!(
            "BEGIN; SET LOCAL statement_timeout = {server_ms}; SET LOCAL lock_timeout = {server_ms}; \
             SET LOCAL application_name = '{APPLICATION_NAME}'"
        );
        let delete_sql = format!("DELETE FROM {} WHERE id = $1 AND user_id = $2 RETURNING id", ident(&self.sessions));
        let restore_sql =
            format!("UPDATE {} SET credits = $1 WHERE id = $2 AND credits = $3 RETURNING id", ident(&self.users));
        let delete = async {
            match row {
                Some(id) => client
                    .query_typed(&delete_sql, &[(&id, Type::UUID), (&user, Type::UUID)])
                    .await
                    .map(|r| !r.is_empty()),
                None => Ok(false),
            }
        };
        let restore = async {
            match credits {
                Some((b, a)) => client
                    .query_typed(&restore_sql, &[(&b, Type::INT8), (&user, Type::UUID), (&a, Type::INT8)])
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

    /// The API's answer against the prediction and what the request left.
    fn judge(
        &self,
        heard: &Heard,
        prediction: &Prediction,
        left: &Left,
        marker: Option<&str>,
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
                let Some((row, _)) = left.row else {
                    if let Some(why) = &left.row_unknown {
                        return Outcome::problem(format!(
                            "the API answered {line} for user {user}, but whether it stored the session is unknown: {why}"
                        ))
                        .hint("check the sessions table by hand for the session in the API's answer");
                    }
                    let missing = match (id, marker) {
                        (Some(id), _) => format!("no row {id} in {sessions}"),
                        (None, Some(m)) => format!("no row in {sessions} with the probe's job title '{m}'"),
                        (None, None) => {
                            return Outcome::warn(format!(
                                "the API answered {line} without a session id (tried {}) and the body's job title has no {PROBE} to find the row by: cannot check what it stored",
                                self.pointers.join(", ")
                            ))
                            .hint("set session_id_pointers to where the API's answer puts the session's id");
                        }
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
                if let Prediction::Refused(e) = prediction {
                    return Outcome::fail(format!(
                        "the API created session {row} for user {user} ({line}), but the dry run predicted {} {e}: the API checks the user (or credits) differently, or uses another database",
                        e.status()
                    ))
                    .hint("compare the deployed routes/sessions.js with the fixed one, and the API's DATABASE_URL with this environment's");
                }
                let stored = format!("the API created session {row} for user {user} ({line} in {}ms)", heard.latency_ms);
                if id.is_none() {
                    return Outcome::warn(format!(
                        "{stored}, but its answer has no session id (tried {}): the desktop app cannot open it",
                        self.pointers.join(", ")
                    ))
                    .hint("answer with the session (res.status(201).json({ session })), or set session_id_pointers to where the id is");
                }
                match (&left.key, &left.key_unknown) {
                    (Some(key), _) => Outcome::pass(format!("{stored} and stored it: the row in {sessions} and {key} in Redis")),
                    (None, None) => Outcome::warn(format!(
                        "{stored} and its row, but not the Redis key {}{row}: caching is off (non-fatal: sessions work without it)",
                        self.key_prefix
                    ))
                    .hint("check the API's log for Redis errors at session creation and its REDIS_URL (runbook Issue 4)"),
                    (None, Some(why)) => Outcome::pass(format!("{stored} and its row in {sessions} (the cache was not checked: {why})")),
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
            Said::Other => Outcome::fail(format!(
                "the API answered {} {} with {line}: {words}{predicted}",
                "POST",
                self.path
            ))
            .hint(if heard.status == 404 {
                "no such route: check the base path in API_URL (or --api-url), or set path to the API's session-creation route"
            } else {
                "expected 201, or 400 INVALID_USER_REFERENCE / 403 INSUFFICIENT_CREDITS (runbook Step 3)"
            }),
        }
    }

    /// No answer (refused, timed out, TLS): the failure, and how to find a
    /// session the API may still create.
    fn no_answer(&self, f: &Failure, user: Uuid, marker: Option<&str>) -> Outcome {
        let later = match marker {
            Some(m) => format!(
                "; if the API creates the session after all: DELETE FROM {} WHERE user_id = '{user}' AND job_title = '{}';",
                ident(&self.sessions),
                m.replace('\'', "''")
            ),
            None => String::new(),
        };
        let mut outcome = Outcome::problem(format!("POST {}: {}", self.path, f.message))
            .hint(format!("{}{later}", f.hint.clone().unwrap_or_default()));
        for (k, v) in &f.details {
            outcome = outcome.detail(k, v.clone());
        }
        outcome
    }

    /// The clean-up's findings on top of the verdict: an answer other than 201
    /// that still stored a session or took a credit, and a clean-up that
    /// failed, are failures.
    fn with_cleanup(
        &self,
        mut outcome: Outcome,
        heard: Option<&Heard>,
        left: &Left,
        credits_changed: bool,
        undone: Undone,
    ) -> Outcome {
        let refused = heard.is_some_and(|h| !matches!(h.said, Said::Created { .. }));
        let mut anyway = Vec::new();
        if let Some((id, _)) = left.row.filter(|_| refused) {
            anyway.push(format!("stored session {id}"));
        }
        if refused && credits_changed {
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
        if !undone.errors.is_empty() {
            outcome.verdict = Verdict::Fail;
            outcome.message = format!("{}; clean-up failed: {}", outcome.message, undone.errors.join("; "));
            if !undone.by_hand.is_empty() {
                outcome.hint = Some(format!("finish the clean-up by hand: {}", undone.by_hand.join(" ")));
            }
        }
        outcome.detail("created", undone.created).detail("undone", undone.undone).detail("by_hand", undone.by_hand)
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
        assert_eq!(read(None), Prediction::Absent("postgres.session_insert is not in this run's manifest".into()));
    }

    #[test]
    fn the_body_carries_a_marker_unique_to_the_request() {
        let check = SessionCreate::build(Params::default()).expect("defaults build");
        let probe = Uuid::new_v4();
        let (body, marker) = check.body(probe);
        assert_eq!(body["jobTitle"], format!("mockmate-diag probe {probe}"));
        assert_eq!((body["difficulty"].as_str(), body["duration"].as_i64()), (Some("intermediate"), Some(30)));
        assert_eq!(marker, Some(format!("mockmate-diag probe {probe}")));
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
