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
//!
//! The parts: [`model`] pairs the event log into commands and sessions;
//! [`layout`] places them on a time scale in lanes; [`svg`] draws the
//! picture, with [`marks`] for the lanes' contents; [`html`] wraps it in a page.

mod html;
mod layout;
mod marks;
mod model;
mod svg;

use std::io;
use std::path::Path;

use crate::events::Event;

pub use html::render_html;
pub use layout::WIDTH;
pub use svg::esc;

use model::{derived_windows, Model};
use svg::svg_element;

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
    /// [`LockHit`]: crate::events::EventKind::LockHit
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
    /// The lock's name (as in [`crate::events::EventKind::LockHit`]).
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

#[cfg(test)]
mod tests {
    use super::layout::nice_step;
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
