//! Running the real binary the way a user does, isolated from this machine's environment.

use std::path::Path;

/// `mockmate-diag` in `dir`, with an empty environment (only PATH), no colour.
pub fn diag(dir: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("mockmate-diag").expect("binary is built");
    cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).current_dir(dir);
    cmd
}

/// Runs and parses the single JSON document on stdout; returns (exit code, report).
pub fn json_run(cmd: &mut assert_cmd::Command) -> (i32, serde_json::Value) {
    let out = cmd.output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("stdout is not one JSON document ({e}):\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code().unwrap_or(-1), report)
}

/// The result of check `id` in a JSON report.
pub fn check<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no check {id} in report:\n{report:#}"))
}

/// Status of check `id`.
pub fn status<'a>(report: &'a serde_json::Value, id: &str) -> &'a str {
    check(report, id)["status"].as_str().unwrap_or("?")
}

/// The message of check `id`.
pub fn message<'a>(report: &'a serde_json::Value, id: &str) -> &'a str {
    check(report, id)["message"].as_str().unwrap_or_default()
}

/// The hint of check `id` (empty when none).
pub fn hint<'a>(report: &'a serde_json::Value, id: &str) -> &'a str {
    check(report, id)["hint"].as_str().unwrap_or_default()
}

/// Asserts the status of check `id`, showing the whole result when it differs.
#[track_caller]
pub fn assert_status(report: &serde_json::Value, id: &str, want: &str) {
    assert_eq!(status(report, id), want, "{id}: {:#}", check(report, id));
}

/// Every SQL statement in every hint of `report` is whole: it ends with `;`, so
/// that pasted into psql it runs instead of waiting for more (issue 27).
#[track_caller]
pub fn assert_hints_paste(report: &serde_json::Value) {
    use mockmate_diag::format::text::{Piece, hint_pieces};
    for c in report["checks"].as_array().into_iter().flatten() {
        let Some(hint) = c["hint"].as_str() else { continue };
        for piece in hint_pieces(hint) {
            if let Piece::Sql(sql) = piece {
                assert!(sql.ends_with(';'), "{}: a statement that does not paste: {sql:?}\nin: {hint}", c["id"]);
            }
        }
    }
}
