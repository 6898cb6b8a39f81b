//! A real Cyrus source, the fake backupd and the real `sync_client`, wired
//! together in one sandbox directory.
//!
//! [`Harness::start`] starts the target and a source instance whose `backup`
//! channel points at it. The target is the fake on `127.0.0.1:0` in its own tokio
//! runtime by default; with [`HarnessOptions::target`] it is a real `backupd` or
//! `sync_server` started in the sandbox, or any csync server at `HOST:PORT`. A
//! real target is reached through a [`Relay`] that records the conversation
//! into the same event log the fake keeps, so counts, transcripts and timelines
//! read the same for every target. Everything stops when the harness is dropped
//! (the source and a real target by PID, the fake and the relay with the
//! runtime); the sandbox is removed unless it was asked to be kept.
//!
//! Pieces: `harness/target.rs` ([`Target`], as `--target` names it) and
//! `harness/locks.rs` (lock windows on each kind of target, [`LockError`]).

mod locks;
mod target;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::check::{compare, Comparison};
use crate::cyrus::{
    Channel, CyrusBins, CyrusError, RealTarget, SourceInstance, SourceOptions, StateScope,
    SyncClient, SyncRun, TargetKind,
};
use crate::mailstate::MailState;
use crate::relay::{Relay, Settle};
use crate::server::{control, FakeBackupd, ServerConfig, Shared};
use crate::store::Store;

use locks::RealLock;
pub use locks::{lock_unsupported, LockError};
pub use target::{kind_from_greeting, Target};

/// The channel name the source replicates to the fake on.
pub const CHANNEL: &str = "backup";

/// How long [`Harness::settle_target`] waits for a relayed target to close
/// the connections of a client that has ended.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a harness could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A Cyrus piece failed.
    #[error(transparent)]
    Cyrus(#[from] CyrusError),
    /// The target cannot do what was asked (e.g. read back a `HOST:PORT`).
    #[error("{0}")]
    Unsupported(String),
    /// The sandbox or the fake could not be set up.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let context = context.into();
    move |source| HarnessError::Io { context, source }
}

/// How to build a harness.
#[derive(Debug, Clone)]
pub struct HarnessOptions {
    /// The Cyrus installation.
    pub bins: CyrusBins,
    /// Parent of the sandbox directory (default: the system temp dir).
    pub sandbox_parent: Option<PathBuf>,
    /// Keep the sandbox when the harness is dropped.
    pub keep: bool,
    /// The fake's settings; its credentials are the channel's.
    pub server: ServerConfig,
    /// `<channel>_sync_repeat_interval` for rolling mode.
    pub repeat_interval_secs: u32,
    /// Timeout of each `sync_client` run.
    pub sync_timeout: Duration,
    /// Give the client this password instead of the fake's (to test refusal).
    pub client_password: Option<String>,
    /// Serve the run-time control endpoint on `127.0.0.1:0`.
    pub control: bool,
    /// The source writes its rolling replication log (`sync_log: 1`).
    pub sync_log: bool,
    /// `<channel>_sync_timeout` in seconds (the client's read timeout).
    pub channel_sync_timeout: Option<u32>,
    /// `sync_batchsize` (messages per mailbox upload), when not Cyrus' 8192.
    pub batchsize: Option<u32>,
    /// The server replicated to.
    pub target: Target,
    /// The server the fake imitates (overrides `server.session.personality`).
    pub personality: crate::session::Personality,
}

impl HarnessOptions {
    /// Defaults: temp sandbox, removed afterwards; 120 s per client run.
    pub fn new(bins: CyrusBins) -> HarnessOptions {
        HarnessOptions {
            bins,
            sandbox_parent: None,
            keep: false,
            server: ServerConfig::default(),
            repeat_interval_secs: 1,
            sync_timeout: Duration::from_secs(120),
            client_password: None,
            control: false,
            sync_log: true,
            channel_sync_timeout: None,
            batchsize: None,
            target: Target::Fake,
            personality: crate::session::Personality::Backupd,
        }
    }
}

/// Source, fake and client together.
#[derive(Debug)]
pub struct Harness {
    // Field order is drop order: the source stops before its files go.
    source: SourceInstance,
    real_locks: std::sync::Mutex<Vec<RealLock>>,
    relay: Option<Relay>,
    real: Option<RealTarget>,
    fake: Option<FakeBackupd>,
    /// The event log: the fake's, or the relay's in front of a real target.
    recorder: Arc<Shared>,
    target: Target,
    rt: tokio::runtime::Runtime,
    client: SyncClient,
    sync_timeout: Duration,
    sandbox: Option<tempfile::TempDir>,
    sandbox_reg: crate::cyrus::process::SandboxRegistration,
    sandbox_path: PathBuf,
    control_addr: Option<std::net::SocketAddr>,
    /// Where and as whom the client connects (for the runner's own reads).
    reader: crate::reader::Target,
}

impl Harness {
    /// Start the fake and a fresh source instance pointing at it.
    pub fn start(opts: HarnessOptions) -> Result<Harness, HarnessError> {
        let parent = opts
            .sandbox_parent
            .clone()
            .unwrap_or_else(|| opts.bins.sandbox_parent());
        let sandbox = tempfile::Builder::new()
            .prefix("backupd-sim-")
            .tempdir_in(&parent)
            .map_err(io_err(format!(
                "creating a sandbox in `{}`",
                parent.display()
            )))?;
        let sandbox_path = sandbox.path().to_owned();
        let sandbox_reg = crate::cyrus::process::SandboxRegistration::new(&sandbox_path, opts.keep);
        // Cyrus runs as `cyrus` and must be able to enter the sandbox.
        std::fs::set_permissions(
            &sandbox_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .map_err(io_err(format!(
            "opening `{}` to the cyrus user",
            sandbox_path.display()
        )))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(io_err("starting the tokio runtime"))?;
        let store = Store::temporary().map_err(io_err("creating the body store"))?;
        let mut server = opts.server.clone();
        // Verdicts rest on what the target acknowledged, read by read.
        server.history = true;
        server.session.personality = match opts.target {
            Target::FakeSyncServer => crate::session::Personality::SyncServer,
            _ => opts.personality,
        };
        let (mut authname, mut password) = (
            server.session.credentials.user.clone(),
            server.session.credentials.password.clone(),
        );
        let listen: std::net::SocketAddr = "127.0.0.1:0".parse().expect("literal address");
        let (fake, real, relay, recorder, port) = match &opts.target {
            Target::Fake | Target::FakeSyncServer => {
                let fake = rt
                    .block_on(FakeBackupd::start(listen, store, server))
                    .map_err(io_err("starting the fake backupd on 127.0.0.1:0"))?;
                let recorder = Arc::clone(fake.shared());
                let port = fake.addr().port();
                (Some(fake), None, None, recorder, port)
            }
            Target::Real(kind) => {
                let real = RealTarget::start(
                    *kind,
                    &opts.bins,
                    &sandbox_path.join("target"),
                    &authname,
                    &password,
                )?;
                let recorder = Shared::new(store, server);
                let relay = rt
                    .block_on(Relay::start(listen, real.addr(), Arc::clone(&recorder)))
                    .map_err(io_err("starting the recording relay on 127.0.0.1:0"))?;
                let port = relay.addr().port();
                (None, Some(real), Some(relay), recorder, port)
            }
            Target::Remote {
                addr,
                authname: a,
                password: p,
            } => {
                authname.clone_from(a);
                password.clone_from(p);
                let recorder = Shared::new(store, server);
                let relay = rt
                    .block_on(Relay::start(listen, *addr, Arc::clone(&recorder)))
                    .map_err(io_err("starting the recording relay on 127.0.0.1:0"))?;
                let port = relay.addr().port();
                (None, None, Some(relay), recorder, port)
            }
        };
        let control_addr = if opts.control {
            let shared = Arc::clone(&recorder);
            let listener = rt
                .block_on(control::bind(
                    "127.0.0.1:0".parse().expect("literal address"),
                    false,
                ))
                .map_err(io_err("binding the control endpoint on 127.0.0.1:0"))?;
            let addr = listener.local_addr().map_err(io_err("control address"))?;
            rt.spawn(control::serve_control(listener, shared));
            Some(addr)
        } else {
            None
        };
        let reader = crate::reader::Target {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            authname: authname.clone(),
            password: password.clone(),
        };
        let mut channel = Channel::new(CHANNEL, port);
        channel.authname = authname;
        channel.password = opts.client_password.clone().unwrap_or(password);
        channel.repeat_interval_secs = opts.repeat_interval_secs;
        channel.sync_timeout_secs = opts.channel_sync_timeout;
        channel.batchsize = opts.batchsize;
        let mut source_opts = SourceOptions::new(opts.bins.clone(), sandbox_path.join("source"));
        source_opts.channels = vec![channel];
        source_opts.sync_log = opts.sync_log;
        let source = SourceInstance::start(&source_opts)?;
        let client = SyncClient::new(&opts.bins, source.config_path());
        let sandbox = if opts.keep {
            let _ = sandbox.keep();
            None
        } else {
            Some(sandbox)
        };
        Ok(Harness {
            source,
            real_locks: std::sync::Mutex::new(Vec::new()),
            relay,
            real,
            fake,
            recorder,
            target: opts.target.clone(),
            rt,
            client,
            sync_timeout: opts.sync_timeout,
            sandbox,
            sandbox_reg,
            sandbox_path,
            control_addr,
            reader,
        })
    }

    /// Keep the sandbox directory after the harness is dropped.
    pub fn keep_sandbox(&mut self) {
        if let Some(t) = self.sandbox.take() {
            let _ = t.keep();
        }
        self.sandbox_reg.keep();
    }

    /// The control endpoint, when [`HarnessOptions::control`] was set.
    pub fn control_addr(&self) -> Option<std::net::SocketAddr> {
        self.control_addr
    }

    /// Apply a control request directly (what `backupd-sim ctl` sends).
    pub fn ctl(&self, req: &control::Request) -> Result<crate::fault::Status, String> {
        control::apply(self.fake(), req)
    }

    /// Lock `user` as another connection holding its backup would.
    pub fn lock_user(&self, user: &str) {
        let req = control::Request::Lock {
            lock: crate::fault::LockSpec {
                user: Some(user.to_owned()),
                ..crate::fault::LockSpec::default()
            },
        };
        self.ctl(&req).expect("a user lock is always valid");
    }

    /// Close every lock on `user`.
    pub fn unlock_user(&self, user: &str) {
        let _ = self.ctl(&control::Request::Unlock {
            name: user.to_owned(),
        });
    }

    /// The source instance.
    pub fn source(&self) -> &SourceInstance {
        &self.source
    }

    /// The sandbox directory.
    pub fn sandbox(&self) -> &Path {
        &self.sandbox_path
    }

    /// The shared state that records the conversation: the fake's (store,
    /// engine, event log), or the relay's in front of a real target (its event
    /// log and clock; its store and engine stay unused).
    pub fn fake(&self) -> &Arc<Shared> {
        &self.recorder
    }

    /// Where the client connects: the fake, or the relay.
    pub fn fake_addr(&self) -> std::net::SocketAddr {
        match (&self.fake, &self.relay) {
            (Some(f), _) => f.addr(),
            (None, Some(r)) => r.addr(),
            (None, None) => unreachable!("a harness has a fake or a relay"),
        }
    }

    /// The server replicated to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The greeting's `* OK` line a relayed target (real or `HOST:PORT`)
    /// sent last; none for the fake in process, or before any connection.
    pub fn target_greeting(&self) -> Option<String> {
        self.relay.as_ref().and_then(Relay::greeting)
    }

    /// What the target is: the fake's personality, the real target's kind,
    /// or for a `HOST:PORT` target what its greeting says
    /// ([`kind_from_greeting`]); `None` for a `HOST:PORT` target whose greeting
    /// names neither (or before any connection got one). The one place the
    /// run asks whether the target is a backupd or a replica.
    pub fn target_kind(&self) -> Option<TargetKind> {
        match &self.target {
            Target::Fake => Some(match self.fake().session_config().personality {
                crate::session::Personality::Backupd => TargetKind::Backupd,
                crate::session::Personality::SyncServer => TargetKind::SyncServer,
            }),
            Target::FakeSyncServer => Some(TargetKind::SyncServer),
            Target::Real(kind) => Some(*kind),
            Target::Remote { .. } => self
                .target_greeting()
                .as_deref()
                .and_then(kind_from_greeting),
        }
    }

    /// The real target, when one was started.
    pub fn real_target(&self) -> Option<&RealTarget> {
        self.real.as_ref()
    }

    /// Run `sync_client -n backup ARGS…` to its end (or the timeout).
    pub fn sync(&self, args: &[&str]) -> Result<SyncRun, HarnessError> {
        self.sync_with_timeout(args, self.sync_timeout)
    }

    /// Like [`Harness::sync`] with its own timeout.
    pub fn sync_with_timeout(
        &self,
        args: &[&str],
        timeout: Duration,
    ) -> Result<SyncRun, HarnessError> {
        let mut argv: Vec<String> = vec!["-n".into(), CHANNEL.into()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        let run = self.client.run(&argv, timeout);
        self.settle_target();
        Ok(run?)
    }

    /// After a client has ended: wait (at most [`SETTLE_TIMEOUT`]) until a
    /// relayed target has closed the connections of clients that have gone.
    /// A real backupd lets go of a user's lock only then, so the next client
    /// or read would otherwise meet a lock nobody holds any more
    /// ([`Relay::settle`]). With no client of this harness alive it waits
    /// for every connection (a reaped client's end may not have reached the
    /// relay yet); with one alive (a continuous client), for those the relay
    /// has seen their client leave. False if one is still open at the
    /// deadline (the run goes on then, as it did before this wait). True at
    /// once on the fake, which has no relay in front of it.
    pub fn settle_target(&self) -> bool {
        let which = if self.client.alive() == 0 {
            Settle::All
        } else {
            Settle::Gone
        };
        self.relay
            .as_ref()
            .is_none_or(|r| r.settle(which, SETTLE_TIMEOUT))
    }

    /// The sync_client runner (for spawning continuous modes).
    pub fn client(&self) -> &SyncClient {
        &self.client
    }

    /// The fake's store as a [`MailState`] (empty for a real target: use
    /// [`Harness::read_backup`]).
    pub fn backup_state(&self) -> MailState {
        self.fake
            .as_ref()
            .map(|f| f.shared().store().mail_state())
            .unwrap_or_default()
    }

    /// The fake's stored backups as JSON (the state file's `users`, without
    /// bodies), or `None` for a real target: what a kept sandbox's
    /// `fake-store.json` shows.
    pub fn fake_store_json(&self) -> Option<String> {
        let f = self.fake.as_ref()?;
        serde_json::to_string_pretty(f.shared().store().users()).ok()
    }

    /// What the target holds for `users`, and the scope it can be compared at:
    /// the fake's store, a real backupd read with `cyr_backup` and its index, or
    /// a replica read over IMAP. A `HOST:PORT` target cannot be read.
    pub fn read_backup(&self, users: &[&str]) -> Result<(MailState, StateScope), HarnessError> {
        match (&self.target, &self.real) {
            (Target::Fake | Target::FakeSyncServer, _) => {
                let mut state = self.backup_state();
                state.users.retain(|u, _| users.contains(&u.as_str()));
                // The backupd personality keeps no quota, as backupd;
                // the sync_server personality does (docs/oracle.md).
                let scope = if self.target == Target::FakeSyncServer {
                    StateScope::Full
                } else {
                    StateScope::Backup
                };
                Ok((state, scope))
            }
            (Target::Real(_), Some(real)) => Ok((real.read_state(users)?, real.state_scope())),
            (other, _) => Err(HarnessError::Unsupported(format!(
                "the contents of {} cannot be read back",
                other.name()
            ))),
        }
    }

    /// Read `users` on the source and compare them with the backup (only those
    /// users on both sides), both cut down to what the target can show.
    pub fn compare(&self, users: &[&str]) -> Result<Comparison, HarnessError> {
        let source = self.source.read_state(users)?;
        let (backup, scope) = self.read_backup(users)?;
        Ok(compare(&scope.project(&source), &scope.project(&backup)))
    }

    /// Bodies problems on the fake (see [`Store::verify_bodies`]); a real
    /// target keeps its own bodies, so none are reported for it.
    pub fn verify_bodies(&self) -> Vec<String> {
        self.verify_bodies_of(&[])
    }

    /// [`Harness::verify_bodies`] of these users' backups only (empty: all):
    /// a run's own, when earlier runs on the same fake left theirs.
    pub fn verify_bodies_of(&self, users: &[&str]) -> Vec<String> {
        self.fake
            .as_ref()
            .map(|f| {
                f.shared()
                    .store()
                    .verify_bodies_of(|u| users.is_empty() || users.contains(&u))
            })
            .unwrap_or_default()
    }

    /// Commands of this label the fake received so far.
    pub fn count(&self, verb: &str) -> u64 {
        self.fake().events().count(verb)
    }

    /// Read every one of `users` on the target over csync (`GET USER`, `GET
    /// FULLMAILBOX`), through the address the client uses, so that the
    /// history records what the target holds; nothing goes to the event log.
    pub fn read_target(
        &self,
        users: &[String],
        quota_roots: &[String],
    ) -> Result<(), crate::reader::ReadError> {
        let shared = self.fake();
        shared.set_quiet(true);
        let r = crate::reader::read_users(&self.reader, users, quota_roots, self.sync_timeout);
        shared.set_quiet(false);
        r
    }

    /// The fake's transcript so far.
    pub fn transcript(&self) -> String {
        self.fake().events().transcript()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.source.stop();
        let _ = self.clear();
        drop(self.relay.take());
        if let Some(mut r) = self.real.take() {
            let _ = r.stop();
        }
        if let Some(f) = self.fake.take() {
            self.rt.block_on(f.stop());
        }
        drop(self.sandbox.take());
    }
}
