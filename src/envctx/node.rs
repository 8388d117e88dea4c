//! An env file as Node.js 20's built-in `--env-file` reads it (`Dotenv::ParseContent`
//! in node's `src/node_dotenv.cc`, as shipped in Node 20.20): for an API started
//! with `node --env-file=.env server.js` instead of `require('dotenv')`.
//!
//! It is not npm dotenv's grammar: a name is whatever precedes the next `=`
//! (spaces trimmed, even across lines), an unquoted value ends at any `#`, only
//! spaces (not tabs) are trimmed, a double-quoted value runs to the next `"`
//! anywhere in the file, and a quote never closed before the end of the file
//! sets nothing. The integration tests run the real `node --env-file` on each
//! case (`tests/env_loaders.rs`).

use super::dotenv::{Assignment, Parsed, Quote};

/// `trim_spaces`: leading and trailing `' '` only.
fn trim_spaces(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| *b != b' ').unwrap_or(s.len());
    let end = s.iter().rposition(|b| *b != b' ').map_or(start, |i| i + 1);
    &s[start..end.max(start)]
}

fn find(s: &[u8], byte: u8, from: usize) -> Option<usize> {
    s.get(from..)?.iter().position(|b| *b == byte).map(|i| i + from)
}

/// Node's reading of `text`, in file order.
pub fn parse(text: &str) -> Parsed {
    // `lines.erase(std::remove(…, '\r'))`: every carriage return goes.
    let owned: Vec<u8> = text.bytes().filter(|b| *b != b'\r').collect();
    let all = &owned[..];
    let offset_of = |part: &[u8]| part.as_ptr() as usize - all.as_ptr() as usize;
    let line_at = |offset: usize| all[..offset.min(all.len())].iter().filter(|b| **b == b'\n').count() + 1;
    let mut parsed = Parsed::default();
    let mut covered: Vec<(usize, usize)> = Vec::new();
    let mut content = trim_spaces(all);
    while !content.is_empty() {
        // Blank lines and comments.
        if (content[0] == b'\n' || content[0] == b'#')
            && let Some(newline) = find(content, b'\n', 0)
        {
            content = &content[newline + 1..];
            continue;
        }
        let Some(equal) = find(content, b'=', 0) else {
            // No `=` in the rest of the file: this line is skipped.
            content = match find(content, b'\n', 0) {
                Some(newline) => &content[newline + 1..],
                None => &[],
            };
            continue;
        };
        let start = offset_of(content);
        let raw_key = &content[..equal];
        let key_spaced = raw_key.last() == Some(&b' ');
        let mut key = trim_spaces(raw_key);
        let after_equal = &content[equal + 1..];
        let value_spaced = after_equal.first() == Some(&b' ');
        content = trim_spaces(after_equal);
        if key.is_empty() {
            break;
        }
        if key.starts_with(b"export ") {
            key = &key[7..];
        }
        let name = String::from_utf8_lossy(key).into_owned();
        let key_line = line_at(offset_of(key).max(start));
        let mut push = |value: String, quote: Quote, hash_cut: bool, inner_space: bool, end: usize| {
            parsed.assignments.push(Assignment {
                name: name.clone(),
                value,
                line: key_line,
                quote,
                hash_cut,
                colon: false,
                spaced: key_spaced || value_spaced || inner_space,
            });
            covered.push((line_at(start), line_at(end)));
        };
        if content.is_empty() {
            push(String::new(), Quote::None, false, false, start);
            break;
        }
        // A double-quoted value with its closing quote anywhere: `\n` expands.
        if content[0] == b'"'
            && let Some(closing) = find(content, b'"', 1)
        {
            let value = String::from_utf8_lossy(&content[1..closing]).replace("\\n", "\n");
            let end = offset_of(content) + closing;
            push(value, Quote::Double, false, false, end);
            content = match find(content, b'\n', closing + 1) {
                Some(newline) => &content[newline + 1..],
                None => &[],
            };
            continue;
        }
        if matches!(content[0], b'\'' | b'"' | b'`') {
            let quote = match content[0] {
                b'\'' => Quote::Single,
                b'"' => Quote::Double,
                _ => Quote::Backtick,
            };
            match find(content, content[0], 1) {
                // Not closed: the line, quote and all, when a line end follows.
                None => {
                    if let Some(newline) = find(content, b'\n', 0) {
                        let value = String::from_utf8_lossy(&content[..newline]).into_owned();
                        push(value, Quote::None, false, false, offset_of(content) + newline);
                        content = &content[newline + 1..];
                    }
                    // Else the rest is read again as a line of its own, with no `=` in it.
                }
                Some(closing) => {
                    let value = String::from_utf8_lossy(&content[1..closing]).into_owned();
                    push(value, quote, false, false, offset_of(content) + closing);
                    content = match find(content, b'\n', closing + 1) {
                        Some(newline) => &content[newline + 1..],
                        None => &[],
                    };
                }
            }
            continue;
        }
        // Unquoted: to the line's end, cut at the first `#`, spaces trimmed.
        let newline = find(content, b'\n', 0);
        let line = &content[..newline.unwrap_or(content.len())];
        let hash = find(line, b'#', 0);
        let value = trim_spaces(&line[..hash.unwrap_or(line.len())]);
        let hash_cut = hash.is_some_and(|h| h > 0 && line[h - 1] != b' ');
        let inner_space = value.contains(&b' ');
        let end = offset_of(content) + line.len().saturating_sub(1);
        push(String::from_utf8_lossy(value).into_owned(), Quote::None, hash_cut, inner_space, end);
        content = match newline {
            Some(newline) => &content[newline + 1..],
            None => &[],
        };
    }
    let mut taken = vec![false; line_at(all.len()) + 1];
    for (a, b) in covered {
        taken.iter_mut().take(b + 1).skip(a).for_each(|t| *t = true);
    }
    for (index, line) in all.split(|b| *b == b'\n').enumerate() {
        let number = index + 1;
        let content = trim_spaces(line);
        if !content.is_empty() && content[0] != b'#' && !taken[number] {
            parsed.ignored.push(number);
        }
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).assignments.into_iter().map(|a| (a.name, a.value)).collect()
    }

    fn kv(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn reads_as_node_20_does() {
        // Each observed with `node --env-file` (Node 20.20.2); tests/env_loaders.rs re-runs them.
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("A=abc#def\nB=abc #def\n", &[("A", "abc"), ("B", "abc")]),
            ("C=\"x#y\" # c\n", &[("C", "x#y")]),
            ("D='multi\nline'\n", &[("D", "multi\nline")]),
            ("E=\"a\\nb\"\n", &[("E", "a\nb")]),
            ("G = spaced value  \n", &[("G", "spaced value")]),
            ("I=\"open\nJ=2\nM=\"q\"\n", &[("I", "open\nJ=2\nM=")]),
            ("O\nP=1\n", &[("O\nP", "1")]),
            ("A='x", &[]),
            ("export  A=1\n", &[(" A", "1")]),
            ("A=\tx\t\n", &[("A", "\tx\t")]),
            ("=x\nB=2\n", &[]),
            ("A=x\nB=\"unclosed\nC=3\n", &[("A", "x"), ("B", "\"unclosed"), ("C", "3")]),
            ("A= \"x\"\n", &[("A", "x")]),
        ];
        for (text, want) in cases {
            assert_eq!(pairs(text), kv(want), "{text:?}");
        }
    }

    #[test]
    fn facts_and_ignored_lines() {
        let p = parse("A=abc#def\njunk\nB=1\n");
        assert!(p.assignments[0].hash_cut);
        assert_eq!(p.ignored, Vec::<usize>::new(), "junk is part of B's name for node: {p:?}");
        let p = parse("A=1\njunk\n");
        assert_eq!(p.ignored, [2]);
    }
}
