//! The layout of a timeline: the time scale, the lanes (client, runner, one
//! per user, one per connection or a shared `connections` lane, refused) and
//! their heights, and which marks of a lane are drawn one by one and which
//! join a density band.

use std::collections::BTreeMap;

use super::model::{derived_windows, Model};
use super::{AnnotationKind, LockWindow, ReplyClass, TimelineInput};

/// The picture's width in pixels.
pub const WIDTH: f64 = 1400.0;
pub(super) const PLOT_X: f64 = 170.0;
pub(super) const PLOT_W: f64 = WIDTH - PLOT_X - 28.0;
/// Width of an aggregation bucket, in pixels.
pub(super) const BUCKET_PX: f64 = 5.0;
/// More marks than this in one bucket make it dense.
pub(super) const DENSE: usize = 3;
/// Dense buckets this close (in buckets) join into one band.
pub(super) const BAND_GAP: usize = 3;
/// A band of at most this many commands lists them all on hover.
pub(super) const SMALL_BAND: usize = 12;
/// Up to this many connections, each gets its own lane.
pub(super) const SESSION_LANES_MAX: usize = 14;
/// In a crowd, connections lasting at least this share of the run keep their
/// own lane (at most [`LONG_LANES_MAX`]).
pub(super) const LONG_SHARE: f64 = 0.08;
pub(super) const LONG_LANES_MAX: usize = 6;
/// Users beyond this share one lane.
pub(super) const USER_LANES_MAX: usize = 24;

pub(super) const H_CLIENT: f64 = 36.0;
pub(super) const H_RUNNER: f64 = 26.0;
pub(super) const H_USER: f64 = 46.0;
pub(super) const H_SESSION: f64 = 24.0;
pub(super) const H_CROWD: f64 = 76.0;

#[derive(Debug, Clone, Copy)]
pub(super) struct Scale {
    pub(super) lo: u64,
    pub(super) hi: u64,
}

impl Scale {
    pub(super) fn x(self, t: u64) -> f64 {
        let t = t.clamp(self.lo, self.hi);
        PLOT_X + (t - self.lo) as f64 / (self.hi - self.lo) as f64 * PLOT_W
    }

    pub(super) fn bucket(self, t: u64) -> usize {
        ((self.x(t) - PLOT_X) / BUCKET_PX).floor().max(0.0) as usize
    }

    pub(super) fn bucket_x(b: usize) -> f64 {
        PLOT_X + b as f64 * BUCKET_PX
    }
}

/// One mark to place in a lane: a command, or a whole connection.
pub(super) struct Item {
    pub(super) t_us: u64,
    pub(super) end_us: Option<u64>,
    pub(super) class: ReplyClass,
    pub(super) title: String,
    /// For band summaries: the verb (commands) or session id (connections).
    pub(super) key: String,
    pub(super) session: u64,
}

pub(super) enum LaneKind {
    Client,
    Runner,
    User(String),
    Session(u64),
    Crowd,
    Refused,
}

pub(super) struct Lane {
    pub(super) id: String,
    pub(super) label: String,
    pub(super) sub: String,
    pub(super) kind: LaneKind,
    pub(super) y: f64,
    pub(super) h: f64,
}

/// Where everything goes: the scale, the lock windows shown, the lanes from
/// top to bottom, and the picture's vertical extent.
pub(super) struct Layout {
    pub(super) sc: Scale,
    /// The caller's lock windows, plus derived ones for locks it did not name.
    pub(super) windows: Vec<LockWindow>,
    pub(super) lanes: Vec<Lane>,
    /// Users with a lane of their own (the rest share `other users`).
    pub(super) own_users: Vec<String>,
    /// Connections with a lane of their own (the rest share `connections`).
    pub(super) own_sessions: Vec<u64>,
    /// The top of the first lane (above: title, subtitle, legend, labels).
    pub(super) top_rows: f64,
    pub(super) lanes_bottom: f64,
    pub(super) height: f64,
}

impl Layout {
    pub(super) fn build(input: &TimelineInput<'_>, m: &Model<'_>) -> Layout {
        // Windows: the caller's, plus derived ones for locks it did not name.
        let mut windows = input.lock_windows.clone();
        for w in derived_windows(m) {
            if !windows.iter().any(|k| k.name == w.name) {
                windows.push(w);
            }
        }

        let sc = time_scale(input, m, &windows);

        // The lanes.
        let mut lanes: Vec<Lane> = Vec::new();
        let has_client = input.annotations.iter().any(|a| {
            matches!(
                a.kind,
                AnnotationKind::ClientStart
                    | AnnotationKind::ClientExit { .. }
                    | AnnotationKind::ClientRestart
            )
        });
        if has_client {
            lanes.push(Lane {
                id: "client".into(),
                label: "sync_client".into(),
                sub: "process runs".into(),
                kind: LaneKind::Client,
                y: 0.0,
                h: H_CLIENT,
            });
        }
        let has_runner = !m.notes.is_empty()
            || input
                .annotations
                .iter()
                .any(|a| a.kind == AnnotationKind::Step);
        if has_runner {
            lanes.push(Lane {
                id: "runner".into(),
                label: "steps".into(),
                sub: "steps, marks, ctl".into(),
                kind: LaneKind::Runner,
                y: 0.0,
                h: H_RUNNER,
            });
        }
        let mut users: BTreeMap<&str, usize> = BTreeMap::new();
        for c in &m.cmds {
            for u in c.users {
                *users.entry(u).or_default() += 1;
            }
        }
        for a in &input.annotations {
            if let AnnotationKind::SourceChange { user } = &a.kind {
                users.entry(user).or_default();
            }
        }
        for w in &windows {
            for u in &w.users {
                users.entry(u).or_default();
            }
        }
        let own_users: Vec<String> = users
            .keys()
            .take(USER_LANES_MAX)
            .map(|u| (*u).to_owned())
            .collect();
        for u in &own_users {
            lanes.push(Lane {
                id: format!("user:{u}"),
                label: format!("user {u}"),
                sub: format!("{} commands", users[u.as_str()]),
                kind: LaneKind::User(u.clone()),
                y: 0.0,
                h: H_USER,
            });
        }
        if users.len() > USER_LANES_MAX {
            lanes.push(Lane {
                id: "user:*".into(),
                label: "other users".into(),
                sub: format!("{} users", users.len() - USER_LANES_MAX),
                kind: LaneKind::User(String::new()),
                y: 0.0,
                h: H_USER,
            });
        }
        let span_us = (sc.hi - sc.lo) as f64;
        let own_sessions: Vec<u64> = if m.sessions.len() <= SESSION_LANES_MAX {
            m.sessions.keys().copied().collect()
        } else {
            let mut long: Vec<(u64, u64)> = m
                .sessions
                .values()
                .map(|s| (s.to_us.unwrap_or(sc.hi).saturating_sub(s.from_us), s.id))
                .filter(|(d, _)| *d as f64 >= LONG_SHARE * span_us)
                .collect();
            long.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut ids: Vec<u64> = long.into_iter().take(LONG_LANES_MAX).map(|l| l.1).collect();
            ids.sort_unstable();
            ids
        };
        for &id in &own_sessions {
            let s = &m.sessions[&id];
            lanes.push(Lane {
                id: format!("session:{id}"),
                label: format!("conn {id}"),
                sub: if s.peer.is_empty() {
                    format!("{} commands", s.cmds.len())
                } else {
                    s.peer.to_owned()
                },
                kind: LaneKind::Session(id),
                y: 0.0,
                h: H_SESSION,
            });
        }
        let crowd = m.sessions.len() - own_sessions.len();
        if crowd > 0 {
            lanes.push(Lane {
                id: "connections".into(),
                label: "connections".into(),
                sub: format!("{crowd} sessions"),
                kind: LaneKind::Crowd,
                y: 0.0,
                h: H_CROWD,
            });
        }
        if !m.refused.is_empty() {
            lanes.push(Lane {
                id: "refused".into(),
                label: "refused".into(),
                sub: format!("{} connections", m.refused.len()),
                kind: LaneKind::Refused,
                y: 0.0,
                h: H_SESSION,
            });
        }

        // Vertical layout.
        let top_rows = 118.0; // title, subtitle, legend, convergence and window labels
        let mut y = top_rows;
        for l in &mut lanes {
            l.y = y;
            y += l.h;
        }
        let lanes_bottom = y.max(top_rows + 20.0);
        let height = lanes_bottom + 44.0;
        Layout {
            sc,
            windows,
            lanes,
            own_users,
            own_sessions,
            top_rows,
            lanes_bottom,
            height,
        }
    }
}

/// The time axis: from the first to the last thing shown (events, annotations,
/// windows), with a margin; from 0 when the first is early.
fn time_scale(input: &TimelineInput<'_>, m: &Model<'_>, windows: &[LockWindow]) -> Scale {
    let ann_t = input.annotations.iter().map(|a| a.t_us);
    let win_t = windows
        .iter()
        .flat_map(|w| [Some(w.from_us), w.to_us])
        .flatten();
    let first = m
        .first_time()
        .into_iter()
        .chain(ann_t.clone())
        .chain(win_t.clone())
        .min();
    let last = m.last_time().into_iter().chain(ann_t).chain(win_t).max();
    let (mut lo, mut hi) = match (first, last) {
        (Some(a), Some(b)) => (a, b),
        _ => (0, 1_000_000),
    };
    let span = (hi - lo).max(1_000);
    if lo <= span / 4 {
        lo = 0;
    } else {
        lo -= span / 50;
    }
    hi = hi.max(lo + 1_000) + span / 50;
    Scale { lo, hi }
}

pub(super) fn nice_step(span_us: u64) -> u64 {
    let raw = (span_us / 10).max(1);
    let mut mag = 1u64;
    while mag.saturating_mul(10) <= raw {
        mag *= 10;
    }
    for m in [1, 2, 5, 10] {
        if m * mag >= raw {
            return m * mag;
        }
    }
    10 * mag
}

/// Items split into those drawn one by one and dense runs (bands).
pub(super) struct Placed<'i> {
    pub(super) single: Vec<&'i Item>,
    pub(super) bands: Vec<Vec<&'i Item>>,
}

pub(super) fn place(items: &[Item], sc: Scale) -> Placed<'_> {
    let mut buckets: BTreeMap<usize, Vec<&Item>> = BTreeMap::new();
    for it in items {
        buckets.entry(sc.bucket(it.t_us)).or_default().push(it);
    }
    let dense: Vec<usize> = buckets
        .iter()
        .filter(|(_, v)| v.len() > DENSE)
        .map(|(b, _)| *b)
        .collect();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for b in dense {
        match runs.last_mut() {
            Some(r) if b - r.1 <= BAND_GAP + 1 => r.1 = b,
            _ => runs.push((b, b)),
        }
    }
    let mut placed = Placed {
        single: Vec::new(),
        bands: vec![Vec::new(); runs.len()],
    };
    for (b, v) in buckets {
        match runs.iter().position(|r| (r.0..=r.1).contains(&b)) {
            Some(i) => placed.bands[i].extend(v),
            None => placed.single.extend(v),
        }
    }
    placed
}
