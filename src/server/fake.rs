//! [`FakeBackupd`]: the fake serving on its own tasks in the current tokio
//! runtime, bound to a port the OS chose, stopped on request or drop; what the
//! CLI's `serve`, the harness and the tests start.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::{serve, ServerConfig, Shared};
use crate::store::Store;

/// A running server on its own tasks, for tests and the CLI.
#[derive(Debug)]
pub struct FakeBackupd {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FakeBackupd {
    /// Bind `listen` (use port 0) and serve `store` in the current runtime.
    pub async fn start(
        listen: SocketAddr,
        store: Store,
        config: ServerConfig,
    ) -> io::Result<FakeBackupd> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Shared::new(store, config);
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, Arc::clone(&shared), async {
            let _ = rx.await;
        }));
        Ok(FakeBackupd {
            addr,
            shared,
            stop: Some(tx),
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (store, engine, events).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stop accepting, close every connection and wait for that.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for FakeBackupd {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
