//! The sans-IO core of a connection: the [`Session`] and the fault [`Engine`]
//! turn each incoming command into an [`Effect`], a value the driver carries
//! out (`crate::server` over TCP, or a test by hand). Nothing here touches a
//! socket or sleeps: a wait is a value the driver acts on ([`Judgement::Hold`],
//! [`Judgement::Block`], a delayed [`Effect::Send`]).
//!
//! One command goes through two steps:
//! 1. [`judge`]: the engine's verdict. A scenario trigger holds the command
//!    ([`Judgement::Hold`]: the driver waits for its release, then asks
//!    again); with the sync_server personality an open lock window makes it
//!    wait first ([`Judgement::Block`]: the driver waits while
//!    [`still_blocked`]); else the verdict stands ([`Judgement::Go`]).
//! 2. [`carry_out`]: the verdict on this command: executed normally, answered
//!    `LOCKED` by a lock window, or a fault's action, one small file per
//!    action family: [`connection`] (drop before or after, partial reply,
//!    stall, restart, refuse connections), [`reply`] (no, bad, bye, delay),
//!    [`data`] (lie, hide-missing, corrupt).
//!
//! A `LOCKED` the session gives by itself (a user another session or a `hold`
//! window holds) is charged to its lock by the session's typed refusal, not by
//! reading the reply's text.

pub mod connection;
pub mod data;
pub mod reply;

use std::sync::MutexGuard;
use std::time::Duration;

use crate::events::EventKind;
use crate::fault::{Action, CommandEvent, Engine, Verdict};
use crate::proto::Reply;
use crate::session::{After, CommandLabel, Incoming, Response, Session};
use crate::store::Store;
use crate::types::SessionId;

/// What the core needs around it, with no I/O: the shared engine and store
/// (each behind the driver's lock, taken one at a time: engine before store),
/// the clock, and the event log.
pub trait World {
    /// The fault engine.
    fn engine(&self) -> MutexGuard<'_, Engine>;
    /// The store.
    fn store(&self) -> MutexGuard<'_, Store>;
    /// Milliseconds since the server started.
    fn now_ms(&self) -> u64;
    /// Record an event for `session`.
    fn record(&self, session: SessionId, kind: EventKind);
}

/// What the driver does with one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send `response` (after `delay`), then go on as its [`After`] says.
    Send {
        /// The replies and what follows them.
        response: Response,
        /// Wait this long first (a `delay` fault).
        delay: Duration,
    },
    /// Write these bytes (a prefix of the reply), then close.
    Partial {
        /// The bytes to write.
        bytes: Vec<u8>,
    },
    /// Close the connection without a reply.
    Close {
        /// Why, for the event log.
        reason: String,
    },
    /// Never answer: read and discard until the peer gives up.
    Stall,
    /// Close every connection (the store is kept).
    Restart,
}

impl Effect {
    /// Send `response` now.
    pub fn send(response: Response) -> Effect {
        Effect::Send {
            response,
            delay: Duration::ZERO,
        }
    }

    /// Send one reply now and go on.
    pub fn reply(r: Reply) -> Effect {
        Effect::send(Response {
            replies: vec![r],
            after: After::Continue,
        })
    }
}

/// The command `label` describes as the engine sees it: command `index`
/// of connection `session`.
pub fn command_event(label: &CommandLabel, session: SessionId, index: u64) -> CommandEvent<'_> {
    CommandEvent {
        session,
        index,
        verb: &label.verb,
        users: &label.users,
        mailboxes: &label.mailboxes,
    }
}

/// Where a command stands after [`judge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Held by a scenario trigger.
    Hold {
        /// The hold.
        id: u64,
    },
    /// sync_server: blocked by an open lock window; once no window blocks it,
    /// carry out `verdict`.
    Block {
        /// The first window it waits for.
        lock: String,
        /// The verdict to carry out then.
        verdict: Verdict,
    },
    /// Go on with this verdict.
    Go(Verdict),
}

/// The engine's verdict on `ev` now; with `blocking` (the sync_server
/// personality), an open lock window that matches makes it wait (such a
/// window never answers `LOCKED` then).
pub fn judge(world: &impl World, ev: &CommandEvent<'_>, blocking: bool) -> Judgement {
    let now = world.now_ms();
    let verdict = {
        let mut engine = world.engine();
        let v = engine.on_command(ev, now, world.store().holds_mut());
        v
    };
    if let Verdict::Hold { id } = verdict {
        return Judgement::Hold { id };
    }
    if blocking {
        if let Some(lock) = world.engine().blocking_lock(ev) {
            return Judgement::Block { lock, verdict };
        }
    }
    Judgement::Go(verdict)
}

/// A blocked command starts waiting for `lock`: one hit on it (an
/// `attempts` window counts waiting commands).
pub fn start_block(world: &impl World, ev: &CommandEvent<'_>, lock: &str) {
    let mut engine = world.engine();
    engine.lock_waited(lock, ev, world.store().holds_mut());
}

/// Whether `ev` still waits for a lock window, time having passed.
pub fn still_blocked(world: &impl World, ev: &CommandEvent<'_>) -> bool {
    let now = world.now_ms();
    let mut engine = world.engine();
    engine.tick(now, world.store().holds_mut());
    engine.blocking_lock(ev).is_some()
}

/// Carry out `verdict` on `incoming` (the command `ev` describes).
pub fn carry_out(
    world: &impl World,
    session: &mut Session,
    incoming: Incoming,
    ev: &CommandEvent<'_>,
    verdict: Verdict,
) -> Effect {
    match verdict {
        Verdict::Pass | Verdict::Hold { .. } => Effect::send(execute(world, session, incoming, ev)),
        Verdict::Locked { lock } => {
            world.record(session.id(), EventKind::LockHit { lock });
            Effect::reply(Reply::locked())
        }
        Verdict::Fault { rule, action } => {
            if !matches!(action, Action::Corrupt { .. } | Action::DropCorrupt { .. }) {
                // `corrupt` names what it broke once it has.
                world.record(
                    session.id(),
                    EventKind::Fault {
                        rule: rule.clone(),
                        action: action.name().to_owned(),
                    },
                );
            }
            let cx = Fired {
                world,
                session,
                incoming,
                ev,
                rule,
            };
            match action {
                Action::DropBefore => connection::drop_before(),
                Action::DropAfter => connection::drop_after(cx),
                Action::PartialReply { bytes } => connection::partial_reply(cx, bytes),
                Action::Stall => connection::stall(),
                Action::Restart { .. } => connection::restart(),
                Action::RefuseConnections { .. } => connection::refuse_connections(cx),
                Action::No { text } => reply::no(text),
                Action::Bad { text } => reply::bad(text),
                Action::Bye { text } => reply::bye(text),
                Action::Delay { ms } => reply::delay(cx, ms),
                Action::Lie => data::lie(cx),
                Action::HideMissing { count } => data::hide_missing(cx, count),
                Action::Corrupt { what } => data::corrupt(cx, what),
                Action::DropCorrupt { what } => data::drop_corrupt(cx, what),
            }
        }
    }
}

/// Input that is no command (an invalid line, a SASL answer): executed, not a
/// protocol event for faults.
pub fn not_a_command(world: &impl World, session: &mut Session, incoming: Incoming) -> Effect {
    let response = session.execute(incoming, &mut world.store());
    Effect::send(response)
}

/// A fault that fired on a command: what its action needs.
pub struct Fired<'a, 'e, W: World> {
    world: &'a W,
    session: &'a mut Session,
    incoming: Incoming,
    ev: &'a CommandEvent<'e>,
    rule: String,
}

impl<W: World> Fired<'_, '_, W> {
    /// Execute the command as if no fault had fired.
    fn execute(self) -> Response {
        execute(self.world, self.session, self.incoming, self.ev)
    }
}

/// Execute a command; a `LOCKED` the session gave by itself (a held user) is
/// charged to the lock window holding it, or to another connection.
fn execute(
    world: &impl World,
    session: &mut Session,
    incoming: Incoming,
    ev: &CommandEvent<'_>,
) -> Response {
    let response = session.execute(incoming, &mut world.store());
    if session.take_refusal().is_some() {
        let lock = {
            let mut engine = world.engine();
            let l = engine.locked_by_holder(ev, world.store().holds_mut());
            l
        };
        world.record(
            session.id(),
            EventKind::LockHit {
                lock: lock.unwrap_or_else(|| "another connection".into()),
            },
        );
    }
    response
}
