//! backupd-sim: a fake Cyrus `backupd` speaking csync, for testing the real `sync_client`.
//!
//! # Layout
//!
//! - [`check`]: convergence of a source and a backup, with divergences named.
//! - [`cyrus`]: the real Cyrus pieces: installation, source instance, IMAP client, sync_client runs.
//! - [`dlist`]: sans-IO framing and grammar of the csync wire format.
//! - [`events`]: the bounded event log (connections, commands, replies) and transcripts.
//! - [`populate`]: deterministic mail and changes made on the source over IMAP.
//! - [`proto`]: typed commands and replies on top of `dlist`.
//! - [`store`]: the fake's backup contents, per-user locks, body pack, state file.
//! - [`session`]: one connection as a sans-IO state machine over the store.
//! - [`rng`]: the one seed, and deterministic per-subsystem random streams.
//! - [`runner`]: runs scenarios against the real client and judges them; suite, reports.
//! - [`scenario`]: scenario files (TOML), validated with file/line/column errors; the ledger.
//! - [`server`]: the tokio driver running sessions over TCP, with DEFLATE.
//! - [`fault`]: lock windows and faults, consulted at protocol events; the plan file.
//! - [`harness`]: a real source, the fake and the real sync_client in one sandbox.
//! - [`mailstate`]: the comparable view of a mail store, used by both sides of a check.
pub mod check;
pub mod cyrus;
pub mod dlist;
pub mod events;
pub mod fault;
pub mod harness;
pub mod mailstate;
pub mod populate;
pub mod proto;
pub mod rng;
pub mod runner;
pub mod scenario;
pub mod server;
pub mod session;
pub mod store;
