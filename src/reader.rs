//! The runner's own reads of a target over csync: `GET USER` and
//! `GET FULLMAILBOX` of every user, through the same address the client uses
//! (the fake, or the recording relay in front of a real target), so that the
//! history records them like any other read.
//!
//! Why: a catch-up pass carries queued changes, and it may also carry again a
//! change the target acknowledged and then lost, healing the loss before the
//! final read-back sees it. Reading every user just before the catch-up, after
//! the client has stopped, shows what the target holds of everything it
//! acknowledged (see [`crate::history`]).
//!
//! Read-only: only GET commands, then `EXIT`, and the connection is read to
//! its end so that the target has let go of its locks before anything else
//! runs. Blocking, with a deadline on every read and write; loopback only in
//! practice (the address is the one the harness set up).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;

use crate::dlist::{Framer, Limits, Value};
use crate::proto::Reply;

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The connection failed.
    #[error("reading {addr}: {source}")]
    Io {
        /// Where.
        addr: SocketAddr,
        /// What.
        source: std::io::Error,
    },
    /// The target answered something unexpected.
    #[error("reading {addr}: {what}")]
    Protocol {
        /// Where.
        addr: SocketAddr,
        /// What.
        what: String,
    },
}

/// Credentials and address of a target, as the client is given them.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The replication user.
    pub authname: String,
    /// Its password.
    pub password: String,
}

struct Conn {
    addr: SocketAddr,
    stream: TcpStream,
    framer: Framer,
    deadline: Instant,
    buf: Vec<u8>,
}

impl Conn {
    fn io(&self, source: std::io::Error) -> ReadError {
        ReadError::Io {
            addr: self.addr,
            source,
        }
    }

    fn protocol(&self, what: impl Into<String>) -> ReadError {
        ReadError::Protocol {
            addr: self.addr,
            what: what.into(),
        }
    }

    fn arm(&mut self) -> Result<(), ReadError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.io(std::io::ErrorKind::TimedOut.into()));
        }
        self.stream
            .set_read_timeout(Some(left))
            .and_then(|()| self.stream.set_write_timeout(Some(left)))
            .map_err(|e| self.io(e))
    }

    /// The next frame; `None` at the end of the stream.
    fn frame(&mut self) -> Result<Option<Bytes>, ReadError> {
        loop {
            match self.framer.next_frame() {
                Ok(Some(f)) => return Ok(Some(f)),
                Ok(None) => {}
                Err(e) => return Err(self.protocol(e.to_string())),
            }
            self.arm()?;
            let n = self.stream.read(&mut self.buf).map_err(|e| self.io(e))?;
            if n == 0 {
                return Ok(None);
            }
            self.framer.push(&self.buf[..n]);
        }
    }

    fn send(&mut self, line: &[u8]) -> Result<(), ReadError> {
        self.arm()?;
        self.stream.write_all(line).map_err(|e| self.io(e))
    }

    /// Send `line` and read its answer: data lines, then the final line.
    fn call(&mut self, line: &[u8]) -> Result<Vec<Reply>, ReadError> {
        self.send(line)?;
        let mut out = Vec::new();
        loop {
            let Some(frame) = self.frame()? else {
                return Err(self.protocol("the connection ended before the answer"));
            };
            let reply = Reply::parse(frame).map_err(|e| self.protocol(e.to_string()))?;
            let last = reply.is_final();
            out.push(reply);
            if last {
                return Ok(out);
            }
        }
    }
}

/// The answer to one of the runner's reads must be `OK`, or `NO` for a user
/// or mailbox the target does not have (`IMAP_MAILBOX_NONEXISTENT`: the
/// history judges that absence): any other refusal (`LOCKED`, an error) is a
/// read that shows nothing, and a run whose only look at a mailbox's records
/// is refused must not pass for it.
fn answered(c: &Conn, what: &str, answer: &[Reply]) -> Result<(), ReadError> {
    match answer.last() {
        Some(Reply::Ok(_)) => Ok(()),
        Some(Reply::No(t)) if t.starts_with("IMAP_MAILBOX_NONEXISTENT") => Ok(()),
        other => Err(c.protocol(format!(
            "{what} answered `{}`: the read shows nothing",
            other.map(Reply::to_line).unwrap_or_default().trim_end()
        ))),
    }
}

/// How long a `GET USER` answered `NO IMAP_MAILBOX_LOCKED` is asked again
/// (within the read's own deadline). The runner reads after the client has
/// stopped, but a real backupd lets go of a user's lock only when the process
/// that served the client has finished, which can trail the client's exit;
/// any lock still held after this is a refusal ([`answered`]).
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Send `line` and read its answer; while it is `NO IMAP_MAILBOX_LOCKED`, ask
/// again after a pause (20 ms, doubling up to 200 ms) until [`LOCK_WAIT`] or
/// the read's deadline, and return the last answer. A refused read changes
/// nothing on the target, and the history ignores reads not answered `OK`.
fn call_while_locked(c: &mut Conn, line: &[u8]) -> Result<Vec<Reply>, ReadError> {
    let until = (Instant::now() + LOCK_WAIT).min(c.deadline);
    let mut pause = Duration::from_millis(20);
    loop {
        let answer = c.call(line)?;
        let locked =
            matches!(answer.last(), Some(Reply::No(t)) if t.starts_with("IMAP_MAILBOX_LOCKED"));
        // The last ask leaves at least one more pause before `until`, so it
        // is answered within the read's deadline.
        if !locked || Instant::now() + pause * 2 >= until {
            return Ok(answer);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Read every one of `users` on `target`: `GET USER`, then `GET FULLMAILBOX`
/// of each mailbox listed; then `GET QUOTA` of each of `quota_roots` (a
/// replica's; backupd refuses it), then `EXIT`, waiting for the target to
/// close. A `GET USER` still locked after [`LOCK_WAIT`], or a `GET USER` or
/// `GET FULLMAILBOX` refused otherwise but for a user or mailbox the target
/// does not have, is an error ([`answered`]).
pub fn read_users(
    target: &Target,
    users: &[String],
    quota_roots: &[String],
    timeout: Duration,
) -> Result<(), ReadError> {
    let stream =
        TcpStream::connect_timeout(&target.addr, timeout).map_err(|source| ReadError::Io {
            addr: target.addr,
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let mut c = Conn {
        addr: target.addr,
        stream,
        framer: Framer::new(Limits::default()),
        deadline: Instant::now() + timeout,
        buf: vec![0; 64 * 1024],
    };
    // The greeting ends with its `* OK` line.
    loop {
        let Some(frame) = c.frame()? else {
            return Err(c.protocol("closed before the greeting ended"));
        };
        if frame.starts_with(b"* OK") {
            break;
        }
        if !frame.starts_with(b"* ") {
            return Err(c.protocol(format!(
                "unexpected greeting line `{}`",
                String::from_utf8_lossy(&frame).trim_end()
            )));
        }
    }
    let plain = format!("\0{}\0{}", target.authname, target.password);
    let auth = base64::engine::general_purpose::STANDARD.encode(plain);
    let answer = c.call(format!("AUTHENTICATE PLAIN {auth}\r\n").as_bytes())?;
    if !matches!(answer.last(), Some(Reply::Ok(_))) {
        return Err(c.protocol(format!(
            "authentication refused: {}",
            answer.last().map(Reply::to_line).unwrap_or_default()
        )));
    }
    for user in users {
        let mut line = b"GET USER ".to_vec();
        crate::dlist::encode_value(
            &mut line,
            &Value::atom(user),
            crate::dlist::Direction::ToServer,
        );
        line.extend_from_slice(b"\r\n");
        let answer = call_while_locked(&mut c, &line)?;
        answered(&c, &format!("GET USER {user}"), &answer)?;
        let names: Vec<String> = answer
            .iter()
            .filter_map(|r| match r {
                Reply::Data(k, v) if k == "MAILBOX" => {
                    v.get("MBOXNAME").and_then(Value::as_str).map(str::to_owned)
                }
                _ => None,
            })
            .collect();
        for name in names {
            let mut line = b"GET FULLMAILBOX ".to_vec();
            crate::dlist::encode_value(
                &mut line,
                &Value::atom(&name),
                crate::dlist::Direction::ToServer,
            );
            line.extend_from_slice(b"\r\n");
            let answer = c.call(&line)?;
            answered(&c, &format!("GET FULLMAILBOX {name}"), &answer)?;
        }
        // backupd keeps each user it opened locked until RESTART or EXIT.
        c.call(b"RESTART\r\n")?;
    }
    for root in quota_roots {
        let mut line = b"GET QUOTA ".to_vec();
        crate::dlist::encode_value(
            &mut line,
            &Value::atom(root),
            crate::dlist::Direction::ToServer,
        );
        line.extend_from_slice(b"\r\n");
        c.call(&line)?;
    }
    c.call(b"EXIT\r\n")?;
    // Read to the end: the target has closed, and let go of its locks.
    while c.frame()?.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead as _, BufReader};
    use std::net::TcpListener;

    /// A target that answers the first `locked` `GET USER`s with
    /// `NO IMAP_MAILBOX_LOCKED` and every other command `OK`; it returns how
    /// many `GET USER`s it was sent.
    fn target(locked: usize) -> (Target, std::thread::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut out = stream.try_clone().expect("clone");
            out.write_all(b"* SASL PLAIN\r\n* OK test\r\n")
                .expect("greet");
            let mut gets = 0;
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let answer: &[u8] = if line.starts_with("GET USER") {
                    gets += 1;
                    if gets <= locked {
                        b"NO IMAP_MAILBOX_LOCKED Mailbox locked\r\n"
                    } else {
                        b"OK success\r\n"
                    }
                } else {
                    b"OK success\r\n"
                };
                out.write_all(answer).expect("answer");
                if line == "EXIT" {
                    break;
                }
            }
            gets
        });
        let t = Target {
            addr,
            authname: "repl".into(),
            password: "pw".into(),
        };
        (t, server)
    }

    /// Proves: a user still locked by a client that has just gone (a real
    /// backupd's process outlives the client's exit) is asked again, and the
    /// read succeeds once the lock is gone.
    #[test]
    fn a_locked_user_is_read_again_until_the_lock_is_gone() {
        let (t, server) = target(3);
        read_users(&t, &["kim".into()], &[], Duration::from_secs(10)).expect("read");
        assert_eq!(server.join().expect("server"), 4);
    }

    /// Proves: a lock that is never let go fails the read by its deadline,
    /// naming the refusal.
    #[test]
    fn a_lock_never_let_go_fails_the_read_in_time() {
        let (t, server) = target(usize::MAX);
        let started = Instant::now();
        let e = read_users(&t, &["kim".into()], &[], Duration::from_secs(2))
            .expect_err("locked for good");
        assert!(started.elapsed() < Duration::from_secs(5), "{e}");
        let e = e.to_string();
        assert!(
            e.contains("GET USER kim answered `NO IMAP_MAILBOX_LOCKED")
                && e.contains("the read shows nothing"),
            "{e}"
        );
        drop(server);
    }
}
