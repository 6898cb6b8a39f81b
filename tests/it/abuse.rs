//! The fake under abuse (issue 20): a misbehaving client must not take it
//! down, leak a descriptor or grow its memory past a bound. Each case runs a
//! `backupd-sim serve` child on loopback (port from the OS) and reads its
//! memory (`VmRSS`, `VmHWM`) and descriptors under `/proc/PID`.
//!
//! `make test` runs reduced counts (a few seconds each); `make abuse`
//! (`ABUSE_FULL=1`) the full ones. Every case prints its measured figures
//! (`--nocapture` shows them); `docs/checking-the-harness.md` has the table.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use backupd_sim::cyrus::process::wait_until;
use backupd_sim::rng::{Rng, Seed};
use backupd_sim::server::Deflate;
use backupd_sim::store::{load_state, save_state};
use flate2::{Compression, Decompress, FlushDecompress};

use crate::util::{mailbox_cmd, message_cmd, Client, BIN, LOGIN};

const MIB: u64 = 1024;

/// The full counts (`make abuse`), or the reduced ones (`make test`).
fn full() -> bool {
    std::env::var("ABUSE_FULL").is_ok_and(|v| v == "1")
}

fn pick(reduced: usize, full_count: usize) -> usize {
    if full() {
        full_count
    } else {
        reduced
    }
}

/// A `backupd-sim serve` child, killed on drop.
struct Served {
    child: Child,
    addr: SocketAddr,
    control: Option<SocketAddr>,
}

impl Served {
    fn start(args: &[&str]) -> Served {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(["--seed", "1"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn backupd-sim serve");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line was {line:?}"))
            .parse()
            .expect("addr");
        let control = args.contains(&"--control").then(|| {
            line.clear();
            out.read_line(&mut line).expect("second line");
            line.trim()
                .strip_prefix("control on ")
                .unwrap_or_else(|| panic!("second line was {line:?}"))
                .parse()
                .expect("control addr")
        });
        Served {
            child,
            addr,
            control,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// A `kB` field of `/proc/PID/status`, in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
    }

    fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS")
    }

    /// The peak resident set so far.
    fn hwm_kib(&self) -> u64 {
        self.status_kib("VmHWM")
    }

    /// Open descriptors.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("fd dir")
            .count()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Still serving: a new connection gets the greeting.
    fn assert_serving(&mut self) {
        assert!(self.alive(), "the fake died");
        let mut s = connect(self.addr);
        greeting(&mut s);
    }

    /// SIGTERM and a bounded wait: the exit code.
    fn terminate(&mut self) -> i32 {
        signal(self.pid(), nix::sys::signal::Signal::SIGTERM);
        let mut code = None;
        assert!(
            wait_until(Duration::from_secs(10), || {
                code = self.child.try_wait().expect("wait").map(|s| s.code());
                code.is_some()
            }),
            "serve did not exit within 10 s of SIGTERM"
        );
        code.flatten().unwrap_or(-1)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

/// A loopback connection whose every read and write has a 10 s deadline.
fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// One line from `s` (a byte at a time: nothing is read past it).
fn line(s: &mut impl Read) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while !out.ends_with(b"\n") {
        match s.read(&mut b) {
            Ok(1) => out.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).trim_end().to_owned()
}

fn greeting(s: &mut TcpStream) {
    loop {
        let l = line(s);
        assert!(!l.is_empty(), "closed during the greeting");
        if l.starts_with("* OK") {
            return;
        }
    }
}

fn login(s: &mut TcpStream) {
    greeting(s);
    s.write_all(format!("{LOGIN}\r\n").as_bytes())
        .expect("write");
    assert_eq!(line(s), "OK Success (no protection)");
}

/// Whatever the peer sends until it closes (bounded by the read deadline).
fn rest(s: &mut impl Read) -> (String, bool) {
    let mut out = Vec::new();
    let closed = loop {
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// Whether the peer has closed `s` (reads end of stream or a reset now).
fn peer_closed(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).expect("nonblocking");
    let mut b = [0u8; 256];
    let closed = match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).expect("blocking");
    closed
}

fn mib(kib: u64) -> f64 {
    kib as f64 / MIB as f64
}

// ---------------------------------------------------------------------------
// Slow loris
// ---------------------------------------------------------------------------

/// Clients trickling one byte every `gap` into a command that never ends are
/// dropped once the idle timeout has passed since the command's first byte,
/// although no single read ever waits that long; memory stays flat.
#[test]
fn slow_loris_clients_are_dropped_with_memory_flat() {
    let (idle_s, gap, clients) = if full() {
        (10, Duration::from_secs(1), 50)
    } else {
        (2, Duration::from_millis(500), 5)
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let events = dir.path().join("events.jsonl");
    let mut served = Served::start(&[
        "--idle-timeout",
        &idle_s.to_string(),
        "--events",
        events.to_str().expect("path"),
    ]);
    let rss0 = served.rss_kib();
    let addr = served.addr;
    let started = Instant::now();
    let lorises: Vec<_> = (0..clients)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = connect(addr);
                login(&mut s);
                let first = Instant::now();
                let mut sent = 0usize;
                // Bounded: the fake must drop us well before 3x the idle timeout.
                while first.elapsed() < Duration::from_secs(3 * idle_s) {
                    if s.write_all(b"x").is_err() {
                        break;
                    }
                    sent += 1;
                    std::thread::sleep(gap);
                    if peer_closed(&mut s) {
                        break;
                    }
                }
                (first.elapsed(), sent)
            })
        })
        .collect();
    let mut peak = 0;
    while !lorises.iter().all(|t| t.is_finished()) {
        peak = peak.max(served.rss_kib());
        std::thread::sleep(Duration::from_millis(100));
    }
    let results: Vec<(Duration, usize)> = lorises.into_iter().map(|t| t.join().unwrap()).collect();
    let longest = results.iter().map(|r| r.0).max().unwrap_or_default();
    let bytes: usize = results.iter().map(|r| r.1).sum();
    let rss1 = served.rss_kib();
    served.assert_serving();
    assert_eq!(served.terminate(), 0);
    let log = std::fs::read_to_string(&events).expect("events");
    let dropped = log
        .matches("a command not whole within the idle timeout of its first byte")
        .count();
    eprintln!(
        "slow loris: {clients} clients, a byte every {gap:?}, idle timeout {idle_s} s: \
         all dropped after at most {:.1} s ({bytes} bytes trickled in all, {:.1} s in all); \
         RSS {:.1} MiB before, {:.1} MiB peak, {:.1} MiB after",
        longest.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        mib(rss0),
        mib(peak),
        mib(rss1)
    );
    assert_eq!(
        dropped, clients,
        "every loris dropped for its slow command:\n{log}"
    );
    assert!(
        // A drop is seen at the next byte after the timeout; the slack is for
        // a loaded machine (the loop gives up at 3x the timeout).
        longest < Duration::from_secs(idle_s) + gap * 6,
        "dropped only after {longest:?}"
    );
    assert!(peak < rss0 + 8 * MIB, "RSS grew from {rss0} to {peak} KiB");
}

// ---------------------------------------------------------------------------
// Connection flood
// ---------------------------------------------------------------------------

/// `concurrent` connections at once, each greeted, then `cycles`
/// connect/greeting/close cycles: the fake's descriptor count returns to its
/// baseline each time, and its peak RSS stays bounded.
#[test]
fn a_connection_flood_leaks_no_descriptor_and_bounds_memory() {
    let (concurrent, cycles) = (pick(50, 200), pick(500, 10_000));
    let mut served = Served::start(&[]);
    let addr = served.addr;
    let fds0 = served.fds();
    let rss0 = served.rss_kib();
    let mut conns: Vec<TcpStream> = (0..concurrent)
        .map(|_| {
            let mut s = connect(addr);
            greeting(&mut s);
            s
        })
        .collect();
    // Each is open on the fake's side too (greeted, so accepted).
    let fds_open = served.fds();
    let rss_open = served.rss_kib();
    // Every one is still served: a command gets its answer.
    for s in &mut conns {
        s.write_all(b"NOOP\r\n").expect("write");
    }
    for s in &mut conns {
        assert_eq!(line(s), "OK Noop completed");
    }
    drop(conns);
    let back = wait_until(Duration::from_secs(5), || served.fds() == fds0);
    assert!(
        back,
        "{} descriptors after closing, {fds0} before",
        served.fds()
    );
    // What the allocator keeps of the concurrent connections' buffers stays
    // in RSS; the cycles are measured from here.
    let rss_closed = served.rss_kib();
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            std::thread::spawn(move || {
                for _ in (w..cycles).step_by(4) {
                    let mut s = connect(addr);
                    greeting(&mut s);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let cycle_time = started.elapsed();
    let back = wait_until(Duration::from_secs(5), || served.fds() == fds0);
    let (fds1, rss1, hwm) = (served.fds(), served.rss_kib(), served.hwm_kib());
    served.assert_serving();
    eprintln!(
        "flood: {concurrent} at once: fds {fds0} -> {fds_open} -> {fds0}, RSS {:.1} -> {:.1} MiB; \
         {:.1} after closing; then {cycles} connect/close cycles in {:.1} s: fds {fds1} \
         (baseline {fds0}), RSS {:.1} MiB, peak {:.1} MiB",
        mib(rss0),
        mib(rss_open),
        mib(rss_closed),
        cycle_time.as_secs_f64(),
        mib(rss1),
        mib(hwm)
    );
    assert!(
        fds_open >= fds0 + concurrent,
        "{fds_open} fds with {concurrent} open"
    );
    assert!(back, "{fds1} descriptors after the cycles, {fds0} before");
    assert!(hwm < rss0 + 64 * MIB, "peak RSS {hwm} KiB from {rss0} KiB");
    // The fake keeps a `connected` and a `closed` event of each connection
    // (the log is bounded at 1,000,000 events) and its history session: a
    // few hundred bytes each (make abuse: 0.33 KiB a connection over 10,000
    // cycles). A connection that leaked its buffers (two of
    // 64 KiB) would be far above 2 KiB each.
    let per_conn_kib = rss1.saturating_sub(rss_closed) as f64 / cycles as f64;
    assert!(
        per_conn_kib < 2.0,
        "RSS {rss1} KiB after the cycles, {rss_closed} KiB before: {per_conn_kib:.2} KiB kept per connection"
    );
}

// ---------------------------------------------------------------------------
// Oversized announcements
// ---------------------------------------------------------------------------

/// Sends `what` after logging in; the answer and whether the fake closed.
fn send_after_login(addr: SocketAddr, what: &[u8]) -> (String, bool) {
    let mut s = connect(addr);
    login(&mut s);
    // The fake may close before reading all of it: a failed write is fine.
    let _ = s.write_all(what);
    rest(&mut s)
}

/// A `{2^40}` literal (synchronising, non-synchronising, and a message
/// body's `%{…}`) is refused when announced: `BAD IMAP_PROTOCOL_ERROR` and
/// the connection closed, nothing buffered.
#[test]
fn a_two_to_the_forty_literal_is_refused_when_announced() {
    let mut served = Served::start(&[]);
    // One ordinary session first: what serving a connection costs at all
    // (its buffers, the runtime's first allocations) is the baseline, not
    // part of the bound (make test once saw the peak 4.1 MiB above a
    // baseline taken before any connection).
    let (answer, _) = send_after_login(served.addr, b"NOOP\r\nEXIT\r\n");
    assert!(answer.starts_with("OK"), "{answer:?}");
    let rss0 = served.rss_kib();
    let n = 1u64 << 40;
    for announce in [
        format!("GET USER {{{n}+}}\r\n"),
        format!("GET USER {{{n}}}\r\n"),
        format!("APPLY MESSAGE (%{{default {} {n}}}\r\n", "0".repeat(40)),
    ] {
        let (answer, closed) = send_after_login(served.addr, announce.as_bytes());
        assert!(
            answer.starts_with("BAD IMAP_PROTOCOL_ERROR") && answer.contains("literal"),
            "{announce:?}: {answer:?}"
        );
        assert!(closed, "{announce:?}: not closed");
    }
    let hwm = served.hwm_kib();
    served.assert_serving();
    eprintln!(
        "{{2^40}} literals: refused on announcement; RSS {:.1} MiB before, peak {:.1} MiB",
        mib(rss0),
        mib(hwm)
    );
    assert!(hwm < rss0 + 4 * MIB, "peak {hwm} KiB from {rss0} KiB");
}

/// A line with no end: past the 16 MiB line limit the fake answers
/// `BAD IMAP_PROTOCOL_ERROR` and closes; its memory grows by about the
/// limit, not by what is sent.
#[test]
fn a_line_with_no_end_is_cut_at_the_line_limit() {
    let mut served = Served::start(&[]);
    let rss0 = served.rss_kib();
    let limit = 16usize << 20;
    // Exactly one byte past the limit, so the fake has read all we sent when
    // it answers (more would make its close a reset).
    let mut what = b"GET USER ".to_vec();
    what.resize(limit + 1, b'a');
    let (answer, closed) = send_after_login(served.addr, &what);
    let hwm = served.hwm_kib();
    assert!(
        answer.starts_with("BAD IMAP_PROTOCOL_ERROR") && answer.contains("line"),
        "{answer:?}"
    );
    assert!(closed);
    served.assert_serving();
    eprintln!(
        "a line with no end: cut after {} MiB: RSS {:.1} MiB before, peak {:.1} MiB",
        limit >> 20,
        mib(rss0),
        mib(hwm)
    );
    assert!(
        hwm < rss0 + 3 * (limit as u64 / 1024),
        "peak {hwm} KiB from {rss0} KiB"
    );
}

/// `GET MAILBOXES` with `items` two-byte list items on one line; the answer
/// line, and the fake's peak RSS after it.
fn list_items(served: &Served, items: usize) -> (String, u64) {
    let mut what = b"GET MAILBOXES (".to_vec();
    for _ in 0..items {
        what.extend_from_slice(b"a ");
    }
    what.extend_from_slice(b")\r\nNOOP\r\n");
    let mut s = connect(served.addr);
    login(&mut s);
    s.write_all(&what).expect("write");
    let answer = line(&mut s);
    // The connection goes on either way: the NOOP behind it is answered.
    assert_eq!(line(&mut s), "OK Noop completed", "after {answer:?}");
    (answer, served.hwm_kib())
}

/// Too many list items: two bytes each on the wire, but 40 and more decoded,
/// so the byte limits alone would let a 16 MiB line take gigabytes. A command
/// keeps at most `VALUES_MAX` (1,048,576) values: one item more is refused
/// as unparsable before anything is executed (`BAD`, as backupd answers
/// arguments it cannot parse), the connection
/// goes on, and memory is bounded by what the limit allows.
#[test]
fn too_many_list_items_are_refused_with_memory_bounded() {
    let max = backupd_sim::dlist::VALUES_MAX;
    // The list itself is one value.
    let mut served = Served::start(&[]);
    let rss0 = served.rss_kib();
    let (over, hwm_over) = list_items(&served, max);
    served.assert_serving();
    let mut served_at = Served::start(&[]);
    let rss0_at = served_at.rss_kib();
    let (at, hwm_at) = list_items(&served_at, max - 1);
    served_at.assert_serving();
    eprintln!(
        "list items: {max} refused ({over:?}): RSS {:.1} MiB before, peak {:.1} MiB; \
         {} accepted ({at:?}): RSS {:.1} MiB before, peak {:.1} MiB",
        mib(rss0),
        mib(hwm_over),
        max - 1,
        mib(rss0_at),
        mib(hwm_at)
    );
    assert!(over.starts_with("BAD "), "{over:?}");
    assert_eq!(at, "OK Success");
    assert!(
        hwm_over < rss0 + 128 * MIB,
        "peak {hwm_over} KiB from {rss0} KiB"
    );
    assert!(
        hwm_at < rss0_at + 384 * MIB,
        "peak {hwm_at} KiB from {rss0_at} KiB"
    );
}

// ---------------------------------------------------------------------------
// Deflate bomb
// ---------------------------------------------------------------------------

fn inflate_all(wire: &[u8]) -> String {
    let mut z = Decompress::new(false);
    let mut out = Vec::with_capacity(64 * 1024);
    let _ = z.decompress_vec(wire, &mut out, FlushDecompress::Sync);
    String::from_utf8_lossy(&out).into_owned()
}

/// After `COMPRESS DEFLATE`, a few KiB that inflate past the 16 MiB line
/// limit: the fake inflates at most 64 KiB at a time and checks its limits
/// after each, so it answers `BAD IMAP_PROTOCOL_ERROR` (compressed) and closes
/// with its memory grown by about the limit, not by the inflated size.
#[test]
fn a_deflate_bomb_is_cut_at_the_line_limit() {
    let mut served = Served::start(&[]);
    let rss0 = served.rss_kib();
    let inflated = pick(64 << 20, 256 << 20);
    let mut s = connect(served.addr);
    login(&mut s);
    s.write_all(b"COMPRESS DEFLATE\r\n").expect("write");
    assert_eq!(line(&mut s), "OK DEFLATE active");
    // The fake's own compressor, at the best level: the smallest bomb.
    let mut z = Deflate::with_level(Compression::best());
    let piece = vec![b'a'; 1 << 20];
    let mut wire = z.compress(b"GET USER ").expect("deflate");
    for _ in 0..inflated >> 20 {
        wire.extend(z.compress(&piece).expect("deflate"));
    }
    let sent = wire.len();
    let _ = s.write_all(&wire);
    let mut reply = Vec::new();
    // Closed after the answer: end of stream, or a reset (our unread bytes).
    let end = s.read_to_end(&mut reply);
    assert!(
        end.as_ref().map_or_else(
            |e| e.kind() == std::io::ErrorKind::ConnectionReset,
            |_| true
        ),
        "not closed: {end:?}"
    );
    let answer = inflate_all(&reply);
    let hwm = served.hwm_kib();
    eprintln!(
        "deflate bomb: {:.1} KiB inflating to {} MiB: {:?}; RSS {:.1} MiB before, peak {:.1} MiB",
        sent as f64 / 1024.0,
        inflated >> 20,
        answer.trim(),
        mib(rss0),
        mib(hwm)
    );
    assert!(
        answer.starts_with("BAD IMAP_PROTOCOL_ERROR") && answer.contains("line"),
        "{answer:?}"
    );
    served.assert_serving();
    assert!(hwm < rss0 + 48 * MIB, "peak {hwm} KiB from {rss0} KiB");
}

// ---------------------------------------------------------------------------
// The state file under SIGKILL
// ---------------------------------------------------------------------------

/// Users in a state file, as loaded (a torn file does not load).
fn users_in(path: &Path) -> Vec<String> {
    let store = load_state(path).unwrap_or_else(|e| panic!("the state file does not load: {e}"));
    let problems = store.verify_bodies();
    assert!(problems.is_empty(), "{problems:?}");
    store.users().keys().cloned().collect()
}

/// `serve --state` SIGKILLed at random points of its save (after SIGTERM):
/// the file always loads, as the old state or the new one, never torn.
#[test]
fn the_state_file_survives_sigkill_during_its_write() {
    let kills = pick(20, 200);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    // A state big enough that its save takes a while: 10 users with 100
    // records each.
    {
        let mut store = load_state(&path).expect("new state");
        let mut c = Client::authed(1, &mut store);
        for u in 0..10 {
            let body = format!("Subject: {u}\r\n\r\nbody\r\n");
            let guid = backupd_sim::store::sha1_hex(body.as_bytes());
            assert_eq!(
                c.cmd(&mut store, &format!("GET USER base{u}")),
                ["OK Success"]
            );
            let sent = c.send(&mut store, &message_cmd(&[body.as_bytes()]));
            assert_eq!(sent.lines, ["OK Success"]);
            let recs: Vec<(u32, &str, &str)> = (1..=100).map(|i| (i, guid.as_str(), "")).collect();
            let out = c.cmd(
                &mut store,
                &mailbox_cmd(&format!("uid-base{u}"), &format!("user.base{u}"), &recs),
            );
            assert_eq!(
                out.last().map(String::as_str),
                Some("OK Success"),
                "{out:?}"
            );
        }
        save_state(&mut store, &path).expect("save");
    }
    let size = std::fs::metadata(&path).expect("state").len();
    let state_arg = path.to_str().expect("path").to_owned();
    let mut rng = Rng::new(Seed(20));
    let mut expected = users_in(&path);
    // The first save, whole: how long SIGTERM to exit takes (the kill window).
    let mut window = Duration::from_millis(50);
    let (mut old, mut new) = (0, 0);
    for k in 0..=kills {
        let mut served = Served::start(&["--state", &state_arg]);
        let user = format!("it{k}");
        let mut s = connect(served.addr);
        login(&mut s);
        s.write_all(format!("GET USER {user}\r\n").as_bytes())
            .expect("write");
        assert_eq!(line(&mut s), "OK Success");
        let cmd = mailbox_cmd(&format!("uid-{user}"), &format!("user.{user}"), &[]);
        s.write_all(format!("{cmd}\r\n").as_bytes()).expect("write");
        assert_eq!(line(&mut s), "OK Success");
        drop(s);
        let t = Instant::now();
        if k == 0 {
            assert_eq!(served.terminate(), 0);
            window = t.elapsed().max(Duration::from_millis(5));
            expected.push(user);
            expected.sort();
            assert_eq!(users_in(&path), expected, "a whole save");
            continue;
        }
        signal(served.pid(), nix::sys::signal::Signal::SIGTERM);
        // Anywhere in the save, and as far again past its usual end (loads vary):
        // the kills land on both sides of the rename.
        let at = window.mul_f64(rng.below(2000) as f64 / 1000.0);
        std::thread::sleep(at);
        signal(served.pid(), nix::sys::signal::Signal::SIGKILL);
        let _ = served.child.wait();
        let now = users_in(&path);
        if now == expected {
            old += 1;
        } else {
            let mut with = expected.clone();
            with.push(user);
            with.sort();
            assert_eq!(
                now, with,
                "kill {k} at {at:?}: neither the old state nor the new"
            );
            expected = with;
            new += 1;
        }
    }
    eprintln!(
        "state file ({:.1} MiB) under SIGKILL: {kills} kills at random points of a {:.0} ms \
         save window: {old} left the old state, {new} the new one, 0 torn",
        size as f64 / 1048576.0,
        window.as_secs_f64() * 1000.0
    );
    assert!(
        old > 0 && new > 0 || kills < 20,
        "the kills never hit inside the save window"
    );
}

// ---------------------------------------------------------------------------
// The control endpoint given garbage
// ---------------------------------------------------------------------------

fn ctl_line(w: &mut TcpStream, r: &mut BufReader<TcpStream>, req: &[u8]) -> serde_json::Value {
    // One write: a request and its newline in two small writes wait on the
    // peer's delayed ACK (Nagle), ~200 ms a request.
    let mut line = req.to_vec();
    line.push(b'\n');
    w.write_all(&line).expect("write");
    let mut answer = String::new();
    r.read_line(&mut answer).expect("answer");
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{answer:?}: {e}"))
}

/// Malformed JSON, unknown verbs, missing fields, binary bytes and random
/// garbage each get `{"ok":false,"error":…}` on a connection that stays
/// usable; a line past 64 KiB gets its error and the connection is closed;
/// the fake stays up and keeps serving both ports.
#[test]
fn the_control_endpoint_answers_garbage_with_errors() {
    let mut served = Served::start(&["--control", "127.0.0.1:0"]);
    let control = served.control.expect("control addr");
    let rss0 = served.rss_kib();
    let w = connect(control);
    let mut r = BufReader::new(w.try_clone().expect("clone"));
    let mut w = w;
    let fixed: Vec<&[u8]> = vec![
        b"not json",
        b"{",
        b"{}",
        b"[1,2,3]",
        b"null",
        br#"{"cmd":"explode"}"#,
        br#"{"cmd":"lock"}"#,
        br#"{"cmd":"lock","lock":{"user":"a","bogus":1}}"#,
        br#"{"cmd":"fault","fault":{"action":"no-such-action"}}"#,
        br#"{"cmd":"unlock","name":"nobody"}"#,
        b"\xff\xfe\x00\x01",
    ];
    let mut errors = 0;
    for req in &fixed {
        let a = ctl_line(&mut w, &mut r, req);
        assert_eq!(a["ok"], false, "{:?}: {a}", String::from_utf8_lossy(req));
        assert!(a["error"].as_str().is_some_and(|e| !e.is_empty()), "{a}");
        errors += 1;
    }
    let mut rng = Rng::new(Seed(20));
    for _ in 0..pick(200, 10_000) {
        let len = rng.below(200) as usize;
        let junk: Vec<u8> = (0..len)
            .map(|_| rng.below(256) as u8)
            .filter(|&b| b != b'\n')
            .collect();
        let a = ctl_line(&mut w, &mut r, &junk);
        assert_eq!(a["ok"], false, "{junk:?}: {a}");
        errors += 1;
    }
    // The same connection still works.
    assert_eq!(ctl_line(&mut w, &mut r, br#"{"cmd":"status"}"#)["ok"], true);
    // A huge line: its error, then the connection closes.
    let huge = vec![b'x'; (64 << 10) + 100];
    let a = ctl_line(&mut w, &mut r, &huge);
    assert_eq!(a["ok"], false);
    assert!(
        a["error"].as_str().unwrap_or("").contains("longer than"),
        "{a}"
    );
    let (rest_of_it, closed) = rest(&mut r);
    assert!(closed && rest_of_it.is_empty(), "{rest_of_it:?}");
    // A new control connection and the replication port both still serve.
    let w2 = connect(control);
    let mut r2 = BufReader::new(w2.try_clone().expect("clone"));
    let mut w2 = w2;
    assert_eq!(
        ctl_line(&mut w2, &mut r2, br#"{"cmd":"status"}"#)["ok"],
        true
    );
    served.assert_serving();
    let hwm = served.hwm_kib();
    eprintln!(
        "control endpoint: {errors} garbage requests, each answered ok:false; a {} KiB line \
         answered and closed; still serving; RSS {:.1} MiB before, peak {:.1} MiB",
        huge.len() >> 10,
        mib(rss0),
        mib(hwm)
    );
    assert!(hwm < rss0 + 8 * MIB, "peak {hwm} KiB from {rss0} KiB");
}
