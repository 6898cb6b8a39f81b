//! Local TCP ports: one free a moment ago, and who holds one (read from
//! `/proc/net/tcp{,6}` and a process's open sockets, by PID only).

use std::collections::HashSet;
use std::net::TcpListener;

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
        // Ours no more; another process may take the freed port at once.
        assert_ne!(port_owner(me, port), PortOwner::Listening);
    }
}
