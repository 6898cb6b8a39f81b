//! The plan file: lock windows and faults, in TOML. The format is in `scenarios/README.md`
//! (plan files), its use in `docs/usage.md` (locks and faults by hand).
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

use serde::Deserialize;

use super::spec::{FaultSpec, LockSpec, SpecError};
use super::{Lock, Rule};

/// A plan that is not valid: where and what was expected. Displays as
/// `FILE:LINE: message`, followed for a TOML syntax or type error by toml's
/// own report (the line, a caret under the span).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}{}: {message}{}", line.map(|l| format!(":{l}")).unwrap_or_default(),
    snippet.as_deref().map(|s| format!("\n{}", s.trim_end())).unwrap_or_default())]
pub struct PlanError {
    /// The file (or `<inline>`).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// toml's rendering of the error, when the TOML parser found it.
    pub snippet: Option<String>,
    /// The kind, when a lock or fault was read but does not validate.
    pub spec: Option<Box<SpecError>>,
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

impl Plan {
    /// Read and validate a plan file.
    pub fn load(path: &Path) -> Result<Plan, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|e| PlanError {
            file: path.display().to_string(),
            line: None,
            message: e.to_string(),
            snippet: None,
            spec: None,
        })?;
        Plan::parse(&text, &path.display().to_string())
    }

    /// Parse and validate plan text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Plan, PlanError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let raw: PlanFile = toml::from_str(text).map_err(|e| PlanError {
            file: file.to_owned(),
            line: e.span().map(|s| line_of(s.start)),
            message: e.message().trim_end().to_owned(),
            snippet: Some(e.to_string()),
            spec: None,
        })?;
        let mut plan = Plan::default();
        for (i, l) in raw.lock.iter().enumerate() {
            let lock = l.get_ref().to_lock(i + 1).map_err(|e| PlanError {
                file: file.to_owned(),
                line: Some(line_of(l.span().start)),
                message: e.to_string(),
                snippet: None,
                spec: Some(Box::new(e)),
            })?;
            plan.locks.push(lock);
        }
        for (i, f) in raw.fault.iter().enumerate() {
            let rule = f.get_ref().to_rule(i + 1).map_err(|e| PlanError {
                file: file.to_owned(),
                line: Some(line_of(f.span().start)),
                message: e.to_string(),
                snippet: None,
                spec: Some(Box::new(e)),
            })?;
            plan.faults.push(rule);
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{Action, LockMode, Match, Trigger};

    fn parse(text: &str) -> Plan {
        Plan::parse(text, "p.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(text: &str) -> PlanError {
        match Plan::parse(text, "p.toml") {
            Ok(p) => panic!("accepted: {p:?}"),
            Err(e) => e,
        }
    }

    /// Asserts the error is on `line` and its message contains every piece.
    fn assert_err(text: &str, line: usize, pieces: &[&str]) {
        let e = err(text);
        assert_eq!(e.file, "p.toml");
        assert_eq!(e.line, Some(line), "{e}");
        for p in pieces {
            assert!(e.message.contains(p), "`{p}` not in: {e}");
        }
    }

    /// Proves: every action name parses into its `Action`, with the documented
    /// defaults (partial-reply 1 byte, `no` text from its code, restart 0 ms,
    /// hide-missing 1), and the lock and fault fields land where they should.
    #[test]
    fn a_plan_with_every_action_parses() {
        let plan = parse(
            r#"
[[lock]]
user = "alice"
close = { after_ms = 5000 }

[[lock]]
name = "subs"
verb = "apply sub"
mailbox = "user.bob"
open = { on = { verb = "APPLY MAILBOX", user = "bob", nth = 2 } }
close = { attempts = 3 }

[[lock]]
verb = "GET"
open = { mark = "a" }
close = { mark = "b" }

[[fault]]
action = "drop-before"
[[fault]]
name = "cut"
when = { verb = "APPLY MAILBOX", user = "alice", mailbox = "user.alice", session = 2, index = 5 }
nth = 1
times = 3
action = "drop-after"
[[fault]]
action = "partial-reply"
[[fault]]
action = "partial-reply"
bytes = 7
[[fault]]
action = "delay"
delay_ms = 250
probability = 0.5
[[fault]]
action = "stall"
[[fault]]
action = "no"
code = "IMAP_SYNC_CHECKSUM"
[[fault]]
action = "no"
code = "IMAP_MAILBOX_LOCKED"
[[fault]]
action = "no"
code = "IMAP_SYNC_CHECKSUM"
text = "checksum mismatch"
[[fault]]
action = "no"
text = "just text"
[[fault]]
action = "no"
[[fault]]
action = "bad"
[[fault]]
action = "bad"
text = "IMAP_PROTOCOL_ERROR nope"
[[fault]]
action = "bye"
[[fault]]
action = "bye"
text = "going away"
[[fault]]
action = "refuse-connections"
for_ms = 2000
[[fault]]
action = "restart"
[[fault]]
action = "restart"
for_ms = 300
[[fault]]
action = "lie"
[[fault]]
action = "hide-missing"
[[fault]]
action = "hide-missing"
count = 3
[[fault]]
action = "corrupt"
what = "subscription"
[[fault]]
action = "drop-corrupt"
what = "forget-mailbox"
"#,
        );
        let actions: Vec<Action> = plan.faults.iter().map(|r| r.action.clone()).collect();
        let no = |t: &str| Action::No { text: t.into() };
        assert_eq!(
            actions,
            [
                Action::DropBefore,
                Action::DropAfter,
                Action::PartialReply { bytes: 1 },
                Action::PartialReply { bytes: 7 },
                Action::Delay { ms: 250 },
                Action::Stall,
                no("IMAP_SYNC_CHECKSUM injected by backupd-sim"),
                no("IMAP_MAILBOX_LOCKED Mailbox locked"),
                no("IMAP_SYNC_CHECKSUM checksum mismatch"),
                no("just text"),
                no("Unknown error"),
                Action::Bad {
                    text: "IMAP_PROTOCOL_ERROR injected".into()
                },
                Action::Bad {
                    text: "IMAP_PROTOCOL_ERROR nope".into()
                },
                Action::Bye {
                    text: "server shutting down".into()
                },
                Action::Bye {
                    text: "going away".into()
                },
                Action::RefuseConnections { ms: 2000 },
                Action::Restart { ms: 0 },
                Action::Restart { ms: 300 },
                Action::Lie,
                Action::HideMissing { count: 1 },
                Action::HideMissing { count: 3 },
                Action::Corrupt {
                    what: crate::fault::Corruption::Subscription
                },
                Action::DropCorrupt {
                    what: crate::fault::Corruption::ForgetMailbox
                },
            ]
        );
        // every name in `Action::NAMES` is covered, in order
        let mut names: Vec<&str> = actions.iter().map(Action::name).collect();
        names.dedup();
        assert_eq!(names, Action::NAMES);

        let f = &plan.faults;
        assert_eq!(f[0].name, "fault-1");
        assert_eq!(f[0].when, Match::default());
        assert_eq!((f[0].nth, f[0].probability, f[0].times), (None, None, None));
        assert_eq!(f[1].name, "cut");
        assert_eq!(
            f[1].when,
            Match {
                verb: Some("APPLY MAILBOX".into()),
                user: Some("alice".into()),
                mailbox: Some("user.alice".into()),
                session: Some(2),
                index: Some(5),
            }
        );
        assert_eq!((f[1].nth, f[1].times), (Some(1), Some(3)));
        assert_eq!(f[4].probability, Some(0.5));

        let l = &plan.locks;
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].name, "lock-1");
        assert_eq!(l[0].mode, LockMode::Hold, "only a user: hold by default");
        assert_eq!(
            (&l[0].open, &l[0].close),
            (&Trigger::Start, &Trigger::AfterMs(5000))
        );
        assert_eq!(l[1].name, "subs");
        assert_eq!(l[1].mode, LockMode::Reject, "a verb or mailbox: reject");
        assert_eq!(
            l[1].target.verb.as_deref(),
            Some("APPLY SUB"),
            "verbs upper-cased"
        );
        assert_eq!(l[1].target.mailbox.as_deref(), Some("user.bob"));
        assert_eq!(
            l[1].open,
            Trigger::On {
                when: Match {
                    verb: Some("APPLY MAILBOX".into()),
                    user: Some("bob".into()),
                    ..Match::default()
                },
                nth: 2
            }
        );
        assert_eq!(l[1].close, Trigger::Attempts(3));
        assert_eq!(l[2].name, "lock-3");
        assert_eq!(
            (&l[2].open, &l[2].close),
            (&Trigger::Mark("a".into()), &Trigger::Mark("b".into()))
        );
    }

    /// Proves: an empty plan is valid and empty.
    #[test]
    fn an_empty_plan_is_empty() {
        assert_eq!(parse(""), Plan::default());
        assert_eq!(parse("# nothing\n"), Plan::default());
    }

    /// Proves: `PlanError` displays as `FILE:N: message`, then, for an
    /// error the TOML parser found, toml's own report with a caret under the
    /// span; and as `FILE: message` when there is no line (an unreadable file).
    #[test]
    fn plan_error_display() {
        let e = err("[[fault]]\naction = \"explode\"\n");
        let shown = e.to_string();
        assert_eq!(
            shown.lines().next(),
            Some(format!("p.toml:1: {}", e.message).as_str()),
            "{e:?}"
        );
        let e = err("[[lock]]\nuser = \"a\"\nfor_ms = = 3\n");
        let shown = e.to_string();
        assert!(shown.starts_with("p.toml:3: "), "{shown}");
        assert!(shown.contains("\n3 | for_ms = = 3\n"), "{shown}");
        assert!(shown.contains('^'), "{shown}");
        let missing = Path::new("/nonexistent/backupd-sim/plan.toml");
        let e = Plan::load(missing).expect_err("no such file");
        assert_eq!(e.line, None);
        assert_eq!(e.file, "/nonexistent/backupd-sim/plan.toml");
        assert_eq!(
            e.to_string(),
            format!("/nonexistent/backupd-sim/plan.toml: {}", e.message)
        );
    }

    /// Proves: an unknown key in `[[lock]]` is rejected on the key's line, and
    /// the message names the key and the valid ones.
    #[test]
    fn unknown_key_in_lock() {
        assert_err(
            "[[lock]]\nuser = \"a\"\nbogus = 1\n",
            3,
            &["unknown field `bogus`", "`user`", "`close`"],
        );
    }

    /// Proves: an unknown key in `[[fault]]` (here `delay` for `delay_ms`) is
    /// rejected on the key's line, naming it and the valid ones.
    #[test]
    fn unknown_key_in_fault() {
        assert_err(
            "[[lock]]\nuser = \"a\"\n\n[[fault]]\naction = \"delay\"\ndelay = 5\n",
            6,
            &["unknown field `delay`", "`delay_ms`"],
        );
    }

    /// Proves: an unknown key in a fault's `when` is rejected on its line.
    #[test]
    fn unknown_key_in_when() {
        assert_err(
            "[[fault]]\nwhen = { verb = \"GET\", usr = \"a\" }\naction = \"lie\"\n",
            2,
            &["unknown field `usr`", "`user`"],
        );
    }

    /// Proves: a fault without `action` is rejected, naming the field.
    #[test]
    fn missing_action() {
        assert_err("[[fault]]\nnth = 1\n", 1, &["missing field `action`"]);
    }

    /// Proves: an unknown action is rejected on its `[[fault]]` line with the
    /// list of valid actions.
    #[test]
    fn unknown_action_lists_the_valid_ones() {
        assert_err(
            "[[fault]]\naction = \"lie\"\n\n[[fault]]\naction = \"explode\"\n",
            4,
            &[
                "fault `fault-2`",
                "unknown action \"explode\"",
                &Action::NAMES.join(", "),
            ],
        );
    }

    /// Proves: `delay` needs `delay_ms` and `refuse-connections` needs `for_ms`.
    #[test]
    fn actions_missing_their_parameter() {
        assert_err(
            "[[lock]]\nuser = \"a\"\n\n[[fault]]\nname = \"d\"\naction = \"delay\"\n",
            4,
            &["fault `d`", "action \"delay\" needs `delay_ms`"],
        );
        assert_err(
            "[[fault]]\naction = \"refuse-connections\"\n",
            1,
            &["action \"refuse-connections\" needs `for_ms`"],
        );
        assert_err(
            "[[fault]]\naction = \"corrupt\"\n",
            1,
            &[
                "action \"corrupt\" needs `what`",
                "forget-mailbox, uniqueid",
            ],
        );
        assert_err(
            "[[fault]]\naction = \"drop-corrupt\"\n",
            1,
            &["action \"drop-corrupt\" needs `what`"],
        );
        assert_err(
            "[[fault]]\naction = \"corrupt\"\nwhat = \"flags\"\n",
            1,
            &["unknown `what = \"flags\"`", "flag, seen"],
        );
    }

    /// Proves: a probability outside [0, 1] is rejected; 0 and 1 are accepted.
    #[test]
    fn probability_out_of_range() {
        assert_err(
            "[[fault]]\naction = \"lie\"\nprobability = 1.5\n",
            1,
            &["probability 1.5 is not between 0 and 1"],
        );
        assert_err(
            "[[fault]]\naction = \"lie\"\nprobability = -0.1\n",
            1,
            &["is not between 0 and 1"],
        );
        assert_err(
            "[[fault]]\naction = \"lie\"\nprobability = nan\n",
            1,
            &["is not between 0 and 1"],
        );
        for p in ["0.0", "1.0"] {
            let plan = parse(&format!("[[fault]]\naction = \"lie\"\nprobability = {p}\n"));
            assert_eq!(plan.faults.len(), 1);
        }
    }

    /// Proves: `nth` and `probability` together are rejected.
    #[test]
    fn nth_with_probability() {
        assert_err(
            "\n\n[[fault]]\naction = \"lie\"\nprobability = 0.5\nnth = 2\n",
            3,
            &["give `nth` or `probability`, not both"],
        );
    }

    /// Proves: a lock with no user, mailbox or verb is rejected.
    #[test]
    fn lock_without_a_target() {
        assert_err(
            "[[lock]]\nuser = \"a\"\n[[lock]]\nname = \"empty\"\nmode = \"reject\"\n",
            3,
            &["lock `empty`", "needs a target"],
        );
    }

    /// Proves: `mode = "hold"` only locks a whole user; with a mailbox or a
    /// verb it is rejected, pointing at `reject`. An unknown mode is rejected.
    #[test]
    fn hold_with_a_mailbox_or_verb() {
        assert_err(
            "[[lock]]\nuser = \"a\"\nmailbox = \"user.a\"\nmode = \"hold\"\n",
            1,
            &["mode \"hold\" locks a whole user", "mode \"reject\""],
        );
        assert_err(
            "[[lock]]\nverb = \"GET\"\nmode = \"hold\"\n",
            1,
            &["mode \"hold\""],
        );
        assert_err(
            "[[lock]]\nuser = \"a\"\nmode = \"share\"\n",
            1,
            &["mode \"share\": expected \"hold\" or \"reject\""],
        );
    }

    /// Proves: `open` cannot be `after_ms` or `attempts`, and `close` cannot be
    /// "start"; an unknown trigger word is rejected with the valid forms.
    #[test]
    fn impossible_triggers() {
        assert_err(
            "[[lock]]\nuser = \"a\"\nopen = { after_ms = 5 }\n",
            1,
            &["`open` cannot be `after_ms` or `attempts`"],
        );
        assert_err(
            "[[lock]]\nuser = \"a\"\nopen = { attempts = 2 }\n",
            1,
            &["`open` cannot be `after_ms` or `attempts`"],
        );
        assert_err(
            "[[lock]]\nuser = \"a\"\nclose = \"start\"\n",
            1,
            &["`close` cannot be \"start\""],
        );
        assert_err(
            "[[lock]]\nuser = \"a\"\nopen = \"soon\"\n",
            1,
            &["open = \"soon\"", "\"start\", \"manual\", \"never\""],
        );
    }

    /// Proves: a trigger table must have exactly one key.
    #[test]
    fn trigger_table_with_two_keys_or_none() {
        assert_err(
            "[[lock]]\nuser = \"a\"\nclose = { mark = \"x\", after_ms = 5 }\n",
            1,
            &["close: expected exactly one of `mark`, `on`, `after_ms`, `attempts`"],
        );
        assert_err(
            "[[lock]]\nuser = \"a\"\nopen = {}\n",
            1,
            &["open: expected exactly one of"],
        );
    }

    /// Proves: a trigger table with an unknown key is rejected on its line.
    /// (Its message does not name the key: see the report.)
    #[test]
    fn trigger_table_with_an_unknown_key() {
        let e = err("[[lock]]\nuser = \"a\"\nclose = { after = 5 }\n");
        assert_eq!(e.line, Some(3), "{e}");
    }

    /// Proves: a TOML syntax error is reported on the line where it is.
    #[test]
    fn toml_syntax_error() {
        assert_err(
            "[[lock]]\nuser = \"a\"\n[[fault]\naction = \"lie\"\n",
            3,
            &["unclosed array table"],
        );
        assert_err("[[lock]]\n\nuser = = \"a\"\n", 3, &["extra `=`"]);
        let e = err("[[lock]]\nuser = \"a\"\nuser = \"b\"\n");
        assert_eq!(e.line, Some(3), "duplicate key: {e}");
    }

    /// Proves: a lock or fault that does not validate carries its kind, so a
    /// caller can match on it rather than on the text; a TOML error carries none.
    #[test]
    fn validation_errors_carry_their_kind() {
        let e = err("[[fault]]\naction = \"explode\"\n");
        assert_eq!(
            e.spec.as_deref(),
            Some(&SpecError::UnknownAction {
                fault: "fault-1".into(),
                action: "explode".into()
            })
        );
        assert_eq!(e.message, e.spec.as_ref().expect("kind").to_string());
        let e = err("[[fault]]\naction = \"lie\"\nprobability = 1.5\n");
        assert!(
            matches!(e.spec.as_deref(), Some(SpecError::Probability { probability, .. }) if *probability == 1.5),
            "{e:?}"
        );
        let e = err("[[lock]]\nmode = \"hold\"\n");
        assert!(
            matches!(e.spec.as_deref(), Some(SpecError::LockWithoutTarget { .. })),
            "{e:?}"
        );
        let e = err("[[lock]]\nuser = \"a\"\nopen = \"later\"\n");
        assert_eq!(
            e.spec.as_deref(),
            Some(&SpecError::TriggerWord {
                what: "open",
                word: "later".into()
            })
        );
        assert_eq!(err("[[lock]]\n\nuser = = \"a\"\n").spec.as_deref(), None);
    }
}
