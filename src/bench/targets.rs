//! The servers a workload replicates into, started per run: the floor (in
//! process), the fake (`backupd-sim serve` as a child, so its CPU time is its
//! own), a real backupd or sync_server; and one timed `sync_client` run.

use std::io::BufRead;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{failed, BenchOptions, Context, Floor, Result};
use crate::cyrus::process;
use crate::cyrus::procfs::cpu_seconds;
use crate::cyrus::tool::run_bounded;
use crate::cyrus::{CyrusBins, RealTarget, SourceInstance, TargetKind};

/// `backupd-sim serve` as a child process, stopped by PID.
pub(super) struct ServeChild {
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
                return Err(failed(
                    "`backupd-sim serve` did not print its address within 20 s",
                ));
            }
        };
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(format!(
                "unexpected first line from `backupd-sim serve`: {line:?}"
            )));
        };
        Ok(ServeChild { child, addr })
    }

    pub(super) fn pid(&self) -> i32 {
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

pub(super) enum Running {
    Floor(Floor),
    Fake(ServeChild),
    Real(Box<RealTarget>),
}

impl Running {
    pub(super) fn start(name: &str, opts: &BenchOptions, dir: &Path) -> Result<Running> {
        Ok(match name {
            "floor" => Running::Floor(Floor::start()?),
            "fake" => Running::Fake(ServeChild::start(&opts.serve_exe)?),
            "baseline" => match &opts.baseline_exe {
                Some(exe) => Running::Fake(ServeChild::start(exe)?),
                None => return Err(failed("the target `baseline` needs --baseline-fake")),
            },
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
            other => return Err(failed(format!("unknown target {other}"))),
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

    pub(super) fn stop(self) -> Result<()> {
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
pub(super) struct Measure {
    pub(super) wall: f64,
    pub(super) client_cpu: f64,
    pub(super) target_cpu: Option<f64>,
}

/// Run `sync_client -C conf -n backup -S addr ARGS` under `sh`, whose `times`
/// builtin reports the client's CPU; fails unless it exits 0.
pub(super) fn timed_sync(
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
        return Err(failed(format!(
            "sync_client {args:?} -> rc {:?}{}:\n{}",
            out.code,
            if out.timed_out { " (timed out)" } else { "" },
            crate::cyrus::last_lines(&out.stderr, 20)
        )));
    }
    let last = out.stderr.lines().last().unwrap_or_default();
    let client_cpu = last
        .split_whitespace()
        .map(parse_times)
        .collect::<Option<Vec<f64>>>()
        .filter(|v| v.len() == 2)
        .map(|v| v[0] + v[1])
        .ok_or_else(|| failed(format!("no `times` line in the client's stderr: {last:?}")))?;
    Ok(Measure {
        wall,
        client_cpu,
        target_cpu: before.zip(after).map(|(b, a)| (a - b).max(0.0)),
    })
}

/// `1m2.500s` -> 62.5.
pub(super) fn parse_times(s: &str) -> Option<f64> {
    let (m, rest) = s.split_once('m')?;
    let secs = rest.strip_suffix('s')?;
    Some(m.parse::<f64>().ok()? * 60.0 + secs.parse::<f64>().ok()?)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_times() {
        assert_eq!(parse_times("1m2.500000s"), Some(62.5));
        assert_eq!(parse_times("0m0.010s"), Some(0.01));
        assert_eq!(parse_times("x"), None);
    }
}
