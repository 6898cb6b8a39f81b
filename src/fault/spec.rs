//! Locks and faults as written (in a plan file, a scenario step or a `ctl`
//! request), and their validation into [`Lock`] and [`Rule`] values, with a
//! [`SpecError`] per way a spec can be wrong.

use serde::{Deserialize, Serialize};

use super::{Action, Corruption, Lock, LockMode, Match, Rule, Trigger};

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
#[serde(
    untagged,
    expecting = "\"start\", \"manual\", \"never\", or a table with exactly one of `mark`, `on`, `after_ms`, `attempts`"
)]
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
    /// `corrupt`: which stored state to break after acknowledging
    /// (see [`super::Corruption`]).
    pub what: Option<String>,
}

/// A lock or fault spec that does not validate: what is wrong, by kind (the
/// plan loader adds file and line, `ctl` sends the text back).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// An `open`/`close` word other than `start`, `manual`, `never`.
    #[error("{what} = \"{word}\": expected \"start\", \"manual\", \"never\" or a table ({{ mark = … }}, {{ on = … }}, {{ after_ms = … }}, {{ attempts = … }})")]
    TriggerWord {
        /// `open` or `close`.
        what: &'static str,
        /// The word given.
        word: String,
    },
    /// A trigger table with no key or several.
    #[error("{what}: expected exactly one of `mark`, `on`, `after_ms`, `attempts`")]
    TriggerKeys {
        /// `open` or `close`.
        what: &'static str,
    },
    /// `attempts = 0`.
    #[error("{what}: `attempts` must be at least 1")]
    ZeroAttempts {
        /// `open` or `close`.
        what: &'static str,
    },
    /// A lock with neither `user`, `mailbox` nor `verb`.
    #[error("lock `{lock}`: needs a target: `user`, `mailbox` or `verb`")]
    LockWithoutTarget {
        /// The lock's name.
        lock: String,
    },
    /// `mode = "hold"` with a `mailbox` or `verb`.
    #[error("lock `{lock}`: mode \"hold\" locks a whole user (as backupd does); use mode \"reject\" with `mailbox` or `verb`")]
    NarrowHold {
        /// The lock's name.
        lock: String,
    },
    /// A mode other than `hold` or `reject`.
    #[error("lock `{lock}`: mode \"{mode}\": expected \"hold\" or \"reject\"")]
    UnknownMode {
        /// The lock's name.
        lock: String,
        /// The mode given.
        mode: String,
    },
    /// `open = { after_ms }` or `{ attempts }`.
    #[error("lock `{lock}`: `open` cannot be `after_ms` or `attempts`")]
    OpenByCount {
        /// The lock's name.
        lock: String,
    },
    /// `close = "start"`.
    #[error("lock `{lock}`: `close` cannot be \"start\"")]
    CloseAtStart {
        /// The lock's name.
        lock: String,
    },
    /// An action without the parameter it needs (`delay` without `delay_ms`).
    #[error("fault `{fault}`: action \"{action}\" needs `{key}`")]
    MissingParameter {
        /// The fault's name.
        fault: String,
        /// The action.
        action: String,
        /// The key it needs.
        key: &'static str,
    },
    /// `corrupt` without `what`.
    #[error(
        "fault `{fault}`: action \"{action}\" needs `what`: one of {}",
        Corruption::names()
    )]
    CorruptWithoutWhat {
        /// The fault's name.
        fault: String,
        /// `corrupt` or `drop-corrupt`.
        action: String,
    },
    /// `corrupt` with a `what` that names no corruption.
    #[error(
        "fault `{fault}`: corrupt: unknown `what = \"{what}\"`; expected one of {}",
        Corruption::names()
    )]
    UnknownCorruption {
        /// The fault's name.
        fault: String,
        /// The `what` given.
        what: String,
    },
    /// An action name not in [`Action::NAMES`].
    #[error("fault `{fault}`: unknown action \"{action}\"; expected one of {}", Action::NAMES.join(", "))]
    UnknownAction {
        /// The fault's name.
        fault: String,
        /// The action given.
        action: String,
    },
    /// `nth = 0`.
    #[error("fault `{fault}`: `nth` counts from 1")]
    NthZero {
        /// The fault's name.
        fault: String,
    },
    /// A probability outside `0..=1`.
    #[error("fault `{fault}`: probability {probability} is not between 0 and 1")]
    Probability {
        /// The fault's name.
        fault: String,
        /// The probability given.
        probability: f64,
    },
    /// Both `nth` and `probability`.
    #[error("fault `{fault}`: give `nth` or `probability`, not both")]
    NthAndProbability {
        /// The fault's name.
        fault: String,
    },
}

/// For callers whose errors are still text (scenario steps).
impl From<SpecError> for String {
    fn from(e: SpecError) -> String {
        e.to_string()
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
    fn to_trigger(&self, what: &'static str) -> Result<Trigger, SpecError> {
        match self {
            TriggerSpec::Word(w) => match w.as_str() {
                "start" => Ok(Trigger::Start),
                "manual" => Ok(Trigger::Manual),
                "never" => Ok(Trigger::Never),
                other => Err(SpecError::TriggerWord {
                    what,
                    word: other.to_owned(),
                }),
            },
            TriggerSpec::Table(t) => {
                let set = [
                    t.mark.is_some(),
                    t.on.is_some(),
                    t.after_ms.is_some(),
                    t.attempts.is_some(),
                ]
                .iter()
                .filter(|x| **x)
                .count();
                if set != 1 {
                    return Err(SpecError::TriggerKeys { what });
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
                    match t.attempts {
                        Some(0) | None => return Err(SpecError::ZeroAttempts { what }),
                        Some(n) => Trigger::Attempts(n),
                    }
                })
            }
        }
    }
}

impl LockSpec {
    /// Validate into a [`Lock`]; `n` numbers the default name.
    pub fn to_lock(&self, n: usize) -> Result<Lock, SpecError> {
        let name = self.name.clone().unwrap_or_else(|| format!("lock-{n}"));
        if self.user.is_none() && self.mailbox.is_none() && self.verb.is_none() {
            return Err(SpecError::LockWithoutTarget { lock: name });
        }
        let only_user = self.mailbox.is_none() && self.verb.is_none();
        let mode = match self.mode.as_deref() {
            None if only_user => LockMode::Hold,
            None | Some("reject") => LockMode::Reject,
            Some("hold") if only_user => LockMode::Hold,
            Some("hold") => return Err(SpecError::NarrowHold { lock: name }),
            Some(other) => {
                return Err(SpecError::UnknownMode {
                    lock: name,
                    mode: other.to_owned(),
                })
            }
        };
        let open = match &self.open {
            None => Trigger::Start,
            Some(t) => t.to_trigger("open")?,
        };
        if matches!(open, Trigger::AfterMs(_) | Trigger::Attempts(_)) {
            return Err(SpecError::OpenByCount { lock: name });
        }
        let close = match &self.close {
            None => Trigger::Never,
            Some(t) => t.to_trigger("close")?,
        };
        if matches!(close, Trigger::Start) {
            return Err(SpecError::CloseAtStart { lock: name });
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
    pub fn to_rule(&self, n: usize) -> Result<Rule, SpecError> {
        let name = self.name.clone().unwrap_or_else(|| format!("fault-{n}"));
        let need = |v: Option<u64>, key: &'static str| {
            v.ok_or_else(|| SpecError::MissingParameter {
                fault: name.clone(),
                action: self.action.clone(),
                key,
            })
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
            "corrupt" | "drop-corrupt" => {
                let what = self
                    .what
                    .as_deref()
                    .ok_or_else(|| SpecError::CorruptWithoutWhat {
                        fault: name.clone(),
                        action: self.action.clone(),
                    })?;
                let what =
                    Corruption::from_name(what).ok_or_else(|| SpecError::UnknownCorruption {
                        fault: name.clone(),
                        what: what.to_owned(),
                    })?;
                if self.action == "corrupt" {
                    Action::Corrupt { what }
                } else {
                    Action::DropCorrupt { what }
                }
            }
            other => {
                return Err(SpecError::UnknownAction {
                    fault: name,
                    action: other.to_owned(),
                })
            }
        };
        if self.nth == Some(0) {
            return Err(SpecError::NthZero { fault: name });
        }
        if let Some(p) = self.probability {
            if !(0.0..=1.0).contains(&p) {
                return Err(SpecError::Probability {
                    fault: name,
                    probability: p,
                });
            }
            if self.nth.is_some() {
                return Err(SpecError::NthAndProbability { fault: name });
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
