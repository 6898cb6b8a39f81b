//! [`Reply`]: one line a server sends.

use bytes::Bytes;

use crate::dlist::{encode_value, DecodeError, Direction, Parser, Value};

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

    /// Read one frame a server sent (from [`crate::dlist::Framer`]): a data
    /// line `* KEY value` with its literals, or a final or greeting line. Needs
    /// no session: the relay reads a real server's answers with it.
    pub fn parse(frame: Bytes) -> Result<Reply, DecodeError> {
        let first_line = |f: &Bytes| {
            let end = memchr::memchr(b'\n', f).unwrap_or(f.len());
            let line = f[..end].strip_suffix(b"\r").unwrap_or(&f[..end]);
            String::from_utf8_lossy(line).into_owned()
        };
        let mut p = Parser::new(frame.clone());
        let word = p.word();
        let text = |p: &mut Parser| {
            p.space();
            String::from_utf8_lossy(&p.rest_of_line()).into_owned()
        };
        Ok(match &word[..] {
            b"*" => {
                p.space();
                let key = p.key()?;
                // `* OK host …`, `* SASL PLAIN`: greeting lines, kept whole.
                const GREETING: [&str; 8] = [
                    "OK",
                    "NO",
                    "BAD",
                    "BYE",
                    "SASL",
                    "COMPRESS",
                    "STARTTLS",
                    "SIEVE-MAILBOX",
                ];
                if GREETING.contains(&&*key) || !p.space() {
                    return Ok(Reply::Raw(first_line(&frame)));
                }
                let value = p.value(0)?;
                p.expect_end()?;
                Reply::Data(key.to_string(), value)
            }
            b"OK" => Reply::Ok(text(&mut p)),
            b"NO" => Reply::No(text(&mut p)),
            b"BAD" => Reply::Bad(text(&mut p)),
            b"BYE" => Reply::Bye(text(&mut p)),
            _ => Reply::Raw(first_line(&frame)),
        })
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
    // memchr2, not `contains([char; 2])`, which walks the text a char at a
    // time: this runs on every reply the fake sends.
    if memchr::memchr2(b'\r', b'\n', t.as_bytes()).is_some() {
        t.replace(['\r', '\n'], " ").into()
    } else {
        t.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`Reply::encode`] writes, [`Reply::parse`] reads back.
    #[test]
    fn parse_reads_what_encode_writes() {
        let kv = Value::KvList(vec![
            ("UNIQUEID".into(), Value::atom("u1")),
            ("MBOXNAME".into(), Value::atom("user.a b")),
            ("VALUE".into(), Value::atom("line\r\nwith 8-bit \u{e9}")),
            (
                "FLAGS".into(),
                Value::List(vec![Value::Flag(Bytes::from_static(b"\\Seen"))]),
            ),
        ]);
        for r in [
            Reply::Data("MAILBOX".into(), kv),
            Reply::Data("LSUB".into(), Value::List(vec![Value::atom("user.a")])),
            Reply::Ok("Success".into()),
            Reply::No("IMAP_MAILBOX_LOCKED Mailbox locked".into()),
            Reply::Bad("Missing required argument to Get".into()),
            Reply::Bye("shutting down".into()),
        ] {
            let mut wire = Vec::new();
            r.encode(&mut wire);
            assert_eq!(
                Reply::parse(Bytes::from(wire)),
                Ok(r.clone()),
                "{}",
                r.to_line()
            );
        }
        assert_eq!(
            Reply::parse(Bytes::from_static(
                b"* OK host Cyrus backup server 3.6.1\r\n"
            )),
            Ok(Reply::Raw("* OK host Cyrus backup server 3.6.1".into()))
        );
        assert!(Reply::parse(Bytes::from_static(b"* MAILBOX %(UNIQUEID\r\n")).is_err());
    }

    /// A status text never breaks its line: each CR and each LF becomes a
    /// space, alone or in a pair, wherever it stands.
    #[test]
    fn a_status_text_with_line_breaks_stays_on_one_line() {
        let t = "\rIMAP_PROTOCOL_ERROR\nbad\r\nline\r";
        for (r, word) in [
            (Reply::Ok(t.into()), "OK "),
            (Reply::No(t.into()), "NO "),
            (Reply::Bad(t.into()), "BAD "),
            (Reply::Bye(t.into()), "BYE "),
            (Reply::Raw(t.into()), ""),
        ] {
            let mut wire = Vec::new();
            r.encode(&mut wire);
            assert_eq!(
                String::from_utf8(wire).unwrap(),
                format!("{word} IMAP_PROTOCOL_ERROR bad  line \r\n")
            );
        }
        // A lone CR or a lone LF is found too; text without a break is kept.
        for (t, line) in [
            ("only\rCR", "NO only CR"),
            ("only\nLF", "NO only LF"),
            ("Success", "NO Success"),
        ] {
            assert_eq!(Reply::No(t.into()).to_line(), line);
        }
    }
}
