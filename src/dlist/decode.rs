//! Parse dlist values out of one complete frame (see [`super::Framer`]).
//!
//! The frame is complete, so running out of bytes here is a malformed command,
//! not "need more". Literal and file bytes are returned as slices of the frame
//! (no copy).

use bytes::Bytes;

use super::value::{File, Key, Value};

/// Deepest nesting of lists accepted. Real commands nest about five deep
/// (`MAILBOX %( RECORD ( %( ANNOTATIONS ( %( … ) ) ) ) )`).
pub const DEPTH_MAX: usize = 32;

/// Most values one command may decode into and keep (the items of a
/// streamed list, handed over one at a time, are not kept and not counted).
/// A decoded value costs far more than its bytes on the wire (`a ` is 2 bytes,
/// its value 40 and more), so the byte limits alone do not bound memory: a
/// 1 GiB command of two-byte list items would decode into tens of GiB. Real
/// commands keep a few thousand values at most (an `APPLY MESSAGE` batch, a
/// `GET MAILBOXES` list); their records stream.
pub const VALUES_MAX: usize = 1 << 20;

/// A malformed value: where and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {reason}")]
pub struct DecodeError {
    /// Offset in the frame where parsing stopped.
    pub offset: usize,
    /// What was expected there.
    pub reason: String,
}

/// A cursor over one frame.
#[derive(Debug)]
pub struct Parser {
    buf: Bytes,
    pos: usize,
    /// Values decoded and kept so far (see [`VALUES_MAX`]).
    values: usize,
}

/// Decode a whole frame holding exactly one value followed by the line end.
pub fn decode_value(frame: Bytes) -> Result<Value, DecodeError> {
    let mut p = Parser::new(frame);
    let v = p.value(0)?;
    p.expect_end()?;
    Ok(v)
}

impl Parser {
    /// A parser at the start of `buf`.
    pub fn new(buf: Bytes) -> Parser {
        Parser {
            buf,
            pos: 0,
            values: 0,
        }
    }

    /// Current offset.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// The whole frame, for a reader that recognizes one shape of value
    /// straight from the bytes (then [`Parser::skip_to`] past it).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// A slice of the frame, sharing its memory.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Bytes {
        self.buf.slice(range)
    }

    /// Move forward to `pos`: the end of a value read from [`Parser::bytes`]
    /// that [`Parser::value`] would have decoded, without error, up to there.
    pub fn skip_to(&mut self, pos: usize) {
        debug_assert!(pos >= self.pos && pos <= self.buf.len());
        self.pos = pos.clamp(self.pos, self.buf.len());
    }

    fn err<T>(&self, reason: impl Into<String>) -> Result<T, DecodeError> {
        Err(DecodeError {
            offset: self.pos,
            reason: reason.into(),
        })
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// True at the end of the line (CRLF, LF or the end of the frame).
    pub fn at_line_end(&self) -> bool {
        matches!(&self.buf[self.pos..], b"" | b"\n" | b"\r\n")
    }

    /// Require the end of the line.
    pub fn expect_end(&mut self) -> Result<(), DecodeError> {
        if self.at_line_end() {
            self.pos = self.buf.len();
            Ok(())
        } else {
            self.err("expected end of line")
        }
    }

    /// Consume one space; `false` if the next byte is not a space.
    pub fn space(&mut self) -> bool {
        if self.peek() == Some(b' ') {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    /// A word up to whitespace, `(`, `)` or `"` (an atom, or a command verb).
    pub fn word(&mut self) -> Bytes {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'(' | b')' | b'"') {
                break;
            }
            self.pos += 1;
        }
        self.buf.slice(start..self.pos)
    }

    /// The rest of the line, without its line end.
    pub fn rest_of_line(&mut self) -> Bytes {
        let mut end = self.buf.len();
        if self.buf[..end].ends_with(b"\n") {
            end -= 1;
        }
        if self.buf[..end].ends_with(b"\r") {
            end -= 1;
        }
        let start = self.pos.min(end);
        self.pos = self.buf.len();
        self.buf.slice(start..end)
    }

    /// A key: an atom or a quoted string, as UTF-8 (no allocation for the
    /// short keys Cyrus sends).
    pub fn key(&mut self) -> Result<Key, DecodeError> {
        let key = match self.peek() {
            Some(b'"') => self.quoted()?,
            Some(b'{') => self.literal()?,
            _ => {
                // The common case: an atom, read in place.
                let start = self.pos;
                while let Some(b) = self.peek() {
                    if matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'(' | b')' | b'"') {
                        break;
                    }
                    self.pos += 1;
                }
                return match std::str::from_utf8(&self.buf[start..self.pos]) {
                    Ok("") => self.err("expected a key"),
                    Ok(s) => Ok(Key::from(s)),
                    Err(_) => self.err("key is not UTF-8"),
                };
            }
        };
        match std::str::from_utf8(&key) {
            Ok("") => self.err("expected a key"),
            Ok(s) => Ok(Key::from(s)),
            Err(_) => self.err("key is not UTF-8"),
        }
    }

    /// One value at nesting `depth`.
    pub fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > DEPTH_MAX {
            return self.err(format!("lists nested deeper than {DEPTH_MAX}"));
        }
        self.values += 1;
        if self.values > VALUES_MAX {
            return self.err(format!("more than {VALUES_MAX} values in one command"));
        }
        match self.peek() {
            None => self.err("expected a value, found end of command"),
            Some(b'(') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    match self.peek() {
                        Some(b')') => {
                            self.pos += 1;
                            return Ok(Value::List(items));
                        }
                        None => return self.err("expected `)`"),
                        _ => items.push(self.value(depth + 1)?),
                    }
                }
            }
            Some(b'%') => match self.buf.get(self.pos + 1) {
                Some(b'(') => {
                    self.pos += 2;
                    let mut items = Vec::new();
                    loop {
                        self.skip_ws();
                        match self.peek() {
                            Some(b')') => {
                                self.pos += 1;
                                return Ok(Value::KvList(items));
                            }
                            None => return self.err("expected `)`"),
                            _ => {
                                let k = self.key()?;
                                if !self.space() {
                                    return self.err(format!("expected a space after key `{k}`"));
                                }
                                let v = self.value(depth + 1)?;
                                items.push((k, v));
                            }
                        }
                    }
                }
                Some(b'{') => self.file().map(|f| Value::File(Box::new(f))),
                _ => self.err("expected `%(` or `%{`"),
            },
            Some(b'{') => self.literal().map(Value::Atom),
            Some(b'"') => self.quoted().map(Value::Atom),
            Some(b')') => self.err("unexpected `)`"),
            Some(_) => {
                let w = self.word();
                if w.is_empty() {
                    return self.err("expected a value");
                }
                Ok(if &w[..] == b"NIL" {
                    Value::Nil
                } else if w[0] == b'\\' {
                    Value::Flag(w)
                } else {
                    Value::Atom(w)
                })
            }
        }
    }

    /// Like [`Parser::value`], except that when the value is a kvlist and the
    /// first key equal to `key` (ASCII case-insensitively) holds a list, the
    /// items of that list are left to `each`, one at a time, in order, instead
    /// of being kept: the returned kvlist has an empty list under that key.
    /// `each` gets the parser at the start of an item and the item's depth,
    /// and must consume exactly that item, as `Parser::value(depth)` would
    /// (which is what [`Parser::value_streaming`] does with each).
    /// Memory then holds one item, not the whole list (an `APPLY MAILBOX` of
    /// 10,000 records decodes in the space of one record).
    /// The second result says whether such a list was found. Decoding errors
    /// are the same, at the same offsets, as [`Parser::value`]'s, as long as
    /// `each` fails where `value` would.
    pub fn value_streaming_with(
        &mut self,
        depth: usize,
        key: &str,
        mut each: impl FnMut(&mut Parser, usize) -> Result<(), DecodeError>,
    ) -> Result<(Value, bool), DecodeError> {
        if depth > DEPTH_MAX || self.buf.get(self.pos..self.pos + 2) != Some(b"%(") {
            return Ok((self.value(depth)?, false));
        }
        self.pos += 2;
        let mut items = Vec::new();
        let mut streamed = false;
        let mut matched = false;
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b')') => {
                    self.pos += 1;
                    return Ok((Value::KvList(items), streamed));
                }
                None => return self.err("expected `)`"),
                _ => {
                    let k = self.key()?;
                    if !self.space() {
                        return self.err(format!("expected a space after key `{k}`"));
                    }
                    let list_depth = depth + 1;
                    let first = !matched && k.as_bytes().eq_ignore_ascii_case(key.as_bytes());
                    matched |= first;
                    if first && list_depth <= DEPTH_MAX && self.peek() == Some(b'(') {
                        streamed = true;
                        self.pos += 1;
                        loop {
                            self.skip_ws();
                            match self.peek() {
                                Some(b')') => {
                                    self.pos += 1;
                                    break;
                                }
                                None => return self.err("expected `)`"),
                                _ => {
                                    // Handed over, not kept: not counted.
                                    let kept = self.values;
                                    each(self, list_depth + 1)?;
                                    self.values = kept;
                                }
                            }
                        }
                        items.push((k, Value::List(Vec::new())));
                    } else {
                        let v = self.value(depth + 1)?;
                        items.push((k, v));
                    }
                }
            }
        }
    }

    /// [`Parser::value_streaming_with`], each item decoded with
    /// [`Parser::value`] and handed to `each`.
    pub fn value_streaming(
        &mut self,
        depth: usize,
        key: &str,
        mut each: impl FnMut(Value),
    ) -> Result<(Value, bool), DecodeError> {
        self.value_streaming_with(depth, key, |p, d| {
            each(p.value(d)?);
            Ok(())
        })
    }

    fn quoted(&mut self) -> Result<Bytes, DecodeError> {
        debug_assert_eq!(self.peek(), Some(b'"'));
        self.pos += 1;
        let start = self.pos;
        let mut unescaped: Option<Vec<u8>> = None;
        loop {
            match self.peek() {
                None => return self.err("unterminated quoted string"),
                Some(b'\r' | b'\n') => return self.err("line end inside quoted string"),
                Some(b'"') => {
                    let raw = self.buf.slice(start..self.pos);
                    self.pos += 1;
                    return Ok(unescaped.map(Bytes::from).unwrap_or(raw));
                }
                Some(b'\\') => {
                    let u = unescaped.get_or_insert_with(|| self.buf[start..self.pos].to_vec());
                    self.pos += 1;
                    match self.peek() {
                        None | Some(b'\r' | b'\n') => {
                            return self.err("unterminated quoted string")
                        }
                        Some(c) => u.push(c),
                    }
                    self.pos += 1;
                }
                Some(c) => {
                    if let Some(u) = unescaped.as_mut() {
                        u.push(c);
                    }
                    self.pos += 1;
                }
            }
        }
    }

    /// `{n}` or `{n+}`, CRLF, n bytes.
    fn literal(&mut self) -> Result<Bytes, DecodeError> {
        self.pos += 1; // '{'
        let n = self.number_until(b'}')?;
        self.pos += 1; // '}'
        self.take_after_line_end(n)
    }

    /// `%{partition guid size}`, CRLF (or LF), size bytes.
    fn file(&mut self) -> Result<File, DecodeError> {
        self.pos += 2; // "%{"
        let partition = self.header_word("partition")?;
        let guid = self.header_word("GUID")?;
        let size = self.number_until(b'}')?;
        self.pos += 1;
        let data = self.take_after_line_end(size)?;
        Ok(File {
            partition,
            guid,
            data,
        })
    }

    fn header_word(&mut self, what: &str) -> Result<String, DecodeError> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b == b' ' || b == b'}' || b == b'\r' || b == b'\n' {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start || !self.space() {
            return self.err(format!("expected the {what} in a file literal"));
        }
        match std::str::from_utf8(&self.buf[start..self.pos - 1]) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => self.err(format!("{what} is not UTF-8")),
        }
    }

    /// Decimal digits (with an optional `+` for literals) up to `close`.
    fn number_until(&mut self, close: u8) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut n: u64 = 0;
        while let Some(b @ b'0'..=b'9') = self.peek() {
            n = match n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
            {
                Some(n) => n,
                None => return self.err("literal size overflows"),
            };
            self.pos += 1;
        }
        if self.pos == start {
            return self.err("expected a literal size");
        }
        if close == b'}' && self.peek() == Some(b'+') {
            self.pos += 1;
        }
        if self.peek() != Some(close) {
            return self.err(format!("expected `{}`", close as char));
        }
        Ok(n)
    }

    fn take_after_line_end(&mut self, n: u64) -> Result<Bytes, DecodeError> {
        if self.buf[self.pos..].starts_with(b"\r\n") {
            self.pos += 2;
        } else if self.peek() == Some(b'\n') {
            self.pos += 1;
        } else {
            return self.err("expected CRLF after a literal announcement");
        }
        let avail = (self.buf.len() - self.pos) as u64;
        if n > avail {
            return self.err(format!("literal of {n} bytes but only {avail} follow"));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(self.buf.slice(start..self.pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &[u8]) -> Result<Value, DecodeError> {
        decode_value(Bytes::copy_from_slice(s))
    }

    #[test]
    fn scalars() {
        assert_eq!(dec(b"NIL\r\n"), Ok(Value::Nil));
        assert_eq!(dec(b"abc\r\n"), Ok(Value::atom("abc")));
        assert_eq!(dec(b"\"a\\\"b c\"\r\n"), Ok(Value::atom("a\"b c")));
        assert_eq!(dec(b"\"NIL\"\r\n"), Ok(Value::atom("NIL")));
        assert_eq!(
            dec(b"\\Seen\r\n"),
            Ok(Value::Flag(Bytes::from_static(b"\\Seen")))
        );
        assert_eq!(dec(b"{3+}\r\na\nb\r\n"), Ok(Value::atom("a\nb")));
        assert_eq!(dec(b"{0}\r\n\r\n"), Ok(Value::atom("")));
    }

    #[test]
    fn nested() {
        let v = dec(b"%(A 1 B (x \\Seen NIL) C %(D \"\"))\r\n").unwrap();
        assert_eq!(v.get("A").and_then(Value::as_u64), Some(1));
        assert_eq!(v.get("B").and_then(Value::as_list).map(<[_]>::len), Some(3));
        assert_eq!(v.get("C").and_then(|c| c.get("D")), Some(&Value::atom("")));
    }

    #[test]
    fn file_literal_is_a_slice() {
        let v = dec(b"(%{default aa 3}\r\nxyz %{p bb 1}\nQ)\r\n").unwrap();
        let items = v.as_list().unwrap();
        let Value::File(f) = &items[1] else {
            panic!("not a file: {v:?}")
        };
        assert_eq!(
            (f.partition.as_str(), f.guid.as_str(), &f.data[..]),
            ("p", "bb", &b"Q"[..])
        );
    }

    #[test]
    fn streaming_hands_over_the_list_items_and_keeps_the_rest() {
        let text = b"%(A 1 record (%(U 1) x %(U 2)) B (y) RECORD (z))\r\n";
        let mut p = Parser::new(Bytes::copy_from_slice(text));
        let mut got = Vec::new();
        let (v, streamed) = p.value_streaming(0, "RECORD", |i| got.push(i)).unwrap();
        assert!(streamed);
        assert_eq!(
            got,
            vec![
                dec(b"%(U 1)\r\n").unwrap(),
                Value::atom("x"),
                dec(b"%(U 2)\r\n").unwrap()
            ]
        );
        // Everything else as `value` decodes it; only the first such list is streamed.
        let mut whole = dec(text).unwrap();
        if let Value::KvList(items) = &mut whole {
            items[1].1 = Value::List(Vec::new());
        }
        assert_eq!(v, whole);
        assert!(p.at_line_end());

        for other in [
            &b"(a b)\r\n"[..],
            b"%(RECORD x)\r\n",
            b"%(A (b))\r\n",
            b"%(RECORD x RECORD (y))\r\n",
        ] {
            let mut p = Parser::new(Bytes::copy_from_slice(other));
            let (v, streamed) = p
                .value_streaming(0, "RECORD", |_| panic!("no list"))
                .unwrap();
            assert!(!streamed);
            assert_eq!(v, dec(other).unwrap());
        }
    }

    #[test]
    fn streaming_fails_where_value_fails() {
        let bad: [&[u8]; 5] = [
            b"%(RECORD (%(U 1) %(U\r\n",
            b"%(RECORD (a b\r\n",
            b"%(RECORD (\"x)) B\r\n",
            b"%(RECORD (a) B)\r\n",
            b"%(RECORD ({5}\r\nab))\r\n",
        ];
        for text in bad {
            let want = Parser::new(Bytes::copy_from_slice(text))
                .value(0)
                .unwrap_err();
            let got = Parser::new(Bytes::copy_from_slice(text))
                .value_streaming(0, "RECORD", |_| {})
                .unwrap_err();
            assert_eq!(got, want, "{}", String::from_utf8_lossy(text));
        }
        let deep = [
            b"%(RECORD ".to_vec(),
            vec![b'('; 100],
            vec![b')'; 100],
            b")\r\n".to_vec(),
        ]
        .concat();
        let mut p = Parser::new(Bytes::from(deep));
        let err = p.value_streaming(0, "RECORD", |_| {}).unwrap_err();
        assert!(err.reason.contains("nested"), "{err}");
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(dec(b"(a b\r\n").unwrap_err().reason, "expected `)`");
        assert_eq!(
            dec(b"{5}\r\nab\r\n").unwrap_err().reason,
            "literal of 5 bytes but only 4 follow"
        );
        assert!(dec(b"{99999999999999999999999}\r\n").is_err());
        assert!(dec(b"%(KEY)\r\n").is_err());
        assert!(dec(b"\"abc\r\n").is_err());
        assert!(dec(b"a b\r\n").unwrap_err().reason.contains("end of line"));
        let deep = [vec![b'('; 100_000], vec![b')'; 100_000], b"\r\n".to_vec()].concat();
        assert!(dec(&deep).unwrap_err().reason.contains("nested"));
    }
}
