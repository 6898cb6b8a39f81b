//! The floor: a minimal csync server that answers `OK` to everything and stores
//! nothing, so a run against it shows the real `sync_client`'s own cost.
//!
//! It greets `* SASL PLAIN` / `* COMPRESS DEFLATE` / `* OK`, accepts any
//! `AUTHENTICATE`, turns on raw DEFLATE after `COMPRESS` (as the real targets and
//! the fake do, so the client pays the same compression cost everywhere), answers
//! `APPLY RESERVE` with every GUID `* MISSING` (like an empty target: the client
//! uploads every body) and every other command `OK Success`. Commands are framed
//! with [`crate::dlist::Framer`], so literals are read correctly; bodies are
//! dropped as soon as they are framed.

use std::io;
use std::net::SocketAddr;
use std::thread::JoinHandle;

use crate::server::Deflate;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::dlist::{Framer, Limits};
use crate::proto::{Apply, Command};

/// A running floor server on its own thread and single-threaded runtime.
#[derive(Debug)]
pub struct Floor {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Floor {
    /// Bind 127.0.0.1 on an OS-chosen port and serve until [`Floor::stop`] or drop.
    pub fn start() -> io::Result<Floor> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (tx, rx) = oneshot::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("bench-floor".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(std_listener) else {
                        return;
                    };
                    let mut conns = tokio::task::JoinSet::new();
                    tokio::pin!(rx);
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            acc = listener.accept() => if let Ok((s, _)) = acc {
                                conns.spawn(async move { let _ = connection(s).await; });
                            },
                            Some(_) = conns.join_next(), if !conns.is_empty() => {}
                        }
                    }
                    conns.shutdown().await;
                });
            })?;
        Ok(Floor {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving, close every connection, join the thread.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Inflate all of `input` into `sink` with the server's [`Deflate`]
/// (unbounded: the floor only ever talks to the local sync_client).
fn decompress_all(z: &mut Deflate, mut input: &[u8], sink: &mut Framer) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (used, made) = z.decompress(input, &mut buf)?;
        sink.push(&buf[..made]);
        input = &input[used..];
        if input.is_empty() && made < buf.len() {
            return Ok(());
        }
    }
}

async fn send(s: &mut TcpStream, z: &mut Option<Deflate>, text: &[u8]) -> io::Result<()> {
    match z {
        Some(z) => {
            let c = z.compress(text)?;
            s.write_all(&c).await
        }
        None => s.write_all(text).await,
    }
}

/// The reply to one framed command, or `None` to close after `OK Finished`.
fn reply(frame: &Bytes) -> (Vec<u8>, bool) {
    let word_end = frame
        .iter()
        .position(|b| *b == b' ' || *b == b'\r' || *b == b'\n')
        .unwrap_or(frame.len());
    let verb = frame[..word_end].to_ascii_uppercase();
    match verb.as_slice() {
        b"AUTHENTICATE" => (b"OK Success (no protection)\r\n".to_vec(), false),
        b"EXIT" => (b"OK Finished\r\n".to_vec(), true),
        b"APPLY" if frame[word_end..].trim_ascii_start().starts_with(b"RESERVE") => {
            match Command::parse(frame.clone()) {
                Ok(Command::Apply(Apply::Reserve { guids, .. })) if !guids.is_empty() => {
                    let mut r = b"* MISSING (".to_vec();
                    r.extend_from_slice(guids.join(" ").as_bytes());
                    r.extend_from_slice(b")\r\nOK Success\r\n");
                    (r, false)
                }
                _ => (b"OK Success\r\n".to_vec(), false),
            }
        }
        _ => (b"OK Success\r\n".to_vec(), false),
    }
}

async fn connection(mut s: TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    s.write_all(
        b"* SASL PLAIN\r\n* COMPRESS DEFLATE\r\n* OK floor.backupd-sim.test csync floor\r\n",
    )
    .await?;
    let mut framer = Framer::new(Limits::default());
    let mut z: Option<Deflate> = None;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        match z.as_mut() {
            Some(d) => decompress_all(d, &buf[..n], &mut framer)?,
            None => framer.push(&buf[..n]),
        }
        let mut out = Vec::new();
        let mut start_deflate = false;
        let mut close = false;
        while let Some(frame) = framer
            .next_frame()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
        {
            if frame
                .get(..8)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"COMPRESS"))
                && z.is_none()
            {
                out.extend_from_slice(b"OK DEFLATE active\r\n");
                start_deflate = true;
                continue;
            }
            let (r, fin) = reply(&frame);
            out.extend_from_slice(&r);
            if fin {
                close = true;
                break;
            }
        }
        if !out.is_empty() {
            send(&mut s, &mut z, &out).await?;
        }
        if start_deflate {
            z = Some(Deflate::default());
            // Anything buffered after COMPRESS was already compressed: the client
            // waits for our OK before compressing, so nothing is buffered here.
        }
        if close {
            return Ok(());
        }
    }
}
