//! `APPLY MAILBOX` records read straight from the frame's bytes, without a
//! [`Value`](crate::dlist::Value) tree: the shape a 3.6.1 client sends,
//!
//! ```text
//! %(UID 1 MODSEQ 2 LAST_UPDATED 1795875491 FLAGS (\Seen) INTERNALDATE 1795875491
//!   SIZE 180 GUID c61e… ANNOTATIONS (%(ENTRY /vendor/cmu/cyrus-imapd/savedate
//!   USERID "" MODSEQ 0 VALUE 1795875491) …))
//! ```
//!
//! Anything else (a key not listed here or given twice, a literal, an escaped
//! quoted string, a value that would not convert, a byte out of place) makes
//! `record` answer `None`, and the caller decodes the item the general way
//! (`Parser::value`, then `parse_record`). So `record` only has to agree with
//! that way on the records it accepts: same [`RecordUpdate`], same end offset,
//! and no decoding error the general way would have raised. The tests check
//! that on random edits of usual records, and the `dlist_frame_decode` fuzz
//! target at every `%(` of every frame ([`compare_with_general`]).

use bytes::Bytes;

use crate::dlist::Parser;
use crate::types::{Name, Recent};

use super::command::RecordUpdate;
use crate::types::Annotation;

/// Bytes that end an atom (`Parser::word`).
fn ends_atom(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'(' | b')' | b'"')
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    i
}

/// End of the atom starting at `i`.
fn atom_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && !ends_atom(b[i]) {
        i += 1;
    }
    i
}

/// A key (an atom, `Parser::key`) and the single space after it; `(key, value start)`.
fn key(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
    let end = atom_end(b, i);
    // Empty, quoted or literal keys: the general way.
    if end == i || matches!(b[i], b'"' | b'{') || b.get(end) != Some(&b' ') {
        return None;
    }
    Some((&b[i..end], end + 1))
}

/// An unsigned number as an atom (`Value::as_u64`): digits only, no overflow.
fn number(b: &[u8], i: usize) -> Option<(u64, usize)> {
    let end = atom_end(b, i);
    let digits = &b[i..end];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some((n, end))
}

/// A string as an atom (not `NIL`, not a `\flag`), or a quoted string without
/// escapes: the range of its bytes and the end.
fn string(b: &[u8], i: usize) -> Option<(std::ops::Range<usize>, usize)> {
    match *b.get(i)? {
        b'"' => {
            let start = i + 1;
            let mut j = start;
            loop {
                match *b.get(j)? {
                    b'"' => return Some((start..j, j + 1)),
                    b'\\' | b'\r' | b'\n' => return None,
                    _ => j += 1,
                }
            }
        }
        b'(' | b')' | b'%' | b'{' | b'\\' => None,
        c if ends_atom(c) => None,
        _ => {
            let end = atom_end(b, i);
            (&b[i..end] != b"NIL").then_some((i..end, end))
        }
    }
}

/// [`string`] as UTF-8 (`Value::as_str`).
fn text(b: &[u8], i: usize) -> Option<(String, usize)> {
    let (r, end) = string(b, i)?;
    Some((std::str::from_utf8(&b[r]).ok()?.to_owned(), end))
}

/// The annotation names met lately in one command (records repeat the same
/// few), so most are a compare and a reference count, not an allocation and
/// a lookup in the interner.
#[derive(Default)]
pub(crate) struct Names(Recent<Name, 8>);

impl Names {
    /// [`text`] as a [`Name`].
    fn read(&mut self, b: &[u8], i: usize) -> Option<(Name, usize)> {
        let (r, end) = string(b, i)?;
        let bytes = &b[r];
        if let Some(n) = self.0.find(|n| n.as_bytes() == bytes) {
            return Some((n.clone(), end));
        }
        let n = Name::new(std::str::from_utf8(bytes).ok()?);
        self.0.remember(n.clone());
        Some((n, end))
    }
}

/// Which keys were seen, so a repeated one goes the general way (which keeps
/// the first).
#[derive(Default)]
struct Seen(u16);

impl Seen {
    fn first(&mut self, bit: u16) -> Option<()> {
        (self.0 & bit == 0).then(|| self.0 |= bit)
    }
}

/// `(` flag … `)`: atoms and `\flags`, not `NIL`.
fn flags(b: &[u8], i: usize) -> Option<(Vec<String>, usize)> {
    if b.get(i) != Some(&b'(') {
        return None;
    }
    let mut out = Vec::new();
    let mut j = i + 1;
    loop {
        j = skip_ws(b, j);
        match *b.get(j)? {
            b')' => return Some((out, j + 1)),
            b'(' | b'%' | b'{' | b'"' => return None,
            _ => {
                let end = atom_end(b, j);
                if &b[j..end] == b"NIL" {
                    return None;
                }
                out.push(String::from_utf8_lossy(&b[j..end]).into_owned());
                j = end;
            }
        }
    }
}

/// A key-value list `%(K v K v …)` at `i`: `value` reads the value of key
/// `K` starting at the given offset and returns where it ends (`None` to
/// decline). Returns the end of the list.
fn kvlist(
    b: &[u8],
    i: usize,
    mut value: impl FnMut(&[u8], usize) -> Option<usize>,
) -> Option<usize> {
    if b.get(i..i + 2) != Some(b"%(") {
        return None;
    }
    let mut j = i + 2;
    loop {
        j = skip_ws(b, j);
        if *b.get(j)? == b')' {
            return Some(j + 1);
        }
        let (k, v) = key(b, j)?;
        j = value(k, v)?;
    }
}

/// `%(ENTRY e USERID u MODSEQ n VALUE v)`.
fn annotation(p: &Parser, i: usize, names: &mut Names) -> Option<(Annotation, usize)> {
    let b = p.bytes();
    let mut seen = Seen::default();
    let (mut entry, mut userid, mut modseq, mut value) = (None, None, None, None);
    let end = kvlist(b, i, |k, v| {
        if k.eq_ignore_ascii_case(b"ENTRY") {
            seen.first(1)?;
            let (s, end) = names.read(b, v)?;
            entry = Some(s);
            Some(end)
        } else if k.eq_ignore_ascii_case(b"USERID") {
            seen.first(2)?;
            let (s, end) = names.read(b, v)?;
            userid = Some(s);
            Some(end)
        } else if k.eq_ignore_ascii_case(b"MODSEQ") {
            seen.first(4)?;
            let (n, end) = number(b, v)?;
            modseq = Some(n);
            Some(end)
        } else if k.eq_ignore_ascii_case(b"VALUE") {
            seen.first(8)?;
            if b.get(v..v + 3) == Some(b"NIL") && b.get(v + 3).is_none_or(|&c| ends_atom(c)) {
                value = Some(Bytes::new());
                Some(v + 3)
            } else {
                let (r, end) = string(b, v)?;
                value = Some(p.slice(r));
                Some(end)
            }
        } else {
            None
        }
    })?;
    Some((
        Annotation {
            entry: entry?,
            userid: userid?,
            modseq: modseq?,
            value: value?,
        },
        end,
    ))
}

/// `(` annotation … `)`.
fn annotations(p: &Parser, i: usize, names: &mut Names) -> Option<(Vec<Annotation>, usize)> {
    let b = p.bytes();
    if b.get(i) != Some(&b'(') {
        return None;
    }
    let mut out = Vec::new();
    let mut j = i + 1;
    loop {
        j = skip_ws(b, j);
        if *b.get(j)? == b')' {
            return Some((out, j + 1));
        }
        let (a, end) = annotation(p, j, names)?;
        out.push(a);
        j = end;
    }
}

/// The record at the parser's offset, at nesting `depth`, and where it ends;
/// `None` to leave it to the general way.
pub(crate) fn record(p: &Parser, depth: usize, names: &mut Names) -> Option<(RecordUpdate, usize)> {
    // The deepest value here (an annotation's) is three levels down.
    if depth + 3 > crate::dlist::DEPTH_MAX {
        return None;
    }
    let b = p.bytes();
    let mut seen = Seen::default();
    let (mut uid, mut modseq, mut last_updated, mut internaldate, mut size) =
        (None, None, None, None, None);
    let (mut flag_list, mut guid, mut annots) = (None, None, None);
    let end = kvlist(b, p.offset(), |k, v| {
        let num = |bit: u16, seen: &mut Seen, slot: &mut Option<u64>| {
            seen.first(bit)?;
            let (n, end) = number(b, v)?;
            *slot = Some(n);
            Some(end)
        };
        if k.eq_ignore_ascii_case(b"UID") {
            num(1, &mut seen, &mut uid)
        } else if k.eq_ignore_ascii_case(b"MODSEQ") {
            num(2, &mut seen, &mut modseq)
        } else if k.eq_ignore_ascii_case(b"LAST_UPDATED") {
            num(4, &mut seen, &mut last_updated)
        } else if k.eq_ignore_ascii_case(b"INTERNALDATE") {
            num(8, &mut seen, &mut internaldate)
        } else if k.eq_ignore_ascii_case(b"SIZE") {
            num(16, &mut seen, &mut size)
        } else if k.eq_ignore_ascii_case(b"FLAGS") {
            seen.first(32)?;
            let (f, end) = flags(b, v)?;
            flag_list = Some(f);
            Some(end)
        } else if k.eq_ignore_ascii_case(b"GUID") {
            seen.first(64)?;
            let (g, end) = text(b, v)?;
            guid = Some(g);
            Some(end)
        } else if k.eq_ignore_ascii_case(b"ANNOTATIONS") {
            seen.first(128)?;
            let (a, end) = annotations(p, v, names)?;
            annots = Some(a);
            Some(end)
        } else {
            None
        }
    })?;
    Some((
        RecordUpdate {
            uid: u32::try_from(uid?).ok()?,
            modseq: modseq?,
            last_updated: i64::try_from(last_updated?).ok()?,
            flags: flag_list?,
            internaldate: i64::try_from(internaldate?).ok()?,
            size: size?,
            guid: guid?,
            annotations: annots.unwrap_or_default(),
        },
        end,
    ))
}

/// How `record` and the general way compare on the item at the start of
/// `text` (for the tests and the `dlist_frame_decode` fuzz target).
#[derive(Debug, PartialEq, Eq)]
pub enum Agreement {
    /// `record` left the item to the general way.
    Declined,
    /// `record` took it, and the general way decodes it without error to the
    /// same record, ending at the same byte.
    Same,
    /// `record` took it and the general way says otherwise: a bug. Both
    /// results, printed.
    Differs { direct: String, general: String },
}

/// Compare `record` with the general way (`Parser::value`, `parse_record`)
/// on the item at the start of `text`, at nesting depth 2 (a RECORD list's
/// items in `APPLY MAILBOX`).
pub fn compare_with_general(text: &[u8]) -> Agreement {
    let p = Parser::new(Bytes::copy_from_slice(text));
    let Some((direct, end)) = record(&p, 2, &mut Names::default()) else {
        return Agreement::Declined;
    };
    let mut g = Parser::new(Bytes::copy_from_slice(text));
    let general = g.value(2).map_err(|e| e.to_string()).map(|v| {
        (
            super::parse::parse_record(&v).map_err(|e| e.to_string()),
            g.offset(),
        )
    });
    if general.as_ref() == Ok(&(Ok(direct.clone()), end)) {
        Agreement::Same
    } else {
        Agreement::Differs {
            direct: format!("{:?}", (direct, end)),
            general: format!("{general:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Rng, Seed};

    const USUAL: &[&[u8]] = &[
        b"%(UID 1 MODSEQ 2 LAST_UPDATED 1795875491 FLAGS () INTERNALDATE 1795875491 SIZE 180 GUID c61e23e8bb939a02d5e89d2eebddd83a191b478b ANNOTATIONS (%(ENTRY /vendor/cmu/cyrus-imapd/savedate USERID \"\" MODSEQ 0 VALUE 1795875491) %(ENTRY /vendor/cmu/cyrus-imapd/createdmodseq USERID \"\" MODSEQ 0 VALUE 2))) ",
        b"%(UID 7 MODSEQ 9 LAST_UPDATED 1 FLAGS (\\Seen $Label1 \\Expunged) INTERNALDATE 2 SIZE 3 GUID 22067cb7912a9ca06959a31acc420e09de013074)",
        b"%(uid 4294967295 modseq 18446744073709551615 last_updated 0 flags (\\Flagged) internaldate 5 size 0 guid x annotations ())\r\n",
        b"%( UID 1\tMODSEQ 2 LAST_UPDATED 3 FLAGS ( a  b ) INTERNALDATE 4 SIZE 5 GUID \"g h\" ANNOTATIONS ( %(ENTRY e USERID u MODSEQ 1 VALUE NIL) %(VALUE \"\" MODSEQ 2 USERID \"x\" ENTRY \"/y\") ) )",
    ];

    /// Whenever `record` takes an item, the general way decodes it without
    /// error, to the same record, ending at the same byte. True when taken.
    fn agrees(text: &[u8]) -> bool {
        match compare_with_general(text) {
            Agreement::Declined => false,
            Agreement::Same => true,
            Agreement::Differs { direct, general } => panic!(
                "{}\ndirect:  {direct}\ngeneral: {general}",
                String::from_utf8_lossy(text)
            ),
        }
    }

    #[test]
    fn the_usual_records_are_read_directly_and_as_the_general_way_reads_them() {
        for text in USUAL {
            assert!(agrees(text), "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn anything_unusual_goes_the_general_way() {
        let base = String::from_utf8_lossy(USUAL[1]).into_owned();
        for (from, to) in [
            ("UID 7", "UID 7 UID 8"),
            ("UID 7", "UID 4294967296"),
            ("UID 7", "UID \"7\""),
            ("UID 7", "UID {1+}\r\n7"),
            ("UID 7", "UID NIL"),
            ("UID 7", "UID  7"),
            ("UID 7", "UID 99999999999999999999"),
            ("UID 7", "X-NEW 1 UID 7"),
            ("UID 7", "\"UID\" 7"),
            ("$Label1", "NIL"),
            ("$Label1", "\"quoted\""),
            ("$Label1", "(nested)"),
            ("GUID 2", "GUID \\2"),
            ("GUID 22067cb7912a9ca06959a31acc420e09de013074", "GUID NIL"),
            (
                "GUID 22067cb7912a9ca06959a31acc420e09de013074",
                "GUID \"a\\\"b\"",
            ),
            ("SIZE 3 ", ""),
            (")", ""),
        ] {
            let text = base.replacen(from, to, 1);
            assert!(!agrees(text.as_bytes()), "{text}");
        }
        assert!(!agrees(b"(UID 1)"));
        let p = Parser::new(Bytes::from_static(USUAL[1]));
        assert!(record(&p, crate::dlist::DEPTH_MAX - 2, &mut Names::default()).is_none());
    }

    /// Random edits of the usual records: every one the direct reader takes,
    /// the general way reads the same.
    #[test]
    fn edited_records_agree_with_the_general_way() {
        const PIECES: &[&[u8]] = &[
            b"(",
            b")",
            b"%(",
            b"%{",
            b"{",
            b"}",
            b"\"",
            b"\\",
            b" ",
            b"  ",
            b"\t",
            b"\r\n",
            b"0",
            b"9",
            b"NIL",
            b"UID",
            b"FLAGS",
            b"ANNOTATIONS",
            b"VALUE",
            b"x",
            b"\xff",
            b"99999999999999999999",
        ];
        let mut rng = Rng::new(Seed(6));
        let mut taken = 0;
        for round in 0..20_000 {
            let mut text = USUAL[round % USUAL.len()].to_vec();
            for _ in 0..=rng.below(3) {
                let at = rng.below(text.len() as u64 + 1) as usize;
                match rng.below(3) {
                    0 if at < text.len() => {
                        let n = (rng.below(4) as usize + 1).min(text.len() - at);
                        text.drain(at..at + n);
                    }
                    1 => {
                        let piece = rng.pick(PIECES);
                        text.splice(at..at, piece.iter().copied());
                    }
                    _ if at < text.len() => text[at] = *rng.pick(b"()%{}\"\\ 0aN\r\n"),
                    _ => {}
                }
            }
            taken += usize::from(agrees(&text));
        }
        // Some edits keep the usual shape (a digit or a letter changed).
        assert!(taken > 1000, "{taken}");
    }
}
