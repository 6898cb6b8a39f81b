//! The run-time control endpoint, in the spirit of Toxiproxy's API: one JSON
//! request per line, one JSON answer per line, on loopback.
//!
//! ```text
//! {"cmd":"lock","lock":{"user":"alice"}}          open (or add) a lock window
//! {"cmd":"unlock","name":"alice"}                 close locks by name or by user
//! {"cmd":"fault","fault":{"action":"drop-after","when":{"verb":"APPLY MAILBOX"},"nth":1}}
//! {"cmd":"mark","name":"after-append"}            a named point for mark triggers
//! {"cmd":"clear"}                                 remove every lock and fault
//! {"cmd":"status"}                                locks, faults, per-user counters
//! ```
//!
//! Answers are `{"ok":true,"status":{…}}` or `{"ok":false,"error":"…"}`. At
//! most [`CONNECTIONS_MAX`] connections are served at once (one more gets an
//! error and is closed), and one idle for [`IDLE_TIMEOUT`] is closed.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::Shared;
use crate::events::EventKind;
use crate::fault::{FaultSpec, LockSpec, Status, TriggerSpec};

/// Longest request line accepted.
const LINE_MAX: usize = 64 * 1024;

/// Control connections served at once; one more is answered with an error
/// and closed (a client that opens connections in a loop cannot exhaust the
/// fake's descriptors through this port).
pub const CONNECTIONS_MAX: usize = 32;

/// A control connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// One control request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Open a lock window; a lock of the same name is reopened.
    Lock {
        /// The lock (its `open` defaults to now).
        lock: LockSpec,
    },
    /// Close locks by name, or every lock on exactly this user.
    Unlock {
        /// Lock name or user.
        name: String,
    },
    /// Add a fault rule.
    Fault {
        /// The rule.
        fault: FaultSpec,
    },
    /// Reach a named mark.
    Mark {
        /// Its name.
        name: String,
    },
    /// Remove every lock and fault.
    Clear,
    /// Report.
    Status,
}

/// One control answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// Whether the request was applied.
    pub ok: bool,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The state after the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// Apply one request to the server's state.
pub fn apply(shared: &Shared, req: &Request) -> Result<Status, String> {
    let now = shared.now_ms();
    match req {
        Request::Lock { lock } => {
            let mut spec = lock.clone();
            let name = spec.name.clone().unwrap_or_else(|| {
                format!(
                    "ctl-{}",
                    [&spec.user, &spec.mailbox, &spec.verb]
                        .iter()
                        .filter_map(|x| x.as_deref())
                        .collect::<Vec<_>>()
                        .join("-")
                )
            });
            spec.name = Some(name.clone());
            spec.open
                .get_or_insert_with(|| TriggerSpec::Word("start".into()));
            let lock = spec.to_lock(0)?;
            let mut engine = shared.engine();
            let mut store = shared.store();
            if !engine.open_lock(&name, now, store.holds_mut()) {
                engine.add_lock(lock, now);
                engine.tick(now, store.holds_mut());
            }
        }
        Request::Unlock { name } => {
            let mut engine = shared.engine();
            if engine.close_locks(name, shared.store().holds_mut()) == 0 {
                return Err(format!("no open lock named or targeting `{name}`"));
            }
        }
        Request::Fault { fault } => {
            let rule = fault.to_rule(0)?;
            shared.engine().add_rule(rule);
        }
        Request::Mark { name } => shared.mark(name),
        Request::Clear => {
            let mut engine = shared.engine();
            engine.clear(shared.store().holds_mut());
        }
        Request::Status => {}
    }
    Ok(shared.engine().status(now))
}

/// Serve control connections on `listener` until the task is dropped: at
/// most [`CONNECTIONS_MAX`] at once, each closed after [`IDLE_TIMEOUT`]
/// without a request.
pub async fn serve_control(listener: TcpListener, shared: Arc<Shared>) {
    serve_control_with(listener, shared, IDLE_TIMEOUT).await;
}

/// [`serve_control`] with its own idle timeout (tests).
async fn serve_control_with(listener: TcpListener, shared: Arc<Shared>, idle: std::time::Duration) {
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            let busy = Answer {
                ok: false,
                error: Some(format!(
                    "too many control connections (at most {CONNECTIONS_MAX} at once)"
                )),
                status: None,
            };
            tokio::spawn(async move {
                let mut out = serde_json::to_vec(&busy).unwrap_or_default();
                out.push(b'\n');
                let _ = stream.write_all(&out).await;
            });
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _ = control_connection(stream, shared, idle).await;
            drop(slot);
        });
    }
}

async fn control_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    idle: std::time::Duration,
) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut bounded = (&mut lines).take(LINE_MAX as u64 + 1);
        let read = bounded.read_until(b'\n', &mut line);
        let n = match tokio::time::timeout(idle, read).await {
            Ok(n) => n?,
            // Idle: closed without an answer (nothing was asked).
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        let answer = if line.len() > LINE_MAX {
            Answer {
                ok: false,
                error: Some(format!("request longer than {LINE_MAX} bytes")),
                status: None,
            }
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Err(e) => Answer {
                    ok: false,
                    error: Some(format!("bad request: {e}")),
                    status: None,
                },
                Ok(req) => {
                    shared.record(
                        0,
                        EventKind::Control {
                            request: String::from_utf8_lossy(line.trim_ascii()).into_owned(),
                        },
                    );
                    match apply(&shared, &req) {
                        Ok(status) => Answer {
                            ok: true,
                            error: None,
                            status: serde_json::to_value(status).ok(),
                        },
                        Err(e) => Answer {
                            ok: false,
                            error: Some(e),
                            status: None,
                        },
                    }
                }
            }
        };
        let mut out = serde_json::to_vec(&answer).map_err(io::Error::from)?;
        out.push(b'\n');
        write.write_all(&out).await?;
        if line.len() > LINE_MAX {
            return Ok(());
        }
    }
}

/// Bind a control endpoint. Refuses a non-loopback address unless `allow_remote`.
pub async fn bind(addr: SocketAddr, allow_remote: bool) -> io::Result<TcpListener> {
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refusing to bind the control endpoint to non-loopback `{addr}` (pass --allow-remote-control)"),
        ));
    }
    TcpListener::bind(addr).await
}

/// Send one request to a control endpoint and read the answer (client side).
pub async fn request(addr: SocketAddr, req: &Request) -> io::Result<Answer> {
    let stream = TcpStream::connect(addr).await?;
    let (read, mut write) = stream.into_split();
    let mut out = serde_json::to_vec(req).map_err(io::Error::from)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    let mut line = Vec::new();
    BufReader::new(read)
        .take(16 << 20)
        .read_until(b'\n', &mut line)
        .await?;
    serde_json::from_slice(&line)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ServerConfig;
    use crate::store::Store;
    use std::time::{Duration, Instant};

    async fn ask(stream: &mut TcpStream, req: &[u8]) -> Option<Answer> {
        let mut line = req.to_vec();
        line.push(b'\n');
        stream.write_all(&line).await.ok()?;
        answer(stream).await
    }

    /// The next answer line; `None` when the server closed. Panics after 10 s
    /// (a connection the server should have closed, left open, fails the
    /// test instead of hanging it).
    async fn answer(stream: &mut TcpStream) -> Option<Answer> {
        let read = async {
            let mut got = Vec::new();
            let mut byte = [0u8; 1];
            while stream.read(&mut byte).await.ok()? == 1 {
                if byte[0] == b'\n' {
                    return serde_json::from_slice(&got).ok();
                }
                got.push(byte[0]);
            }
            None
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("no answer and no close within 10 s")
    }

    /// One connection past the cap is answered with the error and closed;
    /// when one closes, a new one is served; an idle one is closed.
    #[tokio::test]
    async fn connections_are_capped_and_idle_ones_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Shared::new(Store::temporary().expect("store"), ServerConfig::default());
        // Long enough that opening the 32 connections (debug build, loaded
        // machine) never outlasts it.
        let idle = Duration::from_secs(2);
        tokio::spawn(serve_control_with(listener, shared, idle));
        let mut open = Vec::new();
        let mut last_active = Instant::now();
        for _ in 0..CONNECTIONS_MAX {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            // Before the ask: the server's idle time starts no sooner.
            last_active = Instant::now();
            let a = ask(&mut s, br#"{"cmd":"status"}"#).await.expect("answer");
            assert!(a.ok, "{a:?}");
            open.push(s);
        }
        let mut extra = TcpStream::connect(addr).await.expect("connect");
        let a = answer(&mut extra).await.expect("an answer");
        assert!(!a.ok);
        assert!(
            a.error
                .as_deref()
                .unwrap_or("")
                .contains("too many control connections"),
            "{a:?}"
        );
        assert!(answer(&mut extra).await.is_none(), "closed after the error");
        // Idle past the timeout: every open one is closed, and the slots free;
        // the last one asked no sooner than its idle time after its answer.
        for s in &mut open {
            assert!(answer(s).await.is_none(), "an idle connection stays open");
        }
        assert!(last_active.elapsed() >= idle, "closed before its idle time");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            match ask(&mut s, br#"{"cmd":"status"}"#).await {
                Some(a) if a.ok => break,
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                other => panic!("no slot freed after the idle close: {other:?}"),
            }
        }
    }
}
