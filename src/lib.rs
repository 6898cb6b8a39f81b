//! backupd-sim: a fake Cyrus `backupd` speaking csync, for testing the real `sync_client`.
//!
//! # Layout
//!
//! - [`cyrus`]: the real Cyrus pieces: installation, source instance, IMAP client, sync_client runs.
//! - [`dlist`]: sans-IO framing and grammar of the csync wire format.
//! - [`proto`]: typed commands and replies on top of `dlist`.
//! - [`store`]: the fake's backup contents, per-user locks, body pack, state file.
//! - [`session`]: one connection as a sans-IO state machine over the store.
//! - [`server`]: the tokio driver running sessions over TCP, with DEFLATE.
//! - [`mailstate`]: the comparable view of a mail store, used by both sides of a check.
pub mod cyrus;
pub mod dlist;
pub mod mailstate;
pub mod proto;
pub mod server;
pub mod session;
pub mod store;
