//! Hand-built 2.8-style stats frames: each goes through `wire::decode` to
//! `Data::Unknown` (byte-exact) and then through `stats_of_unknown`.

use proptest::prelude::*;

use super::stats_of_unknown;
use crate::name::Name;
use crate::wire::der::Writer;
use crate::wire::stats::{encode_ifdata_list, encode_kinfo_fields, encode_rusage, encode_stats};
use crate::wire::{
    Data, Header, IfData, KinfoMem, Message, Payload, Rusage, StatsData, Timeval, decode, encode,
};

fn sample(kinfo: bool) -> StatsData {
    let tv = |sec, usec| Timeval { sec, usec };
    StatsData {
        rusage: Rusage {
            utime: tv(12, 345_678),
            stime: tv(3, 210_000),
            maxrss: 4096,
            nvcsw: 77,
            ..Rusage::default()
        },
        ifdata: vec![IfData {
            bridge: "service".to_string(),
            mtu: 1500,
            input_bytes: 1 << 40,
            ..IfData::default()
        }],
        vmm: None,
        kinfo_mem: kinfo.then(|| KinfoMem {
            vsize: 1 << 30,
            rss: 1 << 25,
            runtime: 9_000_000,
            cow: 3,
            start: tv(1_700_000_000, 5),
            ..KinfoMem::default()
        }),
    }
}

/// How `kinfo_mem` is written.
#[derive(Clone, Copy, Debug)]
enum Kinfo {
    Absent,
    Implicit(u8),
    Explicit(u8),
    Bare,
    /// OCaml option as a CHOICE: `[0] NULL` for none.
    ChoiceNone,
    /// The same with an IMPLICIT NULL: `80 00`.
    ImplicitNone,
}

fn write_kinfo(w: &mut Writer, how: Kinfo, k: &KinfoMem) {
    match how {
        Kinfo::Absent => {}
        Kinfo::Implicit(n) => w.explicit(n, |w| encode_kinfo_fields(w, k)),
        Kinfo::Explicit(n) => w.explicit(n, |w| w.sequence(|w| encode_kinfo_fields(w, k))),
        Kinfo::Bare => w.sequence(|w| encode_kinfo_fields(w, k)),
        Kinfo::ChoiceNone => w.explicit_null(0),
        Kinfo::ImplicitNone => w.primitive(0x80, &[]),
    }
}

/// A 2.8 body `(rusage, kinfo?, ifdata)` or `(rusage, ifdata, kinfo?)`.
fn body28(w: &mut Writer, st: &StatsData, how: Kinfo, kinfo_first: bool) {
    let k = st.kinfo_mem.clone().unwrap_or_default();
    encode_rusage(w, &st.rusage);
    if kinfo_first {
        write_kinfo(w, how, &k);
    }
    encode_ifdata_list(w, &st.ifdata);
    if !kinfo_first {
        write_kinfo(w, how, &k);
    }
}

/// The alternative `[tag]` around a body: EXPLICIT (a SEQUENCE inside) or IMPLICIT.
fn alternative(tag: u8, explicit: bool, f: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::new();
    if explicit {
        w.explicit(tag, |w| w.sequence(f));
    } else {
        w.explicit(tag, f);
    }
    w.into_vec()
}

/// Through a whole frame: `decode` must give `Data::Unknown` with the same raw bytes.
fn via_frame(raw: &[u8]) -> Option<StatsData> {
    let msg = Message {
        header: Header::new(0, Name::parse("web").unwrap()),
        payload: Payload::Data(Data::Unknown {
            tag: 0,
            raw: raw.to_vec(),
        }),
    };
    let frame = encode(&msg);
    let Payload::Data(Data::Unknown { raw: got, .. }) = decode(&frame).unwrap().payload else {
        panic!("not an unknown data alternative: {raw:02x?}");
    };
    assert_eq!(got, raw);
    assert_eq!(encode(&decode(&frame).unwrap()), frame);
    stats_of_unknown(&got)
}

fn check(got: Option<StatsData>, want: &StatsData, what: &str) {
    let got = got.unwrap_or_else(|| panic!("{what}: not recognised"));
    assert_eq!(
        got.rusage.utime,
        Timeval {
            sec: 12,
            usec: 345_678
        },
        "{what}"
    );
    assert_eq!(
        got.rusage.stime,
        Timeval {
            sec: 3,
            usec: 210_000
        },
        "{what}"
    );
    assert_eq!(&got, want, "{what}");
}

#[test]
fn every_plausible_28_layout_is_recognised() {
    let kinds = [
        Kinfo::Implicit(1),
        Kinfo::Implicit(0),
        Kinfo::Explicit(0),
        Kinfo::Explicit(1),
        Kinfo::Bare,
    ];
    for explicit in [true, false] {
        for kinfo_first in [true, false] {
            for how in kinds {
                let want = sample(true);
                let raw = alternative(5, explicit, |w| body28(w, &want, how, kinfo_first));
                let what = format!("explicit={explicit} first={kinfo_first} {how:?}");
                check(via_frame(&raw), &want, &what);
            }
            for how in [Kinfo::Absent, Kinfo::ChoiceNone, Kinfo::ImplicitNone] {
                let want = sample(false);
                let raw = alternative(6, explicit, |w| body28(w, &want, how, kinfo_first));
                let what = format!("explicit={explicit} first={kinfo_first} {how:?}");
                check(via_frame(&raw), &want, &what);
            }
        }
    }
}

#[test]
fn the_27_layout_under_an_unknown_tag_is_recognised() {
    let mut want = sample(true);
    want.vmm = Some(vec![("exits".to_string(), 42)]);
    let mut w = Writer::new();
    w.explicit(7, |w| encode_stats(w, &want));
    check(via_frame(&w.into_vec()), &want, "2.7 with vmm");
    want.vmm = None;
    let mut w = Writer::new();
    w.explicit(2, |w| encode_stats(w, &want));
    check(via_frame(&w.into_vec()), &want, "2.7 without vmm");
}

#[test]
fn a_high_tag_number_is_fine() {
    let want = sample(true);
    let raw = alternative(5, true, |w| body28(w, &want, Kinfo::Implicit(1), false));
    // `[37]` in the high-tag form instead of the one-byte `[5]`.
    let raw: Vec<u8> = [0xbf, 37].iter().chain(&raw[1..]).copied().collect();
    check(via_frame(&raw), &want, "[37]");
}

#[test]
fn other_bodies_are_not_stats() {
    let log_event = alternative(5, false, |w| {
        w.sequence(|w| {
            w.utf8(b"alice:web");
            w.utf8(b"started");
        })
    });
    assert_eq!(via_frame(&log_event), None);
    let explicit_log = alternative(5, true, |w| {
        w.utf8(b"alice:web");
        w.utf8(b"started");
    });
    assert_eq!(via_frame(&explicit_log), None);
    assert_eq!(via_frame(&alternative(5, false, |_| {})), None);

    let st = sample(true);
    // kinfo twice, a trailing element, no interface list.
    let twice = alternative(5, false, |w| {
        body28(w, &st, Kinfo::Implicit(1), true);
        write_kinfo(w, Kinfo::Implicit(1), st.kinfo_mem.as_ref().unwrap());
    });
    assert_eq!(stats_of_unknown(&twice), None);
    let trailing = alternative(5, false, |w| {
        body28(w, &st, Kinfo::Absent, false);
        w.int(1);
    });
    assert_eq!(stats_of_unknown(&trailing), None);
    let no_list = alternative(5, false, |w| encode_rusage(w, &st.rusage));
    assert_eq!(stats_of_unknown(&no_list), None);
    // Not a context tag, or trailing bytes after the TLV.
    let mut w = Writer::new();
    w.sequence(|w| body28(w, &st, Kinfo::Absent, false));
    assert_eq!(stats_of_unknown(&w.into_vec()), None);
    let mut raw = alternative(5, false, |w| body28(w, &st, Kinfo::Absent, false));
    assert!(stats_of_unknown(&raw).is_some());
    raw.push(0);
    assert_eq!(stats_of_unknown(&raw), None);
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = stats_of_unknown(&bytes);
    }

    #[test]
    fn damaged_stats_never_panic(
        cut in 0usize..400,
        flips in proptest::collection::vec((0usize..400, any::<u8>()), 0..4),
        first in any::<bool>(),
    ) {
        let st = sample(true);
        let mut raw = alternative(5, first, |w| body28(w, &st, Kinfo::Implicit(1), first));
        for (i, b) in flips {
            let n = raw.len();
            raw[i % n] ^= b;
        }
        raw.truncate(cut.max(1));
        let _ = stats_of_unknown(&raw);
    }
}
