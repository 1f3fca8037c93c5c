//! An async socket in a task: the blocking loop's steps, awaiting instead of blocking. A
//! request that waits on the downstream (`--downstream`) awaits its reply
//! ([`crate::downstream::call_async`]): the task yields, and the executor's thread serves
//! the other connections meanwhile.

use std::io;
use std::net::SocketAddr;

use super::{Input, READ_CHUNK, SessionDriver, log_connection_error};
use crate::downstream::{AsyncNet, call_async};
use crate::fib::fib;
use crate::offload::Offload;
use crate::probe::gone_for;
use crate::server::Config;
use crate::service::{Handoff, Work};

/// The socket operations [`serve_async`] needs, so one connection loop serves every
/// executor: tokio's and the hand-built one of `coroutines`.
#[allow(async_fn_in_trait)] // implemented in this crate for concrete types only
pub trait AsyncStream {
    /// Waits for bytes; `Ok(0)` is end of input.
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Reads without waiting: `WouldBlock` when nothing is there right now.
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// The socket, for [`crate::probe::gone_probe`].
    fn socket(&self) -> std::os::fd::BorrowedFd<'_>;
    /// How this executor connects to the downstream and keeps time.
    type Net: AsyncNet;
    fn net(&self) -> Self::Net;
}

/// Bytes an idle connection's pending read holds; see [`async_loop`].
const WAITING_READ: usize = 64;

/// Serves one connection as an async task: the same steps as
/// [`super::serve_blocking`], awaiting instead of blocking. With `offload`, fib runs in
/// the pool and the task awaits the reply, so the executor's thread stays free for
/// other connections.
///
/// `peer` is borrowed: the task that spawns this future owns it already, and a copy
/// here would be one more address in every idle connection's state.
pub async fn serve_async<S: AsyncStream>(
    stream: S,
    peer: &SocketAddr,
    config: &Config,
    offload: Option<&Offload>,
) {
    tracing::debug!(%peer, "connected");
    match async_loop(stream, config, offload).await {
        Ok(()) => tracing::debug!(%peer, "closed"),
        Err(e) => log_connection_error(*peer, &e),
    }
}

async fn async_loop<S: AsyncStream>(
    mut stream: S,
    config: &Config,
    offload: Option<&Offload>,
) -> io::Result<()> {
    let work = match offload {
        Some(_) => Work::Handed,
        None => Work::Inline,
    };
    let mut driver = SessionDriver::for_connection(config, work);
    let net = stream.net();
    let mut downstream = None;
    // An idle connection waits with a few bytes of buffer, not a whole chunk: a request
    // line is a few bytes. A read that fills it means more is there: the next reads
    // take a chunk for as long as they fill it, and give it back after.
    let mut waiting = [0u8; WAITING_READ];
    let mut chunk: Vec<u8> = Vec::new();
    loop {
        if driver.is_finished() {
            return Ok(());
        }
        let input: &mut [u8] = match chunk.is_empty() {
            true => &mut waiting,
            false => &mut chunk,
        };
        let read = if driver.wants_idle_flush() {
            stream.try_read(input)
        } else {
            write_pending(&mut stream, &mut driver).await?;
            stream.read(input).await
        };
        let Some(event) = Input::from_read(read)? else {
            continue;
        };
        let filled = matches!(event, Input::Bytes(n) if n == input.len());
        let mut handed = event.feed(&mut driver, input, stream.socket());
        match filled {
            true if chunk.is_empty() => chunk = vec![0u8; READ_CHUNK],
            true => {}
            false => chunk = Vec::new(),
        }
        while let Some(handoff) = handed {
            let next = match (handoff, config.downstream.as_ref()) {
                (Handoff::Compute(n), _) => {
                    let reply = match offload {
                        // Boxed while it runs, as the downstream call below.
                        Some(pool) => Box::pin(pool.fib(n, gone_for(n, stream.socket()))).await,
                        None => Ok(fib(n)),
                    };
                    driver.reply(reply);
                    None
                }
                (Handoff::Wait, Some(settings)) => {
                    // About to wait on the downstream: the replies owed go out first.
                    write_pending(&mut stream, &mut driver).await?;
                    let line = driver.downstream_line();
                    // Boxed while it runs: an async fn's state is as large as its
                    // largest await, and every idle connection's task would otherwise
                    // carry the call's (its reply buffer, connect and timer futures:
                    // about 0.6 KiB; issue 45).
                    let outcome =
                        Box::pin(call_async(&net, &mut downstream, *settings, line)).await;
                    driver.downstream_replied(outcome, stream.socket())
                }
                // A session waits only when the server has a downstream.
                (Handoff::Wait, None) => driver.downstream_replied(Ok(()), stream.socket()),
            };
            handed = next.or_else(|| driver.resume(stream.socket()));
        }
        if !driver.wants_read() {
            // End of input: the last replies go out before the connection finishes.
            write_pending(&mut stream, &mut driver).await?;
        }
    }
}

async fn write_pending<S: AsyncStream>(
    stream: &mut S,
    driver: &mut SessionDriver,
) -> io::Result<()> {
    if driver.wants_write() {
        stream.write_all(driver.pending()).await?;
        let n = driver.pending().len();
        driver.wrote(n);
    }
    Ok(())
}
