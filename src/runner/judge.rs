//! Judging a run: the stats from the event log, the checks (exit codes,
//! convergence, the ledger, acknowledged writes, lock hits, reconnect rate,
//! the final `-u`, the transcript snapshot) and the verdict's inputs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::check::compare;
use crate::events::EventKind;
use crate::harness::{Harness, Target};
use crate::mailstate::MailState;
use crate::scenario::ledger::{classify, Class, Classified};

use super::{normalize_transcript, Check, Run, Stats, CATCH_UP};

/// The name of the history check's line in every report.
const ACKED: &str = "acknowledged writes kept";

pub(super) fn check(name: impl Into<String>, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok,
        detail: detail.into(),
    }
}

impl Run<'_> {
    /// Whether the target is a backupd (real, the fake as backupd, or a
    /// `HOST:PORT` target whose greeting says so), or a replica
    /// (`Some(false)`); `None` for a `HOST:PORT` target of unknown kind
    /// ([`Harness::target_kind`]). backupd keeps every body in the backup of
    /// the user that reserved it, and no quota.
    fn target_is_backupd(&self) -> Option<bool> {
        self.h
            .target_kind()
            .map(|k| k == crate::cyrus::TargetKind::Backupd)
    }

    /// Whether the target keeps quota (a replica): the history then checks
    /// `APPLY QUOTA`, and the runner's reads ask `GET QUOTA` of each root.
    pub(super) fn target_keeps_quota(&self) -> bool {
        self.target_is_backupd() == Some(false)
    }

    /// For a `HOST:PORT` target, what the run took it for and what that
    /// means for quota (the history check's detail says it); `None` for
    /// the others, whose kind is known without a greeting.
    fn remote_kind_note(&self, quota_reads: usize) -> Option<String> {
        if !matches!(self.h.target(), Target::Remote { .. }) {
            return None;
        }
        Some(match self.h.target_kind() {
            Some(crate::cyrus::TargetKind::Backupd) => {
                "a backupd by its greeting: quota not checked (a backupd keeps none)".to_owned()
            }
            Some(crate::cyrus::TargetKind::SyncServer) => format!(
                "a sync_server by its greeting: quota checked, {quota_reads} GET QUOTA read(s)"
            ),
            None => format!(
                "kind unknown ({}): quota not checked, and APPLY QUOTA counts in the final -u",
                self.h.target_greeting().map_or_else(
                    || "no greeting seen".to_owned(),
                    |g| format!("greeting `{g}` names no Cyrus backup or sync server")
                )
            ),
        })
    }

    pub(super) fn stats(&self) -> Stats {
        let events = self.h.fake().events();
        let mut stats = Stats {
            client_runs: self.runs.len(),
            client_run_seconds: self.runs.iter().map(|r| r.elapsed.as_secs_f64()).collect(),
            restarts: u64::from(self.restarts),
            converge_seconds: self.converge_seconds,
            deferrals: self
                .runs
                .iter()
                .map(|r| r.stderr.matches("Deferred: ").count() as u64)
                .sum(),
            ..Stats::default()
        };
        let mut conn_times = Vec::new();
        let (mut first_hit, mut last_hit) = (None, None);
        // Events after the set-up that were dropped from memory are not counted.
        stats.events_missed = missed_after(events.events().next().map(|e| e.seq), self.setup_seq);
        let mut refusals = Refusals::default();
        for e in events.events().filter(|e| e.seq > self.setup_seq) {
            refusals.see(&e.session, &e.kind);
            match &e.kind {
                EventKind::Connected { .. } => {
                    stats.connections += 1;
                    conn_times.push(e.t_us);
                }
                EventKind::LockHit { .. } => {
                    stats.lock_hits += 1;
                    first_hit.get_or_insert(e.t_us);
                    last_hit = Some(e.t_us);
                }
                EventKind::Fault { .. } => stats.faults += 1,
                _ => {}
            }
        }
        stats.refused = refusals.list;
        if let (Some(a), Some(b)) = (first_hit, last_hit) {
            let during = conn_times.iter().filter(|t| (a..=b).contains(*t)).count();
            let secs = (b - a) as f64 / 1e6;
            stats.reconnect_rate = if secs > 0.05 {
                during as f64 / secs
            } else {
                0.0
            };
        }
        // Source-side lock windows (a held sync lock, a skipuser file) get no
        // LOCKED answer from the target: the rate is taken over the windows.
        let now = self.h.fake().now_us();
        let mut windows: Vec<(u64, u64)> = self.source_windows.clone();
        windows.extend(self.holders.iter().map(|h| (h.since_us, now)));
        windows.extend(self.skipped.iter().map(|(_, since)| (*since, now)));
        let secs: f64 = windows
            .iter()
            .map(|(a, b)| b.saturating_sub(*a) as f64 / 1e6)
            .sum();
        if secs > 0.05 {
            let during = conn_times
                .iter()
                .filter(|t| windows.iter().any(|(a, b)| (*a..=*b).contains(*t)))
                .count();
            stats.reconnect_rate = stats.reconnect_rate.max(during as f64 / secs);
        }
        stats
    }

    pub(super) fn channel_log_text(&self) -> String {
        let src = self.h.source();
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        read(src.sync_log_path(crate::harness::CHANNEL))
            + &read(src.sync_log_run_path(crate::harness::CHANNEL))
    }

    pub(super) fn judge(&mut self) -> (Vec<Check>, Vec<Classified>, Stats) {
        let users = self.s.user_names();
        let stats = self.stats();
        let mut checks = std::mem::take(&mut self.checks);
        let e = &self.s.expect;
        let t = Instant::now();
        let source = self.h.source().read_state(&users);
        let t = self.timing.lap("read the source", t);
        let source = match source {
            Ok(s) => s,
            Err(err) => {
                checks.push(check("read the source", false, err.to_string()));
                return (checks, Vec::new(), stats);
            }
        };
        if matches!(self.h.target(), Target::Remote { .. }) {
            // Its contents cannot be read back: what it acknowledged and what
            // its answers showed, and a final `-u` that must find nothing to send.
            checks.push(self.history_check(None));
            checks.push(self.final_pass_check(&users));
            // The event-log counts hold for any target; `lost` and `queued`
            // need a ledger, which needs the contents (docs/real-targets.md).
            checks.extend(count_checks(e, &stats));
            return (checks, Vec::new(), stats);
        }
        let backup = self.h.read_backup(&users);
        let t = self.timing.lap("read the backup", t);
        let (backup, scope) = match backup {
            Ok(b) => b,
            Err(err) => {
                checks.push(self.history_check(None));
                checks.push(check("read the backup", false, err.to_string()));
                return (checks, Vec::new(), stats);
            }
        };
        checks.push(self.history_check(Some(crate::history::FinalRead {
            state: &backup,
            users: &users,
            // Flags, counters and subscriptions are read on every target.
            full: true,
        })));
        let t = self.timing.lap("history check", t);
        let (source, mut backup): (MailState, MailState) =
            (scope.project(&source), scope.project(&backup));
        let wanted: BTreeSet<&str> = users.iter().copied().collect();
        backup.users.retain(|u, _| wanted.contains(u.as_str()));
        let c = compare(&source, &backup);
        if c.converged() && !self.converged_seen {
            self.converged_seen = true;
            self.note(
                crate::timeline::AnnotationKind::Converged,
                "backup converged (checked after the catch-up)",
            );
        }
        checks.push(check(
            "converged",
            c.converged() == e.converged,
            if c.converged() {
                "the backup equals the source".to_owned()
            } else {
                c.to_string()
            },
        ));
        if e.converged && self.h.target().is_fake() {
            // This run's users only: a harness shared by several runs keeps
            // the others' backups too.
            let bad = self.h.verify_bodies_of(&self.s.user_names());
            checks.push(check("bodies", bad.is_empty(), bad.join("\n")));
        }
        let mut ledger = classify(&self.ledger, &source, &backup, &self.channel_log_text());
        crate::scenario::ledger::mark_acknowledged_lost(&mut ledger, &self.acked_lost);
        let lost: Vec<String> = ledger
            .iter()
            .filter(|c| matches!(c.class, Class::Lost | Class::AcknowledgedLost))
            .map(|c| {
                let how = if c.class == Class::AcknowledgedLost {
                    " (acknowledged by the target, then lost)"
                } else {
                    ""
                };
                format!("step {}: {}{how}", c.entry.step, c.entry.change)
            })
            .collect();
        let queued = ledger.iter().filter(|c| c.class == Class::Queued).count() as u64;
        if let Some(want) = e.lost {
            checks.push(check(
                "lost changes",
                lost.len() as u64 == want,
                format!(
                    "expected {want}, ledger says {}{}",
                    lost.len(),
                    if lost.is_empty() {
                        String::new()
                    } else {
                        format!(":\n  {}", lost.join("\n  "))
                    }
                ),
            ));
        }
        if let Some(want) = e.queued {
            checks.push(check(
                "queued changes",
                queued == want,
                format!("expected {want}, ledger says {queued}"),
            ));
        }
        checks.extend(count_checks(e, &stats));
        // Snapshots hold the fake's transcripts; `compare` sets real ones beside them.
        if e.snapshot && self.h.target().is_fake() {
            checks.push(self.snapshot());
        }
        self.timing.lap("compare and ledger", t);
        (checks, ledger, stats)
    }

    /// Every write the target acknowledged must still be there in every later
    /// read, the final read-back (`final_state`, and whether it shows every
    /// field) included: [`crate::history`].
    pub(super) fn history_check(
        &mut self,
        final_state: Option<crate::history::FinalRead<'_>>,
    ) -> Check {
        let shared = self.h.fake();
        let Some(history) = shared.history() else {
            return check(ACKED, false, "no history was kept for this target");
        };
        let report = crate::history::check(crate::history::Input {
            history: &history,
            final_state,
            catch_up_mark: Some(CATCH_UP),
            bodies_kept: self.target_is_backupd() == Some(true),
            quota_kept: self.target_keeps_quota(),
        });
        let quota_reads = history
            .ops()
            .iter()
            .filter(|o| {
                matches!(
                    o.call,
                    crate::history::Call::Read(crate::history::Read::Quota(_))
                ) && o.outcome == crate::history::Outcome::Ok
            })
            .count();
        drop(history);
        let want = self
            .s
            .expect
            .acknowledged_lost
            .unwrap_or(crate::scenario::Range {
                min: Some(0),
                max: Some(0),
            });
        let lost = report.violations.len() as u64;
        let mut detail = self
            .remote_kind_note(quota_reads)
            .map_or_else(String::new, |k| format!("the target is {k}; "));
        detail.push_str(&format!(
            "{} write(s) acknowledged, {} read(s) checked; ",
            report.acknowledged, report.reads_checked
        ));
        if report.reads_unreadable > 0 {
            detail.push_str(&format!(
                "{} read(s) not checked, their answers having a line not understood (the first: {}); ",
                report.reads_unreadable,
                report.first_unreadable.as_deref().unwrap_or("?")
            ));
        }
        if let Some(why) = &report.incomplete {
            detail.push_str(&format!("no verdict: {why}"));
        } else if lost == 0 {
            detail.push_str("nothing acknowledged was lost");
        } else {
            detail.push_str(&format!("acknowledged write lost: {lost}"));
            for v in &report.violations {
                detail.push_str(&format!("\n  - {v}"));
            }
        }
        if want
            != (crate::scenario::Range {
                min: Some(0),
                max: Some(0),
            })
        {
            detail.push_str(&format!(" (expected {want})"));
        }
        let healed: Vec<&crate::history::Carried> = report
            .carried
            .iter()
            .filter(|c| c.class == crate::history::CarryClass::PreviouslyAcknowledged)
            .collect();
        if !healed.is_empty() {
            detail.push_str(&format!(
                "\n  the catch-up carried {} write(s) the target had acknowledged before:",
                healed.len()
            ));
            for c in healed {
                detail.push_str(&format!("\n  - {}", c.command));
            }
        }
        let ok = report.incomplete.is_none() && want.contains(lost);
        self.acked_lost = report.violations;
        self.carried = report.carried;
        check(ACKED, ok, detail)
    }

    /// For a target that cannot be read: `-u` of every user after the catch-up
    /// must send no `APPLY` (the client's exit status proves nothing: it exits 0
    /// in many runs that lost changes). Two are no sign of a difference and
    /// are not counted (see [`final_pass_applies`]).
    pub(super) fn final_pass_check(&mut self, users: &[&str]) -> Check {
        let counts = |h: &Harness| h.fake().events().counts().clone();
        let before = counts(self.h);
        let mut args = vec!["-v", "-v", "-u"];
        args.extend(users);
        let run = match self.h.sync(&args) {
            Ok(r) => r,
            Err(e) => return check("final -u sends no APPLY", false, e.to_string()),
        };
        let after = counts(self.h);
        let (sent, skipped) =
            final_pass_applies(&before, &after, self.target_is_backupd() == Some(true));
        let converged = sent == 0 && run.status == Some(0);
        let want = self.s.expect.converged;
        let skipped = if skipped.is_empty() {
            String::new()
        } else {
            format!(" (not counted: {})", skipped.join(", "))
        };
        check(
            "final -u sends no APPLY",
            converged == want,
            format!(
                "{} (expected the target {}converged); the final -u sent {sent} APPLY{skipped} and exited {}",
                if converged { "converged" } else { "not converged" },
                if want { "" } else { "not " },
                run.status.map_or_else(|| "(killed)".into(), |s| s.to_string())
            ),
        )
    }

    /// Compare the normalized transcript with `scenarios/snapshots/NAME.snap`.
    pub(super) fn snapshot(&self) -> Check {
        let text = normalize_transcript(&self.h.transcript());
        let dir = self
            .s
            .path
            .parent()
            .unwrap_or(Path::new("."))
            .join("snapshots");
        let name = self
            .s
            .expect
            .snapshot_name
            .as_deref()
            .unwrap_or(&self.s.name);
        let path = dir.join(format!("{name}.snap"));
        match std::fs::read_to_string(&path) {
            Ok(want) if want == text => {
                check("transcript snapshot", true, path.display().to_string())
            }
            result => {
                if self.opts.update_snapshots {
                    let ok = std::fs::create_dir_all(&dir)
                        .and_then(|()| std::fs::write(&path, &text))
                        .is_ok();
                    return check(
                        "transcript snapshot",
                        ok,
                        format!("written to {}", path.display()),
                    );
                }
                let detail = match result {
                    Ok(want) => format!(
                        "{} differs (re-run with --update-snapshots to accept):\n{}",
                        path.display(),
                        crate::diff::unified(&want, &text, "snapshot", "this run", 3)
                    ),
                    Err(_) => format!(
                        "{} is missing (re-run with --update-snapshots to write it)",
                        path.display()
                    ),
                };
                check("transcript snapshot", false, detail)
            }
        }
    }
}

/// The `APPLY` commands sent between two snapshots of the event counts that
/// show a difference, and those that do not (as `N APPLY VERB, why`):
/// - `APPLY CAPABILITIES` opens every session with a server that advertised
///   a capability (sync_server's `* SIEVE-MAILBOX`): a handshake, no write.
/// - `APPLY QUOTA` to a backupd (`no_quota`): it keeps no quota, so its
///   `GET USER` lists none and sync_client's `update_quota_work` (3.6.1)
///   sends every root again on every `-u`, however converged the backup.
fn final_pass_applies(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    no_quota: bool,
) -> (u64, Vec<String>) {
    let (mut sent, mut skipped) = (0, Vec::new());
    for (verb, n) in after {
        let n = n - before.get(verb).copied().unwrap_or(0);
        if n == 0 || !verb.starts_with("APPLY ") {
            continue;
        }
        match verb.as_str() {
            "APPLY CAPABILITIES" => skipped.push(format!("{n} {verb}, a handshake")),
            "APPLY QUOTA" if no_quota => {
                skipped.push(format!("{n} {verb}, which a backupd never keeps"));
            }
            _ => sent += n,
        }
    }
    (sent, skipped)
}

/// The `[expect]` counts taken from the client runs and the event log
/// (deferrals, lock hits, connections, restarts, the reconnect rate): the
/// same for every target, a `HOST:PORT` one included.
fn count_checks(e: &crate::scenario::Expect, stats: &Stats) -> Vec<Check> {
    let mut out = Vec::new();
    let ranges = [
        ("deferrals", e.deferrals, stats.deferrals),
        ("lock hits", e.lock_hits, stats.lock_hits),
        ("connections", e.connections, stats.connections),
        ("restarts", e.restarts, stats.restarts),
    ];
    // Counted from the fake's event log: not measured when it dropped
    // events after the set-up.
    let missed = (stats.events_missed > 0).then(|| {
        format!(
            "not measured: the event log dropped {} event(s) after the set-up from memory",
            stats.events_missed
        )
    });
    let from_events = |name: &str| matches!(name, "lock hits" | "connections");
    for (name, range, have) in ranges {
        if let Some(r) = range {
            out.push(match &missed {
                Some(why) if from_events(name) => check(name, false, why.clone()),
                _ => check(name, r.contains(have), format!("expected {r}, saw {have}")),
            });
        }
    }
    if let Some(max) = e.reconnect_rate_max {
        out.push(match &missed {
            Some(why) => check("reconnect rate", false, why.clone()),
            None => check(
                "reconnect rate",
                stats.reconnect_rate <= max,
                format!(
                    "expected at most {max:.1}/s, saw {:.1}/s",
                    stats.reconnect_rate
                ),
            ),
        });
    }
    out
}

/// How many events after the set-up's last (`setup_seq`) a log whose oldest
/// kept event is `first_kept` no longer holds.
pub(super) fn missed_after(first_kept: Option<u64>, setup_seq: u64) -> u64 {
    first_kept.map_or(0, |first| first.saturating_sub(setup_seq + 1))
}

/// The target's own refusals, for [`Stats::refused`]: each distinct
/// `VERB: NO …` reply, paired with its command per connection, leaving out
/// `IMAP_MAILBOX_LOCKED` and every reply a lock window or a fault answered
/// (the fake's lock and fault engine, not the target, said no). At most
/// [`super::REFUSED_MAX`].
#[derive(Default)]
struct Refusals<'a> {
    /// Each connection's command awaiting its reply, and whether a lock or
    /// a fault answered it.
    pending: BTreeMap<crate::types::SessionId, (&'a str, bool)>,
    list: Vec<String>,
}

impl<'a> Refusals<'a> {
    fn see(&mut self, session: &crate::types::SessionId, kind: &'a EventKind) {
        match kind {
            EventKind::LockHit { .. } | EventKind::Fault { .. } => {
                self.pending.entry(*session).and_modify(|p| p.1 = true);
            }
            EventKind::Command { verb, .. } => {
                self.pending.insert(*session, (verb, false));
            }
            EventKind::Reply { line, .. } => {
                let Some((verb, answered_by_us)) = self.pending.remove(session) else {
                    return;
                };
                if answered_by_us
                    || !line.starts_with("NO ")
                    || line.contains("IMAP_MAILBOX_LOCKED")
                    || self.list.len() >= super::REFUSED_MAX
                {
                    return;
                }
                let refusal = format!("{verb}: {line}");
                if !self.list.contains(&refusal) {
                    self.list.push(refusal);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{count_checks, final_pass_applies, missed_after, Refusals};
    use crate::events::EventKind;

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(v, n)| ((*v).to_owned(), *n)).collect()
    }

    /// The final `-u` to a sync_server opens with `APPLY CAPABILITIES`, and
    /// to a backupd re-sends `APPLY QUOTA`: neither is a difference. Any
    /// other `APPLY`, and `APPLY QUOTA` to a replica, is.
    #[test]
    fn the_final_pass_counts_only_applies_that_show_a_difference() {
        let before = counts(&[("APPLY MAILBOX", 3), ("APPLY QUOTA", 2), ("GET USER", 1)]);
        let after = counts(&[
            ("APPLY MAILBOX", 3),
            ("APPLY QUOTA", 3),
            ("APPLY CAPABILITIES", 1),
            ("GET USER", 2),
        ]);
        let (sent, skipped) = final_pass_applies(&before, &after, true);
        assert_eq!(sent, 0, "{skipped:?}");
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        let (sent, _) = final_pass_applies(&before, &after, false);
        assert_eq!(sent, 1, "APPLY QUOTA counts on a replica");
        let after = counts(&[("APPLY MAILBOX", 4), ("APPLY QUOTA", 2)]);
        assert_eq!(final_pass_applies(&before, &after, true).0, 1);
    }

    fn reply(line: &str) -> EventKind {
        EventKind::Reply {
            line: line.into(),
            data_lines: 0,
        }
    }

    /// A NO is the target's refusal only when neither a lock window nor a
    /// fault answered that command on that connection; LOCKED never is; each
    /// distinct one is listed once, and at most REFUSED_MAX of them.
    #[test]
    fn a_refusal_is_the_targets_own_no_paired_per_connection() {
        let no = "NO IMAP_PROTOCOL_ERROR Protocol error";
        let lock = EventKind::LockHit {
            lock: "user u".into(),
        };
        let fault = EventKind::Fault {
            rule: "r".into(),
            action: "error".into(),
        };
        let (unquota, message, user) = (
            EventKind::command("APPLY UNQUOTA"),
            EventKind::command("APPLY MESSAGE"),
            EventKind::command("GET USER"),
        );
        let (no_reply, ok, locked) = (
            reply(no),
            reply("OK Success"),
            reply("NO IMAP_MAILBOX_LOCKED Mailbox locked"),
        );
        let events: Vec<(u64, &EventKind)> = vec![
            (1, &unquota),
            (2, &message), // connection 2's command is answered by a lock
            (2, &lock),
            (1, &no_reply), // connection 1: the target refused UNQUOTA
            (2, &no_reply),
            (1, &message),
            (1, &fault),
            (1, &no_reply), // a fault's NO
            (1, &user),
            (1, &locked),
            (1, &user),
            (1, &ok),
            (1, &unquota),
            (1, &no_reply), // the same refusal again
            (3, &no_reply), // a reply with no command before it
        ];
        let mut r = Refusals::default();
        for (session, kind) in &events {
            r.see(session, kind);
        }
        assert_eq!(r.list, vec![format!("APPLY UNQUOTA: {no}")]);

        let verbs: Vec<EventKind> = (0..40)
            .map(|i| EventKind::command(&format!("V{i}")))
            .collect();
        let mut r = Refusals::default();
        for v in &verbs {
            r.see(&1, v);
            r.see(&1, &no_reply);
        }
        assert_eq!(r.list.len(), crate::runner::REFUSED_MAX);
    }

    /// Events after the set-up count as missed only when the log's oldest
    /// kept event comes after the first of them.
    #[test]
    fn events_missed_are_those_after_the_set_up_no_longer_kept() {
        assert_eq!(missed_after(None, 0), 0);
        assert_eq!(missed_after(Some(1), 0), 0);
        // The set-up's events dropped, the run's all kept.
        assert_eq!(missed_after(Some(11), 10), 0);
        assert_eq!(missed_after(Some(5), 10), 0);
        // Events 6..=10 of the run dropped.
        assert_eq!(missed_after(Some(11), 5), 5);
    }

    /// Proves: with events dropped after the set-up, the checks counted from
    /// the event log (lock hits, connections, the reconnect rate) fail as not
    /// measured although each count is in range; deferrals and restarts,
    /// counted elsewhere, are still judged.
    #[test]
    fn counts_from_a_log_that_dropped_events_are_not_measured() {
        use crate::runner::Stats;
        use crate::scenario::{Expect, Range};
        let at_most = Some(Range {
            min: None,
            max: Some(5),
        });
        let e = Expect {
            deferrals: at_most,
            lock_hits: at_most,
            connections: at_most,
            restarts: at_most,
            reconnect_rate_max: Some(100.0),
            ..Expect::default()
        };
        let mut stats = Stats::default();
        let checks = count_checks(&e, &stats);
        assert_eq!(checks.len(), 5);
        assert!(checks.iter().all(|c| c.ok), "{checks:#?}");
        stats.events_missed = 3;
        for c in count_checks(&e, &stats) {
            let from_events = matches!(
                c.name.as_str(),
                "lock hits" | "connections" | "reconnect rate"
            );
            assert_eq!(c.ok, !from_events, "{c:?}");
            if from_events {
                assert_eq!(
                    c.detail,
                    "not measured: the event log dropped 3 event(s) after the set-up from memory"
                );
            }
        }
    }
}
