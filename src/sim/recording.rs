//! Recorded statistics: a framed albatross stats stream as it arrives on the wire,
//! or a JSON Lines recording with explicit timestamps.
//!
//! JSON Lines format, one sample per line (blank lines and `#` comments skipped):
//!
//! ```text
//! {"t_ms": 0,     "vm": "alice:web", "cpu_us": 15550000}
//! {"t_ms": 10000, "vm": "alice:web", "utime_us": 13340000, "stime_us": 3210000, "vcpus": 2}
//! ```
//!
//! `cpu_us` is cumulative utime + stime in microseconds (or give `utime_us` and
//! `stime_us`); `vcpus` is optional.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::core::Timestamp;
use crate::core::time::duration_ms;
use crate::name::Name;
use crate::wire::{self, Frame, FrameDecoder, Payload, Success};

/// One sample of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub t: Timestamp,
    pub vm: Name,
    /// Cumulative utime + stime, microseconds.
    pub cpu_us: u64,
    pub vcpus: Option<u32>,
}

/// Why a recording could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Jsonl {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: frame {index} at byte offset {offset}: {message}")]
    Frame {
        path: PathBuf,
        index: usize,
        offset: u64,
        message: String,
    },
    #[error("{path}: {message}")]
    Stream { path: PathBuf, message: String },
}

/// Options for reading framed streams.
#[derive(Debug, Clone)]
pub struct FramedOptions {
    /// Stats carry no timestamp: the n-th sample of a VM is at `n * interval`.
    pub interval: Duration,
    /// The subscriber's name, to make relative names absolute. If `None`, it is
    /// taken from the stream's leading subscribe reply, else names are used as is.
    pub subscription: Option<Name>,
}

/// Read one file: JSON Lines if it starts with `{` (after blank/comment lines),
/// else a framed albatross stream.
pub fn load(path: &Path, framed: &FramedOptions) -> Result<Vec<Record>, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{') | Some(b'#')) {
        load_jsonl(path, &bytes)
    } else {
        load_framed(path, &bytes, framed)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSample {
    t_ms: u64,
    vm: String,
    cpu_us: Option<u64>,
    utime_us: Option<u64>,
    stime_us: Option<u64>,
    vcpus: Option<u32>,
}

fn load_jsonl(path: &Path, bytes: &[u8]) -> Result<Vec<Record>, LoadError> {
    let err = |line: usize, message: String| LoadError::Jsonl {
        path: path.to_owned(),
        line,
        message,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| LoadError::Stream {
        path: path.to_owned(),
        message: format!("not UTF-8 at byte {}", e.valid_up_to()),
    })?;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let s: JsonSample = serde_json::from_str(raw).map_err(|e| err(line, e.to_string()))?;
        let vm = Name::parse(&s.vm).map_err(|e| err(line, format!("vm {:?}: {e}", s.vm)))?;
        if vm.label.is_none() {
            return Err(err(
                line,
                format!("vm {:?} is a path, not a unikernel", s.vm),
            ));
        }
        let cpu_us = match (s.cpu_us, s.utime_us, s.stime_us) {
            (Some(c), None, None) => c,
            (None, Some(u), Some(st)) => u
                .checked_add(st)
                .ok_or_else(|| err(line, "utime_us + stime_us overflows".into()))?,
            _ => {
                return Err(err(
                    line,
                    "give either cpu_us, or both utime_us and stime_us".into(),
                ));
            }
        };
        if s.vcpus == Some(0) {
            return Err(err(line, "vcpus must be at least 1".into()));
        }
        out.push(Record {
            t: Timestamp::from_millis(s.t_ms),
            vm,
            cpu_us,
            vcpus: s.vcpus,
        });
    }
    Ok(out)
}

fn load_framed(path: &Path, bytes: &[u8], opts: &FramedOptions) -> Result<Vec<Record>, LoadError> {
    let ferr = |index: usize, offset: u64, message: String| LoadError::Frame {
        path: path.to_owned(),
        index,
        offset,
        message,
    };
    let mut dec = FrameDecoder::new(wire::STATS_MAX_FRAME);
    dec.push(bytes);
    let mut subscription = opts.subscription.clone();
    let mut per_vm: std::collections::HashMap<Name, u64> = std::collections::HashMap::new();
    let interval = duration_ms(opts.interval);
    let mut out = Vec::new();
    loop {
        let frame = dec.next_frame().map_err(|e| LoadError::Stream {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let (index, offset, body) = match frame {
            None => break,
            Some(Frame::End { .. }) => return Ok(out),
            Some(Frame::Message {
                index,
                offset,
                body,
            }) => (index, offset, body),
        };
        let msg = wire::decode(&body).map_err(|e| ferr(index, offset, e.to_string()))?;
        match msg.payload {
            Payload::Success(Success::String(_)) if index == 0 => {
                // The subscribe reply's header carries the subscriber's full name.
                subscription.get_or_insert(msg.header.name);
            }
            Payload::Data(data) => {
                // Console lines and the like carry no statistics.
                let Ok(stats) = data.into_stats() else {
                    continue;
                };
                let rel = msg.header.name;
                let vm = match &subscription {
                    Some(sub) => rel.resolve_under(sub),
                    None => rel,
                };
                if vm.label.is_none() {
                    return Err(ferr(
                        index,
                        offset,
                        format!("stats for {vm}, which is not a unikernel"),
                    ));
                }
                let cpu_us = stats.cpu_micros().map_err(|e| ferr(index, offset, e))?;
                let n = per_vm.entry(vm.clone()).or_insert(0);
                let t = Timestamp::from_millis(n.saturating_mul(interval));
                *n += 1;
                out.push(Record {
                    t,
                    vm,
                    cpu_us,
                    vcpus: None,
                });
            }
            Payload::Failure(reason) => {
                // albatross ends a broken subscription with a failure frame: the
                // samples before it stand; a stream with none is an error.
                if out.is_empty() {
                    return Err(ferr(index, offset, format!("the stream failed: {reason}")));
                }
                return Ok(out);
            }
            // Console lines, events, data from newer servers: not statistics.
            _ => {}
        }
    }
    dec.finish().map_err(|e| LoadError::Stream {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok(out)
}
