//! [`Command::parse`]: one frame into a typed [`Command`], field by field, with
//! the [`ParseError`] backupd's own parser would give (`APPLY MAILBOX` is read
//! record by record, never as a whole tree first).

use bytes::Bytes;

use crate::dlist::{Parser, Value};
use crate::types::{Annotation, Name};

use super::{Apply, Command, Get, MailboxUpdate, ParseError, RecordUpdate, SeenUpdate};

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

pub(super) fn parse_mailbox(v: &Value) -> Result<MailboxUpdate, ParseError> {
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
