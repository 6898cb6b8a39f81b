//! Faults on what is stored or reported, to prove the checks catch a loss:
//! `lie` acknowledges without storing, `hide-missing` leaves GUIDs out of
//! `* MISSING`, `corrupt` breaks one kind of stored state after acknowledging.

use super::{Effect, Fired, World};
use crate::dlist::Value;
use crate::events::EventKind;
use crate::fault::Corruption;
use crate::proto::Reply;

/// `lie`: answer OK without executing (nothing is stored).
pub fn lie(cx: Fired<'_, '_, impl World>) -> Effect {
    Effect::reply(cx.session.success())
}

/// `hide-missing`: execute, then leave up to `count` GUIDs out of the
/// `* MISSING` line (dropping the line when it empties).
pub fn hide_missing(cx: Fired<'_, '_, impl World>, count: usize) -> Effect {
    let mut response = cx.execute();
    for r in response.replies.iter_mut() {
        if let Reply::Data(key, Value::List(items)) = r {
            if key == "MISSING" {
                let keep = items.len().saturating_sub(count);
                items.truncate(keep);
            }
        }
    }
    response.replies.retain(
        |r| !matches!(r, Reply::Data(k, Value::List(items)) if k == "MISSING" && items.is_empty()),
    );
    Effect::send(response)
}

/// `drop-corrupt`: close without executing, and break `what` in the store
/// (what the command names), as a target that loses data with a dropped
/// connection.
pub fn drop_corrupt(cx: Fired<'_, '_, impl World>, what: Corruption) -> Effect {
    let (world, session, ev) = (cx.world, cx.session.id(), cx.ev);
    let done = world.store().corrupt(what, ev.users, ev.mailboxes);
    world.record(
        session,
        EventKind::Fault {
            rule: cx.rule,
            action: format!("drop-corrupt {what}: {done}"),
        },
    );
    Effect::Close {
        reason: "fault drop-corrupt".into(),
    }
}

/// `corrupt`: execute and acknowledge, corrupting `what` in the store right
/// after; the fault's event names what it broke.
pub fn corrupt(cx: Fired<'_, '_, impl World>, what: Corruption) -> Effect {
    let (world, session, ev, rule) = (cx.world, cx.session.id(), cx.ev, cx.rule.clone());
    let response = cx.execute();
    let done = world.store().corrupt(what, ev.users, ev.mailboxes);
    world.record(
        session,
        EventKind::Fault {
            rule,
            action: format!("corrupt {what}: {done}"),
        },
    );
    Effect::send(response)
}
