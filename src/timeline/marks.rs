//! The marks inside the lanes: commands and connections one by one where
//! sparse, density bands (a histogram by reply class, with count and rate)
//! where dense; session spans and holds; client runs; runner steps and notes;
//! source changes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::layout::{place, Item, Lane, LaneKind, Layout, Scale, BUCKET_PX, SMALL_BAND};
use super::model::{Cmd, Sess};
use super::svg::{
    class_counts, cmd_title, counts_text, esc, f1, fmt_s, fmt_span, session_title, text_w, Ctx,
    LabelRow,
};
use super::{Annotation, AnnotationKind, ReplyClass, TimelineInput};

impl Ctx<'_, '_> {
    /// Every lane's marks, lane by lane.
    pub(super) fn lane_contents(&mut self, input: &TimelineInput<'_>, lay: &Layout) {
        let m = self.m;
        let cx = self;
        let (own_users, own_sessions) = (&lay.own_users, &lay.own_sessions);
        for l in &lay.lanes {
            match &l.kind {
                LaneKind::Client => cx.client_lane(l, &input.annotations),
                LaneKind::Runner => cx.runner_lane(l, &input.annotations),
                LaneKind::User(u) => {
                    let items: Vec<Item> = m
                        .cmds
                        .iter()
                        .filter(|c| {
                            if u.is_empty() {
                                c.users.iter().any(|cu| !own_users.contains(cu))
                            } else {
                                c.users.iter().any(|cu| cu == u)
                            }
                        })
                        .map(|c| cx.cmd_item(c))
                        .collect();
                    cx.lane_items(l, &items, "commands");
                    let changes: Vec<&Annotation> = input
                        .annotations
                        .iter()
                        .filter(|a| {
                            matches!(&a.kind, AnnotationKind::SourceChange { user }
                                if (u.is_empty() && !own_users.contains(user)) || user == u)
                        })
                        .collect();
                    cx.source_changes(l, &changes);
                }
                LaneKind::Session(id) => {
                    let s = &m.sessions[id];
                    cx.session_span(l, s);
                    let items: Vec<Item> =
                        s.cmds.iter().map(|&i| cx.cmd_item(&m.cmds[i])).collect();
                    cx.lane_items(l, &items, "commands");
                }
                LaneKind::Crowd => {
                    let items: Vec<Item> = m
                        .sessions
                        .values()
                        .filter(|s| !own_sessions.contains(&s.id))
                        .map(|s| Item {
                            t_us: s.from_us,
                            end_us: s.to_us,
                            class: m.session_class(s),
                            title: session_title(m, s),
                            key: s.id.to_string(),
                            session: s.id,
                        })
                        .collect();
                    cx.lane_items(l, &items, "connections");
                    for s in m
                        .sessions
                        .values()
                        .filter(|s| !own_sessions.contains(&s.id))
                    {
                        cx.holds(l, s);
                    }
                }
                LaneKind::Refused => {
                    let items: Vec<Item> = m
                        .refused
                        .iter()
                        .map(|(t, peer)| Item {
                            t_us: *t,
                            end_us: None,
                            class: ReplyClass::Dropped,
                            title: format!("connection from {peer} refused · {}", fmt_s(*t)),
                            key: "refused".into(),
                            session: 0,
                        })
                        .collect();
                    cx.lane_items(l, &items, "refused");
                }
            }
        }
    }

    fn cmd_item(&self, c: &Cmd<'_>) -> Item {
        Item {
            t_us: c.t_us,
            end_us: None,
            class: c.class,
            title: cmd_title(c, self.m.sessions.get(&c.session)),
            key: c.verb.to_owned(),
            session: c.session,
        }
    }

    /// Marks one by one where sparse, density bands where dense.
    fn lane_items(&mut self, l: &Lane, items: &[Item], noun: &str) {
        let sc = self.sc;
        let placed = place(items, sc);
        let o = &mut self.out;
        let mid = l.y + l.h / 2.0;
        let _ = writeln!(o, "<g class=\"marks\" data-lane=\"{}\">", esc(&l.id));
        for it in &placed.single {
            let x = sc.x(it.t_us);
            match it.end_us {
                Some(end) if noun == "connections" => {
                    let w = (sc.x(end) - x).max(2.5);
                    let _ = writeln!(
                        o,
                        "<rect class=\"mark {css} tip\" x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"1\" fill=\"{col}\"><title>{t}</title></rect>",
                        css = it.class.css(),
                        x = f1(x - 1.0),
                        y = f1(mid - 9.0),
                        w = f1(w),
                        h = 18,
                        col = it.class.colour(),
                        t = esc(&it.title)
                    );
                }
                _ => {
                    let h = (l.h - 10.0).min(22.0);
                    let _ = writeln!(
                        o,
                        "<rect class=\"mark {css} tip\" x=\"{x}\" y=\"{y}\" width=\"3\" height=\"{h}\" fill=\"{col}\"><title>{t}</title></rect>",
                        css = it.class.css(),
                        x = f1(x - 1.5),
                        y = f1(mid - h / 2.0),
                        h = f1(h),
                        col = it.class.colour(),
                        t = esc(&it.title)
                    );
                }
            }
        }
        for band in &placed.bands {
            band_svg(o, l, band, sc, noun);
        }
        o.push_str("</g>\n");
    }

    fn session_span(&mut self, l: &Lane, s: &Sess<'_>) {
        let sc = self.sc;
        let x0 = sc.x(s.from_us);
        let x1 = sc.x(s.to_us.unwrap_or(sc.hi));
        let mid = l.y + l.h / 2.0;
        let title = session_title(self.m, s);
        let o = &mut self.out;
        let _ = writeln!(
            o,
            "<rect class=\"session tip\" data-session=\"{id}\" x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"4\" rx=\"2\" fill=\"#b8c2cc\"><title>{t}</title></rect>",
            id = s.id,
            x = f1(x0),
            y = f1(mid - 2.0),
            w = f1((x1 - x0).max(2.0)),
            t = esc(&title)
        );
        if s.abnormal_close() {
            let _ = writeln!(
                o,
                "<path class=\"close-bad\" d=\"M{a} {b} l8 8 m0 -8 l-8 8\" stroke=\"#1f1f1f\" stroke-width=\"2\"/>",
                a = f1(x1 - 4.0),
                b = f1(mid - 4.0)
            );
        }
        self.holds(l, s);
    }

    fn holds(&mut self, l: &Lane, s: &Sess<'_>) {
        let sc = self.sc;
        for &(hold, from, to) in &s.holds {
            let x0 = sc.x(from);
            let x1 = sc.x(to.unwrap_or(sc.hi));
            let _ = writeln!(
                self.out,
                "<rect class=\"hold tip\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"url(#holdhatch)\" stroke=\"#5c6bc0\"><title>session {} held by trigger {hold}: {}</title></rect>",
                f1(x0),
                f1(l.y + 2.0),
                f1((x1 - x0).max(3.0)),
                f1(l.h - 4.0),
                s.id,
                match to {
                    Some(t) => fmt_span(from, t),
                    None => format!("from {}, never released", fmt_s(from)),
                }
            );
        }
    }

    fn source_changes(&mut self, l: &Lane, changes: &[&Annotation]) {
        let sc = self.sc;
        for a in changes {
            let x = sc.x(a.t_us);
            let y = l.y + 3.0;
            let user = match &a.kind {
                AnnotationKind::SourceChange { user } => user.as_str(),
                _ => "",
            };
            let _ = writeln!(
                self.out,
                "<path class=\"source-change tip\" d=\"M{x} {y} l6 7 l-6 7 l-6 -7 z\" fill=\"#1565c0\" stroke=\"#fff\" stroke-width=\"1\"><title>source change ({user}) · {t}\n{label}</title></path>",
                x = f1(x),
                y = f1(y),
                user = esc(user),
                t = fmt_s(a.t_us),
                label = esc(&a.label)
            );
        }
    }

    fn client_lane(&mut self, l: &Lane, anns: &[Annotation]) {
        let sc = self.sc;
        let mid = l.y + l.h / 2.0;
        let mut sorted: Vec<&Annotation> = anns.iter().collect();
        sorted.sort_by_key(|a| a.t_us);
        // Runs: a start (or restart) to the next exit.
        let mut open: Option<&Annotation> = None;
        let mut runs: Vec<(&Annotation, Option<&Annotation>)> = Vec::new();
        for a in &sorted {
            match a.kind {
                AnnotationKind::ClientStart | AnnotationKind::ClientRestart => {
                    if let Some(s) = open.take() {
                        runs.push((s, None));
                    }
                    open = Some(a);
                }
                AnnotationKind::ClientExit { .. } => {
                    if let Some(s) = open.take() {
                        runs.push((s, Some(a)));
                    }
                }
                _ => {}
            }
        }
        if let Some(s) = open {
            runs.push((s, None));
        }
        // Longer runs get their labels first.
        runs.sort_by_key(|(s, e)| {
            (
                std::cmp::Reverse(e.map_or(sc.hi, |e| e.t_us).saturating_sub(s.t_us)),
                s.t_us,
            )
        });
        let bar = mid + 6.0;
        let o = &mut self.out;
        let mut row = LabelRow::default();
        for (s, e) in &runs {
            let x0 = sc.x(s.t_us);
            let x1 = sc.x(e.map_or(sc.hi, |e| e.t_us));
            let mut status: String = match e.map(|e| &e.kind) {
                Some(AnnotationKind::ClientExit { status: Some(st) }) => format!("exit {st}"),
                Some(AnnotationKind::ClientExit { status: None }) => "killed".into(),
                _ => "still running".into(),
            };
            if let Some(why) = e.map(|e| e.label.as_str()).filter(|l| !l.is_empty()) {
                let _ = write!(status, ": {why}");
            }
            let title = format!(
                "sync_client {}\n{} · {status}",
                s.label,
                match e {
                    Some(e) => fmt_span(s.t_us, e.t_us),
                    None => format!("from {}", fmt_s(s.t_us)),
                }
            );
            let _ = writeln!(
                o,
                "<rect class=\"client-run tip\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"8\" rx=\"2\" fill=\"#9fb3c8\"><title>{}</title></rect>",
                f1(x0),
                f1(bar - 4.0),
                f1((x1 - x0).max(3.0)),
                esc(&title)
            );
            let label = if s.label.is_empty() {
                status.clone()
            } else {
                format!("{} → {status}", s.label)
            };
            row.put(o, x0, mid - 4.0, &label, "#33475b", "client-label");
        }
        for a in &sorted {
            let x = sc.x(a.t_us);
            let (shape, title) = match &a.kind {
                AnnotationKind::ClientStart => (
                    format!(
                        "<path class=\"client-start tip\" d=\"M{} {} l9 6 l-9 6 z\" fill=\"#2e9e5b\">",
                        f1(x),
                        f1(bar - 6.0)
                    ),
                    format!("sync_client started · {}\n{}", fmt_s(a.t_us), a.label),
                ),
                AnnotationKind::ClientRestart => (
                    format!(
                        "<path class=\"client-restart tip\" d=\"M{} {} l9 6 l-9 6 z\" fill=\"#ef8a00\" stroke=\"#7a4500\">",
                        f1(x),
                        f1(bar - 6.0)
                    ),
                    format!("sync_client restarted by the policy · {}\n{}", fmt_s(a.t_us), a.label),
                ),
                AnnotationKind::ClientExit { status } => {
                    let (col, st) = match status {
                        Some(0) => ("#2e9e5b", "0".to_owned()),
                        Some(s) => ("#d7263d", s.to_string()),
                        None => ("#1f1f1f", "none (killed)".to_owned()),
                    };
                    (
                        format!(
                            "<rect class=\"client-exit tip\" x=\"{}\" y=\"{}\" width=\"8\" height=\"12\" fill=\"{col}\">",
                            f1(x - 4.0),
                            f1(bar - 6.0)
                        ),
                        format!("sync_client exited · {} · status {st}\n{}", fmt_s(a.t_us), a.label),
                    )
                }
                _ => continue,
            };
            let close = if shape.starts_with("<path") {
                "</path>"
            } else {
                "</rect>"
            };
            let _ = writeln!(o, "{shape}<title>{}</title>{close}", esc(title.trim_end()));
        }
    }

    fn runner_lane(&mut self, l: &Lane, anns: &[Annotation]) {
        let sc = self.sc;
        let mid = l.y + l.h / 2.0;
        let mut notes: Vec<(u64, String, String, &str)> = anns
            .iter()
            .filter(|a| a.kind == AnnotationKind::Step)
            .map(|a| {
                (
                    a.t_us,
                    a.label.clone(),
                    format!("step · {}\n{}", fmt_s(a.t_us), a.label),
                    "#546e7a",
                )
            })
            .collect();
        for &(t, kind, text) in &self.m.notes {
            let (short, col) = match kind {
                "mark" => (format!("mark {text}"), "#6a4fb3"),
                // sync_server personality: a command waiting for a lock window.
                "wait" | "waited" => (format!("{kind} {text}"), "#c62828"),
                _ => (format!("ctl {text}"), "#8d6e63"),
            };
            notes.push((t, short, format!("{kind} · {}\n{text}", fmt_s(t)), col));
        }
        notes.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        let o = &mut self.out;
        let mut row = LabelRow::default();
        for (t, short, title, col) in &notes {
            let x = sc.x(*t);
            let _ = writeln!(
                o,
                "<rect class=\"step tip\" x=\"{}\" y=\"{}\" width=\"2\" height=\"{}\" fill=\"{col}\"><title>{}</title></rect>",
                f1(x - 1.0),
                f1(l.y + 4.0),
                f1(l.h - 8.0),
                esc(title)
            );
            let short: String = short.chars().take(48).collect();
            row.put(o, x + 3.0, mid + 4.0, &short, col, "step-label");
        }
    }
}

fn band_svg(o: &mut String, l: &Lane, band: &[&Item], sc: Scale, noun: &str) {
    let from = band.iter().map(|i| i.t_us).min().unwrap_or(0);
    let to = band.iter().map(|i| i.t_us).max().unwrap_or(0);
    let n = band.len();
    let secs = (to - from) as f64 / 1e6;
    let rate = if secs > 0.0 {
        Some(n as f64 / secs)
    } else {
        None
    };
    let mut label = match rate {
        Some(r) if r >= 10.0 => format!("{n} {noun}, {r:.0}/s"),
        Some(r) => format!("{n} {noun}, {r:.1}/s"),
        None => format!("{n} {noun}"),
    };
    let counts = class_counts(band);
    if noun == "commands" {
        // Say what went wrong, if anything did.
        let bad: Vec<String> = [ReplyClass::Locked, ReplyClass::No, ReplyClass::Dropped]
            .iter()
            .filter(|c| counts[**c as usize] > 0)
            .map(|c| {
                if counts[*c as usize] == n {
                    format!("all {}", c.label())
                } else {
                    format!("{} {}", counts[*c as usize], c.label())
                }
            })
            .collect();
        if !bad.is_empty() {
            let _ = write!(label, " · {}", bad.join(", "));
        }
    }
    // The tooltip: when, how many, replies, what the commands were.
    let mut title = format!("{}: {label}", fmt_span(from, to));
    let _ = write!(title, "\nreplies: {}", counts_text(&counts));
    if band.len() <= SMALL_BAND && noun != "connections" {
        for it in band {
            let _ = write!(title, "\n\n{}", it.title);
        }
    } else if noun == "connections" {
        let first = band.iter().map(|i| i.session).min().unwrap_or(0);
        let last = band.iter().map(|i| i.session).max().unwrap_or(0);
        let _ = write!(title, "\nsessions {first}–{last}; the first one:");
        if let Some(it) = band.iter().min_by_key(|i| (i.t_us, i.session)) {
            for line in it.title.lines().skip(1) {
                let _ = write!(title, "\n  {line}");
            }
        }
    } else {
        let mut by_key: BTreeMap<&str, [usize; 4]> = BTreeMap::new();
        for it in band {
            by_key.entry(&it.key).or_default()[it.class as usize] += 1;
        }
        for (k, c) in &by_key {
            let _ = write!(
                title,
                "\n  {k} ×{}: {}",
                c.iter().sum::<usize>(),
                counts_text(c)
            );
        }
        if let Some(it) = band
            .iter()
            .find(|i| i.class != ReplyClass::Ok)
            .or(band.first())
        {
            let _ = write!(title, "\nfor example:\n{}", it.title);
        }
    }
    let x0 = sc.x(from);
    let x1 = sc.x(to);
    let bx = x0 - 1.0;
    let bw = (x1 - x0).max(3.0) + 2.0;
    let _ = writeln!(
        o,
        "<g class=\"band tip\" data-lane=\"{lane}\" data-count=\"{n}\" data-from-us=\"{from}\" data-to-us=\"{to}\">\
         <title>{title}</title>\
         <rect class=\"band-rect\" x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"2\" fill=\"#ece6f7\" stroke=\"#6a4fb3\" stroke-width=\"1\"/>",
        lane = esc(&l.id),
        title = esc(&title),
        x = f1(bx),
        y = f1(l.y + 3.0),
        w = f1(bw),
        h = f1(l.h - 6.0),
    );
    // A histogram by bucket, stacked by reply class.
    let mut buckets: BTreeMap<usize, [usize; 4]> = BTreeMap::new();
    for it in band {
        buckets.entry(sc.bucket(it.t_us)).or_default()[it.class as usize] += 1;
    }
    let max = buckets
        .values()
        .map(|c| c.iter().sum::<usize>())
        .max()
        .unwrap_or(1)
        .max(1);
    let bottom = l.y + l.h - 4.0;
    let full = l.h - 10.0;
    for (b, c) in &buckets {
        let x = Scale::bucket_x(*b).max(bx);
        let mut y = bottom;
        for cls in ReplyClass::ALL {
            let k = c[cls as usize];
            if k == 0 {
                continue;
            }
            let h = full * k as f64 / max as f64;
            y -= h;
            let _ = write!(
                o,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" fill-opacity=\"0.8\"/>",
                f1(x),
                f1(y),
                f1(BUCKET_PX - 1.0),
                f1(h),
                cls.colour()
            );
        }
    }
    o.push('\n');
    let lw = text_w(&label, 12.0);
    if bw >= lw + 8.0 {
        let _ = writeln!(
            o,
            "<text class=\"band-label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"12\" font-weight=\"bold\" fill=\"#3b2a78\" stroke=\"#ffffff\" stroke-width=\"3.5\" paint-order=\"stroke\">{}</text>",
            f1(bx + bw / 2.0),
            f1(l.y + l.h / 2.0 + 4.0),
            esc(&label)
        );
    } else if bw >= text_w(&n.to_string(), 10.0) + 4.0 {
        let _ = writeln!(
            o,
            "<text class=\"band-count\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\" fill=\"#3b2a78\">{n}</text>",
            f1(bx + bw / 2.0),
            f1(l.y + 12.0),
        );
    }
    o.push_str("</g>\n");
}
