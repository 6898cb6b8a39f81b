//! [`Command`]: every command a 3.6.1 `sync_client` sends, as typed values.

use bytes::Bytes;

use crate::dlist::{DecodeError, File, Parser, Value};
use crate::types::{Annotation, Name};

use super::Reply;

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

/// A command that does not parse, and what backupd answers to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// `BAD Null command`.
    #[error("empty command")]
    NullCommand,
    /// `BAD Missing required argument to <Verb>`.
    #[error("`{verb}` needs an argument")]
    MissingArgument {
        /// Verb in backupd's case (`Get`, `Apply`).
        verb: &'static str,
    },
    /// `BAD Unexpected extra arguments to <Verb>`.
    #[error("unexpected extra arguments to `{verb}`")]
    ExtraArguments {
        /// Verb in backupd's case.
        verb: &'static str,
    },
    /// The dlist does not parse: `BAD IMAP_PROTOCOL_ERROR <detail>`.
    #[error("malformed {verb}: {source}")]
    Malformed {
        /// Verb in backupd's case.
        verb: &'static str,
        /// Where and what.
        source: DecodeError,
    },
    /// A field is missing or of the wrong type: backupd answers
    /// `NO IMAP_PROTOCOL_ERROR Protocol error` (its `Bad parameters` comes
    /// only from indexing an `APPLY MAILBOX`, checked after the lock).
    #[error("bad fields in `{key}`: {detail}")]
    BadFields {
        /// The item key.
        key: String,
        /// What is wrong.
        detail: String,
    },
}

impl ParseError {
    /// True for a GET or APPLY (backupd checks authentication before parsing
    /// their arguments).
    pub fn needs_auth(&self) -> bool {
        match self {
            ParseError::NullCommand => false,
            ParseError::MissingArgument { verb }
            | ParseError::ExtraArguments { verb }
            | ParseError::Malformed { verb, .. } => matches!(*verb, "Get" | "Apply"),
            ParseError::BadFields { .. } => true,
        }
    }

    /// The reply real backupd gives.
    pub fn reply(&self) -> Reply {
        match self {
            ParseError::NullCommand => Reply::Bad("Null command".into()),
            ParseError::MissingArgument { verb } => {
                Reply::Bad(format!("Missing required argument to {verb}"))
            }
            ParseError::ExtraArguments { verb } => {
                Reply::Bad(format!("Unexpected extra arguments to {verb}"))
            }
            // backupd says this when its dlist parse fails, whatever the cause.
            ParseError::Malformed { verb, .. } => {
                Reply::Bad(format!("Missing required argument to {verb}"))
            }
            ParseError::BadFields { .. } => Reply::protocol_error(),
        }
    }
}

fn bad(key: &str, detail: impl Into<String>) -> ParseError {
    ParseError::BadFields {
        key: key.to_owned(),
        detail: detail.into(),
    }
}

impl Command {
    /// Parse one frame (from [`crate::dlist::Framer`]).
    pub fn parse(frame: Bytes) -> Result<Command, ParseError> {
        let mut p = Parser::new(frame);
        let word = p.word();
        if word.is_empty() {
            return Err(ParseError::NullCommand);
        }
        let verb = String::from_utf8_lossy(&word).to_ascii_uppercase();
        let no_args = |p: &mut Parser, v: &'static str, c: Command| {
            if p.at_line_end() {
                Ok(c)
            } else {
                Err(ParseError::ExtraArguments { verb: v })
            }
        };
        match verb.as_str() {
            "NOOP" => no_args(&mut p, "Noop", Command::Noop),
            "EXIT" => no_args(&mut p, "Exit", Command::Exit),
            "RESTART" => no_args(&mut p, "Restart", Command::Restart),
            "STARTTLS" => no_args(&mut p, "Starttls", Command::Starttls),
            "AUTHENTICATE" => {
                if !p.space() {
                    return Err(ParseError::MissingArgument {
                        verb: "Authenticate",
                    });
                }
                let mech = String::from_utf8_lossy(&p.word()).to_ascii_uppercase();
                if mech.is_empty() {
                    return Err(ParseError::MissingArgument {
                        verb: "Authenticate",
                    });
                }
                let initial = if p.space() { Some(p.word()) } else { None };
                no_args(
                    &mut p,
                    "Authenticate",
                    Command::Authenticate { mech, initial },
                )
            }
            "COMPRESS" => {
                if !p.space() {
                    return Err(ParseError::MissingArgument { verb: "Compress" });
                }
                let algorithm = String::from_utf8_lossy(&p.word()).into_owned();
                no_args(&mut p, "Compress", Command::Compress { algorithm })
            }
            "GET" | "APPLY" => {
                let v: &'static str = if verb == "GET" { "Get" } else { "Apply" };
                if !p.space() || p.at_line_end() {
                    return Err(ParseError::MissingArgument { verb: v });
                }
                let malformed = |source| ParseError::Malformed { verb: v, source };
                let key = p.key().map_err(malformed)?.to_ascii_uppercase();
                if !p.space() {
                    return Err(ParseError::MissingArgument { verb: v });
                }
                if v == "Apply" && key == "MAILBOX" {
                    return parse_apply_mailbox(&mut p).map(Command::Apply);
                }
                let value = p.value(0).map_err(malformed)?;
                if !p.at_line_end() {
                    return Err(ParseError::ExtraArguments { verb: v });
                }
                if v == "Get" {
                    parse_get(key, value).map(Command::Get)
                } else {
                    parse_apply(key, value).map(Command::Apply)
                }
            }
            _ => {
                // `C01 CAPABILITY`: an IMAP probe has a tag, then a command.
                if p.space() {
                    let cmd = String::from_utf8_lossy(&p.word()).to_ascii_uppercase();
                    if matches!(cmd.as_str(), "CAPABILITY" | "LOGOUT") {
                        return Ok(Command::ImapProbe {
                            tag: String::from_utf8_lossy(&word).into_owned(),
                            command: cmd,
                        });
                    }
                }
                Ok(Command::Unknown {
                    verb: String::from_utf8_lossy(&word).into_owned(),
                })
            }
        }
    }
}

fn string(key: &str, v: &Value) -> Result<String, ParseError> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| bad(key, "expected a string"))
}

fn string_list(key: &str, v: Option<&Value>) -> Result<Vec<String>, ParseError> {
    let items = v
        .and_then(Value::as_list)
        .ok_or_else(|| bad(key, "expected a list"))?;
    items.iter().map(|i| string(key, i)).collect()
}

fn field<'a>(top: &str, kv: &'a Value, key: &str) -> Result<&'a Value, ParseError> {
    kv.get(key)
        .ok_or_else(|| bad(top, format!("missing {key}")))
}

fn field_str(top: &str, kv: &Value, key: &str) -> Result<String, ParseError> {
    string(top, field(top, kv, key)?)
}

fn field_num(top: &str, kv: &Value, key: &str) -> Result<u64, ParseError> {
    field(top, kv, key)?
        .as_u64()
        .ok_or_else(|| bad(top, format!("{key} is not a number")))
}

fn field_u32(top: &str, kv: &Value, key: &str) -> Result<u32, ParseError> {
    u32::try_from(field_num(top, kv, key)?).map_err(|_| bad(top, format!("{key} exceeds 32 bits")))
}

fn field_date(top: &str, kv: &Value, key: &str) -> Result<i64, ParseError> {
    i64::try_from(field_num(top, kv, key)?).map_err(|_| bad(top, format!("{key} is out of range")))
}

fn opt_num(kv: &Value, key: &str) -> Option<u64> {
    kv.get(key).and_then(Value::as_u64)
}

fn opt_u32(kv: &Value, key: &str) -> Option<u32> {
    opt_num(kv, key).and_then(|n| u32::try_from(n).ok())
}

fn opt_i64(kv: &Value, key: &str) -> Option<i64> {
    opt_num(kv, key).and_then(|n| i64::try_from(n).ok())
}

fn opt_str(kv: &Value, key: &str) -> Option<String> {
    kv.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn parse_get(key: String, v: Value) -> Result<Get, ParseError> {
    Ok(match key.as_str() {
        "USER" => match v {
            Value::Nil => Get::User(None),
            v => Get::User(Some(string(&key, &v)?)),
        },
        "MAILBOXES" => Get::Mailboxes(string_list(&key, Some(&v))?),
        "FULLMAILBOX" => Get::FullMailbox(string(&key, &v)?),
        "META" => Get::Meta(string(&key, &v)?),
        "UNIQUEIDS" => Get::UniqueIds,
        "QUOTA" => Get::Quota(string(&key, &v)?),
        _ => Get::Unsupported { key },
    })
}

fn parse_apply(key: String, v: Value) -> Result<Apply, ParseError> {
    let k = key.as_str();
    if k == "MESSAGE" {
        // The files are moved out of the list, not copied.
        let Value::List(items) = v else {
            return Err(bad(k, "expected a list"));
        };
        return Ok(Apply::Message(
            items
                .into_iter()
                .filter_map(|i| match i {
                    Value::File(f) => Some(*f),
                    _ => None,
                })
                .collect(),
        ));
    }
    Ok(match k {
        "RESERVE" => Apply::Reserve {
            partition: field_str(k, &v, "PARTITION")?,
            mailboxes: string_list(k, v.get("MBOXNAME"))?,
            guids: string_list(k, v.get("GUID"))?,
        },
        "MAILBOX" => Apply::Mailbox(Box::new(parse_mailbox(&v)?)),
        "UNMAILBOX" => Apply::Unmailbox(string(k, &v)?),
        "RENAME" => Apply::Rename {
            old: field_str(k, &v, "OLDMBOXNAME")?,
            new: field_str(k, &v, "NEWMBOXNAME")?,
            partition: field_str(k, &v, "PARTITION")?,
            uidvalidity: opt_u32(&v, "UIDVALIDITY"),
        },
        "SEEN" => Apply::Seen(SeenUpdate {
            user: field_str(k, &v, "USERID")?,
            uniqueid: field_str(k, &v, "UNIQUEID")?,
            lastread: field_date(k, &v, "LASTREAD")?,
            lastuid: field_u32(k, &v, "LASTUID")?,
            lastchange: field_date(k, &v, "LASTCHANGE")?,
            seenuids: field(k, &v, "SEENUIDS")?
                .as_bytes()
                .map(Bytes::copy_from_slice)
                .ok_or_else(|| bad(k, "SEENUIDS is not a string"))?,
        }),
        "SUB" | "UNSUB" => {
            let user = field_str(k, &v, "USERID")?;
            let mailbox = field_str(k, &v, "MBOXNAME")?;
            if k == "SUB" {
                Apply::Sub { user, mailbox }
            } else {
                Apply::Unsub { user, mailbox }
            }
        }
        "SIEVE" => Apply::Sieve {
            user: field_str(k, &v, "USERID")?,
            filename: field_str(k, &v, "FILENAME")?,
            last_update: field_date(k, &v, "LAST_UPDATE")?,
            content: field(k, &v, "CONTENT")?
                .as_bytes()
                .map(Bytes::copy_from_slice)
                .ok_or_else(|| bad(k, "CONTENT is not a string"))?,
        },
        "UNSIEVE" => Apply::Unsieve {
            user: field_str(k, &v, "USERID")?,
            filename: field_str(k, &v, "FILENAME")?,
        },
        "ACTIVATE_SIEVE" => Apply::ActivateSieve {
            user: field_str(k, &v, "USERID")?,
        },
        "UNACTIVATE_SIEVE" => Apply::UnactivateSieve {
            user: field_str(k, &v, "USERID")?,
        },
        "QUOTA" => Apply::Quota {
            root: field_str(k, &v, "ROOT")?,
            limits: v
                .as_kvlist()
                .into_iter()
                .flatten()
                .filter(|(key, _)| key.as_str() != "ROOT" && key.as_str() != "MODSEQ")
                .map(|(key, val)| {
                    val.as_u64()
                        .map(|n| (key.as_str().to_owned(), n))
                        .ok_or_else(|| bad(k, format!("{} is not a number", key.as_str())))
                })
                .collect::<Result<_, _>>()?,
            modseq: opt_num(&v, "MODSEQ").unwrap_or(0),
        },
        "UNQUOTA" => Apply::Unquota(string(k, &v)?),
        "UNUSER" => Apply::Unuser(string(k, &v)?),
        "CAPABILITIES" => Apply::Capabilities(string_list(k, Some(&v))?),
        "EXPUNGE" => Apply::Expunge {
            mailbox: field_str(k, &v, "MBOXNAME")?,
            uniqueid: field_str(k, &v, "UNIQUEID")?,
            uids: v
                .get("UID")
                .and_then(Value::as_list)
                .ok_or_else(|| bad(k, "UID is not a list"))?
                .iter()
                .map(|u| {
                    u.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| bad(k, "a UID is not a 32-bit number"))
                })
                .collect::<Result<_, _>>()?,
        },
        _ => Apply::Unsupported { key },
    })
}

/// `APPLY MAILBOX`, its RECORD list converted one record at a time as it is
/// decoded (the decoded tree of 10,000 records is never held at once). Same
/// answers as `parse_apply` on the whole value: decoding errors first, then
/// extra arguments, then the first bad record, then the other fields.
fn parse_apply_mailbox(p: &mut Parser) -> Result<Apply, ParseError> {
    let mut records = Vec::new();
    let mut first_bad = None;
    let mut names = super::direct::Names::default();
    let (value, streamed) = p
        .value_streaming_with(0, "RECORD", |p, depth| {
            if first_bad.is_none() {
                // The usual shape straight from the bytes; anything else the
                // general way (same result, see `direct`).
                if let Some((r, end)) = super::direct::record(p, depth, &mut names) {
                    records.push(r);
                    p.skip_to(end);
                    return Ok(());
                }
                match parse_record(&p.value(depth)?) {
                    Ok(r) => records.push(r),
                    Err(e) => first_bad = Some(e),
                }
            } else {
                p.value(depth)?;
            }
            Ok(())
        })
        .map_err(|source| ParseError::Malformed {
            verb: "Apply",
            source,
        })?;
    if !p.at_line_end() {
        return Err(ParseError::ExtraArguments { verb: "Apply" });
    }
    if let Some(e) = first_bad {
        return Err(e);
    }
    let mut update = parse_mailbox(&value)?;
    if streamed {
        update.records = Some(records);
    }
    Ok(Apply::Mailbox(Box::new(update)))
}

fn parse_annotations(top: &str, v: Option<&Value>) -> Result<Vec<Annotation>, ParseError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let items = v
        .as_list()
        .ok_or_else(|| bad(top, "ANNOTATIONS is not a list"))?;
    items
        .iter()
        .map(|a| {
            Ok(Annotation {
                entry: Name::new(&field_str(top, a, "ENTRY")?),
                userid: Name::new(&field_str(top, a, "USERID")?),
                modseq: field_num(top, a, "MODSEQ")?,
                value: match field(top, a, "VALUE")? {
                    Value::Atom(b) => b.clone(),
                    Value::Nil => Bytes::new(),
                    _ => return Err(bad(top, "annotation VALUE is not a string")),
                },
            })
        })
        .collect()
}

fn parse_mailbox(v: &Value) -> Result<MailboxUpdate, ParseError> {
    const K: &str = "MAILBOX";
    if v.as_kvlist().is_none() {
        return Err(bad(K, "expected a kvlist"));
    }
    let records = match v.get("RECORD") {
        None => None,
        Some(list) => {
            let items = list
                .as_list()
                .ok_or_else(|| bad(K, "RECORD is not a list"))?;
            Some(
                items
                    .iter()
                    .map(parse_record)
                    .collect::<Result<Vec<_>, _>>()?,
            )
        }
    };
    Ok(MailboxUpdate {
        uniqueid: field_str(K, v, "UNIQUEID")?,
        mboxname: field_str(K, v, "MBOXNAME")?,
        mboxtype: opt_str(v, "MBOXTYPE"),
        last_uid: opt_u32(v, "LAST_UID"),
        highestmodseq: opt_num(v, "HIGHESTMODSEQ"),
        recentuid: opt_u32(v, "RECENTUID"),
        recenttime: opt_i64(v, "RECENTTIME"),
        last_appenddate: opt_i64(v, "LAST_APPENDDATE"),
        pop3_last_login: opt_i64(v, "POP3_LAST_LOGIN"),
        pop3_show_after: opt_i64(v, "POP3_SHOW_AFTER"),
        uidvalidity: opt_u32(v, "UIDVALIDITY"),
        partition: opt_str(v, "PARTITION"),
        acl: v
            .get("ACL")
            .and_then(Value::as_bytes)
            .map(Bytes::copy_from_slice),
        options: opt_str(v, "OPTIONS"),
        sync_crc: opt_u32(v, "SYNC_CRC"),
        sync_crc_annot: opt_u32(v, "SYNC_CRC_ANNOT"),
        xconvmodseq: opt_num(v, "XCONVMODSEQ"),
        createdmodseq: opt_num(v, "CREATEDMODSEQ"),
        foldermodseq: opt_num(v, "FOLDERMODSEQ"),
        annotations: match v.get("ANNOTATIONS") {
            None => None,
            a => Some(parse_annotations(K, a)?),
        },
        records,
    })
}

pub(crate) fn parse_record(r: &Value) -> Result<RecordUpdate, ParseError> {
    const K: &str = "MAILBOX";
    let flags = r
        .get("FLAGS")
        .and_then(Value::as_list)
        .ok_or_else(|| bad(K, "record FLAGS is not a list"))?
        .iter()
        .map(|f| match f {
            Value::Flag(b) | Value::Atom(b) => Ok(String::from_utf8_lossy(b).into_owned()),
            _ => Err(bad(K, "a flag is not an atom")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let num32 = |key| -> Result<u32, ParseError> {
        u32::try_from(field_num(K, r, key)?).map_err(|_| bad(K, format!("{key} exceeds 32 bits")))
    };
    Ok(RecordUpdate {
        uid: num32("UID")?,
        modseq: field_num(K, r, "MODSEQ")?,
        last_updated: field_date(K, r, "LAST_UPDATED")?,
        flags,
        internaldate: field_date(K, r, "INTERNALDATE")?,
        size: field_num(K, r, "SIZE")?,
        guid: field_str(K, r, "GUID")?,
        annotations: parse_annotations(K, r.get("ANNOTATIONS"))?,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Command, ParseError> {
        Command::parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// APPLY MAILBOX decoded record by record answers exactly as decoding the
    /// whole value first, then converting it.
    #[test]
    fn apply_mailbox_streamed_answers_as_the_whole_tree() {
        let head = "UNIQUEID u1 MBOXNAME user.a LAST_UID 2 HIGHESTMODSEQ 3 RECENTUID 0 \
                    RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 7 \
                    PARTITION default ACL \"a\tlr\t\" OPTIONS P";
        let rec = |uid: &str| {
            format!(
                "%(UID {uid} MODSEQ 2 LAST_UPDATED 5 FLAGS (\\Seen $X) INTERNALDATE 5 SIZE 9 \
                 GUID 1637c8a9aaaaaaaaaaaaaaaaaaaaaaaaaaaa2b50 ANNOTATIONS (%(ENTRY /e USERID \"\" \
                 MODSEQ 0 VALUE 17)))"
            )
        };
        let cases = [
            format!("%({head} RECORD ({} {}))", rec("1"), rec("2")),
            format!("%({head} RECORD ())"),
            format!("%({head})"),
            format!("%({head} record ({}) RECORD (x))", rec("1")),
            format!("%({head} RECORD ({} {}))", rec("1"), rec("x")),
            format!("%({head} RECORD ({} x))", rec("1")),
            format!("%(RECORD ({}) {head})", rec("99999999999")),
            format!("%(RECORD x {head})"),
            format!("%(MBOXNAME m RECORD ({}))", rec("1")),
            format!("%({head} RECORD ({} %(UID", rec("1")),
            format!("%({head} RECORD ({})) extra", rec("x")),
            "(not a kvlist)".to_owned(),
        ];
        for value in cases {
            let frame = format!("APPLY MAILBOX {value}\r\n");
            let whole = (|| {
                let mut p = Parser::new(Bytes::copy_from_slice(frame.as_bytes()));
                p.word();
                p.space();
                p.key().unwrap();
                p.space();
                let malformed = |source| ParseError::Malformed {
                    verb: "Apply",
                    source,
                };
                let v = p.value(0).map_err(malformed)?;
                if !p.at_line_end() {
                    return Err(ParseError::ExtraArguments { verb: "Apply" });
                }
                parse_apply("MAILBOX".into(), v).map(Command::Apply)
            })();
            assert_eq!(parse(&frame), whole, "{frame}");
        }
    }

    #[test]
    fn simple_verbs_and_their_errors() {
        assert_eq!(parse("NOOP\r\n"), Ok(Command::Noop));
        assert_eq!(parse("exit\r\n"), Ok(Command::Exit));
        assert_eq!(
            parse("NOOP x\r\n").unwrap_err().reply().to_line(),
            "BAD Unexpected extra arguments to Noop"
        );
        assert_eq!(
            parse("\r\n").unwrap_err().reply().to_line(),
            "BAD Null command"
        );
        assert_eq!(
            parse("GET\r\n").unwrap_err().reply().to_line(),
            "BAD Missing required argument to Get"
        );
        assert_eq!(
            parse("FOO bar\r\n"),
            Ok(Command::Unknown { verb: "FOO".into() })
        );
        assert_eq!(
            parse("C01 CAPABILITY\r\n"),
            Ok(Command::ImapProbe {
                tag: "C01".into(),
                command: "CAPABILITY".into()
            })
        );
    }

    #[test]
    fn get_items() {
        assert_eq!(
            parse("GET USER alice\r\n"),
            Ok(Command::Get(Get::User(Some("alice".into()))))
        );
        assert_eq!(parse("GET USER NIL\r\n"), Ok(Command::Get(Get::User(None))));
        assert_eq!(
            parse("GET MAILBOXES (user.a user.a.Sent)\r\n"),
            Ok(Command::Get(Get::Mailboxes(vec![
                "user.a".into(),
                "user.a.Sent".into()
            ])))
        );
        assert_eq!(
            parse("GET FETCH %(X 1)\r\n"),
            Ok(Command::Get(Get::Unsupported {
                key: "FETCH".into()
            }))
        );
    }

    #[test]
    fn authenticate() {
        assert_eq!(
            parse("AUTHENTICATE PLAIN AHJlcGx1c2VyAGxhYg==\r\n"),
            Ok(Command::Authenticate {
                mech: "PLAIN".into(),
                initial: Some(Bytes::from_static(b"AHJlcGx1c2VyAGxhYg=="))
            })
        );
    }
}
