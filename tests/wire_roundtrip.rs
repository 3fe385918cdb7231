//! Property tests: `decode(encode(x)) == x` for every payload kind, the certificate
//! extension, and the frame decoder under arbitrary chunking. Generated SET OF
//! members are canonicalized (DER order) first: the wire has no other order.

use albatross_autoscale::name::Name;
use albatross_autoscale::wire::{
    self, BlockData, BlockDevice, BlockInfo, BlockSpec, Command, ConsoleStart, Data, FailBehaviour,
    Frame, FrameDecoder, Header, IfData, KinfoMem, Mac, Message, NamedPolicy, NamedUnikernelInfo,
    NetInfo, NetSpec, Payload, Policy, Rusage, StatsData, StatsTap, Success, Time, Timeval, Typ,
    UnikernelArguments, UnikernelConfig, UnikernelInfo,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9.-]{0,12}"
}

fn name() -> BoxedStrategy<Name> {
    (vec(label(), 0..3), option::of(label()))
        .prop_map(|(p, l)| Name::new(p, l))
        .boxed()
}

fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

fn time() -> impl Strategy<Value = Time> {
    (-62_167_219_200i64..=253_402_300_799, 0u16..1000)
        .prop_map(|(s, ms)| Time::new(s, ms).expect("in range"))
}

fn timeval() -> impl Strategy<Value = Timeval> {
    (any::<i64>(), any::<i64>()).prop_map(|(sec, usec)| Timeval { sec, usec })
}

fn typ() -> impl Strategy<Value = Typ> {
    prop_oneof![Just(Typ::Solo5), Just(Typ::Bhyve)]
}

fn fail() -> impl Strategy<Value = FailBehaviour> {
    prop_oneof![
        Just(FailBehaviour::Quit),
        vec(any::<i64>(), 0..4).prop_map(|exit_codes| FailBehaviour::Restart { exit_codes }),
    ]
}

fn mac() -> impl Strategy<Value = Mac> {
    any::<[u8; 6]>().prop_map(Mac)
}

fn block_spec() -> impl Strategy<Value = BlockSpec> {
    (text(), option::of(text()), option::of(any::<i64>())).prop_map(
        |(name, device, sector_size)| BlockSpec {
            name,
            device,
            sector_size,
        },
    )
}

fn net_spec() -> impl Strategy<Value = NetSpec> {
    (text(), option::of(text()), option::of(mac())).prop_map(|(name, host_device, mac)| NetSpec {
        name,
        host_device,
        mac,
    })
}

/// The fields configs and restart arguments share.
#[allow(clippy::type_complexity)]
fn common() -> impl Strategy<
    Value = (
        FailBehaviour,
        Option<i64>,
        bool,
        Vec<i64>,
        i64,
        Vec<BlockSpec>,
        Vec<NetSpec>,
        Vec<String>,
        Option<i64>,
        Option<String>,
    ),
> {
    (
        fail(),
        option::of(any::<i64>()),
        any::<bool>(),
        vec(any::<i64>(), 0..4),
        any::<i64>(),
        vec(block_spec(), 0..3),
        vec(net_spec(), 0..3),
        vec(text(), 0..3),
        option::of(any::<i64>()),
        option::of(text()),
    )
}

fn config() -> impl Strategy<Value = UnikernelConfig> {
    (typ(), any::<bool>(), bytes(300), common()).prop_map(|(typ, compressed, image, c)| {
        let mut cfg = UnikernelConfig {
            typ,
            compressed,
            image,
            startup: c.1,
            add_name: c.2,
            fail_behaviour: c.0,
            cpuids: c.3,
            memory: c.4,
            block_devices: c.5,
            bridges: c.6,
            argv: c.7,
            numcpus: c.8,
            linux_boot_partition: c.9,
        };
        cfg.canonicalize();
        cfg
    })
}

fn arguments() -> impl Strategy<Value = UnikernelArguments> {
    common().prop_map(|c| {
        let mut a = UnikernelArguments {
            fail_behaviour: c.0,
            startup: c.1,
            add_name: c.2,
            cpuids: c.3,
            memory: c.4,
            block_devices: c.5,
            bridges: c.6,
            argv: c.7,
            numcpus: c.8,
            linux_boot_partition: c.9,
        };
        a.canonicalize();
        a
    })
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        vec(any::<i64>(), 0..4),
        any::<i64>(),
        any::<i64>(),
        option::of(any::<i64>()),
        vec(text(), 0..3),
    )
        .prop_map(|(cpuids, unikernels, memory, block, bridges)| Policy {
            cpuids,
            unikernels,
            memory,
            block,
            bridges,
        })
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        any::<i64>().prop_map(|limit| Command::ConsoleAdd { limit }),
        time().prop_map(|t| Command::ConsoleSubscribe {
            start: ConsoleStart::Since(t)
        }),
        any::<i64>().prop_map(|n| Command::ConsoleSubscribe {
            start: ConsoleStart::Count(n)
        }),
        Just(Command::ConsoleListInactive),
        (text(), any::<i64>(), vec((text(), text()), 0..3)).prop_map(|(vmmdev, pid, n)| {
            Command::StatsAdd {
                vmmdev,
                pid,
                network: n
                    .into_iter()
                    .map(|(bridge, tap)| StatsTap { bridge, tap })
                    .collect(),
            }
        }),
        Just(Command::StatsRemove),
        Just(Command::StatsSubscribe),
        Just(Command::StatsInitial),
        Just(Command::UnikernelDestroy),
        any::<i64>().prop_map(|level| Command::UnikernelGet { level }),
        option::of(arguments()).prop_map(|a| Command::UnikernelRestart {
            arguments: a.map(Box::new)
        }),
        Just(Command::UnikernelInfo),
        config().prop_map(|c| Command::UnikernelCreate {
            config: Box::new(c)
        }),
        config().prop_map(|c| Command::UnikernelForceCreate {
            config: Box::new(c)
        }),
        Just(Command::PolicyInfo),
        policy().prop_map(|policy| Command::PolicyAdd { policy }),
        Just(Command::PolicyRemove),
        Just(Command::BlockInfo),
        any::<i64>().prop_map(|size| Command::BlockAdd { size }),
        Just(Command::BlockRemove),
        any::<i64>().prop_map(|level| Command::BlockDump { level }),
        any::<bool>().prop_map(|compressed| Command::BlockSet { compressed }),
    ]
}

fn info() -> impl Strategy<Value = UnikernelInfo> {
    let blocks = vec(
        (text(), text(), any::<i64>(), any::<i64>()).prop_map(|(u, h, sector_size, size)| {
            BlockInfo {
                unikernel_device: u,
                host_device: h,
                sector_size,
                size,
            }
        }),
        0..3,
    );
    let nets = vec(
        (text(), text(), mac()).prop_map(|(u, h, mac)| NetInfo {
            unikernel_device: u,
            host_device: h,
            mac,
        }),
        0..3,
    );
    (
        (
            typ(),
            option::of(any::<i64>()),
            fail(),
            vec(any::<i64>(), 0..4),
        ),
        (any::<i64>(), bytes(40), blocks, nets),
        (
            vec(text(), 0..3),
            option::of(time()),
            option::of(any::<i64>()),
            option::of(text()),
        ),
    )
        .prop_map(|(a, b, c)| {
            let mut i = UnikernelInfo {
                typ: a.0,
                startup: a.1,
                fail_behaviour: a.2,
                cpuids: a.3,
                memory: b.0,
                digest: b.1,
                block_devices: b.2,
                bridges: b.3,
                argv: c.0,
                started: c.1,
                numcpus: c.2,
                linux_boot_partition: c.3,
            };
            i.canonicalize();
            i
        })
}

fn success() -> impl Strategy<Value = Success> {
    prop_oneof![
        Just(Success::Empty),
        text().prop_map(Success::String),
        vec(
            (name(), policy()).prop_map(|(name, policy)| NamedPolicy { name, policy }),
            0..3
        )
        .prop_map(Success::Policies),
        vec(
            (name(), any::<i64>(), any::<bool>()).prop_map(|(name, size, active)| BlockDevice {
                name,
                size,
                active
            }),
            0..3
        )
        .prop_map(Success::BlockDevices),
        (any::<bool>(), bytes(300))
            .prop_map(|(compressed, image)| Success::UnikernelImage { compressed, image }),
        (any::<bool>(), bytes(50))
            .prop_map(|(compressed, image)| Success::OldBlockDeviceImage { compressed, image }),
        any::<bool>().prop_map(|compressed| Success::BlockDeviceImage { compressed }),
        vec(name(), 0..3).prop_map(Success::Consoles),
        vec(
            (name(), info()).prop_map(|(name, info)| NamedUnikernelInfo { name, info }),
            0..3
        )
        .prop_map(Success::UnikernelInfo),
    ]
}

fn stats() -> impl Strategy<Value = StatsData> {
    let rusage =
        (timeval(), timeval(), vec(any::<i64>(), 14)).prop_map(|(utime, stime, c)| Rusage {
            utime,
            stime,
            maxrss: c[0],
            ixrss: c[1],
            idrss: c[2],
            isrss: c[3],
            minflt: c[4],
            majflt: c[5],
            nswap: c[6],
            inblock: c[7],
            outblock: c[8],
            msgsnd: c[9],
            msgrcv: c[10],
            nsignals: c[11],
            nvcsw: c[12],
            nivcsw: c[13],
        });
    let ifdata = (text(), vec(any::<i64>(), 17)).prop_map(|(bridge, c)| IfData {
        bridge,
        flags: c[0],
        send_length: c[1],
        max_send_length: c[2],
        send_drops: c[3],
        mtu: c[4],
        baudrate: c[5],
        input_packets: c[6],
        input_errors: c[7],
        output_packets: c[8],
        output_errors: c[9],
        collisions: c[10],
        input_bytes: c[11],
        output_bytes: c[12],
        input_mcast: c[13],
        output_mcast: c[14],
        input_dropped: c[15],
        output_dropped: c[16],
    });
    let kinfo = (vec(any::<i64>(), 7), timeval()).prop_map(|(c, start)| KinfoMem {
        vsize: c[0],
        rss: c[1],
        tsize: c[2],
        dsize: c[3],
        ssize: c[4],
        runtime: c[5],
        cow: c[6],
        start,
    });
    (
        rusage,
        vec(ifdata, 0..3),
        option::of(vec((text(), any::<i64>()), 0..3)),
        option::of(kinfo),
    )
        .prop_map(|(rusage, ifdata, vmm, kinfo_mem)| StatsData {
            rusage,
            ifdata,
            vmm,
            kinfo_mem,
        })
}

/// A TLV with a context tag this codec does not know for Data.
fn unknown_data() -> impl Strategy<Value = Data> {
    (
        prop_oneof![Just(0u32), Just(2u32), 5u32..31],
        any::<bool>(),
        bytes(200),
    )
        .prop_map(|(tag, constructed, content)| {
            let mut raw = vec![0x80 | if constructed { 0x20 } else { 0 } | tag as u8];
            if content.len() < 128 {
                raw.push(content.len() as u8);
            } else {
                raw.extend([0x81, content.len() as u8]);
            }
            raw.extend(&content);
            Data::Unknown { tag, raw }
        })
}

fn data() -> impl Strategy<Value = Data> {
    prop_oneof![
        stats().prop_map(|s| Data::Stats(Box::new(s))),
        (time(), bytes(80)).prop_map(|(timestamp, line)| Data::Console { timestamp, line }),
        bytes(100).prop_map(|d| Data::Block(BlockData::Chunk(d))),
        Just(Data::Block(BlockData::End)),
        unknown_data(),
    ]
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        command().prop_map(Payload::Command),
        success().prop_map(Payload::Success),
        text().prop_map(Payload::Failure),
        data().prop_map(Payload::Data),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (any::<i64>(), name(), payload()).prop_map(|(sequence, name, payload)| Message {
        header: Header::new(sequence, name),
        payload,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn message_round_trips(m in message()) {
        let der = wire::encode(&m);
        prop_assert_eq!(wire::decode(&der).unwrap(), m.clone());
        // The JSON view never fails.
        prop_assert!(serde_json::to_string(&m).is_ok());
    }

    #[test]
    fn cert_extension_round_trips(c in command()) {
        let der = wire::encode_cert_extension(&c);
        prop_assert_eq!(wire::decode_cert_extension(&der).unwrap(), (5, c));
    }

    #[test]
    fn encoder_sorts_sets_whatever_the_input_order(mut c in config(), seed in any::<u64>()) {
        let canonical = wire::encode_cert_extension(&Command::UnikernelCreate { config: Box::new(c.clone()) });
        // Any permutation of the sets encodes identically.
        let n = c.cpuids.len().max(1);
        c.cpuids.rotate_left((seed as usize) % n);
        c.bridges.reverse();
        c.block_devices.reverse();
        let permuted = wire::encode_cert_extension(&Command::UnikernelCreate { config: Box::new(c) });
        prop_assert_eq!(permuted, canonical);
    }

    #[test]
    fn frames_survive_any_chunking(ms in vec(message(), 1..5), cuts in vec(any::<u16>(), 0..8)) {
        let mut stream = Vec::new();
        for m in &ms {
            stream.extend(wire::frame(&wire::encode(m)));
        }
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| usize::from(c) % (stream.len() + 1)).collect();
        cuts.push(0);
        cuts.push(stream.len());
        cuts.sort_unstable();
        let mut dec = FrameDecoder::new(wire::DEFAULT_MAX_FRAME);
        let mut got = Vec::new();
        for w in cuts.windows(2) {
            dec.push(&stream[w[0]..w[1]]);
            while let Some(f) = dec.next_frame().unwrap() {
                let Frame::Message { body, .. } = f else { panic!("no end marker sent") };
                got.push(wire::decode(&body).unwrap());
            }
        }
        prop_assert!(dec.finish().is_ok());
        prop_assert_eq!(got, ms);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in bytes(400)) {
        let _ = wire::decode(&b);
        let _ = wire::decode_cert_extension(&b);
        let mut dec = FrameDecoder::new(1024);
        dec.push(&b);
        while let Ok(Some(_)) = dec.next_frame() {}
        let _ = dec.finish();
    }
}
