//! What the two tokio models share: the accept loop (a task per connection, until
//! shutdown, then the grace period) and `TokioStream`, a tokio socket that ends its
//! reads at shutdown and at `--idle-timeout`. The models themselves differ only in the
//! runtime they build: [`multi`] many threads (Go's goroutines), [`current`] one
//! (gevent's green threads).

pub mod current;
pub mod multi;

use std::io;
use std::os::fd::AsFd as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::accept::Backoff;
use crate::connection::{AsyncStream, serve_async};
use crate::downstream::AsyncNet;
use crate::offload::Offload;
use crate::server::Config;
use crate::shutdown::{Shutdown, ShutdownWatch};

/// A tokio socket that also ends its reads when shutdown is triggered.
struct TokioStream {
    stream: tokio::net::TcpStream,
    stop: ShutdownWatch,
    /// `--idle-timeout`: a read waiting this long, or a write, fails with `TimedOut`.
    idle: Option<Duration>,
}

impl AsyncStream for TokioStream {
    fn socket(&self) -> std::os::fd::BorrowedFd<'_> {
        self.stream.as_fd()
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let idle = idle_sleep(self.idle);
        tokio::select! {
            biased;
            read = self.stream.read(buf) => read,
            // Shutdown reads as end of input: the replies owed are written, then it closes.
            () = self.stop.triggered() => Ok(0),
            () = idle => Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")),
        }
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.try_read(buf)
    }

    type Net = TokioNet;
    fn net(&self) -> TokioNet {
        TokioNet
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let idle = idle_sleep(self.idle);
        tokio::select! {
            written = self.stream.write_all(buf) => written,
            () = idle => Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")),
        }
    }
}

/// How a tokio task waits on the downstream (`--downstream`): a tokio socket, whose
/// `read` parks the task in tokio's reactor, and tokio's timer wheel for the timeout.
/// A request that waits is an `.await`; the runtime's threads serve others meanwhile.
#[derive(Debug, Clone, Copy)]
struct TokioNet;

impl AsyncNet for TokioNet {
    type Conn = tokio::net::TcpStream;

    async fn connect(&self, addr: std::net::SocketAddr) -> io::Result<Self::Conn> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

// Named in full, not imported: its `read` would clash with tokio's `AsyncReadExt::read`.
impl crate::downstream::AsyncDownstream for tokio::net::TcpStream {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        tokio::io::AsyncReadExt::read(self, buf).await
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        tokio::io::AsyncWriteExt::write_all(self, buf).await
    }
}

/// Sleeps for the idle timeout, or forever without one.
async fn idle_sleep(idle: Option<Duration>) {
    match idle {
        Some(idle) => tokio::time::sleep(idle).await,
        None => std::future::pending().await,
    }
}

/// The accept loop of the tokio models: a task per connection, until shutdown; then
/// up to `config.grace` for the tasks to finish.
async fn accept_loop(
    listener: std::net::TcpListener,
    config: Config,
    shutdown: Shutdown,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let config = Arc::new(config);
    let offload = Offload::from_config(&config)?.map(Arc::new);
    let mut stop = shutdown.watch();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = stop.triggered() => break,
            // Reap finished tasks as we go so the set holds only live connections.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    shutdown.accept_recovered();
                    // Counted only: each task watches the shutdown itself.
                    let Some(live) = shutdown.admit(stream.as_fd(), peer, config.max_conns, None) else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let stream = TokioStream {
                        stream,
                        stop: shutdown.watch(),
                        idle: config.idle_timeout,
                    };
                    let (config, offload) = (config.clone(), offload.clone());
                    tasks.spawn(async move {
                        serve_async(stream, &peer, &config, offload.as_deref()).await;
                        drop(live);
                    });
                }
                Err(e) => {
                    // Out of descriptors, say: pause accepting; the open connections
                    // go on being served meanwhile.
                    shutdown.accept_failed(&e);
                    tokio::time::sleep(Backoff::PAUSE).await;
                }
            },
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(config.grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(left = tasks.len(), "grace period over; cutting connections");
        tasks.shutdown().await;
    }
    Ok(())
}
