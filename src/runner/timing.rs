//! Where a run's wall time went: the time a `sync_client` of the run was
//! alive (the real client's own time, the floor no harness can go under) and
//! everything else, by phase of the runner's thread.
//!
//! `explore` and the benchmark add these up over many cases to say what bounds
//! the rate and where the harness' own overhead goes.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A run's wall time, split.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Wall seconds of the run, set-up to verdict.
    pub wall: f64,
    /// Seconds with a `sync_client` of this run alive: every one-shot run
    /// (baseline, steps, catch-up, a final pass) from spawn to reap, and the
    /// continuous client from `start` to `stop`.
    pub client: f64,
    /// Seconds the continuous client was alive (`start` to `stop`), beside
    /// the phases (counted in `client` too).
    pub continuous: f64,
    /// Seconds the runner's thread spent per phase, in order of first use.
    /// One-shot client runs are phases too (`baseline sync`, `sync steps`,
    /// `catch-up sync`); the continuous client runs beside other phases.
    pub phases: Vec<(String, f64)>,
}

impl Timing {
    /// Add `d` to `phase`.
    pub fn add(&mut self, phase: &str, d: Duration) {
        let secs = d.as_secs_f64();
        match self.phases.iter_mut().find(|(p, _)| p == phase) {
            Some((_, s)) => *s += secs,
            None => self.phases.push((phase.to_owned(), secs)),
        }
    }

    /// Add the time since `since` to `phase`, and return now (for the next phase).
    pub fn lap(&mut self, phase: &str, since: Instant) -> Instant {
        let now = Instant::now();
        self.add(phase, now - since);
        now
    }

    /// Seconds that were not the client's: the harness' own overhead.
    pub fn overhead(&self) -> f64 {
        (self.wall - self.client).max(0.0)
    }

    /// Seconds in `phase` (0 when never used).
    pub fn phase(&self, phase: &str) -> f64 {
        self.phases
            .iter()
            .find(|(p, _)| p == phase)
            .map_or(0.0, |(_, s)| *s)
    }

    /// Add another run's timing to this one (sums, phases merged by name).
    pub fn merge(&mut self, other: &Timing) {
        self.wall += other.wall;
        self.client += other.client;
        self.continuous += other.continuous;
        for (p, s) in &other.phases {
            self.add(p, Duration::from_secs_f64(*s));
        }
    }

    /// This timing times `f` (a batch's share of one case).
    pub fn scaled(&self, f: f64) -> Timing {
        Timing {
            wall: self.wall * f,
            client: self.client * f,
            continuous: self.continuous * f,
            phases: self
                .phases
                .iter()
                .map(|(p, s)| (p.clone(), s * f))
                .collect(),
        }
    }

    /// The phases, largest first.
    pub fn top(&self) -> Vec<(String, f64)> {
        let mut v = self.phases.clone();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }
}

/// The phases that are one-shot client runs.
pub const CLIENT_PHASES: [&str; 3] = ["baseline sync", "sync steps", "catch-up sync"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_add_up_by_name_and_merge() {
        let mut a = Timing::default();
        a.add("fill users", Duration::from_millis(300));
        a.add("sync steps", Duration::from_millis(200));
        a.add("fill users", Duration::from_millis(100));
        a.wall = 1.0;
        a.client = 0.25;
        assert!((a.phase("fill users") - 0.4).abs() < 1e-9);
        assert_eq!(a.phase("never"), 0.0);
        assert!((a.overhead() - 0.75).abs() < 1e-9);
        let mut b = Timing::default();
        b.add("judge", Duration::from_millis(500));
        b.add("sync steps", Duration::from_millis(100));
        b.wall = 2.0;
        a.merge(&b);
        assert!((a.wall - 3.0).abs() < 1e-9);
        let top = a.top();
        assert_eq!(top[0].0, "judge");
        assert!((a.phase("sync steps") - 0.3).abs() < 1e-9);
        assert_eq!(top.len(), 3);
    }
}
