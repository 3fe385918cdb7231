//! Golden vectors produced by albatross' own OCaml code (fixtures/albatross/): every
//! wire file decodes to exactly the values of its JSON sidecar, field by field, and
//! re-encodes byte for byte; every certificate extension round-trips; every malformed
//! file yields the documented class of error.

use std::path::PathBuf;

use albatross_autoscale::name::Name;
use albatross_autoscale::wire::{
    self, Command, Data, DecodeErrorKind, FailBehaviour, Frame, FrameDecoder, FrameError, Payload,
    Success, TagClass, Timeval, Typ,
};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/albatross")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn sidecar(name: &str) -> Value {
    serde_json::from_slice(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn files(prefix: &str, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn sha256(b: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b))
}

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn opt_i(v: &Value) -> Option<i64> {
    (!v.is_null()).then(|| i(v))
}

fn opt_s(v: &Value) -> Option<String> {
    (!v.is_null()).then(|| s(v).to_string())
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(i).collect()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| s(x).to_string())
        .collect()
}

fn check_name(n: &Name, j: &Value) {
    assert_eq!(n.to_string(), s(&j["string"]));
    assert_eq!(n.path, strs(&j["path"]));
    assert_eq!(n.label, opt_s(&j["label"]));
}

fn check_timeval(t: &Timeval, j: &Value) {
    assert_eq!(t.sec, i(&j["sec"]));
    assert_eq!(t.usec, i(&j["usec"]));
}

fn check_typ(t: Typ, j: &Value) {
    let want = match t {
        Typ::Solo5 => "solo5",
        Typ::Bhyve => "bhyve",
    };
    assert_eq!(want, s(j));
}

fn check_fail(f: &FailBehaviour, j: &Value) {
    match f {
        FailBehaviour::Quit => assert_eq!(s(&j["kind"]), "quit"),
        FailBehaviour::Restart { exit_codes } => {
            assert_eq!(s(&j["kind"]), "restart");
            assert_eq!(exit_codes, &ints(&j["exit_codes"]));
        }
    }
}

fn check_command(c: &Command, j: &Value) {
    match c {
        Command::StatsSubscribe => assert_eq!(s(&j["kind"]), "stats_subscribe"),
        Command::UnikernelDestroy => assert_eq!(s(&j["kind"]), "unikernel_destroy"),
        Command::UnikernelInfo => assert_eq!(s(&j["kind"]), "unikernel_info"),
        Command::PolicyAdd { policy } => {
            assert_eq!(s(&j["kind"]), "policy_add");
            let p = &j["policy"];
            assert_eq!(policy.unikernels, i(&p["unikernels"]));
            assert_eq!(policy.cpuids, ints(&p["cpuids"]));
            assert_eq!(policy.memory, i(&p["memory"]));
            assert_eq!(policy.block, opt_i(&p["block"]));
            assert_eq!(policy.bridges, strs(&p["bridges"]));
        }
        Command::UnikernelCreate { config } => {
            assert_eq!(s(&j["kind"]), "unikernel_create");
            let cj = &j["config"];
            check_typ(config.typ, &cj["typ"]);
            assert_eq!(config.compressed, cj["compressed"].as_bool().unwrap());
            assert_eq!(config.image.len() as i64, i(&cj["image_len"]));
            assert_eq!(hex::encode(&config.image), s(&cj["image_hex"]));
            assert_eq!(sha256(&config.image), s(&cj["image_sha256"]));
            let plain = wire::decompress_image(&config.image, 1 << 20).unwrap();
            assert_eq!(plain.len() as i64, i(&cj["image_uncompressed_len"]));
            assert_eq!(sha256(&plain), s(&cj["image_uncompressed_sha256"]));
            check_fail(&config.fail_behaviour, &cj["fail_behaviour"]);
            assert_eq!(config.startup, opt_i(&cj["startup"]));
            assert_eq!(config.add_name, cj["add_name"].as_bool().unwrap());
            assert_eq!(config.cpuids, ints(&cj["cpuids"]));
            assert_eq!(config.memory, i(&cj["memory"]));
            let blocks = cj["block_devices"].as_array().unwrap();
            assert_eq!(config.block_devices.len(), blocks.len());
            for (b, bj) in config.block_devices.iter().zip(blocks) {
                assert_eq!(b.name, s(&bj["name"]));
                assert_eq!(b.device, opt_s(&bj["device"]));
                assert_eq!(b.sector_size, opt_i(&bj["sector_size"]));
            }
            let bridges = cj["bridges"].as_array().unwrap();
            assert_eq!(config.bridges.len(), bridges.len());
            for (b, bj) in config.bridges.iter().zip(bridges) {
                assert_eq!(b.name, s(&bj["name"]));
                assert_eq!(b.host_device, opt_s(&bj["host_device"]));
                assert_eq!(b.mac.map(|m| m.to_string()), opt_s(&bj["mac"]));
            }
            assert_eq!(config.argv, strs(&cj["argv"]));
            assert_eq!(config.numcpus, opt_i(&cj["numcpus"]));
            assert_eq!(
                config.linux_boot_partition,
                opt_s(&cj["linux_boot_partition"])
            );
        }
        other => panic!("no sidecar comparison for {other:?}"),
    }
}

fn check_success(v: &Success, j: &Value) {
    match v {
        Success::Empty => assert_eq!(s(&j["kind"]), "empty"),
        Success::String(text) => {
            assert_eq!(s(&j["kind"]), "string");
            assert_eq!(text, s(&j["value"]));
        }
        Success::UnikernelInfo(list) => {
            assert_eq!(s(&j["kind"]), "unikernel_info");
            let lj = j["unikernels"].as_array().unwrap();
            assert_eq!(list.len(), lj.len());
            for (u, uj) in list.iter().zip(lj) {
                check_name(&u.name, &uj["name"]);
                let (info, ij) = (&u.info, &uj["info"]);
                check_typ(info.typ, &ij["typ"]);
                check_fail(&info.fail_behaviour, &ij["fail_behaviour"]);
                assert_eq!(info.startup, opt_i(&ij["startup"]));
                assert_eq!(info.cpuids, ints(&ij["cpuids"]));
                assert_eq!(info.memory, i(&ij["memory"]));
                let blocks = ij["block_devices"].as_array().unwrap();
                assert_eq!(info.block_devices.len(), blocks.len());
                for (b, bj) in info.block_devices.iter().zip(blocks) {
                    assert_eq!(b.unikernel_device, s(&bj["unikernel_device"]));
                    assert_eq!(b.host_device, s(&bj["host_device"]));
                    assert_eq!(b.sector_size, i(&bj["sector_size"]));
                    assert_eq!(b.size, i(&bj["size"]));
                }
                let bridges = ij["bridges"].as_array().unwrap();
                assert_eq!(info.bridges.len(), bridges.len());
                for (b, bj) in info.bridges.iter().zip(bridges) {
                    assert_eq!(b.unikernel_device, s(&bj["unikernel_device"]));
                    assert_eq!(b.host_device, s(&bj["host_device"]));
                    assert_eq!(b.mac.to_string(), s(&bj["mac"]));
                }
                assert_eq!(info.argv, strs(&ij["argv"]));
                assert_eq!(hex::encode(&info.digest), s(&ij["digest_hex"]));
                let started = info.started.expect("started");
                assert_eq!(started.unix_seconds(), i(&ij["started"]["unix_seconds"]));
                assert_eq!(
                    i64::from(started.millis()) * 1_000_000_000,
                    i(&ij["started"]["picoseconds_in_second"])
                );
                assert_eq!(info.numcpus, opt_i(&ij["numcpus"]));
                assert_eq!(
                    info.linux_boot_partition,
                    opt_s(&ij["linux_boot_partition"])
                );
            }
        }
        other => panic!("no sidecar comparison for {other:?}"),
    }
}

fn check_data(d: &Data, j: &Value) {
    let Data::Stats(st) = d else {
        panic!("no sidecar comparison for {d:?}");
    };
    assert_eq!(s(&j["kind"]), "stats_data");
    let (ru, rj) = (&st.rusage, &j["rusage"]);
    check_timeval(&ru.utime, &rj["utime"]);
    check_timeval(&ru.stime, &rj["stime"]);
    let counters = [
        ("maxrss", ru.maxrss),
        ("ixrss", ru.ixrss),
        ("idrss", ru.idrss),
        ("isrss", ru.isrss),
        ("minflt", ru.minflt),
        ("majflt", ru.majflt),
        ("nswap", ru.nswap),
        ("inblock", ru.inblock),
        ("outblock", ru.outblock),
        ("msgsnd", ru.msgsnd),
        ("msgrcv", ru.msgrcv),
        ("nsignals", ru.nsignals),
        ("nvcsw", ru.nvcsw),
        ("nivcsw", ru.nivcsw),
    ];
    for (k, v) in counters {
        assert_eq!(v, i(&rj[k]), "rusage.{k}");
    }
    assert_eq!(
        rj.as_object().unwrap().len(),
        16,
        "every rusage field compared"
    );
    match (&st.kinfo_mem, &j["kinfo_mem"]) {
        (None, Value::Null) => {}
        (Some(k), kj) => {
            for (name, v) in [
                ("vsize", k.vsize),
                ("rss", k.rss),
                ("tsize", k.tsize),
                ("dsize", k.dsize),
                ("ssize", k.ssize),
                ("runtime", k.runtime),
                ("cow", k.cow),
            ] {
                assert_eq!(v, i(&kj[name]), "kinfo_mem.{name}");
            }
            check_timeval(&k.start, &kj["start"]);
            assert_eq!(kj.as_object().unwrap().len(), 8);
        }
        (None, other) => panic!("kinfo_mem missing, sidecar has {other}"),
    }
    match (&st.vmm, &j["vmm"]) {
        (None, Value::Null) => {}
        (Some(v), vj) => {
            let vj = vj.as_array().unwrap();
            assert_eq!(v.len(), vj.len());
            for ((k, val), e) in v.iter().zip(vj) {
                assert_eq!(k, s(&e["key"]));
                assert_eq!(*val, i(&e["value"]));
            }
        }
        (None, other) => panic!("vmm missing, sidecar has {other}"),
    }
    let ifj = j["ifdata"].as_array().unwrap();
    assert_eq!(st.ifdata.len(), ifj.len());
    for (d, dj) in st.ifdata.iter().zip(ifj) {
        assert_eq!(d.bridge, s(&dj["bridge"]));
        for (name, v) in [
            ("flags", d.flags),
            ("send_length", d.send_length),
            ("max_send_length", d.max_send_length),
            ("send_drops", d.send_drops),
            ("mtu", d.mtu),
            ("baudrate", d.baudrate),
            ("input_packets", d.input_packets),
            ("input_errors", d.input_errors),
            ("output_packets", d.output_packets),
            ("output_errors", d.output_errors),
            ("collisions", d.collisions),
            ("input_bytes", d.input_bytes),
            ("output_bytes", d.output_bytes),
            ("input_mcast", d.input_mcast),
            ("output_mcast", d.output_mcast),
            ("input_dropped", d.input_dropped),
            ("output_dropped", d.output_dropped),
        ] {
            assert_eq!(v, i(&dj[name]), "ifdata.{name}");
        }
        assert_eq!(
            dj.as_object().unwrap().len(),
            18,
            "every ifdata field compared"
        );
    }
}

/// Header and payload of one decoded message against a sidecar `wire` object.
fn check_message(m: &wire::Message, j: &Value) {
    let h = &j["header"];
    assert_eq!(m.header.version, i(&h["version_int"]));
    assert_eq!(s(&h["version"]), "AV5");
    assert_eq!(m.header.sequence, i(&h["sequence"]));
    check_name(&m.header.name, &h["name"]);
    let p = &j["payload"];
    match &m.payload {
        Payload::Command(c) => {
            assert_eq!(s(&p["kind"]), "command");
            check_command(c, &p["command"]);
        }
        Payload::Success(v) => {
            assert_eq!(s(&p["kind"]), "success");
            check_success(v, &p["success"]);
        }
        Payload::Failure(msg) => {
            assert_eq!(s(&p["kind"]), "failure");
            assert_eq!(msg, s(&p["message"]));
        }
        Payload::Data(d) => {
            assert_eq!(s(&p["kind"]), "data");
            check_data(d, &p["data"]);
        }
    }
}

fn frames_of(bytes: &[u8]) -> Vec<Frame> {
    let mut dec = FrameDecoder::new(wire::DEFAULT_MAX_FRAME);
    dec.push(bytes);
    let mut out = Vec::new();
    while let Some(f) = dec.next_frame().unwrap() {
        out.push(f);
    }
    dec.finish().unwrap();
    out
}

#[test]
fn every_wire_fixture_matches_its_sidecar_and_reencodes_byte_for_byte() {
    let mut names = files("stats_", ".bin");
    names.extend(files("reply_", ".bin"));
    names.extend(files("unix_cmd_", ".bin"));
    assert!(names.len() >= 9, "fixtures missing: {names:?}");
    let mut total_frames = 0;
    for name in &names {
        let bytes = read(name);
        let side = sidecar(&name.replace(".bin", ".json"));
        assert_eq!(bytes.len() as i64, i(&side["total_bytes"]), "{name}");
        let frames = frames_of(&bytes);
        let sj = side["frames"].as_array().unwrap();
        assert_eq!(frames.len() as i64, i(&side["frame_count"]), "{name}");
        assert_eq!(frames.len(), sj.len());
        let mut reencoded = Vec::new();
        for (f, fj) in frames.iter().zip(sj) {
            let Frame::Message {
                index,
                offset,
                body,
            } = f
            else {
                panic!("{name}: unexpected end marker");
            };
            assert_eq!(*index as i64, i(&fj["index"]));
            assert_eq!(*offset as i64, i(&fj["offset"]));
            assert_eq!(body.len() as i64, i(&fj["length_prefix"]));
            assert_eq!(hex::encode(body), s(&fj["der_hex"]));
            let m = wire::decode(body).unwrap_or_else(|e| panic!("{name} frame {index}: {e}"));
            check_message(&m, &fj["wire"]);
            let der = wire::encode(&m);
            assert_eq!(&der, body, "{name} frame {index} re-encodes byte for byte");
            reencoded.extend(wire::frame(&der));
            total_frames += 1;
        }
        assert_eq!(
            reencoded, bytes,
            "{name}: whole stream re-encodes byte for byte"
        );
    }
    assert!(total_frames >= 40);
}

#[test]
fn stats_stream_cpu_matches_the_generator() {
    // The sidecar's intended CPU share per 10 s interval, recomputed from
    // utime+stime in integer microseconds.
    let side = sidecar("stats_alice_web.json");
    let frames = frames_of(&read("stats_alice_web.bin"));
    let mut prev: Option<i64> = None;
    for (f, fj) in frames
        .iter()
        .zip(side["frames"].as_array().unwrap())
        .skip(1)
    {
        let Frame::Message { body, .. } = f else {
            panic!()
        };
        let Payload::Data(Data::Stats(st)) = wire::decode(body).unwrap().payload else {
            panic!("not stats")
        };
        let cpu = st.rusage.utime.total_micros().unwrap() + st.rusage.stime.total_micros().unwrap();
        if let (Some(p), Some(want)) = (
            prev,
            fj["sample"]["expected_cpu_percent_since_previous_sample"].as_f64(),
        ) {
            let pct = (cpu - p) as f64 / 10_000_000.0 * 100.0;
            assert!((pct - want).abs() < 0.01, "{pct} vs {want}");
        }
        prev = Some(cpu);
    }
}

/// Extension value of a DER certificate, via x509-parser.
fn extension_of(der: &[u8]) -> Option<(bool, Vec<u8>)> {
    use x509_parser::prelude::*;
    let (rest, cert) = X509Certificate::from_der(der).unwrap();
    assert!(rest.is_empty());
    let oid = x509_parser::oid_registry::Oid::from(&[1, 3, 6, 1, 4, 1, 49836, 42]).unwrap();
    cert.get_extension_unique(&oid)
        .unwrap()
        .map(|e| (e.critical, e.value.to_vec()))
}

#[test]
fn every_certificate_extension_round_trips() {
    let exts = files("cert_", ".ext.bin");
    assert_eq!(exts.len(), 4);
    for name in &exts {
        let bytes = read(name);
        let side = sidecar(&name.replace(".ext.bin", ".json"));
        let ej = &side["certificate"]["albatross_extension"];
        assert_eq!(hex::encode(&bytes), s(&ej["value_hex"]), "{name}");
        let (version, cmd) = wire::decode_cert_extension(&bytes).unwrap();
        assert_eq!(version, i(&ej["version_int"]));
        check_command(&cmd, &ej["command"]);
        check_command(&cmd, &side["tls_endpoint_view"]["command"]);
        assert_eq!(wire::encode_cert_extension(&cmd), bytes, "{name}");
        // And the same bytes sit, non-critical, in the certificate itself.
        let der = read(&name.replace(".ext.bin", ".der"));
        assert_eq!(extension_of(&der), Some((false, bytes)), "{name}");
    }
    // The sub-CA carries a policy in the same extension; the CA carries none.
    let side = sidecar("subca_alice.json");
    let ej = &side["certificate"]["albatross_extension"];
    let (crit, bytes) = extension_of(&read("subca_alice.der")).unwrap();
    assert!(!crit);
    assert_eq!(hex::encode(&bytes), s(&ej["value_hex"]));
    let (_, cmd) = wire::decode_cert_extension(&bytes).unwrap();
    check_command(&cmd, &ej["command"]);
    assert_eq!(wire::encode_cert_extension(&cmd), bytes);
    assert_eq!(extension_of(&read("ca.der")), None);
}

fn single_body(name: &str) -> Vec<u8> {
    match frames_of(&read(name)).as_slice() {
        [Frame::Message { body, .. }] => body.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn malformed_length_prefixes_end_the_stream() {
    for (name, length) in [
        ("malformed_len_zero.bin", 0),
        ("malformed_len_2pow31.bin", i32::MIN),
    ] {
        let side = sidecar(&name.replace(".bin", ".json"));
        assert!(
            side["albatross_result"]["frames"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            frames_of(&read(name)),
            [Frame::End {
                index: 0,
                offset: 0,
                length
            }]
        );
    }
}

#[test]
fn malformed_truncated_frame_names_the_offset() {
    let side = sidecar("malformed_truncated_frame.json");
    let end = &side["albatross_result"]["end"];
    let mut dec = FrameDecoder::new(wire::STATS_MAX_FRAME);
    dec.push(&read("malformed_truncated_frame.bin"));
    let good = side["albatross_result"]["frames"].as_array().unwrap();
    for fj in good {
        let Some(Frame::Message { body, offset, .. }) = dec.next_frame().unwrap() else {
            panic!()
        };
        assert_eq!(offset as i64, i(&fj["offset"]));
        check_message(&wire::decode(&body).unwrap(), &fj["decoded"]["wire"]);
    }
    assert_eq!(dec.next_frame().unwrap(), None);
    let remaining = i(&end["bytes_remaining"]) as usize;
    assert_eq!(
        dec.finish(),
        Err(FrameError::TruncatedBody {
            index: good.len(),
            offset: i(&end["offset"]) as u64,
            length: 636,
            available: remaining - 4,
        })
    );
}

#[test]
fn malformed_bodies_yield_the_documented_error() {
    let e = wire::decode(&single_body("malformed_trailing_bytes_in_frame.bin")).unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::TrailingBytes { count: 1 });
    assert_eq!(e.offset, 36);

    let e = wire::decode(&single_body("malformed_wrong_version.bin")).unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::UnsupportedVersion(4));
    assert_eq!((e.field, e.offset), ("header.version", 4));

    let e = wire::decode(&single_body("malformed_not_a_sequence.bin")).unwrap_err();
    match e.kind {
        DecodeErrorKind::UnexpectedTag { expected, found } => {
            assert_eq!((expected.class, expected.number), (TagClass::Universal, 16));
            assert_eq!(found.class, TagClass::Application);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.offset, 0);

    // A newer server's data alternative degrades gracefully and round-trips.
    let body = single_body("malformed_unknown_data_tag.bin");
    let m = wire::decode(&body).unwrap();
    check_name(
        &m.header.name,
        &serde_json::json!({"string": ":web", "path": [], "label": "web"}),
    );
    match &m.payload {
        Payload::Data(Data::Unknown { tag, raw }) => {
            assert_eq!(*tag, 9);
            assert_eq!(raw.first(), Some(&0xa9));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(wire::encode(&m), body);
}
