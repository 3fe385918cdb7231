//! Statistics under a data tag we do not know (albatross 2.8, protocol doc §3.12).
//!
//! 2.8 made `Stats.t` a triple `(rusage, kinfo_mem option, ifdata list)` under a new
//! `Data` alternative whose tag and exact layout are not in our sources, so
//! [`stats_of_unknown`] recognises a stats body by its structure in the raw TLV of a
//! [`Data::Unknown`](super::Data::Unknown). Accepted:
//!
//! * the alternative: any context tag (one byte or high-tag form), constructed,
//!   holding the body either EXPLICIT (one `SEQUENCE`) or IMPLICIT (the tag replaces
//!   the `SEQUENCE` header);
//! * the body: `RUsage`, then `SEQUENCE OF IfData`, with `kinfo_mem` optional either
//!   before or after the interface list; the 2.7 layout (an optional `vmm-stats [0]`
//!   after the list, then `kinfo-mem [1]`) is accepted too;
//! * `kinfo_mem` as `[n] IMPLICIT` (2.7's way), `[n] EXPLICIT SEQUENCE`, a bare
//!   `SEQUENCE`, or an OCaml option written as a CHOICE whose "none" arm is `[n] NULL`
//!   (explicit or implicit).
//!
//! Anything else, including trailing elements, gives `None`. Built on the strict DER
//! reader, so it never panics.

use super::der::{self, Reader};
use super::error::TagClass;
use super::stats::{
    KinfoMem, StatsData, decode_ifdata, decode_kinfo_fields, decode_rusage, decode_vmm,
};
use super::writer::Writer;

/// The statistics carried by an unknown data alternative (`raw` = its complete TLV,
/// as in [`Data::Unknown`](super::Data::Unknown)), if its body has the shape of a
/// stats body (module docs). `vmm` is only ever set for the 2.7 layout.
pub fn stats_of_unknown(raw: &[u8]) -> Option<StatsData> {
    let mut top = Reader::new(raw);
    let tlv = top.any("data").ok()?;
    top.finish("data").ok()?;
    if tlv.class != TagClass::Context || !tlv.constructed {
        return None;
    }
    let content = top.inner(&tlv);
    // IMPLICIT first: an EXPLICIT body starts with a SEQUENCE of SEQUENCEs, which a
    // RUsage (SEQUENCE of Timeval, then INT64s) never matches, so the order is safe.
    body(content).or_else(|| {
        let mut r = content;
        let s = r.sequence("stats").ok()?;
        r.finish("stats").ok()?;
        body(s)
    })
}

fn body(mut s: Reader<'_>) -> Option<StatsData> {
    let rusage = decode_rusage(&mut s).ok()?;
    let before = kinfo(&mut s);
    let ifdata = s.sequence("stats.ifdata").ok()?.many(decode_ifdata).ok()?;
    // 2.7 puts `vmm [0]` between the list and kinfo; 2.8 has no vmm.
    let (vmm, after) = if before.is_some() {
        (None, None)
    } else if let Some(k) = kinfo(&mut s) {
        (None, Some(k))
    } else {
        (vmm(&mut s), kinfo(&mut s))
    };
    s.finish("stats").ok()?;
    Some(StatsData {
        rusage,
        ifdata,
        vmm,
        kinfo_mem: before.or(after).flatten(),
    })
}

/// An optional `vmm-stats [0]` (2.7), consumed only if it decodes.
fn vmm(s: &mut Reader<'_>) -> Option<Vec<(String, i64)>> {
    let mut r = *s;
    let v = r.opt_explicit(0, "stats.vmm", decode_vmm).ok()??;
    *s = r;
    Some(v)
}

/// A `kinfo_mem` element in one of the accepted encodings, consumed only if it
/// matches: `Some(Some(_))` present, `Some(None)` an explicit "none", `None` no match.
fn kinfo(s: &mut Reader<'_>) -> Option<Option<KinfoMem>> {
    let mut r = *s;
    let tlv = r.any("stats.kinfo_mem").ok()?;
    let inner = r.inner(&tlv);
    let found = match (tlv.class, tlv.constructed) {
        (TagClass::Context, false) if tlv.data.is_empty() => Some(None),
        (TagClass::Context, true) => fields(inner)
            .or_else(|| in_sequence(inner))
            .map(Some)
            .or_else(|| is_null(inner).then_some(None)),
        (TagClass::Universal, true) if tlv.number == der::SEQUENCE => fields(inner).map(Some),
        _ => None,
    }?;
    *s = r;
    Some(found)
}

/// KinfoMem's fields filling the whole reader.
fn fields(mut r: Reader<'_>) -> Option<KinfoMem> {
    let k = decode_kinfo_fields(&mut r).ok()?;
    r.finish("stats.kinfo_mem").ok()?;
    Some(k)
}

/// One `SEQUENCE` of KinfoMem's fields filling the whole reader.
fn in_sequence(mut r: Reader<'_>) -> Option<KinfoMem> {
    let s = r.sequence("stats.kinfo_mem").ok()?;
    r.finish("stats.kinfo_mem").ok()?;
    fields(s)
}

fn is_null(mut r: Reader<'_>) -> bool {
    r.null("stats.kinfo_mem").is_ok() && r.is_empty()
}

#[cfg(test)]
mod tests;

/// A statistics sample under data tag `tag` in the layout 2.8 most plausibly
/// uses (`[tag] SEQUENCE { rusage, [1] kinfo_mem OPTIONAL, ifdata list }`, no vmm):
/// what the test endpoint sends when it plays a newer albatross.
pub fn stats_as_unknown(tag: u8, st: &StatsData) -> super::Data {
    let mut w = Writer::new();
    w.explicit(tag, |w| {
        w.sequence(|w| {
            super::stats::encode_rusage(w, &st.rusage);
            if let Some(k) = &st.kinfo_mem {
                w.explicit(1, |w| super::stats::encode_kinfo_fields(w, k));
            }
            super::stats::encode_ifdata_list(w, &st.ifdata);
        });
    });
    super::Data::Unknown {
        tag: u32::from(tag),
        raw: w.into_vec(),
    }
}
