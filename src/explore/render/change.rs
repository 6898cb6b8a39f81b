//! One generated change as the scenario steps that make it on the source.

use std::fmt::Write as _;

use super::super::gen::Change;
use super::{deleted_user, q, Folder, Model, FLAGS};

pub(super) fn render_change(m: &mut Model, c: &Change) -> Vec<String> {
    let who = match c {
        Change::DeleteUser { user } => deleted_user(*user, m.names.len()),
        Change::Append { user, .. }
        | Change::Flag { user, .. }
        | Change::Seen { user, .. }
        | Change::Expunge { user, .. }
        | Change::Move { user, .. }
        | Change::Create { user, .. }
        | Change::Delete { user, .. }
        | Change::Rename { user, .. }
        | Change::Subscribe { user, .. }
        | Change::Metadata { user, .. }
        | Change::Annotate { user, .. }
        | Change::Quota { user, .. } => m.user(*user),
    };
    if m.deleted[who] {
        return Vec::new();
    }
    let u = who;
    let name = q(&m.names[u]);
    let one = |s: String| vec![s];
    match *c {
        Change::Append { folder, count, .. } => {
            let f = m.folder(u, folder);
            m.folders[u][f].append(u32::from(count));
            one(format!(
                "append = {{ user = {name}, folder = {}, count = {count} }}",
                q(&m.folders[u][f].name)
            ))
        }
        Change::Flag {
            folder,
            uid,
            flag,
            remove,
            ..
        } => {
            let f = m.folder(u, folder);
            let Some(uid) = m.folders[u][f].uid(uid) else {
                return Vec::new();
            };
            one(format!(
                "flag = {{ user = {name}, folder = {}, uids = \"{uid}\", {} = [{}] }}",
                q(&m.folders[u][f].name),
                if remove { "remove" } else { "add" },
                q(FLAGS[usize::from(flag) % FLAGS.len()])
            ))
        }
        Change::Seen { folder, uid, .. } => {
            let f = m.folder(u, folder);
            let Some(uid) = m.folders[u][f].uid(uid) else {
                return Vec::new();
            };
            one(format!(
                "seen = {{ user = {name}, folder = {}, uids = \"{uid}\" }}",
                q(&m.folders[u][f].name)
            ))
        }
        Change::Expunge { folder, uid, .. } => {
            let f = m.folder(u, folder);
            let Some(uid) = m.folders[u][f].uid(uid) else {
                return Vec::new();
            };
            m.folders[u][f].uids.retain(|x| *x != uid);
            one(format!(
                "expunge = {{ user = {name}, folder = {}, uids = \"{uid}\" }}",
                q(&m.folders[u][f].name)
            ))
        }
        Change::Move {
            folder, uid, to, ..
        } => {
            let f = m.folder(u, folder);
            let mut t = m.folder(u, to);
            if t == f {
                t = (t + 1) % m.folders[u].len();
            }
            let Some(uid) = m.folders[u][f].uid(uid) else {
                return Vec::new();
            };
            m.folders[u][f].uids.retain(|x| *x != uid);
            m.folders[u][t].append(1);
            one(format!(
                "move = {{ user = {name}, folder = {}, uids = \"{uid}\", to = {} }}",
                q(&m.folders[u][f].name),
                q(&m.folders[u][t].name)
            ))
        }
        Change::Create { n, subscribe, .. } => {
            let folder = format!("INBOX.G{n}");
            if m.exists(u, &folder) {
                return Vec::new();
            }
            m.folders[u].push(Folder::new(&folder, &[], 1));
            let mut out = vec![format!(
                "create = {{ user = {name}, folder = {} }}",
                q(&folder)
            )];
            if subscribe {
                m.subscribed[u].insert(folder.clone());
                out.push(format!(
                    "subscribe = {{ user = {name}, folder = {} }}",
                    q(&folder)
                ));
            }
            out
        }
        Change::Delete { folder, .. } => {
            let leaves = m.leaves(u);
            if leaves.is_empty() {
                return Vec::new();
            }
            let f = leaves[usize::from(folder) % leaves.len()];
            let gone = m.folders[u].remove(f);
            one(format!(
                "delete = {{ user = {name}, folder = {} }}",
                q(&gone.name)
            ))
        }
        Change::Rename { folder, n, .. } => {
            let leaves = m.leaves(u);
            let to = format!("INBOX.R{n}");
            if leaves.is_empty() || m.exists(u, &to) {
                return Vec::new();
            }
            let f = leaves[usize::from(folder) % leaves.len()];
            let from = std::mem::replace(&mut m.folders[u][f].name, to.clone());
            one(format!(
                "rename = {{ user = {name}, from = {}, to = {} }}",
                q(&from),
                q(&to)
            ))
        }
        Change::Subscribe { folder, on, .. } => {
            let f = m.folder(u, folder);
            let folder = m.folders[u][f].name.clone();
            let was = m.subscribed[u].contains(&folder);
            if was == on {
                return Vec::new();
            }
            if on {
                m.subscribed[u].insert(folder.clone());
            } else {
                m.subscribed[u].remove(&folder);
            }
            one(format!(
                "{} = {{ user = {name}, folder = {} }}",
                if on { "subscribe" } else { "unsubscribe" },
                q(&folder)
            ))
        }
        Change::Metadata {
            folder,
            shared,
            value,
            ..
        } => {
            let f = m.folder(u, folder);
            let entry = if shared {
                "/shared/comment"
            } else {
                "/private/comment"
            };
            let value = value
                .map(|v| format!(", value = \"note {v}\""))
                .unwrap_or_default();
            one(format!(
                "metadata = {{ user = {name}, folder = {}, entry = \"{entry}\"{value} }}",
                q(&m.folders[u][f].name)
            ))
        }
        Change::Annotate {
            folder,
            uid,
            shared,
            value,
            ..
        } => {
            let f = m.folder(u, folder);
            let Some(uid) = m.folders[u][f].uid(uid) else {
                return Vec::new();
            };
            let value = value
                .map(|v| format!(", value = \"ann {v}\""))
                .unwrap_or_default();
            one(format!(
                "annotate = {{ user = {name}, folder = {}, uids = \"{uid}\", entry = \"/comment\", shared = {shared}{value} }}",
                q(&m.folders[u][f].name)
            ))
        }
        Change::Quota {
            storage, message, ..
        } => {
            let mut limits = String::new();
            if let Some(s) = storage {
                let _ = write!(limits, ", storage = {s}");
            }
            if let Some(n) = message {
                let _ = write!(limits, ", message = {n}");
            }
            one(format!("quota = {{ user = {name}{limits} }}"))
        }
        Change::DeleteUser { .. } => {
            m.deleted[u] = true;
            one(format!("delete_user = {name}"))
        }
    }
}
