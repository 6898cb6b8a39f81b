//! Process helpers that work by PID only, via `/proc` (Linux).

use std::collections::HashSet;
use std::net::TcpListener;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The fields of `/proc/PID/stat` this module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    /// Start time in clock ticks since boot: with the PID, identifies a process.
    pub starttime: u64,
}

/// Read `/proc/PID/stat`; `None` if there is no such process.
pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ..." - comm may contain spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        starttime: fields.get(19)?.parse().ok()?,
    })
}

/// Whether `pid` is a live process (a zombie or dead process counts as gone).
pub fn pid_alive(pid: i32) -> bool {
    matches!(proc_stat(pid), Some(s) if s.state != 'Z' && s.state != 'X')
}

/// Whether the process identified by `pid` and `starttime` is still alive
/// (guards against PID reuse).
pub fn same_process_alive(pid: i32, starttime: u64) -> bool {
    matches!(proc_stat(pid), Some(s) if s.starttime == starttime && s.state != 'Z' && s.state != 'X')
}

/// All processes (by `/proc` scan).
fn all_stats() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_stat)
        .collect()
}

/// Direct children of `pid`.
pub fn children_of(pid: i32) -> Vec<ProcStat> {
    all_stats().into_iter().filter(|s| s.ppid == pid).collect()
}

/// All descendants of `pid` (children, grandchildren, ...).
pub fn descendants(pid: i32) -> Vec<ProcStat> {
    let all = all_stats();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for s in all.iter().filter(|s| s.ppid == p) {
            if !out.iter().any(|o: &ProcStat| o.pid == s.pid) {
                out.push(*s);
                frontier.push(s.pid);
            }
        }
    }
    out
}

/// Send `signal` to `pid`; errors (already gone) are ignored.
pub fn signal(pid: i32, sig: Signal) {
    if pid > 0 {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Terminate recorded processes that are still alive: SIGTERM, wait up to `grace`,
/// then SIGKILL and wait briefly. Returns the PIDs still alive at the end.
pub fn terminate_all(procs: &[ProcStat], grace: Duration) -> Vec<i32> {
    let alive = |s: &ProcStat| same_process_alive(s.pid, s.starttime);
    let targets: Vec<ProcStat> = procs.iter().copied().filter(alive).collect();
    let still_alive = || -> Vec<ProcStat> { targets.iter().copied().filter(alive).collect() };
    for s in &targets {
        signal(s.pid, Signal::SIGTERM);
    }
    wait_until(grace, || still_alive().is_empty());
    for s in still_alive() {
        signal(s.pid, Signal::SIGKILL);
    }
    wait_until(Duration::from_secs(2), || still_alive().is_empty());
    still_alive().iter().map(|s| s.pid).collect()
}

/// Poll `done` every 20 ms until it is true or `timeout` passes; returns `done()`.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(20));
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Inodes of the sockets `pid` has open.
fn socket_inodes(pid: i32) -> HashSet<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    dir.filter_map(|e| {
        let target = std::fs::read_link(e.ok()?.path()).ok()?;
        let t = target.to_str()?;
        t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
    })
    .collect()
}

/// Who holds local TCP port `port`, as seen in `/proc/net/tcp{,6}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortOwner {
    /// `pid` has a listening socket on the port.
    Listening,
    /// Some other socket uses the port.
    Other,
    /// Nobody uses the port.
    Free,
}

/// Whether `pid` listens on TCP `port`, someone else uses it, or it is free.
pub fn port_owner(pid: i32, port: u16) -> PortOwner {
    let mine = socket_inodes(pid);
    let mut other = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port != Some(port) {
                continue;
            }
            let inode: u64 = inode.parse().unwrap_or(0);
            if *state == "0A" && mine.contains(&inode) {
                return PortOwner::Listening;
            }
            other = true;
        }
    }
    if other {
        PortOwner::Other
    } else {
        PortOwner::Free
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_owner_sees_listeners() {
        let me = std::process::id() as i32;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert_eq!(port_owner(me, port), PortOwner::Listening);
        assert_eq!(port_owner(1, port), PortOwner::Other);
        drop(listener);
        assert_eq!(port_owner(me, port), PortOwner::Free);
    }

    #[test]
    fn proc_stat_of_self() {
        let me = std::process::id() as i32;
        let stat = proc_stat(me).expect("own stat");
        assert_eq!(stat.ppid, nix::unistd::getppid().as_raw());
        assert!(pid_alive(me) && same_process_alive(me, stat.starttime));
        assert!(!same_process_alive(me, stat.starttime + 1));
        assert!(!pid_alive(i32::MAX));
    }
}
