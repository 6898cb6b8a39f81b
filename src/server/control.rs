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
//! Answers are `{"ok":true,"status":{…}}` or `{"ok":false,"error":"…"}`.

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

/// Serve control connections on `listener` until the task is dropped.
pub async fn serve_control(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _ = control_connection(stream, shared).await;
        });
    }
}

async fn control_connection(stream: TcpStream, shared: Arc<Shared>) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut lines)
            .take(LINE_MAX as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
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
