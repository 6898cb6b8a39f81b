//! Bytes -> `Framer` pushes in chunk sizes taken from the input -> every frame
//! through `Command::parse` and `dlist::decode_value` (of the whole frame and of
//! the item after the verb's first and second word).
//!
//! Properties: nothing panics; the framer never buffers more than the limits
//! plus the chunk just pushed; no frame is larger than the command limit plus
//! one line; a value that decodes re-encodes (both directions) to bytes that
//! decode to the same value; at each `%(` of a frame (the first 64), the direct
//! RECORD reader either declines or reads what the general decoder reads.
#![no_main]

mod common;

use backupd_sim::dlist::{decode_value, encode_value, Direction, Framer, Limits};
use backupd_sim::proto::direct::{compare_with_general, Agreement};
use backupd_sim::proto::Command;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fn roundtrip(frame: Bytes) {
    let Ok(v) = decode_value(frame.clone()) else {
        return;
    };
    for dir in [Direction::ToServer, Direction::ToClient] {
        let mut wire = Vec::new();
        encode_value(&mut wire, &v, dir);
        wire.extend_from_slice(b"\r\n");
        let back = decode_value(Bytes::from(wire.clone()));
        assert_eq!(
            back.as_ref(),
            Ok(&v),
            "re-encoded ({dir:?}) {:?} from frame {:?}",
            String::from_utf8_lossy(&wire),
            String::from_utf8_lossy(&frame)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let layout = common::layout(data);
    let limits = if layout.small_limits {
        common::SMALL
    } else {
        Limits::default()
    };
    let mut framer = Framer::new(limits);
    'feed: for chunk in common::chunks(layout.body, &layout.sizes) {
        framer.push(chunk);
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => {
                    assert!(
                        frame.len() <= limits.command_bytes_max + limits.line_bytes_max + 2,
                        "frame of {} bytes",
                        frame.len()
                    );
                    let _ = Command::parse(frame.clone());
                    roundtrip(frame.clone());
                    for at in frame
                        .windows(2)
                        .enumerate()
                        .filter(|(_, w)| w == b"%(")
                        .map(|(i, _)| i)
                        .take(64)
                    {
                        let agreement = compare_with_general(&frame[at..]);
                        assert!(
                            !matches!(agreement, Agreement::Differs { .. }),
                            "{agreement:?} at {at} of {:?}",
                            String::from_utf8_lossy(&frame)
                        );
                    }
                    // The item after `VERB` and after `VERB KIND`.
                    let mut spaces = frame
                        .iter()
                        .enumerate()
                        .filter(|(_, &b)| b == b' ')
                        .map(|(i, _)| i);
                    for _ in 0..2 {
                        if let Some(i) = spaces.next() {
                            roundtrip(frame.slice(i + 1..));
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
        assert!(
            framer.buffered() <= limits.command_bytes_max + limits.line_bytes_max + chunk.len(),
            "{} bytes buffered after a chunk of {}",
            framer.buffered(),
            chunk.len()
        );
    }
});
