//! `expect = "…"` in a manifest: the rule a user's own check holds a value to
//! (`postgres.query`, `redis.info`). Parsed when the manifest loads, so a typo
//! is a usage error naming file and line, not a failed check at 3 a.m.

use std::cmp::Ordering;
use std::fmt;

/// `>= 1`, `= master`, `!= 0`, `true`.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Compare { op: Op, text: String, number: Option<f64> },
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
        }
    }

    /// `>`, `>=`, `<`, `<=` only make sense for numbers.
    fn ordering(self) -> bool {
        !matches!(self, Op::Eq | Op::Ne)
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }
}

/// Longest operators first, so `>=` is not read as `>` then `=1`.
const OPS: &[(&str, Op)] = &[
    (">=", Op::Ge),
    ("<=", Op::Le),
    ("!=", Op::Ne),
    ("<>", Op::Ne),
    ("==", Op::Eq),
    (">", Op::Gt),
    ("<", Op::Lt),
    ("=", Op::Eq),
];

impl Expect {
    /// The error completes "`expect` …" in a manifest error.
    pub fn parse(raw: &str) -> Result<Expect, String> {
        let s = raw.trim();
        if s.eq_ignore_ascii_case("true") {
            return Ok(Expect::Bool(true));
        }
        if s.eq_ignore_ascii_case("false") {
            return Ok(Expect::Bool(false));
        }
        let (op, rest) =
            OPS.iter().find_map(|(sym, op)| s.strip_prefix(sym).map(|rest| (*op, rest.trim()))).ok_or_else(|| {
                format!("must start with one of = != <> > >= < <= (e.g. \">= 1\") or be true or false, not {raw:?}")
            })?;
        if rest.is_empty() {
            return Err(format!("has an operator but no value to compare with: {raw:?}"));
        }
        if rest.starts_with(['<', '>', '=', '!']) {
            return Err(format!("has two operators: {raw:?}"));
        }
        let number = rest.parse::<f64>().ok().filter(|n| n.is_finite());
        if op.ordering() && number.is_none() {
            return Err(format!("compares with {rest:?}, which is not a number; > >= < <= need one"));
        }
        Ok(Expect::Compare { op, text: rest.to_string(), number })
    }

    /// Whether `actual` (a value's text form) meets the rule; `Err` says why it
    /// cannot be judged (a word where a number or a boolean was expected).
    pub fn holds(&self, actual: &str) -> Result<bool, String> {
        let actual = actual.trim();
        match self {
            Expect::Bool(want) => match actual.to_ascii_lowercase().as_str() {
                "t" | "true" => Ok(*want),
                "f" | "false" => Ok(!*want),
                _ => Err(format!("is {actual:?}, not a boolean")),
            },
            Expect::Compare { op, text, number } => match (number, actual.parse::<f64>().ok()) {
                (Some(want), Some(got)) => Ok(op.holds(got.total_cmp(want))),
                _ if op.ordering() => Err(format!("is {actual:?}, not a number")),
                _ => Ok(op.holds(actual.cmp(text.as_str()))),
            },
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Compare { op, text, .. } => write!(f, "{} {text}", op.as_str()),
            Expect::Bool(b) => write!(f, "{b}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Expect;

    #[test]
    fn expectations_parse_and_judge_text_values() {
        // (expect, actual, holds: Ok(bool) or Err(()) when it cannot be judged)
        let cases: &[(&str, &str, Result<bool, ()>)] = &[
            ("> 0", "3", Ok(true)),
            ("> 0", "0", Ok(false)),
            (">= 1", "1", Ok(true)),
            (">=1", "0", Ok(false)),
            ("> 0.5", "0.75", Ok(true)),
            ("<= 100", "100", Ok(true)),
            ("=0", "0", Ok(true)),
            ("= 0", "0.0", Ok(true)),
            ("!= 0", "0", Ok(false)),
            ("<> 0", "2.5", Ok(true)),
            ("< 10", "12", Ok(false)),
            ("== master", "master", Ok(true)),
            ("= master", "slave", Ok(false)),
            ("!= slave", "master", Ok(true)),
            ("true", "t", Ok(true)),
            ("FALSE", "t", Ok(false)),
            ("true", "7", Err(())),
            ("> 0", "abc", Err(())),
            (">= 1", "1.2M", Err(())),
        ];
        for (expect, actual, want) in cases {
            let e = Expect::parse(expect).unwrap_or_else(|err| panic!("{expect}: {err}"));
            assert_eq!(e.holds(actual).map_err(|_| ()), *want, "{expect} on {actual}");
        }
        assert_eq!(Expect::parse(">= 1").map(|e| e.to_string()), Ok(">= 1".to_string()));
        for bad in ["", "> ", "positive", "~ 1", "> NaN", "=> 1", ">= many", "1"] {
            assert!(Expect::parse(bad).is_err(), "{bad}");
        }
    }
}
