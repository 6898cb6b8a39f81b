//! A minimal blocking IMAP4rev1 client (plain TCP, loopback test servers).
//!
//! Only what the harness needs: tagged commands and typed helpers over a small
//! response parser. Every socket operation has a timeout; literals are bounded
//! by [`MAX_LITERAL`]. The pieces:
//! - [`parse`]: reading one response off the wire and parsing its values;
//! - [`datetime`]: IMAP date-times to and from Unix seconds;
//! - `reply`: typed views of the answers (SELECT, STATUS, LIST, FETCH);
//! - `uidset`: UID sets checked and expanded;
//! - this file: the connection, command arguments, one method per command.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::CyrusError;

pub mod datetime;
pub mod parse;
mod reply;
mod uidset;

pub use datetime::{format_imap_datetime, parse_imap_datetime};
pub use parse::{parse_response, read_response, Response, Status, Value, MAX_LITERAL};
pub use reply::{FetchedMessage, ListEntry, MailboxInfo, StatusInfo};

use parse::show;
use reply::{fetched_annotations, first_in_list, list_entry, num, parse_status};
use uidset::{check_set, expand_uid_set};

type Result<T> = std::result::Result<T, CyrusError>;

fn proto(msg: impl Into<String>) -> CyrusError {
    CyrusError::ImapProtocol(msg.into())
}

// ---------------------------------------------------------------- client

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

impl ImapClient {
    /// Connect and read the greeting. `timeout` bounds the connect and every later
    /// read or write.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<ImapClient> {
        let ctx = format!("connecting to imap server {addr}");
        let stream =
            TcpStream::connect_timeout(&addr, timeout).map_err(CyrusError::io(ctx.clone()))?;
        // No Nagle: a command is written whole and then waited on, so a
        // small write held back for the peer's delayed ACK is pure latency
        // (40 ms an APPEND before, most of explore's set-up time).
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|_| stream.set_write_timeout(Some(timeout)))
            .and_then(|_| stream.set_nodelay(true))
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
                let mut rest = Vec::with_capacity(data.len() + 2);
                rest.extend_from_slice(data);
                rest.extend_from_slice(b"\r\n");
                self.send(&rest)?;
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

    /// `UID MOVE set mailbox` (RFC 6851): the moved messages as (old UID, new
    /// UID) pairs, from the server's `COPYUID` (empty when it sent none).
    pub fn uid_move(&mut self, uid_set: &str, to: &str) -> Result<Vec<(u32, u32)>> {
        check_set(uid_set)?;
        let (untagged, tagged) = self.simple(&format!("UID MOVE {uid_set} {}", quote(to)?))?;
        let codes = untagged
            .iter()
            .filter_map(|r| match r {
                Response::Status { code, .. } => Some(code.as_slice()),
                _ => None,
            })
            .chain(std::iter::once(tagged.as_slice()));
        for code in codes {
            if code.first().is_some_and(|c| c.is_atom("COPYUID")) {
                let set = |i: usize| -> Result<Vec<u32>> {
                    let text = code
                        .get(i)
                        .and_then(Value::as_text)
                        .ok_or_else(|| proto("COPYUID without its UID sets"))?;
                    expand_uid_set(&text)
                };
                let (from, to) = (set(2)?, set(3)?);
                if from.len() != to.len() {
                    return Err(proto(format!(
                        "COPYUID pairs {} UIDs with {}",
                        from.len(),
                        to.len()
                    )));
                }
                return Ok(from.into_iter().zip(to).collect());
            }
        }
        Ok(Vec::new())
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
