//! The integration tests: one binary, one module per topic.

mod cli; // the binary as a user runs it: serve, --state, bad input
mod codec; // dlist framing, decoding and encoding against real captures and generated input
mod cyrus_source; // the real Cyrus source instance: start, fill, read back, stop
mod faults; // every fault action and lock mode vs an in-process fake and a scripted client
mod locks; // lock windows and faults vs the real sync_client: lab cases A-E, drops, ctl
mod replication; // real sync_client into the fake: -u, -m, -R -1, refused credentials, the IMAP probe
mod runner; // backupd-sim run: the bundled suite, bad scenarios, a broken fake caught, JUnit, shards
mod session; // the sans-IO session over a temporary store: replies, auth, bad input, locks, sync
mod util;
