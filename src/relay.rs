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
    lingering: Arc<Lingering>,
    stop: Option<oneshot::Sender<()>>,
}

/// How many connections the client has left while the server has not
/// closed its side yet. A real backupd lets go of a user's lock only when
/// the process that served the connection is done (`backupd_reset()` closes
/// the backups, then the socket), which can trail the client's exit: a client
/// started meanwhile would meet the old lock.
#[derive(Debug, Default)]
struct Lingering {
    count: Mutex<usize>,
    none: Condvar,
}

impl Lingering {
    fn enter(&self) {
        if let Ok(mut n) = self.count.lock() {
            *n += 1;
        }
    }

    fn leave(&self) {
        if let Ok(mut n) = self.count.lock() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.none.notify_all();
            }
        }
    }
}

impl Relay {
    /// Listen on `listen` (use `127.0.0.1:0`) and relay every connection to
    /// `upstream`, recording into `shared`'s event log.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        shared: Arc<Shared>,
    ) -> io::Result<Relay> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (tx, mut rx) = oneshot::channel::<()>();
        let greeting = Arc::new(Mutex::new(None));
        let seen = Arc::clone(&greeting);
        let lingering = Arc::new(Lingering::default());
        let linger = Arc::clone(&lingering);
        tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut rx => break,
                    accepted = listener.accept() => {
                        let Ok((stream, peer)) = accepted else { continue };
                        let shared = Arc::clone(&shared);
                        let seen = Arc::clone(&seen);
                        let linger = Arc::clone(&linger);
                        conns.spawn(relay_one(stream, peer, upstream, shared, seen, linger));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
            conns.abort_all();
        });
        Ok(Relay {
            addr,
            upstream,
            greeting,
            lingering,
            stop: Some(tx),
        })
    }

    /// Wait (blocking, at most `timeout`) until the server has closed every
    /// connection whose client has gone: then a real backupd holds no lock of
    /// a finished client. False if some connection still lingers at the
    /// deadline (a server that keeps a half-closed connection open).
    pub fn settle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let Ok(mut n) = self.lingering.count.lock() else {
            return false;
        };
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            n = match self.lingering.none.wait_timeout(n, left) {
                Ok((n, _)) => n,
                Err(_) => return false,
            };
        }
        true
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
    lingering: Arc<Lingering>,
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
    let tap = Arc::new(Mutex::new(tap));
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = async {
        let end = pump(cr, sw, Arc::clone(&tap), Arc::clone(&shared), Dir::ToServer).await;
        // The client has gone (or the server cannot be written to): until the
        // server closes too, this connection lingers.
        lingering.enter();
        end
    };
    let down = pump(sr, cw, Arc::clone(&tap), Arc::clone(&shared), Dir::ToClient);
    let (a, b) = tokio::join!(up, down);
    lingering.leave();
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

/// Copy one direction, decoding a copy; on EOF, half-close the other side so
/// the peer sees it too.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    tap: Arc<Mutex<Tap>>,
    shared: Arc<Shared>,
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
                let _ = to.shutdown().await;
                return End::Eof;
            }
            Ok(Ok(n)) => n,
        };
        // Decode before forwarding: the peer cannot answer what it has not
        // seen, so a switch to DEFLATE is known before the next bytes arrive.
        let tapped = match tap.lock() {
            Ok(mut t) => t.feed(dir, &buf[..n]),
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
        if let Err(e) = to.write_all(&buf[..n]).await {
            return End::Error(e.to_string());
        }
    }
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

    /// A relay on a multi-threaded runtime in front of an upstream that, once
    /// the client has gone, closes its side when told on `close` (never if
    /// that is dropped).
    fn relay_with_upstream(
        close: std::sync::mpsc::Receiver<()>,
    ) -> (tokio::runtime::Runtime, Relay) {
        use std::io::Read as _;
        let upstream = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let up_addr = upstream.local_addr().expect("addr");
        std::thread::spawn(move || {
            let (mut s, _) = upstream.accept().expect("accept");
            let mut buf = [0u8; 64];
            while s.read(&mut buf).is_ok_and(|n| n > 0) {}
            if close.recv().is_err() {
                std::thread::sleep(Duration::from_secs(5));
            }
            drop(s);
        });
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
            .block_on(Relay::start(listen, up_addr, shared))
            .expect("relay");
        (rt, relay)
    }

    /// The client connects, sends a line and hangs up; then the relay has
    /// seen it go (bounded wait).
    fn client_comes_and_goes(relay: &Relay) {
        use std::io::Write as _;
        let mut c = std::net::TcpStream::connect(relay.addr()).expect("connect");
        c.write_all(b"EXIT\r\n").expect("write");
        drop(c);
        let deadline = Instant::now() + Duration::from_secs(10);
        while relay.lingering.count.lock().map(|n| *n).unwrap_or(0) == 0 {
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
        let (_rt, relay) = relay_with_upstream(closing);
        client_comes_and_goes(&relay);
        assert!(!relay.settle(Duration::from_millis(100)));
        close.send(()).expect("close");
        assert!(relay.settle(Duration::from_secs(10)));
    }

    /// Proves: a server that keeps a half-closed connection open is waited
    /// for no longer than the timeout.
    #[test]
    fn settle_gives_up_at_its_deadline() {
        let (close, closing) = std::sync::mpsc::channel::<()>();
        drop(close);
        let (_rt, relay) = relay_with_upstream(closing);
        client_comes_and_goes(&relay);
        let started = Instant::now();
        assert!(!relay.settle(Duration::from_millis(200)));
        assert!(started.elapsed() < Duration::from_secs(4));
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
