//! `backupd-sim bench` / `make bench`: the same workloads against the fake, the
//! real backupd, the real sync_server and a floor (a server that answers OK and
//! stores nothing: the client's own cost), several repetitions each; results go to
//! `bench/results.md` and `bench/results.json` with min/median/max and ratios.
//!
//! Workloads (issue 6):
//! 1. first `sync_client -u` of one user with 10,000 small messages;
//! 2. a rolling `-R -1` pass after 1,000 changes over 5 users;
//! 3. the bundled scenario suite (fake only): wall time per scenario;
//! 4. explore cases per minute (seed 1, mixed modes, the correct fake);
//! 5. the fake's peak RSS (VmHWM) after receiving 100,000 messages;
//! 6. codec throughput: MB/s framing + parsing APPLY MESSAGE / APPLY MAILBOX.
//!
//! How it measures: the fake runs as a child process (`backupd-sim serve`), so
//! its CPU time (utime+stime from `/proc/PID/stat`) and peak RSS (`VmHWM`) are its
//! own. Real targets' CPU is master's plus its service children's (live ones, and
//! reaped ones through master's cutime/cstime). The client's CPU is the `times`
//! builtin of the `sh` that runs it. The floor runs in-process (its CPU is not
//! reported). Wall time is the client process's.

pub mod floor;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::cyrus::process;
use crate::cyrus::target::run_bounded;
use crate::cyrus::{Channel, CyrusBins, RealTarget, SourceInstance, SourceOptions, TargetKind};

pub use floor::Floor;

/// What [`run_bench`] does.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub bins: CyrusBins,
    /// The `backupd-sim` executable, run as `serve` for the fake.
    pub serve_exe: PathBuf,
    /// Where `results.md` and `results.json` go (created).
    pub out_dir: PathBuf,
    /// Repetitions of workloads 1 and 2 (and of the codec loop).
    pub reps: usize,
    /// Scenario directory for workload 3 (`None`: skipped).
    pub scenarios: Option<PathBuf>,
    /// Parent of the sandboxes (must be traversable by `cyrus`; default /tmp).
    pub sandbox_parent: PathBuf,
    pub sizes: Sizes,
    /// Print progress on stderr.
    pub verbose: bool,
}

/// Workload sizes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sizes {
    /// Workload 1: messages of the one user.
    pub w1_messages: usize,
    /// Workload 2: users, messages each before the changes, changes in all.
    pub w2_users: usize,
    pub w2_base: usize,
    pub w2_changes: usize,
    /// Workload 5: users and messages each (100,000 in all by default).
    pub w5_users: usize,
    pub w5_per_user: usize,
    /// Workload 6: APPLY MESSAGE bodies per frame and their size; APPLY MAILBOX records.
    pub codec_bodies: usize,
    pub codec_body_bytes: usize,
    pub codec_records: usize,
}

impl Sizes {
    /// The sizes of the issue.
    pub fn full() -> Sizes {
        Sizes {
            w1_messages: 10_000,
            w2_users: 5,
            w2_base: 200,
            w2_changes: 1_000,
            w5_users: 10,
            w5_per_user: 10_000,
            codec_bodies: 1024,
            codec_body_bytes: 4096,
            codec_records: 1000,
        }
    }

    /// Small sizes for a smoke run (seconds).
    pub fn quick() -> Sizes {
        Sizes {
            w1_messages: 200,
            w2_users: 2,
            w2_base: 20,
            w2_changes: 40,
            w5_users: 2,
            w5_per_user: 200,
            codec_bodies: 64,
            codec_body_bytes: 4096,
            codec_records: 100,
        }
    }
}

impl BenchOptions {
    /// Full sizes, 3 repetitions, results in `bench/`, scenarios in `scenarios/`
    /// when that directory exists.
    pub fn new(bins: CyrusBins, serve_exe: impl Into<PathBuf>) -> BenchOptions {
        let scen = PathBuf::from("scenarios");
        BenchOptions {
            bins,
            serve_exe: serve_exe.into(),
            out_dir: PathBuf::from("bench"),
            reps: 3,
            scenarios: scen.is_dir().then_some(scen),
            sandbox_parent: std::env::temp_dir(),
            sizes: Sizes::full(),
            verbose: true,
        }
    }

    /// Switch to [`Sizes::quick`].
    pub fn quick(mut self) -> BenchOptions {
        self.sizes = Sizes::quick();
        self
    }
}

/// One measured series.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// `floor`, `fake`, `backupd`, `sync_server`.
    pub target: String,
    /// `wall`, `client_cpu`, `target_cpu`, ...
    pub metric: String,
    pub unit: String,
    pub samples: Vec<f64>,
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// median / the floor's median of the same metric, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_vs_floor: Option<f64>,
}

impl Series {
    fn new(target: &str, metric: &str, unit: &str, samples: Vec<f64>) -> Series {
        let mut s = samples.clone();
        s.sort_by(f64::total_cmp);
        let (min, max) = (
            s.first().copied().unwrap_or(f64::NAN),
            s.last().copied().unwrap_or(f64::NAN),
        );
        let median = match s.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => s[n / 2],
            n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        };
        Series {
            target: target.into(),
            metric: metric.into(),
            unit: unit.into(),
            samples,
            min,
            median,
            max,
            ratio_vs_floor: None,
        }
    }
}

/// One workload's results.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadResult {
    pub id: u32,
    pub name: String,
    /// Why it did not run, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub series: Vec<Series>,
    pub notes: Vec<String>,
}

/// One target of the issue, met or missed.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub name: String,
    pub limit: String,
    pub measured: String,
    pub pass: bool,
}

/// Everything `run_bench` measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResults {
    pub cyrus_version: String,
    pub unix_time: u64,
    pub reps: usize,
    pub sizes: Sizes,
    pub machine: String,
    pub workloads: Vec<WorkloadResult>,
    pub goals: Vec<Goal>,
}

const TARGETS: [&str; 4] = ["floor", "fake", "backupd", "sync_server"];
/// Bound of one client run in workloads 1 and 5 (the slowest lab run of 10k into
/// backupd took 15 s).
const SYNC_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound of one client run in workload 2.
const PASS_TIMEOUT: Duration = Duration::from_secs(120);

fn log(opts: &BenchOptions, msg: impl AsRef<str>) {
    if opts.verbose {
        eprintln!("bench: {}", msg.as_ref());
    }
}

/// Run every workload and write `results.md` / `results.json` in `opts.out_dir`.
pub fn run_bench(opts: &BenchOptions) -> Result<BenchResults> {
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating `{}`", opts.out_dir.display()))?;
    let reps = opts.reps.max(1);
    let workloads = vec![
        workload1(opts, reps).context("workload 1")?,
        workload2(opts, reps).context("workload 2")?,
        workload3(opts).context("workload 3")?,
        workload4(opts).context("workload 4")?,
        workload5(opts).context("workload 5")?,
        workload6(opts, reps)?,
    ];
    let goals = goals(&workloads);
    let results = BenchResults {
        cyrus_version: opts.bins.version(),
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        reps,
        sizes: opts.sizes,
        machine: machine(),
        workloads,
        goals,
    };
    let json = serde_json::to_string_pretty(&results)?;
    std::fs::write(opts.out_dir.join("results.json"), json + "\n")?;
    std::fs::write(opts.out_dir.join("results.md"), render_md(&results))?;
    Ok(results)
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    format!("{cpus} cpu(s), {model}")
}

// ------------------------------------------------------------------ process stats

fn clk_tck() -> f64 {
    static T: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *T.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// utime + stime (+ cutime + cstime with `children`) of `pid`, in seconds.
fn cpu_seconds(pid: i32, children: bool) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f[0] + f[1] + if children { f[2] + f[3] } else { 0 };
    Some(ticks as f64 / clk_tck())
}

/// `VmHWM` / `VmRSS` of `pid` in KiB.
fn status_kib(pid: i32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

// ------------------------------------------------------------------ the fake as a child

/// `backupd-sim serve` as a child process, stopped by PID.
struct ServeChild {
    child: Child,
    addr: SocketAddr,
}

impl ServeChild {
    fn start(exe: &Path) -> Result<ServeChild> {
        let mut child = Command::new(exe)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--user",
                "repluser",
                "--password",
                "lab",
                "--seed",
                "1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting `{} serve`", exe.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut r = BufReader::new(stdout);
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the child never blocks on stdout.
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("`backupd-sim serve` did not print its address within 20 s");
            }
        };
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("unexpected first line from `backupd-sim serve`: {line:?}");
        };
        Ok(ServeChild { child, addr })
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(-1)
    }

    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            process::signal(self.pid(), nix::sys::signal::Signal::SIGTERM);
            if !process::wait_until(Duration::from_secs(10), || {
                !matches!(self.child.try_wait(), Ok(None))
            }) {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        self.stop();
    }
}

// ------------------------------------------------------------------ targets

enum Running {
    Floor(Floor),
    Fake(ServeChild),
    Real(Box<RealTarget>),
}

impl Running {
    fn start(name: &str, opts: &BenchOptions, dir: &Path) -> Result<Running> {
        Ok(match name {
            "floor" => Running::Floor(Floor::start()?),
            "fake" => Running::Fake(ServeChild::start(&opts.serve_exe)?),
            "backupd" | "sync_server" => {
                let kind = if name == "backupd" {
                    TargetKind::Backupd
                } else {
                    TargetKind::SyncServer
                };
                Running::Real(Box::new(RealTarget::start(
                    kind, &opts.bins, dir, "repluser", "lab",
                )?))
            }
            other => bail!("unknown target {other}"),
        })
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Running::Floor(f) => f.addr(),
            Running::Fake(f) => f.addr,
            Running::Real(r) => r.addr(),
        }
    }

    /// CPU seconds used so far by the server side (`None` for the in-process floor).
    fn cpu(&self) -> Option<f64> {
        match self {
            Running::Floor(_) => None,
            Running::Fake(f) => cpu_seconds(f.pid(), false),
            Running::Real(r) => {
                let pids = r.live_pids();
                let (master, kids) = pids.split_first()?;
                let mut total = cpu_seconds(*master, true)?;
                for k in kids {
                    total += cpu_seconds(*k, true).unwrap_or(0.0);
                }
                Some(total)
            }
        }
    }

    fn stop(self) -> Result<()> {
        match self {
            Running::Floor(mut f) => f.stop(),
            Running::Fake(mut f) => f.stop(),
            Running::Real(mut r) => r.stop()?,
        }
        Ok(())
    }
}

/// One timed client run.
#[derive(Debug, Clone, Copy)]
struct Measure {
    wall: f64,
    client_cpu: f64,
    target_cpu: Option<f64>,
}

/// Run `sync_client -C conf -n backup -S addr ARGS` under `sh`, whose `times`
/// builtin reports the client's CPU; fails unless it exits 0.
fn timed_sync(
    bins: &CyrusBins,
    source: &SourceInstance,
    target: &Running,
    args: &[&str],
    timeout: Duration,
) -> Result<Measure> {
    let before = target.cpu();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"p="$1"; shift; "$p" "$@"; rc=$?; times >&2; exit $rc"#)
        .arg("sh")
        .arg(bins.path("sync_client"))
        .arg("-C")
        .arg(source.config_path())
        .args(["-n", "backup", "-S"])
        .arg(target.addr().to_string())
        .args(args);
    let t0 = Instant::now();
    let out = run_bounded(cmd, timeout)?;
    let wall = t0.elapsed().as_secs_f64();
    let after = target.cpu();
    if out.code != Some(0) {
        bail!(
            "sync_client {args:?} -> rc {:?}{}:\n{}",
            out.code,
            if out.timed_out { " (timed out)" } else { "" },
            crate::cyrus::last_lines(&out.stderr, 20)
        );
    }
    let last = out.stderr.lines().last().unwrap_or_default();
    let client_cpu = last
        .split_whitespace()
        .map(parse_times)
        .collect::<Option<Vec<f64>>>()
        .filter(|v| v.len() == 2)
        .map(|v| v[0] + v[1])
        .ok_or_else(|| anyhow!("no `times` line in the client's stderr: {last:?}"))?;
    Ok(Measure {
        wall,
        client_cpu,
        target_cpu: before.zip(after).map(|(b, a)| (a - b).max(0.0)),
    })
}

/// `1m2.500s` -> 62.5.
fn parse_times(s: &str) -> Option<f64> {
    let (m, rest) = s.split_once('m')?;
    let secs = rest.strip_suffix('s')?;
    Some(m.parse::<f64>().ok()? * 60.0 + secs.parse::<f64>().ok()?)
}

// ------------------------------------------------------------------ filling the source

/// Append `bodies` to `mailbox` as `user` with MULTIAPPEND and LITERAL+ in batches.
pub fn bulk_append(addr: SocketAddr, user: &str, mailbox: &str, bodies: &[Vec<u8>]) -> Result<()> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    if !line.starts_with("* OK") {
        bail!("imap greeting: {line:?}");
    }
    let mut tagged = |w: &mut TcpStream, tag: &str, cmd: &[u8]| -> Result<()> {
        w.write_all(cmd)?;
        w.flush()?;
        loop {
            let mut l = String::new();
            if r.read_line(&mut l)? == 0 {
                bail!("imap server closed the connection");
            }
            if let Some(rest) = l.strip_prefix(tag).and_then(|x| x.strip_prefix(' ')) {
                if rest.starts_with("OK") {
                    return Ok(());
                }
                bail!("imap {tag}: {}", l.trim_end());
            }
        }
    };
    tagged(&mut w, "L", format!("L LOGIN {user} bench\r\n").as_bytes())?;
    for (n, chunk) in bodies.chunks(500).enumerate() {
        let tag = format!("A{n}");
        let mut cmd = format!("{tag} APPEND {mailbox}").into_bytes();
        for b in chunk {
            cmd.extend_from_slice(format!(" () {{{}+}}\r\n", b.len()).as_bytes());
            cmd.extend_from_slice(b);
        }
        cmd.extend_from_slice(b"\r\n");
        tagged(&mut w, &tag, &cmd)?;
    }
    let _ = w.write_all(b"Z LOGOUT\r\n");
    let mut sink = Vec::new();
    let _ = r.read_to_end(&mut sink);
    Ok(())
}

fn small_bodies(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| crate::populate::message(tag, i, 0))
        .collect()
}

fn sandbox(opts: &BenchOptions, what: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("backupd-sim-bench-{what}-"))
        .tempdir_in(&opts.sandbox_parent)
        .context("creating a sandbox")
}

fn source(opts: &BenchOptions, dir: &Path) -> Result<SourceInstance> {
    let mut so = SourceOptions::new(opts.bins.clone(), dir.join("src"));
    // The real port is given with -S on each run.
    so.channels = vec![Channel::new("backup", 9)];
    Ok(SourceInstance::start(&so)?)
}

fn series_of(target: &str, ms: &[Measure], out: &mut Vec<Series>) {
    out.push(Series::new(
        target,
        "wall",
        "s",
        ms.iter().map(|m| m.wall).collect(),
    ));
    out.push(Series::new(
        target,
        "client_cpu",
        "s",
        ms.iter().map(|m| m.client_cpu).collect(),
    ));
    if !ms.is_empty() && ms.iter().all(|m| m.target_cpu.is_some()) {
        out.push(Series::new(
            target,
            "target_cpu",
            "s",
            ms.iter().filter_map(|m| m.target_cpu).collect(),
        ));
    }
}

/// Keep a successful run; note a failed one (the workload goes on without it).
fn record<'a>(
    opts: &BenchOptions,
    workload: u32,
    name: &'a str,
    rep: usize,
    m: Result<Measure>,
    runs: &mut BTreeMap<&'a str, Vec<Measure>>,
    failures: &mut Vec<String>,
) {
    match m {
        Ok(m) => {
            log(
                opts,
                format!(
                    "workload {workload} rep {} {name}: {:.2} s",
                    rep + 1,
                    m.wall
                ),
            );
            runs.entry(name).or_default().push(m);
        }
        Err(e) => {
            let msg = format!("FAILED {name} rep {}: {e:#}", rep + 1);
            log(opts, &msg);
            failures.push(msg.replace('\n', " / "));
        }
    }
}

/// The series of every target in [`TARGETS`] order, with the ratios added.
fn target_series(runs: &BTreeMap<&str, Vec<Measure>>) -> Vec<Series> {
    let mut series = Vec::new();
    for name in TARGETS {
        series_of(
            name,
            runs.get(name).map_or(&[][..], Vec::as_slice),
            &mut series,
        );
    }
    add_ratios(&mut series);
    series
}

fn add_ratios(series: &mut [Series]) {
    let floor: BTreeMap<String, f64> = series
        .iter()
        .filter(|s| s.target == "floor")
        .map(|s| (s.metric.clone(), s.median))
        .collect();
    for s in series.iter_mut() {
        if let Some(f) = floor.get(&s.metric) {
            if *f > 0.0 {
                s.ratio_vs_floor = Some(s.median / f);
            }
        }
    }
}

// ------------------------------------------------------------------ workloads

fn workload1(opts: &BenchOptions, reps: usize) -> Result<WorkloadResult> {
    let n = opts.sizes.w1_messages;
    log(
        opts,
        format!("workload 1: filling one user with {n} messages"),
    );
    let dir = sandbox(opts, "w1")?;
    let mut src = source(opts, dir.path())?;
    src.create_user("bench1")?;
    let t = Instant::now();
    bulk_append(
        src.imap_addr(),
        "bench1",
        "INBOX",
        &small_bodies("bench1", n),
    )?;
    let fill = t.elapsed().as_secs_f64();
    let mut runs: BTreeMap<&str, Vec<Measure>> = BTreeMap::new();
    let mut failures = Vec::new();
    for rep in 0..reps {
        for name in TARGETS {
            let tdir = dir.path().join(format!("{name}-{rep}"));
            let target = Running::start(name, opts, &tdir)?;
            let m = timed_sync(&opts.bins, &src, &target, &["-u", "bench1"], SYNC_TIMEOUT);
            target.stop()?;
            let _ = std::fs::remove_dir_all(&tdir);
            record(opts, 1, name, rep, m, &mut runs, &mut failures);
        }
    }
    src.stop()?;
    let series = target_series(&runs);
    let mut notes = failures;
    Ok(WorkloadResult {
        id: 1,
        name: format!("first `sync_client -u` of one user with {n} small messages (empty target)"),
        skipped: None,
        series,
        notes: {
            notes.extend([
                format!("source filled with MULTIAPPEND in {fill:.1} s (not measured)"),
                "a fresh, empty target per run; targets interleaved per repetition".into(),
                "target_cpu: the fake's own process; backupd/sync_server: master and its service children".into(),
            ]);
            notes
        },
    })
}

fn workload2(opts: &BenchOptions, reps: usize) -> Result<WorkloadResult> {
    let sz = opts.sizes;
    log(
        opts,
        format!(
            "workload 2: {} users x {} messages, then {} changes",
            sz.w2_users, sz.w2_base, sz.w2_changes
        ),
    );
    let dir = sandbox(opts, "w2")?;
    let mut src = source(opts, dir.path())?;
    let users: Vec<String> = (0..sz.w2_users).map(|i| format!("roll{i}")).collect();
    for u in &users {
        src.create_user(u)?;
        bulk_append(src.imap_addr(), u, "INBOX", &small_bodies(u, sz.w2_base))?;
    }
    let per_user = sz.w2_changes / sz.w2_users.max(1);
    let appends = per_user / 2;
    let flags = per_user - appends;
    let mut runs: BTreeMap<&str, Vec<Measure>> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut round = 0usize;
    for rep in 0..reps {
        for name in TARGETS {
            let tdir = dir.path().join(format!("{name}-{rep}"));
            let target = Running::start(name, opts, &tdir)?;
            let mut args = vec!["-u"];
            args.extend(users.iter().map(String::as_str));
            if let Err(e) = timed_sync(&opts.bins, &src, &target, &args, SYNC_TIMEOUT) {
                failures.push(format!("FAILED {name} rep {}: initial -u: {e:#}", rep + 1));
                target.stop()?;
                continue;
            }
            for f in ["log", "log-run"] {
                let _ = std::fs::remove_file(src.root().join("conf/sync/backup").join(f));
            }
            round += 1;
            for u in &users {
                let tag = format!("{u}-r{round}");
                bulk_append(src.imap_addr(), u, "INBOX", &small_bodies(&tag, appends))?;
                let mut c = src.login_as(u)?;
                c.select("INBOX")?;
                // `flags` distinct messages get a new keyword (one change each).
                c.uid_store(
                    &format!("1:{flags}"),
                    "+FLAGS",
                    &[format!("$Round{round}").as_str()],
                )?;
                c.logout()?;
            }
            let m = timed_sync(&opts.bins, &src, &target, &["-R", "-1"], PASS_TIMEOUT);
            target.stop()?;
            let _ = std::fs::remove_dir_all(&tdir);
            record(opts, 2, name, rep, m, &mut runs, &mut failures);
        }
    }
    src.stop()?;
    let series = target_series(&runs);
    let mut notes = failures;
    Ok(WorkloadResult {
        id: 2,
        name: format!(
            "rolling `-R -1` pass after {} changes over {} users ({appends} appends + {flags} flag changes each)",
            per_user * sz.w2_users,
            sz.w2_users
        ),
        skipped: None,
        series,
        notes: {
            notes.extend([
                "each run: fresh target, untimed `-u` of every user, channel log cleared, changes, timed `-R -1`".to_string(),
                "the floor answers every GET empty and stores nothing, so its pass does different work: \
                 compare fake, backupd and sync_server with each other".into(),
            ]);
            notes
        },
    })
}

fn workload3(opts: &BenchOptions) -> Result<WorkloadResult> {
    use crate::runner::{suite, RunOptions, Verdict};
    let name = "bundled scenario suite (fake only)".to_string();
    let Some(dir) = &opts.scenarios else {
        return Ok(WorkloadResult {
            id: 3,
            name,
            skipped: Some("no scenario directory given".into()),
            series: Vec::new(),
            notes: Vec::new(),
        });
    };
    let scenarios = suite::load(std::slice::from_ref(dir), None, None).map_err(|errs| {
        anyhow!(
            "invalid scenarios: {}",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    log(
        opts,
        format!("workload 3: {} scenarios, one at a time", scenarios.len()),
    );
    let ro = RunOptions {
        bins: opts.bins.clone(),
        version: opts.bins.version(),
        seed: None,
        keep: false,
        sandbox_parent: Some(opts.sandbox_parent.clone()),
        update_snapshots: false,
        report_dir: None,
        target: crate::harness::Target::Fake,
    };
    let t = Instant::now();
    let reports = suite::run_all(&scenarios, &ro, 1);
    let total = t.elapsed().as_secs_f64();
    let ok = reports
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Pass | Verdict::Xfail))
        .count();
    let per: Vec<f64> = reports.iter().map(|r| r.seconds).collect();
    let runs: usize = reports.iter().map(|r| r.stats.client_runs).sum();
    let mut series = vec![
        Series::new("fake", "suite_wall", "s", vec![total]),
        Series::new("fake", "scenario_wall", "s", per),
    ];
    series.push(Series::new(
        "fake",
        "scenario_wall_per_client_run",
        "s",
        reports
            .iter()
            .filter(|r| r.stats.client_runs > 0)
            .map(|r| r.seconds / r.stats.client_runs as f64)
            .collect(),
    ));
    // Overhead beyond the client: the scenario's wall time minus the time its
    // sync_client runs took (setup, source changes over IMAP, checks, teardown).
    let client_secs: Vec<f64> = reports
        .iter()
        .map(|r| r.stats.client_run_seconds.iter().sum())
        .collect();
    let overhead: Vec<f64> = reports
        .iter()
        .zip(&client_secs)
        .map(|(r, c)| (r.seconds - c).max(0.0))
        .collect();
    series.push(Series::new(
        "fake",
        "scenario_client",
        "s",
        client_secs.clone(),
    ));
    series.push(Series::new(
        "fake",
        "scenario_overhead",
        "s",
        overhead.clone(),
    ));
    let total_client: f64 = client_secs.iter().sum();
    let total_overhead: f64 = overhead.iter().sum();
    let mut by_overhead: Vec<(f64, f64, &str)> = reports
        .iter()
        .zip(overhead.iter().zip(&client_secs))
        .map(|(r, (o, c))| (*o, *c, r.name.as_str()))
        .collect();
    by_overhead.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut slowest: Vec<(f64, &str)> = reports
        .iter()
        .map(|r| (r.seconds, r.name.as_str()))
        .collect();
    slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
    Ok(WorkloadResult {
        id: 3,
        name,
        skipped: None,
        series,
        notes: vec![
            format!(
                "{} scenarios, {ok} passed or xfail, {runs} sync_client runs, one at a time, one repetition",
                reports.len()
            ),
            format!(
                "scenario_client: the wall time of the scenario's sync_client runs (`stats.client_run_seconds` \
                 in each report); scenario_overhead: the scenario's wall time minus that. In all: {total_client:.1} s \
                 in the client, {total_overhead:.1} s beyond it"
            ),
            format!(
                "most overhead beyond the client: {}",
                by_overhead
                    .iter()
                    .take(5)
                    .map(|(o, c, n)| format!("{n} {o:.1} s (client {c:.1} s)"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "slowest: {}",
                slowest
                    .iter()
                    .take(5)
                    .map(|(s, n)| format!("{n} {s:.1} s"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ],
    })
}

/// `explore` cases per minute against the correct fake (one harness, fresh
/// users per case, as `backupd-sim explore` runs them).
fn workload4(opts: &BenchOptions) -> Result<WorkloadResult> {
    use crate::explore::{explore, ExploreMode, ExploreOptions, GenOptions};
    let cases: u32 = if opts.sizes.w1_messages < 10_000 {
        5
    } else {
        30
    };
    log(opts, format!("workload 4: {cases} explore cases"));
    let mut hopts = crate::harness::HarnessOptions::new(opts.bins.clone());
    hopts.sandbox_parent = Some(opts.sandbox_parent.clone());
    let h = crate::harness::Harness::start(hopts).context("starting the harness")?;
    let scratch = tempfile::tempdir_in(&opts.sandbox_parent)?;
    let eo = ExploreOptions {
        cases,
        seed: crate::rng::Seed(1),
        gen: GenOptions {
            mode: ExploreMode::Mixed,
            allow_loss_faults: false,
            steps_max: 8,
            renames: false,
        },
        out_dir: scratch.path().join("regressions"),
        regressions: scratch.path().join("explore.txt"),
        run: crate::runner::RunOptions {
            bins: opts.bins.clone(),
            version: opts.bins.version(),
            seed: Some(crate::rng::Seed(1)),
            keep: false,
            sandbox_parent: Some(opts.sandbox_parent.clone()),
            update_snapshots: false,
            report_dir: None,
            target: crate::harness::Target::Fake,
        },
    };
    let outcome = explore(&h, &eo, |_, _, _| {}).map_err(|e| anyhow!(e))?;
    let per_min = outcome.cases_run as f64 / outcome.seconds.max(1e-3) * 60.0;
    Ok(WorkloadResult {
        id: 4,
        name: "explore cases per minute".into(),
        skipped: None,
        series: vec![Series::new(
            "fake",
            "cases_per_minute",
            "cases/min",
            vec![per_min],
        )],
        notes: vec![format!(
            "{} case(s) in {:.1} s, seed 1, mode mixed, {}",
            outcome.cases_run,
            outcome.seconds,
            if outcome.failure.is_some() {
                "A FAILURE WAS FOUND"
            } else {
                "no failure"
            }
        )],
    })
}

fn workload5(opts: &BenchOptions) -> Result<WorkloadResult> {
    let sz = opts.sizes;
    let total = sz.w5_users * sz.w5_per_user;
    log(
        opts,
        format!(
            "workload 5: {} users x {} messages into the fake",
            sz.w5_users, sz.w5_per_user
        ),
    );
    let dir = sandbox(opts, "w5")?;
    let mut src = source(opts, dir.path())?;
    let users: Vec<String> = (0..sz.w5_users).map(|i| format!("big{i}")).collect();
    let t = Instant::now();
    for u in &users {
        src.create_user(u)?;
        bulk_append(
            src.imap_addr(),
            u,
            "INBOX",
            &small_bodies(u, sz.w5_per_user),
        )?;
    }
    let fill = t.elapsed().as_secs_f64();
    let fake = Running::start("fake", opts, &dir.path().join("fake"))?;
    let Running::Fake(child) = &fake else {
        unreachable!()
    };
    let pid = child.pid();
    let rss_idle = status_kib(pid, "VmHWM").unwrap_or(0);
    let mut args = vec!["-u"];
    args.extend(users.iter().map(String::as_str));
    let m = timed_sync(&opts.bins, &src, &fake, &args, SYNC_TIMEOUT)?;
    let hwm = status_kib(pid, "VmHWM").ok_or_else(|| anyhow!("no VmHWM for the fake"))?;
    let rss = status_kib(pid, "VmRSS").unwrap_or(0);
    fake.stop()?;
    src.stop()?;
    let bytes: usize = users
        .iter()
        .map(|u| {
            small_bodies(u, sz.w5_per_user)
                .iter()
                .map(Vec::len)
                .sum::<usize>()
        })
        .sum();
    let mib = |k: u64| k as f64 / 1024.0;
    Ok(WorkloadResult {
        id: 5,
        name: format!("the fake's peak RSS holding {total} messages"),
        skipped: None,
        series: vec![
            Series::new("fake", "peak_rss", "MiB", vec![mib(hwm)]),
            Series::new("fake", "rss_at_end", "MiB", vec![mib(rss)]),
            Series::new("fake", "peak_rss_idle", "MiB", vec![mib(rss_idle)]),
            Series::new("fake", "upload_wall", "s", vec![m.wall]),
            Series::new("fake", "upload_client_cpu", "s", vec![m.client_cpu]),
            Series::new("fake", "upload_fake_cpu", "s", m.target_cpu.into_iter().collect()),
        ],
        notes: vec![
            format!(
                "{} users x {} messages ({:.1} MiB of bodies), one `-u` run of all users, one repetition; fill took {fill:.1} s",
                sz.w5_users,
                sz.w5_per_user,
                bytes as f64 / 1048576.0
            ),
            "VmHWM of the `backupd-sim serve` child (bodies go to its temporary on-disk body store)".into(),
        ],
    })
}

/// `APPLY MESSAGE` with `n` file literals of `size` bytes.
pub fn apply_message_frame(n: usize, size: usize) -> Vec<u8> {
    let mut out = b"APPLY MESSAGE (".to_vec();
    for i in 0..n {
        let mut body = crate::populate::message("codec", i, size);
        body.truncate(size.max(1));
        let guid = {
            use sha1::Digest;
            hex::encode(sha1::Sha1::digest(&body))
        };
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(format!("%{{default {guid} {}}}\r\n", body.len()).as_bytes());
        out.extend_from_slice(&body);
    }
    out.extend_from_slice(b")\r\n");
    out
}

/// `APPLY MAILBOX` with `n` records.
pub fn apply_mailbox_frame(n: usize) -> Vec<u8> {
    let mut out = String::from(
        "APPLY MAILBOX %(UNIQUEID 0a1b2c3d4e5f6a7b8c9d0e1f MBOXNAME user.codec SYNC_CRC 0 \
         SYNC_CRC_ANNOT 0 LAST_UID 1000000 HIGHESTMODSEQ 2000000 RECENTUID 0 RECENTTIME 0 \
         LAST_APPENDDATE 1767225600 POP3_LAST_LOGIN 0 POP3_SHOW_AFTER 0 UIDVALIDITY 1767225600 \
         PARTITION default ACL \"codec\tlrswipkxtecdan\t\" OPTIONS P CREATEDMODSEQ 1 FOLDERMODSEQ 1 RECORD (",
    );
    for i in 0..n {
        use sha1::Digest;
        let guid = hex::encode(sha1::Sha1::digest(i.to_string().as_bytes()));
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&format!(
            "%(UID {} MODSEQ {} LAST_UPDATED 1767225600 FLAGS (\\Seen $Label1) INTERNALDATE {} SIZE {} GUID {guid} ANNOTATIONS ())",
            i + 1,
            i + 2,
            1_767_225_600 + i,
            1000 + i
        ));
    }
    out.push_str("))\r\n");
    out.into_bytes()
}

/// Bytes per second through `Framer` (fed in 64 KiB reads) + `Command::parse`,
/// over at least `min_time` and 3 passes.
pub fn codec_throughput(frame: &[u8], min_time: Duration) -> Result<f64> {
    use crate::dlist::{Framer, Limits};
    use crate::proto::Command;
    let mut bytes = 0usize;
    let t = Instant::now();
    let mut passes = 0;
    while passes < 3 || t.elapsed() < min_time {
        let mut framer = Framer::new(Limits::default());
        let mut parsed = 0;
        for chunk in frame.chunks(64 * 1024) {
            framer.push(chunk);
            while let Some(f) = framer.next_frame()? {
                let cmd =
                    Command::parse(f).map_err(|e| anyhow!("codec frame does not parse: {e}"))?;
                std::hint::black_box(&cmd);
                parsed += 1;
            }
        }
        if parsed != 1 {
            bail!("expected one frame, got {parsed}");
        }
        bytes += frame.len();
        passes += 1;
    }
    Ok(bytes as f64 / t.elapsed().as_secs_f64())
}

fn workload6(opts: &BenchOptions, reps: usize) -> Result<WorkloadResult> {
    let sz = opts.sizes;
    let msg = apply_message_frame(sz.codec_bodies, sz.codec_body_bytes);
    let mbx = apply_mailbox_frame(sz.codec_records);
    let min = Duration::from_millis(if opts.sizes.w1_messages < 1000 {
        50
    } else {
        1000
    });
    let mut m = Vec::new();
    let mut b = Vec::new();
    for _ in 0..reps {
        m.push(codec_throughput(&msg, min)? / 1e6);
        b.push(codec_throughput(&mbx, min)? / 1e6);
    }
    Ok(WorkloadResult {
        id: 6,
        name: "codec throughput: Framer + Command::parse".into(),
        skipped: None,
        series: vec![
            Series::new("codec", "apply_message", "MB/s", m),
            Series::new("codec", "apply_mailbox", "MB/s", b),
        ],
        notes: vec![
            format!(
                "APPLY MESSAGE: {} bodies of {} B ({:.1} MB a frame); APPLY MAILBOX: {} records ({:.2} MB a frame); fed in 64 KiB reads; in-process, {} build",
                sz.codec_bodies,
                sz.codec_body_bytes,
                msg.len() as f64 / 1e6,
                sz.codec_records,
                mbx.len() as f64 / 1e6,
                if cfg!(debug_assertions) { "DEBUG" } else { "release" }
            ),
        ],
    })
}

// ------------------------------------------------------------------ goals and report

fn find<'a>(w: &'a [WorkloadResult], id: u32, target: &str, metric: &str) -> Option<&'a Series> {
    w.iter()
        .find(|x| x.id == id)?
        .series
        .iter()
        .find(|s| s.target == target && s.metric == metric)
}

fn goals(w: &[WorkloadResult]) -> Vec<Goal> {
    let mut g = Vec::new();
    if let Some(s) = find(w, 1, "fake", "wall") {
        if let Some(r) = s.ratio_vs_floor {
            g.push(Goal {
                name: "workload 1: fake wall time vs the floor".into(),
                limit: "<= 1.2x".into(),
                measured: format!("{r:.2}x"),
                pass: r <= 1.2,
            });
        }
    }
    if let (Some(f), Some(c)) = (
        find(w, 1, "fake", "target_cpu"),
        find(w, 1, "fake", "client_cpu"),
    ) {
        let r = f.median / c.median;
        g.push(Goal {
            name: "workload 1: fake CPU / client CPU".into(),
            limit: "<= 10%".into(),
            measured: format!("{:.1}%", r * 100.0),
            pass: r <= 0.10,
        });
    }
    if let Some(s) = find(w, 5, "fake", "peak_rss") {
        g.push(Goal {
            name: "workload 5: fake peak RSS".into(),
            limit: "<= 64 MiB".into(),
            measured: format!("{:.1} MiB", s.max),
            pass: s.max <= 64.0,
        });
    }
    if let Some(s) = find(w, 6, "codec", "apply_message") {
        g.push(Goal {
            name: "workload 6: codec on APPLY MESSAGE".into(),
            limit: ">= 1000 MB/s".into(),
            measured: format!("{:.0} MB/s", s.median),
            pass: s.median >= 1000.0,
        });
    }
    g
}

fn render_md(r: &BenchResults) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "# backupd-sim benchmarks\n");
    let _ = writeln!(
        o,
        "Cyrus {}, {}, {} repetition(s), generated by `backupd-sim bench` (unix time {}).\n",
        r.cyrus_version, r.machine, r.reps, r.unix_time
    );
    let _ = writeln!(
        o,
        "## Goals\n\n| goal | limit | measured | |\n|---|---|---|---|"
    );
    for g in &r.goals {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            g.name,
            g.limit,
            g.measured,
            if g.pass { "pass" } else { "**miss**" }
        );
    }
    for w in &r.workloads {
        let _ = writeln!(o, "\n## {}. {}\n", w.id, w.name);
        if let Some(why) = &w.skipped {
            let _ = writeln!(o, "Skipped: {why}");
            continue;
        }
        let _ = writeln!(
            o,
            "| target | metric | min | median | max | vs floor | samples |\n|---|---|---|---|---|---|---|"
        );
        for s in &w.series {
            let _ = writeln!(
                o,
                "| {} | {} ({}) | {:.3} | {:.3} | {:.3} | {} | {} |",
                s.target,
                s.metric,
                s.unit,
                s.min,
                s.median,
                s.max,
                s.ratio_vs_floor
                    .map_or_else(|| "-".to_string(), |x| format!("{x:.2}x")),
                s.samples.len()
            );
        }
        for n in &w.notes {
            let _ = writeln!(o, "\n- {n}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_stats_and_times() {
        let s = Series::new("fake", "wall", "s", vec![3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.min, s.median, s.max), (1.0, 2.5, 10.0));
        assert_eq!(parse_times("1m2.500000s"), Some(62.5));
        assert_eq!(parse_times("0m0.010s"), Some(0.01));
        assert_eq!(parse_times("x"), None);
    }

    #[test]
    fn codec_frames_parse() {
        let m = codec_throughput(&apply_message_frame(4, 512), Duration::ZERO).expect("message");
        let b = codec_throughput(&apply_mailbox_frame(5), Duration::ZERO).expect("mailbox");
        assert!(m > 0.0 && b > 0.0);
    }
}
