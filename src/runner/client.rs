//! The continuous `sync_client -R`, supervised under an operator policy.
//!
//! A supervisor thread watches the client; when it exits, the policy decides:
//! leave it down, restart it, or delete its `log-run` and restart it (the
//! watcher script that loses changes). Every run's output is kept for the
//! report. Restarts are bounded.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::cyrus::{RunningSyncClient, SyncClient, SyncRun};
use crate::scenario::Policy;

/// Most restarts one scenario's policy may make.
pub const RESTARTS_MAX: u32 = 50;

/// Shared between the runner and the supervisor thread.
#[derive(Debug, Default)]
struct State {
    /// When each client exited (its status) or was restarted, on the caller's clock.
    life: Mutex<Vec<(u64, Life)>>,
    runs: Mutex<Vec<SyncRun>>,
    current_pid: Mutex<Option<u32>>,
    stopping: AtomicBool,
    restarts: AtomicU32,
    errors: Mutex<Vec<String>>,
}

/// What happened to the supervised client, for the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// It exited with this status (`None`: killed by a signal).
    Exit(Option<i32>),
    /// The policy started it again.
    Restart,
}

/// The time source the supervisor stamps [`Life`] events with.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A supervised continuous client.
#[derive(Debug)]
pub struct Supervised {
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl Supervised {
    /// Start `sync_client ARGS` and supervise it under `policy`;
    /// `log_run` is the channel's `log-run` (deleted by `RestartDiscardLog`).
    pub fn start(
        client: SyncClient,
        args: Vec<String>,
        policy: Policy,
        log_run: PathBuf,
        clock: Clock,
    ) -> Result<Supervised, String> {
        let hold = client.hold();
        let first = client.spawn(&args).map_err(|e| e.to_string())?;
        let state = Arc::new(State::default());
        *state.current_pid.lock().unwrap_or_else(|e| e.into_inner()) = first.pid();
        let st = Arc::clone(&state);
        let thread = std::thread::spawn(move || {
            // A client counts as alive while the supervisor may restart one,
            // so the gap between an exit and a restart is not "no client".
            let _hold = hold;
            supervise(client, args, policy, log_run, first, &st, &*clock);
        });
        Ok(Supervised {
            state,
            thread: Some(thread),
        })
    }

    /// SIGKILL the running client (the policy may restart it).
    pub fn kill(&self) {
        if let Some(pid) = *self
            .state
            .current_pid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            crate::cyrus::process::signal(pid as i32, nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// True while a client process runs.
    pub fn running(&self) -> bool {
        self.state
            .current_pid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Restarts made so far.
    pub fn restarts(&self) -> u32 {
        self.state.restarts.load(Ordering::Relaxed)
    }

    /// Stop supervising, stop the client (SIGTERM, then SIGKILL after 10 s),
    /// and return every run's output, the restarts, supervision errors and the
    /// exits and restarts with their times.
    pub fn stop(mut self) -> Stopped {
        self.state.stopping.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        fn take<T>(m: &Mutex<Vec<T>>) -> Vec<T> {
            std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner()))
        }
        Stopped {
            runs: take(&self.state.runs),
            restarts: self.restarts(),
            errors: take(&self.state.errors),
            life: take(&self.state.life),
        }
    }
}

/// What [`Supervised::stop`] returns.
#[derive(Debug)]
pub struct Stopped {
    /// Every run's output.
    pub runs: Vec<SyncRun>,
    /// Restarts the policy made.
    pub restarts: u32,
    /// Supervision trouble.
    pub errors: Vec<String>,
    /// Exits and restarts with their times.
    pub life: Vec<(u64, Life)>,
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.state.stopping.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn supervise(
    client: SyncClient,
    args: Vec<String>,
    policy: Policy,
    log_run: PathBuf,
    first: RunningSyncClient,
    st: &State,
    clock: &(dyn Fn() -> u64 + Send + Sync),
) {
    let life = |e: Life| {
        st.life
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((clock(), e))
    };
    let mut current = Some(first);
    let record = |r: Result<SyncRun, crate::cyrus::CyrusError>| match r {
        Ok(run) => st.runs.lock().unwrap_or_else(|e| e.into_inner()).push(run),
        Err(e) => st
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(e.to_string()),
    };
    loop {
        let Some(c) = current.as_mut() else { return };
        if st.stopping.load(Ordering::SeqCst) {
            record(c.stop(Duration::from_secs(10)));
            *st.current_pid.lock().unwrap_or_else(|e| e.into_inner()) = None;
            return;
        }
        if c.is_running() {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let result = c.wait(Duration::from_secs(5));
        life(Life::Exit(result.as_ref().ok().and_then(|r| r.status)));
        record(result);
        *st.current_pid.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let restart = match policy {
            Policy::None => false,
            Policy::Restart => true,
            Policy::RestartDiscardLog => {
                let _ = std::fs::remove_file(&log_run);
                true
            }
        };
        if !restart || st.restarts.load(Ordering::Relaxed) >= RESTARTS_MAX {
            return;
        }
        match client.spawn(&args) {
            Ok(c) => {
                st.restarts.fetch_add(1, Ordering::Relaxed);
                life(Life::Restart);
                *st.current_pid.lock().unwrap_or_else(|e| e.into_inner()) = c.pid();
                current = Some(c);
            }
            Err(e) => {
                st.errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("restart failed: {e}"));
                return;
            }
        }
    }
}
