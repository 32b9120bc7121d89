//! A real browser for page tests: Debian's headless Chromium (`WRAPFLOW_TEST_CHROMIUM`,
//! installed by `scripts/test.sh`), started with a fresh profile and no background networking
//! (the machines have no internet).

use std::path::Path;
use std::process::Command;

use super::s3::tool;

/// Loads `page` and returns the DOM as the browser built it (`--dump-dom`), and writes a
/// screenshot of it to `png`.
pub fn load(page: &Path, png: &Path) -> String {
    let profile = tempfile::TempDir::new().unwrap();
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let run = |action: String| {
        let out = Command::new(tool("WRAPFLOW_TEST_CHROMIUM"))
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1280,4000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(action)
            .arg(&url)
            .output()
            .expect("start chromium");
        assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    run(format!("--screenshot={}", png.display()));
    run("--dump-dom".into())
}
