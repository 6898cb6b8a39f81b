//! The plan file: lock windows and faults, in TOML. See `docs` in the README.
//!
//! ```toml
//! [[lock]]
//! user = "alice"              # target: user, mailbox, verb, or a combination
//! mode = "hold"               # "hold": as another connection holding the user's backup
//!                             # "reject": every matching command is answered LOCKED
//! open = "start"              # "start" | "manual" | { mark = "x" } | { on = { verb = "APPLY MAILBOX", nth = 2 } }
//! close = { after_ms = 5000 } # "never" | "manual" | { mark = "y" } | { after_ms = N } | { attempts = N }
//!
//! [[fault]]
//! name = "cut"
//! when = { verb = "APPLY MAILBOX", user = "alice" }
//! nth = 1                     # fire on the nth match only (else every match)
//! probability = 0.5           # or: fire on each match with this probability (seeded)
//! times = 3                   # at most this many fires
//! action = "drop-after"       # see `Action`
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Action, Lock, LockMode, Match, Rule, Trigger};

/// A plan that is not valid: where and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct PlanError {
    /// The file (or `<inline>`).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// Locks and faults, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Lock windows.
    pub locks: Vec<Lock>,
    /// Fault rules, consulted in order; the first that fires wins.
    pub faults: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    #[serde(default)]
    lock: Vec<toml::Spanned<LockSpec>>,
    #[serde(default)]
    fault: Vec<toml::Spanned<FaultSpec>>,
}

/// A lock as written in a plan or sent by `ctl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockSpec {
    /// Name for status and logs (default `lock-N`).
    pub name: Option<String>,
    /// Target user.
    pub user: Option<String>,
    /// Target mailbox (internal name).
    pub mailbox: Option<String>,
    /// Target command (`GET`, `APPLY MAILBOX`, …).
    pub verb: Option<String>,
    /// `hold` (default with only `user`) or `reject`.
    pub mode: Option<String>,
    /// When the window opens (default `start`).
    pub open: Option<TriggerSpec>,
    /// When it closes (default `never`).
    pub close: Option<TriggerSpec>,
}

/// When a lock opens or closes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TriggerSpec {
    /// `start`, `manual`, `never`.
    Word(String),
    /// A table with one key.
    Table(TriggerTable),
}

/// The table form of a trigger.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerTable {
    /// At a named mark (a scenario step or `ctl mark`).
    pub mark: Option<String>,
    /// When a command matches, the `nth` time (default 1).
    pub on: Option<MatchSpec>,
    /// This long after opening.
    pub after_ms: Option<u64>,
    /// After this many LOCKED answers.
    pub attempts: Option<u64>,
}

/// A command matcher as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// Command label or its first word(s): `GET`, `APPLY MAILBOX`.
    pub verb: Option<String>,
    /// A user the command touches.
    pub user: Option<String>,
    /// A mailbox the command names.
    pub mailbox: Option<String>,
    /// Connection number, from 1.
    pub session: Option<u64>,
    /// Command number within the connection, from 1.
    pub index: Option<u64>,
    /// For triggers: the nth match (default 1).
    pub nth: Option<u64>,
}

/// A fault as written in a plan or sent by `ctl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Name for status and logs (default `fault-N`).
    pub name: Option<String>,
    /// Which commands it looks at.
    #[serde(default)]
    pub when: MatchSpec,
    /// Fire on the nth match only.
    pub nth: Option<u64>,
    /// Fire on each match with this probability.
    pub probability: Option<f64>,
    /// Fire at most this many times.
    pub times: Option<u64>,
    /// What to do; see [`Action`].
    pub action: String,
    /// `partial-reply`: bytes of the reply to send before closing.
    pub bytes: Option<usize>,
    /// `delay`: milliseconds before the reply.
    pub delay_ms: Option<u64>,
    /// `no`: the error code word (`IMAP_SYNC_CHECKSUM`, …).
    pub code: Option<String>,
    /// `no`, `bad`, `bye`: the reply text.
    pub text: Option<String>,
    /// `refuse-connections`, `restart`: how long new connections are refused.
    pub for_ms: Option<u64>,
    /// `hide-missing`: how many GUIDs to leave out of `* MISSING` (default 1).
    pub count: Option<usize>,
}

impl Plan {
    /// Read and validate a plan file.
    pub fn load(path: &Path) -> Result<Plan, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|e| PlanError {
            file: path.display().to_string(),
            line: None,
            message: e.to_string(),
        })?;
        Plan::parse(&text, &path.display().to_string())
    }

    /// Parse and validate plan text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Plan, PlanError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let raw: PlanFile = toml::from_str(text).map_err(|e| PlanError {
            file: file.to_owned(),
            line: e.span().map(|s| line_of(s.start)),
            message: e.message().to_owned(),
        })?;
        let mut plan = Plan::default();
        for (i, l) in raw.lock.iter().enumerate() {
            let lock = l.get_ref().to_lock(i + 1).map_err(|message| PlanError {
                file: file.to_owned(),
                line: Some(line_of(l.span().start)),
                message,
            })?;
            plan.locks.push(lock);
        }
        for (i, f) in raw.fault.iter().enumerate() {
            let rule = f.get_ref().to_rule(i + 1).map_err(|message| PlanError {
                file: file.to_owned(),
                line: Some(line_of(f.span().start)),
                message,
            })?;
            plan.faults.push(rule);
        }
        Ok(plan)
    }
}

impl MatchSpec {
    fn to_match(&self) -> Match {
        Match {
            verb: self.verb.as_ref().map(|v| v.to_ascii_uppercase()),
            user: self.user.clone(),
            mailbox: self.mailbox.clone(),
            session: self.session,
            index: self.index,
        }
    }
}

impl TriggerSpec {
    fn to_trigger(&self, what: &str) -> Result<Trigger, String> {
        match self {
            TriggerSpec::Word(w) => match w.as_str() {
                "start" => Ok(Trigger::Start),
                "manual" => Ok(Trigger::Manual),
                "never" => Ok(Trigger::Never),
                other => Err(format!(
                    "{what} = \"{other}\": expected \"start\", \"manual\", \"never\" or a table ({{ mark = … }}, {{ on = … }}, {{ after_ms = … }}, {{ attempts = … }})"
                )),
            },
            TriggerSpec::Table(t) => {
                let set = [t.mark.is_some(), t.on.is_some(), t.after_ms.is_some(), t.attempts.is_some()]
                    .iter()
                    .filter(|x| **x)
                    .count();
                if set != 1 {
                    return Err(format!(
                        "{what}: expected exactly one of `mark`, `on`, `after_ms`, `attempts`"
                    ));
                }
                Ok(if let Some(m) = &t.mark {
                    Trigger::Mark(m.clone())
                } else if let Some(on) = &t.on {
                    Trigger::On {
                        when: on.to_match(),
                        nth: on.nth.unwrap_or(1).max(1),
                    }
                } else if let Some(ms) = t.after_ms {
                    Trigger::AfterMs(ms)
                } else {
                    Trigger::Attempts(t.attempts.unwrap_or(0))
                })
            }
        }
    }
}

impl LockSpec {
    /// Validate into a [`Lock`]; `n` numbers the default name.
    pub fn to_lock(&self, n: usize) -> Result<Lock, String> {
        let name = self.name.clone().unwrap_or_else(|| format!("lock-{n}"));
        if self.user.is_none() && self.mailbox.is_none() && self.verb.is_none() {
            return Err(format!(
                "lock `{name}`: needs a target: `user`, `mailbox` or `verb`"
            ));
        }
        let only_user = self.mailbox.is_none() && self.verb.is_none();
        let mode = match self.mode.as_deref() {
            None if only_user => LockMode::Hold,
            None | Some("reject") => LockMode::Reject,
            Some("hold") if only_user => LockMode::Hold,
            Some("hold") => {
                return Err(format!(
                    "lock `{name}`: mode \"hold\" locks a whole user (as backupd does); use mode \"reject\" with `mailbox` or `verb`"
                ))
            }
            Some(other) => return Err(format!("lock `{name}`: mode \"{other}\": expected \"hold\" or \"reject\"")),
        };
        let open = match &self.open {
            None => Trigger::Start,
            Some(t) => t.to_trigger("open")?,
        };
        if matches!(open, Trigger::AfterMs(_) | Trigger::Attempts(_)) {
            return Err(format!(
                "lock `{name}`: `open` cannot be `after_ms` or `attempts`"
            ));
        }
        let close = match &self.close {
            None => Trigger::Never,
            Some(t) => t.to_trigger("close")?,
        };
        if matches!(close, Trigger::Start) {
            return Err(format!("lock `{name}`: `close` cannot be \"start\""));
        }
        Ok(Lock {
            name,
            target: Match {
                verb: self.verb.as_ref().map(|v| v.to_ascii_uppercase()),
                user: self.user.clone(),
                mailbox: self.mailbox.clone(),
                session: None,
                index: None,
            },
            mode,
            open,
            close,
        })
    }
}

impl FaultSpec {
    /// Validate into a [`Rule`]; `n` numbers the default name.
    pub fn to_rule(&self, n: usize) -> Result<Rule, String> {
        let name = self.name.clone().unwrap_or_else(|| format!("fault-{n}"));
        let need = |v: Option<u64>, key: &str| {
            v.ok_or_else(|| format!("fault `{name}`: action \"{}\" needs `{key}`", self.action))
        };
        let action = match self.action.as_str() {
            "drop-before" => Action::DropBefore,
            "drop-after" => Action::DropAfter,
            "partial-reply" => Action::PartialReply {
                bytes: self.bytes.unwrap_or(1),
            },
            "delay" => Action::Delay {
                ms: need(self.delay_ms, "delay_ms")?,
            },
            "stall" => Action::Stall,
            "no" => Action::No {
                text: match (&self.code, &self.text) {
                    (Some(c), Some(t)) => format!("{c} {t}"),
                    (Some(c), None) => format!("{c} {}", super::default_text(c)),
                    (None, Some(t)) => t.clone(),
                    (None, None) => "Unknown error".into(),
                },
            },
            "bad" => Action::Bad {
                text: self
                    .text
                    .clone()
                    .unwrap_or_else(|| "IMAP_PROTOCOL_ERROR injected".into()),
            },
            "bye" => Action::Bye {
                text: self
                    .text
                    .clone()
                    .unwrap_or_else(|| "server shutting down".into()),
            },
            "refuse-connections" => Action::RefuseConnections {
                ms: need(self.for_ms, "for_ms")?,
            },
            "restart" => Action::Restart {
                ms: self.for_ms.unwrap_or(0),
            },
            "lie" => Action::Lie,
            "hide-missing" => Action::HideMissing {
                count: self.count.unwrap_or(1).max(1),
            },
            other => {
                return Err(format!(
                    "fault `{name}`: unknown action \"{other}\"; expected one of {}",
                    Action::NAMES.join(", ")
                ))
            }
        };
        if let Some(p) = self.probability {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!(
                    "fault `{name}`: probability {p} is not between 0 and 1"
                ));
            }
            if self.nth.is_some() {
                return Err(format!(
                    "fault `{name}`: give `nth` or `probability`, not both"
                ));
            }
        }
        Ok(Rule {
            name,
            when: self.when.to_match(),
            nth: self.nth,
            probability: self.probability,
            times: self.times,
            action,
        })
    }
}
