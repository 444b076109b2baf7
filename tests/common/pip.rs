//! Python packages a test needs, installed with pip once into a directory
//! of the test tools (shared by test runs, behind a lock), so the test
//! command needs nothing done by hand.

use std::path::PathBuf;
use std::process::Command;

/// Installs `packages` with pip into `earlykill-test-tools/<name>` unless
/// that was done, and returns the directory (for `PYTHONPATH`; scripts in
/// its `bin/`).
pub fn install(name: &str, packages: &[&str]) -> PathBuf {
    let root = std::env::temp_dir().join("earlykill-test-tools").join(name);
    std::fs::create_dir_all(&root).expect("the tools directory");
    let _lock = super::postgres::tied::lock(&root.join("install.lock")).expect("the install lock");
    let site = root.join("site");
    // Named after what is installed, so another package list installs again.
    let marker = root.join(format!(
        "installed-{}",
        packages.join("+").replace(['/', ' '], "_")
    ));
    if !marker.is_file() {
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg("--root-user-action=ignore")
            .arg("--target")
            .arg(&site)
            .args(packages)
            .status()
            .expect("python3 -m pip runs (the test needs Python 3 with pip)");
        assert!(
            status.success(),
            "pip install {packages:?} failed: the test needs them from PyPI"
        );
        std::fs::write(&marker, "").expect("mark installed");
    }
    site
}
