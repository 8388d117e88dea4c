//! Where the API's loader reads a variable otherwise than a person, a shell
//! `source` or dotenvy would: the
//! facts the env checks put beside a value's finding, as `postgres.connect`
//! says where psql would differ. Never the value: only its length and why.

use super::dotenv::{Assignment, Quote};

/// The loader the API uses to read its env files (`[env] loader` in a manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loader {
    /// npm `dotenv` (`require('dotenv').config()`): the default.
    #[default]
    Dotenv,
    /// Node.js's built-in `node --env-file=…`.
    Node,
    /// npm `dotenv-flow`: dotenv's reading, its own cascade of files.
    DotenvFlow,
}

impl Loader {
    /// How the report names it.
    pub fn name(self) -> &'static str {
        match self {
            Loader::Dotenv => "dotenv",
            Loader::Node => "node --env-file",
            Loader::DotenvFlow => "dotenv-flow",
        }
    }
}

/// One way a reading differs from what other readers of the line take it to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// An unquoted `#` right after the value ended it (`abc#def` → `abc`);
    /// a shell and dotenvy keep a `#` that follows no space.
    HashCut,
    /// A `$NAME` or `${NAME}` passed through as written: a shell, dotenvy and
    /// dotenv-expand would substitute it.
    Dollar,
    /// Spaces around `=` or inside an unquoted value: a shell stops at the
    /// first one (and runs the rest as a command); dotenvy refuses the line.
    Spaces,
    /// A backquoted value: the loader strips the backquotes, a shell runs it.
    Backticks,
    /// Backslashes kept (all but `\n` and `\r` in double quotes): a shell and
    /// dotenvy unescape them.
    Backslash,
    /// A quote opened and never closed on its line: the quote is part of the value.
    UnclosedQuote,
    /// `NAME: value`: the loader reads it; a shell and dotenvy do not.
    Colon,
    /// Set on several lines of one file: the last one wins (dotenvy keeps the first).
    Duplicate(Vec<usize>),
}

/// How the API's loader read one variable, where it read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub loader: Loader,
    pub file: String,
    pub line: usize,
    pub differences: Vec<Difference>,
}

impl Reading {
    /// The facts of one assignment (`lines`: every line of the file that sets it).
    pub fn of(a: &Assignment, loader: Loader, file: &str, lines: &[usize]) -> Reading {
        let mut differences = Vec::new();
        if lines.len() > 1 {
            differences.push(Difference::Duplicate(lines.to_vec()));
        }
        if a.hash_cut {
            differences.push(Difference::HashCut);
        }
        if a.colon {
            differences.push(Difference::Colon);
        }
        if a.quote == Quote::Backtick {
            differences.push(Difference::Backticks);
        }
        if a.spaced {
            differences.push(Difference::Spaces);
        }
        let substitutes = |v: &str| {
            v.match_indices('$')
                .any(|(i, _)| v[i + 1..].starts_with(|c: char| c == '{' || c == '_' || c.is_ascii_alphabetic()))
        };
        if matches!(a.quote, Quote::None | Quote::Double) && substitutes(&a.value) {
            differences.push(Difference::Dollar);
        }
        if matches!(a.quote, Quote::None | Quote::Double) && a.value.contains('\\') {
            differences.push(Difference::Backslash);
        }
        if a.quote == Quote::None && a.value.starts_with(['\'', '"', '`']) {
            differences.push(Difference::UnclosedQuote);
        }
        Reading { loader, file: file.to_string(), line: a.line, differences }
    }

    /// `dotenv reads JWT_SECRET (.env.production:4) as 3 characters: the '#' starts a
    /// comment; quote the value` — one clause per difference, joined by "; ".
    /// `None` when the reading holds no surprise.
    pub fn describe(&self, name: &str, value: &str) -> Option<String> {
        if self.differences.is_empty() {
            return None;
        }
        let loader = self.loader.name();
        let place = format!("{}:{}", self.file, self.line);
        let chars = value.chars().count();
        let length = if chars == 1 { "1 character".to_string() } else { format!("{chars} characters") };
        let clauses: Vec<String> = self
            .differences
            .iter()
            .map(|d| match d {
                Difference::HashCut => format!(
                    "{loader} reads {name} ({place}) as {length}: the '#' starts a comment (a shell `source` \
                     would keep it); quote the value"
                ),
                Difference::Dollar => format!(
                    "{loader} passes the '$' in {name} ({place}) through as written (no expansion); a shell \
                     `source`, dotenvy or dotenv-expand would substitute a variable there"
                ),
                Difference::Spaces => format!(
                    "{loader} reads {name} ({place}) with its spaces ({length}); a shell `source` would stop at \
                     the first space"
                ),
                Difference::Backticks => format!(
                    "{loader} strips the backquotes around {name} ({place}); a shell `source` would run it as a command"
                ),
                Difference::Backslash => format!(
                    "{loader} keeps the backslashes in {name} ({place}) (only \\n and \\r in double quotes become \
                     line breaks); a shell `source` or dotenvy would unescape them"
                ),
                Difference::UnclosedQuote => format!(
                    "{loader} reads {name} ({place}) with its opening quote as part of the value (it is never closed)"
                ),
                Difference::Colon => {
                    format!("{loader} reads '{name}: …' ({place}) as an assignment; a shell `source` would not")
                }
                Difference::Duplicate(lines) => {
                    let (last, before) = lines.split_last().map_or((0, &[][..]), |(l, b)| (*l, b));
                    let before: Vec<String> = before.iter().map(usize::to_string).collect();
                    format!(
                        "{name} is set on lines {} and {last} of {}: {loader} uses line {last} (dotenvy the first)",
                        before.join(", "),
                        self.file
                    )
                }
            })
            .collect();
        Some(clauses.join("; "))
    }

    /// Whether a difference bears on what the value is (not only on how it is written).
    pub fn changes_the_value(&self) -> bool {
        self.differences.iter().any(|d| matches!(d, Difference::HashCut | Difference::UnclosedQuote))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envctx::dotenv::parse;

    fn reading(line: &str) -> Reading {
        let a = parse(line).assignments.remove(0);
        Reading::of(&a, Loader::Dotenv, ".env.production", &[a.line])
    }

    #[test]
    fn the_issue_cases_are_said_without_the_value() {
        let r = reading("JWT_SECRET=abc#9f8e7d");
        assert_eq!(
            r.describe("JWT_SECRET", "abc").as_deref(),
            Some(
                "dotenv reads JWT_SECRET (.env.production:1) as 3 characters: the '#' starts a comment \
                 (a shell `source` would keep it); quote the value"
            )
        );
        let r = reading("DB_PASSWORD=pa$word");
        assert_eq!(r.differences, [Difference::Dollar]);
        assert!(!r.describe("DB_PASSWORD", "pa$word").unwrap_or_default().contains("pa$word"));
        assert_eq!(reading("A='pa$word'").differences, []);
        assert_eq!(reading("A=words then more").differences, [Difference::Spaces]);
        assert_eq!(reading("A=`x`").differences, [Difference::Backticks]);
        assert_eq!(reading("A=\"a\\\"b\"").differences, [Difference::Backslash]);
        assert_eq!(reading("A='open").differences, [Difference::UnclosedQuote]);
        assert_eq!(reading("A=plain").describe("A", "plain"), None);
    }

    #[test]
    fn duplicates_name_every_line() {
        let a = parse("A=1\nB=2\nA=3\n").assignments.remove(2);
        let r = Reading::of(&a, Loader::Dotenv, ".env", &[1, 3]);
        assert_eq!(
            r.describe("A", "3").as_deref(),
            Some("A is set on lines 1 and 3 of .env: dotenv uses line 3 (dotenvy the first)")
        );
    }
}
