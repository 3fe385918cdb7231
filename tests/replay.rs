//! `replay` end to end: the built binary on albatross' own bytes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/albatross")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .args(args)
        .output()
        .expect("run albatross-autoscale")
}

fn lines(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

fn events<'a>(v: &'a [Value], kind: &str) -> Vec<&'a Value> {
    v.iter().filter(|l| l["event"] == kind).collect()
}

fn write_tmp(name: &str, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn cpu_percentages_match_the_fixture_sidecar() {
    let sidecar: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("stats_alice_web.json")).unwrap())
            .unwrap();
    let expected: Vec<f64> = sidecar["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["sample"]["expected_cpu_percent_since_previous_sample"].as_f64())
        .collect();
    assert_eq!(expected.len(), 30);
    let bin = fixture("stats_alice_web.bin");
    let out = lines(&run(&["replay", bin.to_str().unwrap()]));
    let samples = events(&out, "sample");
    let got: Vec<f64> = samples
        .iter()
        .map(|s| s["cpu_percent"].as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert!((g - e).abs() <= 0.5, "{got:?} vs {expected:?}");
    }
    // Names are absolute (the frames say ":web"), times are n * 10 s.
    assert!(samples.iter().all(|s| s["vm"] == "alice:web"));
    assert_eq!(samples[0]["t_ms"], 10_000);
    assert_eq!(samples[29]["t_ms"], 300_000);
}

#[test]
fn scales_up_on_the_third_consecutive_sample_above_80() {
    let cfg = write_tmp(
        "up80.toml",
        "[policy]\nscale_up_threshold = 80\nscale_up_ticks = 3\n[[group]]\nprimary = \"alice:web\"\n",
    );
    let bin = fixture("stats_alice_web.bin");
    let out = lines(&run(&[
        "replay",
        "--config",
        cfg.to_str().unwrap(),
        bin.to_str().unwrap(),
    ]));
    let decisions = events(&out, "decision");
    let up: Vec<_> = decisions
        .iter()
        .filter(|d| d["action"] == "scale_up")
        .collect();
    assert_eq!(up.len(), 1, "{decisions:?}");
    // Above 80 %: 82 % at 130 s, 88 % at 140 s, 95 % at 150 s -> the third is at 150 s.
    let above: Vec<u64> = events(&out, "sample")
        .iter()
        .filter(|s| s["cpu_percent"].as_f64().unwrap() > 80.0)
        .map(|s| s["t_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(up[0]["t_ms"].as_u64(), Some(above[2]));
    assert_eq!(up[0]["group"], "alice:web");
    assert_eq!(up[0]["instance"], "alice:web-clone-1");
    assert!(
        up[0]["reason"]
            .as_str()
            .unwrap()
            .contains("for 3 consecutive ticks")
    );
}

#[test]
fn the_shipped_example_config_replays_deterministically() {
    let bin = fixture("stats_alice_web.bin");
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let args = [
        "replay",
        "--explain",
        "--config",
        cfg.to_str().unwrap(),
        bin.to_str().unwrap(),
    ];
    let a = run(&args);
    let b = run(&args);
    assert_eq!(a.stdout, b.stdout);
    let out = lines(&a);
    let evals = events(&out, "evaluation");
    assert_eq!(
        evals.len(),
        30,
        "one evaluation per primary sample with a value"
    );
    assert!(
        evals
            .iter()
            .any(|e| e["verdict"] == "blocked" && e["why_not"].is_string())
    );
}

#[test]
fn jsonl_recordings_replay_with_clones_adopted_by_name() {
    let mut text = String::from("# two members, 100 % busy, then idle\n");
    let (mut p, mut c) = (0u64, 0u64);
    for i in 0..40u64 {
        let pct = if i < 10 { 100 } else { 5 };
        p += pct * 100_000;
        c += pct * 100_000;
        text += &format!(
            "{{\"t_ms\":{},\"vm\":\"alice:web-clone-3\",\"cpu_us\":{c}}}\n",
            i * 10_000
        );
        text += &format!(
            "{{\"t_ms\":{},\"vm\":\"alice:web\",\"utime_us\":{p},\"stime_us\":0}}\n",
            i * 10_000
        );
    }
    let rec = write_tmp("two.jsonl", &text);
    let cfg = write_tmp(
        "two.toml",
        "[policy]\nscale_down_cooldown = \"30s\"\n[[group]]\nprimary = \"alice:web\"\n",
    );
    let out = lines(&run(&[
        "replay",
        "--config",
        cfg.to_str().unwrap(),
        rec.to_str().unwrap(),
    ]));
    let d = events(&out, "decision");
    let actions: Vec<String> = d
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["action"].as_str().unwrap(),
                d["instance"].as_str().unwrap()
            )
        })
        .collect();
    // Up after 3 ticks at 100 % (clone-1 is the lowest free index; clone-3 runs).
    assert_eq!(actions[0], "scale_up alice:web-clone-1");
    // Down newest first: the engine's own clone-2 before the adopted clone-3, and a
    // destroyed clone is not re-adopted by its late samples.
    let downs: Vec<&String> = actions
        .iter()
        .filter(|a| a.starts_with("scale_down"))
        .collect();
    assert_eq!(
        downs,
        [
            "scale_down alice:web-clone-2",
            "scale_down alice:web-clone-3"
        ],
        "{actions:?}"
    );
}

#[test]
fn malformed_streams_name_frame_and_offset() {
    let cases = [
        ("malformed_truncated_frame.bin", "frame 3 at byte 1328"),
        ("malformed_not_a_sequence.bin", "frame 0 at byte offset 0"),
        ("malformed_trailing_bytes_in_frame.bin", "trailing byte"),
        ("malformed_wrong_version.bin", "version 4"),
    ];
    for (file, want) in cases {
        let f = fixture(file);
        let out = run(&["replay", f.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file}");
        assert!(err.contains(file) && err.contains(want), "{file}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn bad_inputs_are_named() {
    let rec = write_tmp(
        "bad.jsonl",
        "{\"t_ms\":0,\"vm\":\"alice:web\",\"cpu_us\":1}\n{\"t_ms\":1,\"vm\":\"alice:web\"}\n",
    );
    let out = run(&["replay", rec.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.jsonl:2:") && err.contains("cpu_us"),
        "{err}"
    );

    let cfg = write_tmp("bad.toml", "[policy]\nscale_up_threshold = 120\n");
    let out = run(&["validate", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.toml") && err.contains("policy.scale_up_threshold: 120 is out of range"),
        "{err}"
    );

    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let out = run(&["validate", good.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
