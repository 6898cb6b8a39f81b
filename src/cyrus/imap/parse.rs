//! The IMAP response reader and parser: one complete response off the wire
//! (the line and each literal it announces, bounded by [`MAX_LITERAL`] and
//! `MAX_LINE`), then its values (atoms, quoted strings, literals, lists,
//! response codes). No sockets here: [`read_response`] takes any `BufRead`.

use std::io::{BufRead, Read};

use super::{proto, Result};
use crate::cyrus::CyrusError;

/// The largest literal accepted from the server.
pub const MAX_LITERAL: usize = 256 << 20;
/// The longest response line (without literals) accepted from the server.
pub(super) const MAX_LINE: usize = 4 << 20;

// ---------------------------------------------------------------- values

/// One parsed IMAP value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An atom or number (`\Seen`, `FETCH`, `42`, `BODY[]`).
    Atom(String),
    /// A quoted string or literal.
    Str(Vec<u8>),
    /// `NIL`.
    Nil,
    /// A parenthesized list.
    List(Vec<Value>),
}

impl Value {
    /// The value as text (atoms and strings); `None` for NIL and lists.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Atom(a) => Some(a.clone()),
            Value::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
            _ => None,
        }
    }
    pub(super) fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Atom(a) => a.parse().ok(),
            _ => None,
        }
    }
    pub(super) fn is_atom(&self, name: &str) -> bool {
        matches!(self, Value::Atom(a) if a.eq_ignore_ascii_case(name))
    }
}

/// Completion or condition status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    Bye,
    Preauth,
}

/// One server response, literals included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `+ text`.
    Continuation(String),
    /// `* OK/NO/BAD/BYE/PREAUTH [code] text` (tag `None`) or `tag OK/NO/BAD [code] text`.
    Status {
        tag: Option<String>,
        status: Status,
        code: Vec<Value>,
        text: String,
    },
    /// Any other untagged response (`* 3 FETCH (...)`, `* LIST ...`), as values.
    Data(Vec<Value>),
}

/// A cursor over one complete response (line plus inline literals).
struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }
    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }
    fn at_end(&self) -> bool {
        matches!(self.peek(), None | Some(b'\r') | Some(b'\n'))
    }
    /// The rest of the line as text.
    fn rest_text(&mut self) -> String {
        let end = self.buf[self.pos..]
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .map_or(self.buf.len(), |i| self.pos + i);
        let text = String::from_utf8_lossy(&self.buf[self.pos..end]).into_owned();
        self.pos = end;
        text
    }

    fn value(&mut self) -> Result<Value> {
        self.skip_spaces();
        match self.peek() {
            None => Err(proto("unexpected end of response")),
            Some(b'(') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_spaces();
                    match self.peek() {
                        Some(b')') => {
                            self.pos += 1;
                            return Ok(Value::List(items));
                        }
                        None | Some(b'\r') | Some(b'\n') => return Err(proto("unterminated list")),
                        _ => items.push(self.value()?),
                    }
                }
            }
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            Some(_) => {
                let atom = self.atom()?;
                if atom.eq_ignore_ascii_case("NIL") {
                    Ok(Value::Nil)
                } else {
                    Ok(Value::Atom(atom))
                }
            }
        }
    }

    fn quoted(&mut self) -> Result<Value> {
        self.pos += 1; // opening quote
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r') | Some(b'\n') => {
                    return Err(proto("unterminated quoted string"))
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Value::Str(out));
                }
                Some(b'\\') => {
                    let c = self.buf.get(self.pos + 1).copied();
                    let c = c.ok_or_else(|| proto("unterminated quoted string"))?;
                    out.push(c);
                    self.pos += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn literal(&mut self) -> Result<Value> {
        let close = self.buf[self.pos..]
            .iter()
            .position(|&b| b == b'}')
            .ok_or_else(|| proto("bad literal"))?;
        let spec = std::str::from_utf8(&self.buf[self.pos + 1..self.pos + close]).unwrap_or("");
        let n: usize = spec
            .trim_end_matches('+')
            .parse()
            .map_err(|_| proto(format!("bad literal length `{spec}`")))?;
        let start = self.pos + close + 1;
        if self.buf.get(start..start + 2) != Some(b"\r\n") {
            return Err(proto("literal length not followed by CRLF"));
        }
        let data = self
            .buf
            .get(start + 2..start + 2 + n)
            .ok_or_else(|| proto("truncated literal"))?;
        self.pos = start + 2 + n;
        Ok(Value::Str(data.to_vec()))
    }

    /// An atom; `[...]` inside an atom (as in `BODY[HEADER.FIELDS (A B)]`) is kept whole.
    fn atom(&mut self) -> Result<String> {
        let start = self.pos;
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                b'[' => depth += 1,
                b']' if depth > 0 => depth -= 1,
                b' ' | b'(' | b')' if depth == 0 => break,
                b'\r' | b'\n' => break,
                _ => {}
            }
            self.pos += 1;
        }
        if self.pos == start {
            return Err(proto(format!("unexpected character at offset {start}")));
        }
        Ok(String::from_utf8_lossy(&self.buf[start..self.pos]).into_owned())
    }

    /// `[CODE args...]` at the start of a status response's text, if present.
    fn response_code(&mut self) -> Result<Vec<Value>> {
        self.skip_spaces();
        if self.peek() != Some(b'[') {
            return Ok(Vec::new());
        }
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_spaces();
            match self.peek() {
                Some(b']') => {
                    self.pos += 1;
                    return Ok(items);
                }
                None | Some(b'\r') | Some(b'\n') => {
                    return Err(proto("unterminated response code"))
                }
                _ => {
                    // Atoms inside a code end at `]` too.
                    let v = self.value()?;
                    if let Value::Atom(a) = &v {
                        if let Some(stripped) = a.strip_suffix(']') {
                            if !stripped.contains('[') {
                                items.push(Value::Atom(stripped.to_string()));
                                return Ok(items);
                            }
                        }
                    }
                    items.push(v);
                }
            }
        }
    }
}

fn parse_status_word(word: &str) -> Option<Status> {
    match word.to_ascii_uppercase().as_str() {
        "OK" => Some(Status::Ok),
        "NO" => Some(Status::No),
        "BAD" => Some(Status::Bad),
        "BYE" => Some(Status::Bye),
        "PREAUTH" => Some(Status::Preauth),
        _ => None,
    }
}

/// Parse one complete response (as returned by [`read_response`]).
pub fn parse_response(buf: &[u8]) -> Result<Response> {
    let mut p = Parser { buf, pos: 0 };
    if buf.starts_with(b"+") {
        p.pos = 1;
        p.skip_spaces();
        return Ok(Response::Continuation(p.rest_text()));
    }
    let tag = p.atom()?;
    p.skip_spaces();
    let save = p.pos;
    let first = if p.at_end() { String::new() } else { p.atom()? };
    if let Some(status) = parse_status_word(&first) {
        let code = p.response_code()?;
        p.skip_spaces();
        let text = p.rest_text();
        let tag = (tag != "*").then_some(tag);
        return Ok(Response::Status {
            tag,
            status,
            code,
            text,
        });
    }
    if tag != "*" {
        return Err(proto(format!(
            "tagged response without status: {}",
            show(buf)
        )));
    }
    p.pos = save;
    let mut values = Vec::new();
    loop {
        p.skip_spaces();
        if p.at_end() {
            break;
        }
        values.push(p.value()?);
    }
    Ok(Response::Data(values))
}

/// A short printable excerpt of raw protocol bytes, for error messages.
pub(super) fn show(buf: &[u8]) -> String {
    let s = String::from_utf8_lossy(&buf[..buf.len().min(200)]);
    s.trim_end().to_string()
}

/// If `line` (with CRLF) ends with a literal announcement `{n}` / `{n+}`, its length.
fn trailing_literal(line: &[u8]) -> Result<Option<usize>> {
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let Some(body) = line.strip_suffix(b"}") else {
        return Ok(None);
    };
    let Some(open) = body.iter().rposition(|&b| b == b'{') else {
        return Ok(None);
    };
    let digits = &body[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Ok(None);
    }
    let n: usize = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| proto("literal length out of range"))?;
    if n > MAX_LITERAL {
        return Err(proto(format!(
            "server literal of {n} bytes exceeds the {MAX_LITERAL}-byte limit"
        )));
    }
    Ok(Some(n))
}

/// Read one complete response: a line, and for each literal it announces, the
/// literal bytes and the line that follows. Returned exactly as on the wire.
pub fn read_response<R: BufRead>(r: &mut R) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    loop {
        let start = buf.len();
        let n = r
            .by_ref()
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
            .map_err(CyrusError::io("reading from imap server"))?;
        if n == 0 {
            return Err(proto(if buf.is_empty() {
                "connection closed by server".to_string()
            } else {
                format!("connection closed mid-response: {}", show(&buf))
            }));
        }
        if !buf.ends_with(b"\n") {
            return Err(proto(format!("response line longer than {MAX_LINE} bytes")));
        }
        match trailing_literal(&buf[start..])? {
            None => return Ok(buf),
            Some(len) => {
                if buf.len() + len > MAX_LITERAL + MAX_LINE {
                    return Err(proto("response too large"));
                }
                let at = buf.len();
                buf.resize(at + len, 0);
                r.read_exact(&mut buf[at..])
                    .map_err(CyrusError::io("reading literal from imap server"))?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::BufReader;

    use super::super::reply::first_in_list;
    use super::*;

    fn parse(s: &[u8]) -> Response {
        parse_response(&read_response(&mut &s[..]).expect("read")).expect("parse")
    }

    #[test]
    fn literal_and_nested_lists() {
        let raw = b"* 12 FETCH (UID 7 FLAGS (\\Seen $Label1) BODY[] {5}\r\nab)\r\n INTERNALDATE \"28-Nov-2026 14:53:10 +0000\")\r\n";
        let Response::Data(v) = parse(raw) else {
            panic!("not data")
        };
        assert_eq!(v[0], Value::Atom("12".into()));
        let Value::List(items) = &v[2] else {
            panic!("no list")
        };
        assert_eq!(items[1], Value::Atom("7".into()));
        assert_eq!(
            items[3],
            Value::List(vec![
                Value::Atom("\\Seen".into()),
                Value::Atom("$Label1".into())
            ])
        );
        assert_eq!(items[4], Value::Atom("BODY[]".into()));
        assert_eq!(items[5], Value::Str(b"ab)\r\n".to_vec()));
        assert_eq!(items[7], Value::Str(b"28-Nov-2026 14:53:10 +0000".to_vec()));
        let nested = parse(b"* X (a (b (c NIL)) \"\")\r\n");
        assert_eq!(
            nested,
            Response::Data(vec![
                Value::Atom("X".into()),
                Value::List(vec![
                    Value::Atom("a".into()),
                    Value::List(vec![
                        Value::Atom("b".into()),
                        Value::List(vec![Value::Atom("c".into()), Value::Nil])
                    ]),
                    Value::Str(vec![]),
                ])
            ])
        );
    }

    #[test]
    fn quoted_with_escapes() {
        let Response::Data(v) = parse(b"* LIST (\\HasNoChildren) \".\" \"a \\\"b\\\" \\\\c\"\r\n")
        else {
            panic!("not data")
        };
        assert_eq!(v[2], Value::Str(b".".to_vec()));
        assert_eq!(v[3], Value::Str(b"a \"b\" \\c".to_vec()));
        assert!(parse_response(b"* X \"open\r\n").is_err());
    }

    #[test]
    fn status_responses_and_codes() {
        assert_eq!(
            parse(b"A0001 OK [APPENDUID 1795877847 3] Completed\r\n"),
            Response::Status {
                tag: Some("A0001".into()),
                status: Status::Ok,
                code: vec![
                    Value::Atom("APPENDUID".into()),
                    Value::Atom("1795877847".into()),
                    Value::Atom("3".into())
                ],
                text: "Completed".into(),
            }
        );
        let Response::Status { code, .. } = parse(b"* OK [MAILBOXID (u8t8ue2s)] Ok\r\n") else {
            panic!("not status")
        };
        assert_eq!(first_in_list(code.get(1)).as_deref(), Some("u8t8ue2s"));
        let Response::Status { code, text, .. } = parse(b"* OK [READ-ONLY] x y\r\n") else {
            panic!("not status")
        };
        assert_eq!(
            (code, text.as_str()),
            (vec![Value::Atom("READ-ONLY".into())], "x y")
        );
        assert_eq!(
            parse(b"+ go ahead\r\n"),
            Response::Continuation("go ahead".into())
        );
        let Response::Status { status, .. } = parse(b"A2 NO Mailbox does not exist\r\n") else {
            panic!()
        };
        assert_eq!(status, Status::No);
    }

    /// A reader that hands out one byte per read call.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    #[test]
    fn split_input_is_reassembled() {
        let wire = b"* 1 FETCH (BODY[] {3}\r\nx\r\n)\r\n* 2 EXISTS\r\nA1 OK done\r\n";
        let mut r = BufReader::with_capacity(1, Trickle(wire));
        let first = read_response(&mut r).expect("first");
        assert_eq!(first, b"* 1 FETCH (BODY[] {3}\r\nx\r\n)\r\n");
        let Response::Data(v) = parse_response(&first).expect("parse") else {
            panic!()
        };
        assert_eq!(
            v[2],
            Value::List(vec![
                Value::Atom("BODY[]".into()),
                Value::Str(b"x\r\n".to_vec())
            ])
        );
        assert_eq!(read_response(&mut r).expect("second"), b"* 2 EXISTS\r\n");
        assert_eq!(read_response(&mut r).expect("third"), b"A1 OK done\r\n");
        assert!(read_response(&mut r).is_err(), "eof is an error");
        // truncated literal
        let mut r = BufReader::new(&b"* 1 FETCH (BODY[] {10}\r\nabc"[..]);
        assert!(read_response(&mut r).is_err());
        // oversized literal is refused before reading it
        let mut r = BufReader::new(&b"* 1 FETCH (BODY[] {999999999999}\r\n"[..]);
        assert!(read_response(&mut r).is_err());
    }
}
