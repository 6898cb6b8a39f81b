//! Transcript redaction: what changes between runs replaced by placeholders,
//! so that two runs of one scenario give the same text (the transcript
//! snapshots, fake-versus-real comparisons). As cargo's testsuite keeps its
//! redactions, the rules are a table, [`REDACTIONS`]: each names what it
//! matches and the placeholder that takes its place; [`normalize_transcript`]
//! applies them word by word, then cuts shortened lines and orders closes.

use std::collections::BTreeMap;

/// The keys whose value carries a time, a checksum or an id.
const VOLATILE: [&str; 9] = [
    "UNIQUEID",
    "SYNC_CRC",
    "SYNC_CRC_ANNOT",
    "RECENTTIME",
    "LAST_APPENDDATE",
    "LAST_UPDATED",
    "UIDVALIDITY",
    "POP3_LAST_LOGIN",
    "INTERNALDATE",
];

/// What a redaction matches, in a word of a transcript line (words are split
/// on single spaces).
#[derive(Debug, Clone, Copy)]
enum Pattern {
    /// The whole word after one of these keys (`UNIQUEID ab12`; the key may
    /// open a list: `%(UNIQUEID ab12`).
    ValueOf(&'static [&'static str]),
    /// 40 lower-case hex digits, after any `(` and before any `)`: a
    /// message's GUID (message contents come from the run's seed).
    Guid,
    /// The digits of a literal head's size right after a GUID: `687}` in
    /// `APPLY MESSAGE (%{default GUID 687}`.
    SizeAfterGuid,
    /// The 8 hex digits ending a name that contains this prefix: a delayed
    /// delete's name ends in the time, `DELETED.user.a.Trash.6B0B076B`.
    HexSuffix(&'static str),
    /// Every run of at least this many digits.
    Digits(usize),
}

/// One rule: what it matches and what takes its place.
#[derive(Debug, Clone, Copy)]
struct Redaction {
    pattern: Pattern,
    placeholder: &'static str,
}

/// The rules, tried in order on each word; the first that matches wins.
const REDACTIONS: [Redaction; 5] = [
    Redaction {
        pattern: Pattern::ValueOf(&VOLATILE),
        placeholder: "[X]",
    },
    Redaction {
        pattern: Pattern::Guid,
        placeholder: "[GUID]",
    },
    Redaction {
        pattern: Pattern::SizeAfterGuid,
        placeholder: "[SIZE]",
    },
    Redaction {
        pattern: Pattern::HexSuffix("DELETED."),
        placeholder: "[HEX]",
    },
    Redaction {
        pattern: Pattern::Digits(9),
        placeholder: "[N]",
    },
];

/// A line the event log shortened (ending in `…`) is cut at this many
/// characters, well before the shortening, whose place moves with the width
/// of the numbers before it.
const SHORTENED_CUT: usize = 100;

impl Pattern {
    /// The word with this pattern's match replaced by `placeholder`, or
    /// `None` when the pattern does not match; `prev` is the word before.
    fn apply(self, w: &str, prev: Option<&str>, placeholder: &str) -> Option<String> {
        match self {
            Pattern::ValueOf(keys) => {
                let prev = prev?;
                keys.iter()
                    .any(|k| prev.ends_with(k) && prev.trim_start_matches("%(") == *k)
                    .then(|| placeholder.to_owned())
            }
            Pattern::Guid => {
                let bare = w.trim_start_matches('(');
                if !is_guid(bare.trim_end_matches(')')) {
                    return None;
                }
                let open = w.len() - bare.len();
                Some(format!("{}{placeholder}{}", &w[..open], &bare[40..]))
            }
            Pattern::SizeAfterGuid => {
                let prev = prev?;
                (is_guid(prev.trim_start_matches('(').trim_end_matches(')')) && is_literal_size(w))
                    .then(|| {
                        format!(
                            "{placeholder}{}",
                            w.trim_start_matches(|c: char| c.is_ascii_digit())
                        )
                    })
            }
            Pattern::HexSuffix(prefix) => {
                let i = w.find(prefix)?;
                let tail = &w[i..];
                let end = tail.find([')', ' ']).map_or(w.len(), |e| i + e);
                let dot = w[..end].rfind('.')?;
                let hex = &w[dot + 1..end];
                (hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then(|| format!("{}.{placeholder}{}", &w[..dot], &w[end..]))
            }
            Pattern::Digits(at_least) => Some(redact_digits(w, at_least, placeholder)),
        }
    }
}

/// `w` with each run of at least `at_least` digits replaced.
fn redact_digits(w: &str, at_least: usize, placeholder: &str) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= at_least {
            out.push_str(placeholder);
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for ch in w.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
        } else {
            flush(&mut digits, &mut out);
            out.push(ch);
        }
    }
    flush(&mut digits, &mut out);
    out
}

/// A word with the first matching rule of [`REDACTIONS`] applied.
fn redact_word(w: &str, prev: Option<&str>) -> String {
    REDACTIONS
        .iter()
        .find_map(|r| r.pattern.apply(w, prev, r.placeholder))
        .unwrap_or_else(|| w.to_owned())
}

/// A transcript with what changes between runs replaced: the value after a
/// key that carries a time, a checksum or an id (`UNIQUEID`, `SYNC_CRC`,
/// `RECENTTIME`, …) becomes `[X]`, any other number of 9 or more digits `[N]`.
/// Message contents come from the run's seed, so a message's GUID becomes
/// `[GUID]` and the size after it in an `APPLY MESSAGE` literal head `[SIZE]`
/// (the rules: `REDACTIONS` in this file). A line the event log shortened (ending in
/// `…`) is cut at 100 characters, well before the shortening, whose place
/// moves with the width of the numbers before it.
///
/// A connection's close is placed right after that connection's last line:
/// when a client ends one connection and opens the next at once, which of
/// the two the target notices first is a race (through a relay, the new
/// connection came first in about one run in ten).
pub fn normalize_transcript(t: &str) -> String {
    order_closes(&normalize_lines(t))
}

fn normalize_lines(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    for line in t.lines() {
        let mut words = Vec::new();
        let mut prev = None;
        for w in line.split(' ') {
            words.push(redact_word(w, prev));
            prev = Some(w);
        }
        let mut text = words.join(" ");
        if line.ends_with('…') && text.chars().count() > SHORTENED_CUT {
            text = text.chars().take(SHORTENED_CUT).collect::<String>() + "…";
        }
        out.push_str(&text);
        out.push('\n');
    }
    out
}

/// Each `-- session N closed…` line moved to right after session N's last
/// line (`CN:`, `SN:`, `-- session N connected`, and the indented lines
/// after them).
fn order_closes(t: &str) -> String {
    let mut lines: Vec<&str> = Vec::new();
    // The closes to print right after line i.
    let mut closes_after: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    // Index in `lines` of each open session's last line.
    let mut last: BTreeMap<u64, usize> = BTreeMap::new();
    let mut current: Option<u64> = None;
    for l in t.lines() {
        if let Some(id) = closed_session(l) {
            match last.remove(&id) {
                Some(i) => closes_after.entry(i).or_default().push(l),
                None => lines.push(l),
            }
            current = None;
            continue;
        }
        current = line_session(l).or(if l.starts_with(' ') { current } else { None });
        if let Some(id) = current {
            last.insert(id, lines.len());
        }
        lines.push(l);
    }
    let mut out = String::with_capacity(t.len());
    for (i, l) in lines.iter().enumerate() {
        for l in std::iter::once(l).chain(closes_after.get(&i).into_iter().flatten()) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// `-- session N closed` (with or without a reason): N.
fn closed_session(l: &str) -> Option<u64> {
    let (id, tail) = l.strip_prefix("-- session ")?.split_once(' ')?;
    if tail == "closed" || tail.starts_with("closed: ") {
        id.parse().ok()
    } else {
        None
    }
}

/// The session of a `CN:`/`SN:` line or of `-- session N connected`.
fn line_session(l: &str) -> Option<u64> {
    if let Some(rest) = l.strip_prefix("-- session ") {
        let (id, tail) = rest.split_once(' ')?;
        return if tail == "connected" {
            id.parse().ok()
        } else {
            None
        };
    }
    let rest = l.strip_prefix('C').or_else(|| l.strip_prefix('S'))?;
    rest.split_once(": ")?.0.parse().ok()
}

/// 40 lower-case hex digits: a message GUID.
fn is_guid(w: &str) -> bool {
    w.len() == 40 && w.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The size closing an `APPLY MESSAGE` literal head: `687}`.
fn is_literal_size(w: &str) -> bool {
    w.strip_suffix('}')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_hides_what_changes_between_runs() {
        let t = "C1: APPLY MAILBOX %(UNIQUEID ab12 MBOXNAME DELETED.user.a.Trash.6B0B076B SYNC_CRC 123 LAST_UID 6 RECENTTIME 1795880136\n\
                 C2: GET MAILBOXES (user.a DELETED.user.a.Trash.6B0B0773)\n\
                 S2: OK 1234567890 done\n";
        assert_eq!(
            normalize_transcript(t),
            "C1: APPLY MAILBOX %(UNIQUEID [X] MBOXNAME DELETED.user.a.Trash.[HEX] SYNC_CRC [X] LAST_UID 6 RECENTTIME [X]\n\
             C2: GET MAILBOXES (user.a DELETED.user.a.Trash.[HEX])\n\
             S2: OK [N] done\n"
        );
        assert_eq!(
            normalize_transcript(
                "C1: APPLY MESSAGE (%{default d8fc4987c55a7ae65b6941ff91e1ab1054ec73c8 687} …\n\
                 C1: APPLY RESERVE %(GUID (d8fc4987c55a7ae65b6941ff91e1ab1054ec73c8 d8fc4987c55a7ae65b6941ff91e1ab1054ec73c8))\n"
            ),
            "C1: APPLY MESSAGE (%{default [GUID] [SIZE]} …\n\
             C1: APPLY RESERVE %(GUID ([GUID] [GUID]))\n"
        );
        let raced = "-- session 1 connected\n\
                     C1: EXIT\n\
                     S1: OK Finished\n\
                     -- session 2 connected\n\
                     -- session 1 closed: closed by the server after its reply\n\
                     C2: GET USER a\n\
                     S2: NO IMAP_MAILBOX_LOCKED Mailbox locked\n\
                     \x20  ! locked by window w1\n\
                     -- session 2 closed: client closed\n";
        let ordered = "-- session 1 connected\n\
                       C1: EXIT\n\
                       S1: OK Finished\n\
                       -- session 1 closed: closed by the server after its reply\n\
                       -- session 2 connected\n\
                       C2: GET USER a\n\
                       S2: NO IMAP_MAILBOX_LOCKED Mailbox locked\n\
                       \x20  ! locked by window w1\n\
                       -- session 2 closed: client closed\n";
        assert_eq!(
            normalize_transcript(raced),
            ordered,
            "a close raced by the next connection"
        );
        assert_eq!(normalize_transcript(ordered), ordered);
        let long = format!("C1: APPLY X {}…", "y".repeat(150));
        assert_eq!(normalize_transcript(&long).trim_end().chars().count(), 101);
    }
}
