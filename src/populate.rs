//! Deterministic mail for the source instance: users, folders, messages and the
//! usual changes (flags, expunges, a rename, a delete, subscriptions), all made
//! over IMAP as the owning user, all drawn from one [`Rng`].

use crate::cyrus::{CyrusError, ImapClient, SourceInstance};
use crate::rng::Rng;

/// Real messages shipped in `fixtures/mail/`: 8-bit text, multipart, and
/// dlist-special characters in headers and body.
pub const FIXTURE_MESSAGES: [&[u8]; 3] = [
    include_bytes!("../fixtures/mail/plain-8bit.eml"),
    include_bytes!("../fixtures/mail/multipart.eml"),
    include_bytes!("../fixtures/mail/specials.eml"),
];

/// Names of [`FIXTURE_MESSAGES`], as scenarios refer to them.
pub const FIXTURE_NAMES: [&str; 3] = ["plain-8bit.eml", "multipart.eml", "specials.eml"];

/// A fixture message by file name.
pub fn fixture(name: &str) -> Option<&'static [u8]> {
    FIXTURE_NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| FIXTURE_MESSAGES[i])
}

const FLAGS: [&str; 5] = ["\\Seen", "\\Flagged", "\\Answered", "\\Draft", "$Label1"];

/// 2026-01-01T00:00:00Z, the base of generated INTERNALDATEs.
const EPOCH_2026: i64 = 1_767_225_600;

/// A generated message: unique headers, a body of `extra` filler bytes.
pub fn message(tag: &str, i: usize, extra: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Sim Sender <sender@sim.test>\r\nTo: someone@sim.test\r\nSubject: {tag} {i}\r\n\
         Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <{tag}-{i}@sim.test>\r\n\r\n\
         Message {i} of {tag}.\r\n"
    )
    .into_bytes();
    for _ in 0..extra / 64 {
        m.extend_from_slice(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\r\n");
    }
    m
}

/// What [`fill_user`] made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FillSummary {
    /// Folders created (user view names), the renamed and deleted ones included.
    pub folders: usize,
    /// Messages appended.
    pub appended: usize,
    /// Messages expunged.
    pub expunged: usize,
}

/// Create `user` and give it `messages` messages over six folders, then change
/// flags, expunge, rename a folder, delete a folder, subscribe and unsubscribe.
pub fn fill_user(
    source: &SourceInstance,
    user: &str,
    messages: usize,
    rng: &mut Rng,
) -> Result<FillSummary, CyrusError> {
    source.create_user(user)?;
    let mut c = source.login_as(user)?;
    let folders = [
        "INBOX",
        "INBOX.Sent",
        "INBOX.Work",
        "INBOX.Work.Projects",
        "INBOX.Archive",
        "INBOX.Trash",
    ];
    for f in &folders[1..] {
        c.create(f)?;
    }
    let mut summary = FillSummary {
        folders: folders.len(),
        ..FillSummary::default()
    };
    for i in 0..messages {
        // The first messages go to INBOX so the changes below always have targets.
        let folder = if i < 8 { "INBOX" } else { *rng.pick(&folders) };
        append_random(&mut c, folder, user, i, rng)?;
        summary.appended += 1;
    }
    c.select("INBOX")?;
    c.uid_store("1:4", "+FLAGS", &["\\Flagged"])?;
    c.uid_store("2", "-FLAGS", &["\\Seen"])?;
    c.uid_store("3,6", "+FLAGS", &["\\Deleted"])?;
    c.expunge()?;
    summary.expunged += 2;
    c.rename("INBOX.Archive", "INBOX.Archive2025")?;
    c.delete("INBOX.Trash")?;
    for f in [
        "INBOX",
        "INBOX.Sent",
        "INBOX.Work",
        "INBOX.Archive2025",
        "INBOX.Work.Projects",
    ] {
        c.subscribe(f)?;
    }
    c.unsubscribe("INBOX.Work.Projects")?;
    c.logout()?;
    Ok(summary)
}

/// A second round of changes on an existing user: new messages in two folders,
/// flag changes, an expunge, a new subscribed folder.
pub fn more_changes(source: &SourceInstance, user: &str, rng: &mut Rng) -> Result<(), CyrusError> {
    let mut c = source.login_as(user)?;
    for i in 0..10 {
        let folder = if i % 2 == 0 { "INBOX" } else { "INBOX.Sent" };
        append_random(&mut c, folder, &format!("{user}-more"), i, rng)?;
    }
    c.select("INBOX")?;
    c.uid_store("1", "+FLAGS", &["\\Answered", "$Label1"])?;
    c.uid_store("2", "+FLAGS", &["\\Seen"])?;
    c.select("INBOX.Sent")?;
    c.uid_store("1", "+FLAGS", &["\\Deleted"])?;
    c.expunge()?;
    c.create("INBOX.New")?;
    for i in 0..3 {
        append_random(&mut c, "INBOX.New", &format!("{user}-new"), i, rng)?;
    }
    c.subscribe("INBOX.New")?;
    c.logout()
}

/// Append one message (every 10th a fixture) with random flags and date.
pub fn append_random(
    c: &mut ImapClient,
    folder: &str,
    tag: &str,
    i: usize,
    rng: &mut Rng,
) -> Result<Option<u32>, CyrusError> {
    let body = if i % 10 == 9 {
        FIXTURE_MESSAGES[(i / 10) % FIXTURE_MESSAGES.len()].to_vec()
    } else {
        message(tag, i, rng.below(2048) as usize)
    };
    let flags: Vec<&str> = FLAGS.iter().copied().filter(|_| rng.chance(0.25)).collect();
    let date = EPOCH_2026 + (i as i64) * 3600 + rng.below(3600) as i64;
    c.append(folder, &flags, Some(date), &body)
}
