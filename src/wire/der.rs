//! DER reading: a borrowed cursor over TLVs, with asn1-rs' DER-checked conversions for
//! INTEGER, BOOLEAN and GeneralizedTime (and its generic parser for high tag numbers).
//! The writer lives in `writer.rs`.
//!
//! The reader is strict where albatross is strict (definite, minimal lengths; minimal
//! INTEGERs; no trailing bytes inside any constructed value) and adds the checks
//! asn1-rs 0.7 leaves to the caller: `from_der` returns the remainder without
//! complaint and does not check that long-form lengths are minimal.

use asn1_rs::{Any, CheckDerConstraints, Class, FromDer, Header, Length, Tag};

use super::error::{DecodeError, DecodeErrorKind, TagClass, TagInfo};
pub(crate) use super::writer::{Writer, der_sort};

pub(crate) const INTEGER: u32 = 2;
pub(crate) const BOOLEAN: u32 = 1;
pub(crate) const OCTET_STRING: u32 = 4;
pub(crate) const NULL: u32 = 5;
pub(crate) const UTF8_STRING: u32 = 12;
pub(crate) const SEQUENCE: u32 = 16;
pub(crate) const SET: u32 = 17;
pub(crate) const GENERALIZED_TIME: u32 = 24;

pub(crate) type Error = DecodeError;
pub(crate) type Result<T> = std::result::Result<T, DecodeError>;

fn class_of(c: Class) -> TagClass {
    match c {
        Class::Universal => TagClass::Universal,
        Class::Application => TagClass::Application,
        Class::ContextSpecific => TagClass::Context,
        Class::Private => TagClass::Private,
    }
}

/// One decoded tag-length-value, borrowed from the input.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub class: TagClass,
    pub constructed: bool,
    pub number: u32,
    /// The content octets.
    pub data: &'a [u8],
    /// The whole TLV (header and content).
    pub raw: &'a [u8],
    /// Offset of the TLV in the reader's base buffer.
    pub offset: usize,
}

impl<'a> Tlv<'a> {
    pub fn info(&self) -> TagInfo {
        TagInfo {
            class: self.class,
            constructed: self.constructed,
            number: self.number,
        }
    }

    /// The asn1-rs view of a universal primitive, for its DER-checked conversions.
    pub fn any(&self, tag: Tag) -> Any<'a> {
        Any::new(
            Header::new(
                Class::Universal,
                false,
                tag,
                Length::Definite(self.data.len()),
            ),
            self.data,
        )
    }
}

/// A cursor over a sequence of TLVs. `base` is the whole decoded buffer, kept only
/// to report offsets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    base: &'a [u8],
    rest: &'a [u8],
}

/// Number of bytes a minimal DER length field takes for `len`.
fn der_len_size(len: usize) -> usize {
    if len < 0x80 {
        1
    } else {
        1 + (usize::BITS as usize / 8 - (len.leading_zeros() as usize / 8))
    }
}

impl<'a> Reader<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        Self {
            base: input,
            rest: input,
        }
    }

    /// Reader over the content of `tlv`, reporting offsets in the same base buffer.
    pub fn inner(&self, tlv: &Tlv<'a>) -> Reader<'a> {
        Reader {
            base: self.base,
            rest: tlv.data,
        }
    }

    fn offset_of(&self, s: &[u8]) -> usize {
        (s.as_ptr() as usize).wrapping_sub(self.base.as_ptr() as usize)
    }

    pub fn offset(&self) -> usize {
        self.offset_of(self.rest)
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub fn err(&self, offset: usize, field: &'static str, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            offset,
            field,
            kind,
        }
    }

    /// The tag of the next element (class, constructed, number), if any, without
    /// consuming it. Used for OPTIONAL elements and CHOICE dispatch.
    pub fn peek(&self) -> Option<TagInfo> {
        let first = *self.rest.first()?;
        let class = match first >> 6 {
            0 => TagClass::Universal,
            1 => TagClass::Application,
            2 => TagClass::Context,
            _ => TagClass::Private,
        };
        let constructed = first & 0x20 != 0;
        let number = u32::from(first & 0x1f);
        if number == 0x1f {
            // High tag numbers never match an optional field of this grammar.
            return Some(TagInfo {
                class,
                constructed,
                number: u32::MAX,
            });
        }
        Some(TagInfo {
            class,
            constructed,
            number,
        })
    }

    /// Is the next element the context tag `[n]` (constructed, i.e. EXPLICIT or an
    /// IMPLICIT SEQUENCE)?
    pub fn next_is_context(&self, n: u32) -> bool {
        self.peek()
            .is_some_and(|t| t.class == TagClass::Context && t.constructed && t.number == n)
    }

    /// Is the next element the universal primitive tag `n` (OPTIONAL primitives)?
    pub fn next_is_universal(&self, n: u32) -> bool {
        self.peek()
            .is_some_and(|t| t.class == TagClass::Universal && !t.constructed && t.number == n)
    }

    /// Read the next TLV, whatever its tag. Single-byte tags (all of this grammar)
    /// take a hand-written strict path: asn1-rs' generic header parser cost about
    /// 45x a byte-sum per stats frame. High tag numbers go through asn1-rs.
    pub fn any(&mut self, field: &'static str) -> Result<Tlv<'a>> {
        let Some(info) = self.peek() else {
            return Err(self.err(self.offset(), field, DecodeErrorKind::Missing));
        };
        self.any_with(info, field)
    }

    /// `any` once the tag has been peeked.
    fn any_with(&mut self, info: TagInfo, field: &'static str) -> Result<Tlv<'a>> {
        let offset = self.offset();
        let input = self.rest;
        if info.number == u32::MAX {
            return self.any_high_tag(field);
        }
        let truncated = || self.err(offset, field, DecodeErrorKind::Truncated);
        let after_tag = input.get(1..).unwrap_or_default();
        let Some((&l0, mut after)) = after_tag.split_first() else {
            return Err(truncated());
        };
        let len = if l0 < 0x80 {
            usize::from(l0)
        } else if l0 == 0x80 {
            return Err(self.err(offset, field, DecodeErrorKind::IndefiniteLength));
        } else {
            let n = usize::from(l0 & 0x7f);
            if n > std::mem::size_of::<usize>() {
                return Err(self.err(
                    offset,
                    field,
                    DecodeErrorKind::Malformed(format!("{n}-byte length field")),
                ));
            }
            let Some((bytes, rest)) = after.split_at_checked(n) else {
                return Err(truncated());
            };
            after = rest;
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            // DER: long form only from 128 on, and without leading zero octets.
            if der_len_size(len) != 1 + n {
                return Err(self.err(offset, field, DecodeErrorKind::NonMinimalEncoding));
            }
            len
        };
        let Some((data, rest)) = after.split_at_checked(len) else {
            return Err(truncated());
        };
        let raw = input.get(..input.len() - rest.len()).unwrap_or_default();
        self.rest = rest;
        Ok(Tlv {
            class: info.class,
            constructed: info.constructed,
            number: info.number,
            data,
            raw,
            offset,
        })
    }

    /// A TLV with a multi-byte tag, parsed by asn1-rs (only unknown alternatives of
    /// newer servers can look like this).
    fn any_high_tag(&mut self, field: &'static str) -> Result<Tlv<'a>> {
        let offset = self.offset();
        let (rem, any) = Any::from_der(self.rest).map_err(|e| {
            let kind = match e {
                nom::Err::Incomplete(_) => DecodeErrorKind::Truncated,
                nom::Err::Error(e) | nom::Err::Failure(e) => match e {
                    asn1_rs::Error::DerConstraintFailed(
                        asn1_rs::DerConstraint::IndefiniteLength,
                    )
                    | asn1_rs::Error::IndefiniteLengthUnexpected => {
                        DecodeErrorKind::IndefiniteLength
                    }
                    asn1_rs::Error::Incomplete(_) => DecodeErrorKind::Truncated,
                    other => DecodeErrorKind::Malformed(other.to_string()),
                },
            };
            self.err(offset, field, kind)
        })?;
        let total = self.rest.len() - rem.len();
        let raw = self.rest.get(..total).unwrap_or_default();
        // asn1-rs does not check that long-form lengths are minimal, nor that the
        // high-tag form is only used for numbers >= 31; DER requires both.
        let tag_len = any.header.raw_tag().map_or(1, <[u8]>::len);
        let header_len = total - any.data.len();
        if any.header.tag().0 < 0x1f || header_len != tag_len + der_len_size(any.data.len()) {
            return Err(self.err(offset, field, DecodeErrorKind::NonMinimalEncoding));
        }
        self.rest = rem;
        Ok(Tlv {
            class: class_of(any.header.class()),
            constructed: any.header.is_constructed(),
            number: any.header.tag().0,
            data: any.data,
            raw,
            offset,
        })
    }

    /// Read the next TLV and require a given tag.
    pub fn expect(
        &mut self,
        field: &'static str,
        class: TagClass,
        constructed: bool,
        number: u32,
    ) -> Result<Tlv<'a>> {
        let expected = TagInfo {
            class,
            constructed,
            number,
        };
        // Check the tag before the length, so "not a SEQUENCE" is reported as such
        // even when the bogus length runs past the end.
        match self.peek() {
            None => Err(self.err(self.offset(), field, DecodeErrorKind::Missing)),
            Some(found) if found != expected => Err(self.err(
                self.offset(),
                field,
                DecodeErrorKind::UnexpectedTag { expected, found },
            )),
            Some(found) => self.any_with(found, field),
        }
    }

    /// Require that nothing is left (end of a constructed value or of the input).
    pub fn finish(&self, field: &'static str) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.err(
                self.offset(),
                field,
                DecodeErrorKind::TrailingBytes {
                    count: self.rest.len(),
                },
            ))
        }
    }

    /// `SEQUENCE`: returns a reader over its content.
    pub fn sequence(&mut self, field: &'static str) -> Result<Reader<'a>> {
        let tlv = self.expect(field, TagClass::Universal, true, SEQUENCE)?;
        Ok(self.inner(&tlv))
    }

    /// `SET` (of): returns a reader over its content. Members are accepted in any
    /// order, as albatross does.
    pub fn set(&mut self, field: &'static str) -> Result<Reader<'a>> {
        let tlv = self.expect(field, TagClass::Universal, true, SET)?;
        Ok(self.inner(&tlv))
    }

    /// `[n] EXPLICIT X`: returns a reader positioned on X; the caller reads X and
    /// calls `finish` on it.
    pub fn explicit(&mut self, n: u32, field: &'static str) -> Result<Reader<'a>> {
        let tlv = self.expect(field, TagClass::Context, true, n)?;
        Ok(self.inner(&tlv))
    }

    /// A CHOICE of context tags: returns (tag number, the alternative's TLV).
    pub fn choice(&mut self, field: &'static str) -> Result<(u32, Tlv<'a>)> {
        let tlv = self.any(field)?;
        let info = tlv.info();
        if info.class != TagClass::Context {
            return Err(self.err(
                tlv.offset,
                field,
                DecodeErrorKind::UnexpectedTag {
                    expected: TagInfo {
                        class: TagClass::Context,
                        constructed: true,
                        number: 0,
                    },
                    found: info,
                },
            ));
        }
        Ok((info.number, tlv))
    }

    /// The content of an EXPLICIT alternative returned by `choice`; rejects a
    /// primitive encoding.
    pub fn explicit_content(&self, tlv: &Tlv<'a>, field: &'static str) -> Result<Reader<'a>> {
        if !tlv.constructed {
            let info = tlv.info();
            return Err(self.err(
                tlv.offset,
                field,
                DecodeErrorKind::UnexpectedTag {
                    expected: TagInfo {
                        constructed: true,
                        ..info
                    },
                    found: info,
                },
            ));
        }
        Ok(self.inner(tlv))
    }

    /// `INT`: INTEGER into i64 (minimal encoding enforced by asn1-rs).
    pub fn int(&mut self, field: &'static str) -> Result<i64> {
        // Fast path for the common case, a short-form INTEGER of 1..=8 minimal bytes
        // (asn1-rs' generic conversion was ~12 % of decoding a stats frame). Anything
        // else, including every error, goes through asn1-rs below.
        if let Some((&[0x02, len], rest)) = self.rest.split_first_chunk::<2>()
            && (1..=8).contains(&len)
            && let Some(d) = rest.get(..usize::from(len))
            && (d.len() == 1 || !matches!((d[0], d[1] & 0x80), (0x00, 0) | (0xff, 0x80)))
        {
            let fill = if d[0] & 0x80 != 0 { 0xff } else { 0x00 };
            let mut b = [fill; 8];
            b[8 - d.len()..].copy_from_slice(d);
            self.rest = &rest[d.len()..];
            return Ok(i64::from_be_bytes(b));
        }
        let tlv = self.expect(field, TagClass::Universal, false, INTEGER)?;
        let any = tlv.any(Tag::Integer);
        let conv = <i64 as CheckDerConstraints>::check_constraints(&any)
            .and_then(|()| i64::try_from(&any));
        conv.map_err(|e| {
            self.err(
                tlv.offset,
                field,
                DecodeErrorKind::BadInteger(e.to_string()),
            )
        })
    }

    /// `INT64`: an OCTET STRING of exactly 8 bytes, big-endian two's complement.
    pub fn int64(&mut self, field: &'static str) -> Result<i64> {
        // Fast path: `04 08` + 8 bytes is the only valid encoding, and stats frames
        // are mostly these.
        if let Some((&[0x04, 0x08], rest)) = self.rest.split_first_chunk::<2>()
            && let Some((bytes, rest)) = rest.split_first_chunk::<8>()
        {
            self.rest = rest;
            return Ok(i64::from_be_bytes(*bytes));
        }
        let tlv = self.expect(field, TagClass::Universal, false, OCTET_STRING)?;
        let bytes: [u8; 8] = tlv.data.try_into().map_err(|_| {
            self.err(
                tlv.offset,
                field,
                DecodeErrorKind::BadInt64Length(tlv.data.len()),
            )
        })?;
        Ok(i64::from_be_bytes(bytes))
    }

    pub fn bool(&mut self, field: &'static str) -> Result<bool> {
        let tlv = self.expect(field, TagClass::Universal, false, BOOLEAN)?;
        // asn1-rs 0.7.2 indexes the first content byte unchecked (a `01 00` BOOLEAN
        // panics in `check_constraints`; found by fuzzing): check the length first.
        if tlv.data.len() != 1 {
            return Err(self.err(
                tlv.offset,
                field,
                DecodeErrorKind::BadBoolean(format!("{} content bytes", tlv.data.len())),
            ));
        }
        let any = tlv.any(Tag::Boolean);
        <bool as CheckDerConstraints>::check_constraints(&any)
            .and_then(|()| bool::try_from(&any))
            .map_err(|e| {
                self.err(
                    tlv.offset,
                    field,
                    DecodeErrorKind::BadBoolean(e.to_string()),
                )
            })
    }

    pub fn null(&mut self, field: &'static str) -> Result<()> {
        let tlv = self.expect(field, TagClass::Universal, false, NULL)?;
        if tlv.data.is_empty() {
            Ok(())
        } else {
            Err(self.err(tlv.offset, field, DecodeErrorKind::BadNull(tlv.data.len())))
        }
    }

    pub fn octets(&mut self, field: &'static str) -> Result<&'a [u8]> {
        Ok(self
            .expect(field, TagClass::Universal, false, OCTET_STRING)?
            .data)
    }

    /// UTF8String content as raw bytes: albatross does not validate UTF-8.
    pub fn utf8_bytes(&mut self, field: &'static str) -> Result<&'a [u8]> {
        Ok(self
            .expect(field, TagClass::Universal, false, UTF8_STRING)?
            .data)
    }

    /// UTF8String as text; invalid UTF-8 is replaced (U+FFFD) rather than failing
    /// the whole message, since albatross itself never validates it.
    pub fn utf8(&mut self, field: &'static str) -> Result<String> {
        let bytes = self.utf8_bytes(field)?;
        // `from_utf8` is much faster than the lossy path on the (usual) valid input.
        Ok(match std::str::from_utf8(bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
        })
    }

    /// `[n] EXPLICIT NULL` etc. helpers for the many tagged NULL alternatives.
    pub fn explicit_null(&self, tlv: &Tlv<'a>, field: &'static str) -> Result<()> {
        let mut r = self.explicit_content(tlv, field)?;
        r.null(field)?;
        r.finish(field)
    }

    pub fn explicit_int(&self, tlv: &Tlv<'a>, field: &'static str) -> Result<i64> {
        let mut r = self.explicit_content(tlv, field)?;
        let v = r.int(field)?;
        r.finish(field)?;
        Ok(v)
    }

    pub fn explicit_bool(&self, tlv: &Tlv<'a>, field: &'static str) -> Result<bool> {
        let mut r = self.explicit_content(tlv, field)?;
        let v = r.bool(field)?;
        r.finish(field)?;
        Ok(v)
    }

    /// Optional `[n] EXPLICIT X` read with `f`; absent when the next tag differs.
    pub fn opt_explicit<T>(
        &mut self,
        n: u32,
        field: &'static str,
        f: impl FnOnce(&mut Reader<'a>) -> Result<T>,
    ) -> Result<Option<T>> {
        if !self.next_is_context(n) {
            return Ok(None);
        }
        let mut r = self.explicit(n, field)?;
        let v = f(&mut r)?;
        r.finish(field)?;
        Ok(Some(v))
    }

    /// Read all elements until the end with `f` (content of SEQUENCE OF / SET OF).
    pub fn many<T>(mut self, mut f: impl FnMut(&mut Reader<'a>) -> Result<T>) -> Result<Vec<T>> {
        let mut out = Vec::new();
        while !self.is_empty() {
            out.push(f(&mut self)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lengths_are_minimal_and_checked() {
        let mut w = Writer::new();
        w.octets(&[7; 300]);
        let der = w.into_vec();
        assert_eq!(&der[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(Reader::new(&der).octets("x").unwrap().len(), 300);
        let mut w = Writer::new();
        w.sequence(|w| w.octets(&[1; 200]));
        let der = w.into_vec();
        assert_eq!(&der[..3], &[0x30, 0x81, 203]);
        // `04 81 01 00`: long form for a short length is not DER.
        let err = Reader::new(&[0x04, 0x81, 0x01, 0x00])
            .octets("x")
            .unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::NonMinimalEncoding);
    }

    #[test]
    fn empty_boolean_is_an_error_not_a_panic() {
        // Fuzzer find: asn1-rs' BOOLEAN DER check indexes data[0].
        for der in [
            &[0x01, 0x00][..],
            &[0x01, 0x02, 0xff, 0xff],
            &[0x01, 0x01, 0x01],
        ] {
            let e = Reader::new(der).bool("b").unwrap_err();
            assert!(matches!(e.kind, DecodeErrorKind::BadBoolean(_)), "{der:?}");
        }
        assert!(Reader::new(&[0x01, 0x01, 0xff]).bool("b").unwrap());
        assert!(!Reader::new(&[0x01, 0x01, 0x00]).bool("b").unwrap());
    }

    #[test]
    fn integer_fast_path_agrees_with_asn1_rs() {
        let edge = [0, 1, -1, 127, 128, -128, -129, 255, 256, 65_535, -65_536];
        let wide = [i64::MIN, i64::MAX, i64::MIN + 1, 1 << 55, -(1 << 55) - 1];
        for v in edge.into_iter().chain(wide) {
            let mut w = Writer::new();
            w.int(v);
            let der = w.into_vec();
            assert_eq!(Reader::new(&der).int("x").unwrap(), v, "{der:02x?}");
            let any = asn1_rs::Any::from_der(&der).unwrap().1;
            assert_eq!(i64::try_from(&any).unwrap(), v);
        }
        // Non-minimal forms still fail, through the slow path.
        for der in [&[2, 2, 0, 5][..], &[2, 2, 0xff, 0x80]] {
            let e = Reader::new(der).int("x").unwrap_err();
            assert!(matches!(e.kind, DecodeErrorKind::BadInteger(_)), "{der:?}");
        }
    }

    #[test]
    fn reader_rejects_what_albatross_rejects() {
        let k = |bytes: &[u8]| Reader::new(bytes).int("x").unwrap_err().kind;
        assert!(matches!(k(&[2, 2, 0, 5]), DecodeErrorKind::BadInteger(_)));
        assert_eq!(k(&[2, 5, 0]), DecodeErrorKind::Truncated);
        assert_eq!(k(&[]), DecodeErrorKind::Missing);
        assert!(matches!(
            k(&[4, 1, 0]),
            DecodeErrorKind::UnexpectedTag { .. }
        ));
        assert_eq!(
            Reader::new(&[0x30, 0x80, 0, 0])
                .sequence("x")
                .unwrap_err()
                .kind,
            DecodeErrorKind::IndefiniteLength
        );
        assert_eq!(
            Reader::new(&[4, 7, 0, 0, 0, 0, 0, 0, 0])
                .int64("x")
                .unwrap_err()
                .kind,
            DecodeErrorKind::BadInt64Length(7)
        );
    }
}
