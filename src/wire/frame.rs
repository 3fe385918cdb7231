//! Framing (sans-IO): a 4-byte big-endian *signed* length, then that many bytes.
//! A length <= 0 is albatross' end-of-stream marker (and the terminator of upload
//! streams). Albatross caps nothing; we refuse lengths above a configured maximum
//! as soon as the prefix is seen, before buffering or allocating the body.

use super::error::FrameError;

/// Default cap: a unikernel image from `get` arrives in a single frame.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024 * 1024;
/// Cap for statistics/console streams: a stats frame is under 1 KiB per interface
/// set; 64 KiB leaves room for many interfaces and vmm counters.
pub const STATS_MAX_FRAME: usize = 64 * 1024;

/// One frame pulled from a [`FrameDecoder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A frame body (`index` counts frames from 0, `offset` is the stream offset
    /// of its length prefix).
    Message {
        index: usize,
        offset: u64,
        body: Vec<u8>,
    },
    /// A length prefix <= 0: the stream ends here.
    End {
        index: usize,
        offset: u64,
        length: i32,
    },
}

/// Push bytes in, pull frames out.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame: usize,
    buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    pos: usize,
    /// Stream offset of `buf[pos]`.
    offset: u64,
    index: usize,
    ended: bool,
}

impl FrameDecoder {
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame,
            buf: Vec::new(),
            pos: 0,
            offset: 0,
            index: 0,
            ended: false,
        }
    }

    /// Append received bytes. Bytes after an end marker are dropped.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.ended {
            return;
        }
        // Compact lazily so consuming many small frames stays linear.
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// `Ok(Some(frame))`, `Ok(None)` when more bytes are needed (or after the end
    /// marker), or an error for a length above the cap (the decoder stays stuck on
    /// that frame: the stream cannot be resynchronised).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.ended {
            return Ok(None);
        }
        let avail = self.buf.get(self.pos..).unwrap_or_default();
        let Some((prefix, rest)) = avail.split_first_chunk::<4>() else {
            return Ok(None);
        };
        let length = i32::from_be_bytes(*prefix);
        if length <= 0 {
            self.ended = true;
            let frame = Frame::End {
                index: self.index,
                offset: self.offset,
                length,
            };
            self.index += 1;
            self.offset += 4;
            self.pos += 4;
            return Ok(Some(frame));
        }
        let len = length.unsigned_abs() as usize;
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                index: self.index,
                offset: self.offset,
                length: len,
                max: self.max_frame,
            });
        }
        let Some(body) = rest.get(..len) else {
            return Ok(None);
        };
        let frame = Frame::Message {
            index: self.index,
            offset: self.offset,
            body: body.to_vec(),
        };
        self.index += 1;
        self.offset += 4 + len as u64;
        self.pos += 4 + len;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        Ok(Some(frame))
    }

    /// Call at EOF: an error if a partial frame is buffered.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.ended {
            return Ok(());
        }
        let avail = self.buf.get(self.pos..).unwrap_or_default();
        match avail.split_first_chunk::<4>() {
            None if avail.is_empty() => Ok(()),
            None => Err(FrameError::TruncatedPrefix {
                index: self.index,
                offset: self.offset,
                available: avail.len(),
            }),
            Some((prefix, rest)) => {
                let length = i32::from_be_bytes(*prefix);
                let len = length.unsigned_abs() as usize;
                if length > 0 && len > self.max_frame {
                    return Err(FrameError::TooLarge {
                        index: self.index,
                        offset: self.offset,
                        length: len,
                        max: self.max_frame,
                    });
                }
                // A complete frame still buffered is not an error of the stream.
                if length <= 0 || rest.len() >= len {
                    return Ok(());
                }
                Err(FrameError::TruncatedBody {
                    index: self.index,
                    offset: self.offset,
                    length: len,
                    available: rest.len(),
                })
            }
        }
    }
}

/// Prefix `der` with its 4-byte big-endian length.
///
/// # Panics
/// If `der` is longer than `i32::MAX` bytes (no albatross peer could read it).
pub fn frame(der: &[u8]) -> Vec<u8> {
    let len = i32::try_from(der.len()).expect("frame body longer than i32::MAX");
    let mut out = Vec::with_capacity(4 + der.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(der);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(index: usize, offset: u64, body: &[u8]) -> Frame {
        Frame::Message {
            index,
            offset,
            body: body.to_vec(),
        }
    }

    #[test]
    fn frames_split_across_pushes() {
        let mut stream = frame(b"abc");
        stream.extend(frame(b"hello"));
        stream.extend([0, 0, 0, 0]);
        let mut d = FrameDecoder::new(16);
        let mut out = Vec::new();
        for b in &stream {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                out.push(f);
            }
        }
        assert_eq!(
            out,
            [
                msg(0, 0, b"abc"),
                msg(1, 7, b"hello"),
                Frame::End {
                    index: 2,
                    offset: 16,
                    length: 0
                }
            ]
        );
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn end_marker_stops_the_stream() {
        let mut d = FrameDecoder::new(16);
        d.push(&[0x80, 0, 0, 0]);
        d.push(&frame(b"ignored"));
        assert_eq!(
            d.next_frame().unwrap(),
            Some(Frame::End {
                index: 0,
                offset: 0,
                length: i32::MIN
            })
        );
        assert_eq!(d.next_frame().unwrap(), None);
        d.push(&frame(b"x"));
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn cap_is_enforced_on_the_prefix_alone() {
        let mut d = FrameDecoder::new(100);
        d.push(&frame(b"ok"));
        d.push(&0x7fff_ffffi32.to_be_bytes());
        assert_eq!(d.next_frame().unwrap(), Some(msg(0, 0, b"ok")));
        let err = FrameError::TooLarge {
            index: 1,
            offset: 6,
            length: 0x7fff_ffff,
            max: 100,
        };
        assert_eq!(d.next_frame(), Err(err.clone()));
        // Nothing beyond the prefix was buffered, and the error sticks.
        assert_eq!(d.buffered(), 4);
        assert_eq!(d.next_frame(), Err(err));
        // Exactly at the cap is fine.
        let mut d = FrameDecoder::new(3);
        d.push(&frame(b"abc"));
        assert_eq!(d.next_frame().unwrap(), Some(msg(0, 0, b"abc")));
    }

    #[test]
    fn truncation_at_eof_names_the_frame() {
        let mut d = FrameDecoder::new(100);
        d.push(&frame(b"first"));
        d.push(&[0, 0, 0, 10, 1, 2, 3]);
        assert!(d.next_frame().unwrap().is_some());
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(
            d.finish(),
            Err(FrameError::TruncatedBody {
                index: 1,
                offset: 9,
                length: 10,
                available: 3
            })
        );
        let mut d = FrameDecoder::new(100);
        d.push(&[0, 0]);
        assert_eq!(
            d.finish(),
            Err(FrameError::TruncatedPrefix {
                index: 0,
                offset: 0,
                available: 2
            })
        );
        assert_eq!(FrameDecoder::new(1).finish(), Ok(()));
    }
}
