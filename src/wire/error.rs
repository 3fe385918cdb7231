//! Error types of the codec. Every error says *what* went wrong and *where*: the byte
//! offset inside the decoded buffer (frame body or certificate extension) and the
//! grammar field being read; frame errors name the frame index and stream offset.

use std::fmt;

use crate::name::NameError;

/// Class of an ASN.1 tag, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagClass {
    Universal,
    Application,
    Context,
    Private,
}

/// A tag as seen on the wire (class, constructed bit, number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagInfo {
    pub class: TagClass,
    pub constructed: bool,
    pub number: u32,
}

impl fmt::Display for TagInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let form = if self.constructed {
            "constructed"
        } else {
            "primitive"
        };
        if self.number == u32::MAX {
            // What `Reader::peek` reports for a multi-byte (high) tag number.
            return write!(f, "{:?} high tag number ({form})", self.class);
        }
        match self.class {
            TagClass::Context => write!(f, "[{}] ({form})", self.number),
            TagClass::Universal => {
                let name = match self.number {
                    1 => "BOOLEAN",
                    2 => "INTEGER",
                    4 => "OCTET STRING",
                    5 => "NULL",
                    12 => "UTF8String",
                    16 => "SEQUENCE",
                    17 => "SET",
                    24 => "GeneralizedTime",
                    _ => "UNIVERSAL",
                };
                write!(f, "{name} (universal {}, {form})", self.number)
            }
            TagClass::Application => write!(f, "[APPLICATION {}] ({form})", self.number),
            TagClass::Private => write!(f, "[PRIVATE {}] ({form})", self.number),
        }
    }
}

/// Why a DER value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    #[error("input ends inside a value (a length runs past the end)")]
    Truncated,
    #[error("a required element is missing")]
    Missing,
    #[error("indefinite length (BER, not DER)")]
    IndefiniteLength,
    #[error("length or tag not minimally encoded (not DER)")]
    NonMinimalEncoding,
    #[error("malformed DER: {0}")]
    Malformed(String),
    #[error("expected {expected}, found {found}")]
    UnexpectedTag { expected: TagInfo, found: TagInfo },
    #[error("{count} trailing byte(s) after the value")]
    TrailingBytes { count: usize },
    #[error("unsupported protocol version {0} (only 5 is supported)")]
    UnsupportedVersion(i64),
    #[error("int64 OCTET STRING has {0} bytes, expected exactly 8")]
    BadInt64Length(usize),
    #[error("MAC address has {0} bytes, expected exactly 6")]
    BadMacLength(usize),
    #[error("invalid INTEGER: {0}")]
    BadInteger(String),
    #[error("invalid BOOLEAN: {0}")]
    BadBoolean(String),
    #[error("NULL with {0} content byte(s)")]
    BadNull(usize),
    #[error("invalid GeneralizedTime: {0}")]
    BadTime(String),
    #[error("invalid name {name:?}: {source}")]
    BadName { name: String, source: NameError },
    #[error("unknown {choice} alternative [{tag}]")]
    UnknownAlternative { choice: &'static str, tag: u32 },
    #[error("{0} was removed from albatross and is rejected by it")]
    Removed(&'static str),
}

/// A DER decoding error: what (`kind`), in which grammar field, at which byte offset
/// of the decoded buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Offset of the offending element inside the buffer given to the decoder.
    pub offset: usize,
    /// Grammar field being decoded, e.g. `header.sequence` or `stats.rusage.maxrss`.
    pub field: &'static str,
    pub kind: DecodeErrorKind,
}

/// A framing error. Offsets are stream offsets of the frame's length prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame {index} at byte {offset}: length {length} exceeds the maximum of {max} bytes")]
    TooLarge {
        index: usize,
        offset: u64,
        length: usize,
        max: usize,
    },
    #[error(
        "frame {index} at byte {offset} is cut: only {available} of the 4 length-prefix bytes arrived"
    )]
    TruncatedPrefix {
        index: usize,
        offset: u64,
        available: usize,
    },
    #[error(
        "frame {index} at byte {offset} is cut: the prefix promises {length} bytes, only {available} arrived"
    )]
    TruncatedBody {
        index: usize,
        offset: u64,
        length: usize,
        available: usize,
    },
}

/// Zlib image (de)compression error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("decompressed image exceeds the limit of {max} bytes")]
    TooLarge { max: usize },
    #[error("invalid zlib data: {0}")]
    Corrupt(String),
}
