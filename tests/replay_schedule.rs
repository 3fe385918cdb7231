//! `replay --start` with a schedule: the built binary on `fixtures/schedule/`, a
//! flat 50 % load (between the thresholds: no streak ever scales) and a window
//! "mon-fri 09:00-10:00 Europe/Berlin, min 2".

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/schedule")
        .join(name)
}

/// `replay --config business-hours.toml` of `flat-50.jsonl` with `extra` arguments.
fn replay(extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .arg("replay")
        .arg("--config")
        .arg(fixture("business-hours.toml"))
        .args(extra)
        .arg(fixture("flat-50.jsonl"))
        .output()
        .expect("run albatross-autoscale")
}

/// Scale decisions (up or down) of [`replay`] with `extra` arguments.
fn scale_decisions(extra: &[&str]) -> Vec<Value> {
    let out = replay(extra);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("each line is JSON"))
        .filter(|l| l["event"] == "decision")
        .filter(|l| l["action"] == "scale_up" || l["action"] == "scale_down")
        .collect()
}

/// 09:00 Berlin on Monday 2026-03-02 is 08:00Z: 1 h after `--start`.
const WINDOW_START_MS: u64 = 3_600_000;
const WINDOW_END_MS: u64 = 7_200_000;

#[test]
fn the_window_scales_up_at_its_start_and_nothing_else_happens() {
    let d = scale_decisions(&["--start", "2026-03-02T07:00:00Z"]);
    // Samples come at 3 s past each 10 s; the engine's timer fires at the window's
    // start itself, not at the next sample.
    assert_eq!(d.len(), 1, "one scale action in 3 hours: {d:#?}");
    let up = &d[0];
    assert_eq!(up["action"], "scale_up");
    assert_eq!(up["t_ms"], WINDOW_START_MS, "{up}");
    assert_eq!(up["instance"], "alice:web-clone-1");
    let reason = up["reason"].as_str().unwrap();
    assert!(
        reason.contains("schedule 'business-hours' min 2"),
        "{reason}"
    );
    // Leaving the window at 2 h: the flat load never makes a low streak, so the
    // normal scale-down rules keep the clone (no action after WINDOW_END_MS).
    assert!(d.iter().all(|d| {
        let t = d["t_ms"].as_u64().unwrap();
        (WINDOW_START_MS..WINDOW_END_MS).contains(&t)
    }));
}

#[test]
fn a_start_outside_the_window_days_scales_nothing() {
    // Saturday: mon-fri does not match.
    assert!(scale_decisions(&["--start", "2026-03-07T07:00:00Z"]).is_empty());
    // No --start: t_ms are Unix ms, 1970-01-01 00:00Z (a Thursday) + 3 h, before
    // 09:00 Berlin.
    assert!(scale_decisions(&[]).is_empty());
}

#[test]
fn a_bad_start_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .args(["replay", "--start", "monday 8am"])
        .arg(fixture("flat-50.jsonl"))
        .output()
        .expect("run albatross-autoscale");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--start") && err.contains("RFC 3339"), "{err}");
}

#[test]
fn schedules_without_start_are_warned_about() {
    let out = replay(&[]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning:") && err.contains("schedule windows and no --start"),
        "{err}"
    );
    let out = replay(&["--start", "2026-03-02T07:00:00Z"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
}
