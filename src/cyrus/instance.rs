//! A real, throwaway Cyrus "source" instance (`master` + `imapd`, `sync_log` on)
//! living entirely inside a caller-owned directory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Uid};
use sha1::{Digest, Sha1};

use super::config::{self, ImapdConf};
use super::imap::ImapClient;
use super::master::{self, Master, Probe};
use super::process;
use super::{CyrusBins, CyrusError};
use crate::mailstate::{MailState, MailboxState, MessageState, UserState};

type Result<T> = std::result::Result<T, CyrusError>;

/// Timeout of each IMAP socket operation.
const IMAP_TIMEOUT: Duration = Duration::from_secs(30);
/// Any password works (`sasl_pwcheck_method: alwaystrue`).
const PASSWORD: &str = "backupd-sim";

/// One `sync_log` channel of the source (a replication target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Channel name, e.g. `backup` (letters, digits, `_` and `-`).
    pub name: String,
    pub host: String,
    pub port: u16,
    pub authname: String,
    pub password: String,
    pub repeat_interval_secs: u32,
    pub sync_timeout_secs: Option<u32>,
    /// `sync_batchsize`: the most messages one mailbox update uploads; more
    /// make the client send a partial state first (`docs/sync-protocol.md`).
    /// A global option (3.6.1 reads no channel form), written with the channel.
    pub batchsize: Option<u32>,
    /// `<ch>_sync_try_imap`; keep it off against backupd
    /// (`docs/cyrus-lab-report.md` §2, gotcha 5: backupd's `BAD` costs the client a 10 s stall).
    pub try_imap: bool,
}

impl Channel {
    /// A channel to `127.0.0.1:port` as `repluser`, repeat interval 1 s, no try_imap.
    pub fn new(name: impl Into<String>, port: u16) -> Channel {
        Channel {
            name: name.into(),
            host: "127.0.0.1".into(),
            port,
            authname: "repluser".into(),
            password: "lab".into(),
            repeat_interval_secs: 1,
            sync_timeout_secs: None,
            batchsize: None,
            try_imap: false,
        }
    }
}

/// What [`SourceInstance::start`] needs.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    pub bins: CyrusBins,
    /// The sandbox directory; created if missing, chowned to `cyrus:mail`.
    pub root: PathBuf,
    pub channels: Vec<Channel>,
    pub start_timeout: Duration,
    /// Write the rolling replication log (`sync_log: 1`) for the channels.
    pub sync_log: bool,
}

impl SourceOptions {
    /// No channels, 30 s start timeout.
    pub fn new(bins: CyrusBins, root: impl Into<PathBuf>) -> SourceOptions {
        SourceOptions {
            bins,
            root: root.into(),
            channels: Vec::new(),
            start_timeout: Duration::from_secs(30),
            sync_log: true,
        }
    }
}

/// A running Cyrus source. Stopped (by PID) on [`SourceInstance::stop`] or drop.
#[derive(Debug)]
pub struct SourceInstance {
    root: PathBuf,
    config_path: PathBuf,
    addr: SocketAddr,
    master: Master,
}

/// The Cyrus internal name of `user`'s INBOX (`alice` -> `user.alice`; a `.` in a
/// userid is stored as `^` with `unixhierarchysep: no`).
pub fn user_inbox(user: &str) -> String {
    format!("user.{}", user.replace('.', "^"))
}

/// `user`'s own IMAP view -> internal name: `INBOX` -> `user.alice`,
/// `INBOX.X.Y` -> `user.alice.X.Y`; anything else (`user.bob.X`) is kept as is.
pub fn to_internal_name(user: &str, name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        return user_inbox(user);
    }
    match name.get(..6) {
        Some(prefix) if prefix.eq_ignore_ascii_case("INBOX.") => {
            format!("{}.{}", user_inbox(user), &name[6..])
        }
        _ => name.to_string(),
    }
}

/// Internal name -> `user`'s own IMAP view (inverse of [`to_internal_name`]).
pub fn to_user_view_name(user: &str, internal: &str) -> String {
    let inbox = user_inbox(user);
    if internal == inbox {
        return "INBOX".into();
    }
    match internal
        .strip_prefix(&inbox)
        .and_then(|r| r.strip_prefix('.'))
    {
        Some(rest) => format!("INBOX.{rest}"),
        None => internal.to_string(),
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CyrusError {
    CyrusError::io(context)
}

fn validate(opts: &SourceOptions) -> Result<()> {
    let simple = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    };
    if !opts.root.is_absolute() {
        return Err(CyrusError::Config(format!(
            "root `{}` must be an absolute path",
            opts.root.display()
        )));
    }
    if opts
        .root
        .to_str()
        .is_none_or(|s| s.contains(|c: char| c.is_whitespace() || c == '"'))
    {
        return Err(CyrusError::Config(format!(
            "root `{}` must be valid UTF-8 without spaces or quotes (it goes into cyrus.conf)",
            opts.root.display()
        )));
    }
    let mut names = Vec::new();
    for ch in &opts.channels {
        if !ch
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || ch.name.is_empty()
            || names.contains(&&ch.name)
        {
            return Err(CyrusError::Config(format!(
                "channel name `{}` must be unique, non-empty, letters, digits or `_`",
                ch.name
            )));
        }
        names.push(&ch.name);
        for (what, v) in [
            ("host", &ch.host),
            ("authname", &ch.authname),
            ("password", &ch.password),
        ] {
            if !simple(v) {
                return Err(CyrusError::Config(format!(
                    "channel `{}`: {what} must be non-empty letters, digits, `_`, `-` or `.`",
                    ch.name
                )));
            }
        }
    }
    Ok(())
}

/// Every ancestor of `root` must be searchable by the cyrus user (inside a
/// chroot only those below it: path lookup starts at the chroot).
fn check_traversable(root: &Path, chroot: Option<&Path>, uid: Uid, gid: Gid) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    for dir in root
        .ancestors()
        .skip(1)
        .take_while(|d| chroot.is_none_or(|c| d.starts_with(c) && *d != c))
    {
        let Ok(meta) = fs::metadata(dir) else {
            continue;
        };
        let mode = meta.mode();
        let ok = mode & 0o001 != 0
            || (meta.uid() == uid.as_raw() && mode & 0o100 != 0)
            || (meta.gid() == gid.as_raw() && mode & 0o010 != 0);
        if !ok {
            return Err(CyrusError::Config(format!(
                "user `cyrus` cannot enter `{}` (mode {:o}), a parent of the instance root; \
                 use a root under /tmp or `chmod o+x` it",
                dir.display(),
                mode & 0o7777
            )));
        }
    }
    Ok(())
}

impl SourceInstance {
    /// Create the configuration under `opts.root` and start master; returns once the
    /// IMAP port greets. On failure nothing is left running.
    pub fn start(opts: &SourceOptions) -> Result<SourceInstance> {
        validate(opts)?;
        let root = opts.root.clone();
        // The installation's own `cyrus` uid (a chroot has its own passwd).
        let (uid, gid) = opts.bins.cyrus_ids()?;
        // A chroot'd Cyrus only reaches paths below the chroot.
        opts.bins.inside(&root)?;
        config::make_dirs(&root, &["log"])?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755))
            .map_err(io(format!("chmod `{}`", root.display())))?;
        check_traversable(&root, opts.bins.chroot(), uid, gid)?;

        let deadline = Instant::now() + opts.start_timeout;
        master::start_retrying_ports(
            &root,
            deadline,
            || {
                let port = process::free_port().map_err(io("finding a free port on 127.0.0.1"))?;
                Self::launch(opts, port, uid, gid)
            },
            |inst| {
                let servername = Self::servername(inst.addr.port());
                let addr = inst.addr;
                inst.master
                    .wait_ready(deadline, "imap", &servername, &[(addr, Probe::Imap)])
            },
            |inst| &mut inst.master,
        )
    }

    fn servername(port: u16) -> String {
        format!("src-{port}.backupd-sim.test")
    }

    /// Write the configs for `port` and spawn master (foreground, so we own its PID).
    fn launch(opts: &SourceOptions, port: u16, uid: Uid, gid: Gid) -> Result<SourceInstance> {
        let root = &opts.root;
        let conf = root.join("etc/imapd.conf");
        // Every path Cyrus reads is the path it sees (inside a chroot: below it).
        let inside = |p: &Path| opts.bins.inside(p);
        let inside_root = inside(root)?;
        let inside_conf = inside(&conf)?;
        let r = inside_root.display().to_string();
        let servername = Self::servername(port);
        let mut imapd = ImapdConf {
            note: "",
            root: &r,
            servername: &servername,
            syslog: "src",
            admin: "repluser",
        }
        .render();
        if opts.sync_log && !opts.channels.is_empty() {
            let names: Vec<&str> = opts.channels.iter().map(|c| c.name.as_str()).collect();
            let _ = writeln!(imapd, "sync_log: 1\nsync_log_channels: {}", names.join(" "));
        }
        for ch in &opts.channels {
            let n = &ch.name;
            let _ = write!(
                imapd,
                "{n}_sync_host: {}\n{n}_sync_port: {}\n{n}_sync_authname: {}\n\
                 {n}_sync_password: {}\n{n}_sync_try_imap: {}\n{n}_sync_repeat_interval: {}\n",
                ch.host,
                ch.port,
                ch.authname,
                ch.password,
                u8::from(ch.try_imap),
                ch.repeat_interval_secs
            );
            if let Some(t) = ch.sync_timeout_secs {
                // 3.6.1 reads the global option too; set both.
                let _ = writeln!(imapd, "{n}_sync_timeout: {t}\nsync_timeout: {t}");
            }
            if let Some(b) = ch.batchsize {
                let _ = writeln!(imapd, "sync_batchsize: {b}");
            }
        }
        let bin = |name: &str| opts.bins.path(name).display().to_string();
        let c = inside_conf.display().to_string();
        let cyrus_conf = config::cyrus_conf(
            &bin("ctl_cyrusdb"),
            &c,
            &config::service("imap", &bin("imapd"), &c, port),
        );
        let files = master::prepare_files(root, &conf, &imapd, &cyrus_conf, uid, gid)?;
        let master = master::start(&opts.bins, root, &inside_conf, files)?;
        Ok(SourceInstance {
            root: root.clone(),
            config_path: conf,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            master,
        })
    }

    /// Stop master (SIGTERM, then SIGKILL after 10 s) and any of its children still
    /// alive, by PID only. Idempotent.
    pub fn stop(&mut self) -> Result<()> {
        self.master.stop()
    }

    /// Whether master is still running.
    pub fn is_running(&mut self) -> bool {
        self.master.is_running()
    }

    /// The master PID.
    pub fn master_pid(&self) -> i32 {
        self.master.pid()
    }

    /// Master and every descendant seen so far (including now): for leak checks.
    pub fn pids(&mut self) -> Vec<i32> {
        self.master.pids()
    }

    pub fn imap_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `<root>/etc/imapd.conf`: pass it to every Cyrus tool with `-C`.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// master's stdout/stderr (Cyrus logs to syslog, so this is usually quiet).
    pub fn master_log_path(&self) -> PathBuf {
        self.root.join("master.log")
    }

    /// `<configdirectory>/sync/<channel>/log`, the rolling replication log.
    pub fn sync_log_path(&self, channel: &str) -> PathBuf {
        self.root.join("conf/sync").join(channel).join("log")
    }

    /// `<configdirectory>/sync/<channel>/log-run`, the log being processed.
    pub fn sync_log_run_path(&self, channel: &str) -> PathBuf {
        self.root.join("conf/sync").join(channel).join("log-run")
    }

    /// A connection logged in as `user` (any password works).
    pub fn login_as(&self, user: &str) -> Result<ImapClient> {
        let mut client = ImapClient::connect(self.addr, IMAP_TIMEOUT)?;
        client.login(user, PASSWORD)?;
        Ok(client)
    }

    /// A connection logged in as the admin `admin`.
    pub fn admin(&self) -> Result<ImapClient> {
        self.login_as("admin")
    }

    /// Create `user`'s INBOX (`CREATE user.<name>` as admin).
    pub fn create_user(&self, user: &str) -> Result<()> {
        let mut admin = self.admin()?;
        admin.create(&user_inbox(user))?;
        admin.logout()
    }

    /// Read each user's mailboxes, messages and subscriptions, logged in as that user
    /// (so `\Seen` is the owner's). Read-only: EXAMINE and `BODY.PEEK[]`.
    pub fn read_state(&self, users: &[&str]) -> Result<MailState> {
        read_state_imap(self.addr, users)
    }
}

impl Drop for SourceInstance {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Read each user's own mailboxes over IMAP at `addr`, logging in as that user
/// (Cyrus keeps `\Seen` per owner) and only examining (reading changes nothing).
/// Used for the source and for a real replica alike, so both sides of a
/// comparison are read the same way:
/// - mailboxes: LIST, then EXAMINE (uniqueid from `MAILBOXID`, UIDVALIDITY,
///   UIDNEXT, HIGHESTMODSEQ) and one `UID FETCH 1:*` of flags, date, size, body
///   and per-message annotations (RFC 5257);
/// - mailbox annotations: `GETMETADATA (DEPTH infinity)`; the ACL: `GETACL`;
/// - subscriptions: `LIST (SUBSCRIBED)`, raw (see below);
/// - quota: `GETQUOTAROOT` of each mailbox (roots and limits, not usage);
/// - `DELETED.*` mailboxes: as the admin `admin` (only an admin sees them):
///   `LIST … RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY))`.
///
/// Users are read at once, each on its own connections and thread: a read is
/// a few dozen round trips, most of the time waiting for the server.
pub fn read_state_imap(addr: SocketAddr, users: &[&str]) -> Result<MailState> {
    let mut state = MailState::default();
    let read: Vec<Result<UserState>> = std::thread::scope(|sc| {
        let handles: Vec<_> = users
            .iter()
            .map(|&user| sc.spawn(move || read_user_imap(addr, user)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(CyrusError::ImapProtocol("a reader thread panicked".into()))
                })
            })
            .collect()
    });
    for (&user, us) in users.iter().zip(read) {
        state.users.insert(user.to_string(), us?);
    }
    Ok(state)
}

/// One user's state, as [`read_state_imap`] reads it.
fn read_user_imap(addr: SocketAddr, user: &str) -> Result<UserState> {
    let mut imap = ImapClient::connect(addr, IMAP_TIMEOUT)?;
    imap.login(user, "backupd-sim")?;
    let mut us = UserState::default();
    let inbox = user_inbox(user);
    for entry in imap.list("", "*")? {
        let own = to_internal_name(user, &entry.name);
        let is_own = crate::types::names::at_or_under(&own, &inbox);
        let selectable = !entry.attributes.iter().any(|a| {
            a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
        });
        if !is_own || !selectable {
            continue;
        }
        let info = imap.examine(&entry.name)?;
        let mut messages = BTreeMap::new();
        for m in imap.uid_fetch_all()? {
            messages.insert(
                m.uid,
                MessageState {
                    guid: hex::encode(Sha1::digest(&m.body)),
                    flags: MessageState::normalize_flags(m.flags),
                    internaldate: m.internaldate,
                    size: m.size,
                    annotations: compared_annotations(m.annotations, |k| {
                        k.split(' ').next().unwrap_or(k).to_owned()
                    }),
                },
            );
        }
        let annotations = compared_annotations(imap.getmetadata_all(&entry.name)?, |k| {
            k.trim_start_matches("/private")
                .trim_start_matches("/shared")
                .to_owned()
        });
        let acl = imap
            .getacl(&entry.name)?
            .into_iter()
            .map(|(id, r)| (id, crate::mailstate::sorted_rights(&r)))
            .collect();
        for (root, limits) in imap.getquotaroot(&entry.name)? {
            us.quotas.insert(to_internal_name(user, &root), limits);
        }
        us.mailboxes.insert(
            own,
            MailboxState {
                uniqueid: info.mailboxid,
                uidvalidity: info.uidvalidity,
                last_uid: info.uidnext.saturating_sub(1),
                highestmodseq: info.highestmodseq,
                messages,
                annotations,
                acl,
            },
        );
    }
    // Subscriptions raw, as the user's subscription database holds them:
    // `LIST (SUBSCRIBED)` lists a subscription to a folder that no longer
    // exists (renamed or deleted: Cyrus moves and drops none, as
    // `delete_unsubscribe` is off by default) as `\NonExistent`, where LSUB
    // hides it. sync_client sends the raw set (`mboxlist_sublist`) and every
    // target stores it raw, so only the raw set compares honestly. IMAP
    // rather than `cyr_dbtool` on `sub.db`: the same command works on 3.6,
    // 3.10 and 3.12, on the host and in a chroot, on a source and on a
    // replica, while the database's path and key format change between
    // versions (3.6 keys `N` + `INBOX\x1fWork` under `user/uuid/…`).
    // See docs/findings/subscriptions.md.
    for entry in imap.list_subscribed("", "*")? {
        us.subscriptions.insert(to_internal_name(user, &entry.name));
    }
    imap.logout()?;
    us.deleted = read_deleted_imap(addr, &inbox)?;
    Ok(us)
}

/// The annotations with a value whose entry is compared
/// ([`crate::mailstate::is_compared_entry`]); `entry_of` takes the entry out of
/// the key.
fn compared_annotations(
    all: BTreeMap<String, Vec<u8>>,
    entry_of: impl Fn(&str) -> String,
) -> BTreeMap<String, String> {
    all.into_iter()
        .filter(|(k, _)| crate::mailstate::is_compared_entry(&entry_of(k)))
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

/// The `DELETED.<inbox>…` mailboxes a delayed delete left, read as the admin
/// with one `LIST … RETURN (STATUS …)` (the admin lacks the read right EXAMINE
/// needs, and the owner does not see them).
fn read_deleted_imap(
    addr: SocketAddr,
    inbox: &str,
) -> Result<BTreeMap<String, crate::mailstate::DeletedMailbox>> {
    let mut imap = ImapClient::connect(addr, IMAP_TIMEOUT)?;
    imap.login("admin", "backupd-sim")?;
    let prefix = format!("DELETED.{inbox}.");
    let mut out = BTreeMap::new();
    for (entry, st) in imap.list_status(
        "",
        &format!("{prefix}*"),
        &["MESSAGES", "UIDNEXT", "UIDVALIDITY", "HIGHESTMODSEQ"],
    )? {
        if !entry.name.starts_with(&prefix)
            || entry.attributes.iter().any(|a| {
                a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
            })
        {
            continue;
        }
        let missing = |what: &str| {
            CyrusError::ImapProtocol(format!("LIST-STATUS of {} without {what}", entry.name))
        };
        let d = crate::mailstate::DeletedMailbox {
            uidvalidity: st.uidvalidity.ok_or_else(|| missing("UIDVALIDITY"))?,
            last_uid: st
                .uidnext
                .ok_or_else(|| missing("UIDNEXT"))?
                .saturating_sub(1),
            messages: st.messages.ok_or_else(|| missing("MESSAGES"))?,
            highestmodseq: st.highestmodseq.ok_or_else(|| missing("HIGHESTMODSEQ"))?,
        };
        out.insert(entry.name, d);
    }
    imap.logout()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_conversion() {
        let cases = [
            ("INBOX", "user.alice"),
            ("INBOX.Sent", "user.alice.Sent"),
            ("INBOX.Work.Deep", "user.alice.Work.Deep"),
            ("user.bob.Shared", "user.bob.Shared"),
            ("shared.folder", "shared.folder"),
        ];
        for (view, internal) in cases {
            assert_eq!(to_internal_name("alice", view), internal);
            assert_eq!(to_user_view_name("alice", internal), view);
        }
        assert_eq!(to_internal_name("alice", "inbox"), "user.alice");
        assert_eq!(to_internal_name("alice", "Inbox.X"), "user.alice.X");
        // not a prefix match on a longer userid
        assert_eq!(to_user_view_name("alice", "user.alicex.Y"), "user.alicex.Y");
        assert_eq!(to_user_view_name("alice", "user.alice"), "INBOX");
        assert_eq!(to_internal_name("INBOXER", "INBOXER"), "INBOXER");
        assert_eq!(user_inbox("john.doe"), "user.john^doe");
        assert_eq!(to_internal_name("john.doe", "INBOX.a"), "user.john^doe.a");
    }

    #[test]
    fn bad_options_are_refused() {
        let bins = CyrusBins::unchecked_flat(PathBuf::from("/nonexistent"));
        let mut opts = SourceOptions::new(bins, "relative/dir");
        assert!(matches!(validate(&opts), Err(CyrusError::Config(_))));
        opts.root = PathBuf::from("/tmp/x");
        opts.channels = vec![Channel::new("back up", 1)];
        assert!(matches!(validate(&opts), Err(CyrusError::Config(_))));
        opts.channels = vec![Channel::new("backup", 1), Channel::new("backup", 2)];
        assert!(matches!(validate(&opts), Err(CyrusError::Config(_))));
        opts.channels = vec![Channel::new("backup", 1)];
        assert!(validate(&opts).is_ok());
    }
}
