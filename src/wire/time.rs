//! GeneralizedTime as albatross writes it: UTC, `YYYYMMDDHHMMSSZ`, or
//! `YYYYMMDDHHMMSS.fffZ` (exactly three digits) when there are milliseconds.
//! asn1-rs parses; we write ourselves because asn1-rs 0.7 does not zero-pad
//! milliseconds when encoding.

use std::fmt;

use asn1_rs::{ASN1TimeZone, CheckDerConstraints, GeneralizedTime};
use serde::ser::SerializeStruct;

use super::der::{self, Reader, Writer};
use super::error::{DecodeErrorKind, TagClass};

/// Earliest and latest instants a 4-digit-year GeneralizedTime can hold.
const MIN_UNIX: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
const MAX_UNIX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z

/// A point in time with millisecond precision, as the wire carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time {
    unix_seconds: i64,
    millis: u16,
}

impl Time {
    /// `None` if the instant does not fit a 4-digit year or `millis >= 1000`.
    pub fn new(unix_seconds: i64, millis: u16) -> Option<Self> {
        ((MIN_UNIX..=MAX_UNIX).contains(&unix_seconds) && millis < 1000).then_some(Self {
            unix_seconds,
            millis,
        })
    }

    /// Whole seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> i64 {
        self.unix_seconds
    }

    pub fn millis(&self) -> u16 {
        self.millis
    }

    fn datetime(&self) -> time::OffsetDateTime {
        // In range by construction.
        time::OffsetDateTime::from_unix_timestamp(self.unix_seconds)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }

    /// RFC 3339 text, e.g. `2026-01-02T03:04:05Z` or `...05.120Z`.
    pub fn rfc3339(&self) -> String {
        let d = self.datetime();
        let frac = if self.millis == 0 {
            String::new()
        } else {
            format!(".{:03}", self.millis)
        };
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}Z",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        )
    }

    pub(crate) fn decode(r: &mut Reader<'_>, field: &'static str) -> der::Result<Time> {
        let tlv = r.expect(field, TagClass::Universal, false, der::GENERALIZED_TIME)?;
        let bad = |msg: String| r.err(tlv.offset, field, DecodeErrorKind::BadTime(msg));
        <GeneralizedTime as CheckDerConstraints>::check_constraints(
            &tlv.any(asn1_rs::Tag::GeneralizedTime),
        )
        .map_err(|e| bad(e.to_string()))?;
        let gt = GeneralizedTime::from_bytes(tlv.data).map_err(|e| bad(e.to_string()))?;
        let dt = gt.0;
        if !matches!(dt.tz, ASN1TimeZone::Z) {
            return Err(bad("time zone must be Z".into()));
        }
        let month = time::Month::try_from(dt.month).map_err(|e| bad(e.to_string()))?;
        let year = i32::try_from(dt.year).map_err(|e| bad(e.to_string()))?;
        let date =
            time::Date::from_calendar_date(year, month, dt.day).map_err(|e| bad(e.to_string()))?;
        let t =
            time::Time::from_hms(dt.hour, dt.minute, dt.second).map_err(|e| bad(e.to_string()))?;
        let unix = time::PrimitiveDateTime::new(date, t)
            .assume_utc()
            .unix_timestamp();
        Time::new(unix, dt.millisecond.unwrap_or(0)).ok_or_else(|| bad("out of range".into()))
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        let d = self.datetime();
        let mut s = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        );
        if self.millis != 0 {
            s.push_str(&format!(".{:03}", self.millis));
        }
        s.push('Z');
        w.primitive(0x18, s.as_bytes());
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

impl serde::Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Time", 3)?;
        st.serialize_field("rfc3339", &self.rfc3339())?;
        st.serialize_field("unix_seconds", &self.unix_seconds)?;
        st.serialize_field("millis", &self.millis)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(t: Time) -> Vec<u8> {
        let mut w = Writer::new();
        t.encode(&mut w);
        w.into_vec()
    }

    #[test]
    fn whole_seconds_and_millis() {
        let t = Time::new(1_767_323_045, 0).unwrap(); // 2026-01-02T03:04:05Z
        assert_eq!(&enc(t)[2..], b"20260102030405Z");
        let t = Time::new(1_767_323_045, 5).unwrap();
        let der = enc(t);
        assert_eq!(&der[2..], b"20260102030405.005Z");
        assert_eq!(Time::decode(&mut Reader::new(&der), "t").unwrap(), t);
        assert_eq!(t.rfc3339(), "2026-01-02T03:04:05.005Z");
    }

    #[test]
    fn bounds_and_bad_input() {
        for t in [
            Time::new(MIN_UNIX, 0).unwrap(),
            Time::new(MAX_UNIX, 999).unwrap(),
        ] {
            assert_eq!(Time::decode(&mut Reader::new(&enc(t)), "t").unwrap(), t);
        }
        assert!(Time::new(MAX_UNIX + 1, 0).is_none());
        assert!(Time::new(0, 1000).is_none());
        for s in [
            &b"20260230030405Z"[..],
            b"20260102030405",
            b"20260102030405+0100",
            b"20260102030405.1234Z",
            b"2026010203040xZ",
        ] {
            let mut der = vec![0x18, s.len() as u8];
            der.extend_from_slice(s);
            let e = Time::decode(&mut Reader::new(&der), "t").unwrap_err();
            assert!(matches!(e.kind, DecodeErrorKind::BadTime(_)), "{s:?}");
        }
    }
}
