//! Reading a backupd target back: `cyr_backup json mailboxes` (mailboxes and
//! live UID -> GUID), then, when the `sqlite3` tool is installed, the backup's
//! SQLite index for what `cyr_backup` does not print (see the module doc of
//! [`super`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{RealTarget, Result, TOOL_TIMEOUT};
use crate::cyrus::tool::run_bounded;
use crate::cyrus::CyrusError;
use crate::mailstate::{DeletedMailbox, MailboxState, MessageState, UserState};

impl RealTarget {
    /// The path of `user`'s backup data file (from `ctl_backups list -j`), if
    /// any, as seen from the host.
    pub fn backup_path(&self, user: &str) -> Result<Option<PathBuf>> {
        let out = self.ctl_backups(&["list", "-j", "-u", user])?;
        if out.stderr.contains("not found in backups.db") {
            return Ok(None);
        }
        if out.code != Some(0) {
            return Err(CyrusError::Config(format!(
                "ctl_backups list -j -u {user}: rc {:?}: {}{}",
                out.code, out.stdout, out.stderr
            )));
        }
        let text = out.stdout.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let json: serde_json::Value =
            serde_json::from_str(&text[text.find(['[', '{']).unwrap_or(0)..]).map_err(|e| {
                CyrusError::Config(format!("ctl_backups list -j output: {e}: {text}"))
            })?;
        let find = |v: &serde_json::Value| -> Option<PathBuf> {
            v.get("fname")
                .or_else(|| v.get("filename"))
                .or_else(|| v.get("path"))
                .and_then(|p| p.as_str())
                .map(PathBuf::from)
        };
        let inside = match &json {
            serde_json::Value::Array(items) => items.iter().find_map(find),
            serde_json::Value::Object(map) => find(&json).or_else(|| map.values().find_map(find)),
            _ => None,
        };
        // ctl_backups prints the path it sees (inside a chroot).
        Ok(inside.map(|p| self.bins.host_view(&p)))
    }

    pub(super) fn read_backup_user(&self, user: &str) -> Result<UserState> {
        let out = self.cyr_backup(&["-u", user, "json", "mailboxes"])?;
        if out.code != Some(0) {
            // An unknown user: cyr_backup fails to open a backup that does not exist.
            if self.backup_path(user)?.is_none() {
                return Ok(UserState::default());
            }
            return Err(CyrusError::Config(format!(
                "cyr_backup -u {user} json mailboxes: rc {:?}{}: {}{}",
                out.code,
                if out.timed_out { " (timed out)" } else { "" },
                out.stdout.trim(),
                out.stderr.trim()
            )));
        }
        let rows = parse_cyr_backup_rows(&out.stdout)?;
        if !sqlite3_available() {
            return Err(CyrusError::Config(NO_SQLITE3.into()));
        }
        let Some(path) = self.backup_path(user)? else {
            return Err(CyrusError::Config(format!(
                "cyr_backup -u {user} printed mailboxes, but ctl_backups lists no backup file for {user}"
            )));
        };
        let mut index = path.into_os_string();
        index.push(".index");
        state_from_index(rows, Path::new(&index), user)
    }
}

/// Why a real backupd cannot be read without the `sqlite3` tool.
pub(super) const NO_SQLITE3: &str = "reading a real backupd needs the `sqlite3` tool: \
     `cyr_backup` prints the mailboxes of a backup's index, removed ones too, and only the \
     index says which were removed (install it: `apt-get install sqlite3`, or `make setup`)";

pub(super) fn sqlite3_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Command::new("sqlite3")
            .arg("-version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// One mailbox row of `cyr_backup json mailboxes`. It prints every row of
/// the backup's index, those of removed mailboxes too (it has no deleted
/// mark), so that several rows may carry one name: the index updates a row
/// by uniqueid, and removes by name.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupRow {
    /// The mailbox's uniqueid (the index's key).
    pub uniqueid: Option<String>,
    /// Its name.
    pub name: String,
    /// Live UID -> GUID (flags, dates and sizes are not printed and stay zero).
    pub messages: BTreeMap<u32, MessageState>,
}

/// `cyr_backup json mailboxes` -> its rows, live records only.
pub fn parse_cyr_backup_rows(text: &str) -> Result<Vec<BackupRow>> {
    let start = text.find('[').unwrap_or(text.len());
    let json: serde_json::Value = if start == text.len() {
        serde_json::Value::Array(Vec::new())
    } else {
        serde_json::from_str(&text[start..])
            .map_err(|e| CyrusError::Config(format!("cyr_backup json mailboxes: {e}")))?
    };
    let mut rows = Vec::new();
    for mb in json.as_array().into_iter().flatten() {
        let Some(name) = mb.get("mboxname").and_then(|v| v.as_str()) else {
            continue;
        };
        let mut messages = BTreeMap::new();
        for m in mb
            .get("messages")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            if m.get("expunged").is_some() {
                continue;
            }
            let (Some(uid), Some(guid)) = (
                m.get("uid").and_then(|v| v.as_u64()),
                m.get("guid").and_then(|v| v.as_str()),
            ) else {
                continue;
            };
            messages.insert(
                u32::try_from(uid).unwrap_or(u32::MAX),
                MessageState {
                    guid: guid.to_string(),
                    ..MessageState::default()
                },
            );
        }
        rows.push(BackupRow {
            uniqueid: mb
                .get("uniqueid")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            name: name.to_string(),
            messages,
        });
    }
    Ok(rows)
}

/// Rows taken as they are (without the index, nothing says which are
/// removed) -> a user's state: `DELETED.*` names as deleted mailboxes, the
/// rest live. Two rows of one name are an error naming both: which one is
/// the mailbox cannot be told, and taking either could hide a difference.
pub fn state_from_rows(rows: Vec<BackupRow>) -> Result<UserState> {
    let mut us = UserState::default();
    let mut uniqueids: BTreeMap<String, Option<String>> = BTreeMap::new();
    for row in rows {
        if let Some(other) = uniqueids.insert(row.name.clone(), row.uniqueid.clone()) {
            return Err(CyrusError::Config(format!(
                "the backup holds two live mailboxes named {} (uniqueids {} and {})",
                row.name,
                other.as_deref().unwrap_or("?"),
                row.uniqueid.as_deref().unwrap_or("?")
            )));
        }
        if row.name.starts_with("DELETED.") {
            us.deleted.insert(
                row.name,
                DeletedMailbox {
                    messages: u32::try_from(row.messages.len()).unwrap_or(u32::MAX),
                    ..DeletedMailbox::default()
                },
            );
            continue;
        }
        us.mailboxes.insert(
            row.name,
            MailboxState {
                uniqueid: row.uniqueid,
                messages: row.messages,
                ..MailboxState::default()
            },
        );
    }
    Ok(us)
}

/// `cyr_backup json mailboxes` -> a user's state, every row taken for live
/// ([`state_from_rows`]).
pub fn parse_cyr_backup_mailboxes(text: &str) -> Result<UserState> {
    state_from_rows(parse_cyr_backup_rows(text)?)
}

/// The annotations backupd's index keeps as dlist text (`dlist_printbuf` of the
/// `ANNOTATIONS` list: `(%(ENTRY /comment USERID olga MODSEQ 16 VALUE x) …)`),
/// keyed for comparison by `key(entry, userid)`.
fn index_annotations(
    text: Option<&str>,
    key: impl Fn(&str, &str) -> Option<String>,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok(out);
    };
    let bad = |e: String| CyrusError::Config(format!("backup index annotations `{text}`: {e}"));
    let value = crate::dlist::decode_value(bytes::Bytes::copy_from_slice(text.as_bytes()))
        .map_err(|e| bad(e.to_string()))?;
    for a in value.as_list().ok_or_else(|| bad("not a list".into()))? {
        let field = |k: &str| a.get(k).and_then(|v| v.as_bytes());
        let (Some(entry), Some(userid), Some(v)) =
            (field("ENTRY"), field("USERID"), field("VALUE"))
        else {
            return Err(bad("an annotation without ENTRY, USERID or VALUE".into()));
        };
        let entry = String::from_utf8_lossy(entry);
        if let Some(k) = key(&entry, &String::from_utf8_lossy(userid)) {
            out.insert(k, String::from_utf8_lossy(v).into_owned());
        }
    }
    Ok(out)
}

fn sqlite_json(index: &Path, sql: &str) -> Result<Vec<serde_json::Value>> {
    let mut c = Command::new("sqlite3");
    c.arg("-readonly").arg("-json").arg(index).arg(sql);
    let out = run_bounded(c, TOOL_TIMEOUT)?;
    if out.code != Some(0) {
        return Err(CyrusError::Config(format!(
            "sqlite3 {}: rc {:?}: {}",
            index.display(),
            out.code,
            out.stderr.trim()
        )));
    }
    if out.stdout.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(&out.stdout)
        .map_err(|e| CyrusError::Config(format!("sqlite3 json output: {e}")))
}

/// `cyr_backup`'s rows with the backup's SQLite index: the rows the index
/// marks deleted are left out (matched by uniqueid, the index's key: a name
/// may be on a removed row and a live one at once), then what `cyr_backup`
/// does not print is filled in: per mailbox UIDVALIDITY, LAST_UID,
/// HIGHESTMODSEQ, ACL and annotations; per record flags, INTERNALDATE, size
/// and annotations; and the subscriptions. The UID -> GUID sets must agree
/// with `cyr_backup`'s.
fn state_from_index(rows: Vec<BackupRow>, index: &Path, owner: &str) -> Result<UserState> {
    let mailboxes = sqlite_json(
        index,
        "SELECT id, uniqueid, mboxname, uidvalidity, last_uid, highestmodseq, deleted, \
         annotations, acl FROM mailbox",
    )?;
    let removed: std::collections::BTreeSet<&str> = mailboxes
        .iter()
        .filter(|row| row["deleted"].as_i64().unwrap_or(0) != 0)
        .filter_map(|row| row["uniqueid"].as_str())
        .collect();
    let live: Vec<BackupRow> = rows
        .into_iter()
        .filter(|r| !r.uniqueid.as_deref().is_some_and(|u| removed.contains(u)))
        .collect();
    let mut us = state_from_rows(live)?;
    let mut by_id = BTreeMap::new();
    for row in &mailboxes {
        if row["deleted"].as_i64().unwrap_or(0) != 0 {
            continue;
        }
        let name = row["mboxname"].as_str().unwrap_or_default().to_string();
        let uniqueid = row["uniqueid"].as_str();
        let id = row["id"].as_i64().unwrap_or(-1);
        let uidvalidity = u32::try_from(row["uidvalidity"].as_i64().unwrap_or(0)).unwrap_or(0);
        let last_uid = u32::try_from(row["last_uid"].as_i64().unwrap_or(0)).unwrap_or(0);
        if let Some(d) = us.deleted.get_mut(&name) {
            d.uidvalidity = uidvalidity;
            d.last_uid = last_uid;
            d.highestmodseq =
                u64::try_from(row["highestmodseq"].as_i64().unwrap_or(0)).unwrap_or(0);
            continue;
        }
        let Some(mb) = us.mailboxes.get_mut(&name) else {
            continue;
        };
        if mb.uniqueid.as_deref() != uniqueid {
            return Err(CyrusError::Config(format!(
                "backup index row {id} names {name} with uniqueid {}, cyr_backup shows {}",
                uniqueid.unwrap_or("?"),
                mb.uniqueid.as_deref().unwrap_or("?")
            )));
        }
        mb.uidvalidity = uidvalidity;
        mb.last_uid = last_uid;
        mb.highestmodseq = u64::try_from(row["highestmodseq"].as_i64().unwrap_or(0)).unwrap_or(0);
        mb.acl = crate::mailstate::parse_acl(row["acl"].as_str().unwrap_or_default());
        mb.annotations = index_annotations(row["annotations"].as_str(), |e, u| {
            crate::mailstate::mailbox_annotation_key(e, u, owner)
        })?;
        by_id.insert(id, name);
    }
    let records = sqlite_json(
        index,
        "SELECT mm.mailbox_id, mm.uid, mm.flags, mm.internaldate, mm.expunged, mm.annotations, \
         m.size, m.guid FROM mailbox_message mm JOIN message m ON m.id = mm.message_id",
    )?;
    for row in &records {
        let Some(name) = by_id.get(&row["mailbox_id"].as_i64().unwrap_or(-1)) else {
            continue;
        };
        if row["expunged"].as_i64().unwrap_or(0) != 0 {
            continue;
        }
        let uid = u32::try_from(row["uid"].as_i64().unwrap_or(0)).unwrap_or(0);
        let Some(mb) = us.mailboxes.get_mut(name) else {
            continue;
        };
        let Some(m) = mb.messages.get_mut(&uid) else {
            return Err(CyrusError::Config(format!(
                "backup index has live record {name} UID {uid} that cyr_backup does not show"
            )));
        };
        if let Some(g) = row["guid"].as_str() {
            if g != m.guid {
                return Err(CyrusError::Config(format!(
                    "backup index GUID {g} != cyr_backup GUID {} for {name} UID {uid}",
                    m.guid
                )));
            }
        }
        m.flags = MessageState::normalize_flags(
            row["flags"]
                .as_str()
                .unwrap_or_default()
                .trim_matches(|c| c == '(' || c == ')')
                .split_whitespace()
                .map(str::to_string),
        );
        m.internaldate = row["internaldate"].as_i64().unwrap_or(0);
        m.size = u64::try_from(row["size"].as_i64().unwrap_or(0)).unwrap_or(0);
        m.annotations = index_annotations(row["annotations"].as_str(), |e, u| {
            crate::mailstate::message_annotation_key(e, u, owner)
        })?;
    }
    let subs = sqlite_json(index, "SELECT mboxname, unsubscribed FROM subscription")?;
    for row in &subs {
        if row["unsubscribed"].as_i64().unwrap_or(0) != 0 {
            continue;
        }
        if let Some(n) = row["mboxname"].as_str() {
            us.subscriptions.insert(n.to_string());
        }
    }
    Ok(us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cyr_backup_json_keeps_live_records_only() {
        let text = r#"reading backup...
[
  {"uniqueid": "u1", "mboxname": "user.a", "last_appenddate": "x",
   "messages": [{"uid": 1, "guid": "aa"}, {"uid": 2, "guid": "bb", "expunged": "2026"}]},
  {"uniqueid": "u2", "mboxname": "DELETED.user.a.T.123", "last_appenddate": "x"},
  {"uniqueid": "u3", "mboxname": "user.a.Empty", "last_appenddate": "x"}
]"#;
        let us = parse_cyr_backup_mailboxes(text).expect("parse");
        assert_eq!(
            us.mailboxes.keys().collect::<Vec<_>>(),
            ["user.a", "user.a.Empty"]
        );
        assert_eq!(
            us.deleted.keys().collect::<Vec<_>>(),
            ["DELETED.user.a.T.123"]
        );
        assert_eq!(us.deleted["DELETED.user.a.T.123"].messages, 0);
        let a = &us.mailboxes["user.a"];
        assert_eq!(a.uniqueid.as_deref(), Some("u1"));
        assert_eq!(a.messages.len(), 1);
        assert_eq!(a.messages[&1].guid, "aa");
    }

    /// A backup index as backupd lays it out (the columns read here), written
    /// with the `sqlite3` tool; `None` when it is missing and not required.
    fn index_file(dir: &Path, sql: &str) -> Option<std::path::PathBuf> {
        if !sqlite3_available() {
            let required = std::env::var("CI").is_ok_and(|v| v == "true")
                || std::env::var("BACKUPD_SIM_REQUIRE_CYRUS").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "sqlite3 is required here (make setup installs it)"
            );
            return None;
        }
        let path = dir.join("u.index");
        let schema = "CREATE TABLE mailbox(id INTEGER PRIMARY KEY, uniqueid CHAR UNIQUE NOT NULL, \
             mboxname CHAR NOT NULL, uidvalidity INTEGER, last_uid INTEGER, highestmodseq INTEGER, \
             deleted INTEGER, annotations CHAR, acl CHAR); \
             CREATE TABLE message(id INTEGER PRIMARY KEY, guid CHAR, size INTEGER); \
             CREATE TABLE mailbox_message(mailbox_id INTEGER, message_id INTEGER, uid INTEGER, \
             flags CHAR, internaldate INTEGER, expunged INTEGER, annotations CHAR); \
             CREATE TABLE subscription(mboxname CHAR, unsubscribed INTEGER);";
        let status = Command::new("sqlite3")
            .arg(&path)
            .arg(format!("{schema} {sql}"))
            .status()
            .expect("sqlite3");
        assert!(status.success());
        Some(path)
    }

    /// One name on a removed row and on a live one (a mailbox removed, then
    /// made again under its name): the live row is the mailbox, whichever
    /// comes first in the index; before December 2026 the removed row took
    /// the name away (the mailbox read as missing: a made-up loss), or the
    /// reader panicked.
    #[test]
    fn a_removed_row_does_not_hide_a_live_mailbox_of_its_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cyr = r#"[
  {"uniqueid": "old", "mboxname": "user.a.X", "last_appenddate": "x",
   "messages": [{"uid": 1, "guid": "g-old"}]},
  {"uniqueid": "new", "mboxname": "user.a.X", "last_appenddate": "x",
   "messages": [{"uid": 1, "guid": "g-new"}]}
]"#;
        for (old_id, new_id) in [(1, 2), (2, 1)] {
            let sub = dir.path().join(format!("{old_id}"));
            std::fs::create_dir_all(&sub).expect("dir");
            let Some(index) = index_file(
                &sub,
                &format!(
                    "INSERT INTO mailbox VALUES ({old_id}, 'old', 'user.a.X', 7, 1, 3, 1, '', ''); \
                     INSERT INTO mailbox VALUES ({new_id}, 'new', 'user.a.X', 9, 1, 4, 0, '', 'a\tlrs\t'); \
                     INSERT INTO message VALUES (1, 'g-old', 10); INSERT INTO message VALUES (2, 'g-new', 20); \
                     INSERT INTO mailbox_message VALUES ({old_id}, 1, 1, '()', 5, 0, ''); \
                     INSERT INTO mailbox_message VALUES ({new_id}, 2, 1, '(\\Seen)', 6, 0, '');"
                ),
            ) else {
                return;
            };
            let rows = parse_cyr_backup_rows(cyr).expect("rows");
            let us = state_from_index(rows, &index, "a").expect("state");
            let x = us.mailboxes.get("user.a.X").expect("the live mailbox");
            assert_eq!(x.uniqueid.as_deref(), Some("new"));
            assert_eq!((x.uidvalidity, x.highestmodseq), (9, 4));
            let m = &x.messages[&1];
            assert_eq!((m.guid.as_str(), m.size, m.internaldate), ("g-new", 20, 6));
            assert_eq!(m.flags, ["\\Seen"]);
        }
        // Without the index both rows look live: an error naming both, not
        // one of them picked.
        let e = parse_cyr_backup_mailboxes(cyr).expect_err("two live rows");
        assert!(
            e.to_string()
                .contains("two live mailboxes named user.a.X (uniqueids old and new)"),
            "{e}"
        );
    }

    #[test]
    fn index_annotations_are_read_from_dlist_text() {
        let text = "(%(ENTRY /comment USERID olga MODSEQ 16 VALUE \"priv note\") \
                    %(ENTRY /comment USERID \"\" MODSEQ 18 VALUE {5+}\r\nshare) \
                    %(ENTRY /vendor/cmu/cyrus-imapd/savedate USERID \"\" MODSEQ 0 VALUE 1796294874) \
                    %(ENTRY /comment USERID other MODSEQ 3 VALUE x))";
        let got = index_annotations(Some(text), |e, u| {
            crate::mailstate::message_annotation_key(e, u, "olga")
        })
        .expect("parse");
        assert_eq!(
            got,
            [
                ("/comment value.priv".to_string(), "priv note".to_string()),
                ("/comment value.shared".to_string(), "share".to_string()),
            ]
            .into()
        );
        assert!(index_annotations(None, |_, _| None)
            .expect("none")
            .is_empty());
        assert!(index_annotations(Some("(%(ENTRY x))"), |_, _| None).is_err());
    }
}
