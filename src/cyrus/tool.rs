//! Bounded runs of Cyrus's command-line tools (`cyr_backup`, `ctl_backups`,
//! `sqlite3`, `cyr_info`, ...): stdin closed, output captured, killed by process
//! group after a deadline, registered with the interrupt handler meanwhile.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::{process, CyrusError};

type Result<T> = std::result::Result<T, CyrusError>;

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CyrusError {
    CyrusError::io(context)
}

/// The outcome of a bounded tool run.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    /// Exit code; `None` when killed (timeout or signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

/// Run `cmd` with stdin closed, capturing output, killing it (by PID) after `timeout`.
/// The child is registered ([`process::spawn_tracked`]), so an interrupt
/// kills its process group at once.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Result<ToolOutput> {
    let shown = format!("{cmd:?}");
    let what = Path::new(cmd.get_program())
        .file_name()
        .map_or_else(|| shown.clone(), |n| n.to_string_lossy().into_owned());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let (mut child, tracked) = process::spawn_tracked(&mut cmd, process::Kind::Group { what })
        .map_err(io(format!("start {shown}")))?;
    let result = wait_bounded(&mut child, &shown, timeout);
    process::untrack(tracked);
    result
}

fn wait_bounded(child: &mut Child, shown: &str, timeout: Duration) -> Result<ToolOutput> {
    let pump = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = pump(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = pump(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().map_err(io(format!("wait {shown}")))? {
            break st;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            // The whole group: a tool's own children go too.
            process::signal_group(
                i32::try_from(child.id()).unwrap_or(-1),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.kill();
            break child.wait().map_err(io(format!("wait {shown}")))?;
        }
        sleep(Duration::from_millis(5));
    };
    Ok(ToolOutput {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        timed_out,
    })
}
