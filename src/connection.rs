//! The two connection loops every inline model shares: one for a blocking socket, one
//! for an async one. Both only move bytes between the socket and a [`Session`], so the
//! wire behaviour cannot drift between models.
//!
//! Each loop reads, answers every request the bytes complete, and writes all replies
//! before reading again. Writing first bounds memory (one read's worth of replies) and
//! gives back-pressure for free: a client that stops reading stops being read.
//!
//! The seeds' unterminated clients: when a read leaves bytes without a newline, the
//! loop reads again *without waiting*. If the socket has nothing more right now, the
//! pending bytes are one request (`Session::on_idle`).

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use nix::sys::socket::{MsgFlags, recv};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::server::Config;
use crate::service::Session;
use crate::shutdown::Shutdown;

/// Size of one socket read. 16 KiB holds thousands of pipelined requests.
const READ_CHUNK: usize = 16 * 1024;

/// Serves one connection on the calling thread until the client leaves or shutdown
/// shuts the socket's read side. Logs the outcome; never panics on client input.
pub fn serve_blocking(stream: TcpStream, peer: SocketAddr, config: &Config) {
    tracing::debug!(%peer, "connected");
    match serve_blocking_inner(stream, config) {
        Ok(()) => tracing::debug!(%peer, "closed"),
        Err(e) => log_connection_error(peer, &e),
    }
}

fn serve_blocking_inner(mut stream: TcpStream, config: &Config) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut session = Session::new(config.service, config.max_line);
    let mut input = vec![0u8; READ_CHUNK];
    let mut out = Vec::with_capacity(READ_CHUNK);
    let mut eof = false;
    while !eof {
        let n = match stream.read(&mut input) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            session.on_eof(&mut out);
            eof = true;
        } else {
            session.on_bytes(&input[..n], &mut out);
        }
        while !eof && session.wants_idle_flush() {
            match recv(stream.as_raw_fd(), &mut input, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => {
                    session.on_eof(&mut out);
                    eof = true;
                }
                Ok(n) => session.on_bytes(&input[..n], &mut out),
                Err(nix::errno::Errno::EAGAIN) => session.on_idle(&mut out),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if !out.is_empty() {
            stream.write_all(&out)?;
            out.clear();
        }
    }
    Ok(())
}

/// The async twin of [`serve_blocking`]: same steps, awaiting instead of blocking, and
/// it also stops reading when shutdown is triggered.
pub async fn serve_async(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    config: Arc<Config>,
    shutdown: Shutdown,
) {
    tracing::debug!(%peer, "connected");
    match serve_async_inner(stream, &config, &shutdown).await {
        Ok(()) => tracing::debug!(%peer, "closed"),
        Err(e) => log_connection_error(peer, &e),
    }
}

async fn serve_async_inner(
    mut stream: tokio::net::TcpStream,
    config: &Config,
    shutdown: &Shutdown,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut stop = shutdown.watch();
    let mut session = Session::new(config.service, config.max_line);
    let mut input = vec![0u8; READ_CHUNK];
    let mut out = Vec::with_capacity(READ_CHUNK);
    let mut eof = false;
    while !eof {
        let n = tokio::select! {
            biased;
            read = stream.read(&mut input) => read?,
            () = stop.triggered() => return Ok(()),
        };
        if n == 0 {
            session.on_eof(&mut out);
            eof = true;
        } else {
            session.on_bytes(&input[..n], &mut out);
        }
        while !eof && session.wants_idle_flush() {
            match stream.try_read(&mut input) {
                Ok(0) => {
                    session.on_eof(&mut out);
                    eof = true;
                }
                Ok(n) => session.on_bytes(&input[..n], &mut out),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => session.on_idle(&mut out),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
    }
    Ok(())
}

/// The accept loop of the async models: a task per connection, until shutdown; then
/// up to `config.grace` for the tasks to finish.
pub async fn accept_loop_async(
    listener: std::net::TcpListener,
    config: Config,
    shutdown: Shutdown,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let config = Arc::new(config);
    let mut stop = shutdown.watch();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = stop.triggered() => break,
            // Reap finished tasks as we go so the set holds only live connections.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let guard = shutdown.track(None);
                    let conn = serve_async(stream, peer, config.clone(), shutdown.clone());
                    tasks.spawn(async move {
                        conn.await;
                        drop(guard);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
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
        tasks.abort_all();
    }
    Ok(())
}

/// A client that resets or vanishes is ordinary life for a server: debug level. Anything
/// else is worth a warning.
fn log_connection_error(peer: SocketAddr, e: &io::Error) {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof => tracing::debug!(%peer, error = %e, "client went away"),
        _ => tracing::warn!(%peer, error = %e, "connection failed"),
    }
}
