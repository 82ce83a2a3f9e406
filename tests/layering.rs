//! The stages import only from the stages to their left (and the shared
//! `stats`, `time`, `escape`, `prefetch`, `cpu`); `config` and `app` know everything, and
//! nothing below them knows them. A cheap scan that turns the rule into a
//! test.

use std::path::Path;

const ORDER: &[&str] = &[
    "capture",
    "decode",
    "reassembly",
    "protocol",
    "session",
    "collect",
    "trigger",
    "report",
    "export",
    "store",
    "web",
    "ui",
    "app",
];
const TOP: &[&str] = &["config", "app"];

fn rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn stages_import_only_from_their_left() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    let mut checked = 0;
    for (i, stage) in ORDER.iter().enumerate() {
        if TOP.contains(stage) {
            continue;
        }
        let mut files = Vec::new();
        rs_files(&src.join(stage), &mut files);
        for f in files {
            checked += 1;
            let text = std::fs::read_to_string(&f).unwrap();
            for (n, line) in text.lines().enumerate() {
                let mut rest = line;
                while let Some(at) = rest.find("crate::") {
                    rest = &rest[at + 7..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    let later = ORDER.iter().position(|s| *s == name).is_some_and(|j| j > i);
                    if later || TOP.contains(&name.as_str()) {
                        violations.push(format!(
                            "{}:{}: {stage} uses crate::{name}",
                            f.strip_prefix(&src).unwrap().display(),
                            n + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(checked > 30, "scanned only {checked} files");
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
