//! The tokio driver: accepts connections and runs a [`Session`] over each one.
//!
//! This and the runner are the only modules that touch sockets. Every read has a
//! deadline (the idle timeout), every buffer a bound: received plaintext enters
//! the session at most [`CHUNK`] bytes at a time, and the framer's limits are
//! checked after each chunk, so a deflate bomb cannot grow memory either.

mod deflate;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

pub use deflate::Deflate;

use crate::events::{EventKind, EventLog};
use crate::session::{After, Incoming, Session, SessionConfig};
use crate::store::{SessionId, Store};

/// Largest piece of received plaintext handed to a session at once.
pub const CHUNK: usize = 64 * 1024;

/// Server-wide settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// What each session needs.
    pub session: SessionConfig,
    /// Close a connection that sends nothing for this long (backupd uses
    /// `sync_timeout`, 30 minutes by default).
    pub idle_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            session: SessionConfig::default(),
            idle_timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// State every connection shares.
#[derive(Debug)]
pub struct Shared {
    store: Mutex<Store>,
    config: Arc<SessionConfig>,
    idle_timeout: Duration,
    next_session: AtomicU64,
    events: Mutex<EventLog>,
    started: Instant,
}

impl Shared {
    /// Shared state over `store`.
    pub fn new(store: Store, config: ServerConfig) -> Arc<Shared> {
        Arc::new(Shared {
            store: Mutex::new(store),
            config: Arc::new(config.session),
            idle_timeout: config.idle_timeout,
            next_session: AtomicU64::new(1),
            events: Mutex::new(EventLog::default()),
            started: Instant::now(),
        })
    }

    /// The event log.
    pub fn events(&self) -> MutexGuard<'_, EventLog> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, session: SessionId, kind: EventKind) {
        let t_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.events().push(t_us, session, kind);
    }

    /// Lock the store. A panic while it was held leaves it usable: every store
    /// operation leaves it consistent before it can panic.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Accept connections on `listener` until `shutdown` resolves, then drop every
/// open connection and return.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let shared = Arc::clone(&shared);
                    conns.spawn(async move {
                        // A failed connection is the client's business; the server goes on.
                        let _ = connection(stream, shared).await;
                    });
                }
                // Out of descriptors and the like: back off briefly, keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

/// A running server on its own tasks, for tests and the CLI.
#[derive(Debug)]
pub struct FakeBackupd {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FakeBackupd {
    /// Bind `listen` (use port 0) and serve `store` in the current runtime.
    pub async fn start(
        listen: SocketAddr,
        store: Store,
        config: ServerConfig,
    ) -> io::Result<FakeBackupd> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Shared::new(store, config);
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, Arc::clone(&shared), async {
            let _ = rx.await;
        }));
        Ok(FakeBackupd {
            addr,
            shared,
            stop: Some(tx),
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (to read the store).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stop accepting, close every connection and wait for that.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for FakeBackupd {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The byte stream of one connection, inflating and deflating once asked to.
struct Conn {
    stream: TcpStream,
    deflate: Option<Deflate>,
    /// Compressed bytes received and not yet inflated.
    pending: Vec<u8>,
    buf: Vec<u8>,
}

impl Conn {
    async fn write(&mut self, plain: &[u8]) -> io::Result<()> {
        match self.deflate.as_mut() {
            Some(d) => {
                let z = d.compress(plain)?;
                self.stream.write_all(&z).await
            }
            None => self.stream.write_all(plain).await,
        }
    }

    /// Up to [`CHUNK`] bytes of plaintext; empty at end of stream.
    async fn read(&mut self, idle: Duration) -> io::Result<Vec<u8>> {
        loop {
            if let Some(d) = self.deflate.as_mut() {
                if !self.pending.is_empty() {
                    let mut out = vec![0; CHUNK];
                    let (used, made) = d.decompress(&self.pending, &mut out)?;
                    self.pending.drain(..used);
                    if made > 0 {
                        out.truncate(made);
                        return Ok(out);
                    }
                }
            }
            let n = tokio::time::timeout(idle, self.stream.read(&mut self.buf))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "idle for too long"))??;
            if n == 0 {
                return Ok(Vec::new());
            }
            if self.deflate.is_none() {
                return Ok(self.buf[..n].to_vec());
            }
            // Bounded: the pending buffer is drained before the next read.
            self.pending.extend_from_slice(&self.buf[..n]);
        }
    }
}

async fn connection(stream: TcpStream, shared: Arc<Shared>) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let id = shared.next_session.fetch_add(1, Ordering::Relaxed);
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown".to_owned(), |a| a.to_string());
    shared.record(id, EventKind::Connected { peer });
    let mut session = Session::new(id, Arc::clone(&shared.config));
    let mut conn = Conn {
        stream,
        deflate: None,
        pending: Vec::new(),
        buf: vec![0; CHUNK],
    };
    let result = drive(&mut session, &mut conn, &shared).await;
    session.end(&mut shared.store());
    let _ = conn.stream.shutdown().await;
    let reason = match &result {
        Ok(reason) => (*reason).to_owned(),
        Err(e) => format!("error: {e}"),
    };
    shared.record(id, EventKind::Closed { reason });
    result.map(|_| ())
}

/// Run one connection to its end; the reason it ended.
async fn drive(
    session: &mut Session,
    conn: &mut Conn,
    shared: &Shared,
) -> io::Result<&'static str> {
    conn.write(&session.greeting().encode()).await?;
    loop {
        loop {
            let incoming = match session.next_incoming() {
                Ok(Some(i)) => i,
                Ok(None) => break,
                Err(e) => {
                    let response = session.frame_error(&e);
                    record_reply(shared, session.id(), &response.replies);
                    conn.write(&response.encode()).await?;
                    return Ok("framing error");
                }
            };
            record_command(shared, session, &incoming);
            let response = session.execute(incoming, &mut shared.store());
            record_reply(shared, session.id(), &response.replies);
            conn.write(&response.encode()).await?;
            match response.after {
                After::Continue => {}
                After::Close => return Ok("closed by the server after its reply"),
                After::StartDeflate => {
                    if session.buffered() > 0 {
                        // The client must wait for our OK before compressing.
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "data sent between COMPRESS and its reply",
                        ));
                    }
                    conn.deflate = Some(Deflate::default());
                }
            }
        }
        let data = conn.read(shared.idle_timeout).await?;
        if data.is_empty() {
            return Ok("end of stream");
        }
        session.push(&data);
    }
}

fn record_command(shared: &Shared, session: &Session, incoming: &Incoming) {
    let (bytes, head) = session.last_frame();
    let (verb, users, mailboxes) = match incoming {
        Incoming::Command(c) => (
            c.label(),
            c.users(),
            c.mailboxes().into_iter().map(str::to_owned).collect(),
        ),
        Incoming::Invalid(_) => ("INVALID".to_owned(), Vec::new(), Vec::new()),
        Incoming::SaslResponse(_) => ("SASL RESPONSE".to_owned(), Vec::new(), Vec::new()),
    };
    shared.record(
        session.id(),
        EventKind::Command {
            verb,
            users,
            mailboxes,
            bytes,
            text: head.to_owned(),
        },
    );
}

fn record_reply(shared: &Shared, session: SessionId, replies: &[crate::proto::Reply]) {
    let data_lines = replies.iter().filter(|r| !r.is_final()).count();
    let line = replies
        .iter()
        .rev()
        .find(|r| r.is_final())
        .map(crate::proto::Reply::to_line)
        .unwrap_or_default();
    shared.record(session, EventKind::Reply { line, data_lines });
}
