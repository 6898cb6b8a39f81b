//! The SVG of a timeline: the frame, heading and legend, lane backgrounds,
//! the time axis, lock windows and faults, the convergence line; the marks in
//! the lanes are drawn by [`super::marks`]. Also the text helpers (times,
//! escaping, tooltips) the drawing shares.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::layout::{nice_step, Item, LaneKind, Layout, Scale, BUCKET_PX, PLOT_W, PLOT_X, WIDTH};
use super::model::{Cmd, FaultAt, Model, Sess};
use super::{AnnotationKind, ReplyClass, TimelineInput};

pub(super) struct Ctx<'m, 'a> {
    pub(super) m: &'m Model<'a>,
    pub(super) sc: Scale,
    pub(super) out: String,
}

/// The `<svg>` element: every part in drawing order (later parts on top).
pub(super) fn svg_element(input: &TimelineInput<'_>) -> String {
    let m = Model::build(input.events);
    let lay = Layout::build(input, &m);
    let mut o = String::new();
    frame(&mut o, input, &lay);
    heading(&mut o, input, &m, &lay);
    lane_backgrounds(&mut o, &lay);
    axis(&mut o, &lay);
    windows_and_faults(&mut o, &m, &lay);
    converged_tint(&mut o, input, &lay);
    let mut cx = Ctx {
        m: &m,
        sc: lay.sc,
        out: o,
    };
    cx.lane_contents(input, &lay);
    convergence(&mut cx.out, input, &lay);
    cx.out.push_str("</svg>\n");
    cx.out
}

/// The `<svg>` start tag, the title, the patterns and the white background.
fn frame(o: &mut String, input: &TimelineInput<'_>, lay: &Layout) {
    let (sc, height) = (lay.sc, lay.height);
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"11\" \
         data-t0-us=\"{lo}\" data-t1-us=\"{hi}\" data-plot-x=\"{px}\" data-plot-w=\"{pw}\">",
        w = WIDTH,
        h = f1(height),
        lo = sc.lo,
        hi = sc.hi,
        px = PLOT_X,
        pw = PLOT_W,
    );
    let _ = writeln!(o, "<title>{}</title>", esc(&input.title));
    o.push_str(SVG_DEFS);
    let _ = writeln!(
        o,
        "<rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{}\" fill=\"#ffffff\"/>",
        f1(height)
    );
}

/// The title, the summary counts and the legend.
fn heading(o: &mut String, input: &TimelineInput<'_>, m: &Model<'_>, lay: &Layout) {
    let span_us = (lay.sc.hi - lay.sc.lo) as f64;
    let lock_hits = m.lock_hits.len();
    let ncmds = m.cmds.len();
    let _ = writeln!(
        o,
        "<text x=\"12\" y=\"22\" font-size=\"16\" font-weight=\"bold\" fill=\"#222\">{}</text>",
        esc(&input.title)
    );
    let _ = writeln!(
        o,
        "<text class=\"summary\" x=\"12\" y=\"40\" fill=\"#555\">{} connections · {} commands · {} LOCKED · {} faults · {} refused · {:.2} s shown</text>",
        m.connected,
        ncmds,
        lock_hits,
        m.faults.len(),
        m.refused.len(),
        span_us / 1e6
    );
    legend(o);
}

/// Each lane's background band, name and subtitle.
fn lane_backgrounds(o: &mut String, lay: &Layout) {
    let (top_rows, lanes_bottom, lanes) = (lay.top_rows, lay.lanes_bottom, &lay.lanes);
    o.push_str("<g class=\"lanes\">\n");
    for (i, l) in lanes.iter().enumerate() {
        let fill = if i % 2 == 0 { "#f6f7f9" } else { "#ffffff" };
        let _ = writeln!(
            o,
            "<g class=\"lane\" data-lane=\"{id}\"><rect x=\"0\" y=\"{y}\" width=\"{WIDTH}\" height=\"{h}\" fill=\"{fill}\"/>\
             <text class=\"lane-label\" x=\"12\" y=\"{ty}\" font-weight=\"bold\" fill=\"#333\">{label}</text>\
             <text x=\"12\" y=\"{sy}\" font-size=\"9.5\" fill=\"#777\">{sub}</text></g>",
            id = esc(&l.id),
            y = f1(l.y),
            h = f1(l.h),
            ty = f1(l.y + l.h / 2.0 - 1.0),
            sy = f1(l.y + l.h / 2.0 + 10.0),
            label = esc(&l.label),
            sub = esc(&l.sub),
        );
    }
    let _ = writeln!(
        o,
        "<line x1=\"{x}\" y1=\"{top_rows}\" x2=\"{x}\" y2=\"{b}\" stroke=\"#bbb\"/>",
        x = PLOT_X - 0.5,
        b = f1(lanes_bottom)
    );
    o.push_str("</g>\n");
}

/// The grid lines and the time axis below the lanes.
fn axis(o: &mut String, lay: &Layout) {
    let (sc, top_rows, lanes_bottom) = (lay.sc, lay.top_rows, lay.lanes_bottom);
    let step = nice_step(sc.hi - sc.lo);
    let mut ticks = Vec::new();
    let mut t = sc.lo.div_ceil(step) * step;
    while t <= sc.hi {
        ticks.push(t);
        t += step;
    }
    o.push_str("<g class=\"axis\">\n");
    for &t in &ticks {
        let x = sc.x(t);
        let _ = writeln!(
            o,
            "<line x1=\"{x}\" y1=\"{top}\" x2=\"{x}\" y2=\"{b}\" stroke=\"#e3e3e3\"/>\
             <line x1=\"{x}\" y1=\"{b}\" x2=\"{x}\" y2=\"{b5}\" stroke=\"#666\"/>\
             <text class=\"tick\" x=\"{x}\" y=\"{ty}\" text-anchor=\"middle\" fill=\"#444\">{label}</text>",
            x = f1(x),
            top = top_rows,
            b = f1(lanes_bottom),
            b5 = f1(lanes_bottom + 5.0),
            ty = f1(lanes_bottom + 18.0),
            label = tick_label(t, step)
        );
    }
    let _ = writeln!(
        o,
        "<line x1=\"{PLOT_X}\" y1=\"{b}\" x2=\"{x2}\" y2=\"{b}\" stroke=\"#666\"/>\
         <text x=\"{x2}\" y=\"{ty}\" text-anchor=\"end\" font-size=\"10\" fill=\"#777\">time since the fake started</text>",
        b = f1(lanes_bottom),
        x2 = f1(PLOT_X + PLOT_W),
        ty = f1(lanes_bottom + 34.0)
    );
    o.push_str("</g>\n");
}

/// Lock windows and faults (merged per bucket), shaded behind the marks, with
/// labels in one row above the lanes.
fn windows_and_faults(o: &mut String, m: &Model<'_>, lay: &Layout) {
    let (sc, top_rows, lanes_bottom) = (lay.sc, lay.top_rows, lay.lanes_bottom);
    let (windows, lanes) = (&lay.windows, &lay.lanes);
    let mut row_top = LabelRow::default();
    o.push_str("<g class=\"windows\">\n");
    for w in windows {
        let x0 = sc.x(w.from_us);
        let x1 = sc.x(w.to_us.unwrap_or(sc.hi));
        let wd = (x1 - x0).max(2.0);
        let what = if w.derived {
            "first to last LOCKED reply"
        } else {
            "held"
        };
        let when = match w.to_us {
            Some(to) => format!(
                "{} ({:.2} s)",
                fmt_span(w.from_us, to),
                (to - w.from_us) as f64 / 1e6
            ),
            None => format!("from {}, still held at the end", fmt_s(w.from_us)),
        };
        let hits = m.lock_hits.iter().filter(|h| h.1 == w.name).count();
        let title = format!(
            "lock {} ({what}): {when}\nusers: {}\n{hits} LOCKED replies",
            w.name,
            if w.users.is_empty() {
                "?".to_owned()
            } else {
                w.users.join(", ")
            }
        );
        let _ = writeln!(
            o,
            "<rect class=\"lock-window tip\" data-lock=\"{name}\" data-from-us=\"{from}\" data-to-us=\"{to}\" data-derived=\"{derived}\" \
             x=\"{x}\" y=\"{y}\" width=\"{wd}\" height=\"{h}\" fill=\"url(#lockhatch)\" stroke=\"#ef8a00\" stroke-width=\"1\" stroke-dasharray=\"4 3\">\
             <title>{title}</title></rect>",
            name = esc(&w.name),
            from = w.from_us,
            to = w.to_us.map_or_else(String::new, |t| t.to_string()),
            derived = w.derived,
            x = f1(x0),
            y = f1(top_rows - 20.0),
            wd = f1(wd),
            h = f1(lanes_bottom - top_rows + 20.0),
            title = esc(&title),
        );
        for l in lanes {
            if let LaneKind::User(u) = &l.kind {
                if w.users.iter().any(|wu| wu == u) {
                    let _ = writeln!(
                        o,
                        "<rect class=\"lock-lane\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#ffd59a\" opacity=\"0.75\"/>",
                        f1(x0),
                        f1(l.y + 1.0),
                        f1(wd),
                        f1(l.h - 2.0)
                    );
                }
            }
        }
        let label = format!("lock {} · {} · {hits} LOCKED", w.name, when);
        row_top.put(
            o,
            x0 + 4.0,
            top_rows - 7.0,
            &label,
            "#a85d00",
            "window-label",
        );
    }
    // Faults, merged per bucket.
    let mut fault_buckets: BTreeMap<usize, Vec<&FaultAt<'_>>> = BTreeMap::new();
    for f in &m.faults {
        fault_buckets.entry(sc.bucket(f.t_us)).or_default().push(f);
    }
    for (b, fs) in &fault_buckets {
        let mut title = if fs.len() == 1 {
            "fault".to_owned()
        } else {
            format!("{} faults", fs.len())
        };
        for f in fs.iter().take(10) {
            let _ = write!(
                title,
                "\n{} · session {} · {}: {}",
                fmt_s(f.t_us),
                f.session,
                f.rule,
                f.action
            );
            if let Some(i) = f.cmd {
                let _ = write!(title, " on {}", m.cmds[i].text);
            }
        }
        if fs.len() > 10 {
            let _ = write!(title, "\n… {} more", fs.len() - 10);
        }
        let x = Scale::bucket_x(*b);
        let _ = writeln!(
            o,
            "<rect class=\"fault tip\" data-count=\"{n}\" x=\"{x}\" y=\"{y}\" width=\"{BUCKET_PX}\" height=\"{h}\" fill=\"#d7263d\" opacity=\"0.28\"><title>{t}</title></rect>",
            n = fs.len(),
            x = f1(x),
            y = f1(top_rows),
            h = f1(lanes_bottom - top_rows),
            t = esc(&title)
        );
        let f0 = fs[0];
        let label = if fs.len() == 1 {
            format!("fault {}", f0.action)
        } else {
            format!("{} faults", fs.len())
        };
        row_top.put(o, x + 2.0, top_rows - 7.0, &label, "#b0172b", "fault-label");
    }
    o.push_str("</g>\n");
}

/// After convergence: a light green tint to the end.
fn converged_tint(o: &mut String, input: &TimelineInput<'_>, lay: &Layout) {
    let (sc, top_rows, lanes_bottom) = (lay.sc, lay.top_rows, lay.lanes_bottom);
    if let Some(first) = input
        .annotations
        .iter()
        .filter(|a| a.kind == AnnotationKind::Converged)
        .map(|a| a.t_us)
        .min()
    {
        let x = sc.x(first);
        let _ = writeln!(
            o,
            "<rect class=\"after-converged\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#2e9e5b\" opacity=\"0.10\"/>",
            f1(x),
            f1(top_rows),
            f1((PLOT_X + PLOT_W - x).max(0.0)),
            f1(lanes_bottom - top_rows)
        );
    }
}

/// The convergence line and label, on top of everything.
fn convergence(o: &mut String, input: &TimelineInput<'_>, lay: &Layout) {
    let (sc, top_rows, lanes_bottom) = (lay.sc, lay.top_rows, lay.lanes_bottom);
    for a in input
        .annotations
        .iter()
        .filter(|a| a.kind == AnnotationKind::Converged)
    {
        let x = sc.x(a.t_us);
        let label = format!("converged {}", fmt_s(a.t_us));
        let title = if a.label.is_empty() {
            format!("the backup converged at {}", fmt_s(a.t_us))
        } else {
            format!("the backup converged at {}\n{}", fmt_s(a.t_us), a.label)
        };
        let w = text_w(&label, 12.0) + 12.0;
        let right = x + w + 4.0 > PLOT_X + PLOT_W;
        let bx = if right { x - w - 4.0 } else { x + 4.0 };
        let _ = writeln!(
            o,
            "<g class=\"converged tip\" data-t-us=\"{t}\">\
             <line x1=\"{x}\" y1=\"{y0}\" x2=\"{x}\" y2=\"{y1}\" stroke=\"#0b7a34\" stroke-width=\"3\"/>\
             <rect x=\"{bx}\" y=\"{by}\" width=\"{w}\" height=\"17\" rx=\"3\" fill=\"#0b7a34\"/>\
             <text x=\"{tx}\" y=\"{ty}\" font-size=\"12\" font-weight=\"bold\" fill=\"#ffffff\">{label}</text>\
             <circle cx=\"{x}\" cy=\"{y1}\" r=\"5\" fill=\"#0b7a34\"/>\
             <title>{title}</title></g>",
            t = a.t_us,
            x = f1(x),
            y0 = f1(top_rows - 42.0 + 17.0),
            y1 = f1(lanes_bottom),
            bx = f1(bx),
            by = f1(top_rows - 42.0),
            w = f1(w),
            tx = f1(bx + 6.0),
            ty = f1(top_rows - 42.0 + 12.5),
            label = esc(&label),
            title = esc(&title),
        );
    }
}

pub(super) const SVG_DEFS: &str = "<defs>\
<pattern id=\"lockhatch\" width=\"8\" height=\"8\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
<rect width=\"8\" height=\"8\" fill=\"#ffb347\" fill-opacity=\"0.16\"/>\
<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"8\" stroke=\"#ef8a00\" stroke-opacity=\"0.35\" stroke-width=\"3\"/>\
</pattern>\
<pattern id=\"holdhatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(-45)\">\
<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#5c6bc0\" stroke-opacity=\"0.6\" stroke-width=\"2\"/>\
</pattern>\
</defs>\n";

pub(super) fn legend(o: &mut String) {
    o.push_str("<g class=\"legend\" font-size=\"11\">\n");
    let mut x = 12.0;
    let y = 56.0;
    for c in ReplyClass::ALL {
        let _ = writeln!(
            o,
            "<rect class=\"swatch {css}\" x=\"{x}\" y=\"{y}\" width=\"4\" height=\"12\" fill=\"{col}\"/>\
             <text x=\"{tx}\" y=\"{ty}\" fill=\"#333\">{label}</text>",
            css = c.css(),
            x = f1(x),
            col = c.colour(),
            tx = f1(x + 8.0),
            ty = f1(y + 10.0),
            label = esc(c.label()),
        );
        x += 8.0 + text_w(c.label(), 11.0) + 16.0;
    }
    let extra: [(&str, &str); 6] = [
        (
            "<rect x=\"{x}\" y=\"{y}\" width=\"22\" height=\"12\" fill=\"url(#lockhatch)\" stroke=\"#ef8a00\" stroke-dasharray=\"4 3\"/>",
            "lock window",
        ),
        (
            "<rect x=\"{x}\" y=\"{y}\" width=\"8\" height=\"12\" fill=\"#d7263d\" opacity=\"0.28\"/>",
            "fault",
        ),
        (
            "<rect x=\"{x}\" y=\"{y}\" width=\"22\" height=\"12\" fill=\"#ece6f7\" stroke=\"#6a4fb3\"/>",
            "density band (count, rate)",
        ),
        (
            "<path d=\"M{cx} {y} l5 6 l-5 6 l-5 -6 z\" fill=\"#1565c0\"/>",
            "source change",
        ),
        (
            "<rect x=\"{x}\" y=\"{y2}\" width=\"22\" height=\"6\" rx=\"2\" fill=\"#9fb3c8\"/>",
            "client running",
        ),
        (
            "<rect x=\"{x}\" y=\"{y}\" width=\"3\" height=\"12\" fill=\"#0b7a34\"/>",
            "converged",
        ),
    ];
    for (shape, label) in extra {
        let s = shape
            .replace("{x}", &f1(x))
            .replace("{cx}", &f1(x + 6.0))
            .replace("{y2}", &f1(y + 3.0))
            .replace("{y}", &f1(y));
        o.push_str(&s);
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"{}\" fill=\"#333\">{}</text>",
            f1(x + 28.0),
            f1(y + 10.0),
            esc(label)
        );
        x += 28.0 + text_w(label, 11.0) + 16.0;
    }
    let _ = writeln!(
        o,
        "<text x=\"{}\" y=\"{}\" fill=\"#888\" font-style=\"italic\">hover a mark for its command and reply</text>",
        f1(x + 8.0),
        f1(y + 10.0)
    );
    o.push_str("</g>\n");
}

/// A row of labels that never overlap: a label that would is left out (its
/// mark keeps its hover text).
#[derive(Default)]
pub(super) struct LabelRow {
    pub(super) taken: Vec<(f64, f64)>,
}

impl LabelRow {
    pub(super) fn put(
        &mut self,
        o: &mut String,
        x: f64,
        y: f64,
        text: &str,
        fill: &str,
        class: &str,
    ) {
        let w = text_w(text, 11.0);
        let x = x.min(PLOT_X + PLOT_W - w).max(PLOT_X);
        if self
            .taken
            .iter()
            .any(|&(a, b)| x < b + 6.0 && x + w + 6.0 > a)
        {
            return;
        }
        self.taken.push((x, x + w));
        let _ = writeln!(
            o,
            "<text class=\"{class}\" x=\"{}\" y=\"{}\" font-weight=\"bold\" fill=\"{fill}\" stroke=\"#ffffff\" stroke-width=\"3\" paint-order=\"stroke\">{}</text>",
            f1(x),
            f1(y),
            esc(text)
        );
    }
}

pub(super) fn fmt_s(us: u64) -> String {
    format!("{:.3} s", us as f64 / 1e6)
}

pub(super) fn fmt_span(a: u64, b: u64) -> String {
    format!("{:.3}–{:.3} s", a as f64 / 1e6, b as f64 / 1e6)
}

pub(super) fn tick_label(t: u64, step: u64) -> String {
    let s = t as f64 / 1e6;
    if step >= 1_000_000 {
        format!("{s:.0} s")
    } else if step >= 100_000 {
        format!("{s:.1} s")
    } else if step >= 10_000 {
        format!("{s:.2} s")
    } else {
        format!("{s:.3} s")
    }
}

/// Escape text for XML content and attributes; characters XML 1.0 forbids
/// become U+FFFD.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn f1(v: f64) -> String {
    format!("{v:.1}")
}

/// A rough width of `text` at 11 px.
pub(super) fn text_w(text: &str, px: f64) -> f64 {
    text.chars().count() as f64 * px * 0.58
}

pub(super) fn cmd_title(c: &Cmd<'_>, sess: Option<&Sess<'_>>) -> String {
    let mut t = format!("session {} · {}\n{}", c.session, fmt_s(c.t_us), c.text);
    match c.reply {
        Some(r) if c.data_lines > 0 => {
            let _ = write!(t, "\n→ ({} data lines) {r}", c.data_lines);
        }
        Some(r) => {
            let _ = write!(t, "\n→ {r}");
        }
        None => {
            let why = sess
                .and_then(|s| s.reason)
                .map_or("the log ended first".to_owned(), |r| format!("closed: {r}"));
            let _ = write!(t, "\n→ no reply (dropped; {why})");
        }
    }
    if let Some(l) = c.lock {
        let _ = write!(t, "\nlocked by {l}");
    }
    if let Some((rule, action)) = c.fault {
        let _ = write!(t, "\nfault {rule}: {action}");
    }
    t
}

pub(super) fn session_title(m: &Model<'_>, s: &Sess<'_>) -> String {
    let mut t = format!(
        "session {} ({}) · {}",
        s.id,
        if s.peer.is_empty() { "?" } else { s.peer },
        match s.to_us {
            Some(to) => fmt_span(s.from_us, to),
            None => format!("from {}, still open", fmt_s(s.from_us)),
        }
    );
    const SHOWN: usize = 12;
    for &i in s.cmds.iter().take(SHOWN) {
        let c = &m.cmds[i];
        let _ = write!(
            t,
            "\n{} → {}",
            c.text,
            c.reply.unwrap_or("(no reply: dropped)")
        );
    }
    if s.cmds.len() > SHOWN {
        let _ = write!(t, "\n… {} more commands", s.cmds.len() - SHOWN);
    }
    if let Some(r) = s.reason {
        let _ = write!(t, "\nclosed: {r}");
    }
    t
}

pub(super) fn class_counts(items: &[&Item]) -> [usize; 4] {
    let mut n = [0usize; 4];
    for it in items {
        n[it.class as usize] += 1;
    }
    n
}

pub(super) fn counts_text(n: &[usize; 4]) -> String {
    ReplyClass::ALL
        .iter()
        .filter(|c| n[**c as usize] > 0)
        .map(|c| format!("{} {}", n[*c as usize], c.label()))
        .collect::<Vec<_>>()
        .join(", ")
}
