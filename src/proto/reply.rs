//! [`Reply`]: one line a server sends.

use crate::dlist::{encode_value, Direction, Value};

/// One reply line. A command's response is zero or more [`Reply::Data`] lines
/// followed by exactly one of the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `* KEY value`: an untagged data item.
    Data(String, Value),
    /// `OK text`.
    Ok(String),
    /// `NO text`; the client maps the text's first word to an error code.
    No(String),
    /// `BAD text`.
    Bad(String),
    /// `BYE text`.
    Bye(String),
    /// A line printed verbatim (the IMAP probe answer, greeting lines).
    Raw(String),
}

impl Reply {
    /// `OK Success`, the answer to every successful GET and APPLY.
    pub fn success() -> Reply {
        Reply::Ok("Success".into())
    }

    /// `NO IMAP_MAILBOX_LOCKED Mailbox locked`, backupd's exact text.
    pub fn locked() -> Reply {
        Reply::No("IMAP_MAILBOX_LOCKED Mailbox locked".into())
    }

    /// `NO IMAP_PROTOCOL_ERROR Protocol error`.
    pub fn protocol_error() -> Reply {
        Reply::No("IMAP_PROTOCOL_ERROR Protocol error".into())
    }

    /// `NO IMAP_PROTOCOL_BAD_PARAMETERS Bad parameters`.
    pub fn bad_parameters() -> Reply {
        Reply::No("IMAP_PROTOCOL_BAD_PARAMETERS Bad parameters".into())
    }

    /// `NO IMAP_MAILBOX_NONEXISTENT No Such Mailbox`.
    pub fn nonexistent() -> Reply {
        Reply::No("IMAP_MAILBOX_NONEXISTENT No Such Mailbox".into())
    }

    /// True for the line that ends a response.
    pub fn is_final(&self) -> bool {
        !matches!(self, Reply::Data(..))
    }

    /// Append the wire form, line end included. Literals are `{n}`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let text = |out: &mut Vec<u8>, word: &str, t: &str| {
            out.extend_from_slice(word.as_bytes());
            out.push(b' ');
            // the client needs a space after the word even for an empty text
            out.extend_from_slice(sanitize(t).as_bytes());
        };
        match self {
            Reply::Data(key, v) => {
                out.extend_from_slice(b"* ");
                out.extend_from_slice(key.as_bytes());
                out.push(b' ');
                encode_value(out, v, Direction::ToClient);
            }
            Reply::Ok(t) => text(out, "OK", t),
            Reply::No(t) => text(out, "NO", t),
            Reply::Bad(t) => text(out, "BAD", t),
            Reply::Bye(t) => text(out, "BYE", t),
            Reply::Raw(t) => out.extend_from_slice(sanitize(t).as_bytes()),
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The wire form as a string (for transcripts and tests).
    pub fn to_line(&self) -> String {
        let mut out = Vec::new();
        self.encode(&mut out);
        out.truncate(out.len() - 2);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Text after OK/NO/BAD must stay on one line.
fn sanitize(t: &str) -> std::borrow::Cow<'_, str> {
    if t.contains(['\r', '\n']) {
        t.replace(['\r', '\n'], " ").into()
    } else {
        t.into()
    }
}
