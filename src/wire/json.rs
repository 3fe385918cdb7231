//! serde helpers for the JSON view of decoded messages (`decode` subcommand):
//! names as `{"string","path","label"}` like the fixture sidecars, byte strings as
//! hex, images as length + SHA-256 (+ hex when small).

use serde::Serializer;
use serde::ser::{SerializeMap, SerializeSeq};

use crate::name::Name;

/// Images up to this size are also printed in hex.
const IMAGE_HEX_LIMIT: usize = 4096;

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex_string(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

pub(crate) fn hex_string(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

pub(crate) struct NameJson<'a>(pub &'a Name);

impl serde::Serialize for NameJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("string", &self.0.to_string())?;
        m.serialize_entry("path", &self.0.path)?;
        m.serialize_entry("label", &self.0.label)?;
        m.end()
    }
}

pub(crate) fn name<S: Serializer>(n: &Name, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_some(&NameJson(n))
}

pub(crate) fn names<S: Serializer>(ns: &[Name], s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(ns.len()))?;
    for n in ns {
        seq.serialize_element(&NameJson(n))?;
    }
    seq.end()
}

pub(crate) fn hex<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex_string(b))
}

pub(crate) fn image<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(None)?;
    m.serialize_entry("len", &b.len())?;
    m.serialize_entry("sha256", &sha256_hex(b))?;
    if b.len() <= IMAGE_HEX_LIMIT {
        m.serialize_entry("hex", &hex_string(b))?;
    }
    m.end()
}

/// Text that is usually UTF-8 (console lines): a string when valid, else hex.
pub(crate) fn lenient_text<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    match std::str::from_utf8(b) {
        Ok(t) => s.serialize_str(t),
        Err(_) => {
            let mut m = s.serialize_map(Some(1))?;
            m.serialize_entry("invalid_utf8_hex", &hex_string(b))?;
            m.end()
        }
    }
}

pub(crate) fn key_values<S: Serializer>(
    v: &Option<Vec<(String, i64)>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(serde::Serialize)]
    struct Kv<'a> {
        key: &'a str,
        value: i64,
    }
    match v {
        None => s.serialize_none(),
        Some(v) => {
            let mut seq = s.serialize_seq(Some(v.len()))?;
            for (key, value) in v {
                seq.serialize_element(&Kv { key, value: *value })?;
            }
            seq.end()
        }
    }
}
