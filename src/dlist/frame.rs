//! [`Framer`]: finds command boundaries in a byte stream, within size limits.
//!
//! A command is one logical line. It continues past a physical line end when that
//! line ends with a literal announcement, `{n}`, `{n+}` or a file literal
//! `%{partition guid n}`: the next `n` bytes are raw and the line goes on after
//! them. The framer looks only at line ends, never at the grammar, so it stays
//! in sync on any input it accepts.

use bytes::{Bytes, BytesMut};

/// Bounds on what one command may hold. A command that exceeds one is an error
/// the connection cannot recover from (the stream is no longer framed), so the
/// caller answers `BAD` and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest physical line, not counting literal bytes.
    pub line_bytes_max: usize,
    /// Largest single literal or file literal.
    pub literal_bytes_max: u64,
    /// Largest whole command, literals included.
    pub command_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // The 3.6.1 client's own word limit is 128 KiB; a line of a few
            // thousand records is well under this.
            line_bytes_max: 16 << 20,
            literal_bytes_max: 512 << 20,
            // One APPLY MESSAGE carries up to 1024 bodies.
            command_bytes_max: 1 << 30,
        }
    }
}

/// Why framing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A physical line grew past [`Limits::line_bytes_max`] without an end.
    #[error("line longer than {limit} bytes")]
    LineTooLong {
        /// The limit that was hit.
        limit: usize,
    },
    /// A literal announced more bytes than [`Limits::literal_bytes_max`].
    #[error("literal of {announced} bytes is larger than the limit of {limit} bytes")]
    LiteralTooLarge {
        /// What the peer announced (saturated at `u64::MAX`).
        announced: u64,
        /// The limit that was hit.
        limit: u64,
    },
    /// The command grew past [`Limits::command_bytes_max`].
    #[error("command longer than {limit} bytes")]
    CommandTooLong {
        /// The limit that was hit.
        limit: usize,
    },
}

/// Push bytes in with [`Framer::push`], take complete commands out with
/// [`Framer::next_frame`].
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    /// Bytes of `buf` already known to belong to the current command.
    scanned: usize,
    /// Bytes of `buf` already searched for the current line's end (at least
    /// `scanned`): a long line arriving in many reads is searched once, not
    /// again from its start on every read.
    searched: usize,
    /// Where the literal being waited for ends, if one is.
    literal_end: Option<usize>,
    limits: Limits,
}

impl Framer {
    /// A framer with these limits.
    pub fn new(limits: Limits) -> Framer {
        Framer {
            buf: BytesMut::new(),
            scanned: 0,
            searched: 0,
            literal_end: None,
            limits,
        }
    }

    /// Append received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that are not yet part of a returned frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Take every byte held and not yet returned in a frame, and start afresh
    /// (a stream switching to another encoding after a frame, e.g. `COMPRESS`).
    pub fn take_buffered(&mut self) -> BytesMut {
        self.scanned = 0;
        self.literal_end = None;
        self.buf.split()
    }

    /// The next complete command, `Ok(None)` when more bytes are needed.
    ///
    /// The frame includes its final line end. Call this after every
    /// [`push`](Framer::push): limits are checked here, so the buffer never holds
    /// more than a limit plus one pushed chunk.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(end) = self.literal_end {
                if self.buf.len() < end {
                    return Ok(None);
                }
                self.scanned = end;
                self.literal_end = None;
            }
            let from = self.searched.max(self.scanned);
            let Some(nl) = memchr::memchr(b'\n', &self.buf[from..]) else {
                self.searched = self.buf.len();
                if self.buf.len() - self.scanned > self.limits.line_bytes_max {
                    return Err(FrameError::LineTooLong {
                        limit: self.limits.line_bytes_max,
                    });
                }
                if self.buf.len() > self.limits.command_bytes_max {
                    return Err(FrameError::CommandTooLong {
                        limit: self.limits.command_bytes_max,
                    });
                }
                return Ok(None);
            };
            let line_end = from + nl; // index of '\n'
            self.searched = line_end + 1;
            if line_end - self.scanned > self.limits.line_bytes_max {
                return Err(FrameError::LineTooLong {
                    limit: self.limits.line_bytes_max,
                });
            }
            let line = &self.buf[self.scanned..line_end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            match literal_announcement(line) {
                Some(n) => {
                    if n > self.limits.literal_bytes_max {
                        return Err(FrameError::LiteralTooLarge {
                            announced: n,
                            limit: self.limits.literal_bytes_max,
                        });
                    }
                    // n <= literal_bytes_max, which fits in usize on 64-bit hosts;
                    // saturate anyway so a 32-bit build errors instead of wrapping.
                    let end =
                        (line_end + 1).saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
                    if end > self.limits.command_bytes_max {
                        return Err(FrameError::CommandTooLong {
                            limit: self.limits.command_bytes_max,
                        });
                    }
                    self.literal_end = Some(end);
                }
                None => {
                    if line_end + 1 > self.limits.command_bytes_max {
                        return Err(FrameError::CommandTooLong {
                            limit: self.limits.command_bytes_max,
                        });
                    }
                    let frame = self.buf.split_to(line_end + 1).freeze();
                    self.scanned = 0;
                    self.searched = 0;
                    return Ok(Some(frame));
                }
            }
        }
    }
}

/// If `line` ends with `{n}`, `{n+}` or `%{partition guid n}`, the `n`.
///
/// Sizes too large for `u64` saturate, so they fail the literal limit.
pub(crate) fn literal_announcement(line: &[u8]) -> Option<u64> {
    let body = line.strip_suffix(b"}")?;
    let open = memchr::memrchr(b'{', body)?;
    let inner = &body[open + 1..];
    let digits = if open > 0 && body[open - 1] == b'%' {
        // file literal: "partition guid size"
        let mut parts = inner.split(|&b| b == b' ');
        let (_part, _guid, size) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        size
    } else {
        inner.strip_suffix(b"+").unwrap_or(inner)
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        let mut f = Framer::new(Limits::default());
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            f.push(piece);
            while let Some(frame) = f.next_frame().unwrap() {
                out.push(frame.to_vec());
            }
        }
        out
    }

    #[test]
    fn plain_lines_are_frames() {
        assert_eq!(
            frames(b"NOOP\r\nEXIT\r\n", 100),
            vec![b"NOOP\r\n".to_vec(), b"EXIT\r\n".to_vec()]
        );
    }

    #[test]
    fn literals_and_file_literals_continue_the_line() {
        let input = b"APPLY MESSAGE (%{default 0123 5}\r\nab\r\nc %{p g 0}\r\n)\r\nAPPLY X {3+}\r\n\n\n\n\r\n";
        for chunk in 1..input.len() {
            let got = frames(input, chunk);
            assert_eq!(got.len(), 2, "chunk {chunk}");
            assert!(got[0].starts_with(b"APPLY MESSAGE"));
            assert_eq!(got[1], b"APPLY X {3+}\r\n\n\n\n\r\n".to_vec());
        }
    }

    #[test]
    fn a_long_line_in_many_pushes_is_searched_once() {
        let mut f = Framer::new(Limits::default());
        let line = [b"APPLY X (".as_slice(), &[b'a'; 10_000], b")\r\n"].concat();
        for piece in line.chunks(7) {
            f.push(piece);
            let got = f.next_frame().unwrap();
            // The search never goes back over bytes already searched.
            assert_eq!(f.searched, if got.is_some() { 0 } else { f.buf.len() });
            if let Some(frame) = got {
                assert_eq!(&frame[..], &line[..]);
            }
        }
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn announcement_shapes() {
        assert_eq!(literal_announcement(b"X {12}"), Some(12));
        assert_eq!(literal_announcement(b"X {12+}"), Some(12));
        assert_eq!(literal_announcement(b"(%{default abc 89}"), Some(89));
        assert_eq!(literal_announcement(b"X {}"), None);
        assert_eq!(literal_announcement(b"X {1a}"), None);
        assert_eq!(literal_announcement(b"X 12}"), None);
        assert_eq!(literal_announcement(b"%{a b}"), None);
        assert_eq!(
            literal_announcement(b"{99999999999999999999999999}"),
            Some(u64::MAX)
        );
    }

    #[test]
    fn huge_literal_is_refused_without_allocating() {
        let mut f = Framer::new(Limits::default());
        f.push(b"APPLY MESSAGE (%{default g 1099511627776}\r\n");
        assert!(matches!(
            f.next_frame(),
            Err(FrameError::LiteralTooLarge {
                announced: 1099511627776,
                ..
            })
        ));
        assert!(f.buffered() < 100);
    }

    #[test]
    fn endless_line_is_refused() {
        let limits = Limits {
            line_bytes_max: 64,
            ..Limits::default()
        };
        let mut f = Framer::new(limits);
        f.push(&[b'a'; 65]);
        assert_eq!(f.next_frame(), Err(FrameError::LineTooLong { limit: 64 }));
    }

    #[test]
    fn command_limit_counts_literals() {
        let limits = Limits {
            command_bytes_max: 100,
            ..Limits::default()
        };
        let mut f = Framer::new(limits);
        f.push(b"APPLY X {50}\r\n");
        assert_eq!(f.next_frame(), Ok(None));
        f.push(&[b'x'; 50]);
        f.push(b" {60}\r\n");
        assert_eq!(
            f.next_frame(),
            Err(FrameError::CommandTooLong { limit: 100 })
        );
    }
}
