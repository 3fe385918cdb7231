//! The top level (protocol §3.2, §2.1): `Wire ::= SEQUENCE { header, payload }` and
//! the certificate extension `SEQUENCE { INTEGER version, WireCommand }`.

use serde::Serialize;
use serde::ser::SerializeMap;

use super::command::{Command, decode_command, encode_command};
use super::der::{self, Reader, Writer};
use super::error::{DecodeError, DecodeErrorKind};
use super::reply::{Success, decode_success, encode_success};
use super::stats::{Data, decode_data, encode_data};
use crate::name::Name;

/// The only protocol version albatross (2.x) accepts, in headers and certificates.
pub const VERSION: i64 = 5;

/// Message header. Sequence numbers are echoed by the daemons; replies over TLS carry
/// sequence 0 and the certificate-derived name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    pub version: i64,
    pub sequence: i64,
    #[serde(serialize_with = "super::json::name")]
    pub name: Name,
}

impl Header {
    /// A version-5 header.
    pub fn new(sequence: i64, name: Name) -> Self {
        Self {
            version: VERSION,
            sequence,
            name,
        }
    }
}

/// `Payload ::= CHOICE { command [0], reply [1], failure [2], data [3] }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Command(Command),
    Success(Success),
    /// Free text, no error codes.
    Failure(String),
    Data(Data),
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        match self {
            Payload::Command(c) => {
                m.serialize_entry("kind", "command")?;
                m.serialize_entry("command", c)?;
            }
            Payload::Success(v) => {
                m.serialize_entry("kind", "success")?;
                m.serialize_entry("success", v)?;
            }
            Payload::Failure(msg) => {
                m.serialize_entry("kind", "failure")?;
                m.serialize_entry("message", msg)?;
            }
            Payload::Data(d) => {
                m.serialize_entry("kind", "data")?;
                m.serialize_entry("data", d)?;
            }
        }
        m.end()
    }
}

/// One `Wire` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub header: Header,
    pub payload: Payload,
}

pub(crate) fn decode_name(r: &mut Reader<'_>, field: &'static str) -> der::Result<Name> {
    let offset = r.offset();
    let bytes = r.utf8_bytes(field)?;
    let text = match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    };
    Name::parse(&text).map_err(|source| {
        r.err(
            offset,
            field,
            DecodeErrorKind::BadName {
                name: text.to_string(),
                source,
            },
        )
    })
}

pub(crate) fn encode_name(w: &mut Writer, n: &Name) {
    w.utf8(n.to_string().as_bytes());
}

fn decode_version(r: &mut Reader<'_>, field: &'static str) -> der::Result<i64> {
    let offset = r.offset();
    let version = r.int(field)?;
    if version != VERSION {
        return Err(r.err(offset, field, DecodeErrorKind::UnsupportedVersion(version)));
    }
    Ok(version)
}

/// Decode one whole frame body (strict DER, no trailing bytes).
pub fn decode(der: &[u8]) -> Result<Message, DecodeError> {
    let mut top = Reader::new(der);
    let mut wire = top.sequence("wire")?;
    let mut h = wire.sequence("header")?;
    let version = decode_version(&mut h, "header.version")?;
    let sequence = h.int64("header.sequence")?;
    let name = decode_name(&mut h, "header.name")?;
    h.finish("header")?;
    let header = Header {
        version,
        sequence,
        name,
    };
    let (tag, tlv) = wire.choice("payload")?;
    let payload = match tag {
        0 => {
            let mut inner = wire.explicit_content(&tlv, "payload.command")?;
            let c = decode_command(&mut inner)?;
            inner.finish("payload.command")?;
            Payload::Command(c)
        }
        1 => {
            let mut inner = wire.explicit_content(&tlv, "payload.success")?;
            let s = decode_success(&mut inner)?;
            inner.finish("payload.success")?;
            Payload::Success(s)
        }
        2 => {
            let mut inner = wire.explicit_content(&tlv, "payload.failure")?;
            let msg = inner.utf8("payload.failure")?;
            inner.finish("payload.failure")?;
            Payload::Failure(msg)
        }
        3 => {
            let mut inner = wire.explicit_content(&tlv, "payload.data")?;
            let d = decode_data(&mut inner)?;
            inner.finish("payload.data")?;
            Payload::Data(d)
        }
        tag => {
            return Err(wire.err(
                tlv.offset,
                "payload",
                DecodeErrorKind::UnknownAlternative {
                    choice: "payload",
                    tag,
                },
            ));
        }
    };
    wire.finish("wire")?;
    top.finish("wire")?;
    Ok(Message { header, payload })
}

/// DER of a whole `Wire` message (no length prefix; see [`super::frame`]).
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut w = Writer::new();
    w.sequence(|w| {
        w.sequence(|w| {
            w.int(msg.header.version);
            w.int64(msg.header.sequence);
            encode_name(w, &msg.header.name);
        });
        match &msg.payload {
            Payload::Command(c) => w.explicit(0, |w| encode_command(w, c)),
            Payload::Success(s) => w.explicit(1, |w| encode_success(w, s)),
            Payload::Failure(m) => w.explicit(2, |w| w.utf8(m.as_bytes())),
            Payload::Data(d) => w.explicit(3, |w| encode_data(w, d)),
        }
    });
    w.into_vec()
}

/// The value of the albatross certificate extension (OID 1.3.6.1.4.1.49836.42):
/// `SEQUENCE { INTEGER 5, command }` — no header, no name, no `[0]` payload tag.
pub fn encode_cert_extension(cmd: &Command) -> Vec<u8> {
    let mut w = Writer::new();
    w.sequence(|w| {
        w.int(VERSION);
        encode_command(w, cmd);
    });
    w.into_vec()
}

/// Decode an albatross certificate extension value. Versions other than 5 are
/// rejected, as albatross does.
pub fn decode_cert_extension(der: &[u8]) -> Result<(i64, Command), DecodeError> {
    let mut top = Reader::new(der);
    let mut s = top.sequence("cert_extension")?;
    let version = decode_version(&mut s, "cert_extension.version")?;
    let cmd = decode_command(&mut s)?;
    s.finish("cert_extension")?;
    top.finish("cert_extension")?;
    Ok((version, cmd))
}
