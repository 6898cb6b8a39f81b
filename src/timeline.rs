//! A run's timeline as a picture: `timeline.svg` and a self-contained
//! `timeline.html` (the same SVG inline, a few lines of CSS and script for
//! hover tooltips, nothing fetched from the network).
//!
//! One lane per client connection and one per user, on one time axis (the
//! fake's clock, microseconds since it started). Each command is a mark
//! coloured by its reply ([`ReplyClass`]); lock windows and faults are shaded
//! across the lanes; the runner's annotations (client starts, exits and
//! restarts, source changes, steps, the moment the backup converged) are drawn
//! on the same clock. Hovering a mark shows the command and its reply (SVG
//! `<title>` elements, so it also works in a bare SVG viewer).
//!
//! A storm stays readable: wherever a lane would get more than a few marks per
//! few pixels, the marks of that stretch become one density band (a histogram
//! by reply class) labelled with the count and the rate; when there are many
//! short connections, they share one aggregated `connections` lane.
//!
//! Rendering is pure and deterministic: the same input gives the same bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

use crate::events::{Event, EventKind};

/// Everything a timeline shows.
#[derive(Debug, Clone)]
pub struct TimelineInput<'a> {
    /// The heading (the scenario name and what it proves).
    pub title: String,
    /// The fake's event log, in order.
    pub events: &'a [Event],
    /// What the runner knows that the fake does not, on the fake's clock.
    pub annotations: Vec<Annotation>,
    /// Lock windows known to the caller. A lock named in [`LockHit`] events
    /// and not covered here gets a window derived from its first to its last
    /// hit ([`derive_lock_windows`]).
    ///
    /// [`LockHit`]: EventKind::LockHit
    pub lock_windows: Vec<LockWindow>,
}

impl<'a> TimelineInput<'a> {
    /// A timeline of `events` with no annotations and derived lock windows.
    pub fn new(title: impl Into<String>, events: &'a [Event]) -> TimelineInput<'a> {
        TimelineInput {
            title: title.into(),
            events,
            annotations: Vec::new(),
            lock_windows: Vec::new(),
        }
    }
}

/// Something the runner saw, at a time on the fake's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// Microseconds since the fake started.
    pub t_us: u64,
    /// What it was.
    pub kind: AnnotationKind,
    /// Its text: the client's arguments, the change, the step (shown on hover,
    /// and next to the mark when there is room).
    pub label: String,
}

/// What an [`Annotation`] marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnotationKind {
    /// A `sync_client` process started.
    ClientStart,
    /// A `sync_client` process exited (`None`: killed by a signal).
    ClientExit {
        /// The exit status.
        status: Option<i32>,
    },
    /// The operator policy restarted the client.
    ClientRestart,
    /// A change made on the source (from the ledger).
    SourceChange {
        /// Whose.
        user: String,
    },
    /// The backup was seen equal to the source.
    Converged,
    /// A scenario step began.
    Step,
}

impl Annotation {
    /// An annotation of `kind` at `t_us`.
    pub fn new(t_us: u64, kind: AnnotationKind, label: impl Into<String>) -> Annotation {
        Annotation {
            t_us,
            kind,
            label: label.into(),
        }
    }
}

/// A time a lock was held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockWindow {
    /// The lock's name (as in [`EventKind::LockHit`]).
    pub name: String,
    /// Users it locks (their lanes are shaded darker); empty: unknown.
    pub users: Vec<String>,
    /// When it closed.
    pub from_us: u64,
    /// When it opened again; `None`: still held at the end.
    pub to_us: Option<u64>,
    /// True when derived from `LockHit` events (first to last hit) rather
    /// than known.
    pub derived: bool,
}

/// How a command ended, for its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReplyClass {
    /// `OK …`.
    Ok,
    /// `NO IMAP_MAILBOX_LOCKED …` (or a lock hit).
    Locked,
    /// Any other `NO`/`BAD`.
    No,
    /// No reply: the connection was dropped (or the log ended) first.
    Dropped,
}

impl ReplyClass {
    /// The class of a reply line (`None`: no reply).
    pub fn of(reply: Option<&str>, lock_hit: bool) -> ReplyClass {
        match reply {
            None => ReplyClass::Dropped,
            Some(_) if lock_hit => ReplyClass::Locked,
            Some(l) if l.starts_with("OK") => ReplyClass::Ok,
            Some(l) if l.starts_with("NO") && l.contains("LOCKED") => ReplyClass::Locked,
            Some(_) => ReplyClass::No,
        }
    }

    /// Its CSS class.
    pub fn css(self) -> &'static str {
        match self {
            ReplyClass::Ok => "ok",
            ReplyClass::Locked => "locked",
            ReplyClass::No => "no",
            ReplyClass::Dropped => "dropped",
        }
    }

    /// Its name in legends and tooltips.
    pub fn label(self) -> &'static str {
        match self {
            ReplyClass::Ok => "OK",
            ReplyClass::Locked => "NO LOCKED",
            ReplyClass::No => "other NO",
            ReplyClass::Dropped => "dropped",
        }
    }

    /// Its fill colour.
    pub fn colour(self) -> &'static str {
        match self {
            ReplyClass::Ok => "#2e9e5b",
            ReplyClass::Locked => "#ef8a00",
            ReplyClass::No => "#d7263d",
            ReplyClass::Dropped => "#1f1f1f",
        }
    }

    /// Every class, in legend order.
    pub const ALL: [ReplyClass; 4] = [
        ReplyClass::Ok,
        ReplyClass::Locked,
        ReplyClass::No,
        ReplyClass::Dropped,
    ];
}

/// One lock window per lock name seen in `LockHit` events, from its first to
/// its last hit, with the users of the commands that hit it.
pub fn derive_lock_windows(events: &[Event]) -> Vec<LockWindow> {
    let model = Model::build(events);
    derived_windows(&model)
}

/// Parse an `events.jsonl` file (one [`Event`] per line; blank lines skipped).
pub fn parse_jsonl(text: &str) -> Result<Vec<Event>, serde_json::Error> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect()
}

/// Write `timeline.svg` and `timeline.html` into `dir`.
pub fn write_files(dir: &Path, input: &TimelineInput<'_>) -> io::Result<()> {
    std::fs::write(dir.join("timeline.svg"), render_svg(input))?;
    std::fs::write(dir.join("timeline.html"), render_html(input))
}

/// The timeline as a standalone SVG document.
pub fn render_svg(input: &TimelineInput<'_>) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&svg_element(input));
    out
}

/// The timeline as a self-contained HTML page: the SVG inline, hover
/// tooltips by a few lines of inline script, nothing loaded from elsewhere.
pub fn render_html(input: &TimelineInput<'_>) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(out, "<title>{}</title>", esc(&input.title));
    out.push_str(HTML_STYLE);
    out.push_str("</head>\n<body>\n");
    out.push_str(&svg_element(input));
    out.push_str("\n<div id=\"tip\" hidden></div>\n");
    out.push_str(HTML_SCRIPT);
    out.push_str("</body>\n</html>\n");
    out
}

const HTML_STYLE: &str = "<style>
body{margin:8px;background:#fff;font-family:'DejaVu Sans',Helvetica,Arial,sans-serif}
svg{max-width:100%;height:auto}
#tip{position:fixed;z-index:9;max-width:640px;padding:6px 8px;border:1px solid #888;border-radius:4px;
background:#fffff4;color:#111;font:12px/1.35 'DejaVu Sans Mono',monospace;white-space:pre-wrap;
pointer-events:none;box-shadow:0 2px 6px rgba(0,0,0,.25)}
svg .tip:hover{stroke:#000;stroke-width:1px}
</style>
";

const HTML_SCRIPT: &str = "<script>
(function(){
  var tip=document.getElementById('tip');
  document.querySelectorAll('svg .tip').forEach(function(el){
    var t=el.querySelector(':scope > title');
    if(t){el.setAttribute('data-tip',t.textContent);t.remove();}
  });
  document.addEventListener('mousemove',function(e){
    var el=e.target.closest&&e.target.closest('[data-tip]');
    if(!el){tip.hidden=true;return;}
    tip.textContent=el.getAttribute('data-tip');
    tip.hidden=false;
    var x=e.clientX+14,y=e.clientY+14,w=tip.offsetWidth,h=tip.offsetHeight;
    if(x+w>innerWidth-4)x=Math.max(4,e.clientX-w-14);
    if(y+h>innerHeight-4)y=Math.max(4,e.clientY-h-14);
    tip.style.left=x+'px';tip.style.top=y+'px';
  });
})();
</script>
";

// ---------------------------------------------------------------------------
// The model: events paired into commands and sessions.
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Cmd<'a> {
    session: u64,
    t_us: u64,
    text: &'a str,
    verb: &'a str,
    users: &'a [String],
    reply: Option<&'a str>,
    data_lines: usize,
    lock: Option<&'a str>,
    fault: Option<(&'a str, &'a str)>,
    class: ReplyClass,
}

#[derive(Debug, Default)]
struct Sess<'a> {
    id: u64,
    peer: &'a str,
    from_us: u64,
    to_us: Option<u64>,
    reason: Option<&'a str>,
    cmds: Vec<usize>,
    holds: Vec<(u64, u64, Option<u64>)>,
}

impl Sess<'_> {
    fn abnormal_close(&self) -> bool {
        self.reason.is_some_and(|r| {
            r.starts_with("fault") || r.starts_with("error") || r.contains("restart")
        })
    }
}

#[derive(Debug)]
struct FaultAt<'a> {
    t_us: u64,
    session: u64,
    rule: &'a str,
    action: &'a str,
    cmd: Option<usize>,
}

#[derive(Debug, Default)]
struct Model<'a> {
    cmds: Vec<Cmd<'a>>,
    sessions: BTreeMap<u64, Sess<'a>>,
    faults: Vec<FaultAt<'a>>,
    refused: Vec<(u64, &'a str)>,
    /// Marks and control requests: (time, kind, text).
    notes: Vec<(u64, &'static str, &'a str)>,
    /// (time, lock, command).
    lock_hits: Vec<(u64, &'a str, Option<usize>)>,
    connected: u64,
}

impl<'a> Model<'a> {
    fn build(events: &'a [Event]) -> Model<'a> {
        let mut order: Vec<&Event> = events.iter().collect();
        order.sort_by_key(|e| (e.seq, e.t_us));
        let mut m = Model::default();
        // The command of each session still waiting for its reply.
        let mut pending: BTreeMap<u64, usize> = BTreeMap::new();
        for e in order {
            let sid = e.session;
            match &e.kind {
                EventKind::Connected { peer } => {
                    m.connected += 1;
                    let s = m.sess(sid, e.t_us);
                    s.peer = peer;
                    s.from_us = e.t_us;
                }
                EventKind::Command {
                    verb, users, text, ..
                } => {
                    m.sess(sid, e.t_us);
                    pending.remove(&sid);
                    let i = m.cmds.len();
                    m.cmds.push(Cmd {
                        session: sid,
                        t_us: e.t_us,
                        text,
                        verb,
                        users,
                        reply: None,
                        data_lines: 0,
                        lock: None,
                        fault: None,
                        class: ReplyClass::Dropped,
                    });
                    m.sess(sid, e.t_us).cmds.push(i);
                    pending.insert(sid, i);
                }
                EventKind::Reply { line, data_lines } => {
                    if let Some(i) = pending.remove(&sid) {
                        let c = &mut m.cmds[i];
                        c.reply = Some(line);
                        c.data_lines = *data_lines;
                        c.class = ReplyClass::of(Some(line), c.lock.is_some());
                    }
                }
                EventKind::LockHit { lock } => {
                    let cmd = pending.get(&sid).copied();
                    if let Some(i) = cmd {
                        m.cmds[i].lock = Some(lock);
                    }
                    m.lock_hits.push((e.t_us, lock, cmd));
                }
                EventKind::Fault { rule, action } => {
                    let cmd = pending.get(&sid).copied();
                    if let Some(i) = cmd {
                        m.cmds[i].fault = Some((rule, action));
                    }
                    m.faults.push(FaultAt {
                        t_us: e.t_us,
                        session: sid,
                        rule,
                        action,
                        cmd,
                    });
                }
                EventKind::Closed { reason } => {
                    pending.remove(&sid);
                    let s = m.sess(sid, e.t_us);
                    s.to_us = Some(e.t_us);
                    s.reason = Some(reason);
                }
                EventKind::Refused { peer } => m.refused.push((e.t_us, peer)),
                EventKind::Mark { name } => m.notes.push((e.t_us, "mark", name)),
                EventKind::Control { request } => m.notes.push((e.t_us, "ctl", request)),
                EventKind::Held { hold } => {
                    m.sess(sid, e.t_us).holds.push((*hold, e.t_us, None));
                }
                EventKind::Released { hold } => {
                    let s = m.sess(sid, e.t_us);
                    if let Some(h) = s
                        .holds
                        .iter_mut()
                        .rev()
                        .find(|h| h.0 == *hold && h.2.is_none())
                    {
                        h.2 = Some(e.t_us);
                    }
                }
                // sync_server personality: a command waiting for a lock window.
                EventKind::LockWait { lock } => m.notes.push((e.t_us, "wait", lock)),
                EventKind::LockWaited { lock, .. } => m.notes.push((e.t_us, "waited", lock)),
            }
        }
        m
    }

    fn sess(&mut self, id: u64, t_us: u64) -> &mut Sess<'a> {
        self.sessions.entry(id).or_insert_with(|| Sess {
            id,
            from_us: t_us,
            ..Sess::default()
        })
    }

    fn session_class(&self, s: &Sess<'_>) -> ReplyClass {
        let worst = s
            .cmds
            .iter()
            .map(|&i| self.cmds[i].class)
            .max()
            .unwrap_or(ReplyClass::Ok);
        if s.abnormal_close() {
            ReplyClass::Dropped
        } else {
            worst
        }
    }

    fn last_time(&self) -> Option<u64> {
        let a = self.cmds.iter().map(|c| c.t_us);
        let b = self
            .sessions
            .values()
            .flat_map(|s| [Some(s.from_us), s.to_us])
            .flatten();
        let c = self.notes.iter().map(|n| n.0);
        let d = self.refused.iter().map(|r| r.0);
        a.chain(b).chain(c).chain(d).max()
    }

    fn first_time(&self) -> Option<u64> {
        let a = self.cmds.iter().map(|c| c.t_us);
        let b = self.sessions.values().map(|s| s.from_us);
        let c = self.notes.iter().map(|n| n.0);
        let d = self.refused.iter().map(|r| r.0);
        a.chain(b).chain(c).chain(d).min()
    }
}

fn derived_windows(m: &Model<'_>) -> Vec<LockWindow> {
    let mut by_name: BTreeMap<&str, (u64, u64, Vec<String>)> = BTreeMap::new();
    for &(t, lock, cmd) in &m.lock_hits {
        let w = by_name.entry(lock).or_insert((t, t, Vec::new()));
        w.0 = w.0.min(t);
        w.1 = w.1.max(t);
        if let Some(i) = cmd {
            for u in m.cmds[i].users {
                if !w.2.contains(u) {
                    w.2.push(u.clone());
                }
            }
        }
    }
    by_name
        .into_iter()
        .map(|(name, (from, to, mut users))| {
            users.sort();
            LockWindow {
                name: name.to_owned(),
                users,
                from_us: from,
                to_us: Some(to),
                derived: true,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------

/// The picture's width in pixels.
pub const WIDTH: f64 = 1400.0;
const PLOT_X: f64 = 170.0;
const PLOT_W: f64 = WIDTH - PLOT_X - 28.0;
/// Width of an aggregation bucket, in pixels.
const BUCKET_PX: f64 = 5.0;
/// More marks than this in one bucket make it dense.
const DENSE: usize = 3;
/// Dense buckets this close (in buckets) join into one band.
const BAND_GAP: usize = 3;
/// A band of at most this many commands lists them all on hover.
const SMALL_BAND: usize = 12;
/// Up to this many connections, each gets its own lane.
const SESSION_LANES_MAX: usize = 14;
/// In a crowd, connections lasting at least this share of the run keep their
/// own lane (at most [`LONG_LANES_MAX`]).
const LONG_SHARE: f64 = 0.08;
const LONG_LANES_MAX: usize = 6;
/// Users beyond this share one lane.
const USER_LANES_MAX: usize = 24;

const H_CLIENT: f64 = 36.0;
const H_RUNNER: f64 = 26.0;
const H_USER: f64 = 46.0;
const H_SESSION: f64 = 24.0;
const H_CROWD: f64 = 76.0;

#[derive(Debug, Clone, Copy)]
struct Scale {
    lo: u64,
    hi: u64,
}

impl Scale {
    fn x(self, t: u64) -> f64 {
        let t = t.clamp(self.lo, self.hi);
        PLOT_X + (t - self.lo) as f64 / (self.hi - self.lo) as f64 * PLOT_W
    }

    fn bucket(self, t: u64) -> usize {
        ((self.x(t) - PLOT_X) / BUCKET_PX).floor().max(0.0) as usize
    }

    fn bucket_x(b: usize) -> f64 {
        PLOT_X + b as f64 * BUCKET_PX
    }
}

/// One mark to place in a lane: a command, or a whole connection.
struct Item {
    t_us: u64,
    end_us: Option<u64>,
    class: ReplyClass,
    title: String,
    /// For band summaries: the verb (commands) or session id (connections).
    key: String,
    session: u64,
}

enum LaneKind {
    Client,
    Runner,
    User(String),
    Session(u64),
    Crowd,
    Refused,
}

struct Lane {
    id: String,
    label: String,
    sub: String,
    kind: LaneKind,
    y: f64,
    h: f64,
}

fn fmt_s(us: u64) -> String {
    format!("{:.3} s", us as f64 / 1e6)
}

fn fmt_span(a: u64, b: u64) -> String {
    format!("{:.3}–{:.3} s", a as f64 / 1e6, b as f64 / 1e6)
}

fn nice_step(span_us: u64) -> u64 {
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

fn tick_label(t: u64, step: u64) -> String {
    let s = t as f64 / 1e6;
    if step >= 1_000_000 {
        format!("{s:.0} s")
    } else if step >= 100_000 {
        format!("{s:.1} s")
    } else if step >= 10_000 {
        format!("{s:.2} s")
    } else {
        format!("{s:.3} s")
    }
}

/// Escape text for XML content and attributes; characters XML 1.0 forbids
/// become U+FFFD.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn f1(v: f64) -> String {
    format!("{v:.1}")
}

/// A rough width of `text` at 11 px.
fn text_w(text: &str, px: f64) -> f64 {
    text.chars().count() as f64 * px * 0.58
}

fn cmd_title(c: &Cmd<'_>, sess: Option<&Sess<'_>>) -> String {
    let mut t = format!("session {} · {}\n{}", c.session, fmt_s(c.t_us), c.text);
    match c.reply {
        Some(r) if c.data_lines > 0 => {
            let _ = write!(t, "\n→ ({} data lines) {r}", c.data_lines);
        }
        Some(r) => {
            let _ = write!(t, "\n→ {r}");
        }
        None => {
            let why = sess
                .and_then(|s| s.reason)
                .map_or("the log ended first".to_owned(), |r| format!("closed: {r}"));
            let _ = write!(t, "\n→ no reply (dropped; {why})");
        }
    }
    if let Some(l) = c.lock {
        let _ = write!(t, "\nlocked by {l}");
    }
    if let Some((rule, action)) = c.fault {
        let _ = write!(t, "\nfault {rule}: {action}");
    }
    t
}

fn session_title(m: &Model<'_>, s: &Sess<'_>) -> String {
    let mut t = format!(
        "session {} ({}) · {}",
        s.id,
        if s.peer.is_empty() { "?" } else { s.peer },
        match s.to_us {
            Some(to) => fmt_span(s.from_us, to),
            None => format!("from {}, still open", fmt_s(s.from_us)),
        }
    );
    const SHOWN: usize = 12;
    for &i in s.cmds.iter().take(SHOWN) {
        let c = &m.cmds[i];
        let _ = write!(
            t,
            "\n{} → {}",
            c.text,
            c.reply.unwrap_or("(no reply: dropped)")
        );
    }
    if s.cmds.len() > SHOWN {
        let _ = write!(t, "\n… {} more commands", s.cmds.len() - SHOWN);
    }
    if let Some(r) = s.reason {
        let _ = write!(t, "\nclosed: {r}");
    }
    t
}

fn class_counts(items: &[&Item]) -> [usize; 4] {
    let mut n = [0usize; 4];
    for it in items {
        n[it.class as usize] += 1;
    }
    n
}

fn counts_text(n: &[usize; 4]) -> String {
    ReplyClass::ALL
        .iter()
        .filter(|c| n[**c as usize] > 0)
        .map(|c| format!("{} {}", n[*c as usize], c.label()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Items split into those drawn one by one and dense runs (bands).
struct Placed<'i> {
    single: Vec<&'i Item>,
    bands: Vec<Vec<&'i Item>>,
}

fn place(items: &[Item], sc: Scale) -> Placed<'_> {
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

// ---------------------------------------------------------------------------
// Drawing
// ---------------------------------------------------------------------------

struct Ctx<'m, 'a> {
    m: &'m Model<'a>,
    sc: Scale,
    out: String,
}

fn svg_element(input: &TimelineInput<'_>) -> String {
    let m = Model::build(input.events);

    // Windows: the caller's, plus derived ones for locks it did not name.
    let mut windows = input.lock_windows.clone();
    for w in derived_windows(&m) {
        if !windows.iter().any(|k| k.name == w.name) {
            windows.push(w);
        }
    }

    // The time domain.
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
    let sc = Scale { lo, hi };

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
    let own_users: Vec<&str> = users.keys().copied().take(USER_LANES_MAX).collect();
    for u in &own_users {
        lanes.push(Lane {
            id: format!("user:{u}"),
            label: format!("user {u}"),
            sub: format!("{} commands", users[u]),
            kind: LaneKind::User((*u).to_owned()),
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

    let mut cx = Ctx {
        m: &m,
        sc,
        out: String::new(),
    };
    let o = &mut cx.out;
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"11\" \
         data-t0-us=\"{lo}\" data-t1-us=\"{hi}\" data-plot-x=\"{px}\" data-plot-w=\"{pw}\">",
        w = WIDTH,
        h = f1(height),
        lo = sc.lo,
        hi = sc.hi,
        px = PLOT_X,
        pw = PLOT_W,
    );
    let _ = writeln!(o, "<title>{}</title>", esc(&input.title));
    o.push_str(SVG_DEFS);
    let _ = writeln!(
        o,
        "<rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{}\" fill=\"#ffffff\"/>",
        f1(height)
    );

    // Heading.
    let lock_hits = m.lock_hits.len();
    let ncmds = m.cmds.len();
    let _ = writeln!(
        o,
        "<text x=\"12\" y=\"22\" font-size=\"16\" font-weight=\"bold\" fill=\"#222\">{}</text>",
        esc(&input.title)
    );
    let _ = writeln!(
        o,
        "<text class=\"summary\" x=\"12\" y=\"40\" fill=\"#555\">{} connections · {} commands · {} LOCKED · {} faults · {} refused · {:.2} s shown</text>",
        m.connected,
        ncmds,
        lock_hits,
        m.faults.len(),
        m.refused.len(),
        span_us / 1e6
    );
    legend(o);

    // Lane backgrounds and labels.
    o.push_str("<g class=\"lanes\">\n");
    for (i, l) in lanes.iter().enumerate() {
        let fill = if i % 2 == 0 { "#f6f7f9" } else { "#ffffff" };
        let _ = writeln!(
            o,
            "<g class=\"lane\" data-lane=\"{id}\"><rect x=\"0\" y=\"{y}\" width=\"{WIDTH}\" height=\"{h}\" fill=\"{fill}\"/>\
             <text class=\"lane-label\" x=\"12\" y=\"{ty}\" font-weight=\"bold\" fill=\"#333\">{label}</text>\
             <text x=\"12\" y=\"{sy}\" font-size=\"9.5\" fill=\"#777\">{sub}</text></g>",
            id = esc(&l.id),
            y = f1(l.y),
            h = f1(l.h),
            ty = f1(l.y + l.h / 2.0 - 1.0),
            sy = f1(l.y + l.h / 2.0 + 10.0),
            label = esc(&l.label),
            sub = esc(&l.sub),
        );
    }
    let _ = writeln!(
        o,
        "<line x1=\"{x}\" y1=\"{top_rows}\" x2=\"{x}\" y2=\"{b}\" stroke=\"#bbb\"/>",
        x = PLOT_X - 0.5,
        b = f1(lanes_bottom)
    );
    o.push_str("</g>\n");

    // Grid and axis.
    let step = nice_step(sc.hi - sc.lo);
    let mut ticks = Vec::new();
    let mut t = sc.lo.div_ceil(step) * step;
    while t <= sc.hi {
        ticks.push(t);
        t += step;
    }
    o.push_str("<g class=\"axis\">\n");
    for &t in &ticks {
        let x = sc.x(t);
        let _ = writeln!(
            o,
            "<line x1=\"{x}\" y1=\"{top}\" x2=\"{x}\" y2=\"{b}\" stroke=\"#e3e3e3\"/>\
             <line x1=\"{x}\" y1=\"{b}\" x2=\"{x}\" y2=\"{b5}\" stroke=\"#666\"/>\
             <text class=\"tick\" x=\"{x}\" y=\"{ty}\" text-anchor=\"middle\" fill=\"#444\">{label}</text>",
            x = f1(x),
            top = top_rows,
            b = f1(lanes_bottom),
            b5 = f1(lanes_bottom + 5.0),
            ty = f1(lanes_bottom + 18.0),
            label = tick_label(t, step)
        );
    }
    let _ = writeln!(
        o,
        "<line x1=\"{PLOT_X}\" y1=\"{b}\" x2=\"{x2}\" y2=\"{b}\" stroke=\"#666\"/>\
         <text x=\"{x2}\" y=\"{ty}\" text-anchor=\"end\" font-size=\"10\" fill=\"#777\">time since the fake started</text>",
        b = f1(lanes_bottom),
        x2 = f1(PLOT_X + PLOT_W),
        ty = f1(lanes_bottom + 34.0)
    );
    o.push_str("</g>\n");

    // Lock windows and faults, shaded behind the marks.
    let mut row_top = LabelRow::default();
    o.push_str("<g class=\"windows\">\n");
    for w in &windows {
        let x0 = sc.x(w.from_us);
        let x1 = sc.x(w.to_us.unwrap_or(sc.hi));
        let wd = (x1 - x0).max(2.0);
        let what = if w.derived {
            "first to last LOCKED reply"
        } else {
            "held"
        };
        let when = match w.to_us {
            Some(to) => format!(
                "{} ({:.2} s)",
                fmt_span(w.from_us, to),
                (to - w.from_us) as f64 / 1e6
            ),
            None => format!("from {}, still held at the end", fmt_s(w.from_us)),
        };
        let hits = m.lock_hits.iter().filter(|h| h.1 == w.name).count();
        let title = format!(
            "lock {} ({what}): {when}\nusers: {}\n{hits} LOCKED replies",
            w.name,
            if w.users.is_empty() {
                "?".to_owned()
            } else {
                w.users.join(", ")
            }
        );
        let _ = writeln!(
            o,
            "<rect class=\"lock-window tip\" data-lock=\"{name}\" data-from-us=\"{from}\" data-to-us=\"{to}\" data-derived=\"{derived}\" \
             x=\"{x}\" y=\"{y}\" width=\"{wd}\" height=\"{h}\" fill=\"url(#lockhatch)\" stroke=\"#ef8a00\" stroke-width=\"1\" stroke-dasharray=\"4 3\">\
             <title>{title}</title></rect>",
            name = esc(&w.name),
            from = w.from_us,
            to = w.to_us.map_or_else(String::new, |t| t.to_string()),
            derived = w.derived,
            x = f1(x0),
            y = f1(top_rows - 20.0),
            wd = f1(wd),
            h = f1(lanes_bottom - top_rows + 20.0),
            title = esc(&title),
        );
        for l in &lanes {
            if let LaneKind::User(u) = &l.kind {
                if w.users.iter().any(|wu| wu == u) {
                    let _ = writeln!(
                        o,
                        "<rect class=\"lock-lane\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#ffd59a\" opacity=\"0.75\"/>",
                        f1(x0),
                        f1(l.y + 1.0),
                        f1(wd),
                        f1(l.h - 2.0)
                    );
                }
            }
        }
        let label = format!("lock {} · {} · {hits} LOCKED", w.name, when);
        row_top.put(
            o,
            x0 + 4.0,
            top_rows - 7.0,
            &label,
            "#a85d00",
            "window-label",
        );
    }
    // Faults, merged per bucket.
    let mut fault_buckets: BTreeMap<usize, Vec<&FaultAt<'_>>> = BTreeMap::new();
    for f in &m.faults {
        fault_buckets.entry(sc.bucket(f.t_us)).or_default().push(f);
    }
    for (b, fs) in &fault_buckets {
        let mut title = if fs.len() == 1 {
            "fault".to_owned()
        } else {
            format!("{} faults", fs.len())
        };
        for f in fs.iter().take(10) {
            let _ = write!(
                title,
                "\n{} · session {} · {}: {}",
                fmt_s(f.t_us),
                f.session,
                f.rule,
                f.action
            );
            if let Some(i) = f.cmd {
                let _ = write!(title, " on {}", m.cmds[i].text);
            }
        }
        if fs.len() > 10 {
            let _ = write!(title, "\n… {} more", fs.len() - 10);
        }
        let x = Scale::bucket_x(*b);
        let _ = writeln!(
            o,
            "<rect class=\"fault tip\" data-count=\"{n}\" x=\"{x}\" y=\"{y}\" width=\"{BUCKET_PX}\" height=\"{h}\" fill=\"#d7263d\" opacity=\"0.28\"><title>{t}</title></rect>",
            n = fs.len(),
            x = f1(x),
            y = f1(top_rows),
            h = f1(lanes_bottom - top_rows),
            t = esc(&title)
        );
        let f0 = fs[0];
        let label = if fs.len() == 1 {
            format!("fault {}", f0.action)
        } else {
            format!("{} faults", fs.len())
        };
        row_top.put(o, x + 2.0, top_rows - 7.0, &label, "#b0172b", "fault-label");
    }
    o.push_str("</g>\n");

    // After convergence: a light green tint to the end.
    if let Some(first) = input
        .annotations
        .iter()
        .filter(|a| a.kind == AnnotationKind::Converged)
        .map(|a| a.t_us)
        .min()
    {
        let x = sc.x(first);
        let _ = writeln!(
            o,
            "<rect class=\"after-converged\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#2e9e5b\" opacity=\"0.10\"/>",
            f1(x),
            f1(top_rows),
            f1((PLOT_X + PLOT_W - x).max(0.0)),
            f1(lanes_bottom - top_rows)
        );
    }

    // The lanes' contents.
    for l in &lanes {
        match &l.kind {
            LaneKind::Client => cx.client_lane(l, &input.annotations),
            LaneKind::Runner => cx.runner_lane(l, &input.annotations),
            LaneKind::User(u) => {
                let items: Vec<Item> = m
                    .cmds
                    .iter()
                    .filter(|c| {
                        if u.is_empty() {
                            c.users.iter().any(|cu| !own_users.contains(&cu.as_str()))
                        } else {
                            c.users.iter().any(|cu| cu == u)
                        }
                    })
                    .map(|c| cx.cmd_item(c))
                    .collect();
                cx.lane_items(l, &items, "commands");
                let changes: Vec<&Annotation> = input
                    .annotations
                    .iter()
                    .filter(|a| {
                        matches!(&a.kind, AnnotationKind::SourceChange { user }
                            if (u.is_empty() && !own_users.contains(&user.as_str())) || user == u)
                    })
                    .collect();
                cx.source_changes(l, &changes);
            }
            LaneKind::Session(id) => {
                let s = &m.sessions[id];
                cx.session_span(l, s);
                let items: Vec<Item> = s.cmds.iter().map(|&i| cx.cmd_item(&m.cmds[i])).collect();
                cx.lane_items(l, &items, "commands");
            }
            LaneKind::Crowd => {
                let items: Vec<Item> = m
                    .sessions
                    .values()
                    .filter(|s| !own_sessions.contains(&s.id))
                    .map(|s| Item {
                        t_us: s.from_us,
                        end_us: s.to_us,
                        class: m.session_class(s),
                        title: session_title(&m, s),
                        key: s.id.to_string(),
                        session: s.id,
                    })
                    .collect();
                cx.lane_items(l, &items, "connections");
                for s in m
                    .sessions
                    .values()
                    .filter(|s| !own_sessions.contains(&s.id))
                {
                    cx.holds(l, s);
                }
            }
            LaneKind::Refused => {
                let items: Vec<Item> = m
                    .refused
                    .iter()
                    .map(|(t, peer)| Item {
                        t_us: *t,
                        end_us: None,
                        class: ReplyClass::Dropped,
                        title: format!("connection from {peer} refused · {}", fmt_s(*t)),
                        key: "refused".into(),
                        session: 0,
                    })
                    .collect();
                cx.lane_items(l, &items, "refused");
            }
        }
    }

    // Convergence, on top of everything.
    let o = &mut cx.out;
    for a in input
        .annotations
        .iter()
        .filter(|a| a.kind == AnnotationKind::Converged)
    {
        let x = sc.x(a.t_us);
        let label = format!("converged {}", fmt_s(a.t_us));
        let title = if a.label.is_empty() {
            format!("the backup converged at {}", fmt_s(a.t_us))
        } else {
            format!("the backup converged at {}\n{}", fmt_s(a.t_us), a.label)
        };
        let w = text_w(&label, 12.0) + 12.0;
        let right = x + w + 4.0 > PLOT_X + PLOT_W;
        let bx = if right { x - w - 4.0 } else { x + 4.0 };
        let _ = writeln!(
            o,
            "<g class=\"converged tip\" data-t-us=\"{t}\">\
             <line x1=\"{x}\" y1=\"{y0}\" x2=\"{x}\" y2=\"{y1}\" stroke=\"#0b7a34\" stroke-width=\"3\"/>\
             <rect x=\"{bx}\" y=\"{by}\" width=\"{w}\" height=\"17\" rx=\"3\" fill=\"#0b7a34\"/>\
             <text x=\"{tx}\" y=\"{ty}\" font-size=\"12\" font-weight=\"bold\" fill=\"#ffffff\">{label}</text>\
             <circle cx=\"{x}\" cy=\"{y1}\" r=\"5\" fill=\"#0b7a34\"/>\
             <title>{title}</title></g>",
            t = a.t_us,
            x = f1(x),
            y0 = f1(top_rows - 42.0 + 17.0),
            y1 = f1(lanes_bottom),
            bx = f1(bx),
            by = f1(top_rows - 42.0),
            w = f1(w),
            tx = f1(bx + 6.0),
            ty = f1(top_rows - 42.0 + 12.5),
            label = esc(&label),
            title = esc(&title),
        );
    }
    o.push_str("</svg>\n");
    cx.out
}

const SVG_DEFS: &str = "<defs>\
<pattern id=\"lockhatch\" width=\"8\" height=\"8\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
<rect width=\"8\" height=\"8\" fill=\"#ffb347\" fill-opacity=\"0.16\"/>\
<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"8\" stroke=\"#ef8a00\" stroke-opacity=\"0.35\" stroke-width=\"3\"/>\
</pattern>\
<pattern id=\"holdhatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(-45)\">\
<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#5c6bc0\" stroke-opacity=\"0.6\" stroke-width=\"2\"/>\
</pattern>\
</defs>\n";

fn legend(o: &mut String) {
    o.push_str("<g class=\"legend\" font-size=\"11\">\n");
    let mut x = 12.0;
    let y = 56.0;
    for c in ReplyClass::ALL {
        let _ = writeln!(
            o,
            "<rect class=\"swatch {css}\" x=\"{x}\" y=\"{y}\" width=\"4\" height=\"12\" fill=\"{col}\"/>\
             <text x=\"{tx}\" y=\"{ty}\" fill=\"#333\">{label}</text>",
            css = c.css(),
            x = f1(x),
            col = c.colour(),
            tx = f1(x + 8.0),
            ty = f1(y + 10.0),
            label = esc(c.label()),
        );
        x += 8.0 + text_w(c.label(), 11.0) + 16.0;
    }
    let extra: [(&str, &str); 6] = [
        (
            "<rect x=\"{x}\" y=\"{y}\" width=\"22\" height=\"12\" fill=\"url(#lockhatch)\" stroke=\"#ef8a00\" stroke-dasharray=\"4 3\"/>",
            "lock window",
        ),
        (
            "<rect x=\"{x}\" y=\"{y}\" width=\"8\" height=\"12\" fill=\"#d7263d\" opacity=\"0.28\"/>",
            "fault",
        ),
        (
            "<rect x=\"{x}\" y=\"{y}\" width=\"22\" height=\"12\" fill=\"#ece6f7\" stroke=\"#6a4fb3\"/>",
            "density band (count, rate)",
        ),
        (
            "<path d=\"M{cx} {y} l5 6 l-5 6 l-5 -6 z\" fill=\"#1565c0\"/>",
            "source change",
        ),
        (
            "<rect x=\"{x}\" y=\"{y2}\" width=\"22\" height=\"6\" rx=\"2\" fill=\"#9fb3c8\"/>",
            "client running",
        ),
        (
            "<rect x=\"{x}\" y=\"{y}\" width=\"3\" height=\"12\" fill=\"#0b7a34\"/>",
            "converged",
        ),
    ];
    for (shape, label) in extra {
        let s = shape
            .replace("{x}", &f1(x))
            .replace("{cx}", &f1(x + 6.0))
            .replace("{y2}", &f1(y + 3.0))
            .replace("{y}", &f1(y));
        o.push_str(&s);
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"{}\" fill=\"#333\">{}</text>",
            f1(x + 28.0),
            f1(y + 10.0),
            esc(label)
        );
        x += 28.0 + text_w(label, 11.0) + 16.0;
    }
    let _ = writeln!(
        o,
        "<text x=\"{}\" y=\"{}\" fill=\"#888\" font-style=\"italic\">hover a mark for its command and reply</text>",
        f1(x + 8.0),
        f1(y + 10.0)
    );
    o.push_str("</g>\n");
}

/// A row of labels that never overlap: a label that would is left out (its
/// mark keeps its hover text).
#[derive(Default)]
struct LabelRow {
    taken: Vec<(f64, f64)>,
}

impl LabelRow {
    fn put(&mut self, o: &mut String, x: f64, y: f64, text: &str, fill: &str, class: &str) {
        let w = text_w(text, 11.0);
        let x = x.min(PLOT_X + PLOT_W - w).max(PLOT_X);
        if self
            .taken
            .iter()
            .any(|&(a, b)| x < b + 6.0 && x + w + 6.0 > a)
        {
            return;
        }
        self.taken.push((x, x + w));
        let _ = writeln!(
            o,
            "<text class=\"{class}\" x=\"{}\" y=\"{}\" font-weight=\"bold\" fill=\"{fill}\" stroke=\"#ffffff\" stroke-width=\"3\" paint-order=\"stroke\">{}</text>",
            f1(x),
            f1(y),
            esc(text)
        );
    }
}

impl Ctx<'_, '_> {
    fn cmd_item(&self, c: &Cmd<'_>) -> Item {
        Item {
            t_us: c.t_us,
            end_us: None,
            class: c.class,
            title: cmd_title(c, self.m.sessions.get(&c.session)),
            key: c.verb.to_owned(),
            session: c.session,
        }
    }

    /// Marks one by one where sparse, density bands where dense.
    fn lane_items(&mut self, l: &Lane, items: &[Item], noun: &str) {
        let sc = self.sc;
        let placed = place(items, sc);
        let o = &mut self.out;
        let mid = l.y + l.h / 2.0;
        let _ = writeln!(o, "<g class=\"marks\" data-lane=\"{}\">", esc(&l.id));
        for it in &placed.single {
            let x = sc.x(it.t_us);
            match it.end_us {
                Some(end) if noun == "connections" => {
                    let w = (sc.x(end) - x).max(2.5);
                    let _ = writeln!(
                        o,
                        "<rect class=\"mark {css} tip\" x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"1\" fill=\"{col}\"><title>{t}</title></rect>",
                        css = it.class.css(),
                        x = f1(x - 1.0),
                        y = f1(mid - 9.0),
                        w = f1(w),
                        h = 18,
                        col = it.class.colour(),
                        t = esc(&it.title)
                    );
                }
                _ => {
                    let h = (l.h - 10.0).min(22.0);
                    let _ = writeln!(
                        o,
                        "<rect class=\"mark {css} tip\" x=\"{x}\" y=\"{y}\" width=\"3\" height=\"{h}\" fill=\"{col}\"><title>{t}</title></rect>",
                        css = it.class.css(),
                        x = f1(x - 1.5),
                        y = f1(mid - h / 2.0),
                        h = f1(h),
                        col = it.class.colour(),
                        t = esc(&it.title)
                    );
                }
            }
        }
        for band in &placed.bands {
            band_svg(o, l, band, sc, noun);
        }
        o.push_str("</g>\n");
    }

    fn session_span(&mut self, l: &Lane, s: &Sess<'_>) {
        let sc = self.sc;
        let x0 = sc.x(s.from_us);
        let x1 = sc.x(s.to_us.unwrap_or(sc.hi));
        let mid = l.y + l.h / 2.0;
        let title = session_title(self.m, s);
        let o = &mut self.out;
        let _ = writeln!(
            o,
            "<rect class=\"session tip\" data-session=\"{id}\" x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"4\" rx=\"2\" fill=\"#b8c2cc\"><title>{t}</title></rect>",
            id = s.id,
            x = f1(x0),
            y = f1(mid - 2.0),
            w = f1((x1 - x0).max(2.0)),
            t = esc(&title)
        );
        if s.abnormal_close() {
            let _ = writeln!(
                o,
                "<path class=\"close-bad\" d=\"M{a} {b} l8 8 m0 -8 l-8 8\" stroke=\"#1f1f1f\" stroke-width=\"2\"/>",
                a = f1(x1 - 4.0),
                b = f1(mid - 4.0)
            );
        }
        self.holds(l, s);
    }

    fn holds(&mut self, l: &Lane, s: &Sess<'_>) {
        let sc = self.sc;
        for &(hold, from, to) in &s.holds {
            let x0 = sc.x(from);
            let x1 = sc.x(to.unwrap_or(sc.hi));
            let _ = writeln!(
                self.out,
                "<rect class=\"hold tip\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"url(#holdhatch)\" stroke=\"#5c6bc0\"><title>session {} held by trigger {hold}: {}</title></rect>",
                f1(x0),
                f1(l.y + 2.0),
                f1((x1 - x0).max(3.0)),
                f1(l.h - 4.0),
                s.id,
                match to {
                    Some(t) => fmt_span(from, t),
                    None => format!("from {}, never released", fmt_s(from)),
                }
            );
        }
    }

    fn source_changes(&mut self, l: &Lane, changes: &[&Annotation]) {
        let sc = self.sc;
        for a in changes {
            let x = sc.x(a.t_us);
            let y = l.y + 3.0;
            let user = match &a.kind {
                AnnotationKind::SourceChange { user } => user.as_str(),
                _ => "",
            };
            let _ = writeln!(
                self.out,
                "<path class=\"source-change tip\" d=\"M{x} {y} l6 7 l-6 7 l-6 -7 z\" fill=\"#1565c0\" stroke=\"#fff\" stroke-width=\"1\"><title>source change ({user}) · {t}\n{label}</title></path>",
                x = f1(x),
                y = f1(y),
                user = esc(user),
                t = fmt_s(a.t_us),
                label = esc(&a.label)
            );
        }
    }

    fn client_lane(&mut self, l: &Lane, anns: &[Annotation]) {
        let sc = self.sc;
        let mid = l.y + l.h / 2.0;
        let mut sorted: Vec<&Annotation> = anns.iter().collect();
        sorted.sort_by_key(|a| a.t_us);
        // Runs: a start (or restart) to the next exit.
        let mut open: Option<&Annotation> = None;
        let mut runs: Vec<(&Annotation, Option<&Annotation>)> = Vec::new();
        for a in &sorted {
            match a.kind {
                AnnotationKind::ClientStart | AnnotationKind::ClientRestart => {
                    if let Some(s) = open.take() {
                        runs.push((s, None));
                    }
                    open = Some(a);
                }
                AnnotationKind::ClientExit { .. } => {
                    if let Some(s) = open.take() {
                        runs.push((s, Some(a)));
                    }
                }
                _ => {}
            }
        }
        if let Some(s) = open {
            runs.push((s, None));
        }
        // Longer runs get their labels first.
        runs.sort_by_key(|(s, e)| {
            (
                std::cmp::Reverse(e.map_or(sc.hi, |e| e.t_us).saturating_sub(s.t_us)),
                s.t_us,
            )
        });
        let bar = mid + 6.0;
        let o = &mut self.out;
        let mut row = LabelRow::default();
        for (s, e) in &runs {
            let x0 = sc.x(s.t_us);
            let x1 = sc.x(e.map_or(sc.hi, |e| e.t_us));
            let mut status: String = match e.map(|e| &e.kind) {
                Some(AnnotationKind::ClientExit { status: Some(st) }) => format!("exit {st}"),
                Some(AnnotationKind::ClientExit { status: None }) => "killed".into(),
                _ => "still running".into(),
            };
            if let Some(why) = e.map(|e| e.label.as_str()).filter(|l| !l.is_empty()) {
                let _ = write!(status, ": {why}");
            }
            let title = format!(
                "sync_client {}\n{} · {status}",
                s.label,
                match e {
                    Some(e) => fmt_span(s.t_us, e.t_us),
                    None => format!("from {}", fmt_s(s.t_us)),
                }
            );
            let _ = writeln!(
                o,
                "<rect class=\"client-run tip\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"8\" rx=\"2\" fill=\"#9fb3c8\"><title>{}</title></rect>",
                f1(x0),
                f1(bar - 4.0),
                f1((x1 - x0).max(3.0)),
                esc(&title)
            );
            let label = if s.label.is_empty() {
                status.clone()
            } else {
                format!("{} → {status}", s.label)
            };
            row.put(o, x0, mid - 4.0, &label, "#33475b", "client-label");
        }
        for a in &sorted {
            let x = sc.x(a.t_us);
            let (shape, title) = match &a.kind {
                AnnotationKind::ClientStart => (
                    format!(
                        "<path class=\"client-start tip\" d=\"M{} {} l9 6 l-9 6 z\" fill=\"#2e9e5b\">",
                        f1(x),
                        f1(bar - 6.0)
                    ),
                    format!("sync_client started · {}\n{}", fmt_s(a.t_us), a.label),
                ),
                AnnotationKind::ClientRestart => (
                    format!(
                        "<path class=\"client-restart tip\" d=\"M{} {} l9 6 l-9 6 z\" fill=\"#ef8a00\" stroke=\"#7a4500\">",
                        f1(x),
                        f1(bar - 6.0)
                    ),
                    format!("sync_client restarted by the policy · {}\n{}", fmt_s(a.t_us), a.label),
                ),
                AnnotationKind::ClientExit { status } => {
                    let (col, st) = match status {
                        Some(0) => ("#2e9e5b", "0".to_owned()),
                        Some(s) => ("#d7263d", s.to_string()),
                        None => ("#1f1f1f", "none (killed)".to_owned()),
                    };
                    (
                        format!(
                            "<rect class=\"client-exit tip\" x=\"{}\" y=\"{}\" width=\"8\" height=\"12\" fill=\"{col}\">",
                            f1(x - 4.0),
                            f1(bar - 6.0)
                        ),
                        format!("sync_client exited · {} · status {st}\n{}", fmt_s(a.t_us), a.label),
                    )
                }
                _ => continue,
            };
            let close = if shape.starts_with("<path") {
                "</path>"
            } else {
                "</rect>"
            };
            let _ = writeln!(o, "{shape}<title>{}</title>{close}", esc(title.trim_end()));
        }
    }

    fn runner_lane(&mut self, l: &Lane, anns: &[Annotation]) {
        let sc = self.sc;
        let mid = l.y + l.h / 2.0;
        let mut notes: Vec<(u64, String, String, &str)> = anns
            .iter()
            .filter(|a| a.kind == AnnotationKind::Step)
            .map(|a| {
                (
                    a.t_us,
                    a.label.clone(),
                    format!("step · {}\n{}", fmt_s(a.t_us), a.label),
                    "#546e7a",
                )
            })
            .collect();
        for &(t, kind, text) in &self.m.notes {
            let (short, col) = match kind {
                "mark" => (format!("mark {text}"), "#6a4fb3"),
                // sync_server personality: a command waiting for a lock window.
                "wait" | "waited" => (format!("{kind} {text}"), "#c62828"),
                _ => (format!("ctl {text}"), "#8d6e63"),
            };
            notes.push((t, short, format!("{kind} · {}\n{text}", fmt_s(t)), col));
        }
        notes.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        let o = &mut self.out;
        let mut row = LabelRow::default();
        for (t, short, title, col) in &notes {
            let x = sc.x(*t);
            let _ = writeln!(
                o,
                "<rect class=\"step tip\" x=\"{}\" y=\"{}\" width=\"2\" height=\"{}\" fill=\"{col}\"><title>{}</title></rect>",
                f1(x - 1.0),
                f1(l.y + 4.0),
                f1(l.h - 8.0),
                esc(title)
            );
            let short: String = short.chars().take(48).collect();
            row.put(o, x + 3.0, mid + 4.0, &short, col, "step-label");
        }
    }
}

fn band_svg(o: &mut String, l: &Lane, band: &[&Item], sc: Scale, noun: &str) {
    let from = band.iter().map(|i| i.t_us).min().unwrap_or(0);
    let to = band.iter().map(|i| i.t_us).max().unwrap_or(0);
    let n = band.len();
    let secs = (to - from) as f64 / 1e6;
    let rate = if secs > 0.0 {
        Some(n as f64 / secs)
    } else {
        None
    };
    let mut label = match rate {
        Some(r) if r >= 10.0 => format!("{n} {noun}, {r:.0}/s"),
        Some(r) => format!("{n} {noun}, {r:.1}/s"),
        None => format!("{n} {noun}"),
    };
    let counts = class_counts(band);
    if noun == "commands" {
        // Say what went wrong, if anything did.
        let bad: Vec<String> = [ReplyClass::Locked, ReplyClass::No, ReplyClass::Dropped]
            .iter()
            .filter(|c| counts[**c as usize] > 0)
            .map(|c| {
                if counts[*c as usize] == n {
                    format!("all {}", c.label())
                } else {
                    format!("{} {}", counts[*c as usize], c.label())
                }
            })
            .collect();
        if !bad.is_empty() {
            let _ = write!(label, " · {}", bad.join(", "));
        }
    }
    // The tooltip: when, how many, replies, what the commands were.
    let mut title = format!("{}: {label}", fmt_span(from, to));
    let _ = write!(title, "\nreplies: {}", counts_text(&counts));
    if band.len() <= SMALL_BAND && noun != "connections" {
        for it in band {
            let _ = write!(title, "\n\n{}", it.title);
        }
    } else if noun == "connections" {
        let first = band.iter().map(|i| i.session).min().unwrap_or(0);
        let last = band.iter().map(|i| i.session).max().unwrap_or(0);
        let _ = write!(title, "\nsessions {first}–{last}; the first one:");
        if let Some(it) = band.iter().min_by_key(|i| (i.t_us, i.session)) {
            for line in it.title.lines().skip(1) {
                let _ = write!(title, "\n  {line}");
            }
        }
    } else {
        let mut by_key: BTreeMap<&str, [usize; 4]> = BTreeMap::new();
        for it in band {
            by_key.entry(&it.key).or_default()[it.class as usize] += 1;
        }
        for (k, c) in &by_key {
            let _ = write!(
                title,
                "\n  {k} ×{}: {}",
                c.iter().sum::<usize>(),
                counts_text(c)
            );
        }
        if let Some(it) = band
            .iter()
            .find(|i| i.class != ReplyClass::Ok)
            .or(band.first())
        {
            let _ = write!(title, "\nfor example:\n{}", it.title);
        }
    }
    let x0 = sc.x(from);
    let x1 = sc.x(to);
    let bx = x0 - 1.0;
    let bw = (x1 - x0).max(3.0) + 2.0;
    let _ = writeln!(
        o,
        "<g class=\"band tip\" data-lane=\"{lane}\" data-count=\"{n}\" data-from-us=\"{from}\" data-to-us=\"{to}\">\
         <title>{title}</title>\
         <rect class=\"band-rect\" x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"2\" fill=\"#ece6f7\" stroke=\"#6a4fb3\" stroke-width=\"1\"/>",
        lane = esc(&l.id),
        title = esc(&title),
        x = f1(bx),
        y = f1(l.y + 3.0),
        w = f1(bw),
        h = f1(l.h - 6.0),
    );
    // A histogram by bucket, stacked by reply class.
    let mut buckets: BTreeMap<usize, [usize; 4]> = BTreeMap::new();
    for it in band {
        buckets.entry(sc.bucket(it.t_us)).or_default()[it.class as usize] += 1;
    }
    let max = buckets
        .values()
        .map(|c| c.iter().sum::<usize>())
        .max()
        .unwrap_or(1)
        .max(1);
    let bottom = l.y + l.h - 4.0;
    let full = l.h - 10.0;
    for (b, c) in &buckets {
        let x = Scale::bucket_x(*b).max(bx);
        let mut y = bottom;
        for cls in ReplyClass::ALL {
            let k = c[cls as usize];
            if k == 0 {
                continue;
            }
            let h = full * k as f64 / max as f64;
            y -= h;
            let _ = write!(
                o,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" fill-opacity=\"0.8\"/>",
                f1(x),
                f1(y),
                f1(BUCKET_PX - 1.0),
                f1(h),
                cls.colour()
            );
        }
    }
    o.push('\n');
    let lw = text_w(&label, 12.0);
    if bw >= lw + 8.0 {
        let _ = writeln!(
            o,
            "<text class=\"band-label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"12\" font-weight=\"bold\" fill=\"#3b2a78\" stroke=\"#ffffff\" stroke-width=\"3.5\" paint-order=\"stroke\">{}</text>",
            f1(bx + bw / 2.0),
            f1(l.y + l.h / 2.0 + 4.0),
            esc(&label)
        );
    } else if bw >= text_w(&n.to_string(), 10.0) + 4.0 {
        let _ = writeln!(
            o,
            "<text class=\"band-count\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\" fill=\"#3b2a78\">{n}</text>",
            f1(bx + bw / 2.0),
            f1(l.y + 12.0),
        );
    }
    o.push_str("</g>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_classes() {
        assert_eq!(ReplyClass::of(Some("OK Success"), false), ReplyClass::Ok);
        assert_eq!(
            ReplyClass::of(Some("NO IMAP_MAILBOX_LOCKED Mailbox locked"), false),
            ReplyClass::Locked
        );
        assert_eq!(
            ReplyClass::of(Some("NO IMAP_MAILBOX_NONEXISTENT x"), false),
            ReplyClass::No
        );
        assert_eq!(ReplyClass::of(Some("BAD syntax"), false), ReplyClass::No);
        assert_eq!(ReplyClass::of(None, false), ReplyClass::Dropped);
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(4_700_000), 500_000);
        assert_eq!(nice_step(1_000_000), 100_000);
        assert_eq!(nice_step(60_000_000), 10_000_000);
        assert_eq!(nice_step(0), 1);
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc("a<b>&\"c'\u{1}"),
            "a&lt;b&gt;&amp;&quot;c&apos;\u{fffd}"
        );
    }
}
