//! The run timeline (`timeline.svg`, `timeline.html`) drawn from real event
//! logs kept in `fixtures/events/` (case C: a storm of reconnects against a
//! lock; case A: three short rolling passes) and from small synthetic logs.
//! No Cyrus needed.
//!
//! With `BACKUPD_SIM_WRITE_DOCS=1`, `case_c_docs_picture` also writes the
//! `docs/timeline-case-c.svg` shown in `docs/usage.md` (the PNG next to it is a headless
//! Chromium screenshot of that file).

use std::path::{Path, PathBuf};

use backupd_sim::events::{Event, EventKind};
use backupd_sim::timeline::{
    parse_jsonl, render_html, render_svg, write_files, Annotation, AnnotationKind, LockWindow,
    ReplyClass, TimelineInput,
};
use pretty_assertions::assert_eq;
use roxmltree::{Document, Node};

const LOCKED: &str = "NO IMAP_MAILBOX_LOCKED Mailbox locked";

fn fixture(name: &str) -> Vec<Event> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/events")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    parse_jsonl(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn session_times(events: &[Event], id: u64) -> (u64, u64) {
    let open = events
        .iter()
        .find(|e| e.session == id && matches!(e.kind, EventKind::Connected { .. }))
        .map(|e| e.t_us)
        .expect("connected");
    let close = events
        .iter()
        .find(|e| e.session == id && matches!(e.kind, EventKind::Closed { .. }))
        .map(|e| e.t_us)
        .expect("closed");
    (open, close)
}

fn lock_hit_span(events: &[Event]) -> (u64, u64) {
    let hits: Vec<u64> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::LockHit { .. }))
        .map(|e| e.t_us)
        .collect();
    (hits[0], *hits.last().expect("lock hits"))
}

/// When case C converged: the first `OK` to the queued `APPLY SUB` after the
/// last lock hit (the runner passes the time its convergence check passed).
fn converged_at(events: &[Event]) -> u64 {
    let (_, last_hit) = lock_hit_span(events);
    let mut sub_session = None;
    for e in events.iter().filter(|e| e.t_us > last_hit) {
        match &e.kind {
            EventKind::Command { verb, .. } if verb == "APPLY SUB" => sub_session = Some(e.session),
            EventKind::Reply { line, .. }
                if sub_session == Some(e.session) && line.starts_with("OK") =>
            {
                return e.t_us;
            }
            _ => {}
        }
    }
    panic!("no successful APPLY SUB after the last lock hit")
}

/// What the runner would add to case C's log: its client runs (the `-u` and
/// `-R -1` baselines, the continuous `-R`, the catch-up pass), its steps, the
/// ledger's two source changes, and when the backup converged. Times are
/// placed around the sessions they caused.
fn case_c_annotations(events: &[Event]) -> Vec<Annotation> {
    use AnnotationKind::*;
    let (s1_open, s1_close) = session_times(events, 1);
    let (s2_open, s2_close) = session_times(events, 2);
    let (s3_open, _) = session_times(events, 3);
    let last = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Connected { .. }))
        .map(|e| e.session)
        .max()
        .expect("sessions");
    let (stopped_session, _) = (last - 1, ());
    let (_, rolling_close) = session_times(events, stopped_session);
    let (catch_open, catch_close) = session_times(events, last);
    let conv = converged_at(events);
    vec![
        Annotation::new(s1_open - 6_000, ClientStart, "-u cleo (baseline)"),
        Annotation::new(s1_close + 2_000, ClientExit { status: Some(0) }, ""),
        Annotation::new(s2_open - 6_000, ClientStart, "-R -1 (baseline)"),
        Annotation::new(s2_close + 2_000, ClientExit { status: Some(0) }, ""),
        Annotation::new(s3_open - 8_000, Step, "step 1: start"),
        Annotation::new(s3_open - 6_000, ClientStart, "-R (continuous)"),
        Annotation::new(
            s3_open + 4_000,
            Step,
            "step 3: lock cleo, closes after 4000 ms",
        ),
        Annotation::new(s3_open + 20_000, Step, "step 4: create INBOX.New"),
        Annotation::new(
            s3_open + 22_000,
            SourceChange {
                user: "cleo".into(),
            },
            "create user.cleo.New",
        ),
        Annotation::new(s3_open + 40_000, Step, "step 5: subscribe INBOX.New"),
        Annotation::new(
            s3_open + 42_000,
            SourceChange {
                user: "cleo".into(),
            },
            "subscribe user.cleo.New",
        ),
        Annotation::new(conv, Converged, "compare: the backup equals the source"),
        Annotation::new(
            rolling_close + 2_000,
            ClientExit { status: None },
            "stopped by the runner (SIGTERM)",
        ),
        Annotation::new(catch_open - 6_000, ClientStart, "-R -1 (catch-up)"),
        Annotation::new(catch_close + 2_000, ClientExit { status: Some(0) }, ""),
    ]
}

fn case_c_input(events: &[Event]) -> TimelineInput<'_> {
    let mut input = TimelineInput::new(
        "c-continuous-storm: case C: continuous -R storms while locked, then converges",
        events,
    );
    input.annotations = case_c_annotations(events);
    input
}

fn parse(svg: &str) -> Document<'_> {
    Document::parse(svg).unwrap_or_else(|e| panic!("not well-formed XML: {e}"))
}

fn attr_f(n: Node<'_, '_>, name: &str) -> f64 {
    n.attribute(name)
        .unwrap_or_else(|| panic!("no {name} on {n:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn attr_u(n: Node<'_, '_>, name: &str) -> u64 {
    n.attribute(name)
        .unwrap_or_else(|| panic!("no {name} on {n:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn has_class(n: Node<'_, '_>, class: &str) -> bool {
    n.attribute("class")
        .is_some_and(|c| c.split(' ').any(|w| w == class))
}

fn all_with_class<'a, 'i>(doc: &'a Document<'i>, class: &'a str) -> Vec<Node<'a, 'i>> {
    doc.descendants().filter(|n| has_class(*n, class)).collect()
}

/// The hover text of a mark: its `<title>` child.
fn title_of(n: Node<'_, '_>) -> String {
    n.children()
        .find(|c| c.has_tag_name("title"))
        .and_then(|t| t.text())
        .unwrap_or_default()
        .to_owned()
}

fn text_of(n: Node<'_, '_>) -> String {
    n.descendants().filter_map(|d| d.text()).collect()
}

/// The picture's time scale, as the root element states it.
struct Scale {
    t0: f64,
    t1: f64,
    x: f64,
    w: f64,
}

impl Scale {
    fn of(doc: &Document<'_>) -> Scale {
        let r = doc.root_element();
        Scale {
            t0: attr_f(r, "data-t0-us"),
            t1: attr_f(r, "data-t1-us"),
            x: attr_f(r, "data-plot-x"),
            w: attr_f(r, "data-plot-w"),
        }
    }

    fn x(&self, t: u64) -> f64 {
        self.x + (t as f64 - self.t0) / (self.t1 - self.t0) * self.w
    }
}

fn lanes(doc: &Document<'_>) -> Vec<String> {
    all_with_class(doc, "lane")
        .iter()
        .map(|n| n.attribute("data-lane").expect("data-lane").to_owned())
        .collect()
}

/// Case C: the lanes, the shaded lock window over exactly the lock hits, one
/// storm band in the connections lane whose label counts exactly the
/// connections in it, and the convergence mark where the runner put it.
#[test]
fn case_c_shows_lanes_lock_window_storm_band_and_convergence() {
    let events = fixture("case-c.jsonl");
    let svg = render_svg(&case_c_input(&events));
    let doc = parse(&svg);
    let sc = Scale::of(&doc);

    // Lanes: the client, the steps, one per user, the long first connection,
    // and everything else aggregated.
    assert_eq!(
        lanes(&doc),
        ["client", "runner", "user:cleo", "session:3", "connections"]
    );
    let crowd = all_with_class(&doc, "lane")
        .into_iter()
        .find(|n| n.attribute("data-lane") == Some("connections"))
        .expect("connections lane");
    let connected = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Connected { .. }))
        .count();
    assert!(
        text_of(crowd).contains(&format!("{} sessions", connected - 1)),
        "{}",
        text_of(crowd)
    );

    // The lock window: derived from the hits, shaded from the first to the last.
    let (first_hit, last_hit) = lock_hit_span(&events);
    let windows = all_with_class(&doc, "lock-window");
    assert_eq!(windows.len(), 1);
    let w = windows[0];
    assert_eq!(w.attribute("data-lock"), Some("ctl-cleo"));
    assert_eq!(attr_u(w, "data-from-us"), first_hit);
    assert_eq!(attr_u(w, "data-to-us"), last_hit);
    assert!((attr_f(w, "x") - sc.x(first_hit)).abs() < 0.11, "x");
    let right = attr_f(w, "x") + attr_f(w, "width");
    assert!((right - sc.x(last_hit)).abs() < 0.21, "right edge");
    assert!(
        title_of(w).contains("1838 LOCKED replies"),
        "{}",
        title_of(w)
    );
    // The user's lane is shaded too.
    assert_eq!(all_with_class(&doc, "lock-lane").len(), 1);

    // The storm: one band in the connections lane, labelled with its count and
    // rate; the count is the number of connections made in its span.
    let bands: Vec<Node<'_, '_>> = all_with_class(&doc, "band")
        .into_iter()
        .filter(|n| n.attribute("data-lane") == Some("connections"))
        .collect();
    assert_eq!(bands.len(), 1, "one storm band");
    let band = bands[0];
    let (from, to) = (attr_u(band, "data-from-us"), attr_u(band, "data-to-us"));
    let in_band = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Connected { .. }))
        .filter(|e| (from..=to).contains(&e.t_us))
        .count();
    assert!(in_band >= 500, "a storm of several hundred, got {in_band}");
    assert_eq!(attr_u(band, "data-count"), in_band as u64);
    let label = band
        .descendants()
        .find(|n| has_class(*n, "band-label"))
        .and_then(|n| n.text())
        .expect("the band's visible label");
    let rate = in_band as f64 / ((to - from) as f64 / 1e6);
    assert_eq!(label, format!("{in_band} connections, {rate:.0}/s"));
    assert!(rate > 100.0, "{label}");
    // The storm lies inside the lock window.
    assert!(from >= first_hit && to <= last_hit + 10_000, "{from}..{to}");
    let band_title = title_of(band);
    assert!(band_title.contains(LOCKED), "{band_title}");
    assert!(band_title.contains("NO LOCKED"), "{band_title}");

    // The user lane aggregates too: the storm's commands in one band.
    let user_bands: Vec<Node<'_, '_>> = all_with_class(&doc, "band")
        .into_iter()
        .filter(|n| n.attribute("data-lane") == Some("user:cleo"))
        .filter(|n| attr_u(*n, "data-count") > 1000)
        .collect();
    assert_eq!(user_bands.len(), 1);
    assert!(title_of(user_bands[0]).contains("GET MAILBOXES"));

    // Convergence: one mark at the runner's time, drawn across the lanes.
    let conv = converged_at(&events);
    let marks = all_with_class(&doc, "converged");
    assert_eq!(marks.len(), 1);
    assert_eq!(attr_u(marks[0], "data-t-us"), conv);
    let line = marks[0]
        .children()
        .find(|c| c.has_tag_name("line"))
        .expect("line");
    assert!((attr_f(line, "x1") - sc.x(conv)).abs() < 0.11);
    assert!(text_of(marks[0]).contains("converged 4."));
    assert!(conv > last_hit);

    // Size stays reasonable for 923 connections and 6470 commands.
    assert!(svg.len() < 250_000, "{} bytes", svg.len());
}

/// Every command mark hovers with its command and its reply; connections
/// hover with their commands; client runs, steps and changes have theirs.
#[test]
fn case_c_marks_hover_with_command_and_reply() {
    let events = fixture("case-c.jsonl");
    let svg = render_svg(&case_c_input(&events));
    let doc = parse(&svg);
    let marks = all_with_class(&doc, "mark");
    assert!(!marks.is_empty());
    for m in &marks {
        assert!(!title_of(*m).is_empty(), "a mark without hover text: {m:?}");
    }
    // The long first connection of the continuous client: its commands after
    // the idle second come within 3 ms, so they share a small band whose
    // hover lists each with its reply.
    let session3: Vec<String> = all_with_class(&doc, "band")
        .into_iter()
        .filter(|n| n.attribute("data-lane") == Some("session:3"))
        .map(title_of)
        .collect();
    assert_eq!(session3.len(), 1, "{session3:?}");
    let s3 = &session3[0];
    assert!(
        s3.contains(&format!(
            "GET MAILBOXES (user.cleo.New)\n→ {LOCKED}\nlocked by ctl-cleo"
        )),
        "{s3}"
    );
    assert!(
        s3.contains(&format!(
            "APPLY SUB %(USERID cleo MBOXNAME user.cleo.New)\n→ {LOCKED}"
        )),
        "{s3}"
    );
    assert!(s3.contains("EXIT\n→ OK Finished"), "{s3}");
    // The converging pass's APPLY SUB, in the user lane, answered OK.
    let ok_sub = marks
        .iter()
        .filter(|m| has_class(**m, "ok"))
        .map(|m| title_of(*m))
        .find(|t| t.contains("APPLY SUB %(USERID cleo MBOXNAME user.cleo.New)"))
        .expect("the applied SUB");
    assert!(ok_sub.contains("→ OK Success"), "{ok_sub}");
    // Client runs, source changes.
    let runs: Vec<String> = all_with_class(&doc, "client-run")
        .into_iter()
        .map(title_of)
        .collect();
    assert_eq!(runs.len(), 4, "{runs:?}");
    let continuous = runs
        .iter()
        .find(|r| r.contains("-R (continuous)"))
        .expect("the continuous run");
    assert!(
        continuous.contains("killed: stopped by the runner (SIGTERM)"),
        "{continuous}"
    );
    let changes = all_with_class(&doc, "source-change");
    assert_eq!(changes.len(), 2);
    assert!(title_of(changes[1]).contains("subscribe user.cleo.New"));
}

fn ev(seq: u64, t_ms: u64, session: u64, kind: EventKind) -> Event {
    Event {
        seq,
        t_us: t_ms * 1000,
        session,
        kind,
    }
}

fn cmd(verb: &str, user: &str, text: &str) -> EventKind {
    EventKind::Command {
        verb: verb.into(),
        users: vec![user.into()],
        mailboxes: Vec::new(),
        more: 0,
        bytes: text.len(),
        text: text.into(),
    }
}

fn reply(line: &str) -> EventKind {
    EventKind::Reply {
        line: line.into(),
        data_lines: 0,
    }
}

/// A small log with one command of each reply class: OK, LOCKED, another NO,
/// and one dropped by a fault (no reply, then the close).
fn four_classes() -> Vec<Event> {
    let connected = |p: &str| EventKind::Connected { peer: p.into() };
    vec![
        ev(1, 100, 1, connected("127.0.0.1:1000")),
        ev(2, 110, 1, cmd("GET USER", "ann", "GET USER ann")),
        ev(3, 111, 1, reply("OK Success")),
        ev(
            4,
            300,
            1,
            cmd("GET MAILBOXES", "ann", "GET MAILBOXES (user.ann)"),
        ),
        ev(
            5,
            300,
            1,
            EventKind::LockHit {
                lock: "held".into(),
            },
        ),
        ev(6, 301, 1, reply(LOCKED)),
        ev(7, 500, 1, cmd("APPLY MAILBOX", "ann", "APPLY MAILBOX %(x)")),
        ev(8, 501, 1, reply("NO IMAP_SYNC_CHECKSUM Checksum mismatch")),
        ev(
            9,
            502,
            1,
            EventKind::Closed {
                reason: "closed by the server after its reply".into(),
            },
        ),
        ev(10, 700, 2, connected("127.0.0.1:1001")),
        ev(
            11,
            800,
            2,
            cmd("APPLY SUB", "ann", "APPLY SUB %(USERID ann)"),
        ),
        ev(
            12,
            800,
            2,
            EventKind::Fault {
                rule: "drop".into(),
                action: "drop-before".into(),
            },
        ),
        ev(
            13,
            801,
            2,
            EventKind::Closed {
                reason: "fault drop-before".into(),
            },
        ),
    ]
}

/// Each reply class has its own colour, used by its marks and by the legend.
#[test]
fn marks_are_coloured_by_reply_class_with_a_legend() {
    let events = four_classes();
    let svg = render_svg(&TimelineInput::new("classes", &events));
    let doc = parse(&svg);
    let legend = all_with_class(&doc, "legend");
    assert_eq!(legend.len(), 1);
    let legend_text = text_of(legend[0]);
    for class in [
        ReplyClass::Ok,
        ReplyClass::Locked,
        ReplyClass::No,
        ReplyClass::Dropped,
    ] {
        let swatch = legend[0]
            .descendants()
            .find(|n| has_class(*n, "swatch") && has_class(*n, class.css()))
            .unwrap_or_else(|| panic!("no legend swatch for {class:?}"));
        assert_eq!(swatch.attribute("fill"), Some(class.colour()));
        assert!(legend_text.contains(class.label()), "{legend_text}");
    }
    let colours: Vec<&str> = ReplyClass::ALL.iter().map(|c| c.colour()).collect();
    let mut dedup = colours.clone();
    dedup.sort_unstable();
    dedup.dedup();
    assert_eq!(dedup.len(), 4, "four distinct colours: {colours:?}");

    // The user lane: one mark per command, in order, each in its class's colour.
    let user_marks: Vec<Node<'_, '_>> = doc
        .descendants()
        .filter(|n| n.attribute("data-lane") == Some("user:ann") && has_class(*n, "marks"))
        .flat_map(|g| g.children().filter(|c| has_class(*c, "mark")))
        .collect();
    let seen: Vec<(String, String)> = user_marks
        .iter()
        .map(|m| {
            let class = m
                .attribute("class")
                .expect("class")
                .split(' ')
                .nth(1)
                .expect("reply class")
                .to_owned();
            (class, m.attribute("fill").expect("fill").to_owned())
        })
        .collect();
    let want: Vec<(String, String)> = [
        ReplyClass::Ok,
        ReplyClass::Locked,
        ReplyClass::No,
        ReplyClass::Dropped,
    ]
    .iter()
    .map(|c| (c.css().to_owned(), c.colour().to_owned()))
    .collect();
    assert_eq!(seen, want);
    let dropped = title_of(user_marks[3]);
    assert!(
        dropped.contains("no reply (dropped; closed: fault drop-before)"),
        "{dropped}"
    );
    assert!(dropped.contains("fault drop: drop-before"), "{dropped}");
    // The fault is shaded across the lanes, the dropped close crossed out.
    let faults = all_with_class(&doc, "fault");
    assert_eq!(faults.len(), 1);
    assert!(title_of(faults[0]).contains("drop: drop-before on APPLY SUB"));
    assert_eq!(all_with_class(&doc, "close-bad").len(), 1);
    // Two connections: a lane each, no aggregation.
    assert_eq!(lanes(&doc), ["user:ann", "session:1", "session:2"]);
}

/// Same input, same bytes, for the SVG and the HTML page.
#[test]
fn rendering_is_deterministic() {
    let events = fixture("case-c.jsonl");
    let a = case_c_input(&events);
    let b = case_c_input(&events);
    assert_eq!(render_svg(&a), render_svg(&b));
    assert_eq!(render_html(&a), render_html(&b));
    let small = four_classes();
    let s = TimelineInput::new("x", &small);
    assert!(render_svg(&s) == render_svg(&s));
}

/// Every text is escaped: command texts, replies, labels, the title, lock
/// names; characters XML forbids are replaced.
#[test]
fn text_is_escaped() {
    let nasty = "APPLY MAILBOX <x> & \"y\" 'z' \u{1}";
    let mut events = four_classes();
    if let EventKind::Command { text, .. } = &mut events[1].kind {
        *text = nasty.into();
    }
    if let EventKind::Reply { line, .. } = &mut events[2].kind {
        *line = "OK <done> & \"fine\"".into();
    }
    let mut input = TimelineInput::new("title <&\"> here", &events);
    input.annotations = vec![
        Annotation::new(50_000, AnnotationKind::ClientStart, "-u <&>"),
        Annotation::new(
            60_000,
            AnnotationKind::SourceChange {
                user: "a<b>".into(),
            },
            "append \"x\" & <y>",
        ),
        Annotation::new(70_000, AnnotationKind::Step, "step </title>"),
        Annotation::new(900_000, AnnotationKind::Converged, "<&>"),
    ];
    input.lock_windows = vec![LockWindow {
        name: "lock \"<&>\"".into(),
        users: vec!["ann".into()],
        from_us: 250_000,
        to_us: None,
        derived: false,
    }];
    let svg = render_svg(&input);
    let doc = parse(&svg);
    assert!(!svg.contains("<x>") && !svg.contains("<done>") && !svg.contains("<y>"));
    assert!(!svg.contains('\u{1}'));
    let titles: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("title"))
        .filter_map(|n| n.text().map(str::to_owned))
        .collect();
    let want = "APPLY MAILBOX <x> & \"y\" 'z' \u{fffd}";
    assert!(
        titles
            .iter()
            .any(|t| t.contains(want) && t.contains("→ OK <done> & \"fine\"")),
        "{titles:#?}"
    );
    assert_eq!(titles[0], "title <&\"> here");
    assert!(titles.iter().any(|t| t.contains("append \"x\" & <y>")));
    assert!(titles.iter().any(|t| t.contains("step </title>")));
    let w = all_with_class(&doc, "lock-window");
    assert_eq!(w[0].attribute("data-lock"), Some("lock \"<&>\""));
    assert!(title_of(w[0]).contains("still held at the end"));
    // The HTML page: well-formed too (the SVG inside is XML), nothing external.
    let html = render_html(&input);
    assert!(html.contains("<title>title &lt;&amp;&quot;&gt; here</title>"));
}

/// The HTML page is self-contained: the SVG inline, inline style and
/// script, no URL but the SVG namespace.
#[test]
fn html_is_self_contained() {
    let events = fixture("case-a.jsonl");
    let html = render_html(&TimelineInput::new("case A", &events));
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert_eq!(html.matches("http").count(), 1, "only the SVG namespace");
    for external in [
        "src=",
        "href=",
        "@import",
        "url(http",
        "fetch(",
        "XMLHttpRequest",
    ] {
        assert!(!html.contains(external), "{external}");
    }
    assert!(html.contains("<script>") && html.contains("<style>"));
    // The SVG part alone parses as XML.
    let start = html.find("<svg").expect("svg");
    let end = html.find("</svg>").expect("/svg") + "</svg>".len();
    parse(&html[start..end]);
}

/// Case A, small: a lane per connection, nothing aggregated, the two LOCKED
/// passes inside the derived window, the files written.
#[test]
fn case_a_has_a_lane_per_connection() {
    let events = fixture("case-a.jsonl");
    let input = TimelineInput::new("a-rolling-once-defers", &events);
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(dir.path(), &input).expect("write");
    let svg = std::fs::read_to_string(dir.path().join("timeline.svg")).expect("svg");
    assert_eq!(svg, render_svg(&input));
    assert!(dir.path().join("timeline.html").exists());
    let doc = parse(&svg);
    assert_eq!(
        lanes(&doc),
        [
            "user:anna",
            "session:1",
            "session:2",
            "session:3",
            "session:4",
            "session:5"
        ]
    );
    let locked: Vec<Node<'_, '_>> = all_with_class(&doc, "locked")
        .into_iter()
        .filter(|n| has_class(*n, "mark"))
        .collect();
    // Two marks in the user lane and one in each session lane.
    assert_eq!(locked.len(), 4);
    let w = all_with_class(&doc, "lock-window");
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].attribute("data-lock"), Some("ctl-anna"));
    assert_eq!(w[0].attribute("data-derived"), Some("true"));
    assert!(all_with_class(&doc, "band-label").is_empty());
}

/// A much bigger storm (5000 connections in two seconds, one LOCKED command
/// each) still makes a small picture: one band with the exact count.
#[test]
fn a_big_storm_stays_small() {
    let mut events = Vec::new();
    let mut seq = 0;
    let mut push = |t_us: u64, session: u64, kind: EventKind| {
        seq += 1;
        events.push(Event {
            seq,
            t_us,
            session,
            kind,
        });
    };
    for i in 0..5000u64 {
        let t = 1_000_000 + i * 400;
        push(
            t,
            i + 1,
            EventKind::Connected {
                peer: "127.0.0.1:9".into(),
            },
        );
        push(
            t + 50,
            i + 1,
            cmd("GET MAILBOXES", "bob", "GET MAILBOXES (user.bob)"),
        );
        push(
            t + 60,
            i + 1,
            EventKind::LockHit {
                lock: "ctl-bob".into(),
            },
        );
        push(t + 70, i + 1, reply(LOCKED));
        push(
            t + 100,
            i + 1,
            EventKind::Closed {
                reason: "end of stream".into(),
            },
        );
    }
    let svg = render_svg(&TimelineInput::new("storm", &events));
    assert!(svg.len() < 120_000, "{} bytes", svg.len());
    let doc = parse(&svg);
    assert_eq!(lanes(&doc), ["user:bob", "connections"]);
    let bands: Vec<Node<'_, '_>> = all_with_class(&doc, "band")
        .into_iter()
        .filter(|n| n.attribute("data-lane") == Some("connections"))
        .collect();
    assert_eq!(bands.len(), 1);
    assert_eq!(attr_u(bands[0], "data-count"), 5000);
    let label = text_of(bands[0]);
    // 5000 connections from the first to the last, 1.9996 s apart.
    assert!(label.contains("5000 connections, 2501/s"), "{label}");
}

/// A tiny timeline, byte for byte: catches unintended changes of layout.
#[test]
fn tiny_timeline_snapshot() {
    let events = four_classes();
    let mut input = TimelineInput::new("tiny", &events);
    input.annotations = vec![
        Annotation::new(90_000, AnnotationKind::ClientStart, "-R -1"),
        Annotation::new(
            200_000,
            AnnotationKind::SourceChange { user: "ann".into() },
            "append 1",
        ),
        Annotation::new(850_000, AnnotationKind::ClientExit { status: Some(1) }, ""),
        Annotation::new(880_000, AnnotationKind::ClientRestart, "policy restart"),
        Annotation::new(950_000, AnnotationKind::Converged, ""),
    ];
    insta::assert_snapshot!(render_svg(&input));
}

/// Renders case C to a temp dir and, with `BACKUPD_SIM_WRITE_DOCS=1`, writes
/// `docs/timeline-case-c.svg` (shown in `docs/usage.md`).
#[test]
fn case_c_docs_picture() {
    let events = fixture("case-c.jsonl");
    let input = case_c_input(&events);
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(dir.path(), &input).expect("write");
    let svg = std::fs::read_to_string(dir.path().join("timeline.svg")).expect("svg");
    parse(&svg);
    if std::env::var("BACKUPD_SIM_WRITE_DOCS").is_ok_and(|v| v == "1") {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).expect("docs/");
        std::fs::write(docs.join("timeline-case-c.svg"), &svg).expect("write docs svg");
        let html = std::env::temp_dir().join("timeline-case-c.html");
        std::fs::write(&html, render_html(&input)).expect("write html");
        eprintln!(
            "wrote {} (and {} for a screenshot)",
            docs.join("timeline-case-c.svg").display(),
            html.display()
        );
    }
}
