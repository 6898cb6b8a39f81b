//! A recording relay: sits between `sync_client` and a *real* csync server
//! (backupd, sync_server, or any `HOST:PORT`) and records the conversation into
//! the same [`EventLog`](crate::events::EventLog) the fake writes.
//!
//! Bytes pass through unchanged and at once; a copy of each direction is
//! decoded on the side: commands are framed and labelled exactly as the fake
//! labels them (so counts, `wait_for`, stats, transcripts and timelines work
//! the same for every target), replies are framed into data lines and a final
//! line, and `NO IMAP_MAILBOX_LOCKED` answers are recorded as lock hits. After
//! `COMPRESS DEFLATE` is accepted, both copies are inflated first.
//!
//! Decoding can never break the conversation: if a direction cannot be
//! followed any more (a framing limit, a corrupt DEFLATE stream) it is marked
//! and no longer decoded, and the bytes still flow.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use bytes::Bytes;

use crate::dlist::{Framer, Limits};
use crate::events::EventKind;
use crate::proto::Reply;
use crate::server::{Deflate, Shared};
use crate::session::{Decoder, Incoming};
use crate::types::SessionId;

/// How long connecting to the upstream server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no bytes in either direction for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a server may go on after its client has gone before its
/// connection counts as stuck (see [`Relay::settle`]).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Read size per direction.
const CHUNK: usize = 64 * 1024;

/// A running relay on its own task. Stops when dropped.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    upstream: SocketAddr,
    /// The last greeting line the server sent (`* OK host Cyrus backup
    /// server 3.6.1`), once a connection got one.
    greeting: Arc<Mutex<Option<String>>>,
    conns: Arc<Conns>,
    stop: Option<oneshot::Sender<()>>,
}

/// The relay's connections, as [`Relay::settle`] waits on them. A real
/// backupd lets go of a user's lock only when the process that served the
/// connection is done (`backupd_reset()` closes the backups, then the
/// socket), which can trail the client's exit: a client started meanwhile
/// would meet the old lock.
#[derive(Debug)]
struct Conns {
    counts: Mutex<Counts>,
    changed: Condvar,
    /// How long a server may go on after its client's end before its
    /// connection counts as stuck.
    drain: Duration,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// Accepted and not done yet (done: the server has closed its side, or
    /// was given up on).
    open: usize,
    /// Of those, the ones whose client the relay has seen leave.
    gone: usize,
    /// Of those, the ones whose server has not closed within the drain time
    /// after its client's end (the relay still waits for it).
    stuck: usize,
}

#[derive(Debug, Clone, Copy)]
enum Which {
    Open,
    Gone,
    Stuck,
}

impl Counts {
    fn get(&mut self, which: Which) -> &mut usize {
        match which {
            Which::Open => &mut self.open,
            Which::Gone => &mut self.gone,
            Which::Stuck => &mut self.stuck,
        }
    }
}

impl Conns {
    fn new(drain: Duration) -> Conns {
        Conns {
            counts: Mutex::default(),
            changed: Condvar::new(),
            drain,
        }
    }

    /// Count one connection as `which` until the guard drops (also when its
    /// task panics or is aborted).
    fn count(self: &Arc<Self>, which: Which) -> Counted {
        self.update(|c| *c.get(which) += 1);
        Counted {
            conns: Arc::clone(self),
            which,
        }
    }

    fn update(&self, f: impl FnOnce(&mut Counts)) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut c);
        self.changed.notify_all();
    }
}

/// One connection counted in [`Conns`].
struct Counted {
    conns: Arc<Conns>,
    which: Which,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let which = self.which;
        self.conns.update(|c| {
            let n = c.get(which);
            *n = n.saturating_sub(1);
        });
    }
}

/// Which connections [`Relay::settle`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Every connection: when no client is alive any more. A reaped client's
    /// end may not have reached the relay yet, so only this one is sure to
    /// wait for it.
    All,
    /// Those whose client the relay has seen leave: when another client is
    /// still connected, whose connection must not be waited for.
    Gone,
}

impl Relay {
    /// Listen on `listen` (use `127.0.0.1:0`) and relay every connection to
    /// `upstream`, recording into `shared`'s event log.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        shared: Arc<Shared>,
    ) -> io::Result<Relay> {
        Self::start_with_drain(listen, upstream, shared, DRAIN_TIMEOUT).await
    }

    /// [`Relay::start`] with a server given `drain` after its client's end
    /// before its connection counts as stuck.
    async fn start_with_drain(
        listen: SocketAddr,
        upstream: SocketAddr,
        shared: Arc<Shared>,
        drain: Duration,
    ) -> io::Result<Relay> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (tx, mut rx) = oneshot::channel::<()>();
        let greeting = Arc::new(Mutex::new(None));
        let seen = Arc::clone(&greeting);
        let conns = Arc::new(Conns::new(drain));
        let counter = Arc::clone(&conns);
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut rx => break,
                    accepted = listener.accept() => {
                        let Ok((stream, peer)) = accepted else { continue };
                        let shared = Arc::clone(&shared);
                        let seen = Arc::clone(&seen);
                        let open = counter.count(Which::Open);
                        let counter = Arc::clone(&counter);
                        tasks.spawn(relay_one(stream, peer, upstream, shared, seen, counter, open));
                    }
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                }
            }
            tasks.abort_all();
        });
        Ok(Relay {
            addr,
            upstream,
            greeting,
            conns,
            stop: Some(tx),
        })
    }

    /// Wait (blocking, at most `timeout`) until the server has closed the
    /// connections `which` names: then a real backupd holds no lock of a
    /// finished client. False if one is still open at the deadline, or as
    /// soon as only stuck ones are left (a server still open 10 s after its
    /// client's end: busy, or one that keeps a half-closed connection open).
    pub fn settle(&self, which: Settle, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut c = self.conns.counts.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let open = match which {
                Settle::All => c.open,
                Settle::Gone => c.gone,
            };
            if open.saturating_sub(c.stuck) == 0 {
                return c.stuck == 0;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            c = match self.conns.changed.wait_timeout(c, left) {
                Ok((c, _)) => c,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Where the client connects.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The real server behind it.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The greeting's `* OK` line of the latest connection that got one
    /// (none before the first): it names the server (`Cyrus backup server`,
    /// `Cyrus sync server`).
    pub fn greeting(&self) -> Option<String> {
        self.greeting.lock().ok().and_then(|g| g.clone())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

async fn relay_one(
    client: TcpStream,
    peer: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    greeting: Arc<Mutex<Option<String>>>,
    conns: Arc<Conns>,
    _open: Counted,
) {
    let id = shared.next_session_id();
    shared.record(
        id,
        EventKind::Connected {
            peer: peer.to_string(),
        },
    );
    let server = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            shared.record(
                id,
                EventKind::Closed {
                    reason: format!("relay: connecting to {upstream}: {e}"),
                },
            );
            return;
        }
        Err(_) => {
            shared.record(
                id,
                EventKind::Closed {
                    reason: format!("relay: connecting to {upstream} timed out"),
                },
            );
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let history = shared.history().is_some();
    let mut tap = Tap::new(id, shared.session_config().limits, history);
    tap.greeting = Some(greeting);
    let tap = Mutex::new(tap);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let (a, b, _gone, until) = {
        let mut up = std::pin::pin!(pump(&mut cr, &mut sw, &tap, &shared, Dir::ToServer));
        let mut down = std::pin::pin!(pump(&mut sr, &mut cw, &tap, &shared, Dir::ToClient));
        let mut server_end = None;
        let a = tokio::select! {
            a = &mut up => a,
            b = &mut down => {
                server_end = Some(b);
                (&mut up).await
            }
        };
        // The client has gone (or the server cannot be written to): until
        // the server is done too, this connection lingers (a real backupd
        // closes at once).
        let gone = conns.count(Which::Gone);
        let until = tokio::time::Instant::now() + conns.drain;
        let b = match server_end {
            Some(b) => b,
            None => tokio::time::timeout_at(until, &mut down)
                .await
                .unwrap_or_else(|_| {
                    End::Error(format!(
                        "not closed {} ms after the client's end",
                        conns.drain.as_millis()
                    ))
                }),
        };
        (a, b, gone, until)
    };
    if !matches!(b, End::Eof) && !drain(&mut sr, &tap, &shared, until).await {
        // The server has not closed: it may still be at work on what the
        // client sent (a real backupd holds the user's lock until it is
        // done). The connection is done when the server is; until then
        // `settle` says it is stuck rather than wait for it.
        let _stuck = conns.count(Which::Stuck);
        drain(
            &mut sr,
            &tap,
            &shared,
            tokio::time::Instant::now() + IDLE_TIMEOUT,
        )
        .await;
    }
    let reason = match (a, b) {
        (End::Eof, End::Eof) => "both sides closed".to_owned(),
        (End::Error(e), _) => format!("client side: {e}"),
        (_, End::Error(e)) => format!("server side: {e}"),
    };
    // Like the fake: "closed by the server after its reply" when the server hung up.
    let reason = if tap.lock().map(|t| t.server_closed_first).unwrap_or(false) {
        "closed by the server after its reply".to_owned()
    } else {
        reason
    };
    shared.history_closed(id);
    shared.record(id, EventKind::Closed { reason });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToServer,
    ToClient,
}

enum End {
    Eof,
    Error(String),
}

/// Copy one direction, decoding a copy; when it ends (EOF or an error),
/// half-close the other side so the peer sees it too: a server learns at once
/// that its client has gone, even when the client's end was a reset.
async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    tap: &Mutex<Tap>,
    shared: &Shared,
    dir: Dir,
) -> End {
    let end = copy(from, to, tap, shared, dir).await;
    let _ = to.shutdown().await;
    end
}

async fn copy(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    tap: &Mutex<Tap>,
    shared: &Shared,
    dir: Dir,
) -> End {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match tokio::time::timeout(IDLE_TIMEOUT, from.read(&mut buf)).await {
            Err(_) => return End::Error("idle for too long".into()),
            Ok(Err(e)) => return End::Error(e.to_string()),
            Ok(Ok(0)) => {
                if dir == Dir::ToClient {
                    if let Ok(mut t) = tap.lock() {
                        if !t.client_closed {
                            t.server_closed_first = true;
                        }
                    }
                } else if let Ok(mut t) = tap.lock() {
                    t.client_closed = true;
                }
                return End::Eof;
            }
            Ok(Ok(n)) => n,
        };
        // Decode before forwarding: the peer cannot answer what it has not
        // seen, so a switch to DEFLATE is known before the next bytes arrive.
        record(tap, shared, dir, &buf[..n]);
        if let Err(e) = to.write_all(&buf[..n]).await {
            return End::Error(e.to_string());
        }
    }
}

/// Decode a copy of `bytes` going `dir` and record what it holds.
fn record(tap: &Mutex<Tap>, shared: &Shared, dir: Dir, bytes: &[u8]) {
    let tapped = match tap.lock() {
        Ok(mut t) => t.feed(dir, bytes),
        Err(_) => Vec::new(),
    };
    for (session, t) in tapped {
        match t {
            Tapped::Event(kind) => shared.record(session, kind),
            Tapped::Command { text, cmd } => {
                shared.history_command(session, &text, cmd.as_ref());
            }
            Tapped::Reply(replies) => shared.history_reply(session, &replies),
            Tapped::Lost(why) => shared.history_lost(session, &why),
        }
    }
}

/// Read what a server still sends to a client that has gone, until it
/// closes (true) or `until` passes (false). Not delivered, but recorded:
/// what the server acknowledged it must hold, whether the client heard it
/// or not.
async fn drain(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    tap: &Mutex<Tap>,
    shared: &Shared,
    until: tokio::time::Instant,
) -> bool {
    let mut buf = vec![0u8; CHUNK];
    tokio::time::timeout_at(until, async {
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            record(tap, shared, Dir::ToClient, &buf[..n]);
        }
    })
    .await
    .is_ok()
}

/// Whether `COMPRESS DEFLATE` was asked for and answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compress {
    Off,
    Asked,
    On,
}

/// One direction's decoder.
struct Side {
    inflate: Option<Deflate>,
    /// Set when this direction can no longer be followed.
    lost: Option<String>,
}

impl Side {
    fn new() -> Side {
        Side {
            inflate: None,
            lost: None,
        }
    }

    /// The plaintext in `data` (inflated when compression is on).
    fn plain(&mut self, data: &[u8]) -> Vec<u8> {
        let Some(d) = self.inflate.as_mut() else {
            return data.to_vec();
        };
        let mut out = Vec::with_capacity(data.len() * 4);
        let mut chunk = vec![0u8; CHUNK];
        let mut pos = 0;
        loop {
            match d.decompress(&data[pos..], &mut chunk) {
                Ok((used, made)) => {
                    pos += used;
                    out.extend_from_slice(&chunk[..made]);
                    if pos == data.len() && made < chunk.len() {
                        return out;
                    }
                    if used == 0 && made == 0 {
                        return out;
                    }
                }
                Err(e) => {
                    self.lost = Some(e.to_string());
                    return out;
                }
            }
        }
    }
}

/// What the decoder saw: an event for the log, or a command or a complete
/// response for the history.
enum Tapped {
    Event(EventKind),
    Command {
        text: String,
        cmd: Option<crate::proto::Command>,
    },
    Reply(Vec<Reply>),
    /// A direction of the connection can no longer be decoded: the history
    /// misses what follows, so it is marked incomplete.
    Lost(String),
}

/// Both directions of one connection.
struct Tap {
    id: SessionId,
    /// Frames and labels commands exactly as the fake does.
    parser: Decoder,
    up: Side,
    down: Side,
    replies: Framer,
    compress: Compress,
    /// A command was seen: reply lines before it are the greeting.
    commanded: bool,
    /// Where the greeting's `* OK` line goes.
    greeting: Option<Arc<Mutex<Option<String>>>>,
    data_lines: usize,
    /// Decode the answers for the history (when it is kept).
    history: bool,
    /// The data lines of the answer in progress, decoded (history only).
    data: Vec<Reply>,
    client_closed: bool,
    server_closed_first: bool,
}

impl Tap {
    fn new(id: SessionId, limits: Limits, history: bool) -> Tap {
        Tap {
            id,
            parser: Decoder::new(limits),
            up: Side::new(),
            down: Side::new(),
            replies: Framer::new(Limits::default()),
            compress: Compress::Off,
            commanded: false,
            greeting: None,
            data_lines: 0,
            history,
            data: Vec::new(),
            client_closed: false,
            server_closed_first: false,
        }
    }

    fn feed(&mut self, dir: Dir, data: &[u8]) -> Vec<(SessionId, Tapped)> {
        let mut out = Vec::new();
        match dir {
            Dir::ToServer => self.commands(data, &mut out),
            Dir::ToClient => self.reply_bytes(data, &mut out),
        }
        out
    }

    fn commands(&mut self, data: &[u8], out: &mut Vec<(SessionId, Tapped)>) {
        if self.up.lost.is_some() {
            return;
        }
        let plain = self.up.plain(data);
        self.parser.push(&plain);
        loop {
            // The relay never answers a SASL challenge: every input is a command.
            let incoming = match self.parser.next(false) {
                Ok(Some(i)) => i,
                Ok(None) => break,
                Err(e) => {
                    self.up.lost = Some(e.to_string());
                    break;
                }
            };
            let (bytes, head) = self.parser.last_frame();
            let label = incoming.label();
            if label.verb == "COMPRESS" {
                // Switched on only if the server says OK (see reply_bytes).
                self.compress = Compress::Asked;
            }
            // What follows may be encrypted: decoded as csync, ciphertext
            // would leave a history with nothing in it, and a run with no
            // acknowledged write would pass.
            if let Some(why) = unreadable_after(&label.verb, head) {
                self.up.lost = Some(why);
                break;
            }
            self.commanded = true;
            self.data_lines = 0;
            self.data.clear();
            let text = head.to_owned();
            out.push((self.id, Tapped::Event(label.to_event(bytes, text.clone()))));
            if self.history {
                let cmd = match incoming {
                    Incoming::Command(c) => Some(c),
                    _ => None,
                };
                out.push((self.id, Tapped::Command { text, cmd }));
            }
        }
        if let Some(e) = &self.up.lost {
            let why = format!("relay: client stream no longer decoded: {e}");
            out.push((
                self.id,
                Tapped::Event(EventKind::Mark { name: why.clone() }),
            ));
            out.push((self.id, Tapped::Lost(why)));
        }
    }

    fn reply_bytes(&mut self, data: &[u8], out: &mut Vec<(SessionId, Tapped)>) {
        if self.down.lost.is_some() {
            return;
        }
        let plain = self.down.plain(data);
        self.replies.push(&plain);
        loop {
            let frame = match self.replies.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    self.down.lost = Some(e.to_string());
                    break;
                }
            };
            let first = frame.split(|&b| b == b'\n').next().unwrap_or_default();
            let first = first.strip_suffix(b"\r").unwrap_or(first);
            let line = String::from_utf8_lossy(first).into_owned();
            if !self.commanded {
                // The greeting: capabilities, then `* OK host Cyrus … server`.
                if line.starts_with("* OK") {
                    if let Some(g) = &self.greeting {
                        if let Ok(mut g) = g.lock() {
                            *g = Some(line);
                        }
                    }
                }
                continue;
            }
            if line.starts_with("* ") || line == "*" {
                self.data_lines += 1;
                if self.history {
                    self.data.push(Reply::parse(frame).unwrap_or_else(|e| {
                        Reply::Data(
                            crate::history::facts::UNREADABLE.into(),
                            crate::dlist::Value::atom(format!("{line}: {e}")),
                        )
                    }));
                }
                continue;
            }
            if line.starts_with("NO IMAP_MAILBOX_LOCKED") {
                out.push((
                    self.id,
                    Tapped::Event(EventKind::LockHit {
                        lock: "the real target".into(),
                    }),
                ));
            }
            out.push((
                self.id,
                Tapped::Event(EventKind::Reply {
                    line: line.clone(),
                    data_lines: std::mem::take(&mut self.data_lines),
                }),
            ));
            if self.history {
                let mut replies = std::mem::take(&mut self.data);
                replies.push(
                    Reply::parse(Bytes::from(line.clone().into_bytes()))
                        .unwrap_or_else(|_| Reply::Raw(line.clone())),
                );
                out.push((self.id, Tapped::Reply(replies)));
            }
            if self.compress == Compress::Asked {
                if line.starts_with("OK") {
                    // Everything after this line is compressed, both ways.
                    self.compress = Compress::On;
                    self.up.inflate = Some(Deflate::default());
                    self.down.inflate = Some(Deflate::default());
                    let rest = self.replies.take_buffered();
                    let plain = self.down.plain(&rest);
                    self.replies.push(&plain);
                } else {
                    self.compress = Compress::Off;
                }
            }
        }
        if let Some(e) = &self.down.lost {
            let why = format!("relay: server stream no longer decoded: {e}");
            out.push((
                self.id,
                Tapped::Event(EventKind::Mark { name: why.clone() }),
            ));
            out.push((self.id, Tapped::Lost(why)));
        }
    }
}

/// Why the relay can read no more of a connection after this command: TLS
/// (`STARTTLS`), or a SASL mechanism that may negotiate a security layer
/// (anything but those known to have none).
fn unreadable_after(verb: &str, head: &str) -> Option<String> {
    const NO_LAYER: [&str; 6] = [
        "PLAIN",
        "LOGIN",
        "EXTERNAL",
        "ANONYMOUS",
        "CRAM-MD5",
        "OAUTHBEARER",
    ];
    match verb {
        "STARTTLS" => Some("STARTTLS: the relay cannot read TLS".into()),
        "AUTHENTICATE" => {
            let mech = head
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_ascii_uppercase();
            (!NO_LAYER.contains(&mech.as_str()) && !mech.starts_with("SCRAM-")).then(|| {
                format!("AUTHENTICATE {mech}: a SASL mechanism that may negotiate a security layer the relay cannot read")
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relay on a one-worker runtime in front of an upstream that, once the
    /// client has gone (EOF), says so on the returned receiver, writes a
    /// reply when `bye` (a server finishing the client's last command), and
    /// closes its side when told on `close` (never if that is dropped).
    fn relay_with_upstream(
        close: std::sync::mpsc::Receiver<()>,
        bye: bool,
        drain: Duration,
    ) -> (
        tokio::runtime::Runtime,
        Relay,
        std::sync::mpsc::Receiver<()>,
    ) {
        use std::io::{Read as _, Write as _};
        let upstream = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let up_addr = upstream.local_addr().expect("addr");
        let (saw_eof, eof) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut s, _) = upstream.accept().expect("accept");
            let mut buf = [0u8; 64];
            while s.read(&mut buf).is_ok_and(|n| n > 0) {}
            let _ = saw_eof.send(());
            if bye {
                let _ = s.write_all(b"* BYE\r\n");
            }
            if close.recv().is_err() {
                std::thread::sleep(Duration::from_secs(5));
            }
            drop(s);
        });
        let (rt, relay, _) = relay_to(up_addr, drain);
        (rt, relay, eof)
    }

    /// A relay to `up_addr` on a one-worker runtime, with the store its
    /// event log is kept in.
    fn relay_to(
        up_addr: SocketAddr,
        drain: Duration,
    ) -> (tokio::runtime::Runtime, Relay, Arc<Shared>) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let shared = Shared::new(
            crate::store::Store::temporary().expect("store"),
            crate::server::ServerConfig::default(),
        );
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let relay = rt
            .block_on(Relay::start_with_drain(
                listen,
                up_addr,
                Arc::clone(&shared),
                drain,
            ))
            .expect("relay");
        (rt, relay, shared)
    }

    /// Waits (bounded) until the relay counts `n` connections as open.
    fn until_open(relay: &Relay, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while relay.conns.counts.lock().map(|c| c.open).unwrap_or(0) != n {
            assert!(Instant::now() < deadline, "never {n} open connection(s)");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The client connects, sends a line and hangs up; then the relay has
    /// seen it go (bounded wait).
    fn client_comes_and_goes(relay: &Relay) {
        use std::io::Write as _;
        let mut c = std::net::TcpStream::connect(relay.addr()).expect("connect");
        c.write_all(b"EXIT\r\n").expect("write");
        drop(c);
        let deadline = Instant::now() + Duration::from_secs(10);
        while relay.conns.counts.lock().map(|c| c.gone).unwrap_or(0) == 0 {
            assert!(Instant::now() < deadline, "the client's end was never seen");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Proves: after a client has gone, the relay is not settled while the
    /// server keeps its side open (a real backupd still holds the client's
    /// locks then), and it settles once the server closes.
    #[test]
    fn settle_waits_for_the_server_to_close_after_the_client() {
        let (close, closing) = std::sync::mpsc::channel();
        let (_rt, relay, _) = relay_with_upstream(closing, false, DRAIN_TIMEOUT);
        client_comes_and_goes(&relay);
        assert!(!relay.settle(Settle::Gone, Duration::from_millis(100)));
        assert!(!relay.settle(Settle::All, Duration::from_millis(100)));
        close.send(()).expect("close");
        assert!(relay.settle(Settle::Gone, Duration::from_secs(10)));
        assert!(relay.settle(Settle::All, Duration::from_secs(10)));
    }

    /// Proves: a server that keeps a half-closed connection open is waited
    /// for no longer than the timeout.
    #[test]
    fn settle_gives_up_at_its_deadline() {
        let (close, closing) = std::sync::mpsc::channel::<()>();
        drop(close);
        let (_rt, relay, _) = relay_with_upstream(closing, false, DRAIN_TIMEOUT);
        client_comes_and_goes(&relay);
        let started = Instant::now();
        assert!(!relay.settle(Settle::All, Duration::from_millis(200)));
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    /// Proves: `Settle::All` waits for a connection whose client has gone
    /// before the relay has read its end (here the relay's only worker is
    /// busy), where `Settle::Gone` does not know of it yet. This is the case
    /// of a client just reaped: a real backupd may still hold its lock.
    #[test]
    fn settle_all_waits_for_a_client_whose_end_the_relay_has_not_read() {
        use std::io::Write as _;
        let (close, closing) = std::sync::mpsc::channel();
        close.send(()).expect("close");
        let (rt, relay, _) = relay_with_upstream(closing, false, DRAIN_TIMEOUT);
        let mut c = std::net::TcpStream::connect(relay.addr()).expect("connect");
        c.write_all(b"EXIT\r\n").expect("write");
        until_open(&relay, 1);
        let (busy, started) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        rt.spawn(async move {
            let _ = busy.send(());
            let _ = released.recv_timeout(Duration::from_secs(30));
        });
        started
            .recv_timeout(Duration::from_secs(10))
            .expect("the worker got busy");
        drop(c);
        assert!(relay.settle(Settle::Gone, Duration::ZERO));
        assert!(!relay.settle(Settle::All, Duration::from_millis(100)));
        release.send(()).expect("release");
        assert!(relay.settle(Settle::All, Duration::from_secs(10)));
    }

    /// Proves: a client that resets its connection (killed with data unread)
    /// is passed on to the server at once as an EOF, and the connection stays
    /// open, for `settle`, until the server has closed, even when the
    /// server's last reply can no longer be delivered.
    #[test]
    fn a_client_reset_reaches_the_server_and_is_settled_when_the_server_closes() {
        let (close, closing) = std::sync::mpsc::channel();
        let (rt, relay, eof) = relay_with_upstream(closing, true, DRAIN_TIMEOUT);
        let addr = relay.addr();
        rt.block_on(async move {
            let mut c = TcpStream::connect(addr).await.expect("connect");
            c.write_all(b"APPLY RESERVE\r\n").await.expect("write");
            c.set_zero_linger().expect("linger");
            drop(c);
        });
        eof.recv_timeout(Duration::from_secs(10))
            .expect("the server was told that the client has gone");
        assert!(!relay.settle(Settle::All, Duration::from_millis(300)));
        close.send(()).expect("close");
        assert!(relay.settle(Settle::All, Duration::from_secs(10)));
    }

    /// Proves: what a server answers after its client has reset the
    /// connection is still recorded, though it can no longer be delivered
    /// (here the second answer, sent once the relay has failed to deliver
    /// the first and is draining): a target's acknowledgement counts whether
    /// the client heard it or not.
    #[test]
    fn answers_after_the_client_has_gone_are_recorded() {
        use std::io::{BufRead as _, Read as _, Write as _};
        use std::sync::mpsc::channel;
        let upstream = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let up_addr = upstream.local_addr().expect("addr");
        let (got_cmd, cmd) = channel();
        let (saw_eof, eof) = channel();
        let (go, going) = channel::<()>();
        let (close, closing) = channel::<()>();
        std::thread::spawn(move || {
            let (s, _) = upstream.accept().expect("accept");
            let mut r = std::io::BufReader::new(s.try_clone().expect("clone"));
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = got_cmd.send(());
            let mut buf = [0u8; 64];
            while r.read(&mut buf).is_ok_and(|n| n > 0) {}
            let _ = saw_eof.send(());
            let mut w = s;
            let _ = w.write_all(b"OK first\r\n");
            let _ = going.recv_timeout(Duration::from_secs(30));
            let _ = w.write_all(b"NO IMAP_MAILBOX_LOCKED Mailbox locked\r\n");
            let _ = closing.recv_timeout(Duration::from_secs(30));
        });
        let (rt, relay, shared) = relay_to(up_addr, DRAIN_TIMEOUT);
        let addr = relay.addr();
        let c = rt.block_on(async move {
            let mut c = TcpStream::connect(addr).await.expect("connect");
            c.write_all(b"EXIT\r\n").await.expect("write");
            c
        });
        cmd.recv_timeout(Duration::from_secs(10))
            .expect("the server got the command");
        rt.block_on(async move {
            c.set_zero_linger().expect("linger");
            drop(c);
        });
        eof.recv_timeout(Duration::from_secs(10))
            .expect("the server was told that the client has gone");
        assert!(!relay.settle(Settle::All, Duration::from_millis(300)));
        go.send(()).expect("go");
        close.send(()).expect("close");
        assert!(relay.settle(Settle::All, Duration::from_secs(10)));
        let hits = shared
            .events()
            .events()
            .filter(|e| matches!(e.kind, EventKind::LockHit { .. }))
            .count();
        assert_eq!(hits, 1);
    }

    /// Proves: a server still open the drain time after its client's end
    /// makes `settle` answer false at once (it may still hold the client's
    /// lock), not true, and the relay goes on waiting for it: once it
    /// closes, the relay settles.
    #[test]
    fn a_server_open_past_the_drain_time_is_stuck_until_it_closes() {
        let (close, closing) = std::sync::mpsc::channel();
        let (_rt, relay, _) = relay_with_upstream(closing, false, Duration::from_millis(100));
        client_comes_and_goes(&relay);
        let deadline = Instant::now() + Duration::from_secs(10);
        while relay.conns.counts.lock().map(|c| c.stuck).unwrap_or(0) == 0 {
            assert!(Instant::now() < deadline, "never counted stuck");
            std::thread::sleep(Duration::from_millis(5));
        }
        let started = Instant::now();
        assert!(!relay.settle(Settle::All, Duration::from_secs(10)));
        assert!(!relay.settle(Settle::Gone, Duration::from_secs(10)));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a stuck connection is answered at once"
        );
        close.send(()).expect("close");
        until_open(&relay, 0);
        assert!(relay.settle(Settle::All, Duration::ZERO));
    }

    /// STARTTLS, or a SASL mechanism with a possible security layer, ends what
    /// the relay can read: reported lost (the run has no verdict), not
    /// decoded as ciphertext into a history with no writes (a target that
    /// stores nothing would pass). PLAIN and SCRAM go on.
    #[test]
    fn tls_and_sasl_security_layers_are_reported_lost() {
        for first in [
            &b"STARTTLS\r\n"[..],
            b"AUTHENTICATE GSSAPI\r\n",
            b"AUTHENTICATE DIGEST-MD5\r\n",
        ] {
            let mut tap = Tap::new(3, Limits::default(), true);
            let out = tap.feed(Dir::ToServer, first);
            assert_eq!(lost(&out).len(), 1, "{:?}", String::from_utf8_lossy(first));
            assert!(
                lost(&out)[0].contains("the relay cannot read"),
                "{:?}",
                lost(&out)
            );
            // Ciphertext after it is not decoded into commands.
            assert!(tap
                .feed(Dir::ToServer, b"\x16\x03\x01\x02\x00\r\nNOOP\r\n")
                .is_empty());
        }
        for first in [
            &b"AUTHENTICATE PLAIN AHJlcGx1c2VyAHNlY3JldA==\r\n"[..],
            b"AUTHENTICATE SCRAM-SHA-256\r\n",
        ] {
            let mut tap = Tap::new(3, Limits::default(), true);
            assert!(lost(&tap.feed(Dir::ToServer, first)).is_empty());
        }
    }

    fn lost(out: &[(SessionId, Tapped)]) -> Vec<&str> {
        out.iter()
            .filter_map(|(_, t)| match t {
                Tapped::Lost(why) => Some(why.as_str()),
                _ => None,
            })
            .collect()
    }

    /// A direction the relay can no longer decode (here a literal past the
    /// limit) is reported once as lost, for the history to be marked
    /// incomplete, and nothing more of it is decoded; the other direction
    /// goes on until it is lost too.
    #[test]
    fn an_undecodable_stream_is_reported_lost_once_per_direction() {
        let mut tap = Tap::new(3, Limits::default(), true);
        let out = tap.feed(
            Dir::ToServer,
            b"NOOP\r\nAPPLY MESSAGE ({1099511627776+}\r\n",
        );
        assert!(out
            .iter()
            .any(|(_, t)| matches!(t, Tapped::Command { text, .. } if text == "NOOP")));
        assert_eq!(lost(&out).len(), 1, "{:?}", lost(&out));
        assert!(lost(&out)[0].starts_with("relay: client stream no longer decoded"));
        assert!(tap.feed(Dir::ToServer, b"NOOP\r\n").is_empty());
        let out = tap.feed(Dir::ToClient, b"OK Success\r\n");
        assert!(lost(&out).is_empty());
        let out = tap.feed(Dir::ToClient, b"* MAILBOX {1099511627776}\r\n");
        assert_eq!(lost(&out).len(), 1, "{:?}", lost(&out));
        assert!(lost(&out)[0].starts_with("relay: server stream no longer decoded"));
        assert!(tap.feed(Dir::ToClient, b"OK Success\r\n").is_empty());
    }
}
