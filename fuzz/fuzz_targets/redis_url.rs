//! The Redis URL parser (`REDIS_URL` as node-redis 6 reads it); the input is
//! the URL. Properties: it never panics; it is deterministic; a password (as a
//! URL parser reads the userinfo) never shows in the target or the failure; a
//! target names a host or a socket, and a database ≥ 0. Passwords are
//! recognised by a marker the seeds carry (`Zq9x`), checked only where no other
//! part of the URL holds it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mockmate_diag::probe::redis::RedisTarget;

const MARK: &str = "Zq9x";

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let get = |name: &str| (name == "REDIS_URL").then(|| raw.to_string());

    let first = RedisTarget::from_env(&get);
    assert_eq!(first, RedisTarget::from_env(&get), "the same REDIS_URL must read the same");
    let text = match &first {
        Ok(t) => format!("{t:?} {} {:?} {}", t.addr(), t.tls_setup(), t.user_without_password()),
        Err(f) => format!("{f:?}"),
    };

    let marked = |v: &str| v.contains(MARK);
    let trimmed = raw.trim();
    let only_in_password = if let Some(rest) = trimmed.strip_prefix("unix:") {
        // node-redis's own reading, by hand: a socket path (which the target
        // quotes, `..` and all), with credentials only before it
        // (`unix://user:pw@/path`, which the parser refuses).
        match rest.strip_prefix("//") {
            Some(rest) => {
                let (auth, path) = rest.split_once('/').unwrap_or((rest, ""));
                marked(auth) && !marked(path)
            }
            None => false,
        }
    } else {
        match url::Url::parse(trimmed) {
            Err(_) => true, // an unparsable URL is never quoted
            Ok(u) => {
                !marked(u.scheme())
                    && !marked(u.username())
                    && !u.host_str().is_some_and(marked)
                    && !marked(u.path())
                    && !u.query().is_some_and(marked)
                    && !u.fragment().is_some_and(marked)
            }
        }
    };
    if only_in_password {
        assert!(!text.contains(MARK), "a password shows: {text}");
    }

    if let Ok(t) = &first {
        assert!(t.db >= 0);
        assert!(t.socket.is_some() || !t.host.is_empty(), "{t:?}");
    }
});
