//! The test vectors of albatross-protocol.md §7.1 and §7.2, in both directions:
//! decode to the documented value, re-encode to the same bytes.

use super::*;
use crate::name::Name;

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    hex::decode(s).expect("valid hex in test vector")
}

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

/// Decode a certificate extension vector, compare, and re-encode byte for byte.
fn ext(hex: &str, expected: Command) {
    let der = unhex(hex);
    let (version, cmd) = decode_cert_extension(&der).unwrap();
    assert_eq!(version, 5);
    assert_eq!(cmd, expected, "{hex}");
    assert_eq!(encode_cert_extension(&cmd), der, "{hex}");
}

fn wire(hex: &str, expected: &Message) {
    let der = unhex(hex);
    let msg = decode(&der).unwrap();
    assert_eq!(&msg, expected, "{hex}");
    assert_eq!(encode(&msg), der, "{hex}");
}

fn msg(sequence: i64, n: &str, payload: Payload) -> Message {
    Message {
        header: Header::new(sequence, name(n)),
        payload,
    }
}

fn t(rfc3339: &str) -> Time {
    let dt =
        ::time::OffsetDateTime::parse(rfc3339, &::time::format_description::well_known::Rfc3339)
            .unwrap();
    Time::new(dt.unix_timestamp(), 0).unwrap()
}

#[test]
fn leaf_extension_vectors() {
    ext("3009020105a104a2020500", Command::StatsSubscribe);
    ext("3009020105a304b3020500", Command::UnikernelInfo);
    ext("3009020105a304a3020500", Command::UnikernelDestroy);
    ext(
        "300a020105a305ab03020100",
        Command::UnikernelGet { level: 0 },
    );
    ext(
        "300a020105a305ab03020109",
        Command::UnikernelGet { level: 9 },
    );
    ext(
        "300b020105a306ae04a0020500",
        Command::UnikernelRestart { arguments: None },
    );
    ext(
        "300c020105a007a205a103020114",
        Command::ConsoleSubscribe {
            start: ConsoleStart::Count(20),
        },
    );
    ext(
        "301a020105a015a213a011180f32303235303130323033303430355a",
        Command::ConsoleSubscribe {
            start: ConsoleStart::Since(t("2025-01-02T03:04:05Z")),
        },
    );
    ext("3009020105a004a3020500", Command::ConsoleListInactive);
    ext("3009020105a404a0020500", Command::PolicyInfo);
    ext("3009020105a504a0020500", Command::BlockInfo);
}

#[test]
fn policy_extension_vectors() {
    ext(
        "3023020105a41ea11c301a30060201000201010201100202040030090c0773657276696365",
        Command::PolicyAdd {
            policy: Policy {
                cpuids: vec![0, 1],
                unikernels: 16,
                memory: 1024,
                block: None,
                bridges: vec!["service".into()],
            },
        },
    );
    // §7.1: the `arc` intermediate of albatross' own tests.
    ext(
        "3017020105a412a110300e3003020100020101020202003000",
        Command::PolicyAdd {
            policy: Policy {
                cpuids: vec![0],
                unikernels: 1,
                memory: 512,
                block: None,
                bridges: vec![],
            },
        },
    );
}

fn base_config() -> UnikernelConfig {
    UnikernelConfig {
        typ: Typ::Solo5,
        compressed: true,
        image: vec![],
        startup: None,
        add_name: true,
        fail_behaviour: FailBehaviour::Restart { exit_codes: vec![] },
        cpuids: vec![0],
        memory: 32,
        block_devices: vec![],
        bridges: vec![NetSpec {
            name: "service".into(),
            host_device: None,
            mac: None,
        }],
        argv: vec!["--ipv4=10.0.0.2/24".into()],
        numcpus: Some(1),
        linux_boot_partition: None,
    }
}

#[test]
fn create_vectors() {
    let hex = "304d020105a348b4463044a00205000101ff04000101ffa10231003103020100020120a10d310b30\
               090c0773657276696365a21630140c122d2d697076343d31302e302e302e322f3234a303020101";
    ext(
        hex,
        Command::UnikernelCreate {
            config: Box::new(base_config()),
        },
    );
    // force-create differs only in the tag byte.
    let forced = hex.replacen("b446", "b546", 1);
    ext(
        &forced,
        Command::UnikernelForceCreate {
            config: Box::new(base_config()),
        },
    );

    let second = UnikernelConfig {
        compressed: false,
        startup: Some(50),
        fail_behaviour: FailBehaviour::Quit,
        cpuids: vec![0, 1],
        memory: 64,
        bridges: vec![
            NetSpec {
                name: "admin".into(),
                host_device: Some("br1".into()),
                mac: None,
            },
            NetSpec {
                name: "service".into(),
                host_device: Some("br0".into()),
                mac: None,
            },
        ],
        argv: vec![],
        ..base_config()
    };
    let hex2 = "304e020105a349b4473045a002050001010004000201320101ffa00205003106020100020101020140\
                a120311e300c0c0561646d696e0c03627231300e0c07736572766963650c03627230a303020101";
    ext(
        hex2,
        Command::UnikernelCreate {
            config: Box::new(second.clone()),
        },
    );
    // The encoder sorts SET OF members: cpuids [1,0] and bridges service-then-admin
    // come out in the documented order.
    let mut unsorted = second;
    unsorted.cpuids = vec![1, 0];
    unsorted.bridges.reverse();
    assert_eq!(
        encode_cert_extension(&Command::UnikernelCreate {
            config: Box::new(unsorted)
        }),
        unhex(hex2)
    );
}

#[test]
fn unix_socket_command_vectors() {
    wire(
        "301d3013020105040800000000000000000c043a666f6fa006a304b3020500",
        &msg(0, ":foo", Payload::Command(Command::UnikernelInfo)),
    );
    wire(
        "301a3010020105040800000000000000000c013aa006a104a2020500",
        &msg(0, ":", Payload::Command(Command::StatsSubscribe)),
    );
    wire(
        "30213017020105040800000000000000010c08757365723a766d31a006a304a3020500",
        &msg(1, "user:vm1", Payload::Command(Command::UnikernelDestroy)),
    );
    // §7.1, from albatross' test suite.
    let console = Payload::Command(Command::ConsoleSubscribe {
        start: ConsoleStart::Count(20),
    });
    wire(
        "30203013020105040800000000000000000c043a666f6fa009a007a205a103020114",
        &msg(0, ":foo", console.clone()),
    );
    wire(
        "30243017020105040800000000000000000c083a666f6f2e626172a009a007a205a103020114",
        &msg(0, ":foo.bar", console),
    );
}

#[test]
fn reply_vectors() {
    wire(
        "30303017020105040800000000000000000c08757365723a766d31a115a1130c116372656174656420756e696b65726e656c",
        &msg(
            0,
            "user:vm1",
            Payload::Success(Success::String("created unikernel".into())),
        ),
    );
    wire(
        "30183010020105040800000000000000000c013aa104a0020500",
        &msg(0, ":", Payload::Success(Success::Empty)),
    );
    wire(
        "302f3017020105040800000000000000000c08757365723a766d31a2140c1264657374726f793a206e6f7420666f756e64",
        &msg(0, "user:vm1", Payload::Failure("destroy: not found".into())),
    );
    wire(
        "302c3017020105040800000000000000000c08757365723a766d31a111a60f300d0101ff0408789c030000000001",
        &msg(
            0,
            "user:vm1",
            Payload::Success(Success::UnikernelImage {
                compressed: true,
                image: unhex("789c030000000001"),
            }),
        ),
    );
    wire(
        "302b3014020105040800000000000000000c05757365723aa113a411300f300d0c053a6469736b020164010100",
        &msg(
            0,
            "user:",
            Payload::Success(Success::BlockDevices(vec![BlockDevice {
                name: name(":disk"),
                size: 100,
                active: false,
            }])),
        ),
    );
    wire(
        "30413010020105040800000000000000000c013aa12da22b302930270c05757365723a301e3006020100020101020110020204000202080030090c0773657276696365",
        &msg(
            0,
            ":",
            Payload::Success(Success::Policies(vec![NamedPolicy {
                name: name("user:"),
                policy: Policy {
                    cpuids: vec![0, 1],
                    unikernels: 16,
                    memory: 1024,
                    block: Some(2048),
                    bridges: vec!["service".into()],
                },
            }])),
        ),
    );
    wire(
        "30223014020105040800000000000000000c05757365723aa10aac0830060c043a6f6c64",
        &msg(
            0,
            "user:",
            Payload::Success(Success::Consoles(vec![name(":old")])),
        ),
    );
    wire(
        "303d3017020105040800000000000000000c08757365723a766d31a322a320301e180f32303236303130323033303430355a0c0b68656c6c6f20776f726c64",
        &msg(
            0,
            "user:vm1",
            Payload::Data(Data::Console {
                timestamp: t("2026-01-02T03:04:05Z"),
                line: b"hello world".to_vec(),
            }),
        ),
    );
}

#[test]
fn unikernel_info_vector() {
    let hex = "3081a83014020105040800000000000000000c05757365723aa1818fad818c3081893081860c043a
        766d31307ea0020500a102310031030201000201200420abababababababababababababababab
        ababababababababababababababababa11a311830160c07736572766963650c03627230040600
        8041010203a21630140c122d2d697076343d31302e302e302e322f3234a311180f323032363031
        30323033303430355aa403020101";
    let info = UnikernelInfo {
        typ: Typ::Solo5,
        startup: None,
        fail_behaviour: FailBehaviour::Restart { exit_codes: vec![] },
        cpuids: vec![0],
        memory: 32,
        digest: vec![0xab; 32],
        block_devices: vec![],
        bridges: vec![NetInfo {
            unikernel_device: "service".into(),
            host_device: "br0".into(),
            mac: Mac([0x00, 0x80, 0x41, 0x01, 0x02, 0x03]),
        }],
        argv: vec!["--ipv4=10.0.0.2/24".into()],
        started: Some(t("2026-01-02T03:04:05Z")),
        numcpus: Some(1),
        linux_boot_partition: None,
    };
    wire(
        hex,
        &msg(
            0,
            "user:",
            Payload::Success(Success::UnikernelInfo(vec![NamedUnikernelInfo {
                name: name(":vm1"),
                info,
            }])),
        ),
    );
}

#[test]
fn stats_vector() {
    let hex = "308201bd3013020105040800000000000000000c043a766d31a38201a4a18201a03082019c3081ae
        300f0408000000000000000c020305464e300f04080000000000000001020307a120040800000000
        0000100004080000000000000000040800000000000000000408000000000000000004080000000000
        000064040800000000000000000408000000000000000004080000000000000000040800000000000000
        000408000000000000000004080000000000000000040800000000000000000408000000000000000a04
        0800000000000000023081963081930c07736572766963650203011043020100020100020100020205
        dc0408000000000000000004080000000000000070040800000000000000000408000000000000021e04
        0800000000000000000408000000000000000004080000000000003bc20408000000000000f9540408
        0000000000000000040800000000000000000408000000000000000004080000000000000000a15004
        08000000000a2e2000040800000000000004130408000000000000000504080000000000000059040800
        00000000000059040800000000001b0210020100300f0408000000006a18b70d020304d8d3";
    let stats = StatsData {
        rusage: Rusage {
            utime: Timeval {
                sec: 12,
                usec: 345_678,
            },
            stime: Timeval {
                sec: 1,
                usec: 500_000,
            },
            maxrss: 4096,
            minflt: 100,
            nvcsw: 10,
            nivcsw: 2,
            ..Rusage::default()
        },
        ifdata: vec![IfData {
            bridge: "service".into(),
            flags: 0x11043,
            mtu: 1500,
            input_packets: 112,
            output_packets: 542,
            input_bytes: 15298,
            output_bytes: 63828,
            ..IfData::default()
        }],
        vmm: None,
        kinfo_mem: Some(KinfoMem {
            vsize: 170_795_008,
            rss: 1043,
            tsize: 5,
            dsize: 89,
            ssize: 89,
            runtime: 1_770_000,
            cow: 0,
            start: Timeval {
                sec: 1_780_004_621,
                usec: 317_651,
            },
        }),
    };
    wire(
        hex,
        &msg(
            0,
            ":vm1",
            Payload::Data(Data::Stats(Box::new(stats.clone()))),
        ),
    );
    // With vmm counters the [0] element sits between ifdata and kinfo-mem.
    let mut with_vmm = stats;
    with_vmm.vmm = Some(vec![("vcpu total runtime".into(), 7)]);
    let m = msg(0, ":vm1", Payload::Data(Data::Stats(Box::new(with_vmm))));
    let der = encode(&m);
    assert_eq!(decode(&der).unwrap(), m);
    let vmm_at = der
        .windows(4)
        .position(|w| w == [0xa0, 0x22, 0x30, 0x20])
        .unwrap();
    let kinfo_at = der.windows(2).position(|w| w == [0xa1, 0x50]).unwrap();
    assert!(vmm_at < kinfo_at);
}

#[test]
fn strictness() {
    use DecodeErrorKind as K;
    let good = unhex("30183010020105040800000000000000000c013aa104a0020500");
    let kind = |b: &[u8]| decode(b).unwrap_err().kind;
    // Trailing byte at the top level and inside the header.
    let mut t = good.clone();
    t.push(0);
    assert_eq!(kind(&t), K::TrailingBytes { count: 1 });
    // Version 4.
    let mut v4 = good.clone();
    v4[6] = 4;
    let e = decode(&v4).unwrap_err();
    assert_eq!(
        (e.kind, e.offset, e.field),
        (K::UnsupportedVersion(4), 4, "header.version")
    );
    // int64 of 7 bytes (lengths fixed up).
    let short = unhex("3017300f020105040700000000000000 0c013aa104a0020500");
    let e = decode(&short).unwrap_err();
    assert_eq!((e.kind, e.field), (K::BadInt64Length(7), "header.sequence"));
    // Indefinite length.
    assert_eq!(kind(&unhex("3080")), K::IndefiniteLength);
    // Invalid name.
    let bad = unhex("30183010020105040800000000000000000c01 21 a104a0020500");
    assert!(matches!(kind(&bad), K::BadName { .. }));
    // Log command and log data are rejected / kept.
    let log = unhex("301a3010020105040800000000000000000c013aa006a204a2020500");
    assert!(matches!(kind(&log), K::Removed(_)));
    // Unknown success alternative.
    let u = unhex("30183010020105040800000000000000000c013aa104a3020500");
    assert_eq!(
        kind(&u),
        K::UnknownAlternative {
            choice: "success",
            tag: 3
        }
    );
    // A primitive where EXPLICIT needs constructed.
    let p = unhex("30163010020105040800000000000000000c013a8102 0500");
    assert!(matches!(kind(&p), K::UnexpectedTag { .. }));
}

#[test]
fn unknown_data_alternative_is_kept_raw() {
    let der = unhex("301b3010020105040800000000000000000c013aa307a9053003020107");
    // The [9] inside data: an alternative of a newer server.
    let der: Vec<u8> = der;
    let m = decode(&der).unwrap();
    match &m.payload {
        Payload::Data(Data::Unknown { tag, raw }) => {
            assert_eq!(*tag, 9);
            assert_eq!(raw[0], 0xa9);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(encode(&m), der);
}
