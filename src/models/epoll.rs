//! `epoll` — seed 003's selectors server (`selectors.DefaultSelector`, which is epoll
//! on Linux): one thread, readiness callbacks, one state machine per connection.
//!
//! ```text
//! register listener, shutdown socket, (with --offload) the pool's eventfd
//! loop {
//!     epoll_wait()                               sleeps until some socket changed
//!     listener ready  -> accept all, register each client
//!     client ready    -> its PollConn reads / answers / writes until WouldBlock
//!     eventfd ready   -> replies computed by the pool go to their connections
//!     re-arm write interest only for clients with replies still to write
//! }
//! ```
//!
//! It is `select` without the two costs: the interest set lives in the kernel, so a
//! round costs O(ready sockets) instead of O(all sockets), and there is no descriptor
//! ceiling. mio's registration is edge-triggered: the kernel reports a change once, so
//! a connection keeps reading until `WouldBlock` and resumes by itself whatever it
//! paused (see [`PollConn`]). Write interest is armed only while replies are pending,
//! so a connection that is all caught up costs no wake-ups; a client that stops
//! reading stops being read once 64 KiB of replies wait for it (back-pressure).
//!
//! `--offload`: fib runs in a bounded pool (`crate::offload`) and the reply comes back
//! through a `mio::Waker` (an eventfd), aserver.py's `future_notify` socketpair. The
//! connection stops reading until its reply is back, so replies stay in order.
//!
//! `--downstream`: a request that waits is one more state of its connection's
//! [`PollConn`]: its socket to the downstream is registered in the same epoll set
//! (token: the client's, with the `DOWNSTREAM` bit set), so the loop sleeps in one
//! `epoll_wait` for clients and downstream alike, and a thousand waiting requests cost
//! a thousand sockets and no thread. Their timeouts are checked on a
//! `DEADLINE_GRID` (10 ms) while any call is in progress.
//!
//! Primitives (docs/PRIMITIVES.md): I/O multiplexing by readiness (epoll); with
//! `--offload`, a thread pool whose done-callback wakes the loop through an eventfd.
//!
//! Good at: thousands of connections on one thread; the design of nginx, redis and
//! every async runtime's reactor. Bad at: CPU-bound requests without `--offload` (the
//! one thread computes while every other client waits) and using more than one core.
//! Prediction: with one thread it matches `tokio-current` on I/O-bound work, and below
//! the threaded models at n=20 with 2 clients unless `--offload` spreads fib over the
//! cores.
//!
//! Cost model (`CostModel::EventLoop(Readiness::Epoll)`, `src/models/cost.rs`):
//! `X = min(c / (cross + epoll_wait + fib(n)), 1 / (socket calls + epoll_wait + fib(n)))`;
//! with `--offload`, fib leaves the loop for the pool and the bound is the loop's socket
//! calls plus the hand-off, or the pool's CPUs.
//!
//! One connection costs: one descriptor, one registration in the kernel's epoll set,
//! and its small connection state (buffers only while bytes are in flight). Per round:
//! `epoll_wait` returns only the ready sockets: O(ready), however many are idle.

use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd as _, AsRawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::connection::Turns;
use crate::connection::{PollConn, READ_CHUNK, accept_pending, log_connection_error};
use crate::offload::Offload;
use crate::probe::gone_for;
use crate::server::Config;
use crate::service::{Rejection, Work};
use crate::shutdown::{ConnectionGuard, DrainStep, Shutdown};

const LISTENER: Token = Token(0);
const SHUTDOWN: Token = Token(1);
/// The offload pool's wake-up: replies are waiting in `Completions`.
const POOL_DONE: Token = Token(2);
const FIRST_CLIENT: usize = 3;
/// Set in the token of a client's downstream socket: the event drives that client.
const DOWNSTREAM: usize = 1 << 62;
/// How often the downstream calls' deadlines are looked at while any is in progress:
/// a timeout is answered at most this late.
pub(crate) const DEADLINE_GRID: Duration = Duration::from_millis(10);

/// Replies computed by the offload pool, waiting for the loop to pick them up.
type Completions = Arc<Mutex<Vec<(Token, Result<u64, Rejection>)>>>;

struct Client {
    conn: PollConn,
    /// What the kernel is asked to report for it now.
    interest: Interest,
    _live: ConnectionGuard,
}

pub fn serve(listener: TcpListener, config: &Config, shutdown: Shutdown) -> io::Result<()> {
    serve_when_ready(listener, config, shutdown, || {})
}

/// [`serve`], calling `ready` once the loop holds every resource it needs (its epoll
/// instance, its waker, its pool) and before it accepts anyone: `per-core` waits for
/// all its loops to be ready, so a flood taken by one cannot starve another's set-up
/// of descriptors.
pub fn serve_when_ready(
    listener: TcpListener,
    config: &Config,
    shutdown: Shutdown,
    ready: impl FnOnce(),
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut poll = Poll::new()?;
    let registry = poll.registry();
    registry.register(
        &mut SourceFd(&listener.as_raw_fd()),
        LISTENER,
        Interest::READABLE,
    )?;
    registry.register(
        &mut SourceFd(&shutdown.wake_fd().as_raw_fd()),
        SHUTDOWN,
        Interest::READABLE,
    )?;
    let pool = Offload::from_config(config)?;
    let pool_done = Arc::new(Waker::new(registry, POOL_DONE)?);
    let completions: Completions = Arc::default();
    let work = if pool.is_some() {
        Work::Handed
    } else {
        Work::Inline
    };

    let mut clients: HashMap<Token, Client> = HashMap::new();
    let mut next_token = FIRST_CLIENT;
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; READ_CHUNK];
    // Accepting stopped on a transient error (out of descriptors): the edge-triggered
    // listener will not report the clients still waiting, so poll for them.
    let mut retry_accept = false;
    let mut turns = Turns::new(config.grace, config.idle_timeout);
    // Downstream calls may be in progress: look at their deadlines on the grid.
    let mut calls_open = false;
    let mut next_deadline_look = Instant::now();
    ready();
    loop {
        let now = Instant::now();
        let mut touched = Vec::new();
        if calls_open && now >= next_deadline_look {
            calls_open = false;
            for (token, client) in &clients {
                match client.conn.downstream_deadline() {
                    Some(deadline) if deadline <= now => touched.push(*token),
                    Some(_) => calls_open = true,
                    None => {}
                }
            }
            next_deadline_look = now + DEADLINE_GRID;
        }
        if let Some(limit) = turns.sweep_due(now) {
            clients.retain(|_, client| {
                let expired = client.conn.idle_expired(now, Some(limit));
                if expired {
                    let fd = client.conn.stream().as_raw_fd();
                    let _ = poll.registry().deregister(&mut SourceFd(&fd));
                }
                !expired
            });
        }
        // Accepting paused after a failure (out of descriptors): the edge-triggered
        // listener will not report the waiting clients again, so wake up to retry.
        let retry_in = retry_accept.then(|| shutdown.accept_paused_for(now).unwrap_or_default());
        let retry_in = match calls_open || !touched.is_empty() {
            true => Some(retry_in.map_or(DEADLINE_GRID, |r| r.min(DEADLINE_GRID))),
            false => retry_in,
        };
        let (step, timeout) = turns.step(&shutdown, clients.len(), now, retry_in);
        match step {
            // The SHUTDOWN event below stops accepting and every client's reads.
            DrainStep::Serving | DrainStep::Draining { .. } => {}
            DrainStep::Over => break,
        }
        let timeout = match touched.is_empty() {
            true => timeout,
            false => Some(Duration::ZERO), // expired calls to answer now
        };
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let mut accept_now = retry_accept && !shutdown.is_triggered();
        for event in &events {
            match event.token() {
                LISTENER if !shutdown.is_triggered() => accept_now = true,
                LISTENER => {}
                SHUTDOWN => {
                    // Stop accepting, and stop every client's reads: each answers what it
                    // has, writes what it owes, and finishes.
                    let _ = poll
                        .registry()
                        .deregister(&mut SourceFd(&listener.as_raw_fd()));
                    let _ = poll
                        .registry()
                        .deregister(&mut SourceFd(&shutdown.wake_fd().as_raw_fd()));
                    for (token, client) in &mut clients {
                        client.conn.stop_reading();
                        touched.push(*token);
                    }
                }
                POOL_DONE => {
                    for (token, reply) in completions
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .drain(..)
                    {
                        if let Some(client) = clients.get_mut(&token) {
                            client.conn.reply(reply);
                            touched.push(token);
                        }
                    }
                }
                Token(t) if t & DOWNSTREAM != 0 => {
                    // The client's downstream socket moved: its PollConn tries it.
                    touched.push(Token(t & !DOWNSTREAM));
                }
                token => {
                    if let Some(client) = clients.get_mut(&token) {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            client.conn.readable();
                        }
                        if event.is_writable() || event.is_error() {
                            client.conn.writable();
                        }
                        touched.push(token);
                    }
                }
            }
        }
        if accept_now {
            retry_accept = accept_pending(
                &listener,
                &shutdown,
                config.max_conns,
                |stream, peer, live| {
                    let token = Token(next_token);
                    next_token += 1;
                    let conn = match PollConn::new(stream, peer, config, work) {
                        Ok(conn) => conn,
                        Err(e) => return log_connection_error(peer, &e),
                    };
                    let fd = conn.stream().as_raw_fd();
                    if let Err(e) =
                        poll.registry()
                            .register(&mut SourceFd(&fd), token, Interest::READABLE)
                    {
                        return log_connection_error(peer, &e);
                    }
                    // `live` is counted only: this loop stops its own clients' reads at shutdown.
                    clients.insert(
                        token,
                        Client {
                            conn,
                            interest: Interest::READABLE,
                            _live: live,
                        },
                    );
                    touched.push(token);
                },
            )?;
        }
        for token in touched {
            let Some(client) = clients.get_mut(&token) else {
                continue;
            };
            let done = match client.conn.drive(&mut scratch) {
                Ok(Some(n)) => {
                    // Handed to the pool (only with --offload); the reply wakes us.
                    if let Some(pool) = &pool {
                        let (completions, pool_done) = (completions.clone(), pool_done.clone());
                        let gone = gone_for(n, client.conn.stream().as_fd());
                        pool.submit(n, gone, move |reply| {
                            completions
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push((token, reply));
                            let _ = pool_done.wake();
                        });
                    }
                    false
                }
                Ok(None) => client.conn.is_finished(),
                Err(e) => {
                    log_connection_error(client.conn.peer, &e);
                    true
                }
            };
            if done {
                let fd = client.conn.stream().as_raw_fd();
                let _ = poll.registry().deregister(&mut SourceFd(&fd));
                tracing::debug!(peer = %client.conn.peer, "closed");
                clients.remove(&token);
                continue;
            }
            // Both ways, edge-triggered: the connect's end (writable), then the reply.
            if let Some(fd) = client.conn.take_opened_downstream()
                && let Err(e) = poll.registry().register(
                    &mut SourceFd(&fd),
                    Token(token.0 | DOWNSTREAM),
                    Interest::READABLE | Interest::WRITABLE,
                )
            {
                // Unwatched, its request would wait for ever: give the client up.
                log_connection_error(client.conn.peer, &e);
                let fd = client.conn.stream().as_raw_fd();
                let _ = poll.registry().deregister(&mut SourceFd(&fd));
                clients.remove(&token);
                continue;
            }
            calls_open |= client.conn.downstream_deadline().is_some();
            let wanted = if client.conn.wants_write() {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if wanted != client.interest {
                let fd = client.conn.stream().as_raw_fd();
                poll.registry()
                    .reregister(&mut SourceFd(&fd), token, wanted)?;
                client.interest = wanted;
            }
        }
    }
    // Dropping the pool stops its workers; dropping the clients closes their sockets.
    drop(pool);
    Ok(())
}
