//! A real Cyrus source, the fake backupd and the real `sync_client`, wired
//! together in one sandbox directory.
//!
//! [`Harness::start`] starts the fake on `127.0.0.1:0` in its own tokio runtime
//! and a source instance whose `backup` channel points at it. Everything stops
//! when the harness is dropped (the source by PID, the fake with its runtime);
//! the sandbox is removed unless it was asked to be kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::check::{compare, Comparison};
use crate::cyrus::{
    Channel, CyrusBins, CyrusError, SourceInstance, SourceOptions, SyncClient, SyncRun,
};
use crate::mailstate::MailState;
use crate::server::{control, FakeBackupd, ServerConfig, Shared};
use crate::session::Credentials;
use crate::store::Store;

/// The channel name the source replicates to the fake on.
pub const CHANNEL: &str = "backup";

/// Why a harness could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A Cyrus piece failed.
    #[error(transparent)]
    Cyrus(#[from] CyrusError),
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
            personality: crate::session::Personality::Backupd,
        }
    }
}

/// Source, fake and client together.
#[derive(Debug)]
pub struct Harness {
    // Field order is drop order: the source stops before its files go.
    source: SourceInstance,
    fake: Option<FakeBackupd>,
    rt: tokio::runtime::Runtime,
    client: SyncClient,
    sync_timeout: Duration,
    sandbox: Option<tempfile::TempDir>,
    sandbox_reg: crate::cyrus::process::SandboxRegistration,
    sandbox_path: PathBuf,
    control_addr: Option<std::net::SocketAddr>,
}

impl Harness {
    /// Start the fake and a fresh source instance pointing at it.
    pub fn start(opts: HarnessOptions) -> Result<Harness, HarnessError> {
        let parent = opts
            .sandbox_parent
            .clone()
            .unwrap_or_else(std::env::temp_dir);
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
        server.session.personality = opts.personality;
        let creds: Credentials = server.session.credentials.clone();
        let fake = rt
            .block_on(FakeBackupd::start(
                "127.0.0.1:0".parse().expect("literal address"),
                store,
                server,
            ))
            .map_err(io_err("starting the fake backupd on 127.0.0.1:0"))?;
        let control_addr = if opts.control {
            let shared = Arc::clone(fake.shared());
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
        let mut channel = Channel::new(CHANNEL, fake.addr().port());
        channel.authname = creds.user;
        channel.password = opts.client_password.clone().unwrap_or(creds.password);
        channel.repeat_interval_secs = opts.repeat_interval_secs;
        channel.sync_timeout_secs = opts.channel_sync_timeout;
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
            fake: Some(fake),
            rt,
            client,
            sync_timeout: opts.sync_timeout,
            sandbox,
            sandbox_reg,
            sandbox_path,
            control_addr,
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

    /// The fake's shared state (store, event log).
    pub fn fake(&self) -> &Arc<Shared> {
        self.fake
            .as_ref()
            .expect("the fake runs until the harness is dropped")
            .shared()
    }

    /// The fake's address.
    pub fn fake_addr(&self) -> std::net::SocketAddr {
        self.fake
            .as_ref()
            .expect("the fake runs until the harness is dropped")
            .addr()
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
        Ok(self.client.run(&argv, timeout)?)
    }

    /// The sync_client runner (for spawning continuous modes).
    pub fn client(&self) -> &SyncClient {
        &self.client
    }

    /// The backup's contents, projected for comparison.
    pub fn backup_state(&self) -> MailState {
        self.fake().store().mail_state()
    }

    /// Read `users` on the source and compare them with the backup (only those
    /// users on both sides).
    pub fn compare(&self, users: &[&str]) -> Result<Comparison, HarnessError> {
        let source = self.source.read_state(users)?;
        let mut backup = self.backup_state();
        backup.users.retain(|u, _| users.contains(&u.as_str()));
        Ok(compare(&source, &backup))
    }

    /// Bodies problems on the fake (see [`Store::verify_bodies`]).
    pub fn verify_bodies(&self) -> Vec<String> {
        self.fake().store().verify_bodies()
    }

    /// Commands of this label the fake received so far.
    pub fn count(&self, verb: &str) -> u64 {
        self.fake().events().count(verb)
    }

    /// The fake's transcript so far.
    pub fn transcript(&self) -> String {
        self.fake().events().transcript()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.source.stop();
        if let Some(f) = self.fake.take() {
            self.rt.block_on(f.stop());
        }
        drop(self.sandbox.take());
    }
}
