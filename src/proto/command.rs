//! [`Command`]: every command a 3.6.1 `sync_client` sends, as typed values.

use bytes::Bytes;

use crate::dlist::{File, Value};
use crate::types::Annotation;

use super::parse::parse_mailbox;
use super::ParseError;

/// One client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `AUTHENTICATE mech [initial-response]`.
    Authenticate {
        /// Mechanism name, upper-cased.
        mech: String,
        /// The base64 initial response as sent (`=` for an empty one).
        initial: Option<Bytes>,
    },
    /// `COMPRESS algorithm`.
    Compress {
        /// Algorithm name as sent (`DEFLATE`).
        algorithm: String,
    },
    /// `STARTTLS` (backupd never implements it).
    Starttls,
    /// `NOOP`.
    Noop,
    /// `RESTART`: close every backup this session holds.
    Restart,
    /// `EXIT`.
    Exit,
    /// `GET <item>`.
    Get(Get),
    /// `APPLY <item>`.
    Apply(Apply),
    /// A tagged IMAP command (`C01 CAPABILITY`, `Q01 LOGOUT`): the client's
    /// `sync_try_imap` probe.
    ImapProbe {
        /// The tag.
        tag: String,
        /// The command word, upper-cased.
        command: String,
    },
    /// Any other verb.
    Unknown {
        /// The verb as sent.
        verb: String,
    },
}

/// `GET` items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Get {
    /// `GET USER userid`; `None` for `GET USER NIL`.
    User(Option<String>),
    /// `GET MAILBOXES (name …)`.
    Mailboxes(Vec<String>),
    /// `GET FULLMAILBOX name`.
    FullMailbox(String),
    /// `GET META userid`.
    Meta(String),
    /// `GET UNIQUEIDS …` (answered OK with no data).
    UniqueIds,
    /// `GET QUOTA root` (sync_server only; backupd refuses it).
    Quota(String),
    /// A GET backupd does not serve (`ANNOTATION`, `FETCH`, `QUOTA`, `FETCH_SIEVE`).
    Unsupported {
        /// The item key.
        key: String,
    },
}

/// `APPLY` items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Apply {
    /// `APPLY RESERVE %(PARTITION p MBOXNAME (…) GUID (…))`.
    Reserve {
        /// Replica partition.
        partition: String,
        /// Replica mailbox names.
        mailboxes: Vec<String>,
        /// GUIDs the client may upload.
        guids: Vec<String>,
    },
    /// `APPLY MESSAGE (%{…} …)`: message bodies. Items that are not files
    /// (the client prints `NIL` for a body it cannot read) are dropped.
    Message(Vec<File>),
    /// `APPLY MAILBOX %(…)`.
    Mailbox(Box<MailboxUpdate>),
    /// `APPLY UNMAILBOX name`.
    Unmailbox(String),
    /// `APPLY RENAME %(OLDMBOXNAME NEWMBOXNAME PARTITION UIDVALIDITY)`.
    Rename {
        /// Old internal name.
        old: String,
        /// New internal name.
        new: String,
        /// Partition.
        partition: String,
        /// New UIDVALIDITY, when sent.
        uidvalidity: Option<u32>,
    },
    /// `APPLY SEEN %(…)`.
    Seen(SeenUpdate),
    /// `APPLY SUB %(USERID MBOXNAME)`.
    Sub {
        /// Userid.
        user: String,
        /// Internal mailbox name.
        mailbox: String,
    },
    /// `APPLY UNSUB %(USERID MBOXNAME)`.
    Unsub {
        /// Userid.
        user: String,
        /// Internal mailbox name.
        mailbox: String,
    },
    /// `APPLY SIEVE %(USERID FILENAME LAST_UPDATE CONTENT)`.
    Sieve {
        /// Userid.
        user: String,
        /// Script file name.
        filename: String,
        /// Unix seconds.
        last_update: i64,
        /// Script bytes.
        content: Bytes,
    },
    /// `APPLY UNSIEVE %(USERID FILENAME)`.
    Unsieve {
        /// Userid.
        user: String,
        /// Script file name.
        filename: String,
    },
    /// `APPLY ACTIVATE_SIEVE %(USERID FILENAME)` (ignored by backupd).
    ActivateSieve {
        /// Userid.
        user: String,
    },
    /// `APPLY UNACTIVATE_SIEVE %(USERID)` (ignored by backupd).
    UnactivateSieve {
        /// Userid.
        user: String,
    },
    /// `APPLY QUOTA %(ROOT … LIMIT n STORAGE n MESSAGE n … MODSEQ n)` (ignored
    /// by backupd; sync_server stores it).
    Quota {
        /// Quota root.
        root: String,
        /// Every other numeric field but MODSEQ, in wire order (`LIMIT` is the
        /// legacy copy of `STORAGE`).
        limits: Vec<(String, u64)>,
        /// MODSEQ (0 when absent).
        modseq: u64,
    },
    /// `APPLY UNQUOTA root` (sync_server removes the quota; backupd refuses it).
    Unquota(String),
    /// `APPLY UNUSER userid` (ignored by backupd).
    Unuser(String),
    /// `APPLY CAPABILITIES (name …)`: sent only to a server that advertised
    /// `SIEVE-MAILBOX` (sync_server); backupd refuses it.
    Capabilities(Vec<String>),
    /// `APPLY EXPUNGE %(MBOXNAME UNIQUEID UID (…))`: the client's full-update
    /// cleanup; sync_server expunges, backupd refuses it.
    Expunge {
        /// Internal mailbox name.
        mailbox: String,
        /// The mailbox's uniqueid (must match).
        uniqueid: String,
        /// UIDs to expunge.
        uids: Vec<u32>,
    },
    /// An APPLY backupd does not serve (`UNQUOTA`, `ANNOTATION`,
    /// `UNANNOTATION`, `LOCAL_*`, `FORCE`).
    Unsupported {
        /// The item key.
        key: String,
    },
}

/// The fields of `APPLY MAILBOX`. Fields backupd requires are `Option` here so
/// that a missing one is answered after the owner's lock is taken, as backupd
/// does ([`MailboxUpdate::missing_required`]).
#[allow(missing_docs)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxUpdate {
    pub uniqueid: String,
    pub mboxname: String,
    pub mboxtype: Option<String>,
    pub last_uid: Option<u32>,
    pub highestmodseq: Option<u64>,
    pub recentuid: Option<u32>,
    pub recenttime: Option<i64>,
    pub last_appenddate: Option<i64>,
    pub pop3_last_login: Option<i64>,
    pub pop3_show_after: Option<i64>,
    pub uidvalidity: Option<u32>,
    pub partition: Option<String>,
    pub acl: Option<Bytes>,
    pub options: Option<String>,
    pub sync_crc: Option<u32>,
    pub sync_crc_annot: Option<u32>,
    pub xconvmodseq: Option<u64>,
    /// CREATEDMODSEQ and FOLDERMODSEQ: ignored by backupd, echoed by sync_server.
    pub createdmodseq: Option<u64>,
    pub foldermodseq: Option<u64>,
    pub annotations: Option<Vec<Annotation>>,
    /// `None` when the RECORD key is absent (an "intermediate" mailbox).
    pub records: Option<Vec<RecordUpdate>>,
}

impl MailboxUpdate {
    /// Read a `%(UNIQUEID … MBOXNAME …)` kvlist: an `APPLY MAILBOX` item, or a
    /// `* MAILBOX` item a server answers a GET with.
    pub fn from_value(v: &Value) -> Result<MailboxUpdate, ParseError> {
        parse_mailbox(v)
    }

    /// The first field backupd requires that is missing or malformed
    /// (`backup/lcb_indexw.c` at 3.6.1), answered with `Bad parameters`.
    pub fn missing_required(&self) -> Option<&'static str> {
        let checks: [(&'static str, bool); 11] = [
            ("LAST_UID", self.last_uid.is_some()),
            ("HIGHESTMODSEQ", self.highestmodseq.is_some()),
            ("RECENTUID", self.recentuid.is_some()),
            ("RECENTTIME", self.recenttime.is_some()),
            ("LAST_APPENDDATE", self.last_appenddate.is_some()),
            ("POP3_LAST_LOGIN", self.pop3_last_login.is_some()),
            ("UIDVALIDITY", self.uidvalidity.is_some()),
            ("PARTITION", self.partition.is_some()),
            ("ACL", self.acl.is_some()),
            ("OPTIONS", self.options.is_some()),
            ("RECORD", self.records.is_some()),
        ];
        checks.iter().find(|(_, ok)| !ok).map(|(k, _)| *k)
    }
}

/// One `RECORD` item of `APPLY MAILBOX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordUpdate {
    /// UID.
    pub uid: u32,
    /// MODSEQ.
    pub modseq: u64,
    /// LAST_UPDATED, Unix seconds.
    pub last_updated: i64,
    /// FLAGS in wire order, `\Expunged` included when sent.
    pub flags: Vec<String>,
    /// INTERNALDATE, Unix seconds.
    pub internaldate: i64,
    /// SIZE.
    pub size: u64,
    /// GUID (40 hex).
    pub guid: String,
    /// Per-record annotations, verbatim.
    pub annotations: Vec<Annotation>,
}

/// `APPLY SEEN` fields.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenUpdate {
    pub user: String,
    pub uniqueid: String,
    pub lastread: i64,
    pub lastuid: u32,
    pub lastchange: i64,
    pub seenuids: Bytes,
}

impl Command {
    /// A short name for logs and counters: `GET USER`, `APPLY MESSAGE`, `EXIT`.
    pub fn label(&self) -> String {
        match self {
            Command::Authenticate { .. } => "AUTHENTICATE".into(),
            Command::Compress { .. } => "COMPRESS".into(),
            Command::Starttls => "STARTTLS".into(),
            Command::Noop => "NOOP".into(),
            Command::Restart => "RESTART".into(),
            Command::Exit => "EXIT".into(),
            Command::ImapProbe { command, .. } => format!("IMAP {command}"),
            Command::Unknown { verb } => format!("UNKNOWN {verb}"),
            Command::Get(g) => format!(
                "GET {}",
                match g {
                    Get::User(_) => "USER",
                    Get::Mailboxes(_) => "MAILBOXES",
                    Get::FullMailbox(_) => "FULLMAILBOX",
                    Get::Meta(_) => "META",
                    Get::UniqueIds => "UNIQUEIDS",
                    Get::Quota(_) => "QUOTA",
                    Get::Unsupported { key } => key,
                }
            ),
            Command::Apply(a) => format!(
                "APPLY {}",
                match a {
                    Apply::Reserve { .. } => "RESERVE",
                    Apply::Message(_) => "MESSAGE",
                    Apply::Mailbox(_) => "MAILBOX",
                    Apply::Unmailbox(_) => "UNMAILBOX",
                    Apply::Rename { .. } => "RENAME",
                    Apply::Seen(_) => "SEEN",
                    Apply::Sub { .. } => "SUB",
                    Apply::Unsub { .. } => "UNSUB",
                    Apply::Sieve { .. } => "SIEVE",
                    Apply::Unsieve { .. } => "UNSIEVE",
                    Apply::ActivateSieve { .. } => "ACTIVATE_SIEVE",
                    Apply::UnactivateSieve { .. } => "UNACTIVATE_SIEVE",
                    Apply::Quota { .. } => "QUOTA",
                    Apply::Unquota(_) => "UNQUOTA",
                    Apply::Unuser(_) => "UNUSER",
                    Apply::Capabilities(_) => "CAPABILITIES",
                    Apply::Expunge { .. } => "EXPUNGE",
                    Apply::Unsupported { key } => key,
                }
            ),
        }
    }

    /// The mailboxes a command names (internal names), in wire order.
    pub fn mailboxes(&self) -> Vec<&str> {
        match self {
            Command::Get(Get::Mailboxes(list)) => list.iter().map(String::as_str).collect(),
            Command::Get(Get::FullMailbox(m))
            | Command::Apply(Apply::Unmailbox(m) | Apply::Expunge { mailbox: m, .. }) => vec![m],
            Command::Apply(Apply::Reserve { mailboxes, .. }) => {
                mailboxes.iter().map(String::as_str).collect()
            }
            Command::Apply(Apply::Mailbox(u)) => vec![&u.mboxname],
            Command::Apply(Apply::Rename { old, new, .. }) => vec![old, new],
            Command::Apply(Apply::Sub { mailbox, .. } | Apply::Unsub { mailbox, .. }) => {
                vec![mailbox]
            }
            _ => Vec::new(),
        }
    }

    /// The users a command touches: named directly (`GET USER alice`,
    /// `USERID alice`) or as owners of the mailboxes it names.
    pub fn users(&self) -> Vec<String> {
        let direct: Option<&str> = match self {
            Command::Get(Get::User(Some(u)) | Get::Meta(u)) => Some(u),
            Command::Apply(
                Apply::Sub { user, .. }
                | Apply::Unsub { user, .. }
                | Apply::Sieve { user, .. }
                | Apply::Unsieve { user, .. }
                | Apply::ActivateSieve { user }
                | Apply::UnactivateSieve { user },
            ) => Some(user),
            Command::Apply(Apply::Seen(s)) => Some(&s.user),
            Command::Apply(Apply::Unuser(u)) => Some(u),
            _ => None,
        };
        let mut out: Vec<String> = direct.into_iter().map(str::to_owned).collect();
        for m in self.mailboxes() {
            let owner = crate::types::names::backup_of(m);
            if !out.contains(&owner) {
                out.push(owner);
            }
        }
        out
    }
}
