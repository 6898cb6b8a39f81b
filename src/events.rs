//! The fake's event log: every connection, command and reply, in order.
//!
//! Kept in memory (bounded: the oldest events are dropped past
//! [`EventLog::capacity`], counted in [`EventLog::dropped`]; counters are never
//! dropped) and optionally written as JSON lines as they happen. Times are
//! monotonic microseconds since the server started.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::types::SessionId;

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the log, from 1.
    pub seq: u64,
    /// Microseconds since the server started.
    pub t_us: u64,
    /// The connection (0 for server-wide events).
    pub session: SessionId,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
/// At most this many users, and this many mailboxes, are kept in one
/// `Command` event; the rest are counted in its `more`.
pub const LABEL_NAMES_MAX: usize = 64;

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A client connected.
    Connected {
        /// Peer address.
        peer: String,
    },
    /// A command arrived.
    Command {
        /// Its label (`GET USER`, `APPLY MESSAGE`).
        verb: String,
        /// Users it touches, at most [`LABEL_NAMES_MAX`].
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        users: Vec<String>,
        /// Mailboxes it names, at most [`LABEL_NAMES_MAX`].
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mailboxes: Vec<String>,
        /// How many more users and mailboxes it names than are kept (a
        /// `GET MAILBOXES` may name a million; the log keeps each event small).
        #[serde(default, skip_serializing_if = "is_zero")]
        more: usize,
        /// Bytes on the wire (after inflating), literals included.
        bytes: usize,
        /// The command's first line, shortened, for transcripts.
        text: String,
    },
    /// The server answered a command.
    Reply {
        /// The final line (`OK Success`, `NO IMAP_MAILBOX_LOCKED Mailbox locked`).
        line: String,
        /// How many `*` data lines came before it.
        data_lines: usize,
    },
    /// The connection ended.
    Closed {
        /// Why (`client EXIT`, `end of stream`, an I/O error).
        reason: String,
    },
    /// A command was answered `LOCKED`.
    LockHit {
        /// The lock window, or `another connection` for a real contention.
        lock: String,
    },
    /// A fault fired on the command before it.
    Fault {
        /// The rule.
        rule: String,
        /// The action's name; a `corrupt` says what it broke after it
        /// (`corrupt acl: user.u0: …`), see [`fault_action_name`].
        action: String,
    },
    /// A connection was refused (a `refuse-connections` or `restart` fault).
    Refused {
        /// Peer address.
        peer: String,
    },
    /// A named point was reached (a scenario step or `ctl mark`).
    Mark {
        /// Its name.
        name: String,
    },
    /// A command is held by a scenario trigger.
    Held {
        /// The hold's id.
        hold: u64,
    },
    /// A held command goes on.
    Released {
        /// The hold's id.
        hold: u64,
    },
    /// A command waits for a lock window (the sync_server personality blocks
    /// where backupd answers `LOCKED`).
    LockWait {
        /// The lock window.
        lock: String,
    },
    /// A waiting command goes on (or its connection is closed at the deadline).
    LockWaited {
        /// The lock window waited for first.
        lock: String,
        /// How long it waited, in milliseconds.
        waited_ms: u64,
        /// The deadline passed before the window closed.
        timed_out: bool,
    },
    /// A run-time control command arrived.
    Control {
        /// The request, as JSON.
        request: String,
    },
}

#[cfg(test)]
impl EventKind {
    /// A `Command` event that names only its verb (`APPLY MAILBOX`), for tests.
    pub(crate) fn command(verb: &str) -> EventKind {
        EventKind::Command {
            verb: verb.into(),
            users: Vec::new(),
            mailboxes: Vec::new(),
            more: 0,
            bytes: 0,
            text: String::new(),
        }
    }
}

/// The log.
pub struct EventLog {
    events: VecDeque<Event>,
    capacity: usize,
    dropped: u64,
    next_seq: u64,
    counts: BTreeMap<String, u64>,
    lock_hits: u64,
    sink: Option<Box<dyn Write + Send>>,
    sink_error: Option<String>,
}

/// The action's name of a `Fault` event's `action` (`corrupt` of
/// `corrupt acl: user.u0: …`, `lie` of `lie`).
pub fn fault_action_name(action: &str) -> &str {
    action.split([' ', ':']).next().unwrap_or(action)
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("events", &self.events.len())
            .field("dropped", &self.dropped)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog::new(1_000_000)
    }
}

impl EventLog {
    /// A log keeping at most `capacity` events in memory.
    pub fn new(capacity: usize) -> EventLog {
        EventLog {
            events: VecDeque::new(),
            capacity,
            dropped: 0,
            next_seq: 1,
            counts: BTreeMap::new(),
            lock_hits: 0,
            sink: None,
            sink_error: None,
        }
    }

    /// Also write every event as one JSON line to `w`.
    pub fn set_sink(&mut self, w: Box<dyn Write + Send>) {
        self.sink = Some(w);
    }

    /// Record an event.
    pub fn push(&mut self, t_us: u64, session: SessionId, kind: EventKind) {
        match &kind {
            EventKind::Command { verb, .. } => *self.counts.entry(verb.clone()).or_default() += 1,
            EventKind::LockHit { .. } => self.lock_hits += 1,
            _ => {}
        }
        let ev = Event {
            seq: self.next_seq,
            t_us,
            session,
            kind,
        };
        self.next_seq += 1;
        if let Some(w) = self.sink.as_mut() {
            let r = serde_json::to_writer(&mut *w, &ev)
                .map_err(io::Error::from)
                .and_then(|()| w.write_all(b"\n"));
            if let Err(e) = r {
                self.sink_error.get_or_insert_with(|| e.to_string());
                self.sink = None;
            }
        }
        if self.events.len() == self.capacity {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(ev);
    }

    /// Flush the JSON-lines sink.
    pub fn flush(&mut self) -> io::Result<()> {
        match self.sink.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }

    /// The events kept in memory, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    /// How many commands of each label arrived (never dropped).
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// How many commands with this label arrived.
    pub fn count(&self, verb: &str) -> u64 {
        self.counts.get(verb).copied().unwrap_or(0)
    }

    /// How many `LOCKED` answers were recorded (never dropped).
    pub fn lock_hits(&self) -> u64 {
        self.lock_hits
    }

    /// Events dropped from memory because of the capacity.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The in-memory capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Why the JSON-lines sink stopped, if it failed.
    pub fn sink_error(&self) -> Option<&str> {
        self.sink_error.as_deref()
    }

    /// A readable transcript: `C:`/`S:` lines per session, in order.
    pub fn transcript(&self) -> String {
        let mut out = String::new();
        for e in &self.events {
            let line = match &e.kind {
                EventKind::Connected { .. } => format!("-- session {} connected", e.session),
                EventKind::Command { text, .. } => format!("C{}: {text}", e.session),
                EventKind::Reply { line, data_lines } if *data_lines > 0 => {
                    format!("S{}: ({data_lines} data lines) {line}", e.session)
                }
                EventKind::Reply { line, .. } => format!("S{}: {line}", e.session),
                EventKind::Closed { reason } => {
                    format!("-- session {} closed: {reason}", e.session)
                }
                EventKind::LockHit { lock } => format!("   ! locked by {lock}"),
                EventKind::Fault { rule, action } => format!("   ! fault {rule}: {action}"),
                EventKind::Refused { peer } => format!("-- connection from {peer} refused"),
                EventKind::Mark { name } => format!("-- mark {name}"),
                EventKind::Control { request } => format!("-- control {request}"),
                EventKind::Held { hold } => format!("   ! held by trigger {hold}"),
                EventKind::Released { hold } => format!("   ! released by trigger {hold}"),
                EventKind::LockWait { lock } => format!("   ! waits for {lock}"),
                EventKind::LockWaited {
                    lock,
                    waited_ms,
                    timed_out: true,
                } => format!("   ! gave up waiting for {lock} after {waited_ms} ms"),
                EventKind::LockWaited {
                    lock, waited_ms, ..
                } => format!("   ! waited {waited_ms} ms for {lock}"),
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod lock_hit_tests {
    use super::*;

    /// Lock hits are counted as they are pushed, also past the in-memory capacity.
    #[test]
    fn lock_hits_are_counted_even_when_dropped_from_memory() {
        let mut log = EventLog::new(2);
        for i in 0..5 {
            log.push(i, 1, EventKind::LockHit { lock: "l".into() });
            log.push(i, 1, EventKind::Mark { name: "m".into() });
        }
        assert_eq!(log.lock_hits(), 5);
        assert_eq!(log.events().count(), 2);
        assert_eq!(log.dropped(), 8);
    }
}
