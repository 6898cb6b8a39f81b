//! Embedding the fake backupd in a Rust test: start it in-process, point a
//! real Cyrus source at it, lock a user, inject a fault, and read the store
//! directly. No control socket and no subprocess of backupd-sim: the test
//! holds the server's shared state.
//!
//! ```sh
//! cargo run --example embed              # needs root and Cyrus (make setup)
//! CYRUS_PREFIX=/path/to/cyrus cargo run --example embed   # your own build
//! CYRUS_BIN=/path/to/cyrus/bin cargo run --example embed
//! ```
//!
//! `tests/it/examples.rs` runs this program under `make test`.

use std::time::Duration;

use backupd_sim::check::compare;
use backupd_sim::cyrus::{Channel, Choice, SourceInstance, SourceOptions, SyncClient};
use backupd_sim::fault::{FaultSpec, LockSpec, MatchSpec};
use backupd_sim::populate::fill_user;
use backupd_sim::rng::{Rng, Seed};
use backupd_sim::server::control::{apply, Request};
use backupd_sim::server::{FakeBackupd, ServerConfig};
use backupd_sim::store::Store;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("embed: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// The whole example; an unmet expectation is an error.
pub fn run() -> Result<()> {
    // The installation as every backupd-sim command finds it: $CYRUS_PREFIX,
    // else $CYRUS_BIN, else Debian's /usr/lib/cyrus/bin.
    let bins = Choice::default().single()?;

    // 1. The fake, in this process, on a port the OS chooses. Its store is a
    //    temporary one; `ServerConfig` holds the credentials, plan and seed.
    let rt = tokio::runtime::Runtime::new()?;
    let fake = rt.block_on(FakeBackupd::start(
        "127.0.0.1:0".parse()?,
        Store::temporary()?,
        ServerConfig::default(), // repluser/secret, backupd personality, seed 0
    ))?;
    let shared = fake.shared().clone();
    println!("fake backupd on {}", fake.addr());

    // 2. A throwaway real Cyrus source whose `backup` channel points at it.
    let sandbox = tempfile::tempdir()?;
    std::fs::set_permissions(
        sandbox.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let mut channel = Channel::new("backup", fake.addr().port());
    channel.password = "secret".into();
    let mut opts = SourceOptions::new(bins.clone(), sandbox.path().join("source"));
    opts.channels = vec![channel];
    let source = SourceInstance::start(&opts)?;
    fill_user(&source, "alice", 6, &mut Rng::new(Seed(1)))?;
    let client = SyncClient::new(&bins, source.config_path());
    let sync_user = || -> Result<Option<i32>> {
        let args = ["-n", "backup", "-u", "alice"].map(String::from);
        Ok(client.run(&args, Duration::from_secs(60))?.status)
    };

    // 3. Lock alice, as another process holding her backup would: `-u`
    //    bails out with exit 1 and the fake counts the LOCKED answer.
    let lock = LockSpec {
        user: Some("alice".into()),
        ..LockSpec::default()
    };
    apply(&shared, &Request::Lock { lock })?;
    let status = sync_user()?;
    let status_now = shared.engine().status(shared.now_ms());
    let locked = status_now.users.get("alice").map_or(0, |u| u.locked);
    println!("locked: sync_client -u alice exit {status:?}, {locked} LOCKED answer(s)");
    expect(
        status == Some(1) && locked >= 1,
        "a locked user makes -u exit 1",
    )?;
    apply(
        &shared,
        &Request::Unlock {
            name: "alice".into(),
        },
    )?;

    // 4. A fault: drop the connection right after the first APPLY MAILBOX is
    //    answered. The client loses its connection mid-pass.
    let fault = FaultSpec {
        action: "drop-after".into(),
        when: MatchSpec {
            verb: Some("APPLY MAILBOX".into()),
            ..MatchSpec::default()
        },
        nth: Some(1),
        ..FaultSpec::default()
    };
    apply(&shared, &Request::Fault { fault })?;
    let status = sync_user()?;
    let status_now = shared.engine().status(shared.now_ms());
    let fires = status_now.faults.first().map_or(0, |f| f.fires);
    println!("fault: sync_client -u alice exit {status:?}, the fault fired {fires} time(s)");
    expect(fires == 1, "the drop-after fault fired once")?;

    // 5. Clear the faults, sync again, and read the store: it holds exactly
    //    what the source holds, bodies included.
    apply(&shared, &Request::Clear)?;
    let status = sync_user()?;
    expect(status == Some(0), "a clean -u exits 0")?;
    let store = shared.store();
    let backup = store.mail_state();
    let comparison = compare(&source.read_state(&["alice"])?, &backup);
    expect(comparison.converged(), &comparison.to_string())?;
    expect(
        store.verify_bodies().is_empty(),
        "every body hashes to its GUID",
    )?;
    let alice = backup
        .users
        .get("alice")
        .ok_or("alice is not in the store")?;
    let messages: usize = alice.mailboxes.values().map(|m| m.messages.len()).sum();
    expect(messages > 0, "alice's messages are in the store")?;
    println!(
        "store: alice has {} mailbox(es) and {messages} live message(s); converged with the source",
        alice.mailboxes.len()
    );
    drop(store);
    drop(source);
    rt.block_on(fake.stop());
    Ok(())
}

fn expect(ok: bool, what: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(format!("expected: {what}").into())
    }
}
