//! Input layout shared by the targets: how the rest of the input is cut into
//! the chunks pushed into the framer, so arbitrary arrival patterns are fuzzed.
//!
//! ```text
//! byte 0:      bit 7 = use small framing limits; bits 0-3 = k, the number of size bytes
//! bytes 1..=k: chunk sizes (each byte + 1, cycled); k = 0 pushes the rest at once
//! the rest:    the bytes that arrive on the connection
//! ```
//!
//! A seed built from a capture is `[0x00] + bytes`.

use backupd_sim::dlist::Limits;

/// Small enough for the fuzzer to reach every limit within `-max_len`.
pub const SMALL: Limits = Limits {
    line_bytes_max: 256,
    literal_bytes_max: 1024,
    command_bytes_max: 4096,
};

/// The parsed layout.
pub struct Layout<'a> {
    pub small_limits: bool,
    pub sizes: Vec<usize>,
    pub body: &'a [u8],
}

pub fn layout(data: &[u8]) -> Layout<'_> {
    let Some((&head, rest)) = data.split_first() else {
        return Layout {
            small_limits: false,
            sizes: vec![usize::MAX],
            body: data,
        };
    };
    let k = usize::from(head & 0x0f).min(rest.len());
    let (sizes, body) = rest.split_at(k);
    let sizes = if sizes.is_empty() {
        vec![usize::MAX]
    } else {
        sizes.iter().map(|&b| usize::from(b) + 1).collect()
    };
    Layout {
        small_limits: head & 0x80 != 0,
        sizes,
        body,
    }
}

/// `body` cut by the cycled `sizes`.
pub fn chunks<'a>(body: &'a [u8], sizes: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = body;
    let mut sizes = sizes.iter().cycle();
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = (*sizes.next()?).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}
