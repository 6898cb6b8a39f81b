//! Running a scenario's steps: the set-up and baseline, each step in order
//! (client runs, changes, locks, faults, triggers, waits), and the counts a
//! step asks of the event log.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cyrus::SyncRun;
use crate::events::EventKind;
use crate::harness::Target;
use crate::populate;
use crate::scenario::{ExitExpect, ExitWant, Mode, Step, SyncSpec};
use crate::server::HoldPhase;

use super::client::Supervised;
use super::judge::check;
use super::{Run, Trigger};

/// The timing phase a step's time goes to.
fn step_phase(step: &Step) -> &'static str {
    match step {
        Step::Sync(_) => "sync steps",
        Step::WaitMs(_) | Step::WaitFor(_) => "waits",
        Step::ExpectCount(_) => "step checks",
        Step::Start | Step::Stop | Step::Kill => "continuous client control",
        Step::Lock(_) | Step::Unlock(_) | Step::Fault(_) | Step::Clear | Step::Mark(_) => {
            "locks and faults"
        }
        Step::Trigger { .. } => "triggers",
        Step::HoldSyncLock(_)
        | Step::ReleaseSyncLock { .. }
        | Step::SkipUser(_)
        | Step::UnskipUser(_) => "source-side locks",
        _ => "source changes",
    }
}

impl Run<'_> {
    pub(super) fn note(&mut self, kind: crate::timeline::AnnotationKind, label: impl Into<String>) {
        let t = self.h.fake().now_us();
        self.annotations
            .push(crate::timeline::Annotation::new(t, kind, label));
    }

    /// Note a one-shot client's exit on the timeline: "`who` exited N", or
    /// "(killed)", then `why` when given.
    pub(super) fn note_exit(&mut self, who: &str, run: &SyncRun, why: &str) {
        let status = run
            .status
            .map_or_else(|| "(killed)".into(), |s| s.to_string());
        self.note(
            crate::timeline::AnnotationKind::ClientExit { status: run.status },
            format!("{who} exited {status}{why}"),
        );
    }

    pub(super) fn execute(&mut self) -> Result<(), String> {
        self.setup()?;
        self.setup_seq = self.h.fake().events().events().last().map_or(0, |e| e.seq);
        for (i, step) in self.s.steps.iter().enumerate() {
            self.serve_triggers()?;
            self.note(
                crate::timeline::AnnotationKind::Step,
                format!("step {}: {}", i + 1, step.describe()),
            );
            self.h.fake().history_mark(&format!("step {}", i + 1));
            // A window closed by this step ends now.
            self.see_locks();
            let t = Instant::now();
            let done = self.step(i + 1, step);
            self.timing.lap(step_phase(step), t);
            done.map_err(|e| format!("step {} ({}): {e}", i + 1, step.describe()))?;
        }
        // Required triggers still pending get until their deadline to be reached.
        for t in self.triggers.iter().filter(|t| !t.required) {
            self.h.fake().release_hold(t.id);
        }
        self.triggers.retain(|t| t.required);
        let t = Instant::now();
        let mut seen = self.h.fake().pokes();
        while !self.triggers.is_empty() {
            self.serve_triggers()?;
            if !self.triggers.is_empty() {
                seen = self.h.fake().wait_poke(seen, self.next_wake());
            }
        }
        self.timing.lap("waits", t);
        if self.s.expect.catch_up {
            self.catch_up()?;
        } else {
            self.shutdown();
            self.read_target("the runner's read after the steps");
        }
        Ok(())
    }

    /// Read every user the target acknowledged a write for, over csync, so
    /// that the history holds what the target has now (see
    /// [`crate::history`]). A failed read is a failed check: the verdict must
    /// not rest on reads that never happened.
    pub(super) fn read_target(&mut self, phase: &str) {
        let (users, roots) = match self.h.fake().history() {
            Some(h) => (h.users_written(), h.quota_roots_written()),
            None => return,
        };
        if users.is_empty() {
            return;
        }
        // Only a replica keeps quota (backupd refuses `GET QUOTA`).
        let roots = if self.target_keeps_quota() {
            roots
        } else {
            Vec::new()
        };
        self.h.fake().history_mark(phase);
        let t = Instant::now();
        let read = self.h.read_target(&users, &roots);
        self.timing.lap("target reads", t);
        if let Err(e) = read {
            self.checks.push(check(
                format!("{phase} of the target"),
                false,
                e.to_string(),
            ));
        }
    }

    pub(super) fn setup(&mut self) -> Result<(), String> {
        if let Some(rng) = self.prepared.take() {
            // The caller filled, replicated and checked the users already.
            self.rng = rng;
            return Ok(());
        }
        let src = self.h.source();
        let t = Instant::now();
        for u in &self.s.users {
            populate::fill_user(src, &u.name, u.messages, &mut self.rng)
                .map_err(|e| format!("filling {}: {e}", u.name))?;
            if !u.fixtures.is_empty() {
                let mut c = src.login_as(&u.name).map_err(|e| e.to_string())?;
                for f in &u.fixtures {
                    let body = populate::fixture(f).ok_or_else(|| format!("no fixture `{f}`"))?;
                    c.append("INBOX", &[], None, body)
                        .map_err(|e| e.to_string())?;
                }
                c.logout().map_err(|e| e.to_string())?;
            }
        }
        let base: Vec<&str> = self
            .s
            .users
            .iter()
            .filter(|u| u.baseline)
            .map(|u| u.name.as_str())
            .collect();
        let t = self.timing.lap("fill users", t);
        if !base.is_empty() {
            let mut args: Vec<&str> = vec!["-u"];
            args.extend(&base);
            let run = self.h.sync(&args).map_err(|e| e.to_string())?;
            if run.status != Some(0) {
                return Err(format!("the baseline `-u` failed:\n{run}"));
            }
            if self.s.client.sync_log {
                let run = self.h.sync(&["-R", "-1"]).map_err(|e| e.to_string())?;
                if run.status != Some(0) {
                    return Err(format!("the baseline rolling pass failed:\n{run}"));
                }
            }
            let t = self.timing.lap("baseline sync", t);
            // A HOST:PORT target cannot be read: its final `-u` pass judges all.
            if matches!(self.h.target(), Target::Remote { .. }) {
                return Ok(());
            }
            let c = self.h.compare(&base).map_err(|e| e.to_string())?;
            self.timing.lap("baseline check", t);
            if !c.converged() {
                return Err(format!("the baseline did not converge:\n{c}"));
            }
        }
        Ok(())
    }

    pub(super) fn sync_args(&self, spec: &SyncSpec) -> Vec<String> {
        let mode = spec.mode.unwrap_or(self.s.client.mode);
        let mut args: Vec<String> = vec!["-v".into(), "-v".into()];
        args.extend(self.s.client.flags.iter().cloned());
        args.extend(spec.flags.iter().cloned());
        match mode {
            Mode::User => {
                args.push("-u".into());
                match &spec.users {
                    Some(u) => args.extend(u.iter().cloned()),
                    None => args.extend(self.s.users.iter().map(|u| u.name.clone())),
                }
            }
            Mode::Mailbox => {
                args.push("-m".into());
                args.extend(spec.mailboxes.iter().flatten().cloned());
            }
            Mode::All => args.push("-A".into()),
            Mode::RollingOnce => {
                args.push("-R".into());
                args.push("-1".into());
            }
            Mode::Rolling => args.push("-R".into()),
        }
        args
    }

    pub(super) fn step(&mut self, n: usize, step: &Step) -> Result<(), String> {
        match step {
            Step::Sync(spec) => {
                let args = self.sync_args(spec);
                self.note(
                    crate::timeline::AnnotationKind::ClientStart,
                    format!("sync_client {}", args.join(" ")),
                );
                // Triggers are served while the client runs: it is the client's
                // command that a trigger holds.
                let h = self.h;
                // Set before the poke that wakes us: the thread itself may
                // still be returning when we look (`is_finished` was false
                // then, and the next wait slept its whole second: a quarter
                // of explore's cases lost a second so).
                let exited = AtomicBool::new(false);
                let run = std::thread::scope(|sc| {
                    let mut seen = h.fake().pokes();
                    let exited = &exited;
                    let t = sc.spawn(move || {
                        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                        let run = h.sync(&argv);
                        exited.store(true, Ordering::SeqCst);
                        h.fake().poke();
                        run
                    });
                    let mut served = Ok(());
                    while !exited.load(Ordering::SeqCst) {
                        if served.is_ok() {
                            served = self.serve_triggers();
                        }
                        // Woken when the client exits or a trigger's command
                        // is held; else at the next trigger deadline (a real
                        // target's lock windows are ticked every 10 ms).
                        seen = h.fake().wait_poke(seen, self.next_wake());
                    }
                    served.and_then(|()| {
                        t.join()
                            .map_err(|_| "the client thread panicked".to_owned())
                    })
                })?
                .map_err(|e| e.to_string())?;
                self.note_exit("sync_client", &run, "");
                self.check_exit(n, spec.expect_exit.as_ref(), &run);
                self.runs.push(run);
                Ok(())
            }
            Step::Start => {
                if self.client.is_some() {
                    return Err("the continuous client is already running".into());
                }
                let mut args = vec![
                    "-n".to_owned(),
                    crate::harness::CHANNEL.to_owned(),
                    "-v".into(),
                    "-v".into(),
                ];
                args.extend(self.s.client.flags.iter().cloned());
                args.push("-R".into());
                let log_run = self.h.source().sync_log_run_path(crate::harness::CHANNEL);
                self.note(
                    crate::timeline::AnnotationKind::ClientStart,
                    "sync_client -R (continuous)",
                );
                let shared = std::sync::Arc::clone(self.h.fake());
                self.client_started = Some(Instant::now());
                self.client = Some(Supervised::start(
                    self.h.client().clone(),
                    args,
                    self.s.client.policy,
                    log_run,
                    std::sync::Arc::new(move || shared.now_us()),
                )?);
                Ok(())
            }
            Step::Stop => {
                self.stop_client();
                Ok(())
            }
            Step::Kill => {
                let c = self
                    .client
                    .as_ref()
                    .ok_or("no continuous client is running")?;
                c.kill();
                Ok(())
            }
            Step::WaitMs(ms) => {
                let until = Instant::now() + Duration::from_millis(*ms);
                while let Some(left) = until.checked_duration_since(Instant::now()) {
                    self.serve_triggers()?;
                    std::thread::sleep(left.min(Duration::from_millis(10)));
                }
                Ok(())
            }
            Step::WaitFor(w) => {
                let deadline = Instant::now() + Duration::from_millis(w.timeout_ms);
                loop {
                    self.see_locks();
                    let have = self.count_event(&w.event, w.verb.as_deref())?;
                    if have >= w.count {
                        if w.event == "converged" && !self.converged_seen {
                            let now = self.h.fake().now_us();
                            self.converge_seconds = self
                                .last_lock_us
                                .map(|t| now.saturating_sub(t) as f64 / 1e6);
                            self.converged_seen = true;
                            self.note(
                                crate::timeline::AnnotationKind::Converged,
                                "backup converged",
                            );
                        }
                        return Ok(());
                    }
                    if Instant::now() > deadline {
                        return Err(format!(
                            "waited {} ms for {} x{}, saw {have}",
                            w.timeout_ms, w.event, w.count
                        ));
                    }
                    self.serve_triggers()?;
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Step::ExpectCount(c) => {
                let check = self.count_check(n, c)?;
                self.checks.push(check);
                Ok(())
            }
            Step::Trigger {
                when,
                then,
                timeout_ms,
                required,
            } => {
                let m = crate::fault::Match {
                    verb: when.verb.as_ref().map(|v| v.to_ascii_uppercase()),
                    user: when.user.clone(),
                    mailbox: when.mailbox.clone(),
                    session: when.session,
                    index: when.index,
                };
                let id = self.h.fake().add_hold(m, when.nth.unwrap_or(1));
                self.triggers.push(Trigger {
                    id,
                    step: n,
                    then: then.clone(),
                    deadline: Instant::now() + Duration::from_millis(*timeout_ms),
                    required: *required,
                });
                Ok(())
            }
            Step::HoldSyncLock(l) => self.hold_sync_lock(l),
            Step::ReleaseSyncLock { name, expect_exit } => {
                let run = self.release_sync_lock(name)?;
                self.check_exit(n, expect_exit.as_ref(), &run);
                self.runs.push(run);
                Ok(())
            }
            other => self.change(n, other),
        }
    }

    /// The checks of a client run's exit against `expect_exit` (none: only
    /// that it ended before its timeout).
    pub(super) fn check_exit(&mut self, n: usize, expect_exit: Option<&ExitExpect>, run: &SyncRun) {
        let want = expect_exit.map(|e| e.for_version(&self.opts.version));
        if let Some(want) = want {
            let ok = match want {
                ExitWant::Code(c) => run.status == Some(c) && !run.timed_out,
                ExitWant::Timeout => run.timed_out,
            };
            self.checks.push(check(
                format!("step {n}: exit status"),
                ok,
                format!(
                    "expected {want} (Cyrus {}), got {}",
                    self.opts.version,
                    if run.timed_out {
                        "still running at the timeout (killed)".into()
                    } else {
                        run.status
                            .map_or_else(|| "none (killed)".into(), |s| s.to_string())
                    }
                ),
            ));
        }
        if run.timed_out && want != Some(ExitWant::Timeout) {
            self.checks.push(check(
                format!("step {n}: finished"),
                false,
                format!("killed at the timeout:\n{run}"),
            ));
        }
    }

    /// How long the runner may wait for a poke before it must look again: the
    /// nearest trigger deadline, every 10 ms for a real target's lock windows
    /// (closed on the runner's watch), at most a second.
    pub(super) fn next_wake(&self) -> Duration {
        if !self.h.target().is_fake() {
            return Duration::from_millis(10);
        }
        let now = Instant::now();
        self.triggers
            .iter()
            .map(|t| t.deadline.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(1), Duration::from_secs(1))
    }

    /// Run the `then` steps of every trigger whose command is held now, then
    /// release it; fail a trigger whose deadline passed unreached.
    pub(super) fn serve_triggers(&mut self) -> Result<(), String> {
        // Real lock windows close on the runner's watch (the fake closes its own).
        self.h.tick().map_err(|e| e.to_string())?;
        let mut pending = std::mem::take(&mut self.triggers);
        let mut result = Ok(());
        pending.retain(|t| {
            if result.is_err() {
                return true;
            }
            match self.h.fake().hold_phase(t.id) {
                Some(HoldPhase::Reached) => {
                    for (i, sub) in t.then.iter().enumerate() {
                        if let Err(e) = self.change(t.step, sub) {
                            result = Err(format!(
                                "step {} trigger action {} ({}): {e}",
                                t.step,
                                i + 1,
                                sub.describe()
                            ));
                            break;
                        }
                    }
                    self.h.fake().release_hold(t.id);
                    false
                }
                Some(HoldPhase::Waiting) if Instant::now() > t.deadline => {
                    self.h.fake().release_hold(t.id);
                    self.checks.push(check(
                        format!("step {}: trigger", t.step),
                        false,
                        "no command matched before its timeout",
                    ));
                    false
                }
                _ => true,
            }
        });
        self.triggers = pending;
        result
    }

    /// The check of an `expect_count` step: the count now, or "not measured"
    /// (failed) when the event log has dropped events after the set-up (a
    /// count that may be short cannot prove a maximum or a minimum).
    fn count_check(
        &self,
        n: usize,
        c: &crate::scenario::ExpectCountSpec,
    ) -> Result<super::Check, String> {
        let name = format!("step {n}: {} count", c.label());
        let first_kept = self.h.fake().events().events().next().map(|e| e.seq);
        let missed = super::judge::missed_after(first_kept, self.setup_seq);
        step_count_check(name, c.range(), missed, || {
            self.count_event(&c.event, c.verb.as_deref())
        })
    }

    pub(super) fn count_event(&self, event: &str, verb: Option<&str>) -> Result<u64, String> {
        Ok(match event {
            "converged"
                if self.client.is_some()
                    && *self.h.target() == Target::Real(crate::cyrus::TargetKind::Backupd) =>
            {
                // A real backupd cannot be read while the continuous client is
                // connected: the idle client keeps each user's backup locked
                // (ctl_backups: rc 75). Wait for what convergence needs instead:
                // the channel log drained and no lock window open; the contents
                // are compared after the client stops.
                let src = self.h.source();
                let empty = |p: PathBuf| std::fs::metadata(p).map_or(true, |m| m.len() == 0);
                u64::from(
                    self.h.open_locks() == 0
                        && empty(src.sync_log_path(crate::harness::CHANNEL))
                        && empty(src.sync_log_run_path(crate::harness::CHANNEL)),
                )
            }
            "converged" => {
                let users = self.s.user_names();
                u64::from(
                    self.h
                        .compare(&users)
                        .map_err(|e| e.to_string())?
                        .converged(),
                )
            }
            "client-exit" => u64::from(self.client.as_ref().is_some_and(|c| !c.running())),
            _ => {
                let events = self.h.fake().events();
                events
                    .events()
                    .filter(|e| e.seq > self.setup_seq)
                    .filter(|e| match (&e.kind, event) {
                        (EventKind::LockHit { .. }, "lock-hit") => true,
                        (EventKind::Fault { .. }, "fault") => true,
                        (EventKind::Connected { .. }, "connections") => true,
                        (EventKind::Command { verb: v, .. }, "command") => {
                            verb.is_none_or(|want| {
                                let want = want.to_ascii_uppercase();
                                *v == want
                                    || v.strip_prefix(want.as_str())
                                        .is_some_and(|r| r.starts_with(' '))
                            })
                        }
                        _ => false,
                    })
                    .count() as u64
            }
        })
    }
}

/// An `expect_count` step's check: `count()` within `range`, or failed as
/// "not measured" when `missed` events after the set-up are no longer in the
/// event log (a count that may be short proves neither bound).
fn step_count_check(
    name: String,
    range: crate::scenario::Range,
    missed: u64,
    count: impl FnOnce() -> Result<u64, String>,
) -> Result<super::Check, String> {
    if missed > 0 {
        return Ok(check(
            name,
            false,
            format!(
                "not measured: the event log dropped {missed} event(s) after the set-up from memory"
            ),
        ));
    }
    let have = count()?;
    Ok(check(
        name,
        range.contains(have),
        format!("expected {range} here, saw {have}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::step_count_check;
    use crate::scenario::Range;

    /// Proves: a step count in range passes, one out of range fails, and
    /// with events dropped after the set-up the check fails as not measured
    /// even for a count in range (and the count is not taken).
    #[test]
    fn a_step_count_from_a_log_that_dropped_events_is_not_measured() {
        let range = Range {
            min: Some(1),
            max: Some(2),
        };
        let c =
            step_count_check("step 3: lock-hit count".into(), range, 0, || Ok(2)).expect("check");
        assert!(c.ok, "{c:?}");
        let c =
            step_count_check("step 3: lock-hit count".into(), range, 0, || Ok(3)).expect("check");
        assert!(!c.ok && c.detail == "expected 1..=2 here, saw 3", "{c:?}");
        let c = step_count_check("step 3: lock-hit count".into(), range, 4, || {
            panic!("counted although events were dropped")
        })
        .expect("check");
        assert!(
            !c.ok
                && c.name == "step 3: lock-hit count"
                && c.detail
                    == "not measured: the event log dropped 4 event(s) after the set-up from memory",
            "{c:?}"
        );
    }
}
