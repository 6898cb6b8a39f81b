//! backupd-sim: a fake Cyrus `backupd` speaking csync, for testing the real `sync_client`.
//!
//! # Layout
//!
//! - [`dlist`]: sans-IO framing and grammar of the csync wire format.
//! - [`proto`]: typed commands and replies on top of `dlist`.
//! - [`session`]: one connection as a sans-IO state machine over the store.
//! - [`store`]: the fake's backup contents, per-user locks, body pack, state file.
//! - [`fault`]: lock windows and faults, consulted at protocol events; the plan file.
//! - [`effect`]: the sans-IO core of a connection: session and fault engine turn each command
//!   into an [`effect::Effect`] (send, delay, partial write, close, stall, restart) the driver carries out.
//! - [`server`]: the tokio driver running sessions over TCP, with DEFLATE; the control endpoint.
//! - [`events`]: the bounded event log (connections, commands, replies, locks, faults) and transcripts.
//! - [`cyrus`]: the real Cyrus pieces: installation, source instance, real targets, IMAP client, sync_client runs.
//! - [`history`]: every write a target acknowledged and every read it answered; the checker
//!   that finds an acknowledged write lost.
//! - [`harness`]: a real source, the fake and the real sync_client in one sandbox.
//! - [`populate`]: deterministic mail and changes made on the source over IMAP.
//! - [`mailstate`]: the comparable view of a mail store, used by both sides of a check.
//! - [`check`]: convergence of a source and a backup, with divergences named.
//! - [`diff`]: unified diffs (plain text, with context) for reports.
//! - [`scenario`]: scenario files (TOML), validated with file/line/column errors; the ledger.
//! - [`runner`]: runs scenarios against the real client and judges them; suite, version matrix, reports.
//! - [`explore`]: property-based convergence testing with the real client; shrinking to a scenario file.
//! - [`timeline`]: the picture of a run (timeline.svg/.html): lanes, lock windows, storms, convergence.
//! - [`bundled`]: the scenario suite built into the binary, for installed copies.
//! - [`bench`]: benchmarks of the fake against the real backupd, sync_server and a floor.
//! - [`reader`]: the runner's own csync reads of a target (`GET USER`, `GET FULLMAILBOX`), for the history.
//! - [`rng`]: the one seed, and deterministic per-subsystem random streams.
//! - [`types`]: value types shared by proto, store, events and fault (GUIDs, interned names,
//!   packed annotations, mailbox-name rules, session ids); imports none of them.
//! - [`term`]: colour on terminals (`--color`, `NO_COLOR`).
pub mod bench;
pub mod bundled;
pub mod check;
pub mod cyrus;
pub mod diff;
pub mod dlist;
pub mod effect;
pub mod events;
pub mod explore;
pub mod fault;
pub mod harness;
pub mod history;
pub mod mailstate;
pub mod populate;
pub mod proto;
pub mod reader;

pub mod relay;
pub mod rng;
pub mod runner;
pub mod scenario;
pub mod server;
pub mod session;
pub mod store;
pub mod term;
pub mod timeline;
pub mod types;
