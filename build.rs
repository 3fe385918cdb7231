//! Embeds the git revision for `--version`, `/version` and the build_info metric.
//! Never fails the build: without git or a .git directory (a source tarball) the
//! revision is "unknown"; `AA_GIT_REVISION` overrides it (packagers).

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=AA_GIT_REVISION");
    // Only HEAD (checkout/branch switch), not every ref: rebuilding the crate on
    // each commit would cost more than a dev build's revision being one behind.
    if Path::new(".git/HEAD").exists() {
        println!("cargo:rerun-if-changed=.git/HEAD");
    }
    let rev = std::env::var("AA_GIT_REVISION")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=AA_GIT_REVISION={}", rev.trim());
}

fn git_revision() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?;
    let s = s.trim();
    // A revision is hex; anything else (an error text on stdout) is not one.
    (out.status.success() && !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| s.to_string())
}
