//! Faults on the connection: close it before or after executing, send part
//! of the reply, never answer, restart the server, refuse new connections
//! for a while (the engine keeps that window; this command goes on).

use super::{Effect, Fired, World};

/// `drop-before`: close without executing.
pub fn drop_before() -> Effect {
    Effect::Close {
        reason: "fault drop-before".into(),
    }
}

/// `drop-after`: execute, then close without replying.
pub fn drop_after(cx: Fired<'_, '_, impl World>) -> Effect {
    cx.execute();
    Effect::Close {
        reason: "fault drop-after".into(),
    }
}

/// `partial-reply`: execute, send at most `bytes` bytes of the reply (never
/// all of it), then close.
pub fn partial_reply(cx: Fired<'_, '_, impl World>, bytes: usize) -> Effect {
    let mut wire = cx.execute().encode();
    wire.truncate(bytes.min(wire.len().saturating_sub(1)));
    Effect::Partial { bytes: wire }
}

/// `stall`: never answer.
pub fn stall() -> Effect {
    Effect::Stall
}

/// `restart`: every connection closes (the engine refuses new ones for a while).
pub fn restart() -> Effect {
    Effect::Restart
}

/// `refuse-connections`: the engine refuses new connections for a while; this
/// command is executed normally.
pub fn refuse_connections(cx: Fired<'_, '_, impl World>) -> Effect {
    Effect::send(cx.execute())
}
