//! Reading `/proc` (Linux): one parser of `/proc/PID/stat` (identity, parent,
//! state, CPU time) and of `/proc/PID/status` sizes, shared by the process
//! helpers ([`super::process`]) and the benchmarks. Nothing here panics on a
//! short or malformed line: it is `None`.

use std::process::Command;

/// The fields of `/proc/PID/stat` we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    /// Start time in clock ticks since boot: with the PID, identifies a process.
    pub starttime: u64,
    /// CPU time in clock ticks: user, system, and of reaped children.
    pub utime: u64,
    pub stime: u64,
    pub cutime: u64,
    pub cstime: u64,
}

impl ProcStat {
    /// Parse the text of `/proc/PID/stat`: "pid (comm) state ppid …", where
    /// comm may hold spaces and parentheses. `None` when a field is missing or
    /// not a number.
    pub fn parse(pid: i32, text: &str) -> Option<ProcStat> {
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| fields.get(i)?.parse::<u64>().ok();
        Some(ProcStat {
            pid,
            state: fields.first()?.chars().next()?,
            ppid: fields.get(1)?.parse().ok()?,
            utime: num(11)?,
            stime: num(12)?,
            cutime: num(13)?,
            cstime: num(14)?,
            starttime: num(19)?,
        })
    }

    /// utime + stime (+ cutime + cstime with `children`), in seconds.
    pub fn cpu_seconds(&self, children: bool) -> f64 {
        let ticks = self.utime
            + self.stime
            + if children {
                self.cutime + self.cstime
            } else {
                0
            };
        ticks as f64 / clk_tck()
    }
}

/// Read `/proc/PID/stat`; `None` if there is no such process.
pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    ProcStat::parse(pid, &text)
}

/// utime + stime (+ cutime + cstime with `children`) of `pid`, in seconds.
pub fn cpu_seconds(pid: i32, children: bool) -> Option<f64> {
    Some(proc_stat(pid)?.cpu_seconds(children))
}

/// Clock ticks per second (`getconf CLK_TCK`, else 100).
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

/// A size line of `/proc/PID/status` (`VmHWM`, `VmRSS`, …) in KiB.
pub fn status_kib(pid: i32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
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
pub(crate) fn all_stats() -> Vec<ProcStat> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_of_self() {
        let me = std::process::id() as i32;
        let stat = proc_stat(me).expect("own stat");
        assert_eq!(stat.ppid, nix::unistd::getppid().as_raw());
        assert!(pid_alive(me) && same_process_alive(me, stat.starttime));
        assert!(!same_process_alive(me, stat.starttime + 1));
        assert!(!pid_alive(i32::MAX));
        assert!(cpu_seconds(me, true).is_some_and(|s| s >= 0.0));
    }

    #[test]
    fn stat_lines_parse_and_short_ones_do_not_panic() {
        let line = "42 (a (b) c) S 7 42 42 0 -1 4194560 100 0 0 0 25 13 4 2 20 0 1 0 9876 0 0";
        let s = ProcStat::parse(42, line).expect("parses");
        assert_eq!((s.pid, s.state, s.ppid, s.starttime), (42, 'S', 7, 9876));
        assert_eq!((s.utime, s.stime, s.cutime, s.cstime), (25, 13, 4, 2));
        // Cut anywhere (a process exiting mid-read, a truncated file): None.
        for end in 0..line.len() - " 9876 0 0".len() {
            assert_eq!(
                ProcStat::parse(42, &line[..end]),
                None,
                "{:?}",
                &line[..end]
            );
        }
        assert_eq!(
            ProcStat::parse(1, "1 (x) S 0 1 1 0 -1 0 0 0 0 0 x 1 1 1 20 0 1 0 5"),
            None
        );
        assert_eq!(ProcStat::parse(1, ""), None);
    }
}
