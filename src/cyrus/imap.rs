//! A minimal blocking IMAP4rev1 client (plain TCP, loopback test servers).
//!
//! Only what the harness needs: tagged commands, a small response parser
//! (atoms, quoted strings, literals, lists, response codes) and typed helpers.
//! Every socket operation has a timeout; literals are bounded by [`MAX_LITERAL`].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::CyrusError;

/// The largest literal accepted from the server.
pub const MAX_LITERAL: usize = 256 << 20;
/// The longest response line (without literals) accepted from the server.
const MAX_LINE: usize = 4 << 20;

type Result<T> = std::result::Result<T, CyrusError>;

fn proto(msg: impl Into<String>) -> CyrusError {
    CyrusError::ImapProtocol(msg.into())
}

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
    fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Atom(a) => a.parse().ok(),
            _ => None,
        }
    }
    fn is_atom(&self, name: &str) -> bool {
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
fn show(buf: &[u8]) -> String {
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

// ---------------------------------------------------------------- dates

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// (year, month, day) of days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Parse an IMAP date-time (`"28-Nov-2026 14:53:10 +0000"`, day may be space-padded)
/// into Unix seconds.
pub fn parse_imap_datetime(s: &str) -> Option<i64> {
    let mut parts = s.split_whitespace();
    let (date, time, zone) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let mut d = date.split('-');
    let day: i64 = d.next()?.parse().ok()?;
    let month = d.next()?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as i64 + 1;
    let year: i64 = d.next()?.parse().ok()?;
    let mut t = time.split(':');
    let (h, mi, sec): (i64, i64, i64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
    );
    if d.next().is_some()
        || t.next().is_some()
        || !(1..=31).contains(&day)
        || h > 23
        || mi > 59
        || sec > 60
    {
        return None;
    }
    let (sign, digits) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let zh: i64 = digits[..2].parse().ok()?;
    let zm: i64 = digits[2..].parse().ok()?;
    let offset = sign * (zh * 3600 + zm * 60);
    Some(days_from_civil(year, month, day) * 86400 + h * 3600 + mi * 60 + sec - offset)
}

/// Format Unix seconds as an IMAP date-time in UTC (`"28-Nov-2026 14:53:10 +0000"`).
pub fn format_imap_datetime(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86400));
    let s = t.rem_euclid(86400);
    format!(
        "{:02}-{}-{:04} {:02}:{:02}:{:02} +0000",
        d,
        MONTHS[(m - 1) as usize],
        y,
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

// ---------------------------------------------------------------- client

/// What SELECT/EXAMINE reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxInfo {
    pub exists: u32,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
    /// `[MAILBOXID (...)]` (RFC 8474), the Cyrus uniqueid.
    pub mailboxid: Option<String>,
    pub read_only: bool,
}

/// What STATUS reported (items not asked for are `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusInfo {
    pub messages: Option<u32>,
    pub uidnext: Option<u32>,
    pub uidvalidity: Option<u32>,
    pub highestmodseq: Option<u64>,
    pub mailboxid: Option<String>,
}

/// One LIST/LSUB entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub attributes: Vec<String>,
    pub delimiter: Option<String>,
    pub name: String,
}

/// One message from [`ImapClient::uid_fetch_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMessage {
    pub uid: u32,
    pub flags: Vec<String>,
    /// Unix seconds.
    pub internaldate: i64,
    pub size: u64,
    pub body: Vec<u8>,
    /// Per-message annotations with a value (RFC 5257), keyed `ENTRY ATTRIBUTE`
    /// (`/comment value.priv`); NIL ones left out.
    pub annotations: BTreeMap<String, Vec<u8>>,
}

/// `ANNOTATION (ENTRY (ATTR VALUE …) …)` from a FETCH: the non-NIL values.
fn fetched_annotations(val: Option<&Value>) -> Option<BTreeMap<String, Vec<u8>>> {
    let Some(Value::List(items)) = val else {
        return None;
    };
    let mut out = BTreeMap::new();
    for pair in items.chunks(2) {
        let entry = pair[0].as_text()?;
        let Some(Value::List(attrs)) = pair.get(1) else {
            return None;
        };
        for av in attrs.chunks(2) {
            let attr = av[0].as_text()?.to_ascii_lowercase();
            match av.get(1)? {
                Value::Str(b) => {
                    out.insert(format!("{entry} {attr}"), b.clone());
                }
                Value::Atom(a) => {
                    out.insert(format!("{entry} {attr}"), a.clone().into_bytes());
                }
                Value::Nil => {}
                Value::List(_) => return None,
            }
        }
    }
    Some(out)
}

/// A blocking IMAP connection.
pub struct ImapClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next_tag: u32,
    greeting: String,
}

/// Quote `s` as an IMAP quoted string.
fn quote(s: &str) -> Result<String> {
    if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(proto(format!("string {s:?} cannot be sent quoted")));
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

fn flag_list(flags: &[&str]) -> Result<String> {
    for f in flags {
        if f.is_empty() || f.bytes().any(|b| b <= b' ' || b"(){\"%*]".contains(&b)) {
            return Err(proto(format!("invalid flag {f:?}")));
        }
    }
    Ok(format!("({})", flags.join(" ")))
}

fn num<T: std::str::FromStr>(v: Option<&Value>, what: &str) -> Result<T> {
    v.and_then(Value::as_text)
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| proto(format!("bad or missing {what}")))
}

fn first_in_list(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::List(items) => items.first()?.as_text(),
        other => other.as_text(),
    }
}

impl ImapClient {
    /// Connect and read the greeting. `timeout` bounds the connect and every later
    /// read or write.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<ImapClient> {
        let ctx = format!("connecting to imap server {addr}");
        let stream =
            TcpStream::connect_timeout(&addr, timeout).map_err(CyrusError::io(ctx.clone()))?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|_| stream.set_write_timeout(Some(timeout)))
            .map_err(CyrusError::io(ctx.clone()))?;
        let writer = stream.try_clone().map_err(CyrusError::io(ctx))?;
        let mut client = ImapClient {
            reader: BufReader::new(stream),
            writer,
            next_tag: 1,
            greeting: String::new(),
        };
        match parse_response(&read_response(&mut client.reader)?)? {
            Response::Status {
                tag: None,
                status: Status::Ok | Status::Preauth,
                text,
                ..
            } => {
                client.greeting = text;
                Ok(client)
            }
            other => Err(proto(format!("unexpected greeting: {other:?}"))),
        }
    }

    /// The greeting text (after `* OK [...]`).
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer
            .write_all(bytes)
            .and_then(|_| self.writer.flush())
            .map_err(CyrusError::io("writing to imap server"))
    }

    /// Run one command. `args` is sent after the tag; `shown` is the command text for
    /// errors (with secrets redacted). `literal`, if given, is sent as a synchronizing
    /// literal after `args` once the server says `+`. Returns the untagged responses
    /// and the tagged OK's code.
    fn run(
        &mut self,
        args: &str,
        shown: &str,
        literal: Option<&[u8]>,
    ) -> Result<(Vec<Response>, Vec<Value>)> {
        let tag = format!("A{:04}", self.next_tag);
        self.next_tag += 1;
        let fail = |text: String| CyrusError::ImapCommand {
            command: shown.to_string(),
            text,
        };
        let mut untagged = Vec::new();
        match literal {
            None => self.send(format!("{tag} {args}\r\n").as_bytes())?,
            Some(data) => {
                self.send(format!("{tag} {args} {{{}}}\r\n", data.len()).as_bytes())?;
                loop {
                    match parse_response(&read_response(&mut self.reader)?)? {
                        Response::Continuation(_) => break,
                        Response::Status {
                            tag: Some(t),
                            status,
                            text,
                            ..
                        } if t == tag => return Err(fail(format!("{status:?} {text}"))),
                        r => untagged.push(r),
                    }
                }
                self.send(data)?;
                self.send(b"\r\n")?;
            }
        }
        loop {
            let raw = read_response(&mut self.reader)?;
            match parse_response(&raw)? {
                Response::Status {
                    tag: Some(t),
                    status,
                    code,
                    ..
                } if t == tag => {
                    return match status {
                        Status::Ok => Ok((untagged, code)),
                        _ => Err(fail(show(&raw[t.len() + 1..]))),
                    };
                }
                Response::Status {
                    tag: Some(t), text, ..
                } => {
                    return Err(proto(format!(
                        "unexpected tag `{t}` ({text}) for `{shown}`"
                    )))
                }
                Response::Status {
                    tag: None,
                    status: Status::Bye,
                    text,
                    ..
                } if !shown.starts_with("LOGOUT") => {
                    return Err(fail(format!("server closed the connection: BYE {text}")))
                }
                r => untagged.push(r),
            }
        }
    }

    /// Run a command whose arguments contain no secrets.
    fn simple(&mut self, args: &str) -> Result<(Vec<Response>, Vec<Value>)> {
        self.run(args, args, None)
    }

    /// LOGIN (the password never appears in errors).
    pub fn login(&mut self, user: &str, password: &str) -> Result<()> {
        let args = format!("LOGIN {} {}", quote(user)?, quote(password)?);
        let shown = format!("LOGIN {} <redacted>", quote(user)?);
        self.run(&args, &shown, None).map(drop)
    }

    pub fn create(&mut self, mailbox: &str) -> Result<()> {
        self.simple(&format!("CREATE {}", quote(mailbox)?))
            .map(drop)
    }

    pub fn delete(&mut self, mailbox: &str) -> Result<()> {
        self.simple(&format!("DELETE {}", quote(mailbox)?))
            .map(drop)
    }

    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        self.simple(&format!("RENAME {} {}", quote(from)?, quote(to)?))
            .map(drop)
    }

    pub fn subscribe(&mut self, mailbox: &str) -> Result<()> {
        self.simple(&format!("SUBSCRIBE {}", quote(mailbox)?))
            .map(drop)
    }

    pub fn unsubscribe(&mut self, mailbox: &str) -> Result<()> {
        self.simple(&format!("UNSUBSCRIBE {}", quote(mailbox)?))
            .map(drop)
    }

    fn open(&mut self, verb: &str, mailbox: &str) -> Result<MailboxInfo> {
        let (untagged, code) = self.simple(&format!("{verb} {}", quote(mailbox)?))?;
        let mut info = MailboxInfo {
            read_only: code.first().is_some_and(|c| c.is_atom("READ-ONLY")),
            ..MailboxInfo::default()
        };
        for r in &untagged {
            match r {
                Response::Data(v) if v.get(1).is_some_and(|x| x.is_atom("EXISTS")) => {
                    info.exists = num(v.first(), "EXISTS")?;
                }
                Response::Status { code, .. } if !code.is_empty() => {
                    let Some(name) = code[0].as_text() else {
                        continue;
                    };
                    match name.to_ascii_uppercase().as_str() {
                        "UIDVALIDITY" => info.uidvalidity = num(code.get(1), "UIDVALIDITY")?,
                        "UIDNEXT" => info.uidnext = num(code.get(1), "UIDNEXT")?,
                        "HIGHESTMODSEQ" => info.highestmodseq = num(code.get(1), "HIGHESTMODSEQ")?,
                        "MAILBOXID" => info.mailboxid = first_in_list(code.get(1)),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        Ok(info)
    }

    pub fn select(&mut self, mailbox: &str) -> Result<MailboxInfo> {
        self.open("SELECT", mailbox)
    }

    /// EXAMINE: select read-only (changes neither flags nor `\Recent`).
    pub fn examine(&mut self, mailbox: &str) -> Result<MailboxInfo> {
        self.open("EXAMINE", mailbox)
    }

    /// APPEND with an optional INTERNALDATE (Unix seconds); returns the new UID if the
    /// server sent `[APPENDUID validity uid]`.
    pub fn append(
        &mut self,
        mailbox: &str,
        flags: &[&str],
        internaldate: Option<i64>,
        body: &[u8],
    ) -> Result<Option<u32>> {
        let mut args = format!("APPEND {} {}", quote(mailbox)?, flag_list(flags)?);
        if let Some(t) = internaldate {
            args.push_str(&format!(" \"{}\"", format_imap_datetime(t)));
        }
        let (_, code) = self.run(&args, &args, Some(body))?;
        if code.first().is_some_and(|c| c.is_atom("APPENDUID")) {
            return Ok(code
                .get(2)
                .and_then(Value::as_text)
                .and_then(|t| t.parse().ok()));
        }
        Ok(None)
    }

    /// `UID STORE set op (flags)`, `op` being `+FLAGS`, `-FLAGS` or `FLAGS`
    /// (`.SILENT` is added).
    pub fn uid_store(&mut self, uid_set: &str, op: &str, flags: &[&str]) -> Result<()> {
        let op = op.trim_end_matches(".SILENT");
        if !["+FLAGS", "-FLAGS", "FLAGS"].contains(&op.to_ascii_uppercase().as_str()) {
            return Err(proto(format!("invalid store operation `{op}`")));
        }
        check_set(uid_set)?;
        self.simple(&format!(
            "UID STORE {uid_set} {op}.SILENT {}",
            flag_list(flags)?
        ))
        .map(drop)
    }

    pub fn expunge(&mut self) -> Result<()> {
        self.simple("EXPUNGE").map(drop)
    }

    /// `UID EXPUNGE set` (UIDPLUS).
    pub fn uid_expunge(&mut self, uid_set: &str) -> Result<()> {
        check_set(uid_set)?;
        self.simple(&format!("UID EXPUNGE {uid_set}")).map(drop)
    }

    /// `COMMAND REFERENCE PATTERN`, collecting the untagged `verb` responses.
    fn list_like(
        &mut self,
        command: &str,
        verb: &str,
        reference: &str,
        pattern: &str,
    ) -> Result<Vec<ListEntry>> {
        let (untagged, _) = self.simple(&format!(
            "{command} {} {}",
            quote(reference)?,
            quote(pattern)?
        ))?;
        let mut out = Vec::new();
        for r in untagged {
            let Response::Data(v) = r else { continue };
            if v.first().is_some_and(|x| x.is_atom(verb)) {
                out.push(list_entry(&v, verb)?);
            }
        }
        Ok(out)
    }

    pub fn list(&mut self, reference: &str, pattern: &str) -> Result<Vec<ListEntry>> {
        self.list_like("LIST", "LIST", reference, pattern)
    }

    /// LSUB: the subscriptions to folders that exist (Cyrus hides the others).
    pub fn lsub(&mut self, reference: &str, pattern: &str) -> Result<Vec<ListEntry>> {
        self.list_like("LSUB", "LSUB", reference, pattern)
    }

    /// `LIST (SUBSCRIBED) REFERENCE PATTERN` (RFC 5258): every subscription the
    /// user's subscription database holds, those to folders that do not exist
    /// included (marked `\NonExistent`), which LSUB hides. Only entries marked
    /// `\Subscribed` are returned.
    pub fn list_subscribed(&mut self, reference: &str, pattern: &str) -> Result<Vec<ListEntry>> {
        let mut entries = self.list_like("LIST (SUBSCRIBED)", "LIST", reference, pattern)?;
        entries.retain(|e| {
            e.attributes
                .iter()
                .any(|a| a.eq_ignore_ascii_case("\\Subscribed"))
        });
        Ok(entries)
    }

    /// STATUS with the given items (e.g. `["UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ"]`).
    /// Note: Cyrus 3.6.1 returns garbage for `MAILBOXID` here; use [`Self::examine`].
    pub fn status(&mut self, mailbox: &str, items: &[&str]) -> Result<StatusInfo> {
        let (untagged, _) =
            self.simple(&format!("STATUS {} ({})", quote(mailbox)?, items.join(" ")))?;
        let mut info = StatusInfo::default();
        for r in untagged {
            let Response::Data(v) = r else { continue };
            if v.first().is_some_and(|x| x.is_atom("STATUS")) {
                info = parse_status(&v)?;
            }
        }
        Ok(info)
    }

    /// `LIST REFERENCE PATTERN RETURN (STATUS (ITEMS))` (RFC 5819): each entry
    /// with its STATUS. An admin sees every mailbox this way, `DELETED.*` ones
    /// included, without the read right EXAMINE needs.
    pub fn list_status(
        &mut self,
        reference: &str,
        pattern: &str,
        items: &[&str],
    ) -> Result<Vec<(ListEntry, StatusInfo)>> {
        let (untagged, _) = self.simple(&format!(
            "LIST {} {} RETURN (STATUS ({}))",
            quote(reference)?,
            quote(pattern)?,
            items.join(" ")
        ))?;
        let mut entries = Vec::new();
        let mut statuses = BTreeMap::new();
        for r in untagged {
            let Response::Data(v) = r else { continue };
            if v.first().is_some_and(|x| x.is_atom("STATUS")) {
                let name = v
                    .get(1)
                    .and_then(Value::as_text)
                    .ok_or_else(|| proto(format!("bad STATUS response: {v:?}")))?;
                statuses.insert(name, parse_status(&v)?);
            } else if v.first().is_some_and(|x| x.is_atom("LIST")) {
                entries.push(list_entry(&v, "LIST")?);
            }
        }
        Ok(entries
            .into_iter()
            .map(|e| {
                let st = statuses.remove(&e.name).unwrap_or_default();
                (e, st)
            })
            .collect())
    }

    /// `UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])` on the
    /// selected mailbox, sorted by UID.
    pub fn uid_fetch_all(&mut self) -> Result<Vec<FetchedMessage>> {
        let (untagged, _) = self.simple(
            "UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[] \
             ANNOTATION (/* (value.priv value.shared)))",
        )?;
        let mut out = Vec::new();
        for r in untagged {
            let Response::Data(v) = r else { continue };
            if !v.get(1).is_some_and(|x| x.is_atom("FETCH")) {
                continue;
            }
            let Some(Value::List(items)) = v.get(2) else {
                return Err(proto(format!("bad FETCH response: {v:?}")));
            };
            let (mut uid, mut flags, mut date, mut size, mut body) = (None, None, None, None, None);
            let mut annotations = BTreeMap::new();
            for pair in items.chunks(2) {
                let key = pair[0].as_text().unwrap_or_default().to_ascii_uppercase();
                let val = pair.get(1);
                match key.as_str() {
                    "UID" => uid = val.and_then(Value::as_u64),
                    "RFC822.SIZE" => size = val.and_then(Value::as_u64),
                    "INTERNALDATE" => {
                        date = val
                            .and_then(Value::as_text)
                            .and_then(|t| parse_imap_datetime(&t))
                    }
                    "FLAGS" => {
                        if let Some(Value::List(f)) = val {
                            flags = Some(f.iter().filter_map(Value::as_text).collect::<Vec<_>>());
                        }
                    }
                    "ANNOTATION" => {
                        annotations = fetched_annotations(val)
                            .ok_or_else(|| proto(format!("bad ANNOTATION in FETCH: {v:?}")))?;
                    }
                    "BODY[]" => {
                        body = match val {
                            Some(Value::Str(b)) => Some(b.clone()),
                            Some(Value::Nil) => Some(Vec::new()),
                            _ => None,
                        }
                    }
                    _ => {}
                }
            }
            let missing = |what: &str| proto(format!("FETCH response without {what}: {v:?}"));
            out.push(FetchedMessage {
                uid: uid
                    .and_then(|u| u32::try_from(u).ok())
                    .ok_or_else(|| missing("UID"))?,
                flags: flags.ok_or_else(|| missing("FLAGS"))?,
                internaldate: date.ok_or_else(|| missing("INTERNALDATE"))?,
                size: size.ok_or_else(|| missing("RFC822.SIZE"))?,
                body: body.ok_or_else(|| missing("BODY[]"))?,
                annotations,
            });
        }
        out.sort_by_key(|m| m.uid);
        Ok(out)
    }

    /// SETMETADATA of one entry; `None` removes it.
    pub fn setmetadata(&mut self, mailbox: &str, entry: &str, value: Option<&str>) -> Result<()> {
        let value = match value {
            Some(v) => quote(v)?,
            None => "NIL".into(),
        };
        self.simple(&format!(
            "SETMETADATA {} ({} {value})",
            quote(mailbox)?,
            quote(entry)?
        ))
        .map(drop)
    }

    /// `GETMETADATA (DEPTH infinity) MAILBOX (/private /shared)`: every entry the
    /// server reports a value for (NIL ones left out), by entry name
    /// (`/shared/comment`). Cyrus also reports entries it computes from the
    /// mailbox (`/shared/vendor/cmu/cyrus-imapd/size`, `lastupdate`, …).
    pub fn getmetadata_all(&mut self, mailbox: &str) -> Result<BTreeMap<String, Vec<u8>>> {
        let (untagged, _) = self.simple(&format!(
            "GETMETADATA (DEPTH infinity) {} (/private /shared)",
            quote(mailbox)?
        ))?;
        let mut out = BTreeMap::new();
        for r in untagged {
            let Response::Data(v) = r else { continue };
            if !v.first().is_some_and(|x| x.is_atom("METADATA")) {
                continue;
            }
            let Some(Value::List(kv)) = v.get(2) else {
                return Err(proto(format!("bad METADATA response: {v:?}")));
            };
            for pair in kv.chunks(2) {
                let entry = pair[0]
                    .as_text()
                    .ok_or_else(|| proto(format!("bad METADATA entry: {v:?}")))?;
                match pair.get(1) {
                    Some(Value::Str(b)) => {
                        out.insert(entry, b.clone());
                    }
                    Some(Value::Atom(a)) => {
                        out.insert(entry, a.clone().into_bytes());
                    }
                    Some(Value::Nil) => {}
                    _ => return Err(proto(format!("bad METADATA value: {v:?}"))),
                }
            }
        }
        Ok(out)
    }

    /// `UID STORE SET ANNOTATION (ENTRY (value.shared|value.priv VALUE))` on the
    /// selected mailbox (RFC 5257); `None` removes the value.
    pub fn store_annotation(
        &mut self,
        uid_set: &str,
        entry: &str,
        shared: bool,
        value: Option<&str>,
    ) -> Result<()> {
        check_set(uid_set)?;
        let value = match value {
            Some(v) => quote(v)?,
            None => "NIL".into(),
        };
        let attrib = if shared { "value.shared" } else { "value.priv" };
        self.simple(&format!(
            "UID STORE {uid_set} ANNOTATION ({} ({attrib} {value}))",
            quote(entry)?
        ))
        .map(drop)
    }

    /// `GETACL MAILBOX`: rights by identifier (the caller needs the `a` right; an
    /// owner has it on their own mailboxes).
    pub fn getacl(&mut self, mailbox: &str) -> Result<BTreeMap<String, String>> {
        let (untagged, _) = self.simple(&format!("GETACL {}", quote(mailbox)?))?;
        let mut out = BTreeMap::new();
        for r in untagged {
            let Response::Data(v) = r else { continue };
            if !v.first().is_some_and(|x| x.is_atom("ACL")) {
                continue;
            }
            for pair in v.get(2..).unwrap_or_default().chunks(2) {
                let (Some(id), Some(rights)) =
                    (pair[0].as_text(), pair.get(1).and_then(Value::as_text))
                else {
                    return Err(proto(format!("bad ACL response: {v:?}")));
                };
                out.insert(id, rights);
            }
        }
        Ok(out)
    }

    /// `SETACL MAILBOX IDENTIFIER RIGHTS`; empty rights: `DELETEACL`.
    pub fn setacl(&mut self, mailbox: &str, identifier: &str, rights: &str) -> Result<()> {
        if rights.is_empty() {
            return self
                .simple(&format!(
                    "DELETEACL {} {}",
                    quote(mailbox)?,
                    quote(identifier)?
                ))
                .map(drop);
        }
        self.simple(&format!(
            "SETACL {} {} {}",
            quote(mailbox)?,
            quote(identifier)?,
            quote(rights)?
        ))
        .map(drop)
    }

    /// `SETQUOTA ROOT (RESOURCE LIMIT …)` (an admin command); no limits removes
    /// the quota.
    pub fn setquota(&mut self, root: &str, limits: &[(String, u64)]) -> Result<()> {
        let list: Vec<String> = limits.iter().map(|(r, l)| format!("{r} {l}")).collect();
        self.simple(&format!("SETQUOTA {} ({})", quote(root)?, list.join(" ")))
            .map(drop)
    }

    /// `GETQUOTAROOT MAILBOX`: each quota root of the mailbox with its limits by
    /// resource (`STORAGE` in KiB, `MESSAGE`, …); usage is left out.
    pub fn getquotaroot(
        &mut self,
        mailbox: &str,
    ) -> Result<BTreeMap<String, BTreeMap<String, u64>>> {
        let (untagged, _) = self.simple(&format!("GETQUOTAROOT {}", quote(mailbox)?))?;
        let mut out = BTreeMap::new();
        for r in untagged {
            let Response::Data(v) = r else { continue };
            if !v.first().is_some_and(|x| x.is_atom("QUOTA")) {
                continue;
            }
            let (Some(root), Some(Value::List(items))) =
                (v.get(1).and_then(Value::as_text), v.get(2))
            else {
                return Err(proto(format!("bad QUOTA response: {v:?}")));
            };
            let mut limits = BTreeMap::new();
            for triple in items.chunks(3) {
                let (Some(res), Some(limit)) =
                    (triple[0].as_text(), triple.get(2).and_then(Value::as_u64))
                else {
                    return Err(proto(format!("bad QUOTA resource: {v:?}")));
                };
                limits.insert(res.to_ascii_uppercase(), limit);
            }
            out.insert(root, limits);
        }
        Ok(out)
    }

    /// LOGOUT and close the connection.
    pub fn logout(mut self) -> Result<()> {
        self.simple("LOGOUT").map(drop)
    }
}

/// One `* LIST`/`* LSUB` response line.
fn list_entry(v: &[Value], verb: &str) -> Result<ListEntry> {
    let attributes = match v.get(1) {
        Some(Value::List(a)) => a.iter().filter_map(Value::as_text).collect(),
        _ => return Err(proto(format!("bad {verb} response: {v:?}"))),
    };
    let delimiter = v.get(2).and_then(Value::as_text);
    let name = v
        .get(3)
        .and_then(Value::as_text)
        .ok_or_else(|| proto(format!("bad {verb} response: {v:?}")))?;
    Ok(ListEntry {
        attributes,
        delimiter,
        name,
    })
}

/// One `* STATUS NAME (ITEM VALUE …)` response line.
fn parse_status(v: &[Value]) -> Result<StatusInfo> {
    let Some(Value::List(kv)) = v.get(2) else {
        return Err(proto(format!("bad STATUS response: {v:?}")));
    };
    let mut info = StatusInfo::default();
    for pair in kv.chunks(2) {
        let key = pair[0].as_text().unwrap_or_default().to_ascii_uppercase();
        let val = pair.get(1);
        match key.as_str() {
            "MESSAGES" => info.messages = Some(num(val, "MESSAGES")?),
            "UIDNEXT" => info.uidnext = Some(num(val, "UIDNEXT")?),
            "UIDVALIDITY" => info.uidvalidity = Some(num(val, "UIDVALIDITY")?),
            "HIGHESTMODSEQ" => info.highestmodseq = Some(num(val, "HIGHESTMODSEQ")?),
            "MAILBOXID" => info.mailboxid = first_in_list(val),
            _ => {}
        }
    }
    Ok(info)
}

/// Check a UID set (`1`, `1:5`, `3,7:*`): digits, `:`, `,` and `*` only.
fn check_set(set: &str) -> Result<()> {
    if set.is_empty()
        || !set
            .bytes()
            .all(|b| b.is_ascii_digit() || b":,*".contains(&b))
    {
        return Err(proto(format!("invalid uid set `{set}`")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn dates() {
        assert_eq!(parse_imap_datetime("01-Jan-1970 00:00:00 +0000"), Some(0));
        assert_eq!(
            parse_imap_datetime("28-Nov-2026 14:53:10 +0000"),
            Some(1_795_877_590)
        );
        assert_eq!(
            parse_imap_datetime(" 1-Mar-2024 01:00:00 +0100"),
            Some(1_709_251_200)
        );
        assert_eq!(
            parse_imap_datetime("29-Feb-2024 23:59:59 -0130"),
            Some(1_709_256_599)
        );
        assert_eq!(parse_imap_datetime("31-Dec-1969 23:59:59 +0000"), Some(-1));
        for bad in [
            "",
            "28-Nov-2026",
            "28-Foo-2026 14:53:10 +0000",
            "28-Nov-2026 14:53 +0000",
            "28-Nov-2026 14:53:10 0000",
            "28-Nov-2026 25:00:00 +0000",
        ] {
            assert_eq!(parse_imap_datetime(bad), None, "{bad:?}");
        }
        for t in [0, 1_795_877_590, 951_782_400, 4_102_444_799, -86_401] {
            assert_eq!(parse_imap_datetime(&format_imap_datetime(t)), Some(t));
        }
        assert_eq!(
            format_imap_datetime(1_795_877_590),
            "28-Nov-2026 14:53:10 +0000"
        );
    }
}
