//! The albatross wire codec (protocol version 5, albatross 2.7): framing and DER.
//!
//! * [`FrameDecoder`] splits a byte stream into frames (sans-IO).
//! * [`decode`] / [`encode`] turn one frame body into a [`Message`] and back, byte
//!   for byte as albatross' own encoder writes it.
//! * [`encode_cert_extension`] / [`decode_cert_extension`] handle the command carried
//!   in the leaf certificate.
//!
//! Decoding uses asn1-rs 0.7 (borrowed `Any` TLVs and its DER-checked primitives)
//! with hand-written CHOICE dispatch on context tags; encoding uses a small explicit
//! DER writer (asn1-rs' derived encoders ignore explicit tags). ASN.1 types never
//! leave this module: the public edge is plain domain types.
//!
//! Covered: the whole current (2.7) grammar of §3 of the protocol notes — every
//! command, success reply, failure and data alternative. Not covered: the old
//! encodings albatross 2.7 still accepts but never emits (create/force-create
//! `[9]/[10]/[16]/[17]`, info `[15]/[18]`, restart arguments `[1]/[2]`, old block
//! add/set/dump `[3]/[4]/[5]`, old info replies `[9]/[11]`): they decode to an
//! `UnknownAlternative` error. Unknown *data* alternatives (2.8 servers) decode to
//! [`Data::Unknown`], kept byte for byte; [`stats_of_unknown`] recognises a 2.8
//! statistics body in one by its structure (rusage, interface list, optional
//! kinfo_mem before or after the list, no vmm), since the new tag is not known.

mod command;
mod config;
mod der;
mod error;
mod frame;
mod image;
mod json;
mod message;
mod reply;
mod stats;
mod time;
mod unknown_stats;
mod writer;

pub use command::{Command, ConsoleStart, StatsTap};
pub use config::{
    BlockSpec, FailBehaviour, Mac, NetSpec, Policy, Typ, UnikernelArguments, UnikernelConfig,
};
pub use error::{DecodeError, DecodeErrorKind, FrameError, ImageError, TagClass, TagInfo};
pub use frame::{DEFAULT_MAX_FRAME, Frame, FrameDecoder, STATS_MAX_FRAME, frame};
pub use image::{compress_image, decompress_image};
pub use message::{
    Header, Message, Payload, VERSION, decode, decode_cert_extension, encode, encode_cert_extension,
};
pub use reply::{
    BlockDevice, BlockInfo, NamedPolicy, NamedUnikernelInfo, NetInfo, Success, UnikernelInfo,
};
pub use stats::{BlockData, Data, IfData, KinfoMem, NoStats, Rusage, StatsData, Timeval};
pub use time::Time;
pub use unknown_stats::{stats_as_unknown, stats_of_unknown};

#[cfg(test)]
mod vectors;
