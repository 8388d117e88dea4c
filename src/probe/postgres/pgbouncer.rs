//! PgBouncer's admin console (`PGBOUNCER_URL`, the virtual database `pgbouncer`):
//! the pool's own limits, which behind a pooler are the API's, not the server's.
//!
//! The console speaks only the simple query protocol, one command per message,
//! and a `SET` there changes PgBouncer's live configuration: so only `SHOW`
//! commands are sent, each its own message, all in one round trip.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt;
use tokio_postgres::SimpleQueryMessage;

use super::connect::connect;
use super::failure::describe;
use super::ssl::{ApiClient, ClientKind};
use super::target::{PgSource, PgTarget};
use crate::probe::{EnvLookup, Failure};

/// One row of a `SHOW` command: column → value (text, as the console sends it).
pub type ShowRow = BTreeMap<String, String>;

/// What the console said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BouncerState {
    /// `PgBouncer 1.18.0`.
    pub version: String,
    /// `SHOW CONFIG`: key → value.
    pub config: BTreeMap<String, String>,
    pub pools: Vec<ShowRow>,
    pub databases: Vec<ShowRow>,
}

impl BouncerState {
    /// The `SHOW POOLS` row of `database` and `user`.
    pub fn pool(&self, database: &str, user: &str) -> Option<&ShowRow> {
        self.pools
            .iter()
            .find(|p| p.get("database").is_some_and(|d| d == database) && p.get("user").is_some_and(|u| u == user))
    }

    /// The `SHOW DATABASES` row of `database`.
    pub fn database(&self, database: &str) -> Option<&ShowRow> {
        self.databases.iter().find(|d| d.get("name").is_some_and(|n| n == database))
    }
}

/// Reads the console named by `PGBOUNCER_URL`; `None` when it is not set.
pub async fn admin_console(get: EnvLookup<'_>, deadline: Duration) -> Option<Result<BouncerState, Failure>> {
    let raw = get("PGBOUNCER_URL").map(|v| v.trim().to_string()).filter(|v| !v.is_empty())?;
    Some(read(&raw, get, deadline).await)
}

async fn read(raw: &str, get: EnvLookup<'_>, deadline: Duration) -> Result<BouncerState, Failure> {
    // libpq's meanings: the console is an ops tool's door, not the API's.
    let api = ApiClient { client: ClientKind::Libpq, ..ApiClient::default() };
    let target = PgTarget::from_url_as(raw, PgSource::PgBouncerUrl, get, &api)?;
    // One deadline for the whole visit: login and SHOWs together.
    let end = tokio::time::Instant::now() + deadline;
    let conn = connect(&target, deadline).await?;
    let client = conn.client;
    let show = |what: &'static str| {
        let client = &client;
        async move {
            let stream = client.simple_query_raw(what).await?;
            stream.try_collect::<Vec<SimpleQueryMessage>>().await
        }
    };
    let shown = async {
        futures::try_join!(show("SHOW VERSION"), show("SHOW CONFIG"), show("SHOW POOLS"), show("SHOW DATABASES"))
    };
    let (version, config, pools, databases) = match tokio::time::timeout_at(end, shown).await {
        Ok(Ok(all)) => all,
        Ok(Err(e)) => {
            return Err(Failure::new(format!(
                "PgBouncer's admin console (PGBOUNCER_URL) refused SHOW: {}",
                describe(&e)
            ))
            .with_hint(
                "PGBOUNCER_URL must name the virtual database pgbouncer as a user in admin_users or stats_users",
            ));
        }
        Err(_) => return Err(Failure::new("PgBouncer's admin console (PGBOUNCER_URL) did not answer SHOW in time")),
    };
    let config = rows(&config)
        .into_iter()
        .filter_map(|r| Some((r.get("key")?.clone(), r.get("value").cloned().unwrap_or_default())))
        .collect();
    let version = rows(&version).first().and_then(|r| r.get("version").cloned()).unwrap_or_default();
    Ok(BouncerState { version, config, pools: rows(&pools), databases: rows(&databases) })
}

fn rows(messages: &[SimpleQueryMessage]) -> Vec<ShowRow> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                row.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_string(), row.get(i).unwrap_or_default().to_string()))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}
