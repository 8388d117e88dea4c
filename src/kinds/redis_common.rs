//! What the `redis.*` kinds share: the run's Redis session with the runbook's
//! impact in every hint, and checks judged from the connect-time INFO alone.

use std::collections::HashMap;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::check::{Check, Ctx, Outcome};
use crate::probe::redis::RedisSession;

/// The runbook's words for what a Redis problem costs MockMate.
pub const IMPACT: &str = "non-fatal: interview sessions still work, but caching is disabled";

/// The run's Redis session, or the connect failure as this check's problem,
/// with the runbook's impact appended to the fix.
pub async fn session(ctx: &Ctx) -> Result<Arc<RedisSession>, Outcome> {
    ctx.redis().await.map_err(|f| {
        let hint = match f.hint {
            // Not a parenthetical: the fix often ends with one already.
            Some(fix) => format!("{fix}; {IMPACT} until then"),
            None => format!("until Redis answers, MockMate runs {IMPACT}"),
        };
        Outcome::problem(f.message).hint(hint)
    })
}

/// A check judged from the connect-time INFO alone (`redis.writable`,
/// `redis.memory`, `redis.persistence`): it sends no command of its own.
pub struct FromInfo(pub fn(&HashMap<String, String>) -> Outcome);

impl Check for FromInfo {
    fn run<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Outcome> {
        async move {
            match session(ctx).await {
                Ok(session) => (self.0)(&session.info_fields),
                Err(outcome) => outcome,
            }
        }
        .boxed()
    }
}
