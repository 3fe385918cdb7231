//! Checking a flight recording against the decision log, shared by the albatross
//! and the Proxmox recording tests.

use std::path::Path;

/// The decision log's `decision` and `action_failed` lines: what a replay prints.
pub fn decision_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            l.contains("\"event\":\"decision\"") || l.contains("\"event\":\"action_failed\"")
        })
        .map(str::to_string)
        .collect()
}

/// What `replay --inputs REC` (the real binary) prints, line by line.
pub fn replayed(rec: &Path) -> Vec<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .args(["replay", "--inputs"])
        .arg(rec)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}
