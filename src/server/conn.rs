//! The byte stream of one connection: reads with the idle deadline and the
//! server's restart signal, at most [`CHUNK`] bytes of plaintext at a time,
//! inflating and deflating once `COMPRESS` is on.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::{Deflate, CHUNK};

/// The byte stream of one connection (a socket, or an in-memory stream in the
/// fuzz target), inflating and deflating once asked to.
pub(super) struct Conn<S> {
    pub(super) stream: S,
    pub(super) deflate: Option<Deflate>,
    /// Compressed bytes received and not yet inflated.
    pending: Vec<u8>,
    /// The last inflate filled its whole output chunk: more may be buffered.
    inflate_full: bool,
    /// Socket reads land here ([`CHUNK`] bytes, reused).
    buf: Vec<u8>,
    /// Inflated plaintext lands here ([`CHUNK`] bytes, reused).
    out: Vec<u8>,
    /// Where the plaintext of the last [`ReadEnd::Data`] is: `out` or `buf`, and how much.
    data_in_out: bool,
    data_len: usize,
    restart: watch::Receiver<u64>,
    /// Close after this long without a byte from the peer.
    idle: Duration,
    /// One timer for the whole connection, moved lazily: it may fire before
    /// the idle deadline of the read in progress (it is never later), and is
    /// then set again, so a read does not register a timer of its own.
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

/// Why reading stopped.
pub(super) enum ReadEnd {
    /// Plaintext is in [`Conn::data`].
    Data,
    Eof,
    Restart,
}

/// `from + idle`, or as far as an `Instant` goes.
pub(super) fn idle_deadline(from: tokio::time::Instant, idle: Duration) -> tokio::time::Instant {
    from.checked_add(idle)
        .or_else(|| from.checked_add(Duration::from_secs(86_400 * 365 * 30)))
        .unwrap_or(from)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub(super) fn new(stream: S, restart: watch::Receiver<u64>, idle: Duration) -> Conn<S> {
        Conn {
            stream,
            deflate: None,
            pending: Vec::new(),
            inflate_full: false,
            buf: vec![0; CHUNK],
            out: Vec::new(),
            data_in_out: false,
            data_len: 0,
            restart,
            idle,
            timer: Box::pin(tokio::time::sleep_until(idle_deadline(
                tokio::time::Instant::now(),
                idle,
            ))),
        }
    }

    pub(super) async fn write(&mut self, plain: &[u8]) -> io::Result<()> {
        match self.deflate.as_mut() {
            Some(d) => {
                let z = d.compress(plain)?;
                self.stream.write_all(&z).await
            }
            None => self.stream.write_all(plain).await,
        }
    }

    /// The plaintext of the last [`ReadEnd::Data`].
    pub(super) fn data(&self) -> &[u8] {
        if self.data_in_out {
            &self.out[..self.data_len]
        } else {
            &self.buf[..self.data_len]
        }
    }

    /// Up to [`CHUNK`] bytes of plaintext, then in [`Conn::data`]; each wait
    /// for the socket ends after the idle timeout, and at `whole_by` (when a
    /// command begun must be whole: see [`drive`]).
    pub(super) async fn read(
        &mut self,
        whole_by: Option<tokio::time::Instant>,
    ) -> io::Result<ReadEnd> {
        loop {
            if let Some(d) = self.deflate.as_mut() {
                // The inflater may hold output even when all input is consumed:
                // after a full chunk, always ask it again before waiting on the
                // socket, or a command larger than a chunk waits for ever.
                if !self.pending.is_empty() || self.inflate_full {
                    if self.out.len() < CHUNK {
                        self.out.resize(CHUNK, 0);
                    }
                    let (used, made) = d.decompress(&self.pending, &mut self.out)?;
                    self.pending.drain(..used);
                    self.inflate_full = made == self.out.len();
                    if made > 0 {
                        self.data_in_out = true;
                        self.data_len = made;
                        return Ok(ReadEnd::Data);
                    }
                }
            }
            let idle_due = idle_deadline(tokio::time::Instant::now(), self.idle);
            let due = whole_by.map_or(idle_due, |w| w.min(idle_due));
            if self.timer.deadline() > due {
                // Only a command's deadline comes before the timer.
                self.timer.as_mut().reset(due);
            }
            let n = loop {
                tokio::select! {
                    biased;
                    _ = self.restart.changed() => return Ok(ReadEnd::Restart),
                    r = self.stream.read(&mut self.buf) => break r?,
                    () = &mut self.timer => {
                        if tokio::time::Instant::now() >= due {
                            let what = if due < idle_due {
                                "a command not whole within the idle timeout of its first byte"
                            } else {
                                "idle for too long"
                            };
                            return Err(io::Error::new(io::ErrorKind::TimedOut, what));
                        }
                        self.timer.as_mut().reset(due);
                    }
                }
            };
            if n == 0 {
                return Ok(ReadEnd::Eof);
            }
            if self.deflate.is_none() {
                self.data_in_out = false;
                self.data_len = n;
                return Ok(ReadEnd::Data);
            }
            // Bounded: the pending buffer is drained before the next read.
            self.pending.extend_from_slice(&self.buf[..n]);
        }
    }
}
