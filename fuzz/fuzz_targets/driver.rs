//! Bytes -> the real connection code of `src/server/mod.rs` (`serve_stream`:
//! `Conn`, its reused read and inflate buffers, DEFLATE, the idle timer, the
//! fault and lock engine consulted at every command) over an in-memory stream,
//! on a current-thread tokio runtime whose clock is paused (so an idle
//! timeout passes at once, in virtual time, when nothing else can run).
//!
//! Input layout (see `common.rs` for the chunk sizes):
//!
//! ```text
//! byte 0:  bit 7 = small framing limits
//!          bit 6 = COMPRESS DEFLATE after authenticating, then the rest compressed
//!          bit 5 = leave the connection open at the end (the idle timeout ends it)
//!          bit 4 = with bit 6: send the rest as raw bytes, not deflated (a bad stream)
//!          bits 0-3 = k, the number of chunk-size bytes
//! bytes 1..=k: chunk sizes (each byte + 1, cycled)
//! the rest: the client's bytes after authenticating, one write per chunk,
//!           each chunk deflated and sync-flushed on its own when compressing
//! ```
//!
//! Properties: nothing panics; the connection ends (a hang is a libFuzzer
//! timeout); once DEFLATE is active every byte the server sends inflates as one
//! raw DEFLATE stream without error; at the end the session holds no user's
//! backup, and every stored body hashes to its GUID.
#![no_main]

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use backupd_sim::dlist::Limits;
use backupd_sim::server::{serve_stream, Deflate, ServerConfig, Shared};
use backupd_sim::session::SessionConfig;
use backupd_sim::store::Store;
use flate2::{Decompress, FlushDecompress, Status};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

/// `AUTHENTICATE PLAIN \0repluser\0secret` (the default credentials).
const AUTH: &[u8] = b"AUTHENTICATE PLAIN AHJlcGx1c2VyAHNlY3JldA==\r\n";
const DEFLATE_OK: &[u8] = b"OK DEFLATE active\r\n";
/// The server's output kept for the inflate check (the rest is drained).
const KEEP_MAX: usize = 1 << 20;

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime")
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Inflate everything the server sent after its DEFLATE OK: must not fail.
fn check_inflates(wire: &[u8]) {
    let mut z = Decompress::new(false);
    let mut out = vec![0u8; 64 * 1024];
    let mut pos = 0;
    while pos < wire.len() {
        let (in0, out0) = (z.total_in(), z.total_out());
        let status = z
            .decompress(&wire[pos..], &mut out, FlushDecompress::None)
            .unwrap_or_else(|e| panic!("the server's DEFLATE output does not inflate: {e}"));
        assert_ne!(
            status,
            Status::StreamEnd,
            "the server ended its DEFLATE stream"
        );
        let used = (z.total_in() - in0) as usize;
        let made = (z.total_out() - out0) as usize;
        if used == 0 && made == 0 {
            break;
        }
        pos += used;
    }
}

fuzz_target!(|data: &[u8]| {
    let head = data.first().copied().unwrap_or(0);
    let compress = head & 0x40 != 0;
    let stay_open = head & 0x20 != 0;
    let raw_after_compress = head & 0x10 != 0;
    let layout = common::layout(data);
    let limits = if layout.small_limits {
        common::SMALL
    } else {
        Limits::default()
    };
    let config = ServerConfig {
        session: SessionConfig {
            limits,
            ..SessionConfig::default()
        },
        idle_timeout: Duration::from_secs(30),
        ..ServerConfig::default()
    };
    let store = Store::temporary().expect("temporary store");
    let shared = Shared::new(store, config);

    let output = runtime().block_on(async {
        let (client, server) = tokio::io::duplex(16 * 1024);
        let conn = tokio::spawn(serve_stream(server, "fuzz".into(), Arc::clone(&shared)));
        let (mut rx, mut tx) = tokio::io::split(client);
        // The reader drains the server (so its writes never block for ever) and
        // says when DEFLATE is active.
        let (deflate_on, deflate_seen) = tokio::sync::oneshot::channel::<()>();
        let reader = tokio::spawn(async move {
            let mut kept = Vec::new();
            let mut buf = vec![0u8; 16 * 1024];
            // Only a compressing input waits for the OK.
            let mut deflate_on = compress.then_some(deflate_on);
            loop {
                match rx.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let before = kept.len();
                        if before < KEEP_MAX {
                            kept.extend_from_slice(&buf[..n.min(KEEP_MAX - before)]);
                        }
                        // Look at the new bytes only (and the tail an OK may
                        // have started in), not at everything kept.
                        let from = before.saturating_sub(DEFLATE_OK.len() - 1);
                        if deflate_on.is_some() && find(&kept[from..], DEFLATE_OK).is_some() {
                            let _ = deflate_on.take().map(|t| t.send(()));
                        }
                    }
                }
            }
            kept
        });
        // A write error means the server closed: the rest is not sent.
        let mut open = tx.write_all(AUTH).await.is_ok();
        let mut z = None;
        if compress && open {
            open = tx.write_all(b"COMPRESS DEFLATE\r\n").await.is_ok();
            // Compressed bytes only after the OK (the server checks that);
            // no OK (the server closed) ends the sending.
            open = open && deflate_seen.await.is_ok();
            z = Some(Deflate::default());
        }
        if open {
            for chunk in common::chunks(layout.body, &layout.sizes) {
                let wire = match z.as_mut() {
                    Some(z) if !raw_after_compress => z.compress(chunk).expect("deflate"),
                    _ => chunk.to_vec(),
                };
                if tx.write_all(&wire).await.is_err() {
                    break;
                }
                // Let the server read between writes, so reads see varied pieces.
                tokio::task::yield_now().await;
            }
        }
        if !stay_open {
            let _ = tx.shutdown().await;
        }
        // Ends by the server closing: end of stream, an error, a framing error
        // or the idle timeout (virtual time moves on when everything waits).
        let ended = conn.await.expect("the connection task panicked");
        drop(tx);
        let kept = reader.await.expect("the reader panicked");
        (ended, kept)
    });
    let (_ended, kept) = output;
    if compress {
        if let Some(at) = find(&kept, DEFLATE_OK) {
            if kept.len() < KEEP_MAX {
                check_inflates(&kept[at + DEFLATE_OK.len()..]);
            }
        }
    }
    let store = shared.store();
    for user in store.users().keys() {
        assert_ne!(
            store.holder(user),
            Some(1),
            "{user} still held after the close"
        );
    }
    let problems = store.verify_bodies();
    assert!(problems.is_empty(), "{problems:?}");
});
