//! The sync_client's life in a run: hand-run clients holding a user's sync
//! lock (`hold_sync_lock`), stopping the continuous client, the shutdown, the
//! synclog step, and the catch-up passes that end every run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cyrus::SyncRun;
use crate::scenario::Step;
use crate::server::HoldPhase;

use super::client;
use super::judge::check;
use super::{Run, CATCH_UP};

/// How long a hand-run client (`hold_sync_lock`) may take to finish its `-u`
/// once its lock is released.
const HAND_RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A hand-run `sync_client -u USER` whose `GET USER` the fake holds: it
/// holds the user's sync lock on the source meanwhile.
pub(super) struct Holder {
    pub(super) name: String,
    pub(super) hold: u64,
    pub(super) client: crate::cyrus::RunningSyncClient,
    pub(super) since_us: u64,
}

impl Run<'_> {
    /// Start a hand-run `sync_client -u USER` and wait until the fake holds its
    /// `GET USER`: sync_client took the user's sync lock before sending it.
    pub(super) fn hold_sync_lock(
        &mut self,
        l: &crate::scenario::SyncLockSpec,
    ) -> Result<(), String> {
        if !self.h.target().is_fake() {
            return Err(
                "hold_sync_lock needs the fake: it holds the hand-run client's GET USER".into(),
            );
        }
        let name = l.name();
        if self.holders.iter().any(|h| h.name == name) {
            return Err(format!("the sync lock `{name}` is held already"));
        }
        let m = crate::fault::Match {
            verb: Some("GET USER".into()),
            user: Some(l.user.clone()),
            ..crate::fault::Match::default()
        };
        let hold = self.h.fake().add_hold(m, 1);
        let args: Vec<String> = ["-n", crate::harness::CHANNEL, "-v", "-v", "-u", &l.user]
            .map(String::from)
            .to_vec();
        let mut client = match self.h.client().spawn(&args) {
            Ok(c) => c,
            Err(e) => {
                self.h.fake().release_hold(hold);
                return Err(format!("starting the hand-run client: {e}"));
            }
        };
        self.note(
            crate::timeline::AnnotationKind::ClientStart,
            format!("hand-run sync_client -u {} ({name})", l.user),
        );
        let deadline = Instant::now() + Duration::from_millis(l.timeout_ms);
        loop {
            if self.h.fake().hold_phase(hold) == Some(HoldPhase::Reached) {
                break;
            }
            let failed = if !client.is_running() {
                Some("exited before its GET USER arrived")
            } else if Instant::now() > deadline {
                Some("sent no GET USER in time")
            } else {
                None
            };
            if let Some(why) = failed {
                self.h.fake().release_hold(hold);
                let run = client
                    .stop(Duration::from_secs(5))
                    .map_err(|e| e.to_string())?;
                return Err(format!(
                    "the hand-run sync_client -u {} {why}:\n{run}",
                    l.user
                ));
            }
            self.serve_triggers()?;
            std::thread::sleep(Duration::from_millis(10));
        }
        let since_us = self.h.fake().now_us();
        self.holders.push(Holder {
            name,
            hold,
            client,
            since_us,
        });
        Ok(())
    }

    /// Let a hand-run client's `GET USER` go on and wait (bounded) for it to end.
    pub(super) fn release_sync_lock(&mut self, name: &str) -> Result<SyncRun, String> {
        let i = self
            .holders
            .iter()
            .position(|h| h.name == name)
            .ok_or_else(|| format!("no sync lock `{name}` is held"))?;
        let mut h = self.holders.remove(i);
        self.h.fake().release_hold(h.hold);
        let run = h.client.wait(HAND_RUN_TIMEOUT).map_err(|e| e.to_string())?;
        let now = self.h.fake().now_us();
        self.source_windows.push((h.since_us, now));
        self.note_exit("hand-run sync_client", &run, &format!(" ({name} released)"));
        Ok(run)
    }

    /// Note the time when any lock window is open (the fake's, a real
    /// target's, a held sync lock, a skipuser file).
    pub(super) fn see_locks(&mut self) {
        let open = !self.h.fake().engine().active_locks().is_empty()
            || self.h.open_locks() > 0
            || !self.holders.is_empty()
            || !self.skipped.is_empty();
        if open {
            self.last_lock_us = Some(self.h.fake().now_us());
        }
    }

    /// `<configdirectory>/sync/<channel>/skipuser-USER`.
    pub(super) fn skipuser_path(&self, user: &str) -> PathBuf {
        self.h
            .source()
            .sync_log_path(crate::harness::CHANNEL)
            .with_file_name(format!("skipuser-{user}"))
    }

    pub(super) fn stop_client(&mut self) {
        if let Some(c) = self.client.take() {
            let stopped_at = Instant::now();
            self.note(
                crate::timeline::AnnotationKind::ClientExit { status: None },
                "continuous sync_client stopped",
            );
            let stopped = c.stop();
            // A real backupd may still hold the stopped client's locks.
            self.h.settle_target();
            for (t, e) in stopped.life {
                let (kind, label) = match e {
                    client::Life::Exit(status) => (
                        crate::timeline::AnnotationKind::ClientExit { status },
                        format!(
                            "sync_client exited {}",
                            status.map_or_else(|| "(signal)".into(), |s| s.to_string())
                        ),
                    ),
                    client::Life::Restart => (
                        crate::timeline::AnnotationKind::ClientRestart,
                        "restarted by the policy".to_owned(),
                    ),
                };
                self.annotations
                    .push(crate::timeline::Annotation::new(t, kind, label));
            }
            self.runs.extend(stopped.runs);
            self.restarts += stopped.restarts;
            for e in stopped.errors {
                self.checks.push(check("continuous client", false, e));
            }
            if let Some(t) = self.client_started.take() {
                self.timing.continuous += (stopped_at - t).as_secs_f64();
            }
            self.timing.lap("stop the continuous client", stopped_at);
        }
    }

    /// Release every hold, clear locks and faults, stop the client.
    pub(super) fn shutdown(&mut self) {
        for t in std::mem::take(&mut self.triggers) {
            self.h.fake().release_hold(t.id);
        }
        // Source-side locks go too: held sync locks are released (their
        // clients finish), skipuser files removed.
        let names: Vec<String> = self.holders.iter().map(|h| h.name.clone()).collect();
        for name in names {
            match self.release_sync_lock(&name) {
                Ok(run) => {
                    if run.timed_out {
                        self.checks.push(check(
                            format!("hand-run client {name}"),
                            false,
                            format!("killed at the timeout:\n{run}"),
                        ));
                    }
                    self.runs.push(run);
                }
                Err(e) => self
                    .checks
                    .push(check(format!("hand-run client {name}"), false, e)),
            }
        }
        let skipped: Vec<String> = self.skipped.iter().map(|(u, _)| u.clone()).collect();
        for user in skipped {
            if let Err(e) = self.change_inner(0, &Step::UnskipUser(user.clone())) {
                self.checks
                    .push(check(format!("skipuser-{user}"), false, e));
            }
        }
        let _ = self.h.clear();
        self.stop_client();
    }

    /// Queue one sync log entry with `cyr_synclog` (as the cyrus user: it
    /// drops privileges itself).
    pub(super) fn synclog(&mut self, q: &crate::scenario::SynclogSpec) -> Result<(), String> {
        let (_, flag, names_mailbox) = crate::scenario::SYNCLOG_KINDS
            .iter()
            .find(|(k, _, _)| *k == q.kind)
            .ok_or_else(|| format!("unknown synclog kind `{}`", q.kind))?;
        let mailbox = crate::cyrus::to_internal_name(&q.user, &q.folder);
        let mut values = match q.kind.as_str() {
            "seen" => {
                let state = self
                    .h
                    .source()
                    .read_state(&[q.user.as_str()])
                    .map_err(|e| e.to_string())?;
                let uniqueid = state
                    .users
                    .get(&q.user)
                    .and_then(|u| u.mailboxes.get(&mailbox))
                    .and_then(|m| m.uniqueid.clone())
                    .ok_or_else(|| format!("no uniqueid for {mailbox} on the source"))?;
                vec![q.user.clone(), uniqueid]
            }
            "sub" => vec![q.user.clone(), mailbox],
            _ if *names_mailbox => vec![mailbox],
            _ => vec![q.user.clone()],
        };
        let conf = self
            .opts
            .bins
            .inside(self.h.source().config_path())
            .map_err(|e| e.to_string())?;
        let mut cmd = self.opts.bins.command("cyr_synclog");
        cmd.arg("-C").arg(conf).arg(flag).args(values.drain(..));
        let shown = format!("{cmd:?}");
        let out = crate::cyrus::target::run_bounded(cmd, Duration::from_secs(30))
            .map_err(|e| e.to_string())?;
        if out.code != Some(0) {
            return Err(format!(
                "{shown}: exit {:?}: {}{}",
                out.code,
                out.stdout.trim(),
                out.stderr.trim()
            ));
        }
        Ok(())
    }

    /// Locks and faults cleared, client stopped, then `-R -1` until the
    /// channel log is drained (at most 3 passes).
    pub(super) fn catch_up(&mut self) -> Result<(), String> {
        self.shutdown();
        self.step_runs = Some(self.runs.len());
        // What the target holds of everything it acknowledged, before a pass
        // can carry anything again.
        self.read_target("the runner's read before the catch-up");
        if !self.s.client.sync_log {
            return Ok(());
        }
        self.h.fake().history_mark(CATCH_UP);
        self.catch_up_passes()?;
        self.read_target("the runner's read after the catch-up");
        Ok(())
    }

    pub(super) fn catch_up_passes(&mut self) -> Result<(), String> {
        let t = Instant::now();
        let done = self.catch_up_passes_inner();
        self.timing.lap("catch-up sync", t);
        done
    }

    pub(super) fn catch_up_passes_inner(&mut self) -> Result<(), String> {
        let src = self.h.source();
        for _ in 0..3 {
            let log = src.sync_log_path(crate::harness::CHANNEL);
            let run_file = src.sync_log_run_path(crate::harness::CHANNEL);
            if !log.exists() && !run_file.exists() {
                break;
            }
            let run = self
                .h
                .sync(&["-v", "-v", "-R", "-1"])
                .map_err(|e| e.to_string())?;
            self.runs.push(run);
        }
        Ok(())
    }
}
