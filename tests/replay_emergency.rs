//! `replay` with an emergency threshold: the built binary on a JSON Lines recording.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn write_tmp(name: &str, text: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Decision lines of `replay --config CFG REC`.
fn decisions(cfg: &Path, rec: &Path) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .args(["replay", "--config", cfg.to_str().unwrap()])
        .arg(rec)
        .output()
        .expect("run albatross-autoscale");
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
        .collect()
}

/// The primary at 30 %, a two-sample spike to 99 % at 100 s and 110 s (fewer than
/// `scale_up_ticks = 3`), then 30 % again.
fn spike() -> PathBuf {
    let mut text = String::from("# 30 %, a short spike to 99 %, 30 %\n");
    let mut cpu = 0u64;
    for i in 0..20u64 {
        let pct = if (10..12).contains(&i) { 99 } else { 30 };
        cpu += pct * 100_000; // pct of 10 s, in microseconds
        text += &format!(
            "{{\"t_ms\":{},\"vm\":\"alice:web\",\"cpu_us\":{cpu}}}\n",
            i * 10_000
        );
    }
    write_tmp("spike.jsonl", &text)
}

const GROUP: &str = "[[group]]\nprimary = \"alice:web\"\n";

#[test]
fn a_short_spike_above_the_emergency_threshold_scales_up_once() {
    let cfg = write_tmp(
        "emergency.toml",
        &format!(
            "[policy]\nscale_up_threshold = 80\nscale_up_ticks = 3\nemergency_threshold = 95\n{GROUP}"
        ),
    );
    let d = decisions(&cfg, &spike());
    let up: Vec<&Value> = d.iter().filter(|d| d["action"] == "scale_up").collect();
    assert_eq!(up.len(), 1, "{d:?}");
    assert_eq!(up[0]["t_ms"], 100_000, "at the spike's first sample");
    assert_eq!(up[0]["emergency"], true);
    assert_eq!(up[0]["instance"], "alice:web-clone-1");
    assert!(
        up[0]["reason"].as_str().unwrap().contains("emergency"),
        "{}",
        up[0]["reason"]
    );
}

#[test]
fn without_the_key_the_same_spike_does_nothing() {
    let cfg = write_tmp(
        "no_emergency.toml",
        &format!("[policy]\nscale_up_threshold = 80\nscale_up_ticks = 3\n{GROUP}"),
    );
    let d = decisions(&cfg, &spike());
    assert!(d.iter().all(|d| d["action"] != "scale_up"), "{d:?}");
    assert!(d.iter().all(|d| d.get("emergency").is_none()), "{d:?}");
}
