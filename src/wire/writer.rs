//! DER writing: a small explicit writer (asn1-rs 0.7's derived encoders ignore
//! explicit tags and do not sort SET OF by encoding, so encoding is hand-written).

/// A DER writer. Context tags are all below 31 in this grammar, so every tag is one
/// byte; lengths are written minimally.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

pub(crate) const fn context(n: u8) -> u8 {
    0xa0 | n
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    fn header(&mut self, tag: u8, len: usize) {
        self.buf.push(tag);
        if len < 0x80 {
            self.buf.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = (len.leading_zeros() / 8) as usize;
            let n = bytes.len() - skip;
            self.buf.push(0x80 | n as u8);
            self.buf.extend(bytes.iter().skip(skip));
        }
    }

    /// A constructed value whose content `f` writes; the length is patched in after
    /// (one placeholder byte, widened only for contents of 128 bytes or more).
    pub fn tlv(&mut self, tag: u8, f: impl FnOnce(&mut Writer)) {
        self.buf.push(tag);
        let len_pos = self.buf.len();
        self.buf.push(0);
        f(self);
        let len = self.buf.len() - len_pos - 1;
        if len < 0x80 {
            if let Some(b) = self.buf.get_mut(len_pos) {
                *b = len as u8;
            }
        } else {
            let bytes = len.to_be_bytes();
            let skip = (len.leading_zeros() / 8) as usize;
            let n = bytes.len() - skip;
            if let Some(b) = self.buf.get_mut(len_pos) {
                *b = 0x80 | n as u8;
            }
            self.buf
                .splice(len_pos + 1..len_pos + 1, bytes.iter().skip(skip).copied());
        }
    }

    pub fn primitive(&mut self, tag: u8, content: &[u8]) {
        self.header(tag, content.len());
        self.buf.extend_from_slice(content);
    }

    /// Bytes that are already a complete TLV (e.g. an unknown alternative kept raw).
    pub fn raw(&mut self, tlv: &[u8]) {
        self.buf.extend_from_slice(tlv);
    }

    pub fn sequence(&mut self, f: impl FnOnce(&mut Writer)) {
        self.tlv(0x30, f);
    }

    pub fn explicit(&mut self, n: u8, f: impl FnOnce(&mut Writer)) {
        self.tlv(context(n), f);
    }

    /// `INTEGER`, minimal two's complement.
    pub fn int(&mut self, v: i64) {
        let bytes = v.to_be_bytes();
        let mut start = 0;
        // Drop a leading 00/FF while the next byte still carries the sign.
        while start < 7 {
            let (b, next) = (bytes[start], bytes[start + 1]);
            if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
                start += 1;
            } else {
                break;
            }
        }
        self.primitive(0x02, &bytes[start..]);
    }

    /// `INT64`: 8-byte OCTET STRING.
    pub fn int64(&mut self, v: i64) {
        self.primitive(0x04, &v.to_be_bytes());
    }

    pub fn bool(&mut self, v: bool) {
        self.primitive(0x01, &[if v { 0xff } else { 0x00 }]);
    }

    pub fn null(&mut self) {
        self.primitive(0x05, &[]);
    }

    pub fn octets(&mut self, v: &[u8]) {
        self.primitive(0x04, v);
    }

    pub fn utf8(&mut self, v: &[u8]) {
        self.primitive(0x0c, v);
    }

    pub fn explicit_null(&mut self, n: u8) {
        self.explicit(n, Writer::null);
    }

    pub fn explicit_int(&mut self, n: u8, v: i64) {
        self.explicit(n, |w| w.int(v));
    }

    /// `SET OF`: members sorted by their DER encodings (X.690 11.6).
    pub fn set_of<T>(&mut self, items: &[T], f: impl Fn(&mut Writer, &T)) {
        let mut encoded: Vec<Vec<u8>> = items
            .iter()
            .map(|item| {
                let mut w = Writer::new();
                f(&mut w, item);
                w.into_vec()
            })
            .collect();
        encoded.sort_unstable();
        self.tlv(0x31, |w| {
            for e in &encoded {
                w.raw(e);
            }
        });
    }

    /// `SEQUENCE OF`, in the given order.
    pub fn sequence_of<T>(&mut self, items: &[T], f: impl Fn(&mut Writer, &T)) {
        self.sequence(|w| {
            for item in items {
                f(w, item);
            }
        });
    }
}

/// Sort SET OF members the way the encoder does (by their DER bytes), so decoded
/// sets compare equal to re-encoded ones.
pub(crate) fn der_sort<T>(v: &mut [T], enc: impl Fn(&mut Writer, &T)) {
    v.sort_by_cached_key(|x| {
        let mut w = Writer::new();
        enc(&mut w, x);
        w.into_vec()
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::der::Reader;

    fn int_der(v: i64) -> Vec<u8> {
        let mut w = Writer::new();
        w.int(v);
        w.into_vec()
    }

    #[test]
    fn integers_are_minimal() {
        assert_eq!(int_der(0), [2, 1, 0]);
        assert_eq!(int_der(-1), [2, 1, 0xff]);
        assert_eq!(int_der(127), [2, 1, 0x7f]);
        assert_eq!(int_der(128), [2, 2, 0, 0x80]);
        assert_eq!(int_der(-128), [2, 1, 0x80]);
        assert_eq!(int_der(-129), [2, 2, 0xff, 0x7f]);
        assert_eq!(int_der(i64::MIN), [2, 8, 0x80, 0, 0, 0, 0, 0, 0, 0]);
        for v in [0, 1, -1, 127, 128, 255, 256, -32768, i64::MAX, i64::MIN] {
            let der = int_der(v);
            assert_eq!(Reader::new(&der).int("x").unwrap(), v);
        }
    }

    #[test]
    fn set_of_is_sorted_by_encoding() {
        let mut w = Writer::new();
        w.set_of(&[1i64, -1, 256, 0], |w, v| w.int(*v));
        assert_eq!(
            w.into_vec(),
            [0x31, 13, 2, 1, 0, 2, 1, 1, 2, 1, 0xff, 2, 2, 1, 0]
        );
    }
}
