//! `--help` as a reader meets it: lines within 100 columns, an example for
//! every command, and the documentation's copies of it kept true.
//!
//! docs/usage.md is every command's `--help`, generated: after changing a
//! flag, `MEMTAP_BLESS=1 cargo test --test help` rewrites it. The README's
//! usage block is `memtap --help` itself, checked the same way.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_memtap");
const COMMANDS: &[&[&str]] = &[
    &["dump"],
    &["replay"],
    &["capture"],
    &["top"],
    &["report"],
    &["report", "key"],
    &["report", "peaks"],
    &["report", "events"],
    &["serve"],
];

fn help(args: &[&str], flag: &str) -> String {
    let o = Command::new(BIN)
        .args(args)
        .arg(flag)
        .env_remove("COLUMNS")
        .output()
        .expect("run memtap");
    assert_eq!(o.status.code(), Some(0), "{args:?} {flag}");
    String::from_utf8(o.stdout).expect("UTF-8 help")
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn help_fits_100_columns_and_every_command_has_examples() {
    let mut long = Vec::new();
    for args in std::iter::once(&[][..]).chain(COMMANDS.iter().copied()) {
        for flag in ["-h", "--help"] {
            for line in help(args, flag).lines() {
                if line.chars().count() > 100 {
                    long.push(format!("{args:?} {flag}: {line}"));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "lines over 100 columns:\n{}",
        long.join("\n")
    );
    for args in std::iter::once(&[][..]).chain(
        COMMANDS
            .iter()
            .copied()
            .filter(|a| a.len() == 1 && a[0] != "help"),
    ) {
        let h = help(args, "-h");
        let ex = h
            .split_once("\nExamples:\n")
            .unwrap_or_else(|| panic!("{args:?}: no Examples in\n{h}"))
            .1;
        let first = ex.lines().next().unwrap().trim_start();
        assert!(first.starts_with("memtap "), "{args:?}: {first}");
        if let Some(cmd) = args.first() {
            assert!(
                ex.lines()
                    .all(|l| l.trim_start().starts_with(&format!("memtap {cmd} "))),
                "{args:?}: an example of another command:\n{ex}"
            );
        }
    }
}

/// docs/usage.md as generated from the binary.
fn usage_md() -> String {
    let mut s = String::from(
        "# memtap usage\n\n\
         Every command's `--help`, generated (`MEMTAP_BLESS=1 cargo test --test help`\n\
         rewrites this file; the test fails when it is stale).\n",
    );
    for args in std::iter::once(&[][..]).chain(COMMANDS.iter().copied()) {
        let name = if args.is_empty() {
            "memtap".to_string()
        } else {
            format!("memtap {}", args.join(" "))
        };
        s += &format!("\n## `{name}`\n\n```text\n{}```\n", help(args, "--help"));
    }
    s
}

#[test]
fn docs_usage_is_the_help_of_every_command() {
    let path = root().join("docs/usage.md");
    let want = usage_md();
    if std::env::var_os("MEMTAP_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let got = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        got == want,
        "docs/usage.md differs from the commands' --help: run MEMTAP_BLESS=1 cargo test --test help"
    );
}

#[test]
fn readme_usage_is_memtap_help() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let marker = "<!-- `memtap --help`, checked by tests/help.rs -->\n```text\n";
    let block = readme
        .split_once(marker)
        .expect("README: the usage block's marker")
        .1;
    let block = &block[..block.find("```").expect("README: the usage block's end")];
    assert_eq!(
        block,
        help(&[], "--help"),
        "README's usage block differs from `memtap --help`: paste the new help there"
    );
}
