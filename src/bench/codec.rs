//! Workload 6: codec throughput, MB/s through `Framer` and `Command::parse`
//! on APPLY MESSAGE and APPLY MAILBOX frames, in process.

use std::time::{Duration, Instant};

use super::results::{Series, WorkloadResult};
use super::{failed, BenchOptions, Result};

/// `APPLY MESSAGE` with `n` file literals of `size` bytes.
pub fn apply_message_frame(n: usize, size: usize) -> Vec<u8> {
    let mut out = b"APPLY MESSAGE (".to_vec();
    for i in 0..n {
        let mut body = crate::populate::message("codec", i, size);
        body.truncate(size.max(1));
        let guid = {
            use sha1::Digest;
            hex::encode(sha1::Sha1::digest(&body))
        };
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(format!("%{{default {guid} {}}}\r\n", body.len()).as_bytes());
        out.extend_from_slice(&body);
    }
    out.extend_from_slice(b")\r\n");
    out
}

/// `APPLY MAILBOX` with `n` records.
pub fn apply_mailbox_frame(n: usize) -> Vec<u8> {
    let mut out = String::from(
        "APPLY MAILBOX %(UNIQUEID 0a1b2c3d4e5f6a7b8c9d0e1f MBOXNAME user.codec SYNC_CRC 0 \
         SYNC_CRC_ANNOT 0 LAST_UID 1000000 HIGHESTMODSEQ 2000000 RECENTUID 0 RECENTTIME 0 \
         LAST_APPENDDATE 1767225600 POP3_LAST_LOGIN 0 POP3_SHOW_AFTER 0 UIDVALIDITY 1767225600 \
         PARTITION default ACL \"codec\tlrswipkxtecdan\t\" OPTIONS P CREATEDMODSEQ 1 FOLDERMODSEQ 1 RECORD (",
    );
    for i in 0..n {
        use sha1::Digest;
        let guid = hex::encode(sha1::Sha1::digest(i.to_string().as_bytes()));
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&format!(
            "%(UID {} MODSEQ {} LAST_UPDATED 1767225600 FLAGS (\\Seen $Label1) INTERNALDATE {} SIZE {} GUID {guid} ANNOTATIONS ())",
            i + 1,
            i + 2,
            1_767_225_600 + i,
            1000 + i
        ));
    }
    out.push_str("))\r\n");
    out.into_bytes()
}

/// Bytes per second through `Framer` (fed in 64 KiB reads) + `Command::parse`,
/// over at least `min_time` and 3 passes.
pub fn codec_throughput(frame: &[u8], min_time: Duration) -> Result<f64> {
    use crate::dlist::{Framer, Limits};
    use crate::proto::Command;
    let mut bytes = 0usize;
    let t = Instant::now();
    let mut passes = 0;
    while passes < 3 || t.elapsed() < min_time {
        let mut framer = Framer::new(Limits::default());
        let mut parsed = 0;
        for chunk in frame.chunks(64 * 1024) {
            framer.push(chunk);
            while let Some(f) = framer.next_frame()? {
                let cmd = Command::parse(f)
                    .map_err(|e| failed(format!("codec frame does not parse: {e}")))?;
                std::hint::black_box(&cmd);
                parsed += 1;
            }
        }
        if parsed != 1 {
            return Err(failed(format!("expected one frame, got {parsed}")));
        }
        bytes += frame.len();
        passes += 1;
    }
    Ok(bytes as f64 / t.elapsed().as_secs_f64())
}

pub(super) fn run(opts: &BenchOptions, reps: usize) -> Result<WorkloadResult> {
    let sz = opts.sizes;
    let msg = apply_message_frame(sz.codec_bodies, sz.codec_body_bytes);
    let mbx = apply_mailbox_frame(sz.codec_records);
    let min = Duration::from_millis(if opts.sizes.w1_messages < 1000 {
        50
    } else {
        1000
    });
    let mut m = Vec::new();
    let mut b = Vec::new();
    for _ in 0..reps {
        m.push(codec_throughput(&msg, min)? / 1e6);
        b.push(codec_throughput(&mbx, min)? / 1e6);
    }
    Ok(WorkloadResult {
        id: 6,
        name: "codec throughput: Framer + Command::parse".into(),
        skipped: None,
        series: vec![
            Series::new("codec", "apply_message", "MB/s", m),
            Series::new("codec", "apply_mailbox", "MB/s", b),
        ],
        notes: vec![
            format!(
                "APPLY MESSAGE: {} bodies of {} B ({:.1} MB a frame); APPLY MAILBOX: {} records ({:.2} MB a frame); fed in 64 KiB reads; in-process, {} build",
                sz.codec_bodies,
                sz.codec_body_bytes,
                msg.len() as f64 / 1e6,
                sz.codec_records,
                mbx.len() as f64 / 1e6,
                if cfg!(debug_assertions) { "DEBUG" } else { "release" }
            ),
        ],
    })
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_frames_parse() {
        let m = codec_throughput(&apply_message_frame(4, 512), Duration::ZERO).expect("message");
        let b = codec_throughput(&apply_mailbox_frame(5), Duration::ZERO).expect("mailbox");
        assert!(m > 0.0 && b > 0.0);
    }
}
