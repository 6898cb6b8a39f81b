//! Raw DEFLATE (zlib window bits -15, no header) in both directions, each write
//! sync-flushed, as Cyrus `prot` does after `COMPRESS DEFLATE`.

use std::io;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// One connection's compressor and decompressor.
pub struct Deflate {
    out: Compress,
    inp: Decompress,
}

impl std::fmt::Debug for Deflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deflate")
    }
}

impl Default for Deflate {
    fn default() -> Self {
        Deflate::with_level(Compression::fast())
    }
}

fn zerr(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("deflate: {e}"))
}

impl Deflate {
    /// A compressor at `level` (the fake itself uses [`Compression::fast`];
    /// a test building a deflate bomb wants [`Compression::best`]).
    pub fn with_level(level: Compression) -> Deflate {
        Deflate {
            out: Compress::new(level, false),
            inp: Decompress::new(false),
        }
    }

    /// Compress `input` and sync-flush, so the peer can read all of it now.
    pub fn compress(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(1024));
            }
            let before = self.out.total_in();
            self.out
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
                .map_err(zerr)?;
            consumed += (self.out.total_in() - before) as usize;
            // The flush is complete when input is used up and output did not fill.
            if consumed == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    /// Inflate from `input` into `out`; returns (bytes consumed, bytes produced).
    pub fn decompress(&mut self, input: &[u8], out: &mut [u8]) -> io::Result<(usize, usize)> {
        let (in0, out0) = (self.inp.total_in(), self.inp.total_out());
        let status = self
            .inp
            .decompress(input, out, FlushDecompress::None)
            .map_err(zerr)?;
        if status == Status::StreamEnd {
            return Err(zerr("the client ended the compressed stream"));
        }
        Ok((
            (self.inp.total_in() - in0) as usize,
            (self.inp.total_out() - out0) as usize,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_small_pieces() {
        let mut a = Deflate::default();
        let mut b = Deflate::default();
        let text: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut wire = Vec::new();
        for piece in text.chunks(7_000) {
            wire.extend(a.compress(piece).unwrap());
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 1000];
        let mut pos = 0;
        while got.len() < text.len() {
            let end = (pos + 333).min(wire.len());
            let (used, made) = b.decompress(&wire[pos..end], &mut buf).unwrap();
            pos += used;
            got.extend_from_slice(&buf[..made]);
        }
        assert_eq!(got, text);
    }
}
