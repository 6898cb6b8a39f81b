//! Filling a source instance for a workload: bodies appended with MULTIAPPEND
//! and LITERAL+ in batches, in a sandbox of its own.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use super::{failed, BenchOptions, Context, Result};
use crate::cyrus::{Channel, SourceInstance, SourceOptions};

/// Append `bodies` to `mailbox` as `user` with MULTIAPPEND and LITERAL+ in batches.
pub fn bulk_append(addr: SocketAddr, user: &str, mailbox: &str, bodies: &[Vec<u8>]) -> Result<()> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    if !line.starts_with("* OK") {
        return Err(failed(format!("imap greeting: {line:?}")));
    }
    let mut tagged = |w: &mut TcpStream, tag: &str, cmd: &[u8]| -> Result<()> {
        w.write_all(cmd)?;
        w.flush()?;
        loop {
            let mut l = String::new();
            if r.read_line(&mut l)? == 0 {
                return Err(failed("imap server closed the connection"));
            }
            if let Some(rest) = l.strip_prefix(tag).and_then(|x| x.strip_prefix(' ')) {
                if rest.starts_with("OK") {
                    return Ok(());
                }
                return Err(failed(format!("imap {tag}: {}", l.trim_end())));
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

pub(super) fn small_bodies(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| crate::populate::message(tag, i, 0))
        .collect()
}

pub(super) fn sandbox(opts: &BenchOptions, what: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("backupd-sim-bench-{what}-"))
        .tempdir_in(&opts.sandbox_parent)
        .context("creating a sandbox")
}

pub(super) fn source(opts: &BenchOptions, dir: &Path) -> Result<SourceInstance> {
    let mut so = SourceOptions::new(opts.bins.clone(), dir.join("src"));
    // The real port is given with -S on each run.
    so.channels = vec![Channel::new("backup", 9)];
    Ok(SourceInstance::start(&so)?)
}
