//! Why an env file did not parse, in words: line, column, variable and the
//! problem — never the value.
//!
//! dotenvy parses the file (one parser for the values); when it refuses one, its
//! error carries the offending entry and an index that is not always an offset
//! into it. This module walks the file with dotenvy 0.15's grammar (entries that
//! span lines while a quote is open, `#` comments, `export`, escapes, `${…}`) to
//! find the first entry it refuses and say why. It reads no value out.

/// What is wrong, and where (1-based line and column, in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub line: usize,
    pub column: usize,
    /// The variable, when the entry got as far as `NAME=`.
    pub variable: Option<String>,
    pub problem: Problem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// A line that does not start with a letter or `_`.
    InvalidNameStart,
    /// A name followed by something other than `=` (`JWT-SECRET=…`, `JWT SECRET=…`, `KEY: value`).
    InvalidName,
    /// No `=` at all.
    NoEquals,
    /// A quote opened and never closed (reported where it opens).
    UnterminatedQuote(char),
    /// `\` before a character dotenv does not unescape.
    BadEscape,
    /// A space inside an unquoted value (`KEY=a b`).
    UnquotedSpace,
    /// `${` without `}`.
    UnterminatedSubstitution,
    /// The last line ends with `\` or a space and no newline.
    UnfinishedLastLine,
}

impl Diagnosis {
    /// `.env.production:2:12: JWT_SECRET: unterminated double quote: …` — never the value.
    pub fn message(&self, file: &str) -> String {
        let place = format!("{file}:{}:{}", self.line, self.column);
        match (&self.variable, self.problem) {
            (Some(name), Problem::InvalidName) => format!("{place}: after {name}: {}", self.problem.describe()),
            (Some(name), problem) => format!("{place}: {name}: {}", problem.describe()),
            (None, problem) => format!("{place}: {}", problem.describe()),
        }
    }
}

impl Problem {
    pub fn describe(self) -> String {
        match self {
            Problem::InvalidNameStart => "a variable name must start with a letter or '_' (expected NAME=value)".into(),
            Problem::InvalidName => {
                "invalid variable name: use letters, digits, '_' and '.', then '=' (expected NAME=value)".into()
            }
            Problem::NoEquals => "no '=' on this line (expected NAME=value)".into(),
            Problem::UnterminatedQuote(q) => {
                let which = if q == '"' { "double" } else { "single" };
                format!("unterminated {which} quote: it opens here and is never closed")
            }
            Problem::BadEscape => "bad escape: dotenv understands \\n, \\\\, \\\", \\', \\$ and \"\\ \" only".into(),
            Problem::UnquotedSpace => "unquoted space in the value: put the value in quotes".into(),
            Problem::UnterminatedSubstitution => "unterminated ${: add the closing }".into(),
            Problem::UnfinishedLastLine => {
                "the last line ends with a backslash or a space and no newline: remove it or end the line".into()
            }
        }
    }
}

/// The first entry of `text` that dotenvy refuses, or `None` when this walk
/// finds none (the caller then falls back to dotenvy's own line).
pub fn first_problem(text: &str) -> Option<Diagnosis> {
    let at = |offset: usize, variable: Option<String>, problem: Problem| {
        // Never inside a character (an offset is in bytes).
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Some(Diagnosis { line, column, variable, problem })
    };
    let mut start = 0;
    while start < text.len() {
        let (entry_len, state) = entry(&text[start..]);
        let raw = &text[start..start + entry_len];
        if state != State::Complete && state != State::Comment {
            // dotenvy reads to the end of the file looking for the end of this entry.
            let (offset, variable, problem) = match parse_entry(raw) {
                Err(found) => found,
                Ok(variable) => (0, variable, Problem::UnfinishedLastLine),
            };
            let problem = match (state, problem) {
                (State::WeakOpen | State::WeakOpenEscape, _) => Problem::UnterminatedQuote('"'),
                (State::StrongOpen | State::StrongOpenEscape, _) => Problem::UnterminatedQuote('\''),
                (_, p) => p,
            };
            let offset = match problem {
                Problem::UnterminatedQuote(q) => open_quote(raw, q).unwrap_or(offset),
                // The last character, which may take more than one byte.
                Problem::UnfinishedLastLine => {
                    raw.trim_end_matches(['\n', '\r']).char_indices().last().map_or(0, |(i, _)| i)
                }
                _ => offset,
            };
            return at(start + offset, variable, problem);
        }
        let line = if state == State::Comment { &raw[..comment_at(raw)] } else { raw };
        if !raw.trim_start().starts_with('#')
            && let Err((offset, variable, problem)) = parse_entry(line)
        {
            return at(start + offset, variable, problem);
        }
        start += entry_len;
    }
    None
}

/// dotenvy's `QuotedLines` states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Complete,
    Escape,
    StrongOpen,
    StrongOpenEscape,
    WeakOpen,
    WeakOpenEscape,
    Comment,
    WhiteSpace,
}

/// One entry: physical lines until no quote is open. Returns its length in
/// bytes (newline included) and the state it ended in.
fn entry(text: &str) -> (usize, State) {
    let mut state = State::Complete;
    let mut taken = 0;
    for line in text.split_inclusive('\n') {
        taken += line.len();
        if text[..taken].trim_start().starts_with('#') {
            return (taken, State::Complete);
        }
        for c in line.chars() {
            state = match state {
                State::WhiteSpace => match c {
                    '#' => State::Comment,
                    '\\' => State::Escape,
                    '"' => State::WeakOpen,
                    '\'' => State::StrongOpen,
                    _ => State::Complete,
                },
                State::Escape => State::Complete,
                State::Complete => match c {
                    c if c.is_whitespace() && c != '\n' && c != '\r' => State::WhiteSpace,
                    '\\' => State::Escape,
                    '"' => State::WeakOpen,
                    '\'' => State::StrongOpen,
                    _ => State::Complete,
                },
                State::WeakOpen => match c {
                    '\\' => State::WeakOpenEscape,
                    '"' => State::Complete,
                    _ => State::WeakOpen,
                },
                State::WeakOpenEscape => State::WeakOpen,
                State::StrongOpen => match c {
                    '\\' => State::StrongOpenEscape,
                    '\'' => State::Complete,
                    _ => State::StrongOpen,
                },
                State::StrongOpenEscape => State::StrongOpen,
                State::Comment => break,
            };
        }
        if matches!(state, State::Complete | State::Comment) {
            return (taken, state);
        }
    }
    (taken, state)
}

/// Where the `#` that ended an entry in a comment is (dotenvy cuts it there).
fn comment_at(raw: &str) -> usize {
    let mut prev_space = false;
    let mut quote: Option<char> = None;
    for (i, c) in raw.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '#' && prev_space => return i,
            None if c == '"' || c == '\'' => quote = Some(c),
            None => {}
        }
        prev_space = c.is_whitespace();
    }
    raw.len()
}

/// The offset of the quote `q` that is still open at the end of `raw`.
fn open_quote(raw: &str, q: char) -> Option<usize> {
    let value_start = raw.find('=').map_or(0, |i| i + 1);
    let mut open: Option<(char, usize)> = None;
    let mut escaped = false;
    for (i, c) in raw[value_start..].char_indices() {
        let i = i + value_start;
        match open {
            Some(('"', _)) if escaped => escaped = false,
            Some(('"', _)) if c == '\\' => escaped = true,
            Some((o, _)) if c == o => open = None,
            Some(_) => {}
            None if escaped => escaped = false,
            None if c == '\\' => escaped = true,
            None if c == '"' || c == '\'' => open = Some((c, i)),
            None => {}
        }
    }
    open.filter(|(o, _)| *o == q).map(|(_, i)| i)
}

type Found = (usize, Option<String>, Problem);

/// dotenvy's `LineParser` over one entry: `Ok(variable)` or where it stops.
fn parse_entry(raw: &str) -> Result<Option<String>, Found> {
    let line = raw.trim_end();
    let mut pos = line.len() - line.trim_start().len();
    if line[pos..].is_empty() || line[pos..].starts_with('#') {
        return Ok(None);
    }
    let mut key = parse_key(line, &mut pos)?;
    pos = skip_whitespace(line, pos);
    if key == "export" && !line[pos..].starts_with('=') {
        key = parse_key(line, &mut pos)?;
        pos = skip_whitespace(line, pos);
    }
    if !line[pos..].starts_with('=') {
        let problem = if line[pos..].is_empty() { Problem::NoEquals } else { Problem::InvalidName };
        // A line with no `=` may be a stray value (the wrapped half of a
        // secret): the key is shown only when an `=` later on the line makes
        // the line a mistyped assignment, and only when it looks like a name.
        // Base64 padding is an `=` too: the text before the `=` must be
        // name-like (`JWT-SECRET=`), and something must follow it.
        let assignment = line[pos..].split_once('=').is_some_and(|(between, after)| {
            between.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                && !after.trim_start_matches('=').trim().is_empty()
        });
        let shown =
            (problem == Problem::InvalidName && assignment).then(|| key.clone()).filter(|k| looks_like_a_name(k));
        return Err((pos, shown, problem));
    }
    pos = skip_whitespace(line, pos + 1);
    let value = &line[pos..];
    if value.is_empty() || value.starts_with('#') {
        return Ok(Some(key));
    }
    parse_value(value).map(|()| Some(key.clone())).map_err(|(offset, problem)| (pos + offset, Some(key), problem))
}

/// `JWT_SECRET`, `db.host`: a name, not a token that happens to precede a bad character.
fn looks_like_a_name(key: &str) -> bool {
    key.len() <= 64 && (key.contains('_') || key.len() <= 12)
}

fn skip_whitespace(line: &str, pos: usize) -> usize {
    line[pos..].find(|c: char| !c.is_whitespace()).map_or(line.len(), |i| pos + i)
}

fn parse_key(line: &str, pos: &mut usize) -> Result<String, Found> {
    let rest = &line[*pos..];
    if !rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return Err((*pos, None, Problem::InvalidNameStart));
    }
    let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(rest.len());
    *pos += len;
    Ok(rest[..len].to_string())
}

/// dotenvy's `parse_value`: where it fails, as an offset into `input`.
fn parse_value(input: &str) -> Result<(), (usize, Problem)> {
    #[derive(PartialEq)]
    enum Sub {
        None,
        Block,
        Escaped,
    }
    let (mut strong, mut weak, mut escaped, mut expecting_end) = (false, false, false, false);
    let (mut sub, mut sub_empty, mut sub_start) = (Sub::None, true, 0);
    let mut opened_at = 0;
    for (i, c) in input.char_indices() {
        if expecting_end {
            match c {
                ' ' | '\t' => continue,
                '#' => break,
                _ => return Err((i, Problem::UnquotedSpace)),
            }
        } else if escaped {
            if !matches!(c, '\\' | '\'' | '"' | '$' | ' ' | 'n') {
                return Err((i - 1, Problem::BadEscape));
            }
            escaped = false;
        } else if strong {
            strong = c != '\'';
        } else if sub != Sub::None {
            if c.is_alphanumeric() {
                sub_empty = false;
            } else if sub == Sub::Block {
                if c == '{' && sub_empty {
                    sub = Sub::Escaped;
                } else if c == '$' {
                    sub_empty = true;
                    sub_start = i;
                } else {
                    // dotenvy keeps the character that ends a name literally, quotes included.
                    sub = Sub::None;
                }
            } else if c == '}' {
                sub = Sub::None;
            } else {
                sub_empty = false;
            }
        } else if c == '$' {
            (sub, sub_empty, sub_start) = (Sub::Block, true, i);
        } else if weak {
            if c == '"' {
                weak = false;
            } else if c == '\\' {
                escaped = true;
            }
        } else if c == '\'' {
            (strong, opened_at) = (true, i);
        } else if c == '"' {
            (weak, opened_at) = (true, i);
        } else if c == '\\' {
            escaped = true;
        } else if c == ' ' || c == '\t' {
            expecting_end = true;
        }
    }
    if sub == Sub::Escaped {
        Err((sub_start, Problem::UnterminatedSubstitution))
    } else if strong {
        Err((opened_at, Problem::UnterminatedQuote('\'')))
    } else if weak {
        Err((opened_at, Problem::UnterminatedQuote('"')))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diagnose(text: &str) -> (usize, usize, Option<&'static str>, Problem) {
        let d = first_problem(text).unwrap_or_else(|| panic!("no problem found in {text:?}"));
        // Leak: test-only, to compare against literals.
        let variable = d.variable.map(|v| &*Box::leak(v.into_boxed_str()));
        (d.line, d.column, variable, d.problem)
    }

    #[test]
    fn each_problem_is_named_with_line_column_and_variable() {
        let cases: &[(&str, (usize, usize, Option<&str>, Problem))] = &[
            ("A=1\nJWT_SECRET=\"unterminated\nB=2\n", (2, 12, Some("JWT_SECRET"), Problem::UnterminatedQuote('"'))),
            ("A=1\n# c\nJWT_SECRET='s3cret\n", (3, 12, Some("JWT_SECRET"), Problem::UnterminatedQuote('\''))),
            ("A=1\nB=\"x\\qy\"\n", (2, 5, Some("B"), Problem::BadEscape)),
            ("A=1\nB=x\\qy\n", (2, 4, Some("B"), Problem::BadEscape)),
            ("A=1\nJWT-SECRET=x\n", (2, 4, Some("JWT"), Problem::InvalidName)),
            ("1ABC=x\n", (1, 1, None, Problem::InvalidNameStart)),
            ("  -X=1\n", (1, 3, None, Problem::InvalidNameStart)),
            ("A=1\nhunter2\n", (2, 8, None, Problem::NoEquals)),
            ("A=b c\n", (1, 5, Some("A"), Problem::UnquotedSpace)),
            ("A=${HOME\n", (1, 3, Some("A"), Problem::UnterminatedSubstitution)),
            ("A=1\nB=2\\", (2, 4, Some("B"), Problem::UnfinishedLastLine)),
            ("é=1\n", (1, 1, None, Problem::InvalidNameStart)),
            ("A=\"ok\"\nB=\"é\\x\"\n", (2, 5, Some("B"), Problem::BadEscape)),
        ];
        for (text, want) in cases {
            assert_eq!(&diagnose(text), want, "{text:?}");
            // And dotenvy agrees that the file is broken.
            assert!(dotenvy::from_read_iter(text.as_bytes()).any(|r| r.is_err()), "dotenvy accepts {text:?}");
        }
    }

    #[test]
    fn what_dotenvy_accepts_has_no_problem() {
        for text in [
            "A=1\n# comment\n\nexport B=2\nC=\"multi\nline\"\nD='x y' # trailing\nE=a\\ b\nF=${A}x\n",
            "KEY10  =\"whitespace before =\"\nKEY11=    \"whitespace after =\"\nexport=\"export as key\"\n",
            "A=\"a#b\" # c\nB=x#y\n",
        ] {
            assert!(dotenvy::from_read_iter(text.as_bytes()).all(|r| r.is_ok()), "dotenvy refuses {text:?}");
            assert_eq!(first_problem(text), None, "{text:?}");
        }
    }

    /// Found by fuzzing (fuzz/ env_file): a file whose last line ends in a
    /// multi-byte character (a no-break space) and no newline panicked slicing
    /// inside that character. It is pointed at, whole.
    #[test]
    fn a_multibyte_last_character_is_pointed_at_not_split() {
        assert_eq!(first_problem("\u{a0}").map(|d| (d.line, d.column)), Some((1, 1)));
        assert_eq!(first_problem("A=1\n\u{a0}\u{a0}"), None);
        let e = crate::envctx::EnvSet::from_file_text("\u{a0}", ".env").expect_err("refused");
        assert!(e.0.starts_with("env file .env:1:1: "), "{}", e.0);
    }

    #[test]
    fn a_stray_value_is_never_named() {
        let d = first_problem("A=1\nZq3v9LrT0pXy2Wn8KbD4sHf7\n").expect("a problem");
        assert_eq!(d.variable, None);
        let d = first_problem("A=1\nZq3v9LrT0pXy2Wn8 KbD4sHf7\n").expect("a problem");
        assert_eq!(d.variable, None, "a long token before a space is not shown as a name");
        // Short stray values too: a password on a line of its own is no name.
        for stray in
            ["A=1\nhunter2 x\n", "A=1\nPa55word!\n", "A=1\nTr0ub4dor&3\n", "A=1\ndef-ghi\n", "A=1\nu7Q+xZ9/Ab==\n"]
        {
            let d = first_problem(stray).expect("a problem");
            assert_eq!(d.variable, None, "{stray:?}");
        }
        // A mistyped assignment still names its variable.
        let d = first_problem("A=1\nJWT-SECRET=abc\n").expect("a problem");
        assert_eq!(d.variable.as_deref(), Some("JWT"));
    }
}
