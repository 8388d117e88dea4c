//! Shell completions that know the checks: `--only`/`--skip` complete check ids
//! (the built-in manifest, plus any `--checks` given to `completions`) and
//! `--report` completes `FORMAT=PATH` with each format's usual file name.
//!
//! The ids are possible values of the *generating* command only: parsing stays
//! open to ids from manifests the completion script was not generated with.

use clap::CommandFactory;
use clap::builder::{PossibleValue, PossibleValuesParser};

use super::Cli;
use crate::manifest::CheckDecl;

/// `--report` completions: a format and its conventional file.
const REPORTS: &[(&str, &str)] = &[
    ("junit=report.xml", "JUnit XML for CI test reports"),
    ("json=report.json", "one JSON document"),
    ("markdown=report.md", "a support-ticket report"),
    ("table=report.txt", "the table, without colour"),
];

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

    fn script(shell: clap_complete::Shell) -> String {
        let decls = crate::run::load_manifests(&[]).expect("built-in manifest");
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut command(&decls), "mockmate-diag", &mut buf);
        String::from_utf8(buf).expect("utf-8")
    }

    #[test]
    fn scripts_offer_check_ids_and_report_formats() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let s = script(shell);
            for want in ["postgres.active_users", "consistency.cached_sessions", "junit=report.xml"] {
                assert!(s.contains(want), "{shell}: {want} missing");
            }
        }
        let fish = script(clap_complete::Shell::Fish);
        let only = fish.lines().find(|l| l.contains("-l only") && !l.contains("__fish_seen_subcommand_from run"));
        assert!(only.is_some_and(|l| l.contains("env.required")), "{fish}");
    }

    #[test]
    fn parsing_still_takes_ids_the_script_did_not_know() {
        use clap::Parser;
        let cli = Cli::try_parse_from(["mockmate-diag", "--only", "custom.from_a_manifest"]).expect("parses");
        assert_eq!(cli.run.only, ["custom.from_a_manifest"]);
    }
}
