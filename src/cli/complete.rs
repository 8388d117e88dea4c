//! Shell completions that know the checks: `--only`/`--skip` complete check ids
//! (the built-in manifest, plus any `--checks` given to `completions`),
//! `--report` completes `FORMAT=PATH` with each format's usual file name, and
//! `--env` completes the environments whose `.env.NAME` files are in the
//! directory where the user presses TAB (bash, zsh, fish).
//!
//! The ids are possible values of the *generating* command only: parsing stays
//! open to ids from manifests the completion script was not generated with.

use clap::CommandFactory;
use clap::builder::{PossibleValue, PossibleValuesParser};
use clap_complete::Shell;

use super::Cli;
use crate::manifest::CheckDecl;

/// `--report` completions: a format and its conventional file.
const REPORTS: &[(&str, &str)] = &[
    ("junit=report.xml", "JUnit XML for CI test reports"),
    ("json=report.json", "one JSON document"),
    ("markdown=report.md", "a support-ticket report"),
    ("table=report.txt", "the table, without colour"),
];

/// The completion script for `shell`.
pub fn script(shell: Shell, decls: &[CheckDecl]) -> String {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut command(decls), BIN, &mut buf);
    let script = String::from_utf8_lossy(&buf).into_owned();
    match shell {
        // clap_complete (4.6.11, 4.6.12) spells a hyphenated binary's subcommand states
        // two ways, `mockmate__diag__subcmd__run` where it walks the words and
        // `mockmate__subcmd__diag__subcmd__run` in the case arms, so nothing after a
        // subcommand would complete (clap-rs/clap#6421). Spell the arms like the walk.
        Shell::Bash => with_environments(shell, &script.replace("mockmate__subcmd__diag", "mockmate__diag")),
        _ => with_environments(shell, &script),
    }
}

/// `--env` completes `NAME` for each `.env.NAME` file in the current directory
/// (not `.env.example` and the like, nor `.env.NAME.local`): clap_complete's
/// scripts complete file names there, which `--env` refuses.
fn with_environments(shell: Shell, script: &str) -> String {
    let skip = crate::run::plan::NOT_ENVIRONMENTS.join(" ");
    match shell {
        Shell::Bash => {
            let function = format!(
                "_mockmate_diag_envs() {{\n    local f n\n    for f in .env.*; do\n        [ -f \"$f\" ] || continue\n        \
                 n=${{f#.env.}}\n        [[ $n =~ ^[A-Za-z0-9_-]+$ ]] || continue\n        \
                 [[ \" {skip} \" == *\" ${{n,,}} \"* ]] && continue\n        printf '%s\\n' \"$n\"\n    done\n}}\n\n"
            );
            let body = script.replace(
                "--env)\n                    COMPREPLY=($(compgen -f \"${cur}\"))",
                "--env)\n                    COMPREPLY=($(compgen -W \"$(_mockmate_diag_envs)\" -- \"${cur}\"))",
            );
            format!("{function}{body}")
        }
        Shell::Zsh => {
            let function = format!(
                "_mockmate_diag_envs() {{\n    local -a envs\n    local f n\n    for f in .env.*(N.); do\n        \
                 n=${{f#.env.}}\n        [[ $n == [A-Za-z0-9_-]## ]] || continue\n        \
                 [[ \" {skip} \" == *\" ${{(L)n}} \"* ]] && continue\n        envs+=($n)\n    done\n    \
                 _describe -t environments 'environment' envs\n}}\n\n"
            );
            let body: Vec<String> = script
                .lines()
                .map(|line| {
                    if line.trim_start().starts_with("'--env=[") {
                        line.replace(":NAME:_default'", ":NAME:_mockmate_diag_envs'")
                    } else {
                        line.to_string()
                    }
                })
                .collect();
            let body = body.join("\n") + "\n";
            body.replacen("autoload -U is-at-least\n", &format!("autoload -U is-at-least\n\n{function}"), 1)
        }
        Shell::Fish => {
            let function = format!(
                "function __fish_mockmate_diag_envs\n    for f in .env.*\n        test -f $f; or continue\n        \
                 set -l n (string replace -r '^\\.env\\.' '' -- $f)\n        \
                 string match -qr '^[A-Za-z0-9_-]+$' -- $n; or continue\n        \
                 contains -- (string lower -- $n) {skip}; and continue\n        echo $n\n    end\nend\n\n"
            );
            let body: Vec<String> = script
                .lines()
                .map(|line| {
                    if line.contains(" -l env -d ") && line.ends_with(" -r") {
                        format!("{line} -f -a '(__fish_mockmate_diag_envs)'")
                    } else {
                        line.to_string()
                    }
                })
                .collect();
            format!("{function}{}\n", body.join("\n"))
        }
        _ => script.to_string(),
    }
}

const BIN: &str = "mockmate-diag";

/// The command line to generate completion scripts from.
pub fn command(decls: &[CheckDecl]) -> clap::Command {
    // clap's possible values take `&'static str`; this process prints one script and exits.
    let ids: Vec<PossibleValue> = decls
        .iter()
        .map(|d| {
            let id: &'static str = Box::leak(d.id.clone().into_boxed_str());
            let title: &'static str = Box::leak(d.title.clone().into_boxed_str());
            PossibleValue::new(id).help(title)
        })
        .collect();
    let reports: Vec<PossibleValue> = REPORTS.iter().map(|(v, help)| PossibleValue::new(*v).help(*help)).collect();
    let with_values = |cmd: clap::Command| {
        cmd.mut_arg("only", |a| a.value_parser(PossibleValuesParser::new(ids.clone())))
            .mut_arg("skip", |a| a.value_parser(PossibleValuesParser::new(ids.clone())))
            .mut_arg("report", |a| a.value_parser(PossibleValuesParser::new(reports.clone())))
    };
    with_values(Cli::command()).mut_subcommand("run", with_values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script_for(shell: Shell) -> String {
        script(shell, &crate::run::load_manifests(&[]).expect("built-in manifest").checks)
    }

    #[test]
    fn scripts_offer_check_ids_and_report_formats() {
        // clap_complete's PowerShell and Elvish scripts complete flags, not values.
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = script_for(shell);
            for want in ["postgres.active_users", "consistency.cached_sessions", "junit=report.xml"] {
                assert!(s.contains(want), "{shell}: {want} missing");
            }
        }
    }

    /// What bash offers for the words typed so far (the last one being completed).
    fn bash_completes(script: &std::path::Path, words: &str) -> Vec<String> {
        let program = format!(
            "source '{}'; read -ra COMP_WORDS <<< \"$WORDS\"; [[ \"$WORDS\" == *' ' ]] && COMP_WORDS+=(''); \
             COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); \
             _mockmate__diag mockmate-diag \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\" 2>/dev/null; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let out = std::process::Command::new("bash")
            .args(["--norc", "-c", &program])
            .env("WORDS", words)
            .output()
            .expect("bash runs (apt-get install bash)");
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
    }

    #[test]
    fn bash_completes_ids_formats_and_subcommand_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mockmate-diag.bash");
        std::fs::write(&path, script_for(Shell::Bash)).expect("write");
        assert_eq!(bash_completes(&path, "mockmate-diag --only postgres.ac"), ["postgres.active_users"]);
        assert_eq!(bash_completes(&path, "mockmate-diag run --skip redis.me"), ["redis.memory"]);
        assert_eq!(bash_completes(&path, "mockmate-diag run --report j"), ["junit=report.xml", "json=report.json"]);
        assert_eq!(bash_completes(&path, "mockmate-diag list --format "), ["table", "json", "markdown"]);
        assert!(bash_completes(&path, "mockmate-diag completions ").contains(&"zsh".to_string()));
    }

    /// Issue 26: `--env <TAB>` offers the environments of this directory's env files.
    #[test]
    fn bash_completes_environment_names_from_env_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mockmate-diag.bash");
        std::fs::write(&path, script_for(Shell::Bash)).expect("write");
        for file in [".env", ".env.production", ".env.staging", ".env.example", ".env.production.local", ".env.Local"] {
            std::fs::write(dir.path().join(file), "A=1\n").expect("write");
        }
        let completes = |words: &str| {
            let program = format!(
                "cd '{}' && source '{}'; read -ra COMP_WORDS <<< \"$WORDS\"; [[ \"$WORDS\" == *' ' ]] && COMP_WORDS+=(''); \
                 COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); \
                 _mockmate__diag mockmate-diag \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\" 2>/dev/null; \
                 printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                dir.path().display(),
                path.display()
            );
            let out = std::process::Command::new("bash")
                .args(["--norc", "-c", &program])
                .env("WORDS", words)
                .output()
                .expect("bash runs (apt-get install bash)");
            let mut got: Vec<String> =
                String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
            got.sort();
            got
        };
        assert_eq!(completes("mockmate-diag --env "), ["production", "staging"]);
        assert_eq!(completes("mockmate-diag run --env st"), ["staging"]);
        assert_eq!(completes("mockmate-diag --env-file .env.prod"), [".env.production", ".env.production.local"]);
    }

    #[test]
    fn zsh_and_fish_complete_environment_names_too() {
        let zsh = script_for(Shell::Zsh);
        assert!(zsh.contains("_mockmate_diag_envs() {") && zsh.contains(":NAME:_mockmate_diag_envs'"), "{zsh}");
        assert!(!zsh.contains("'--env=[Environment to diagnose; loads .env.NAME then .env \\[default\\: \\$NODE_ENV, else development\\]]:NAME:_default'"));
        let fish = script_for(Shell::Fish);
        assert!(
            fish.contains("function __fish_mockmate_diag_envs") && fish.contains("-f -a '(__fish_mockmate_diag_envs)'")
        );
    }

    #[test]
    fn parsing_still_takes_ids_the_script_did_not_know() {
        use clap::Parser;
        let cli = Cli::try_parse_from(["mockmate-diag", "--only", "custom.from_a_manifest"]).expect("parses");
        assert_eq!(cli.run.only, ["custom.from_a_manifest"]);
    }
}
