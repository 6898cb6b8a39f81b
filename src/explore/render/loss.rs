//! The loss faults a case drew, held until the next client run and written
//! just before it, each on data that run surely carries (see
//! [`super::super::aim::loss_aim`]).

use super::super::aim::{loss_aim, loss_rule, LossAim, LossData};
use super::super::gen::{FaultKind, SyncMode};
use super::{q, Folder, Model};

/// A loss fault waiting for the next client run: its rule (unless a trigger
/// sets it up: then `aim` is where that rule fires) and the data it breaks are
/// written just before the run, aimed at what that run sends.
#[derive(Debug, Clone)]
pub(super) struct PendingLoss {
    pub(super) kind: FaultKind,
    pub(super) verb: u8,
    pub(super) user: Option<u8>,
    pub(super) aim: Option<LossAim>,
}

/// The first command a run sends (`expected`: what it sends, see
/// [`next_run_verbs`]; none: the rolling pass that ends the case).
pub(super) fn first_verb(expected: &[&'static str]) -> &'static str {
    if expected.contains(&"GET USER") {
        "GET USER"
    } else {
        "GET MAILBOXES"
    }
}

/// The user and folder the run in `mode` (`None`: a rolling pass) surely
/// carries a change of: `-m`'s first mailbox, one of `-u`'s users (the
/// drawn one if it is among them), else the drawn user, in INBOX. `None`
/// when the run carries no live user's change (a `-u` of deleted users only).
fn loss_place(m: &Model, mode: Option<SyncMode>, user: Option<u8>) -> Option<(usize, usize)> {
    let drawn = m.user(user.unwrap_or(0));
    let live = |u: &usize| !m.deleted[*u];
    match mode {
        Some(SyncMode::Mailbox(a, _)) => Some((0, m.folder(0, a))),
        Some(SyncMode::User(mask)) => {
            let all = (1u8 << m.names.len()) - 1;
            let chosen: Vec<usize> = (0..m.names.len())
                .filter(|i| mask & all == 0 || mask & (1 << i) != 0)
                .filter(live)
                .collect();
            if chosen.contains(&drawn) {
                Some((drawn, 0))
            } else {
                chosen.first().map(|u| (*u, 0))
            }
        }
        _ => Some((if live(&drawn) { drawn } else { 0 }, 0)),
    }
}

/// The loss faults waiting for the run in `mode` (`None`: the rolling pass
/// that ends the case): each rule, on the first command of its kind naming
/// the mailbox it breaks, then the change that makes the run send it.
pub(super) fn flush_loss(m: &mut Model, mode: Option<SyncMode>) -> Vec<String> {
    // A run that carries no live user's change: the faults get a rolling
    // pass of their own before it.
    let own = !m.loss.is_empty() && loss_place(m, mode, None).is_none();
    let mode = if own { None } else { mode };
    let subscriptions = !matches!(mode, Some(SyncMode::Mailbox(..)));
    let mut out = Vec::new();
    for p in std::mem::take(&mut m.loss) {
        let (u, f) = loss_place(m, mode, p.user).unwrap_or((0, 0));
        let aimed = p
            .aim
            .unwrap_or_else(|| loss_aim(p.kind, p.verb, subscriptions));
        let name = q(&m.names[u]);
        let (mailbox, data) = match aimed.data {
            LossData::Subscribe => {
                let folder = format!("INBOX.{}", m.fresh_name("S"));
                m.folders[u].push(Folder::new(&folder, &[], 1));
                m.subscribed[u].insert(folder.clone());
                let mailbox = m.internal(u, m.folders[u].len() - 1);
                let folder = q(&folder);
                (
                    mailbox,
                    vec![
                        format!("create = {{ user = {name}, folder = {folder} }}"),
                        format!("subscribe = {{ user = {name}, folder = {folder} }}"),
                    ],
                )
            }
            LossData::Append(flags) => {
                let folder = q(&m.folders[u][f].name);
                m.folders[u][f].append(1);
                let flags: Vec<String> = flags.iter().map(|f| q(f)).collect();
                let flags = if flags.is_empty() {
                    String::new()
                } else {
                    format!(", flags = [{}]", flags.join(", "))
                };
                (
                    m.internal(u, f),
                    vec![format!(
                        "append = {{ user = {name}, folder = {folder}, count = 1{flags} }}"
                    )],
                )
            }
            LossData::AppendAnnotated | LossData::AppendMetadata => {
                let folder = q(&m.folders[u][f].name);
                let uid = m.folders[u][f].next;
                m.folders[u][f].append(1);
                let second = if aimed.data == LossData::AppendAnnotated {
                    format!(
                        "annotate = {{ user = {name}, folder = {folder}, uids = \"{uid}\", entry = \"/comment\", shared = true, value = \"loss\" }}"
                    )
                } else {
                    format!(
                        "metadata = {{ user = {name}, folder = {folder}, entry = \"/shared/comment\", value = \"loss\" }}"
                    )
                };
                (
                    m.internal(u, f),
                    vec![
                        format!("append = {{ user = {name}, folder = {folder}, count = 1 }}"),
                        second,
                    ],
                )
            }
        };
        if p.aim.is_none() {
            let rule = m.fresh_name("F");
            let mailbox = (aimed.verb != "APPLY MESSAGE").then_some(mailbox.as_str());
            out.push(format!(
                "fault = {}",
                loss_rule(&rule, p.kind, &aimed, mailbox)
            ));
        }
        out.extend(data);
    }
    if own {
        out.push("sync = { mode = \"rolling-once\" }".into());
    }
    out
}
