//! Text for people: word wrapping to a width, and a hint cut into prose and the
//! SQL statements it contains, so that SQL can stand on lines of its own
//! (copyable) while the prose wraps. Pure functions, no styling.

use unicode_width::UnicodeWidthStr;

/// Display width (columns) of `s`.
pub fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// Words of `text`: split at spaces, except inside a `backtick span` (a command
/// is never broken).
fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_code = false;
    for c in text.chars() {
        match c {
            '`' => {
                in_code = !in_code;
                current.push(c);
            }
            ' ' | '\n' | '\t' if !in_code => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// Wraps `text` to `width` columns: the first line starts after `first` columns
/// already used (the caller prints them), the next lines are indented by
/// `indent` spaces (included in the returned lines). A word longer than a line
/// gets a line of its own and is not broken.
pub fn wrap(text: &str, width: usize, first: usize, indent: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    let mut used = first;
    let pad = " ".repeat(indent);
    for word in words(text) {
        let w = self::width(&word);
        let empty = line.is_empty() || line == pad;
        if !empty && used + 1 + w > width {
            lines.push(std::mem::replace(&mut line, pad.clone()));
            used = indent;
        }
        if !(line.is_empty() || line == pad) {
            line.push(' ');
            used += 1;
        }
        line.push_str(&word);
        used += w;
    }
    if !(line.is_empty() || line == pad) || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Wraps SQL at spaces outside quotes (a newline is whitespace to SQL, so the
/// lines paste into psql as they are); every line is indented by `indent`.
pub fn wrap_sql(sql: &str, width: usize, indent: usize) -> Vec<String> {
    // Spaces inside '…' or "…" are not break points: glue them.
    let mut glued = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            _ => {}
        }
        glued.push(if c == ' ' && quote.is_some() { '\u{0}' } else { c });
    }
    let pad = " ".repeat(indent);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in glued.split(' ').filter(|w| !w.is_empty()) {
        let word = word.replace('\u{0}', " ");
        if !line.is_empty() && indent + width_of(&line) + 1 + self::width(&word) > width {
            lines.push(format!("{pad}{}", std::mem::take(&mut line)));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() {
        lines.push(format!("{pad}{line}"));
    }
    lines
}

fn width_of(s: &str) -> usize {
    width(s)
}

/// A part of a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Words to wrap.
    Prose(String),
    /// One SQL statement, to print on lines of its own.
    Sql(String),
}

/// Statements a hint may tell the operator to run.
const SQL_STARTS: &[&str] = &[
    "INSERT INTO ",
    "UPDATE ",
    "DELETE FROM ",
    "GRANT ",
    "REVOKE ",
    "CREATE ",
    "ALTER ",
    "DROP ",
    "SELECT ",
    "SET ",
    "RESET ",
    "VACUUM ",
    "ANALYZE ",
    "REINDEX ",
    "TRUNCATE ",
    "COMMENT ON ",
];

/// Cuts a hint into prose and SQL statements. A statement starts with an
/// upper-case SQL verb at the start of the hint or after `:` or `;`, and ends at
/// its `;`, at a `)` it did not open, before a parenthetical in words (`(or …`)
/// or `, or …`, or at the end of the hint. SQL inside parentheses within a
/// sentence stays in the sentence.
pub fn hint_pieces(hint: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut prose_start = 0;
    let mut i = 0;
    while i < hint.len() {
        let before = hint[prose_start..i].trim_end();
        let at_boundary = i == 0 || before.ends_with(':') || before.ends_with(';') || before.is_empty();
        let starts_sql = hint[i..].starts_with(|c: char| c.is_ascii_uppercase())
            && (i == 0 || hint[..i].ends_with(' '))
            && SQL_STARTS.iter().any(|k| hint[i..].starts_with(k));
        if at_boundary && starts_sql {
            let end = i + sql_len(&hint[i..]);
            let prose = hint[prose_start..i].trim();
            if !prose.is_empty() {
                pieces.push(Piece::Prose(prose.to_string()));
            }
            pieces.push(Piece::Sql(hint[i..end].trim().to_string()));
            prose_start = end;
            i = end;
            continue;
        }
        i += hint[i..].chars().next().map_or(1, char::len_utf8);
    }
    let rest = hint[prose_start..].trim();
    if !rest.is_empty() {
        pieces.push(Piece::Prose(rest.to_string()));
    }
    pieces
}

/// The length of the statement at the start of `s` (see [`hint_pieces`]).
fn sql_len(s: &str) -> usize {
    let mut quote: Option<char> = None;
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            ';' if depth == 0 => return i + 1,
            '(' => {
                if depth == 0 && s[..i].ends_with(' ') && is_prose_parenthetical(&s[i + 1..]) {
                    return i;
                }
                depth += 1;
            }
            ')' if depth == 0 => return i,
            ')' => depth -= 1,
            ',' if depth == 0 && [", or ", ", and ", ", then "].iter().any(|w| s[i..].starts_with(w)) => return i,
            _ => {}
        }
    }
    s.len()
}

/// `or upgrade …`, `e.g. …`, `at least …`: words, not a column list.
fn is_prose_parenthetical(inside: &str) -> bool {
    let mut words = inside.split(' ');
    let first = words.next().unwrap_or_default();
    let second = words.next().unwrap_or_default();
    !first.is_empty()
        && first.chars().all(|c| c.is_ascii_lowercase() || c == '.')
        && second.starts_with(|c: char| c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE_USER: &str = "INSERT INTO users (id, email, first_name, last_name, credits, is_active, is_verified) VALUES (gen_random_uuid(), 'test@mock-mate.com', 'Test', 'User', 10, true, true);";

    #[test]
    fn prose_wraps_at_words_and_never_inside_a_command() {
        let lines =
            wrap("generate one with `openssl rand -base64 48` (at least 32 bytes) and restart the API", 40, 6, 6);
        assert_eq!(
            lines,
            [
                "generate one with",
                "      `openssl rand -base64 48` (at",
                "      least 32 bytes) and restart the",
                "      API"
            ]
        );
        assert_eq!(wrap("", 40, 0, 2), [""]);
        assert_eq!(wrap("averyveryverylongword x", 10, 0, 2), ["averyveryverylongword", "  x"]);
    }

    #[test]
    fn sql_is_cut_out_of_hints() {
        use Piece::{Prose, Sql};
        let cases: Vec<(String, Vec<Piece>)> = vec![
            (format!("create a user: {CREATE_USER}"), vec![Prose("create a user:".into()), Sql(CREATE_USER.into())]),
            (
                "as the tables' owner: GRANT SELECT ON users TO \"app\"; GRANT SELECT, INSERT ON sessions TO \"app\""
                    .into(),
                vec![
                    Prose("as the tables' owner:".into()),
                    Sql("GRANT SELECT ON users TO \"app\";".into()),
                    Sql("GRANT SELECT, INSERT ON sessions TO \"app\"".into()),
                ],
            ),
            (
                "CREATE EXTENSION pgcrypto (or upgrade to PostgreSQL 13 or later)".into(),
                vec![Sql("CREATE EXTENSION pgcrypto".into()), Prose("(or upgrade to PostgreSQL 13 or later)".into())],
            ),
            (
                format!(
                    "activate a user (UPDATE users SET is_active = true WHERE email = '…') or create one: {CREATE_USER}"
                ),
                vec![
                    Prose(
                        "activate a user (UPDATE users SET is_active = true WHERE email = '…') or create one:".into(),
                    ),
                    Sql(CREATE_USER.into()),
                ],
            ),
            (
                "give the user credits: UPDATE users SET credits = 10 WHERE id = 'x', or top up in the admin".into(),
                vec![
                    Prose("give the user credits:".into()),
                    Sql("UPDATE users SET credits = 10 WHERE id = 'x'".into()),
                    Prose(", or top up in the admin".into()),
                ],
            ),
            (
                "start Redis; SET is not a word here".into(),
                vec![Prose("start Redis;".into()), Sql("SET is not a word here".into())],
            ),
            (
                "run the database migrations (npm run migrate)".into(),
                vec![Prose("run the database migrations (npm run migrate)".into())],
            ),
        ];
        for (hint, want) in cases {
            assert_eq!(hint_pieces(&hint), want, "{hint}");
        }
    }

    #[test]
    fn sql_wraps_outside_quotes_and_pastes_back_whole() {
        let lines = wrap_sql("INSERT INTO t (a) VALUES ('two words here', 'x');", 28, 4);
        assert_eq!(lines, ["    INSERT INTO t (a) VALUES", "    ('two words here', 'x');"]);
        let joined: Vec<&str> = lines.iter().map(|l| l.trim()).collect();
        assert_eq!(joined.join(" "), "INSERT INTO t (a) VALUES ('two words here', 'x');");
    }
}
