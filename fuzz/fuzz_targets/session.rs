//! Bytes -> one authenticated `Session` over `Store::temporary()`: the input is
//! pushed in chunk sizes taken from it (see `common.rs`), every complete input
//! executed, as the tokio driver does, until the session says close.
//!
//! Properties: nothing panics; the session never buffers more than its limits
//! plus the chunk just pushed; every body the store holds for a live record
//! hashes to its GUID; ending the session releases everything.
#![no_main]

mod common;

use std::sync::Arc;

use backupd_sim::dlist::Limits;
use backupd_sim::session::{After, Session, SessionConfig};
use backupd_sim::store::Store;
use base64::Engine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let layout = common::layout(data);
    let limits = if layout.small_limits {
        common::SMALL
    } else {
        Limits::default()
    };
    let config = Arc::new(SessionConfig {
        limits,
        ..SessionConfig::default()
    });
    let mut store = Store::temporary().expect("temporary store");
    let mut session = Session::new(1, Arc::clone(&config));
    let _ = session.greeting();
    // `\0repluser\0secret`: the default credentials.
    let auth = format!(
        "AUTHENTICATE PLAIN {}\r\n",
        base64::engine::general_purpose::STANDARD.encode("\0repluser\0secret")
    );
    session.push(auth.as_bytes());
    let input = session
        .next_incoming()
        .expect("the AUTHENTICATE line frames")
        .expect("a whole line");
    let r = session.execute(input, &mut store);
    assert_eq!(r.after, After::Continue);
    assert!(session.authenticated(), "{:?}", r.replies);

    'feed: for chunk in common::chunks(layout.body, &layout.sizes) {
        session.push(chunk);
        loop {
            let response = match session.next_incoming() {
                Ok(None) => break,
                Ok(Some(input)) => session.execute(input, &mut store),
                Err(e) => session.frame_error(&e),
            };
            let _ = response.encode();
            if response.after == After::Close {
                break 'feed;
            }
        }
        assert!(
            session.buffered() <= limits.command_bytes_max + limits.line_bytes_max + chunk.len(),
            "{} bytes buffered after a chunk of {}",
            session.buffered(),
            chunk.len()
        );
    }
    let problems = store.verify_bodies();
    assert!(problems.is_empty(), "{problems:?}");
    session.end(&mut store);
});
