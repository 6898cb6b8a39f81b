//! A client's byte stream framed and parsed into [`Incoming`] inputs, with a
//! printable head of each frame and the label the event log gives it: what a
//! [`super::Session`] does before executing, without a session. The relay
//! decodes what a client sends to a real target with it.

use bytes::Bytes;

use crate::dlist::{FrameError, Framer, Limits};
use crate::events::{EventKind, LABEL_NAMES_MAX};
use crate::proto::{Command, ParseError};

/// One complete input from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A command.
    Command(Command),
    /// A line that is not a valid command.
    Invalid(ParseError),
    /// The answer to a SASL challenge (`+ `).
    SaslResponse(Bytes),
}

/// How the event log names an input: its verb label and what it touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLabel {
    /// `APPLY MAILBOX`, `GET USER`, …; `INVALID`, `SASL RESPONSE`.
    pub verb: String,
    /// Users it touches.
    pub users: Vec<String>,
    /// Mailboxes it names.
    pub mailboxes: Vec<String>,
}

impl Incoming {
    /// Its label in the event log.
    pub fn label(&self) -> CommandLabel {
        let (verb, users, mailboxes) = match self {
            Incoming::Command(c) => (
                c.label(),
                c.users(),
                c.mailboxes().into_iter().map(str::to_owned).collect(),
            ),
            Incoming::Invalid(_) => ("INVALID".to_owned(), Vec::new(), Vec::new()),
            Incoming::SaslResponse(_) => ("SASL RESPONSE".to_owned(), Vec::new(), Vec::new()),
        };
        CommandLabel {
            verb,
            users,
            mailboxes,
        }
    }
}

impl CommandLabel {
    /// The event log's `Command` event for this input: `bytes` long, shown
    /// as `text` (its head). At most [`LABEL_NAMES_MAX`] users and mailboxes
    /// are copied into it; `more` counts the rest.
    pub fn to_event(&self, bytes: usize, text: String) -> EventKind {
        let first = |v: &[String]| v.iter().take(LABEL_NAMES_MAX).cloned().collect();
        EventKind::Command {
            verb: self.verb.clone(),
            users: first(&self.users),
            mailboxes: first(&self.mailboxes),
            more: self.users.len().saturating_sub(LABEL_NAMES_MAX)
                + self.mailboxes.len().saturating_sub(LABEL_NAMES_MAX),
            bytes,
            text,
        }
    }
}

/// Frames and parses a client's inputs.
#[derive(Debug)]
pub struct Decoder {
    framer: Framer,
    /// Size and first line of the last frame taken, for logs.
    last_frame: (usize, String),
}

impl Decoder {
    /// A decoder with these framing limits.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            framer: Framer::new(limits),
            last_frame: (0, String::new()),
        }
    }

    /// Bytes received (already inflated when compression is on).
    pub fn push(&mut self, data: &[u8]) {
        self.framer.push(data);
    }

    /// Bytes received but not yet taken as an input.
    pub fn buffered(&self) -> usize {
        self.framer.buffered()
    }

    /// The next complete input, `Ok(None)` when more bytes are needed; with
    /// `sasl`, the frame is the answer to a SASL challenge. A [`FrameError`]
    /// means the stream cannot be followed any more.
    pub fn next(&mut self, sasl: bool) -> Result<Option<Incoming>, FrameError> {
        let Some(frame) = self.framer.next_frame()? else {
            return Ok(None);
        };
        self.last_frame = (frame.len(), frame_head(&frame, sasl));
        if sasl {
            let mut end = frame.len();
            while end > 0 && matches!(frame[end - 1], b'\r' | b'\n') {
                end -= 1;
            }
            return Ok(Some(Incoming::SaslResponse(frame.slice(..end))));
        }
        Ok(Some(match Command::parse(frame) {
            Ok(c) => Incoming::Command(c),
            Err(e) => Incoming::Invalid(e),
        }))
    }

    /// The size and a printable head of the last input taken: its first line,
    /// shortened, with SASL data and literal bytes left out.
    pub fn last_frame(&self) -> (usize, &str) {
        (self.last_frame.0, &self.last_frame.1)
    }
}

/// The first line of a frame, at most 200 characters, secrets and literal
/// bytes left out.
fn frame_head(frame: &[u8], sasl: bool) -> String {
    const MAX: usize = 200;
    if sasl {
        return "[SASL response]".into();
    }
    let first = &frame[..memchr::memchr(b'\n', frame).unwrap_or(frame.len())];
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let is_auth = first
        .get(..13)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"AUTHENTICATE "));
    let mut text = if is_auth {
        // Keep the mechanism, never the credentials.
        let mech_end = first[13..]
            .iter()
            .position(|&b| b == b' ')
            .map_or(first.len(), |i| i + 13);
        let mut t = String::from_utf8_lossy(&first[..mech_end]).into_owned();
        if mech_end < first.len() {
            t.push_str(" [initial response]");
        }
        t
    } else {
        // Only what can be shown: MAX + 1 characters take at most 4 bytes each.
        // (An APPLY MAILBOX's first line can be megabytes long.)
        String::from_utf8_lossy(&first[..first.len().min(4 * (MAX + 1))]).into_owned()
    };
    // One pass that stops at character MAX (this runs on every frame).
    if let Some((cut, _)) = text.char_indices().nth(MAX) {
        text.truncate(cut);
        text.push('…');
    } else if first.len() + 2 < frame.len() {
        text.push_str(" …");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A head shows at most 200 characters and marks the cut, however long
    /// the line (only its start is converted) and whatever its bytes.
    #[test]
    fn a_long_first_line_is_cut_to_200_characters() {
        let short = b"GET USER alice\r\n";
        assert_eq!(frame_head(short, false), "GET USER alice");
        for unit in ["x", "é", "€", "😀"] {
            let mut line = "APPLY MAILBOX ".to_owned() + &unit.repeat(3_000_000);
            line.push_str("\r\n");
            let head = frame_head(line.as_bytes(), false);
            assert_eq!(head.chars().count(), 201, "{unit}");
            assert!(head.starts_with("APPLY MAILBOX ") && head.ends_with('…'));
            assert!(!head.contains('\u{fffd}'), "{unit}: cut inside a character");
        }
        // Exactly 200 characters: shown whole.
        let line = "A".repeat(200) + "\r\n";
        assert_eq!(frame_head(line.as_bytes(), false), "A".repeat(200));
        // A continuation after a literal: the first line, then " …".
        let frame = b"APPLY SUB {3+}\r\nabc\r\n";
        assert_eq!(frame_head(frame, false), "APPLY SUB {3+} …");
    }

    /// A `GET MAILBOXES` naming 100,000 mailboxes leaves a small event: the
    /// first [`LABEL_NAMES_MAX`] names and the count of the rest (before, the
    /// log kept every name of every such command: ~56 MiB per 2 MiB command).
    #[test]
    fn a_command_event_keeps_at_most_64_names_and_counts_the_rest() {
        let names: Vec<String> = (0..100_000).map(|i| format!("user.u.m{i}")).collect();
        let line = format!("GET MAILBOXES ({})\r\n", names.join(" "));
        let mut d = Decoder::new(Limits::default());
        d.push(line.as_bytes());
        let Some(incoming) = d.next(false).unwrap() else {
            panic!("the command is whole")
        };
        // The label keeps every name: faults match a mailbox wherever it
        // stands in the list; only the logged event is cut.
        let label = incoming.label();
        assert_eq!(label.mailboxes.len(), 100_000);
        let EventKind::Command {
            mailboxes, more, ..
        } = label.to_event(line.len(), String::new())
        else {
            panic!("a Command event")
        };
        assert_eq!(mailboxes, names[..LABEL_NAMES_MAX]);
        assert_eq!(more, 100_000 - LABEL_NAMES_MAX);
        // A short command keeps every name, and `more` is 0 (left out of the JSON).
        let mut d = Decoder::new(Limits::default());
        d.push(b"GET MAILBOXES (user.u.a user.u.b)\r\n");
        let ev = d
            .next(false)
            .unwrap()
            .unwrap()
            .label()
            .to_event(0, String::new());
        assert!(
            matches!(&ev, EventKind::Command { mailboxes, more: 0, .. } if mailboxes.len() == 2)
        );
        assert!(!serde_json::to_string(&ev).unwrap().contains("more"));
    }
}
