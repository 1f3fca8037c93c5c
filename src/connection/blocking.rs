//! A blocking socket on its own thread: read, answer, write, block again. A request that
//! waits on the downstream (`--downstream`) blocks this thread in its `recv` too
//! ([`crate::downstream::Blocking`]): in `single` that stops every client, in the thread
//! and process models only this one.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::sync::Arc;

use nix::sys::socket::{MsgFlags, recv};

use super::{Input, READ_CHUNK, SessionDriver, log_connection_error};
use crate::downstream::Blocking;
use crate::fib::fib;
use crate::server::Config;
use crate::service::{Handoff, Rejection, Work};

/// How a blocking connection computes the fib requests its session hands over.
pub type Compute<'a> = &'a mut dyn FnMut(u32) -> Result<u64, Rejection>;

/// Serves one connection on the calling thread until the client leaves or shutdown
/// shuts the socket's read side. Logs the outcome; never panics on client input.
pub fn serve_blocking(stream: Arc<TcpStream>, peer: SocketAddr, config: &Config) {
    serve_blocking_with(stream, peer, config, None);
}

/// [`serve_blocking`], with fib computed by `compute` instead of inline.
pub fn serve_blocking_with(
    stream: Arc<TcpStream>,
    peer: SocketAddr,
    config: &Config,
    compute: Option<Compute<'_>>,
) {
    tracing::debug!(%peer, "connected");
    match blocking_loop(stream, config, compute) {
        Ok(()) => tracing::debug!(%peer, "closed"),
        Err(e) => log_connection_error(peer, &e),
    }
}

/// A blocking read or write that failed with `WouldBlock` ran into `SO_RCVTIMEO` /
/// `SO_SNDTIMEO`: the idle timeout, reported as `TimedOut`.
fn idle_as_timeout(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock => io::Error::new(io::ErrorKind::TimedOut, "idle timeout"),
        _ => e,
    }
}

fn blocking_loop(
    stream: Arc<TcpStream>,
    config: &Config,
    mut compute: Option<Compute<'_>>,
) -> io::Result<()> {
    // Shared with the shutdown tracker, never duplicated: one descriptor per connection.
    let stream: &TcpStream = &stream;
    stream.set_nodelay(true)?;
    // A client silent for the idle timeout, or not reading its replies for as long,
    // makes the blocking read or write fail, which ends the connection.
    stream.set_read_timeout(config.idle_timeout)?;
    stream.set_write_timeout(config.idle_timeout)?;
    let work = match compute {
        Some(_) => Work::Handed,
        None => Work::Inline,
    };
    let mut driver = SessionDriver::for_connection(config, work);
    let mut input = vec![0u8; READ_CHUNK];
    let mut run = |n: u32| compute.as_mut().map_or_else(|| Ok(fib(n)), |c| c(n));
    let mut downstream = config.downstream.map(Blocking::new);
    loop {
        if driver.is_finished() {
            return Ok(());
        }
        let read = if driver.wants_idle_flush() {
            recv(stream.as_raw_fd(), &mut input, MsgFlags::MSG_DONTWAIT).map_err(io::Error::from)
        } else {
            // About to block: the replies owed go out first.
            write_pending(stream, &mut driver)?;
            { stream }.read(&mut input).map_err(idle_as_timeout)
        };
        let Some(event) = Input::from_read(read)? else {
            continue;
        };
        let mut handed = event.feed(&mut driver, &input, stream.as_fd());
        while let Some(handoff) = handed {
            let next = match (handoff, downstream.as_mut()) {
                (Handoff::Compute(n), _) => {
                    driver.reply(run(n));
                    None
                }
                (Handoff::Wait, Some(downstream)) => {
                    // About to block on the downstream: the replies owed go out first.
                    write_pending(stream, &mut driver)?;
                    let outcome = downstream.call(driver.downstream_line());
                    driver.downstream_replied(outcome, stream.as_fd())
                }
                // A session waits only when the server has a downstream.
                (Handoff::Wait, None) => driver.downstream_replied(Ok(()), stream.as_fd()),
            };
            handed = next.or_else(|| driver.resume(stream.as_fd()));
        }
        if !driver.wants_read() {
            // End of input: the last replies go out before the connection finishes.
            write_pending(stream, &mut driver)?;
        }
    }
}

fn write_pending(mut stream: &TcpStream, driver: &mut SessionDriver) -> io::Result<()> {
    if driver.wants_write() {
        stream
            .write_all(driver.pending())
            .map_err(idle_as_timeout)?;
        let n = driver.pending().len();
        driver.wrote(n);
    }
    Ok(())
}
