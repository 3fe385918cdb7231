//! Data payloads (protocol §3.8, §3.9): statistics, console lines, block data and
//! unknown alternatives of newer servers.

use serde::Serialize;
use serde::ser::SerializeMap;

use super::der::{self, Reader, Writer};
use super::error::{DecodeErrorKind, TagClass};
use super::time::Time;

/// `struct timeval`: seconds (INT64) and microseconds (INT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Timeval {
    pub sec: i64,
    pub usec: i64,
}

impl Timeval {
    /// Total microseconds; `None` if `usec` is outside `0..1_000_000` or on overflow.
    pub fn total_micros(&self) -> Option<i64> {
        if !(0..1_000_000).contains(&self.usec) {
            return None;
        }
        self.sec.checked_mul(1_000_000)?.checked_add(self.usec)
    }
}

/// `getrusage`-style counters of the unikernel process (all INT64 on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Rusage {
    pub utime: Timeval,
    pub stime: Timeval,
    pub maxrss: i64,
    pub ixrss: i64,
    pub idrss: i64,
    pub isrss: i64,
    pub minflt: i64,
    pub majflt: i64,
    pub nswap: i64,
    pub inblock: i64,
    pub outblock: i64,
    pub msgsnd: i64,
    pub msgrcv: i64,
    pub nsignals: i64,
    pub nvcsw: i64,
    pub nivcsw: i64,
}

/// Memory figures of the process (`[1] IMPLICIT` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct KinfoMem {
    pub vsize: i64,
    pub rss: i64,
    pub tsize: i64,
    pub dsize: i64,
    pub ssize: i64,
    /// µs.
    pub runtime: i64,
    /// INTEGER, not INT64.
    pub cow: i64,
    pub start: Timeval,
}

/// Counters of one network interface. The first five are C int32 sent as INTEGER
/// (sign-extended); kept as i64 so every INTEGER round-trips.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct IfData {
    /// The unikernel-side interface name (e.g. `service`), not the host bridge.
    pub bridge: String,
    pub flags: i64,
    pub send_length: i64,
    pub max_send_length: i64,
    pub send_drops: i64,
    pub mtu: i64,
    pub baudrate: i64,
    /// Sent *by the unikernel* (received on the host tap).
    pub input_packets: i64,
    pub input_errors: i64,
    /// Received by the unikernel.
    pub output_packets: i64,
    pub output_errors: i64,
    pub collisions: i64,
    pub input_bytes: i64,
    pub output_bytes: i64,
    pub input_mcast: i64,
    pub output_mcast: i64,
    pub input_dropped: i64,
    pub output_dropped: i64,
}

/// One statistics sample. Carries no timestamp: receivers stamp on arrival.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct StatsData {
    pub rusage: Rusage,
    pub ifdata: Vec<IfData>,
    /// bhyve vmm counters (FreeBSD only, gone in 2.8).
    #[serde(serialize_with = "super::json::key_values")]
    pub vmm: Option<Vec<(String, i64)>>,
    pub kinfo_mem: Option<KinfoMem>,
}

impl StatsData {
    /// utime + stime in microseconds: the one conversion from a statistics sample
    /// to the engine's CPU counter (daemon, `replay`, `stats`). `Err` names the
    /// counter that is not a valid CPU time.
    pub fn cpu_micros(&self) -> Result<u64, String> {
        let micros = |tv: &Timeval, what: &str| {
            tv.total_micros()
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| format!("{what} {}s {}us is not a valid CPU time", tv.sec, tv.usec))
        };
        micros(&self.rusage.utime, "utime")?
            .checked_add(micros(&self.rusage.stime, "stime")?)
            .ok_or_else(|| "utime + stime overflows".to_string())
    }
}

impl Data {
    /// The statistics this data frame carries: 2.7's `statistics [1]`, or a newer
    /// albatross's under a tag 2.7 does not have, read by its structure
    /// ([`super::stats_of_unknown`]).
    pub fn into_stats(self) -> Result<StatsData, NoStats> {
        match self {
            Data::Stats(s) => Ok(*s),
            Data::Unknown { tag, raw } => match super::stats_of_unknown(&raw) {
                Some(s) => Ok(s),
                None => Err(NoStats {
                    tag,
                    raw: Some(raw),
                }),
            },
            Data::Console { .. } => Err(NoStats { tag: 3, raw: None }),
            Data::Block(_) => Err(NoStats { tag: 4, raw: None }),
        }
    }
}

/// A data frame that carries no statistics: its data tag and, for an alternative
/// this codec does not know, its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoStats {
    pub tag: u32,
    pub raw: Option<Vec<u8>>,
}

/// Block device dump data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockData {
    /// `some-data [0]`: one chunk.
    Chunk(Vec<u8>),
    /// `no-data [1]`: end of the dump.
    End,
}

/// `Data` payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// `statistics [1]`.
    Stats(Box<StatsData>),
    /// `console [3]`: the line is not necessarily UTF-8.
    Console { timestamp: Time, line: Vec<u8> },
    /// `block [4]`.
    Block(BlockData),
    /// An alternative this codec does not know (newer servers, or the removed
    /// `[0]` utc-console / `[2]` log): the complete raw TLV, re-encoded verbatim.
    Unknown { tag: u32, raw: Vec<u8> },
}

impl Serialize for Data {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Hex<'a>(&'a [u8]);
        impl Serialize for Hex<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                super::json::hex(self.0, s)
            }
        }
        struct Text<'a>(&'a [u8]);
        impl Serialize for Text<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                super::json::lenient_text(self.0, s)
            }
        }
        let mut m = s.serialize_map(None)?;
        match self {
            Data::Stats(st) => {
                m.serialize_entry("kind", "stats_data")?;
                m.serialize_entry("rusage", &st.rusage)?;
                m.serialize_entry("ifdata", &st.ifdata)?;
                m.serialize_entry("vmm", &VmmJson(&st.vmm))?;
                m.serialize_entry("kinfo_mem", &st.kinfo_mem)?;
            }
            Data::Console { timestamp, line } => {
                m.serialize_entry("kind", "console")?;
                m.serialize_entry("timestamp", timestamp)?;
                m.serialize_entry("line", &Text(line))?;
            }
            Data::Block(BlockData::Chunk(d)) => {
                m.serialize_entry("kind", "block_data")?;
                m.serialize_entry("len", &d.len())?;
                m.serialize_entry("hex", &Hex(d))?;
            }
            Data::Block(BlockData::End) => m.serialize_entry("kind", "block_no_data")?,
            Data::Unknown { tag, raw } => {
                m.serialize_entry("kind", "unknown")?;
                m.serialize_entry("tag", tag)?;
                m.serialize_entry("raw_hex", &Hex(raw))?;
            }
        }
        m.end()
    }
}

struct VmmJson<'a>(&'a Option<Vec<(String, i64)>>);

impl Serialize for VmmJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        super::json::key_values(self.0, s)
    }
}

// ---- decoding -------------------------------------------------------------------

pub(super) fn decode_timeval(r: &mut Reader<'_>, field: &'static str) -> der::Result<Timeval> {
    let mut s = r.sequence(field)?;
    let sec = s.int64(field)?;
    let usec = s.int(field)?;
    s.finish(field)?;
    Ok(Timeval { sec, usec })
}

pub(super) fn decode_rusage(r: &mut Reader<'_>) -> der::Result<Rusage> {
    let mut s = r.sequence("stats.rusage")?;
    let ru = Rusage {
        utime: decode_timeval(&mut s, "stats.rusage.utime")?,
        stime: decode_timeval(&mut s, "stats.rusage.stime")?,
        maxrss: s.int64("stats.rusage.maxrss")?,
        ixrss: s.int64("stats.rusage.ixrss")?,
        idrss: s.int64("stats.rusage.idrss")?,
        isrss: s.int64("stats.rusage.isrss")?,
        minflt: s.int64("stats.rusage.minflt")?,
        majflt: s.int64("stats.rusage.majflt")?,
        nswap: s.int64("stats.rusage.nswap")?,
        inblock: s.int64("stats.rusage.inblock")?,
        outblock: s.int64("stats.rusage.outblock")?,
        msgsnd: s.int64("stats.rusage.msgsnd")?,
        msgrcv: s.int64("stats.rusage.msgrcv")?,
        nsignals: s.int64("stats.rusage.nsignals")?,
        nvcsw: s.int64("stats.rusage.nvcsw")?,
        nivcsw: s.int64("stats.rusage.nivcsw")?,
    };
    s.finish("stats.rusage")?;
    Ok(ru)
}

pub(super) fn decode_ifdata(r: &mut Reader<'_>) -> der::Result<IfData> {
    let mut s = r.sequence("stats.ifdata")?;
    let d = IfData {
        bridge: s.utf8("stats.ifdata.bridge")?,
        flags: s.int("stats.ifdata.flags")?,
        send_length: s.int("stats.ifdata.send_length")?,
        max_send_length: s.int("stats.ifdata.max_send_length")?,
        send_drops: s.int("stats.ifdata.send_drops")?,
        mtu: s.int("stats.ifdata.mtu")?,
        baudrate: s.int64("stats.ifdata.baudrate")?,
        input_packets: s.int64("stats.ifdata.input_packets")?,
        input_errors: s.int64("stats.ifdata.input_errors")?,
        output_packets: s.int64("stats.ifdata.output_packets")?,
        output_errors: s.int64("stats.ifdata.output_errors")?,
        collisions: s.int64("stats.ifdata.collisions")?,
        input_bytes: s.int64("stats.ifdata.input_bytes")?,
        output_bytes: s.int64("stats.ifdata.output_bytes")?,
        input_mcast: s.int64("stats.ifdata.input_mcast")?,
        output_mcast: s.int64("stats.ifdata.output_mcast")?,
        input_dropped: s.int64("stats.ifdata.input_dropped")?,
        output_dropped: s.int64("stats.ifdata.output_dropped")?,
    };
    s.finish("stats.ifdata")?;
    Ok(d)
}

/// KinfoMem's fields, read from the content of the IMPLICIT `[1]`.
pub(super) fn decode_kinfo_fields(s: &mut Reader<'_>) -> der::Result<KinfoMem> {
    Ok(KinfoMem {
        vsize: s.int64("stats.kinfo_mem.vsize")?,
        rss: s.int64("stats.kinfo_mem.rss")?,
        tsize: s.int64("stats.kinfo_mem.tsize")?,
        dsize: s.int64("stats.kinfo_mem.dsize")?,
        ssize: s.int64("stats.kinfo_mem.ssize")?,
        runtime: s.int64("stats.kinfo_mem.runtime")?,
        cow: s.int("stats.kinfo_mem.cow")?,
        start: decode_timeval(s, "stats.kinfo_mem.start")?,
    })
}

/// The content of `vmm-stats [0]`: `SEQUENCE OF SEQUENCE { key, INT64 }`.
pub(super) fn decode_vmm(r: &mut Reader<'_>) -> der::Result<Vec<(String, i64)>> {
    r.sequence("stats.vmm")?.many(|r| {
        let mut kv = r.sequence("stats.vmm")?;
        let key = kv.utf8("stats.vmm.key")?;
        let value = kv.int64("stats.vmm.value")?;
        kv.finish("stats.vmm")?;
        Ok((key, value))
    })
}

pub(crate) fn decode_stats(r: &mut Reader<'_>) -> der::Result<StatsData> {
    let mut s = r.sequence("stats")?;
    let rusage = decode_rusage(&mut s)?;
    let ifdata = s.sequence("stats.ifdata")?.many(decode_ifdata)?;
    let vmm = s.opt_explicit(0, "stats.vmm", decode_vmm)?;
    let kinfo_mem = if s.next_is_context(1) {
        // IMPLICIT: the [1] header replaces the SEQUENCE header.
        let tlv = s.expect("stats.kinfo_mem", TagClass::Context, true, 1)?;
        let mut k = s.inner(&tlv);
        let km = decode_kinfo_fields(&mut k)?;
        k.finish("stats.kinfo_mem")?;
        Some(km)
    } else {
        None
    };
    s.finish("stats")?;
    Ok(StatsData {
        rusage,
        ifdata,
        vmm,
        kinfo_mem,
    })
}

/// `Data ::= CHOICE`. Unknown context tags become [`Data::Unknown`].
pub(crate) fn decode_data(r: &mut Reader<'_>) -> der::Result<Data> {
    const F: &str = "data";
    let (tag, tlv) = r.choice(F)?;
    match tag {
        1 if tlv.constructed => {
            let mut inner = r.inner(&tlv);
            let st = decode_stats(&mut inner)?;
            inner.finish("stats")?;
            Ok(Data::Stats(Box::new(st)))
        }
        3 => {
            let mut inner = r.explicit_content(&tlv, "data.console")?;
            let mut s = inner.sequence("data.console")?;
            let timestamp = Time::decode(&mut s, "data.console.timestamp")?;
            let line = s.utf8_bytes("data.console.line")?.to_vec();
            s.finish("data.console")?;
            inner.finish("data.console")?;
            Ok(Data::Console { timestamp, line })
        }
        4 => {
            let mut inner = r.explicit_content(&tlv, "data.block")?;
            let (btag, btlv) = inner.choice("data.block")?;
            let block = match btag {
                0 => {
                    let mut c = inner.explicit_content(&btlv, "data.block.some_data")?;
                    let d = c.octets("data.block.some_data")?.to_vec();
                    c.finish("data.block.some_data")?;
                    BlockData::Chunk(d)
                }
                1 => {
                    inner.explicit_null(&btlv, "data.block.no_data")?;
                    BlockData::End
                }
                tag => {
                    return Err(r.err(
                        btlv.offset,
                        "data.block",
                        DecodeErrorKind::UnknownAlternative {
                            choice: "block data",
                            tag,
                        },
                    ));
                }
            };
            inner.finish("data.block")?;
            Ok(Data::Block(block))
        }
        // A primitive [1] is not our statistics; keep it like any unknown tag.
        tag => Ok(Data::Unknown {
            tag,
            raw: tlv.raw.to_vec(),
        }),
    }
}

// ---- encoding -------------------------------------------------------------------

fn encode_timeval(w: &mut Writer, t: &Timeval) {
    w.sequence(|w| {
        w.int64(t.sec);
        w.int(t.usec);
    });
}

pub(super) fn encode_rusage(w: &mut Writer, ru: &Rusage) {
    w.sequence(|w| {
        encode_timeval(w, &ru.utime);
        encode_timeval(w, &ru.stime);
        for v in [
            ru.maxrss,
            ru.ixrss,
            ru.idrss,
            ru.isrss,
            ru.minflt,
            ru.majflt,
            ru.nswap,
            ru.inblock,
            ru.outblock,
            ru.msgsnd,
            ru.msgrcv,
            ru.nsignals,
            ru.nvcsw,
            ru.nivcsw,
        ] {
            w.int64(v);
        }
    });
}

/// The `SEQUENCE OF IfData`.
pub(super) fn encode_ifdata_list(w: &mut Writer, list: &[IfData]) {
    w.sequence_of(list, |w, d| {
        w.sequence(|w| {
            w.utf8(d.bridge.as_bytes());
            for v in [
                d.flags,
                d.send_length,
                d.max_send_length,
                d.send_drops,
                d.mtu,
            ] {
                w.int(v);
            }
            for v in [
                d.baudrate,
                d.input_packets,
                d.input_errors,
                d.output_packets,
                d.output_errors,
                d.collisions,
                d.input_bytes,
                d.output_bytes,
                d.input_mcast,
                d.output_mcast,
                d.input_dropped,
                d.output_dropped,
            ] {
                w.int64(v);
            }
        });
    });
}

/// KinfoMem's fields without a header (the caller picks the tag).
pub(super) fn encode_kinfo_fields(w: &mut Writer, k: &KinfoMem) {
    for v in [k.vsize, k.rss, k.tsize, k.dsize, k.ssize, k.runtime] {
        w.int64(v);
    }
    w.int(k.cow);
    encode_timeval(w, &k.start);
}

pub(crate) fn encode_stats(w: &mut Writer, st: &StatsData) {
    w.sequence(|w| {
        encode_rusage(w, &st.rusage);
        encode_ifdata_list(w, &st.ifdata);
        if let Some(vmm) = &st.vmm {
            w.explicit(0, |w| {
                w.sequence_of(vmm, |w, (k, v)| {
                    w.sequence(|w| {
                        w.utf8(k.as_bytes());
                        w.int64(*v);
                    });
                });
            });
        }
        if let Some(k) = &st.kinfo_mem {
            w.explicit(1, |w| encode_kinfo_fields(w, k));
        }
    });
}

pub(crate) fn encode_data(w: &mut Writer, d: &Data) {
    match d {
        Data::Stats(st) => w.explicit(1, |w| encode_stats(w, st)),
        Data::Console { timestamp, line } => w.explicit(3, |w| {
            w.sequence(|w| {
                timestamp.encode(w);
                w.utf8(line);
            });
        }),
        Data::Block(b) => w.explicit(4, |w| match b {
            BlockData::Chunk(d) => w.explicit(0, |w| w.octets(d)),
            BlockData::End => w.explicit_null(1),
        }),
        Data::Unknown { raw, .. } => w.raw(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_micros_is_checked() {
        let t = |sec, usec| Timeval { sec, usec }.total_micros();
        assert_eq!(t(12, 345_678), Some(12_345_678));
        assert_eq!(t(0, 999_999), Some(999_999));
        assert_eq!(t(0, 1_000_000), None);
        assert_eq!(t(0, -1), None);
        assert_eq!(t(i64::MAX / 1_000_000 + 1, 0), None);
        assert_eq!(t(i64::MAX / 1_000_000, 999_999), None);
        assert_eq!(t(-1, 0), Some(-1_000_000));
    }
}
