//! Names the build: the commit it was built from and the date, for `--version`
//! and every report header (a support ticket must say which build produced it).
//!
//! `MOCKMATE_DIAG_COMMIT` overrides the commit (a build from a source tarball has
//! no git); `SOURCE_DATE_EPOCH` fixes the date (reproducible builds).

// Cargo's build-script protocol is lines on stdout; nothing here reaches a user.
#![allow(clippy::disallowed_macros)]

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-env-changed=MOCKMATE_DIAG_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let commit = std::env::var("MOCKMATE_DIAG_COMMIT").ok().filter(|c| !c.trim().is_empty()).or_else(git_commit);
    println!("cargo:rustc-env=MOCKMATE_DIAG_COMMIT={}", commit.as_deref().unwrap_or("unknown").trim());
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
    println!("cargo:rustc-env=MOCKMATE_DIAG_BUILD_DATE={}", civil_date(epoch));
}

/// The short hash of HEAD, and a rerun when HEAD or the branch it names moves.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    // Only files that exist: Cargo treats a missing one as always changed and
    // would rebuild the crate on every command (a repository with no packed-refs).
    let watch = |p: String| {
        if std::path::Path::new(&p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    };
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            watch(p);
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(p) = git(&["rev-parse", "--git-path", &branch])
    {
        watch(p);
    }
    git(&["rev-parse", "--short=10", "HEAD"]).filter(|c| !c.is_empty())
}

/// `YYYY-MM-DD` (UTC) of a Unix time (Howard Hinnant's days-to-civil).
fn civil_date(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
