//! The tokio driver: accepts connections and runs a [`Session`] over each one;
//! each command goes through the sans-IO core ([`crate::effect`]: the session
//! and the fault [`Engine`]), and the driver carries out the [`Effect`] it
//! returns: writes, closes, waits, restarts.
//!
//! This, the control endpoint and the runner are the only modules that touch
//! sockets. Every read has a deadline (the idle timeout), every buffer a bound:
//! received plaintext enters the session at most [`CHUNK`] bytes at a time, and
//! the framer's limits are checked after each chunk, so a deflate bomb cannot
//! grow memory either.
//!
//! Lock order, everywhere: engine, then store, then events.

mod conn;
pub mod control;
mod deflate;
mod fake;

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use deflate::Deflate;
pub use fake::FakeBackupd;

use conn::{idle_deadline, Conn, ReadEnd};

use crate::effect::{self, Effect, Judgement, World};
use crate::events::{EventKind, EventLog};
use crate::fault::{CommandEvent, Engine, Plan};
use crate::history::History;
use crate::proto::Reply;
use crate::rng::Seed;
use crate::session::{After, CommandLabel, Incoming, Response, Session, SessionConfig};
use crate::store::{SessionId, Store};

/// Largest piece of received plaintext handed to a session at once.
pub const CHUNK: usize = 64 * 1024;

/// How often time-based lock windows are checked when no command arrives.
const TICK: Duration = Duration::from_millis(20);

/// Server-wide settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// What each session needs.
    pub session: SessionConfig,
    /// Close a connection that sends nothing for this long (backupd uses
    /// `sync_timeout`, 30 minutes by default), or whose command is not whole
    /// this long after its first byte (a slow loris). With the sync_server
    /// personality, also the longest a command waits for a lock window.
    pub idle_timeout: Duration,
    /// Locks and faults.
    pub plan: Plan,
    /// The seed every random choice comes from.
    pub seed: Seed,
    /// Keep the acknowledged-write history ([`crate::history`]): the runner
    /// does, to judge; a server serving by hand does not need the memory.
    pub history: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            session: SessionConfig::default(),
            idle_timeout: Duration::from_secs(30 * 60),
            plan: Plan::default(),
            seed: Seed(0),
            history: false,
        }
    }
}

/// State every connection shares.
#[derive(Debug)]
pub struct Shared {
    engine: Mutex<Engine>,
    store: Mutex<Store>,
    events: Mutex<EventLog>,
    /// Every write acknowledged and every read answered (when kept).
    history: Option<Mutex<History>>,
    /// While set, connections that open are quiet: numbered from
    /// [`crate::history::RUNNER_SESSIONS`] on, and kept out of the event log for their whole
    /// life (the runner's own reads of the target: they are not the client's
    /// traffic, and must not shift its session numbers). The history still
    /// records them.
    quiet: std::sync::atomic::AtomicBool,
    next_quiet: AtomicU64,
    config: Arc<SessionConfig>,
    idle_timeout: Duration,
    next_session: AtomicU64,
    started: Instant,
    /// Bumped by a `restart` fault: every connection closes.
    restart: watch::Sender<u64>,
    /// Scenario triggers: which holds were reached and released.
    holds: Mutex<std::collections::BTreeMap<u64, HoldPhase>>,
    /// Bumped whenever a hold is released.
    hold_released: watch::Sender<u64>,
    /// Bumped when a hold is reached or by [`Shared::poke`]: what a runner
    /// waits on while a client runs, instead of polling.
    pokes: Mutex<u64>,
    poked: std::sync::Condvar,
}

/// Where a trigger's hold is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldPhase {
    /// No command matched yet.
    Waiting,
    /// A command is held now.
    Reached,
    /// Released: the command went on.
    Released,
}

/// How long a held command waits for its release before going on anyway.
pub const HOLD_MAX: Duration = Duration::from_secs(120);

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every operation leaves its state consistent before it can panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Shared state over `store`.
    pub fn new(store: Store, config: ServerConfig) -> Arc<Shared> {
        Arc::new(Shared {
            engine: Mutex::new({
                let mut e = Engine::new(config.plan, config.seed);
                e.set_blocking(config.session.personality.blocks_on_locks());
                e
            }),
            store: Mutex::new(store),
            events: Mutex::new(EventLog::default()),
            history: config.history.then(|| Mutex::new(History::new())),
            quiet: std::sync::atomic::AtomicBool::new(false),
            next_quiet: AtomicU64::new(crate::history::RUNNER_SESSIONS),
            config: Arc::new(config.session),
            idle_timeout: config.idle_timeout,
            next_session: AtomicU64::new(1),
            started: Instant::now(),
            restart: watch::channel(0).0,
            holds: Mutex::new(std::collections::BTreeMap::new()),
            hold_released: watch::channel(0).0,
            pokes: Mutex::new(0),
            poked: std::sync::Condvar::new(),
        })
    }

    /// Wake whoever waits in [`Shared::wait_poke`] (a client run ended, a
    /// hold was reached).
    pub fn poke(&self) {
        *relock(&self.pokes) += 1;
        self.poked.notify_all();
    }

    /// How many pokes so far (pass it to [`Shared::wait_poke`]).
    pub fn pokes(&self) -> u64 {
        *relock(&self.pokes)
    }

    /// Wait until a poke after `seen`, or `timeout`; returns the pokes now.
    pub fn wait_poke(&self, seen: u64, timeout: Duration) -> u64 {
        let guard = relock(&self.pokes);
        let (guard, _) = self
            .poked
            .wait_timeout_while(guard, timeout, |n| *n == seen)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }

    /// Hold the `nth` command matching `when` until [`Shared::release_hold`].
    pub fn add_hold(&self, when: crate::fault::Match, nth: u64) -> u64 {
        let id = self.engine().add_hold(when, nth);
        relock(&self.holds).insert(id, HoldPhase::Waiting);
        id
    }

    /// Where hold `id` is (`None` for an unknown id).
    pub fn hold_phase(&self, id: u64) -> Option<HoldPhase> {
        relock(&self.holds).get(&id).copied()
    }

    /// Let the command held by `id` go on (or never hold one, if not reached yet).
    pub fn release_hold(&self, id: u64) {
        relock(&self.holds).insert(id, HoldPhase::Released);
        self.hold_released.send_modify(|g| *g += 1);
    }

    async fn wait_released(&self, id: u64) -> bool {
        let mut rx = self.hold_released.subscribe();
        let wait = async {
            loop {
                if self.hold_phase(id) == Some(HoldPhase::Released) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(HOLD_MAX, wait).await.is_ok()
    }

    /// The store (lock it after [`Shared::engine`] when you need both).
    pub fn store(&self) -> MutexGuard<'_, Store> {
        relock(&self.store)
    }

    /// The lock and fault engine.
    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        relock(&self.engine)
    }

    /// The event log.
    pub fn events(&self) -> MutexGuard<'_, EventLog> {
        relock(&self.events)
    }

    /// Milliseconds since the server started: the engine's clock.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Microseconds since the server started: the event log's clock.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Record an event (not for a connection opened while [`Shared::set_quiet`]).
    pub fn record(&self, session: SessionId, kind: EventKind) {
        if session >= crate::history::RUNNER_SESSIONS {
            return;
        }
        let t_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.events().push(t_us, session, kind);
    }

    /// Keep the connections opened from now on out of the event log (true),
    /// or stop doing so (false): for the runner's own reads of the target,
    /// which the history records but which are not the client's traffic.
    pub fn set_quiet(&self, quiet: bool) {
        self.quiet.store(quiet, Ordering::Relaxed);
    }

    /// The acknowledged-write history, when kept ([`ServerConfig::history`]).
    pub fn history(&self) -> Option<MutexGuard<'_, History>> {
        self.history.as_ref().map(relock)
    }

    /// Record a command in the history (when kept); `None` for input that is
    /// no command (a SASL answer, an invalid line), whose reply answers nothing
    /// the history tracks.
    pub fn history_command(
        &self,
        session: SessionId,
        text: &str,
        cmd: Option<&crate::proto::Command>,
    ) {
        if let Some(mut h) = self.history() {
            h.command(session, self.now_us(), text, cmd);
        }
    }

    /// Record a complete response in the history (when kept).
    pub fn history_reply(&self, session: SessionId, replies: &[Reply]) {
        if let Some(mut h) = self.history() {
            h.reply(session, self.now_us(), replies);
        }
    }

    /// Record in the history that what `session` sends or receives can no
    /// longer be followed (when kept): the history is then incomplete, and
    /// its check gives no verdict.
    pub fn history_lost(&self, session: SessionId, why: &str) {
        if let Some(mut h) = self.history() {
            h.lost(session, why);
        }
    }

    /// Record in the history that `session` ended (when kept).
    pub fn history_closed(&self, session: SessionId) {
        if let Some(mut h) = self.history() {
            h.closed(session, self.now_us());
        }
    }

    /// Name this point in the history (when kept): `step 3`, `catch-up`.
    pub fn history_mark(&self, name: &str) {
        if let Some(mut h) = self.history() {
            h.mark(self.now_us(), name);
        }
    }

    /// A fresh connection id (the relay numbers its connections like the
    /// fake); from [`crate::history::RUNNER_SESSIONS`] on while [`Shared::set_quiet`].
    pub fn next_session_id(&self) -> SessionId {
        if self.quiet.load(Ordering::Relaxed) {
            self.next_quiet.fetch_add(1, Ordering::Relaxed)
        } else {
            self.next_session.fetch_add(1, Ordering::Relaxed)
        }
    }

    /// The settings every session of this server shares.
    pub fn session_config(&self) -> Arc<SessionConfig> {
        Arc::clone(&self.config)
    }

    /// Record the mark `name` and let lock windows waiting for it move.
    pub fn mark(&self, name: &str) {
        let now = self.now_ms();
        {
            let mut engine = self.engine();
            engine.mark(name, now, self.store().holds_mut());
        }
        self.record(
            0,
            EventKind::Mark {
                name: name.to_owned(),
            },
        );
    }

    fn tick(&self) {
        let now = self.now_ms();
        let mut engine = self.engine();
        engine.tick(now, self.store().holds_mut());
    }
}

/// The core's view of the shared state.
impl World for Shared {
    fn engine(&self) -> MutexGuard<'_, Engine> {
        Shared::engine(self)
    }
    fn store(&self) -> MutexGuard<'_, Store> {
        Shared::store(self)
    }
    fn now_ms(&self) -> u64 {
        Shared::now_ms(self)
    }
    fn record(&self, session: SessionId, kind: EventKind) {
        Shared::record(self, session, kind);
    }
}

/// Accept connections on `listener` until `shutdown` resolves, then drop every
/// open connection and return.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    let mut conns = JoinSet::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => shared.tick(),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let now = shared.now_ms();
                    if !shared.engine().accept_connection(now) {
                        shared.record(0, EventKind::Refused { peer: peer.to_string() });
                        drop(stream);
                        continue;
                    }
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

async fn connection(stream: TcpStream, shared: Arc<Shared>) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown".to_owned(), |a| a.to_string());
    serve_stream(stream, peer, shared).await.map(|_| ())
}

/// Run one connection over `stream` (from `peer`, as the event log names it)
/// to its end, exactly as a TCP connection is run: the greeting, DEFLATE once
/// asked, the idle timeout, faults and locks. Returns why it ended. The fuzz
/// target `driver` runs it over an in-memory stream.
pub async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: String,
    shared: Arc<Shared>,
) -> io::Result<String> {
    let id = shared.next_session_id();
    shared.record(id, EventKind::Connected { peer });
    let mut session = Session::new(id, Arc::clone(&shared.config));
    let mut conn = Conn::new(stream, shared.restart.subscribe(), shared.idle_timeout);
    let release = ReleaseOnDrop {
        shared: Arc::clone(&shared),
        session: id,
    };
    let result = drive(&mut session, &mut conn, &shared).await;
    drop(release);
    let reason = match &result {
        Ok(reason) => reason.clone(),
        Err(e) => format!("error: {e}"),
    };
    // Recorded before the peer can see the close, so a reconnect is logged after it.
    shared.history_closed(id);
    shared.record(id, EventKind::Closed { reason });
    let _ = conn.stream.shutdown().await;
    result
}

/// Releases a session's users when the connection ends, however it ends (an
/// error, a panic in the task, the server shutting down).
struct ReleaseOnDrop {
    shared: Arc<Shared>,
    session: SessionId,
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.shared.store().release(self.session);
    }
}

/// What the driver does after one command.
enum Next {
    Continue,
    Close(String),
}

/// Run one connection to its end; the reason it ended.
async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session,
    conn: &mut Conn<S>,
    shared: &Shared,
) -> io::Result<String> {
    conn.write(&session.greeting().encode()).await?;
    let mut index = 0u64;
    // A command must arrive whole within the idle timeout of its first byte:
    // a client trickling bytes (slow loris) never lets a per-read timeout
    // pass. (backupd's timeout is per read only; a real client sends each
    // command at once, so this never cuts one short.)
    let mut whole_by = None;
    loop {
        loop {
            let incoming = match session.next_incoming() {
                Ok(Some(i)) => i,
                Ok(None) => break,
                Err(e) => {
                    let response = session.frame_error(&e);
                    record_reply(shared, session.id(), &response.replies);
                    conn.write(&response.encode()).await?;
                    return Ok(format!("framing error: {e}"));
                }
            };
            // Labelled once: the event log and the fault engine read it.
            let label = incoming.label();
            record_command(shared, session, &incoming, &label);
            index += 1;
            if let Next::Close(reason) =
                one_command(session, conn, shared, incoming, &label, index).await?
            {
                return Ok(reason);
            }
        }
        if session.buffered() == 0 {
            whole_by = None;
        } else if whole_by.is_none() {
            whole_by = Some(idle_deadline(
                tokio::time::Instant::now(),
                shared.idle_timeout,
            ));
        }
        match conn.read(whole_by).await? {
            ReadEnd::Data => session.push(conn.data()),
            ReadEnd::Eof => return Ok("end of stream".into()),
            ReadEnd::Restart => return Ok("server restart (fault)".into()),
        }
    }
}

/// Run one command through the core ([`crate::effect`]) and carry out its
/// effect; waits (a trigger's hold, a blocking lock window) happen here.
async fn one_command<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session,
    conn: &mut Conn<S>,
    shared: &Shared,
    incoming: Incoming,
    label: &CommandLabel,
    index: u64,
) -> io::Result<Next> {
    if !matches!(incoming, Incoming::Command(_)) {
        // Invalid lines and SASL answers are not protocol events for faults.
        let effect = effect::not_a_command(shared, session, incoming);
        return carry(session, conn, shared, effect).await;
    }
    let ev = effect::command_event(label, session.id(), index);
    let blocking = shared.config.personality.blocks_on_locks();
    let verdict = loop {
        match effect::judge(shared, &ev, blocking) {
            // A trigger: the runner makes its changes while this command
            // waits, then the command is judged again (a lock opened meanwhile
            // applies).
            Judgement::Hold { id } => hold(shared, session.id(), id).await,
            // sync_server blocks where backupd answers LOCKED: the command
            // waits until no lock window matches it any more.
            Judgement::Block { lock, verdict } => {
                if !wait_for_locks(shared, session.id(), &ev, lock).await {
                    return Ok(Next::Close("lock wait deadline passed".into()));
                }
                break verdict;
            }
            Judgement::Go(verdict) => break verdict,
        }
    };
    let effect = effect::carry_out(shared, session, incoming, &ev, verdict);
    carry(session, conn, shared, effect).await
}

/// Hold the command until trigger `id` is released (or [`HOLD_MAX`] passed).
async fn hold(shared: &Shared, session: SessionId, id: u64) {
    {
        let mut holds = relock(&shared.holds);
        if holds.get(&id) != Some(&HoldPhase::Released) {
            holds.insert(id, HoldPhase::Reached);
        }
    }
    shared.record(session, EventKind::Held { hold: id });
    shared.poke();
    let released = shared.wait_released(id).await;
    shared.record(session, EventKind::Released { hold: id });
    if !released {
        shared.release_hold(id);
    }
}

/// Carry out what the core decided.
async fn carry<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session,
    conn: &mut Conn<S>,
    shared: &Shared,
    effect: Effect,
) -> io::Result<Next> {
    match effect {
        Effect::Send { response, delay } => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            send(session, conn, shared, &response).await
        }
        Effect::Partial { bytes } => {
            conn.write(&bytes).await?;
            Ok(Next::Close(format!(
                "fault partial-reply after {} bytes",
                bytes.len()
            )))
        }
        Effect::Close { reason } => Ok(Next::Close(reason)),
        Effect::Stall => {
            // Read and discard until the client gives up, bounded by the idle timeout.
            loop {
                match conn.read(None).await? {
                    ReadEnd::Data => {}
                    ReadEnd::Eof => {
                        return Ok(Next::Close("fault stall, then end of stream".into()))
                    }
                    ReadEnd::Restart => {
                        return Ok(Next::Close("fault stall, then server restart".into()))
                    }
                }
            }
        }
        Effect::Restart => {
            shared.restart.send_modify(|g| *g += 1);
            Ok(Next::Close("fault restart".into()))
        }
    }
}

/// The sync_server personality: wait until no lock window matches `ev` (the
/// first one found is `first`), polling every [`TICK`] and letting time-based
/// windows close. False when the idle timeout passed first: real
/// sync_server would go on blocking, but its client has given up by then
/// (`sync_timeout`), so the connection is closed.
async fn wait_for_locks(
    shared: &Shared,
    session: SessionId,
    ev: &CommandEvent<'_>,
    first: String,
) -> bool {
    let started = Instant::now();
    effect::start_block(shared, ev, &first);
    shared.record(
        session,
        EventKind::LockWait {
            lock: first.clone(),
        },
    );
    let deadline = started + shared.idle_timeout;
    let done = loop {
        if !effect::still_blocked(shared, ev) {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(TICK).await;
    };
    shared.record(
        session,
        EventKind::LockWaited {
            lock: first,
            waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            timed_out: !done,
        },
    );
    done
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session,
    conn: &mut Conn<S>,
    shared: &Shared,
    response: &Response,
) -> io::Result<Next> {
    record_reply(shared, session.id(), &response.replies);
    conn.write(&response.encode()).await?;
    Ok(match response.after {
        After::Continue => Next::Continue,
        After::Close => Next::Close("closed by the server after its reply".into()),
        After::StartDeflate => {
            if session.buffered() > 0 {
                // The client must wait for our OK before compressing.
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "data sent between COMPRESS and its reply",
                ));
            }
            conn.deflate = Some(Deflate::default());
            Next::Continue
        }
    })
}

fn record_command(shared: &Shared, session: &Session, incoming: &Incoming, label: &CommandLabel) {
    let (bytes, head) = session.last_frame();
    shared.history_command(
        session.id(),
        head,
        match incoming {
            Incoming::Command(c) => Some(c),
            _ => None,
        },
    );
    shared.record(session.id(), label.to_event(bytes, head.to_owned()));
}

fn record_reply(shared: &Shared, session: SessionId, replies: &[Reply]) {
    shared.history_reply(session, replies);
    let data_lines = replies.iter().filter(|r| !r.is_final()).count();
    let line = replies
        .iter()
        .rev()
        .find(|r| r.is_final())
        .map(Reply::to_line)
        .unwrap_or_default();
    shared.record(session, EventKind::Reply { line, data_lines });
}
