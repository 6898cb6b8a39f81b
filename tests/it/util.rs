//! Helpers shared by the integration tests.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backupd_sim::cyrus::process::wait_until;
use backupd_sim::cyrus::{Choice, CyrusBins};
use backupd_sim::effect::{self, Effect, Judgement, World};
use backupd_sim::events::EventKind;
use backupd_sim::fault::{Engine, Plan, Status};
use backupd_sim::harness::Target;
use backupd_sim::proto::Reply;
use backupd_sim::rng::Seed;
use backupd_sim::runner::RunOptions;
use backupd_sim::server::control::{self, Request};
use backupd_sim::server::{FakeBackupd, ServerConfig, Shared};
use backupd_sim::session::{After, Session, SessionConfig};
use backupd_sim::store::Store;

use crate::codec::Conn;

/// Make `path` an executable holding `content`, written by a child process
/// (`sh -c 'cat > PATH'`). Written from this process, the file could be held
/// open for writing by a child another test thread forks at that moment, and
/// running it would then fail with ETXTBSY ("Text file busy").
pub fn write_executable(path: &Path, content: &[u8]) {
    use std::io::Write as _;
    let mut sh = std::process::Command::new("sh")
        .args(["-c", "cat > \"$0\" && chmod 755 \"$0\""])
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sh");
    sh.stdin
        .take()
        .expect("stdin")
        .write_all(content)
        .expect("write the executable");
    let status = sh.wait().expect("wait for sh");
    assert!(status.success(), "writing {}: {status}", path.display());
}

/// Copy the executable `from` to `to` by a child process (`install -m 755`),
/// for the reason given at [`write_executable`].
pub fn copy_executable(from: &Path, to: &Path) {
    let status = std::process::Command::new("install")
        .args(["-m", "755"])
        .arg(from)
        .arg(to)
        .status()
        .expect("install");
    assert!(
        status.success(),
        "copying {} to {}: {status}",
        from.display(),
        to.display()
    );
}

/// The Cyrus installation the tests drive: `$CYRUS_PREFIX` (an installed
/// tree), `$CYRUS_BIN` (a directory of executables) or the Debian default.
///
/// When it is missing, a test that needs it is skipped with a printed reason,
/// unless `CI=true` or `BACKUPD_SIM_REQUIRE_CYRUS=1`: then it fails, so CI can
/// never pass by skipping.
pub fn cyrus_bins() -> Option<CyrusBins> {
    match Choice::default().single() {
        Ok(b) => Some(b),
        Err(e) => {
            let required = std::env::var("CI").is_ok_and(|v| v == "true")
                || std::env::var("BACKUPD_SIM_REQUIRE_CYRUS").is_ok_and(|v| v == "1");
            if required {
                panic!("Cyrus is required here (CI=true or BACKUPD_SIM_REQUIRE_CYRUS=1): {e}");
            }
            eprintln!("skipped: no Cyrus: {e}");
            None
        }
    }
}

/// Run options for the host's Cyrus (`None`, with a skip message, when it is
/// missing); sandboxes go under `parent` (a test's temp dir), so a failed
/// run's kept sandbox goes with it.
pub fn run_options(target: Target, parent: &Path) -> Option<RunOptions> {
    let bins = cyrus_bins()?;
    Some(RunOptions {
        sandbox_parent: Some(parent.to_owned()),
        ..RunOptions::new(bins, target)
    })
}

/// The `backupd-sim` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_backupd-sim");

/// `backupd-sim ARGS` run in `dir` with `env` added: (exit code, stdout,
/// stderr). Panics when a signal killed it.
pub fn bin_in(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> (i32, String, String) {
    let mut c = std::process::Command::new(BIN);
    c.current_dir(dir).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run backupd-sim");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `backupd-sim ARGS` run in the crate root: (exit code, stdout, stderr).
pub fn bin(args: &[&str]) -> (i32, String, String) {
    bin_in(Path::new(env!("CARGO_MANIFEST_DIR")), args, &[])
}

/// A scripted csync client over TCP: connects, authenticates as
/// `repluser`/`secret`, sends each line and collects the final reply lines
/// (`OK …`, `NO …`, or `<closed>` when the server dropped the connection, after
/// which it reconnects for the next line). Every read has a 5 s deadline.
pub fn run_script(addr: std::net::SocketAddr, lines: &[&str]) -> Vec<String> {
    use base64::Engine;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    fn connect(addr: std::net::SocketAddr) -> (BufReader<TcpStream>, TcpStream) {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                r.read_line(&mut line).expect("greeting") > 0,
                "closed during greeting"
            );
            if line.starts_with("* OK") {
                break;
            }
        }
        (r, s)
    }
    fn final_line(r: &mut BufReader<TcpStream>) -> Option<String> {
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) if line.starts_with("* ") => continue,
                Ok(_) => return Some(line.trim_end().to_owned()),
            }
        }
    }
    let auth = format!(
        "AUTHENTICATE PLAIN {}\r\n",
        base64::engine::general_purpose::STANDARD.encode("\0repluser\0secret")
    );
    let mut conn: Option<(BufReader<TcpStream>, TcpStream)> = None;
    let mut out = Vec::new();
    for l in lines {
        let (r, w) = conn.get_or_insert_with(|| {
            let (mut r, mut w) = connect(addr);
            w.write_all(auth.as_bytes()).expect("auth");
            assert_eq!(
                final_line(&mut r).as_deref(),
                Some("OK Success (no protection)")
            );
            (r, w)
        });
        let sent = w
            .write_all(l.as_bytes())
            .and_then(|()| w.write_all(b"\r\n"));
        match sent.ok().and_then(|()| final_line(r)) {
            Some(reply) => out.push(reply),
            None => {
                out.push("<closed>".into());
                conn = None;
            }
        }
    }
    out
}

/// The chroot installation of Cyrus `version` (`3.10`, `3.12`) that
/// `backupd-sim cyrus install` built in its cache (`$BACKUPD_SIM_CYRUS_CACHE`,
/// else `/var/cache/backupd-sim/cyrus`).
///
/// Missing: skipped with a printed reason, unless `CI=true` or
/// `BACKUPD_SIM_REQUIRE_CYRUS=1` (`make test` installs both first): then the
/// test fails.
pub fn chroot_bins(version: &str) -> Option<CyrusBins> {
    use backupd_sim::cyrus::install;
    let cache = install::cache_dir();
    match CyrusBins::resolve(version, &cache) {
        Ok(b) => Some(b),
        Err(e) => {
            let required = std::env::var("CI").is_ok_and(|v| v == "true")
                || std::env::var("BACKUPD_SIM_REQUIRE_CYRUS").is_ok_and(|v| v == "1");
            if required {
                panic!(
                    "Cyrus {version} is required here (CI=true or BACKUPD_SIM_REQUIRE_CYRUS=1; \
                     `make test` installs it with `backupd-sim cyrus install {version}`): {e}"
                );
            }
            eprintln!("skipped: no Cyrus {version} chroot: {e}");
            None
        }
    }
}

/// `APPLY MESSAGE` carrying these bodies, with their true GUIDs.
pub fn message_cmd(bodies: &[&[u8]]) -> Vec<u8> {
    let mut out = b"APPLY MESSAGE (".to_vec();
    for (i, b) in bodies.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(
            format!(
                "%{{default {} {}}}\r\n",
                backupd_sim::store::sha1_hex(b),
                b.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(b);
    }
    out.extend_from_slice(b")\r\n");
    out
}

/// `APPLY MAILBOX` for `name` with every field backupd requires, shaped like
/// the 3.6.1 client's (`a-01.txt`); `records` are `(uid, guid, flags)`.
pub fn mailbox_cmd(uniqueid: &str, name: &str, records: &[(u32, &str, &str)]) -> String {
    let owner = name.split('.').nth(1).unwrap_or("alice");
    let last_uid = records.iter().map(|r| r.0).max().unwrap_or(0);
    let recs: Vec<String> = records
        .iter()
        .map(|(uid, guid, flags)| {
            format!(
                "%(UID {uid} MODSEQ {m} LAST_UPDATED 1795874858 FLAGS ({flags}) \
                 INTERNALDATE 1795874858 SIZE 5 GUID {guid})",
                m = uid + 1
            )
        })
        .collect();
    format!(
        "APPLY MAILBOX %(UNIQUEID {uniqueid} MBOXNAME {name} SYNC_CRC 1 SYNC_CRC_ANNOT 2 \
         LAST_UID {last_uid} HIGHESTMODSEQ {hms} RECENTUID 0 RECENTTIME 0 \
         LAST_APPENDDATE 1795874858 POP3_LAST_LOGIN 0 POP3_SHOW_AFTER 0 \
         UIDVALIDITY 1795874859 PARTITION default ACL \"{owner}\tlrswipkxtecdan\t\" \
         OPTIONS P CREATEDMODSEQ 1 FOLDERMODSEQ 1 RECORD ({recs}))",
        hms = last_uid + 10,
        recs = recs.join(" ")
    )
}

// ---------------------------------------------------------------------------
// The sans-IO session, scripted: no sockets, no Cyrus
// ---------------------------------------------------------------------------

/// `AUTHENTICATE PLAIN` with `\0repluser\0secret` (the default credentials).
pub const LOGIN: &str = "AUTHENTICATE PLAIN AHJlcGx1c2VyAHNlY3JldA==";

/// What one push into a [`Client`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Reply lines, without their CRLF (a literal keeps its inner CRLF).
    pub lines: Vec<String>,
    /// The exact bytes the server would write.
    pub wire: Vec<u8>,
    /// What followed the last response.
    pub after: After,
}

/// A scripted client driving one sans-IO [`Session`] over a store.
pub struct Client {
    pub session: Session,
}

impl Client {
    pub fn new(id: u64, config: &Arc<SessionConfig>) -> Client {
        Client {
            session: Session::new(id, Arc::clone(config)),
        }
    }

    /// A session with the default config.
    pub fn fresh(id: u64) -> Client {
        Client::new(id, &Arc::new(SessionConfig::default()))
    }

    /// A session with the default config that has authenticated.
    pub fn authed(id: u64, store: &mut Store) -> Client {
        Client::authed_with(id, &Arc::new(SessionConfig::default()), store)
    }

    /// A session with `config` that has authenticated as `repluser`/`secret`.
    pub fn authed_with(id: u64, config: &Arc<SessionConfig>, store: &mut Store) -> Client {
        let mut c = Client::new(id, config);
        assert_eq!(c.cmd(store, LOGIN), ["OK Success (no protection)"]);
        c
    }

    pub fn greeting(&self) -> Vec<String> {
        self.session
            .greeting()
            .replies
            .iter()
            .map(Reply::to_line)
            .collect()
    }

    /// Push `bytes` in chunks of at most 64 KiB, executing every complete input
    /// after each chunk, as the tokio driver does. Stops at `After::Close`.
    pub fn send(&mut self, store: &mut Store, bytes: &[u8]) -> Outcome {
        let mut out = Outcome {
            lines: Vec::new(),
            wire: Vec::new(),
            after: After::Continue,
        };
        for chunk in bytes.chunks(64 << 10) {
            self.session.push(chunk);
            loop {
                let response = match self.session.next_incoming() {
                    Ok(None) => break,
                    Ok(Some(input)) => self.session.execute(input, store),
                    Err(e) => self.session.frame_error(&e),
                };
                out.lines
                    .extend(response.replies.iter().map(Reply::to_line));
                out.wire.extend(response.encode());
                out.after = response.after;
                if response.after == After::Close {
                    return out;
                }
            }
        }
        out
    }

    /// Send one line (CRLF appended); the session must stay open.
    pub fn cmd(&mut self, store: &mut Store, line: &str) -> Vec<String> {
        let out = self.send(store, format!("{line}\r\n").as_bytes());
        assert_eq!(out.after, After::Continue, "after `{line}`");
        out.lines
    }
}

/// The client side of one capture replayed through `send` (which returns the
/// bytes the server wrote); fails on the first reply whose bytes differ from
/// the real server's. COMPRESS is not sent (sans-IO), nor, with `cut_last`,
/// the last client write (a command the relay cut).
pub fn replay(conn: &Conn, cut_last: bool, mut send: impl FnMut(&[u8]) -> Vec<u8>) {
    let blocks = &conn.blocks;
    let last_client = blocks.iter().rposition(|b| b.from_client);
    let mut i = 0;
    while i < blocks.len() {
        if !blocks[i].from_client {
            i += 1;
            continue;
        }
        let sent = &blocks[i].bytes;
        let mut expected = Vec::new();
        let mut j = i + 1;
        while j < blocks.len() && !blocks[j].from_client {
            expected.extend_from_slice(&blocks[j].bytes);
            j += 1;
        }
        let skip = sent.starts_with(b"COMPRESS ") || (cut_last && Some(i) == last_client);
        if !skip {
            let wire = send(sent);
            assert_eq!(
                String::from_utf8_lossy(&wire),
                String::from_utf8_lossy(&expected),
                "{}: reply to `{}`",
                conn.name,
                String::from_utf8_lossy(&sent[..sent.len().min(60)])
            );
        }
        i = j;
    }
}

// ---------------------------------------------------------------------------
// The fake in this process
// ---------------------------------------------------------------------------

/// Deadline of every read and every poll of the in-process fake.
pub const WAIT: Duration = Duration::from_secs(5);

/// A fake backupd with `plan`, seed 7, in its own runtime; stopped on drop.
pub struct Sim {
    pub rt: tokio::runtime::Runtime,
    fake: Option<FakeBackupd>,
}

impl Sim {
    pub fn start(plan: &str) -> Sim {
        Sim::start_seeded(plan, 7)
    }

    /// A fake with `plan` and `seed`.
    pub fn start_seeded(plan: &str, seed: u64) -> Sim {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let config = ServerConfig {
            plan: Plan::parse(plan, "test plan").unwrap_or_else(|e| panic!("{e}")),
            seed: Seed(seed),
            ..ServerConfig::default()
        };
        let fake = rt
            .block_on(FakeBackupd::start(
                "127.0.0.1:0".parse().expect("addr"),
                Store::temporary().expect("store"),
                config,
            ))
            .expect("start");
        Sim {
            rt,
            fake: Some(fake),
        }
    }

    pub fn fake(&self) -> &FakeBackupd {
        self.fake.as_ref().expect("running")
    }

    pub fn addr(&self) -> SocketAddr {
        self.fake().addr()
    }

    pub fn shared(&self) -> &Arc<Shared> {
        self.fake().shared()
    }

    /// Every event so far as `(session, kind)`.
    pub fn events(&self) -> Vec<(u64, EventKind)> {
        self.shared()
            .events()
            .events()
            .map(|e| (e.session, e.kind.clone()))
            .collect()
    }

    /// The events of one session, `Connected` left out (it carries a port).
    pub fn session_events(&self, session: u64) -> Vec<EventKind> {
        self.events()
            .into_iter()
            .filter(|(s, k)| *s == session && !matches!(k, EventKind::Connected { .. }))
            .map(|(_, k)| k)
            .collect()
    }

    /// Poll the event log until `pred` holds, at most [`WAIT`].
    pub fn wait_for(&self, what: &str, pred: impl Fn(&[(u64, EventKind)]) -> bool) {
        assert!(
            wait_until(WAIT, || pred(&self.events())),
            "timed out waiting for {what}:\n{}",
            self.transcript()
        );
    }

    /// Wait until every connection opened has been closed (the server records
    /// a connection's end after the client has gone).
    pub fn wait_all_closed(&self) {
        self.wait_for("every connection to close", |ev| {
            let opened = ev
                .iter()
                .filter(|(_, k)| matches!(k, EventKind::Connected { .. }));
            let closed = ev
                .iter()
                .filter(|(_, k)| matches!(k, EventKind::Closed { .. }));
            opened.count() == closed.count()
        });
    }

    /// This fake as a `--target HOST:PORT` (the default credentials).
    pub fn target(&self) -> Target {
        Target::parse(&self.addr().to_string(), "repluser", "secret").expect("target")
    }

    /// Wait until the session's `Closed` event is logged; its reason.
    pub fn closed_reason(&self, session: u64) -> String {
        self.wait_for(&format!("session {session} to close"), |ev| {
            ev.iter()
                .any(|(s, k)| *s == session && matches!(k, EventKind::Closed { .. }))
        });
        self.events()
            .into_iter()
            .find_map(|(s, k)| match k {
                EventKind::Closed { reason } if s == session => Some(reason),
                _ => None,
            })
            .expect("closed")
    }

    pub fn transcript(&self) -> String {
        self.shared().events().transcript()
    }

    /// `user`'s subscriptions in the store.
    pub fn subs(&self, user: &str) -> Vec<String> {
        self.shared()
            .store()
            .users()
            .get(user)
            .map(|u| u.subscriptions.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A control request applied in-process; panics when refused.
    pub fn ctl(&self, req: Request) -> Status {
        control::apply(self.shared(), &req).unwrap_or_else(|e| panic!("{req:?}: {e}"))
    }

    pub fn refused_count(&self) -> usize {
        self.events()
            .iter()
            .filter(|(_, k)| matches!(k, EventKind::Refused { .. }))
            .count()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(f) = self.fake.take() {
            self.rt.block_on(f.stop());
        }
    }
}

// ---------------------------------------------------------------------------
// The sans-IO core by hand: sessions, the fault engine and a store, no sockets
// ---------------------------------------------------------------------------

/// The engine, the store, a clock set by hand and an event log: what the
/// core ([`backupd_sim::effect`]) needs around it, for table-driven tests.
pub struct CoreWorld {
    engine: std::sync::Mutex<Engine>,
    store: std::sync::Mutex<Store>,
    events: std::sync::Mutex<Vec<(u64, EventKind)>>,
    now: std::sync::atomic::AtomicU64,
    config: Arc<SessionConfig>,
    next_index: std::sync::Mutex<std::collections::BTreeMap<u64, u64>>,
}

impl World for CoreWorld {
    fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().expect("engine")
    }
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().expect("store")
    }
    fn now_ms(&self) -> u64 {
        self.now.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn record(&self, session: u64, kind: EventKind) {
        self.events.lock().expect("events").push((session, kind));
    }
}

impl CoreWorld {
    /// A world with `plan` and seed 7, for sessions with `config`.
    pub fn new(plan: &str, config: SessionConfig) -> CoreWorld {
        let plan = Plan::parse(plan, "test plan").unwrap_or_else(|e| panic!("{e}"));
        let mut engine = Engine::new(plan, Seed(7));
        engine.set_blocking(config.personality.blocks_on_locks());
        let store = Store::temporary().expect("store");
        CoreWorld {
            engine: std::sync::Mutex::new(engine),
            store: std::sync::Mutex::new(store),
            events: std::sync::Mutex::new(Vec::new()),
            now: std::sync::atomic::AtomicU64::new(0),
            config: Arc::new(config),
            next_index: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    /// Set the clock (milliseconds since the start).
    pub fn set_now(&self, ms: u64) {
        self.now.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// A session `id` that has authenticated as `repluser`/`secret`.
    pub fn session(&self, id: u64) -> Session {
        let mut s = Session::new(id, Arc::clone(&self.config));
        s.push(format!("{LOGIN}\r\n").as_bytes());
        let login = s.next_incoming().expect("frame").expect("login");
        let r = s.execute(login, &mut self.store());
        assert_eq!(r.replies, [Reply::Ok("Success (no protection)".into())]);
        s
    }

    /// One command line through the core as the driver runs it: its
    /// judgement, and (unless it is held or blocked) the effect.
    pub fn judge(&self, s: &mut Session, line: &str) -> (Judgement, Option<Effect>) {
        s.push(format!("{line}\r\n").as_bytes());
        let incoming = s.next_incoming().expect("frame").expect("a whole line");
        let index = {
            let mut n = self.next_index.lock().expect("index");
            let i = n.entry(s.id()).or_default();
            *i += 1;
            *i
        };
        let label = incoming.label();
        let ev = effect::command_event(&label, s.id(), index);
        let judgement = effect::judge(self, &ev, self.config.personality.blocks_on_locks());
        let effect = match &judgement {
            Judgement::Go(v) => Some(effect::carry_out(self, s, incoming, &ev, v.clone())),
            _ => None,
        };
        (judgement, effect)
    }

    /// One command line through the core: its effect (it must go on).
    pub fn command(&self, s: &mut Session, line: &str) -> Effect {
        match self.judge(s, line) {
            (_, Some(e)) => e,
            (j, None) => panic!("`{line}` was not carried out: {j:?}"),
        }
    }

    /// The events recorded for `session`.
    pub fn events_of(&self, session: u64) -> Vec<EventKind> {
        self.events
            .lock()
            .expect("events")
            .iter()
            .filter(|(s, _)| *s == session)
            .map(|(_, k)| k.clone())
            .collect()
    }

    /// `user`'s subscriptions in the store.
    pub fn subs(&self, user: &str) -> Vec<String> {
        self.store()
            .user(user)
            .map(|u| u.subscriptions.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// A `backupd-sim serve` child, killed by its PID on drop (so also when a
/// test fails).
pub struct Served {
    child: std::process::Child,
    /// `listening on ADDR` (the first stdout line).
    pub addr: String,
    /// `control on ADDR` (the second stdout line), with `--control`.
    pub control: Option<String>,
}

impl Served {
    /// `backupd-sim serve ARGS`, once it printed where it listens.
    pub fn start(args: &[&str]) -> Served {
        let mut child = std::process::Command::new(BIN)
            .arg("serve")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn backupd-sim");
        let mut first = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        std::io::BufRead::read_line(&mut out, &mut first).expect("read the first line");
        let control = args.contains(&"--control").then(|| {
            let mut second = String::new();
            std::io::BufRead::read_line(&mut out, &mut second).expect("read the second line");
            second
                .trim()
                .strip_prefix("control on ")
                .unwrap_or_else(|| panic!("second line was {second:?}"))
                .to_owned()
        });
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line was {first:?}"))
            .to_owned();
        Served {
            child,
            addr,
            control,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn terminate(mut self) -> i32 {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
        let mut status = None;
        assert!(
            wait_until(Duration::from_secs(10), || {
                status = self.child.try_wait().expect("wait");
                status.is_some()
            }),
            "serve did not exit within 10 s of SIGTERM"
        );
        status.and_then(|s| s.code()).expect("exited, not killed")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
