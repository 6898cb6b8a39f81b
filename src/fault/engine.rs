//! [`Engine`]: the state of every lock window and fault rule, and the verdicts.

use std::collections::{BTreeMap, BTreeSet};

use super::{Action, Lock, LockMode, Match, Plan, Rule, Trigger};
use crate::rng::{Rng, Seed};
use crate::store::Holds;

mod status;
mod window;

pub use status::{LockStatus, RuleStatus, Status, UserCounters};
use window::LockState;
pub use window::NAMESPACE_LOCKED;

/// A command as the engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct CommandEvent<'a> {
    /// Connection number, from 1.
    pub session: u64,
    /// Command number within the connection, from 1.
    pub index: u64,
    /// The command label (`APPLY MAILBOX`).
    pub verb: &'a str,
    /// Users it touches.
    pub users: &'a [String],
    /// Mailboxes it names.
    pub mailboxes: &'a [String],
}

/// What to do with a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Execute it normally.
    Pass,
    /// Answer `NO IMAP_MAILBOX_LOCKED Mailbox locked` and store nothing.
    Locked {
        /// The lock that matched.
        lock: String,
    },
    /// Hold the command until the hold is released (a scenario trigger).
    Hold {
        /// The hold's id.
        id: u64,
    },
    /// A fault fired.
    Fault {
        /// The rule that fired.
        rule: String,
        /// What to do.
        action: Action,
    },
}

#[derive(Debug)]
struct HoldState {
    id: u64,
    when: Match,
    nth: u64,
    matches: u64,
    fired: bool,
}

#[derive(Debug)]
struct RuleState {
    rule: Rule,
    matches: u64,
    fires: u64,
}

/// Locks, faults and their counters.
#[derive(Debug)]
pub struct Engine {
    seed: Seed,
    rng: Rng,
    locks: Vec<LockState>,
    rules: Vec<RuleState>,
    users: BTreeMap<String, UserCounters>,
    refuse_until: u64,
    marks: Vec<String>,
    holds: Vec<HoldState>,
    next_hold: u64,
    /// The sync_server personality: lock windows make commands wait (the
    /// driver asks [`Engine::blocking_lock`]) and never answer `LOCKED`.
    blocking: bool,
}

impl Engine {
    /// An engine running `plan`, drawing from `seed`.
    pub fn new(plan: Plan, seed: Seed) -> Engine {
        let mut e = Engine {
            seed,
            rng: Rng::new(seed).fork("faults"),
            locks: Vec::new(),
            rules: Vec::new(),
            users: BTreeMap::new(),
            refuse_until: 0,
            marks: Vec::new(),
            holds: Vec::new(),
            next_hold: 1,
            blocking: false,
        };
        for l in plan.locks {
            e.add_lock(l, 0);
        }
        for r in plan.faults {
            e.add_rule(r);
        }
        e
    }

    /// The seed.
    pub fn seed(&self) -> Seed {
        self.seed
    }

    /// Add a lock window at time `now` (opened now if its `open` is `start`).
    pub fn add_lock(&mut self, lock: Lock, now: u64) {
        let active = lock.open == Trigger::Start;
        self.locks.push(LockState {
            lock,
            active,
            opened_at: now,
            hits: 0,
            hits_total: 0,
            open_matches: 0,
            close_matches: 0,
            done: false,
        });
    }

    /// Hold the `nth` command matching `when` (once); returns the hold's id.
    pub fn add_hold(&mut self, when: Match, nth: u64) -> u64 {
        let id = self.next_hold;
        self.next_hold += 1;
        self.holds.push(HoldState {
            id,
            when,
            nth: nth.max(1),
            matches: 0,
            fired: false,
        });
        id
    }

    /// Add a fault rule (consulted after the existing ones).
    pub fn add_rule(&mut self, rule: Rule) {
        self.rules.push(RuleState {
            rule,
            matches: 0,
            fires: 0,
        });
    }

    /// Open the lock called `name` now. False if there is none.
    pub fn open_lock(&mut self, name: &str, now: u64, holds: &mut Holds) -> bool {
        let found = self
            .locks
            .iter_mut()
            .find(|l| l.lock.name == name)
            .map(|l| {
                l.activate(now);
            });
        self.sync_holds(holds);
        found.is_some()
    }

    /// Close every lock called `name`, or targeting exactly user `name`.
    /// Returns how many closed.
    pub fn close_locks(&mut self, name: &str, holds: &mut Holds) -> usize {
        let mut n = 0;
        for l in &mut self.locks {
            let user_only = l.lock.target.user.as_deref() == Some(name)
                && l.lock.target.mailbox.is_none()
                && l.lock.target.verb.is_none();
            if l.active && (l.lock.name == name || user_only) {
                l.deactivate();
                n += 1;
            }
        }
        self.sync_holds(holds);
        n
    }

    /// Remove every lock and fault rule (counters stay).
    pub fn clear(&mut self, holds: &mut Holds) {
        self.locks.clear();
        self.rules.clear();
        self.refuse_until = 0;
        self.sync_holds(holds);
    }

    /// Record the mark `name`: locks waiting for it open or close.
    pub fn mark(&mut self, name: &str, now: u64, holds: &mut Holds) {
        self.marks.push(name.to_owned());
        for l in &mut self.locks {
            match (&l.lock.open, &l.lock.close) {
                (Trigger::Mark(m), _) if !l.active && !l.done && m == name => l.activate(now),
                (_, Trigger::Mark(m)) if l.active && m == name => l.deactivate(),
                _ => {}
            }
        }
        self.sync_holds(holds);
    }

    /// Time passes: close expired windows, take or release holds.
    pub fn tick(&mut self, now: u64, holds: &mut Holds) {
        for l in &mut self.locks {
            if let Trigger::AfterMs(ms) = l.lock.close {
                if l.active && now >= l.opened_at.saturating_add(ms) {
                    l.deactivate();
                }
            }
        }
        self.sync_holds(holds);
    }

    /// Should a new connection be accepted now?
    pub fn accept_connection(&mut self, now: u64) -> bool {
        now >= self.refuse_until
    }

    /// The verdict on a command that arrived at `now`.
    pub fn on_command(&mut self, ev: &CommandEvent<'_>, now: u64, holds: &mut Holds) -> Verdict {
        for h in self.holds.iter_mut().filter(|h| !h.fired) {
            if h.when.matches(ev) {
                h.matches += 1;
                if h.matches == h.nth {
                    h.fired = true;
                    return Verdict::Hold { id: h.id };
                }
            }
        }
        for u in ev.users {
            self.users.entry(u.clone()).or_default().commands += 1;
        }
        // Event-triggered windows first, so the command that opens a window is
        // the first one it locks.
        for l in &mut self.locks {
            if let Trigger::On { when, nth } = &l.lock.open {
                if !l.active && !l.done && when.matches(ev) {
                    l.open_matches += 1;
                    if l.open_matches == *nth {
                        l.activate(now);
                    }
                }
            }
            if let Trigger::On { when, nth } = &l.lock.close {
                if l.active && when.matches(ev) {
                    l.close_matches += 1;
                    if l.close_matches == *nth {
                        l.deactivate();
                    }
                }
            }
        }
        self.tick(now, holds);
        if let Some(l) = self.locks.iter_mut().find(|l| {
            !self.blocking
                && l.active
                && l.lock.mode == LockMode::Reject
                && l.lock.target.matches(ev)
        }) {
            let name = l.lock.name.clone();
            l.hit();
            for u in ev.users {
                self.users.entry(u.clone()).or_default().locked += 1;
            }
            self.sync_holds(holds);
            return Verdict::Locked { lock: name };
        }
        for r in &mut self.rules {
            if !r.rule.when.matches(ev) || r.rule.times.is_some_and(|t| r.fires >= t) {
                continue;
            }
            r.matches += 1;
            let fire = match (r.rule.nth, r.rule.probability) {
                (Some(n), _) => r.matches == n,
                (None, Some(p)) => self.rng.chance(p),
                (None, None) => true,
            };
            if fire {
                r.fires += 1;
                for u in ev.users {
                    self.users.entry(u.clone()).or_default().faults += 1;
                }
                if let Action::RefuseConnections { ms } | Action::Restart { ms } = r.rule.action {
                    self.refuse_until = self.refuse_until.max(now.saturating_add(ms));
                }
                return Verdict::Fault {
                    rule: r.rule.name.clone(),
                    action: r.rule.action.clone(),
                };
            }
        }
        Verdict::Pass
    }

    /// The session answered `LOCKED` by itself (a user held by [`LockMode::Hold`]
    /// or by another connection). Returns the hold lock it is charged to, if any.
    pub fn locked_by_holder(&mut self, ev: &CommandEvent<'_>, holds: &mut Holds) -> Option<String> {
        for u in ev.users {
            self.users.entry(u.clone()).or_default().locked += 1;
        }
        let l = self.locks.iter_mut().find(|l| {
            l.active
                && l.lock.mode == LockMode::Hold
                && l.lock
                    .target
                    .user
                    .as_ref()
                    .is_some_and(|u| ev.users.contains(u))
        })?;
        let name = l.lock.name.clone();
        l.hit();
        self.sync_holds(holds);
        Some(name)
    }

    /// Make lock windows block instead of answering `LOCKED` (the sync_server
    /// personality): [`Engine::on_command`] then never returns
    /// [`Verdict::Locked`], and the driver waits while
    /// [`Engine::blocking_lock`] finds a window.
    pub fn set_blocking(&mut self, blocking: bool) {
        self.blocking = blocking;
    }

    /// The sync_server personality: the first open lock window `ev` must wait
    /// for: a `reject` lock matching it, or a `hold` lock on one of its users
    /// when `ev` is one of the [`NAMESPACE_LOCKED`] commands.
    pub fn blocking_lock(&self, ev: &CommandEvent<'_>) -> Option<String> {
        self.locks
            .iter()
            .find(|l| l.active && l.blocks(ev))
            .map(|l| l.lock.name.clone())
    }

    /// `ev` starts waiting for the lock `name`: one hit on it (so an
    /// `attempts` window closes after that many waiting commands).
    pub fn lock_waited(&mut self, name: &str, ev: &CommandEvent<'_>, holds: &mut Holds) {
        for u in ev.users {
            self.users.entry(u.clone()).or_default().waited += 1;
        }
        if let Some(l) = self
            .locks
            .iter_mut()
            .find(|l| l.active && l.lock.name == name && l.blocks(ev))
        {
            l.hit();
        }
        self.sync_holds(holds);
    }

    /// Make the external holds match the active hold locks.
    fn sync_holds(&mut self, holds: &mut Holds) {
        let wanted: BTreeSet<&str> = self
            .locks
            .iter()
            .filter(|l| l.active && l.lock.mode == LockMode::Hold)
            .filter_map(|l| l.lock.target.user.as_deref())
            .collect();
        for u in holds.external_holds() {
            if !wanted.contains(u.as_str()) {
                holds.release_external(&u);
            }
        }
        for u in wanted {
            // A session holding the user keeps it; the hold is taken later.
            holds.hold_external(u);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn ev<'a>(verb: &'a str, users: &'a [String], mailboxes: &'a [String]) -> CommandEvent<'a> {
        CommandEvent {
            session: 1,
            index: 1,
            verb,
            users,
            mailboxes,
        }
    }

    fn plan(text: &str) -> Plan {
        Plan::parse(text, "test.toml").unwrap()
    }

    #[test]
    fn reject_lock_on_the_second_apply_mailbox_for_a_mailbox_for_two_attempts() {
        let mut store = Store::temporary().unwrap();
        let mut e = Engine::new(
            plan(
                r#"
                [[lock]]
                mailbox = "user.alice"
                verb = "APPLY MAILBOX"
                open = { on = { verb = "APPLY MAILBOX", mailbox = "user.alice", nth = 2 } }
                close = { attempts = 2 }
                "#,
            ),
            Seed(1),
        );
        let users = vec!["alice".to_owned()];
        let mb = vec!["user.alice".to_owned()];
        let verdicts: Vec<bool> = (0..5)
            .map(|i| {
                matches!(
                    e.on_command(&ev("APPLY MAILBOX", &users, &mb), i, store.holds_mut()),
                    Verdict::Locked { .. }
                )
            })
            .collect();
        assert_eq!(verdicts, [false, true, true, false, false]);
        let other = vec!["user.alice.Sent".to_owned()];
        assert_eq!(
            e.on_command(&ev("APPLY MAILBOX", &users, &other), 9, store.holds_mut()),
            Verdict::Pass
        );
    }

    #[test]
    fn hold_lock_takes_the_user_and_expires() {
        let mut store = Store::temporary().unwrap();
        let mut e = Engine::new(
            plan("[[lock]]\nuser = \"bob\"\nclose = { after_ms = 100 }\n"),
            Seed(1),
        );
        e.tick(0, store.holds_mut());
        assert_eq!(store.holds().external_holds(), vec!["bob".to_owned()]);
        assert!(store.open(5, "bob").is_err());
        e.tick(100, store.holds_mut());
        assert!(store.holds().external_holds().is_empty());
        assert!(store.open(5, "bob").is_ok());
    }

    #[test]
    fn a_hold_waits_for_the_session_that_holds_the_user() {
        let mut store = Store::temporary().unwrap();
        store.open(3, "carol").unwrap();
        let mut e = Engine::new(
            plan("[[lock]]\nuser = \"carol\"\nopen = \"manual\"\n"),
            Seed(1),
        );
        assert!(e.open_lock("lock-1", 0, store.holds_mut()));
        assert!(store.open(3, "carol").is_ok(), "the holder keeps working");
        assert!(store.open(4, "carol").is_err());
        store.release(3);
        e.tick(1, store.holds_mut());
        assert_eq!(store.holder("carol"), Some(crate::store::EXTERNAL));
        assert_eq!(e.close_locks("carol", store.holds_mut()), 1);
        assert_eq!(store.holder("carol"), None);
    }

    #[test]
    fn probability_draws_come_from_the_seed() {
        let run = |seed| {
            let mut store = Store::temporary().unwrap();
            let mut e = Engine::new(
                plan("[[fault]]\nwhen = { verb = \"GET\" }\nprobability = 0.5\naction = \"drop-before\"\n"),
                Seed(seed),
            );
            (0..64)
                .map(|i| {
                    e.on_command(&ev("GET USER", &[], &[]), i, store.holds_mut()) != Verdict::Pass
                })
                .collect::<Vec<bool>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let fired = run(7).iter().filter(|f| **f).count();
        assert!((16..48).contains(&fired), "{fired} of 64");
    }

    #[test]
    fn nth_and_times() {
        let mut store = Store::temporary().unwrap();
        let mut e = Engine::new(
            plan("[[fault]]\nwhen = { verb = \"APPLY\" }\nnth = 3\naction = \"lie\"\n[[fault]]\nwhen = { verb = \"GET\" }\ntimes = 2\naction = \"stall\"\n"),
            Seed(1),
        );
        let a: Vec<bool> = (0..5)
            .map(|i| {
                e.on_command(&ev("APPLY MESSAGE", &[], &[]), i, store.holds_mut()) != Verdict::Pass
            })
            .collect();
        assert_eq!(a, [false, false, true, false, false]);
        let g: Vec<bool> = (0..4)
            .map(|i| e.on_command(&ev("GET META", &[], &[]), i, store.holds_mut()) != Verdict::Pass)
            .collect();
        assert_eq!(g, [true, true, false, false]);
    }

    #[test]
    fn marks_open_and_close_windows() {
        let mut store = Store::temporary().unwrap();
        let mut e = Engine::new(
            plan("[[lock]]\nverb = \"GET\"\nopen = { mark = \"a\" }\nclose = { mark = \"b\" }\n"),
            Seed(1),
        );
        let get = |e: &mut Engine, s: &mut Store| {
            e.on_command(&ev("GET USER", &[], &[]), 0, s.holds_mut()) != Verdict::Pass
        };
        assert!(!get(&mut e, &mut store));
        e.mark("a", 1, store.holds_mut());
        assert!(get(&mut e, &mut store));
        e.mark("b", 2, store.holds_mut());
        assert!(!get(&mut e, &mut store));
    }

    #[test]
    fn blocking_lock_for_the_sync_server_personality() {
        let mut store = Store::temporary().unwrap();
        let mut e = Engine::new(
            plan(
                "[[lock]]\nname = \"h\"\nuser = \"alice\"\nclose = { attempts = 2 }\n\
                 [[lock]]\nname = \"r\"\nverb = \"APPLY SUB\"\n",
            ),
            Seed(1),
        );
        let (alice, bob) = (vec!["alice".to_owned()], vec!["bob".to_owned()]);
        // hold: only the commands sync_server runs under the user namespace lock.
        assert_eq!(e.blocking_lock(&ev("GET USER", &alice, &[])), None);
        assert_eq!(e.blocking_lock(&ev("APPLY RESERVE", &alice, &[])), None);
        for verb in NAMESPACE_LOCKED {
            assert_eq!(
                e.blocking_lock(&ev(verb, &alice, &[])).as_deref(),
                Some("h")
            );
            assert_eq!(e.blocking_lock(&ev(verb, &bob, &[])), None);
        }
        assert_eq!(
            e.blocking_lock(&ev("APPLY SUB", &bob, &[])).as_deref(),
            Some("r")
        );
        // Each wait is one hit: the `attempts = 2` window closes after two.
        let get = ev("APPLY MAILBOX", &alice, &[]);
        e.lock_waited("h", &get, store.holds_mut());
        assert!(e.blocking_lock(&get).is_some());
        e.lock_waited("h", &get, store.holds_mut());
        assert_eq!(e.blocking_lock(&get), None);
        assert_eq!(e.status(0).users["alice"].waited, 2);
        assert_eq!(e.status(0).users["alice"].locked, 0);
        // A blocking engine never answers LOCKED, even for a reject window.
        let sub = ev("APPLY SUB", &bob, &[]);
        assert!(matches!(
            e.on_command(&sub, 5, store.holds_mut()),
            Verdict::Locked { .. }
        ));
        e.set_blocking(true);
        assert_eq!(e.on_command(&sub, 6, store.holds_mut()), Verdict::Pass);
        assert_eq!(e.blocking_lock(&sub).as_deref(), Some("r"));
    }
}
