//! The integration tests: one binary, one module per topic.

mod abuse; // the fake under abuse: slow loris, floods, oversized input, deflate bombs, SIGKILLed saves, control garbage
mod ci; // ci/examples/: the example CI files parse and run what the binary accepts
mod cli; // the binary as a user runs it: serve, --state, bad input
mod codec; // dlist framing, decoding and encoding against real captures and generated input
mod compare; // run --target backupd|sync_server|HOST:PORT through the relay; compare fake vs real
mod counts; // each run-wide count check (deferrals, lock hits, queued, restarts, reconnect rate) fails when its count is off
mod cyrus_source; // the real Cyrus source instance: start, fill, read back, stop
mod docs; // the README stays a short quickstart with its tables; no file points outside the project
mod examples; // examples/: the embedding example run as a test
mod explore; // backupd-sim explore: deterministic generation, a clean run, a lying fake found and shrunk
mod faults; // every fault action and lock mode vs an in-process fake and a scripted client
mod golden; // golden transcripts of key flows from the real backupd; the fake must match them
mod halts; // a QUOTA entry for a removed root or a server annotation halts rolling replication to backupd (real client, fake and real backupd)
mod history; // the acknowledged-write history check with the real client: lies healed by the catch-up, a lying HOST:PORT proxy
mod hygiene; // no orphans: run interrupted (SIGINT/SIGTERM), a killed sync_client, repeated runs
mod imap_parser; // the IMAP response parser of the read-back vs imap-codec (differential property test)
mod locks; // lock windows and faults vs the real sync_client: lab cases A-E, drops, ctl
mod mutations; // every row of the convergence check fails when a corrupt fault breaks it
mod personality; // the sync_server personality: greeting, replies, blocking locks; real client and real sync_server
mod prefix; // own builds as `make install` lays them out: --cyrus-prefix, $CYRUS_PREFIX, the choice rules
mod replication; // real sync_client into the fake: -u, -m, -R -1, refused credentials, the IMAP probe
mod runner; // backupd-sim run: the bundled suite, bad scenarios, a broken fake caught, JUnit, shards
mod server; // the tokio driver over sockets: DEFLATE both ways, commands larger than a chunk
mod session; // the sans-IO session over a temporary store: replies, auth, bad input, locks, sync
mod source_locks; // locks on the source side: a hand-run -u holding the sync lock, -N, 3.12 skipuser (real sync_server)
mod targets; // real backupd and sync_server targets: convergence, a real lock (case A), benchmarks smoke
mod timeline; // timeline.svg/.html from real event logs (case C storm, case A) and synthetic ones
mod util;
mod versions; // real versions side by side: 3.6.1, 3.10.2 and 3.12.4 chroots, per-version expectations, the matrix
