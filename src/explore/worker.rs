//! A worker: harnesses per Cyrus installation (a source instance and the
//! fake), reused across cases with fresh users for each, and the cheapest
//! set-up the runner's own would equal: the users of several cases filled at
//! once (one thread per case), replicated with one `-u` and one rolling pass,
//! and checked converged with one read. While a batch runs, the next batch is
//! set up on a second harness ([`Worker::prefetch`]), so set-up overlaps the
//! cases and no case shares its source or fake with another's set-up.
//!
//! A harness is replaced after a case that did not pass (its users may be left
//! unconverged, which later `-A` runs would carry), after [`RECYCLE_AFTER`]
//! cases (`-A` visits every user the source holds), and when a set-up fails.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cyrus::CyrusBins;
use crate::harness::{Harness, HarnessOptions};
use crate::rng::{Rng, Seed};
use crate::runner::{run_prepared, RunOptions, ScenarioReport, Timing};
use crate::scenario::Scenario;

use super::render::{BATCHSIZE, RUN_TIMEOUT, SYNC_TIMEOUT};

/// Cases a harness runs before it is replaced.
pub const RECYCLE_AFTER: usize = 24;

/// One installation a campaign runs on.
#[derive(Debug, Clone)]
pub struct Installation {
    /// Its binaries.
    pub bins: CyrusBins,
    /// Its version (`3.6.1`).
    pub version: String,
}

/// Where sandboxes go: `explicit`, else for the host's installation a tmpfs
/// (`/dev/shm`, when it has room: Cyrus syncs its files, which on a disk costs
/// most of a set-up), else the installation's own place (a chroot's `tmp/`).
pub fn sandbox_parent(bins: &CyrusBins, explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = usable(bins.chroot(), explicit) {
        return p.to_owned();
    }
    let shm = Path::new("/dev/shm");
    let roomy = nix::sys::statvfs::statvfs(shm)
        .map(|s| s.blocks_available() * s.fragment_size() > 1 << 30)
        .unwrap_or(false);
    if bins.chroot().is_none() && roomy {
        shm.to_owned()
    } else {
        bins.sandbox_parent()
    }
}

/// The `--sandbox-dir` an installation can use: any for the host's, one
/// below its root for a chroot's (Cyrus in a chroot sees nothing else; a
/// campaign across versions passes one dir, which then serves the host's
/// installation, and each chroot uses its own `tmp/`).
fn usable<'a>(chroot: Option<&Path>, explicit: Option<&'a Path>) -> Option<&'a Path> {
    explicit.filter(|p| chroot.is_none_or(|root| p.starts_with(root)))
}

/// A case ready to run: its index, its scenario, the seed it runs with.
#[derive(Debug, Clone)]
pub struct Ready {
    /// Case index in the campaign (or a corpus entry's label).
    pub index: u64,
    /// The rendered scenario.
    pub scenario: Scenario,
}

/// What running a case gave.
#[derive(Debug, Clone)]
pub struct Ran {
    /// The report (its timing has the set-up's share added).
    pub report: ScenarioReport,
    /// The fake's events of this case, for coverage.
    pub events: Vec<crate::events::Event>,
}

struct Live {
    harness: Harness,
    cases: usize,
}

/// A batch's users set up: each case's source stream after the fill, and
/// where the set-up's time went.
type Setup = Result<(Vec<Rng>, Timing), String>;

/// A batch being set up ahead on a harness of its own while the worker runs
/// the batch before it ([`Worker::prefetch`]).
struct Ahead {
    version: String,
    /// The batch's user names: which batch this is.
    users: Vec<String>,
    handle: std::thread::JoinHandle<Prepared>,
}

/// What setting a batch up ahead gave.
struct Prepared {
    live: Result<Live, String>,
    setup: Setup,
    /// Harness starts it made, and their seconds.
    starts: (usize, f64),
}

/// One worker's harnesses, per installation: the one running a batch, and
/// one setting the next batch up meanwhile (two harnesses an installation, so
/// that no case shares its source or fake with another's set-up).
pub struct Worker {
    seed: Seed,
    sandbox: Option<PathBuf>,
    idle: Vec<(String, Live)>,
    ahead: Vec<Ahead>,
    /// Harness starts (for the profile).
    pub starts: usize,
    /// Seconds spent starting harnesses.
    pub start_seconds: f64,
    /// Batches run, and how many of them were set up ahead.
    batches: (u64, u64),
}

/// What a worker did beyond its cases: harness starts and their seconds,
/// batches run and how many were set up ahead ([`Worker::prefetch`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerStats {
    /// Harness starts.
    pub starts: usize,
    /// Their seconds.
    pub start_seconds: f64,
    /// Batches run.
    pub batches: u64,
    /// Of those, set up ahead while the batch before ran.
    pub batches_ahead: u64,
}

/// Start a harness on `inst` as explore runs it; returns it and its seconds.
fn start(inst: &Installation, seed: Seed, sandbox: Option<&Path>) -> Result<(Live, f64), String> {
    let t = Instant::now();
    let mut hopts = HarnessOptions::new(inst.bins.clone());
    hopts.sandbox_parent = Some(sandbox_parent(&inst.bins, sandbox));
    hopts.server.seed = seed;
    hopts.sync_timeout = Duration::from_secs(RUN_TIMEOUT);
    hopts.channel_sync_timeout = Some(SYNC_TIMEOUT);
    hopts.batchsize = Some(BATCHSIZE);
    let harness = Harness::start(hopts)
        .map_err(|e| format!("starting a harness on Cyrus {}: {e}", inst.version))?;
    Ok((Live { harness, cases: 0 }, t.elapsed().as_secs_f64()))
}

fn batch_users(cases: &[Ready]) -> Vec<String> {
    cases
        .iter()
        .flat_map(|c| c.scenario.user_names())
        .map(str::to_owned)
        .collect()
}

impl Worker {
    /// A worker for campaign `seed`; sandboxes below `sandbox` when given.
    pub fn new(seed: Seed, sandbox: Option<PathBuf>) -> Worker {
        Worker {
            seed,
            sandbox,
            idle: Vec::new(),
            ahead: Vec::new(),
            starts: 0,
            start_seconds: 0.0,
            batches: (0, 0),
        }
    }

    /// An idle harness of `inst`, if any.
    fn take_idle(&mut self, inst: &Installation) -> Option<Live> {
        let pos = self.idle.iter().position(|(v, _)| *v == inst.version)?;
        Some(self.idle.swap_remove(pos).1)
    }

    /// An idle harness of `inst`, or a new one.
    fn take(&mut self, inst: &Installation) -> Result<Live, String> {
        if let Some(live) = self.take_idle(inst) {
            return Ok(live);
        }
        let (live, secs) = start(inst, self.seed, self.sandbox.as_deref())?;
        self.starts += 1;
        self.start_seconds += secs;
        Ok(live)
    }

    /// Stop the idle harnesses of `inst` (the next case starts a fresh one;
    /// a batch being set up ahead keeps its own).
    pub fn recycle(&mut self, inst: &Installation) {
        self.idle.retain(|(v, _)| *v != inst.version);
    }

    /// Set `cases` up on a harness of their own in the background, while
    /// this worker runs the batch before them; [`Worker::run_batch`] of the
    /// same cases then takes it. At most one batch ahead per installation.
    pub fn prefetch(&mut self, inst: &Installation, cases: &[Ready]) {
        if self.ahead.iter().any(|a| a.version == inst.version) {
            return;
        }
        let idle = self.take_idle(inst);
        let (inst2, seed, sandbox) = (inst.clone(), self.seed, self.sandbox.clone());
        let cases2 = cases.to_vec();
        let handle = std::thread::spawn(move || {
            let (live, starts) = match idle {
                Some(l) => (Ok(l), (0, 0.0)),
                None => match start(&inst2, seed, sandbox.as_deref()) {
                    Ok((l, secs)) => (Ok(l), (1, secs)),
                    Err(e) => (Err(e), (0, 0.0)),
                },
            };
            let setup = match &live {
                Ok(l) => prepare(&l.harness, &cases2, seed),
                Err(e) => Err(e.clone()),
            };
            Prepared {
                live,
                setup,
                starts,
            }
        });
        self.ahead.push(Ahead {
            version: inst.version.clone(),
            users: batch_users(cases),
            handle,
        });
    }

    /// The batch set up ahead for exactly `cases`, if any.
    fn take_ahead(&mut self, inst: &Installation, cases: &[Ready]) -> Option<Prepared> {
        let users = batch_users(cases);
        let pos = self
            .ahead
            .iter()
            .position(|a| a.version == inst.version && a.users == users)?;
        let a = self.ahead.swap_remove(pos);
        let p = a.handle.join().unwrap_or_else(|_| Prepared {
            live: Err("the set-up thread panicked".into()),
            setup: Err("the set-up thread panicked".into()),
            starts: (0, 0.0),
        });
        self.starts += p.starts.0;
        self.start_seconds += p.starts.1;
        Some(p)
    }

    /// Run `cases` on `inst`: their users set up together (ahead, when
    /// [`Worker::prefetch`] was given them), then each case. Returns one
    /// result per case, in order.
    pub fn run_batch(
        &mut self,
        inst: &Installation,
        cases: &[Ready],
        opts: &RunOptions,
    ) -> Vec<Result<Ran, String>> {
        let seed = self.seed;
        self.batches.0 += 1;
        let (live, setup) = match self.take_ahead(inst, cases) {
            Some(p) => {
                self.batches.1 += 1;
                (p.live, p.setup)
            }
            None => match self.take(inst) {
                Ok(live) => {
                    let setup = prepare(&live.harness, cases, seed);
                    (Ok(live), setup)
                }
                Err(e) => (Err(e.clone()), Err(e)),
            },
        };
        let mut live = match live {
            Ok(l) => l,
            Err(e) => return cases.iter().map(|_| Err(e.clone())).collect(),
        };
        let (rngs, setup) = match setup {
            Ok(r) => r,
            // The harness is dropped: a failed set-up may leave it unusable.
            Err(e) => {
                return cases
                    .iter()
                    .map(|_| Err(format!("setting the users up: {e}")))
                    .collect()
            }
        };
        let share = setup.scaled(1.0 / cases.len().max(1) as f64);
        let mut out = Vec::new();
        for (i, (case, rng)) in cases.iter().zip(rngs).enumerate() {
            let h = &live.harness;
            let first = h.fake().events().events().last().map_or(0, |e| e.seq);
            let mut report = run_prepared(h, &case.scenario, opts, seed, rng);
            let events: Vec<crate::events::Event> = h
                .fake()
                .events()
                .events()
                .filter(|e| e.seq > first)
                .cloned()
                .collect();
            report.timing.merge(&share);
            live.cases += 1;
            let stale = live.cases >= RECYCLE_AFTER || report.verdict.is_bad();
            out.push(Ok(Ran { report, events }));
            if stale {
                drop(live);
                // The rest of the batch was set up on the harness just
                // stopped: set it up again on a fresh one (explore --seed 2
                // --allow-loss-faults: case 26 ran on the fresh source after
                // case 25 failed, and its users were not there).
                if i + 1 < cases.len() {
                    out.extend(self.run_batch(inst, &cases[i + 1..], opts));
                }
                return out;
            }
        }
        self.idle.push((inst.version.clone(), live));
        out
    }
}

impl Worker {
    /// Stop: wait for batches still being set up ahead (their harnesses stop
    /// with them) and say what this worker did beyond its cases.
    pub fn finish(mut self) -> WorkerStats {
        for a in std::mem::take(&mut self.ahead) {
            if let Ok(p) = a.handle.join() {
                self.starts += p.starts.0;
                self.start_seconds += p.starts.1;
            }
        }
        WorkerStats {
            starts: self.starts,
            start_seconds: self.start_seconds,
            batches: self.batches.0,
            batches_ahead: self.batches.1,
        }
    }
}

impl Drop for Worker {
    /// Batches still being set up ahead are waited for, so that their
    /// harnesses stop before the campaign returns.
    fn drop(&mut self) {
        for a in self.ahead.drain(..) {
            let _ = a.handle.join();
        }
    }
}

/// Fill every case's users (each case on its own thread, its users in order
/// from `Rng::new(seed).fork("source")`, as the runner's set-up would), then
/// replicate them all with one `-u` and one rolling pass and check that the
/// backup equals the source. Returns each case's source stream afterwards,
/// and where the time went.
fn prepare(h: &Harness, cases: &[Ready], seed: Seed) -> Result<(Vec<Rng>, Timing), String> {
    let mut timing = Timing::default();
    let started = Instant::now();
    let filled: Vec<Result<Rng, String>> = std::thread::scope(|sc| {
        let handles: Vec<_> = cases
            .iter()
            .map(|c| {
                sc.spawn(move || {
                    let mut rng = Rng::new(seed).fork("source");
                    for u in &c.scenario.users {
                        crate::populate::fill_user(h.source(), &u.name, u.messages, &mut rng)
                            .map_err(|e| format!("filling {}: {e}", u.name))?;
                    }
                    Ok(rng)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err("a fill thread panicked".into()))
            })
            .collect()
    });
    let rngs = filled.into_iter().collect::<Result<Vec<Rng>, String>>()?;
    let t = timing.lap("fill users", started);
    let users: Vec<&str> = cases.iter().flat_map(|c| c.scenario.user_names()).collect();
    let mut args = vec!["-u"];
    args.extend(&users);
    let run = h.sync(&args).map_err(|e| e.to_string())?;
    if run.status != Some(0) {
        return Err(format!("the baseline `-u` failed:\n{run}"));
    }
    let run = h.sync(&["-R", "-1"]).map_err(|e| e.to_string())?;
    if run.status != Some(0) {
        return Err(format!("the baseline rolling pass failed:\n{run}"));
    }
    let t = timing.lap("baseline sync", t);
    let c = h.compare(&users).map_err(|e| e.to_string())?;
    timing.lap("baseline check", t);
    if !c.converged() {
        return Err(format!("the baseline did not converge:\n{c}"));
    }
    timing.wall = started.elapsed().as_secs_f64();
    timing.client = timing.phase("baseline sync");
    Ok((rngs, timing))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Findings replayed on 3.10 and 3.12 with `--sandbox-dir /tmp/x` were
    /// errors (a path outside the chroot): the chroot's own tmp/ is used.
    #[test]
    fn a_sandbox_dir_outside_a_chroot_is_not_used_for_it() {
        let (root, mine) = (Path::new("/var/cache/r"), Path::new("/tmp/x"));
        assert_eq!(usable(None, Some(mine)), Some(mine));
        assert_eq!(usable(Some(root), Some(mine)), None);
        let inside = Path::new("/var/cache/r/tmp/y");
        assert_eq!(usable(Some(root), Some(inside)), Some(inside));
        assert_eq!(usable(Some(root), None), None);
    }
}
