//! What the env kinds share: the loader's reading of a variable, said beside
//! the variable's finding ("dotenv reads JWT_SECRET (.env.production:4) as 3
//! characters: the '#' starts a comment; quote the value"), as
//! `postgres.connect` says where psql would differ. The facts are the env
//! layer's ([`crate::envctx::Reading`]); this only puts them into a finding.

use serde_json::{Map, Value};

use crate::check::{Ctx, Outcome, Verdict};

/// `outcome` with the loader's reading of each of `names` that would surprise
/// a person or a shell: appended to the message, listed in `details.readings`;
/// when a reading changed the value (a `#` cut it, an unclosed quote is part
/// of it) and the finding is not a pass, the hint starts with quoting it.
pub fn with_readings(mut outcome: Outcome, ctx: &Ctx, names: &[&str]) -> Outcome {
    let mut readings = Map::new();
    let mut quote = Vec::new();
    for name in names {
        let Some(note) = ctx.env.reading_note(name) else { continue };
        if let Some(r) = ctx.env.reading(name).filter(|r| r.changes_the_value()) {
            quote.push(format!("{name} in {}:{}", r.file, r.line));
        }
        readings.insert(name.to_string(), Value::from(note));
    }
    if readings.is_empty() {
        return outcome;
    }
    let notes: Vec<&str> = readings.values().filter_map(Value::as_str).collect();
    outcome.message = format!("{}; {}", outcome.message, notes.join("; "));
    if outcome.verdict != Verdict::Pass && !quote.is_empty() {
        let fix =
            format!("quote the value of {} (NAME=\"…\") so that the API's loader reads all of it", quote.join(", "));
        outcome.hint = Some(match outcome.hint.take() {
            Some(hint) => format!("{fix}; {hint}"),
            None => fix,
        });
    }
    outcome.detail("readings", readings)
}

/// The API's loader ended URL variable `name` at a `#` and what is left has no
/// userinfo: the `#` was most likely in the password, and the host and port a
/// parser finds in the rest are made of the password's first characters — a
/// finding must then not print them. `None` otherwise.
pub fn cut_in_userinfo(ctx: &Ctx, name: &str) -> Option<Outcome> {
    let reading = ctx.env.reading(name)?;
    let value = ctx.env.get(name)?;
    let cut = reading.differences.contains(&crate::envctx::Difference::HashCut);
    (cut && value.contains("://") && !value.contains('@')).then(|| {
        Outcome::problem(format!(
            "{name} is cut at a '#' inside its user and password: the API gets a URL with no password and \
             the wrong host"
        ))
        .hint(format!(
            "quote the value ({name}=\"…\") or percent-encode the '#' in the password as %23, then restart the API"
        ))
        .reports(crate::check::Premise::Valid(name.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envctx::{EnvSet, EnvView, Loader};
    use std::sync::Arc;
    use std::time::Duration;

    fn ctx(file: &str) -> Ctx {
        let set = EnvSet::from_file_text(file, ".env.production", Loader::Dotenv);
        Ctx::new(EnvView::new(Arc::new(set)), "production", Duration::from_secs(1))
    }

    #[test]
    fn a_cut_value_is_said_and_the_hint_says_to_quote_it() {
        let ctx = ctx("JWT_SECRET=abc#9f8e7d\nNODE_ENV=production\n");
        let o = with_readings(
            Outcome::problem("JWT_SECRET is 3 bytes").hint("generate one"),
            &ctx,
            &["JWT_SECRET", "NODE_ENV"],
        );
        assert_eq!(
            o.message,
            "JWT_SECRET is 3 bytes; dotenv reads JWT_SECRET (.env.production:1) as 3 characters: the '#' starts a \
             comment (a shell `source` would keep it); quote the value"
        );
        assert_eq!(
            o.hint.as_deref(),
            Some(
                "quote the value of JWT_SECRET in .env.production:1 (NAME=\"…\") so that the API's loader reads all \
                 of it; generate one"
            )
        );
        assert!(o.details["readings"].get("NODE_ENV").is_none());
        let plain = with_readings(Outcome::pass("fine"), &ctx, &["NODE_ENV"]);
        assert_eq!(plain.message, "fine");
    }

    /// Found in review: `postgres://app:12345#x@db/mockmate` cut at the `#` parses
    /// as host `app`, port `12345` — the password's first characters.
    #[test]
    fn a_url_cut_inside_its_userinfo_is_said_without_what_is_left_of_it() {
        let cut = ctx("DATABASE_URL=postgres://app:12345#x@db/mockmate\n");
        let o = cut_in_userinfo(&cut, "DATABASE_URL").expect("a finding");
        assert!(!o.message.contains("12345") && !o.message.contains("app:"), "{}", o.message);
        assert!(o.message.starts_with("DATABASE_URL is cut at a '#' inside its user and password"), "{}", o.message);
        let fine = ctx("DATABASE_URL=postgres://app:pw@db/mockmate#primary\n");
        assert!(cut_in_userinfo(&fine, "DATABASE_URL").is_none());
    }
}
