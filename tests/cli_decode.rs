//! The `decode` subcommand run as a process on the fixtures.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/albatross")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .arg("decode")
        .args(args)
        .output()
        .expect("run the binary")
}

fn lines(o: &Output) -> Vec<Value> {
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_wire_fixture_decodes_to_one_line_per_frame() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/albatross");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".bin") || name.starts_with("malformed_") || name.ends_with(".ext.bin") {
            continue;
        }
        let out = run(&[fixture(&name).to_str().unwrap()]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let side: Value = serde_json::from_slice(
            &std::fs::read(fixture(&name.replace(".bin", ".json"))).unwrap(),
        )
        .unwrap();
        let got = lines(&out);
        assert_eq!(
            got.len() as u64,
            side["frame_count"].as_u64().unwrap(),
            "{name}"
        );
        for (g, s) in got.iter().zip(side["frames"].as_array().unwrap()) {
            assert_eq!(g["offset"], s["offset"]);
            assert_eq!(g["length"], s["length_prefix"]);
            assert_eq!(g["header"]["name"], s["wire"]["header"]["name"]);
            assert_eq!(g["header"]["sequence"], s["wire"]["header"]["sequence"]);
            assert_eq!(g["header"]["version"], s["wire"]["header"]["version_int"]);
            assert_eq!(g["payload"]["kind"], s["wire"]["payload"]["kind"]);
        }
        n += 1;
    }
    assert!(n >= 9);
}

#[test]
fn stats_lines_carry_every_counter() {
    let out = run(&[fixture("stats_alice_web.bin").to_str().unwrap()]);
    let got = lines(&out);
    let side: Value =
        serde_json::from_slice(&std::fs::read(fixture("stats_alice_web.json")).unwrap()).unwrap();
    for (g, s) in got.iter().zip(side["frames"].as_array().unwrap()).skip(1) {
        let (gd, sd) = (&g["payload"]["data"], &s["wire"]["payload"]["data"]);
        assert_eq!(gd["kind"], "stats_data");
        // Same keys and values as albatross' own decoding, field for field.
        for key in ["rusage", "kinfo_mem", "vmm", "ifdata"] {
            assert_eq!(gd[key], sd[key], "{key}");
        }
    }
}

#[test]
fn reply_fields_and_command_config() {
    let got = lines(&run(&[fixture("reply_info_web.bin").to_str().unwrap()]));
    let info = &got[0]["payload"]["success"]["unikernels"][0]["info"];
    assert_eq!(
        info["digest_hex"],
        "90a490e00b930dccf24e21fa7db8063a349e237d0a00baf64eea3d9d8c8cd374"
    );
    assert_eq!(info["bridges"][0]["mac"], "00:80:41:03:9d:1a");
    assert_eq!(info["started"]["unix_seconds"], 1_741_944_413);
    let got = lines(&run(&[fixture("unix_cmd_unikernel_create.bin")
        .to_str()
        .unwrap()]));
    let cfg = &got[0]["payload"]["command"]["config"];
    assert_eq!(
        cfg["image"]["sha256"],
        "cfea1db4e1176cb6515604928402f1b558d7922a857712c285e54e5e57b23c58"
    );
    assert_eq!(cfg["argv"][3], "*:debug");
    let got = lines(&run(&[fixture("reply_create_failure.bin")
        .to_str()
        .unwrap()]));
    assert_eq!(
        got[0]["payload"]["message"],
        "Unikernel with same name is already running"
    );
}

#[test]
fn malformed_input_prints_what_decoded_then_fails_with_index_and_offset() {
    let out = run(&[fixture("malformed_truncated_frame.bin").to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(lines(&out).len(), 3);
    let err = stderr(&out);
    assert!(err.contains("frame 3 at byte 1328"), "{err}");
    assert!(err.contains("cut"), "{err}");

    let out = run(&[fixture("malformed_trailing_bytes_in_frame.bin")
        .to_str()
        .unwrap()]);
    assert!(!out.status.success());
    assert!(lines(&out).is_empty());
    let err = stderr(&out);
    assert!(err.contains("frame 0 at byte 40"), "{err}");
    assert!(err.contains("trailing"), "{err}");

    let out = run(&[fixture("malformed_wrong_version.bin").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("version 4"), "{}", stderr(&out));

    let out = run(&[fixture("malformed_not_a_sequence.bin").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("expected SEQUENCE"),
        "{}",
        stderr(&out)
    );

    // Unknown data alternatives are shown, not fatal.
    let out = run(&[fixture("malformed_unknown_data_tag.bin").to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(lines(&out)[0]["payload"]["data"]["kind"], "unknown");

    // End-of-stream markers end the stream, as in albatross.
    let out = run(&[fixture("malformed_len_zero.bin").to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(lines(&out)[0]["end_of_stream"]["length_prefix"], 0);
}

#[test]
fn hex_messages_and_extensions() {
    let out = run(&[
        "--hex",
        "30183010020105040800000000000000000c013aa104a0020500",
    ]);
    assert!(out.status.success());
    assert_eq!(lines(&out)[0]["payload"]["success"]["kind"], "empty");
    let out = run(&["--hex", "30 09 02 01 05 a1 04 a2 02 05 00"]);
    assert_eq!(
        lines(&out)[0]["cert_extension"]["command"]["kind"],
        "stats_subscribe"
    );
    let out = run(&["--hex", "301800"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("byte 0"), "{}", stderr(&out));
    let out = run(&["--hex", "zz"]);
    assert!(!out.status.success());
}

#[test]
fn certificates_show_subject_validity_and_command() {
    let out = run(&[
        "--cert",
        fixture("cert_alice_web_stats_subscribe.chain.pem")
            .to_str()
            .unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = lines(&out);
    assert_eq!(got[0]["subject_cn"], "web");
    assert_eq!(got[0]["not_before"], "2026-11-22T18:35:28Z");
    assert_eq!(got[0]["not_after"], "2026-11-22T18:40:38Z");
    assert_eq!(
        got[0]["albatross_extension"]["command"]["kind"],
        "stats_subscribe"
    );
    assert_eq!(
        got[1]["albatross_extension"]["command"]["policy"]["memory"],
        1024
    );
    assert_eq!(got[2]["chain"]["name"]["string"], "alice:web");
    // DER works too.
    let out = run(&[
        "--cert",
        fixture("cert_root_web_unikernel_info.der")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(
        lines(&out)[0]["albatross_extension"]["command"]["kind"],
        "unikernel_info"
    );
}
