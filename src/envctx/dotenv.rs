//! An env file as npm `dotenv` 16.6.1 reads it: `parse` in its `lib/main.js`,
//! the API's own loader (`require('dotenv').config()`).
//!
//! dotenv's grammar is one regular expression applied with JavaScript's rules
//! (multiline, global, backtracking):
//!
//! ```text
//! /(?:^|^)\s*(?:export\s+)?([\w.-]+)(?:\s*=\s*?|:\s+?)(\s*'(?:\\'|[^'])*'|\s*"(?:\\"|[^"])*"|\s*`(?:\\`|[^`])*`|[^#\r\n]+)?\s*(?:#.*)?(?:$|$)/mg
//! ```
//!
//! then each value is trimmed, one pair of surrounding quotes is removed, and in
//! a value that was double-quoted `\n` and `\r` become a newline and a carriage
//! return. Nothing is refused: a line the expression does not match is skipped.
//!
//! This is that expression worked out by hand, linear in the file's length (a
//! backtracking engine takes quadratic time on a file of unclosed quotes): the
//! regex's choices are deterministic once written down, and each is noted where
//! it is made. The unit tests run the expression itself (ECMAScript semantics,
//! the `regress` crate) against this reading on random files; the integration
//! tests (`tests/env_loaders.rs`) run the real npm package.

/// How a value was written, as far as other readers of the file care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quote {
    None,
    Single,
    Double,
    Backtick,
}

/// One `NAME=value` the loader read, in file order (duplicates included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub name: String,
    pub value: String,
    /// 1-based line of the name.
    pub line: usize,
    /// The quotes the value was read between (`None`: unquoted, or no value).
    pub quote: Quote,
    /// An unquoted `#` with no space before it ended the value (`abc#def` → `abc`).
    pub hash_cut: bool,
    /// Written `NAME: value` rather than `NAME=value`.
    pub colon: bool,
    /// Spaces between the name and `=`, after `=`, or inside an unquoted value.
    pub spaced: bool,
}

/// A file's reading: its assignments, and the lines with text the loader ignores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub assignments: Vec<Assignment>,
    /// 1-based lines that are neither blank, a comment, nor part of an assignment.
    pub ignored: Vec<usize>,
}

/// JavaScript's `\s` (and `String.prototype.trim`): WhiteSpace and LineTerminator.
pub fn is_js_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}' | '\u{feff}'
    )
}

/// Where JavaScript's multiline `^` and `$` see a line end (and `.` stops).
fn is_line_end(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

/// `[\w.-]`: ASCII letters, digits, `_`, `.` and `-`.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// dotenv first turns `\r\n` and a lone `\r` into `\n`.
fn normalise(text: &str) -> Vec<char> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' {
            chars.next_if_eq(&'\n');
            out.push('\n');
        } else {
            out.push(c);
        }
    }
    out
}

const QUOTES: [char; 3] = ['\'', '"', '`'];

/// The file, with the tables that make each of the expression's choices O(1).
struct Text {
    s: Vec<char>,
    /// `ws_end[i]`: the end of the run of `\s` that starts at `i`.
    ws_end: Vec<usize>,
    /// `lt_next[i]`: the first line end at or after `i` (or the length).
    lt_next: Vec<usize>,
    /// `bare_end[i]`: the end of the run of `[^#\r\n]` that starts at `i`.
    bare_end: Vec<usize>,
    /// Per quote: `barrier[i]`, the first quote at or after `i` that has no
    /// backslash before it (the body `(?:\\'|[^'])*` cannot pass it).
    barrier: [Vec<usize>; 3],
    /// Per quote: `closing[i]`, the last quote at or before `i` that the rest
    /// of the line accepts after it (`tail_ok`), if any.
    closing: [Vec<Option<usize>>; 3],
}

impl Text {
    fn new(text: &str) -> Text {
        let s = normalise(text);
        let n = s.len();
        let mut ws_end = vec![n; n + 1];
        let mut lt_next = vec![n; n + 1];
        let mut bare_end = vec![n; n + 1];
        for i in (0..n).rev() {
            ws_end[i] = if is_js_space(s[i]) { ws_end[i + 1] } else { i };
            lt_next[i] = if is_line_end(s[i]) { i } else { lt_next[i + 1] };
            bare_end[i] = if matches!(s[i], '#' | '\r' | '\n') { i } else { bare_end[i + 1] };
        }
        let mut text = Text { s, ws_end, lt_next, bare_end, barrier: Default::default(), closing: Default::default() };
        for (k, q) in QUOTES.iter().enumerate() {
            let mut barrier = vec![n; n + 1];
            for i in (0..n).rev() {
                let unescaped = text.s[i] == *q && (i == 0 || text.s[i - 1] != '\\');
                barrier[i] = if unescaped { i } else { barrier[i + 1] };
            }
            let mut last = None;
            let mut closing: Vec<Option<usize>> = (0..n)
                .map(|i| {
                    if text.s[i] == *q && text.tail_ok(i + 1) {
                        last = Some(i);
                    }
                    last
                })
                .collect();
            closing.push(last);
            text.barrier[k] = barrier;
            text.closing[k] = closing;
        }
        text
    }

    fn len(&self) -> usize {
        self.s.len()
    }

    /// Whether `\s*(?:#.*)?$` matches at `pos`: the spaces from `pos` reach a
    /// `#`, the end, or cross a line end.
    fn tail_ok(&self, pos: usize) -> bool {
        let r = self.ws_end[pos];
        r == self.len() || self.s[r] == '#' || self.lt_next[pos] < r
    }

    /// Where `\s*(?:#.*)?$` ends when it matches at `pos`: greedy spaces, a
    /// comment to the line's end, else the last line end among the spaces.
    fn tail_end(&self, pos: usize) -> usize {
        let r = self.ws_end[pos];
        if r == self.len() {
            return r;
        }
        if self.s[r] == '#' {
            return self.lt_next[r];
        }
        (pos..r).rev().find(|&j| is_line_end(self.s[j])).unwrap_or(pos)
    }

    /// The quoted alternative `\s*'(?:\\'|[^'])*'` at `v0`: the end of the
    /// closing quote. Backtracking tries the furthest quote the body can reach
    /// (the first one without a backslash before it), then each escaped quote
    /// before it, last first: the first the rest of the line accepts wins.
    fn quoted(&self, v0: usize) -> Option<(usize, Quote)> {
        let o = self.ws_end[v0];
        let k = QUOTES.iter().position(|q| self.s.get(o) == Some(q))?;
        let barrier = self.barrier[k][o + 1];
        let limit = if barrier < self.len() { barrier } else { self.len() - 1 };
        let c = self.closing[k][limit].filter(|&c| c > o)?;
        let quote = [Quote::Single, Quote::Double, Quote::Backtick][k];
        Some((c + 1, quote))
    }
}

/// One match of the expression.
struct Match {
    key: (usize, usize),
    /// The value's capture (`None`: the optional group did not take part).
    value: Option<(usize, usize)>,
    quote: Quote,
    colon: bool,
    /// Where the separator's spaces end (`=` or `:`), for `spaced`.
    sep: (usize, usize),
    end: usize,
}

impl Text {
    /// The expression at a line start whose first non-space is `q0`: with an
    /// `export ` prefix if that leads to a match, else without.
    fn attempt(&self, q0: usize) -> Option<Match> {
        let export: Vec<char> = "export".chars().collect();
        if self.s.get(q0..q0 + 6) == Some(&export[..]) && self.s.get(q0 + 6).is_some_and(|c| is_js_space(*c)) {
            // `\s+` can only end where the name starts: at the next non-space.
            if let Some(m) = self.keyed(self.ws_end[q0 + 6]) {
                return Some(m);
            }
        }
        self.keyed(q0)
    }

    /// From the name at `k`: `[\w.-]+` (the whole run: a shorter one leaves a
    /// name character where a separator must be), then `\s*=\s*?` or `:\s+?`.
    fn keyed(&self, k: usize) -> Option<Match> {
        let n = self.len();
        let ke = (k..n).find(|&i| !is_name_char(self.s[i])).unwrap_or(n);
        if ke == k {
            return None;
        }
        let eq = self.ws_end[ke];
        let (v0, colon, sep) = if self.s.get(eq) == Some(&'=') {
            // The lazy `\s*?` first tries no space, and that always matches: a
            // quoted value, else an unquoted one, else no value before a `#`,
            // a line end or the end of the file.
            (eq + 1, false, (ke, eq + 1))
        } else if self.s.get(ke) == Some(&':') && self.s.get(ke + 1).is_some_and(|c| is_js_space(*c)) {
            // `:\s+?`: one space (which may be a newline), and that always matches.
            (ke + 2, true, (ke, ke + 2))
        } else {
            return None;
        };
        let (value, quote, end) = if let Some((close, quote)) = self.quoted(v0) {
            (Some((v0, close)), quote, self.tail_end(close))
        } else if v0 < n && !matches!(self.s[v0], '#' | '\r' | '\n') {
            // `[^#\r\n]+` to the `#` or the line's end: the rest of the line then matches.
            let m = self.bare_end[v0];
            (Some((v0, m)), Quote::None, self.tail_end(m))
        } else {
            (None, Quote::None, self.tail_end(v0))
        };
        Some(Match { key: (k, ke), value, quote, colon, sep, end })
    }
}

/// `value.replace(/^(['"`])([\s\S]*)\1$/mg, '$2')`: at each line start (in the
/// value) that holds a quote, the text up to the last same quote that ends a
/// line loses both quotes.
fn strip_quotes(v: &[char]) -> String {
    let n = v.len();
    let last_closing = |q: char| (0..n).rev().find(|&x| v[x] == q && (x + 1 == n || is_line_end(v[x + 1])));
    let closings: Vec<Option<usize>> = QUOTES.iter().map(|q| last_closing(*q)).collect();
    let mut out = String::with_capacity(n);
    let (mut kept, mut p) = (0, 0);
    while p < n {
        let at_line_start = p == 0 || is_line_end(v[p - 1]);
        let closing = QUOTES.iter().position(|q| *q == v[p]).and_then(|k| closings[k]).filter(|&x| x > p);
        match closing {
            Some(x) if at_line_start => {
                out.extend(&v[kept..p]);
                out.extend(&v[p + 1..x]);
                kept = x + 1;
                p = x + 1;
            }
            _ => p += 1,
        }
    }
    out.extend(&v[kept..]);
    out
}

/// `value.trim()`.
fn js_trim(v: &[char]) -> &[char] {
    let start = v.iter().position(|c| !is_js_space(*c)).unwrap_or(v.len());
    let end = v.iter().rposition(|c| !is_js_space(*c)).map_or(start, |i| i + 1);
    &v[start..end.max(start)]
}

/// The value dotenv stores for a capture.
fn value_of(raw: &[char]) -> String {
    let trimmed = js_trim(raw);
    let stripped = strip_quotes(trimmed);
    if trimmed.first() == Some(&'"') { stripped.replace("\\n", "\n").replace("\\r", "\r") } else { stripped }
}

/// dotenv's `parse(text)`, as assignments in file order.
pub fn parse(text: &str) -> Parsed {
    let t = Text::new(text);
    let n = t.len();
    let s = &t.s;
    // 1-based line of each position (the line ends an editor shows: `\n`).
    let mut line_of = Vec::with_capacity(n + 1);
    let mut line = 1;
    for c in s {
        line_of.push(line);
        if *c == '\n' {
            line += 1;
        }
    }
    line_of.push(line);
    let starts: Vec<usize> = (0..=n).filter(|&p| p == 0 || (p <= n && is_line_end(s[p - 1]))).collect();
    let mut parsed = Parsed::default();
    let mut covered: Vec<(usize, usize)> = Vec::new();
    let mut from = 0; // lastIndex
    let mut i = 0;
    while i < starts.len() {
        let p = starts[i];
        if p < from {
            i += 1;
            continue;
        }
        let q0 = t.ws_end[p];
        if q0 == n {
            break;
        }
        match t.attempt(q0) {
            Some(m) => {
                let name: String = s[m.key.0..m.key.1].iter().collect();
                let raw = m.value.map(|(a, b)| &s[a..b]).unwrap_or_default();
                let unquoted = m.quote == Quote::None;
                let hash_cut = unquoted && {
                    // The value (or its absence) ended at a `#` with no space before it.
                    let end = m.value.map_or(m.sep.1, |(_, b)| b);
                    s.get(end) == Some(&'#') && end > 0 && !is_js_space(s[end - 1])
                };
                let inner_space = unquoted && js_trim(raw).iter().any(|c| is_js_space(*c));
                let spaced = inner_space
                    || (m.sep.0..m.sep.1).any(|j| is_js_space(s[j]))
                    || (unquoted && raw.first().is_some_and(|c| is_js_space(*c)));
                // A JavaScript object ignores a string assigned to `__proto__`.
                if name != "__proto__" {
                    parsed.assignments.push(Assignment {
                        value: value_of(raw),
                        line: line_of[m.key.0],
                        quote: m.quote,
                        hash_cut,
                        colon: m.colon,
                        spaced,
                        name,
                    });
                }
                covered.push((line_of[m.key.0], line_of[m.end.saturating_sub(1).max(m.key.0)]));
                from = m.end;
                i += 1;
            }
            // Every line start up to `q0` leads to the same attempt.
            None => i = starts.partition_point(|&x| x <= q0),
        }
    }
    // Lines with text that no assignment took.
    let mut taken = vec![false; line + 1];
    for (a, b) in covered {
        taken.iter_mut().take(b + 1).skip(a).for_each(|t| *t = true);
    }
    for (index, text_line) in s.split(|c| *c == '\n').enumerate() {
        let number = index + 1;
        let content = js_trim(text_line);
        if !content.is_empty() && content[0] != '#' && !taken[number] {
            parsed.ignored.push(number);
        }
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).assignments.into_iter().map(|a| (a.name, a.value)).collect()
    }

    fn one(text: &str) -> Assignment {
        let mut all = parse(text).assignments;
        assert_eq!(all.len(), 1, "{text:?}: {all:?}");
        all.remove(0)
    }

    #[test]
    fn the_issue_lines_read_as_dotenv_reads_them() {
        let cases: &[(&str, &str)] = &[
            ("JWT_SECRET=abc#9f8e", "abc"),
            ("DATABASE_URL=postgres://app:Pa#ss-2024@db/mm", "postgres://app:Pa"),
            ("DB_PASSWORD=pa$word", "pa$word"),
            ("DB_PASSWORD=pa${word}", "pa${word}"),
            ("KEY=words then more", "words then more"),
            ("KEY = value", "value"),
            ("KEY=value   ", "value"),
            ("KEY=`bt`", "bt"),
            ("KEY=a\\nb", "a\\nb"),
            ("KEY=\"a\\nb\"", "a\nb"),
            ("KEY='a\\nb'", "a\\nb"),
            ("KEY=a # comment", "a"),
            ("KEY=\"a#b\" # comment", "a#b"),
            ("export KEY=1", "1"),
            ("KEY=", ""),
            ("KEY=\"\"", ""),
            ("KEY: value", "value"),
            ("KEY=\"a\\\"b\"", "a\\\"b"),
            ("KEY='unclosed", "'unclosed"),
        ];
        for (line, want) in cases {
            let a = one(line);
            assert_eq!(a.value, *want, "{line}");
        }
    }

    #[test]
    fn multiline_crlf_duplicates_and_what_is_ignored() {
        let text = "A=\"one\r\ntwo\"\r\nB=1\r\nB=2\r\njunk line\r\n# c\r\n\r\nC='x\ny'\n";
        assert_eq!(
            pairs(text),
            [("A", "one\ntwo"), ("B", "1"), ("B", "2"), ("C", "x\ny")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .to_vec()
        );
        let parsed = parse(text);
        assert_eq!(parsed.ignored, [5]);
        assert_eq!(parsed.assignments[3].line, 8);
    }

    #[test]
    fn facts_for_other_readers() {
        let a = one("JWT_SECRET=abc#def");
        assert!(a.hash_cut && !a.spaced);
        assert!(!one("A=abc #def").hash_cut);
        assert!(one("A=#abc").hash_cut);
        assert!(one("A=a b").spaced);
        assert!(one("A = b").spaced);
        assert!(!one("A=\"a b\"").spaced);
        assert_eq!(one("A=`x`").quote, Quote::Backtick);
        assert!(one("A: x").colon);
        assert!(parse("__proto__=x\n").assignments.is_empty());
    }

    /// dotenv's expression itself, run by an ECMAScript engine, then its
    /// `parse`'s post-processing: the oracle for random files.
    fn by_the_regex(text: &str) -> Vec<(String, String)> {
        const LINE: &str = r#"(?:^|^)\s*(?:export\s+)?([\w.-]+)(?:\s*=\s*?|:\s+?)(\s*'(?:\\'|[^'])*'|\s*"(?:\\"|[^"])*"|\s*`(?:\\`|[^`])*`|[^#\r\n]+)?\s*(?:#.*)?(?:$|$)"#;
        static REGEXES: std::sync::OnceLock<(regress::Regex, regress::Regex)> = std::sync::OnceLock::new();
        let (line, quotes) = REGEXES.get_or_init(|| {
            let line = regress::Regex::with_flags(LINE, "m").expect("dotenv's LINE");
            let quotes = regress::Regex::with_flags(r#"^(['"`])([\s\S]*)\1$"#, "m").expect("dotenv's quotes");
            (line, quotes)
        });
        let lines = text.replace("\r\n", "\n").replace('\r', "\n");
        let mut out = Vec::new();
        for m in line.find_iter(&lines) {
            let key = lines[m.group(1).expect("a key")].to_string();
            let raw = m.group(2).map(|r| &lines[r]).unwrap_or("");
            let value = raw.trim_matches(is_js_space);
            let mut stripped = String::new();
            let mut last = 0;
            for q in quotes.find_iter(value) {
                let inner = q.group(2).expect("the inside");
                stripped.push_str(&value[last..q.range().start]);
                stripped.push_str(&value[inner]);
                last = q.range().end;
            }
            stripped.push_str(&value[last..]);
            let stripped =
                if value.starts_with('"') { stripped.replace("\\n", "\n").replace("\\r", "\r") } else { stripped };
            if key != "__proto__" {
                out.push((key, stripped));
            }
        }
        out
    }

    #[test]
    fn the_regex_oracle_reads_the_issue_lines_too() {
        for text in ["JWT_SECRET=abc#9f8e\n", "A=\"x\ny\"\nB='c' # d\n", "A=\n'x'\n", "URL:\nB=2\n"] {
            assert_eq!(pairs(text), by_the_regex(text), "{text:?}");
        }
    }

    /// Files made of the characters dotenv's grammar turns on.
    fn env_text() -> impl Strategy<Value = String> {
        let atoms = prop::sample::select(vec![
            "A",
            "B_1",
            "x.y",
            "k-z",
            "export",
            " ",
            "\t",
            "\n",
            "\r\n",
            "\r",
            "=",
            ":",
            "#",
            "'",
            "\"",
            "`",
            "\\",
            "\\n",
            "$",
            "{",
            "}",
            "v",
            "é",
            "\u{a0}",
            "\u{2028}",
            "\u{feff}",
            "__proto__",
        ]);
        prop::collection::vec(atoms, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]
        #[test]
        fn reads_every_file_as_the_regex_does(text in env_text()) {
            prop_assert_eq!(pairs(&text), by_the_regex(&text));
        }
    }
}
