//! Faults on the answer: `NO` or `BAD` without executing, `BYE` and close,
//! or the true answer late.

use std::time::Duration;

use super::{Effect, Fired, World};
use crate::proto::Reply;
use crate::session::{After, Response};

/// `no`: answer `NO text` without executing.
pub fn no(text: String) -> Effect {
    Effect::reply(Reply::No(text))
}

/// `bad`: answer `BAD text` without executing.
pub fn bad(text: String) -> Effect {
    Effect::reply(Reply::Bad(text))
}

/// `bye`: answer `BYE text` without executing, then close.
pub fn bye(text: String) -> Effect {
    Effect::send(Response {
        replies: vec![Reply::Bye(text)],
        after: After::Close,
    })
}

/// `delay`: execute, answer `ms` milliseconds later.
pub fn delay(cx: Fired<'_, '_, impl World>, ms: u64) -> Effect {
    Effect::Send {
        response: cx.execute(),
        delay: Duration::from_millis(ms),
    }
}
