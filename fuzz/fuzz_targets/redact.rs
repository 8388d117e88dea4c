//! The redactor's contract (src/redact.rs): it learns secrets from the
//! environment — the value of a variable whose name says SECRET, PASSWORD,
//! TOKEN, KEY or PASSWD, and the password of a URL in any variable — and then a
//! learned secret never survives redaction, wherever it is planted in any
//! text: raw, percent-encoded (form or userinfo style), JSON-escaped, or in a
//! URL's userinfo. Also: redaction never panics, and is idempotent (for secrets
//! without the mask's own `*`).
//!
//! The input is fields split by the byte 0x1E: the variable's name, the secret,
//! a digit choosing how the redactor learns it (0 by the name, 1 from a
//! DATABASE_URL, 2 from a REDIS_URL) and where it is planted (0 raw, 1 form-
//! encoded, 2 userinfo-encoded, 3 JSON-escaped, 4 raw in a URL, 5 encoded in a
//! URL), the text before and the text after.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mockmate_diag::probe::url::percent_decode;
use mockmate_diag::redact::{MASK, Redactor, is_secret_name};

/// What `Redactor::add` keeps out (too short, or flags like `true`): not secrets by contract.
fn learnable(secret: &str) -> bool {
    const HARMLESS: &[&str] = &["true", "false", "yes", "no", "on", "off", "null", "none"];
    secret.len() >= 3
        && !HARMLESS.iter().any(|h| secret.eq_ignore_ascii_case(h))
        && !(secret.len() < 6 && secret.bytes().all(|b| b.is_ascii_digit()))
}

fn userinfo(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn form(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn json(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')).unwrap_or_default().to_string()
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    let mut fields = input.splitn(5, '\u{1e}');
    let (name, secret, how, before, after) = (
        fields.next().unwrap_or(""),
        fields.next().unwrap_or(""),
        fields.next().unwrap_or(""),
        fields.next().unwrap_or(""),
        fields.next().unwrap_or(""),
    );
    let digits: Vec<u32> = how.chars().filter_map(|c| c.to_digit(10)).collect();
    let (learn, plant) = (digits.first().copied().unwrap_or(0) % 3, digits.get(1).copied().unwrap_or(0) % 6);

    // The secret as the redactor stores it (trimmed); '*' is the mask's own character.
    let secret_trimmed = secret.trim();
    let env_value = match learn {
        0 => secret.to_string(),
        1 => format!("postgres://app:{}@db.internal:5432/mockmate", userinfo(secret)),
        _ => format!("redis://:{}@cache:6379/0", userinfo(secret)),
    };
    let env_name = if learn == 0 {
        name
    } else if learn == 1 {
        "DATABASE_URL"
    } else {
        "REDIS_URL"
    };
    let redactor = Redactor::from_env([(env_name, env_value.as_str())]);

    let planted = match plant {
        0 => secret_trimmed.to_string(),
        1 => form(secret_trimmed),
        2 => userinfo(secret_trimmed),
        3 => json(secret_trimmed),
        4 => format!("postgresql://app:{secret_trimmed}@db/x"),
        _ => format!("postgresql://app:{}@db/x", userinfo(secret_trimmed)),
    };
    let text = format!("{before}{planted}{after}");
    let out = redactor.redact(&text);
    // A secret made of the mask's own `*` can match across a mask it left: idempotent otherwise.
    if !secret.contains('*') {
        assert_eq!(redactor.redact(&out), out, "redaction is idempotent");
    }
    let out_default = Redactor::default().redact(&text);
    assert_eq!(Redactor::default().redact(&out_default), out_default, "redaction is idempotent");

    // Was it learned, by the contract? By name: the name says so. From a URL: it parses
    // and its password decodes to the secret.
    let learned = match learn {
        0 => is_secret_name(name),
        _ => url::Url::parse(&env_value)
            .ok()
            .and_then(|u| u.password().map(|p| percent_decode(p).ok()))
            .flatten()
            .is_some_and(|p| p.trim() == secret_trimmed),
    };
    if learned && learnable(secret_trimmed) && !secret.contains('*') && !MASK.contains(secret_trimmed) {
        let needle = match plant {
            4 => secret_trimmed.to_string(),
            5 => userinfo(secret_trimmed),
            _ => planted.clone(),
        };
        assert!(!out.contains(&needle), "secret {secret_trimmed:?} planted as {needle:?} survives: {out:?}");
    }
});
