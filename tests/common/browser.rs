//! Headless Chromium (Debian's `chromium`) for the tests of web pages.

use std::path::Path;
use std::process::{Command, Stdio};

/// The headless browser, or None (with the reason) outside CI when it is
/// not installed. CI must have it (scripts/setup.sh installs it).
pub fn chromium() -> Option<&'static str> {
    for c in ["chromium", "chromium-browser"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(c);
        }
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "chromium is missing: run scripts/setup.sh"
    );
    eprintln!("skipped: chromium is not installed (scripts/setup.sh installs it)");
    None
}

pub fn browse(chrome: &str, profile: &Path, extra: &[&str], url: &str) -> String {
    let o = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(
        o.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}
