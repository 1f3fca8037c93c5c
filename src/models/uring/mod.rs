//! `uring` — completion-based I/O on one thread: no seed program (the seeds stop at
//! readiness, `select` and `epoll` through `selectors`). The loop tells the kernel what
//! to do — accept, receive, send — and is told when each is *done*, instead of being
//! told that a socket is *ready* and then doing it itself with a system call. The loop is
//! built by hand on the `io-uring` crate, as `coroutines` builds its executor: the model
//! exists to show how completions work.
//!
//! ```text
//!   this thread                        kernel
//!   ───────────                        ──────
//!   push SQEs ──► submission queue ──► accept (multishot: one SQE, a CQE per client)
//!                                      recv   (multishot, into a buffer the kernel
//!                                              picks from the provided-buffer ring)
//!                                      send   (the owed replies, from our memory)
//!   io_uring_enter(submit all, wait ≥1)  one system call per turn, however many SQEs
//!   reap CQEs ◄── completion queue ◄── user_data says which operation, on which slot
//!
//! loop {
//!     submit every SQE queued last turn and wait for one completion (or a timeout)
//!     for each CQE:
//!         accept -> a new connection: arm its multishot recv
//!         recv   -> copy the bytes out, hand the buffer back to the ring, answer them
//!                   (the shared SessionDriver), queue one send of the owed replies
//!         send   -> the rest, or the next replies; a finished client is closed
//! }
//! ```
//!
//! What changes against `epoll`: per request, `epoll` makes three system calls
//! (`epoll_wait`, `read`, `write`) and the kernel copies the bytes in the last two;
//! here a turn's whole batch of sends and re-arms goes in with the one `io_uring_enter`
//! that also waits, and receives need no call at all (multishot). Idle connections hold
//! no receive buffer: the kernel takes one from the shared ring only when bytes arrive
//! (the `connections` experiment measures what a connection costs).
//!
//! Cancellation: a client that resets ends its receive with an error; the loop cancels
//! whatever else it has in flight on that socket (`IORING_OP_ASYNC_CANCEL`) and frees
//! its slot only when the kernel has returned every operation, so no completion ever
//! lands on a reused slot. Shutdown cancels the accept, shuts every client's read side
//! (their receives end; the owed replies are sent), then drains as every model does.
//!
//! `--offload`: fib runs in the bounded pool (`crate::offload`); a finished reply wakes
//! the loop through a socket pair whose receive is one more operation in the ring.
//!
//! `--downstream`: a waiting request's socket to the downstream is driven by the same
//! state machine as the readiness loops' ([`crate::downstream::Nonblocking`]), and
//! watched from this ring with a one-shot `IORING_OP_POLL_ADD`: readiness inside the
//! completion loop, one more operation per wait and no extra system call (a connect,
//! send and receive as ring operations would save the socket calls too; not built).
//! Timeouts are looked at on a 10 ms grid while any call is in progress.
//!
//! Primitives (docs/PRIMITIVES.md): completion-based I/O (the kernel finishes the
//! operation, then tells); with `--offload`, a thread pool whose done-callback wakes
//! the loop through a socket pair.
//!
//! Good at: many connections and many small requests per turn — the system calls per
//! request fall as the batch grows, which is where io_uring wins. Bad at: one client at a
//! time (a turn has one request: one `io_uring_enter` per reply, as `epoll_wait`), CPU-bound
//! requests without `--offload` (the one thread computes while everyone waits), and
//! portability: Linux 6.0 or later, and kernels or sandboxes that refuse io_uring
//! (`kernel.io_uring_disabled`, seccomp) refuse this model — it says so and exits.
//!
//! Prediction: with one client, as `epoll` (a turn holds one request; the wake-up
//! between CPUs dominates both). With many clients, ahead of `epoll` by what the system
//! calls it saves per request — two socket calls, minus a share of one `io_uring_enter` —
//! and only where the loop's CPU, not the wake-up, is the bottleneck.
//!
//! Cost model (`CostModel::EventLoop(Readiness::Completion)`, `src/models/cost.rs`): the
//! event loop's, with `io_uring_enter` in place of `epoll_wait` (taken at its calibrated
//! cost, as this loop's wait is not calibrated apart).
//!
//! One connection costs: one descriptor, one armed multishot receive in the kernel, and
//! its small state here (buffers only while bytes are in flight).

mod downstream;
mod ring;

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use io_uring::types::{Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};
use nix::libc;

use crate::connection::Turns;
use crate::connection::{Activity, SessionDriver, log_connection_error};
use crate::downstream::Nonblocking;
use crate::models::epoll::DEADLINE_GRID;
use crate::offload::Offload;
use crate::probe::gone_for;
use crate::server::Config;
use crate::service::{Rejection, Work};
use crate::shutdown::{ConnectionGuard, DrainStep, Shutdown};
use downstream::{advance, watch_downstream};
pub use ring::available;
use ring::{
    ACCEPT, BUFFER_GROUP, BUFFER_SIZE, BUFFERS, BufRing, CANCEL, DOWNSTREAM, KIND, POOL_DONE, RECV,
    RING_ENTRIES, SEND, SHUTDOWN, new_ring, refused,
};

/// Replies (and received bytes not yet answered) that may pile up for one client before
/// the loop stops receiving from it, as the readiness loops do: back-pressure.
const HIGH_WATER: usize = 64 * 1024;

/// One client.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Unique for the server's life: a reply from the pool finds its connection by it,
    /// never a later one that took the same slot.
    id: u64,
    driver: SessionDriver,
    /// Bytes received that the driver could not take yet (a handed request's reply is
    /// awaited): the multishot receive keeps delivering.
    inbox: Vec<u8>,
    /// The bytes of the send in flight: they stay put until its completion.
    sending: Vec<u8>,
    sent: usize,
    recv_armed: bool,
    /// A cancel was asked for the receive (back-pressure); it is still armed until its
    /// last completion.
    recv_cancelling: bool,
    send_armed: bool,
    /// End of input seen (the client's FIN, or our shutdown of the read side).
    eof: bool,
    /// No more receives: shutdown.
    read_stopped: bool,
    /// Being closed: freed once the kernel has returned every operation on it.
    closing: bool,
    activity: Activity,
    /// `--downstream`: its calls, and the polls on its socket still in the kernel (one
    /// at a time; a cancelled one may overlap the next call's until it comes back).
    /// Boxed: a connection that never waits (no `--downstream`) carries one pointer,
    /// not the call's whole state (issue 45).
    downstream: Option<Box<Nonblocking>>,
    polls_armed: u32,
    poll_cancelling: bool,
    _live: ConnectionGuard,
}

impl Conn {
    fn owed(&self) -> usize {
        self.driver.pending().len() + (self.sending.len() - self.sent) + self.inbox.len()
    }
}

/// Replies computed by the offload pool: (connection id, slot, reply).
type Completions = Arc<Mutex<Vec<(u64, usize, Result<u64, Rejection>)>>>;

struct Loop<'a> {
    ring: IoUring,
    config: &'a Config,
    shutdown: &'a Shutdown,
    listener: &'a TcpListener,
    slots: Vec<Option<Conn>>,
    free: Vec<usize>,
    open: usize,
    next_id: u64,
    work: Work,
    pool: Option<Offload>,
    completions: Completions,
    /// The pool's wake-up: its workers write a byte to `notify`, the ring receives it
    /// on `wakeup` into `wakeup_byte`.
    notify: Arc<UnixStream>,
    wakeup: UnixStream,
    wakeup_byte: Box<[u8; 64]>,
    accept_armed: bool,
    /// Connections whose bytes end without a newline: after this turn, ask the socket
    /// whether more is coming (the seeds' unterminated requests).
    idle_flush: Vec<usize>,
    /// Some downstream call may be in progress: its deadline is looked at on the grid.
    calls_open: bool,
    reaped: Vec<(u64, i32, u32)>,
}

pub fn serve(listener: TcpListener, config: &Config, shutdown: Shutdown) -> io::Result<()> {
    // Declared before the ring so it is dropped after it: the kernel may write into
    // these buffers until the ring is gone.
    let mut buffers = BufRing::allocate(BUFFERS, BUFFER_SIZE)?;
    let ring = new_ring(RING_ENTRIES).map_err(refused)?;
    buffers.register(&ring).map_err(refused)?;
    let pool = Offload::from_config(config)?;
    let (notify, wakeup) = UnixStream::pair()?;
    // A worker never waits on the loop: a full pair means a wake-up is pending already.
    notify.set_nonblocking(true)?;
    let mut lp = Loop {
        ring,
        config,
        shutdown: &shutdown,
        listener: &listener,
        slots: Vec::new(),
        free: Vec::new(),
        open: 0,
        next_id: 0,
        work: if pool.is_some() {
            Work::Handed
        } else {
            Work::Inline
        },
        pool,
        completions: Arc::default(),
        notify: Arc::new(notify),
        wakeup,
        wakeup_byte: Box::new([0; 64]),
        accept_armed: false,
        idle_flush: Vec::new(),
        calls_open: false,
        reaped: Vec::with_capacity(RING_ENTRIES as usize * 2),
    };
    let result = lp.run(&mut buffers);
    let ended = lp.end(&mut buffers);
    tracing::debug!("io_uring loop ended");
    result.and(ended)
}

impl Loop<'_> {
    fn run(&mut self, buffers: &mut BufRing) -> io::Result<()> {
        self.push(
            opcode::PollAdd::new(Fd(self.shutdown.wake_fd().as_raw_fd()), libc::POLLIN as u32)
                .build()
                .user_data(SHUTDOWN),
        )?;
        if self.pool.is_some() {
            self.arm_wakeup()?;
        }
        let mut turns = Turns::new(self.config.grace, self.config.idle_timeout);
        let mut next_deadline_look = Instant::now();
        loop {
            let now = Instant::now();
            if self.calls_open && now >= next_deadline_look {
                self.calls_open = false;
                for slot in 0..self.slots.len() {
                    let deadline = self.slots[slot]
                        .as_ref()
                        .and_then(|c| c.downstream.as_ref()?.deadline());
                    match deadline {
                        // Past it: the call times out in pump, answered ERR.
                        Some(at) if at <= now => self.pump(slot)?,
                        Some(_) => self.calls_open = true,
                        None => {}
                    }
                }
                next_deadline_look = now + DEADLINE_GRID;
            }
            if let Some(limit) = turns.sweep_due(now) {
                for slot in 0..self.slots.len() {
                    let expired = self.slots[slot].as_ref().is_some_and(|c| {
                        !c.closing
                            && !c.driver.awaiting_reply()
                            && c.activity.expired(now, Some(limit))
                    });
                    if expired {
                        tracing::debug!("idle past --idle-timeout; closed");
                        self.close(slot)?;
                    }
                }
            }
            let paused = self.shutdown.accept_paused_for(now);
            if !self.accept_armed && !self.shutdown.is_triggered() && paused.is_none() {
                self.push(
                    opcode::AcceptMulti::new(Fd(self.listener.as_raw_fd()))
                        .flags(libc::SOCK_CLOEXEC)
                        .build()
                        .user_data(ACCEPT),
                )?;
                self.accept_armed = true;
            }
            let bound = match self.calls_open {
                true => Some(paused.map_or(DEADLINE_GRID, |p| p.min(DEADLINE_GRID))),
                false => paused,
            };
            let (step, timeout) = turns.step(self.shutdown, self.open, now, bound);
            if step == DrainStep::Over {
                return Ok(());
            }
            self.wait(timeout)?;
            self.reap();
            for i in 0..self.reaped.len() {
                let (user_data, result, flags) = self.reaped[i];
                let slot = (user_data & !KIND) as usize;
                match user_data & KIND {
                    ACCEPT => self.on_accept(result, flags)?,
                    RECV => self.on_recv(slot, result, flags, buffers)?,
                    SEND => self.on_send(slot, result)?,
                    SHUTDOWN => self.on_shutdown()?,
                    POOL_DONE => self.on_pool_done(result)?,
                    DOWNSTREAM => self.on_downstream(slot)?,
                    _ => {} // CANCEL
                }
            }
            self.flush_idle()?;
        }
    }

    /// One system call: submits every queued entry and waits for a completion, or for
    /// `timeout`.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let waited = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(timeout) => {
                let ts = Timespec::from(timeout);
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match waited {
            Ok(_) => Ok(()),
            // The timeout passed; a signal; or the completion queue is full (reap first).
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Takes every completion off the queue into `reaped`.
    fn reap(&mut self) {
        self.reaped.clear();
        self.reaped.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
    }

    /// Queues `entry`, submitting what is queued first if the submission queue is full.
    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every buffer an entry points to outlives its operation: a send's
            // bytes stay in its connection's `sending` (untouched while `send_armed`,
            // the connection freed only after the completion); the wake-up byte is the
            // loop's own; receives use the buffer ring, which outlives the io_uring.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn arm_wakeup(&mut self) -> io::Result<()> {
        let entry = opcode::Recv::new(
            Fd(self.wakeup.as_raw_fd()),
            self.wakeup_byte.as_mut_ptr(),
            self.wakeup_byte.len() as u32,
        )
        .build()
        .user_data(POOL_DONE);
        self.push(entry)
    }

    fn on_accept(&mut self, result: i32, flags: u32) -> io::Result<()> {
        if !cqueue::more(flags) {
            self.accept_armed = false;
        }
        if result < 0 {
            let e = io::Error::from_raw_os_error(-result);
            return match -result {
                libc::ECANCELED => Ok(()),
                _ if crate::accept::is_transient(&e) => {
                    // Re-armed once the pause is over (the loop's timeout wakes it).
                    self.shutdown.accept_failed(&e);
                    if self.accept_armed {
                        self.push(opcode::AsyncCancel::new(ACCEPT).build().user_data(CANCEL))?;
                    }
                    Ok(())
                }
                _ => Err(e),
            };
        }
        // SAFETY: the kernel created this descriptor for this accept and gave it to us
        // alone; the TcpStream becomes its only owner.
        let stream = unsafe { TcpStream::from_raw_fd(result) };
        self.shutdown.accept_recovered();
        let Ok(peer) = stream.peer_addr() else {
            return Ok(()); // gone already
        };
        if self.shutdown.is_triggered() {
            return Ok(());
        }
        let Some(live) = self
            .shutdown
            .admit(stream.as_fd(), peer, self.config.max_conns, None)
        else {
            return Ok(());
        };
        if let Err(e) = stream.set_nodelay(true) {
            log_connection_error(peer, &e);
            return Ok(());
        }
        tracing::debug!(%peer, "connected");
        let conn = Conn {
            _live: live,
            driver: SessionDriver::for_connection(self.config, self.work),
            stream,
            peer,
            id: self.next_id,
            inbox: Vec::new(),
            sending: Vec::new(),
            sent: 0,
            recv_armed: false,
            recv_cancelling: false,
            send_armed: false,
            eof: false,
            read_stopped: false,
            closing: false,
            activity: Activity::new(),
            downstream: self
                .config
                .downstream
                .map(|d| Box::new(Nonblocking::new(d))),
            polls_armed: 0,
            poll_cancelling: false,
        };
        self.next_id += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(conn);
                slot
            }
            None => {
                self.slots.push(Some(conn));
                self.slots.len() - 1
            }
        };
        self.open += 1;
        self.pump(slot)
    }

    fn on_recv(
        &mut self,
        slot: usize,
        result: i32,
        flags: u32,
        buffers: &mut BufRing,
    ) -> io::Result<()> {
        let Some(conn) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return Ok(());
        };
        if !cqueue::more(flags) {
            conn.recv_armed = false;
            conn.recv_cancelling = false;
        }
        if let Some(bid) = cqueue::buffer_select(flags) {
            if result > 0 && !conn.closing {
                conn.inbox
                    .extend_from_slice(buffers.bytes(bid, result as usize));
                conn.activity.touch();
            }
            buffers.provide(bid);
        }
        match result {
            0 => conn.eof = true,
            1.. => {}
            // All buffers in use (re-armed below), or we cancelled it.
            _ if matches!(-result, libc::ENOBUFS | libc::ECANCELED) => {}
            _ => {
                log_connection_error(conn.peer, &io::Error::from_raw_os_error(-result));
                return self.close(slot);
            }
        }
        self.pump(slot)
    }

    fn on_send(&mut self, slot: usize, result: i32) -> io::Result<()> {
        let Some(conn) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return Ok(());
        };
        conn.send_armed = false;
        if result < 0 {
            if -result != libc::ECANCELED {
                log_connection_error(conn.peer, &io::Error::from_raw_os_error(-result));
            }
            return self.close(slot);
        }
        conn.sent += result as usize;
        conn.activity.touch();
        self.pump(slot)
    }

    /// Shutdown: stop accepting; shut every client's read side, so its receive ends
    /// with end of input and it answers what it has, sends what it owes, and finishes.
    fn on_shutdown(&mut self) -> io::Result<()> {
        if self.accept_armed {
            self.push(opcode::AsyncCancel::new(ACCEPT).build().user_data(CANCEL))?;
        }
        for slot in 0..self.slots.len() {
            if let Some(conn) = self.slots[slot].as_mut() {
                conn.read_stopped = true;
                let _ = conn.stream.shutdown(std::net::Shutdown::Read);
                self.pump(slot)?;
            }
        }
        Ok(())
    }

    /// A poll on a downstream socket came back (ready, or cancelled): move its
    /// connection on.
    fn on_downstream(&mut self, slot: usize) -> io::Result<()> {
        let Some(conn) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return Ok(());
        };
        conn.polls_armed = conn.polls_armed.saturating_sub(1);
        conn.poll_cancelling &= conn.polls_armed > 0;
        self.pump(slot)
    }

    fn on_pool_done(&mut self, result: i32) -> io::Result<()> {
        let done: Vec<_> = self
            .completions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for (id, slot, reply) in done {
            if let Some(conn) = self.slots.get_mut(slot).and_then(Option::as_mut)
                && conn.id == id
            {
                conn.driver.reply(reply);
                self.pump(slot)?;
            }
        }
        match result {
            // The pair closed: only at the end.
            0 => Ok(()),
            _ => self.arm_wakeup(),
        }
    }

    /// Moves a connection on as far as it can: feed it what it received, hand a fib to
    /// the pool, queue a send, re-arm or pause its receive, close it when done.
    fn pump(&mut self, slot: usize) -> io::Result<()> {
        let Some(conn) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return Ok(());
        };
        if conn.closing {
            return self.free_if_done(slot);
        }
        if let Some(n) = advance(conn, slot, &mut self.idle_flush, None) {
            self.hand(slot, n);
        }
        let Some(conn) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return Ok(());
        };
        self.calls_open |= watch_downstream(conn, slot, &mut self.ring)?;
        let backlog = conn.owed();
        let recv = conn.recv_armed && !conn.recv_cancelling && backlog >= HIGH_WATER;
        let rearm = !conn.recv_armed && !conn.eof && !conn.read_stopped && backlog < HIGH_WATER;
        if !conn.send_armed {
            if conn.sent == conn.sending.len() && conn.driver.wants_write() {
                conn.sending.clear();
                conn.sending.extend_from_slice(conn.driver.pending());
                conn.sent = 0;
                let n = conn.sending.len();
                conn.driver.wrote(n);
            }
            if conn.sent < conn.sending.len() {
                let rest = &conn.sending[conn.sent..];
                let entry = opcode::Send::new(
                    Fd(conn.stream.as_raw_fd()),
                    rest.as_ptr(),
                    rest.len().min(u32::MAX as usize) as u32,
                )
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(SEND | slot as u64);
                conn.send_armed = true;
                self.push(entry)?;
            }
        }
        let Some(conn) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return Ok(());
        };
        if recv {
            conn.recv_cancelling = true;
            self.push(
                opcode::AsyncCancel::new(RECV | slot as u64)
                    .build()
                    .user_data(CANCEL),
            )?;
        } else if rearm {
            conn.recv_armed = true;
            let entry = opcode::RecvMulti::new(Fd(conn.stream.as_raw_fd()), BUFFER_GROUP)
                .build()
                .user_data(RECV | slot as u64);
            self.push(entry)?;
        }
        let Some(conn) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return Ok(());
        };
        if conn.driver.is_finished() && !conn.send_armed && conn.sent == conn.sending.len() {
            tracing::debug!(peer = %conn.peer, "closed");
            return self.close(slot);
        }
        Ok(())
    }

    /// Gives fib(n) to the pool; the reply comes back through the wake-up pair.
    fn hand(&mut self, slot: usize, n: u32) {
        let (Some(pool), Some(conn)) = (&self.pool, self.slots[slot].as_ref()) else {
            return;
        };
        let (completions, notify, id) = (self.completions.clone(), self.notify.clone(), conn.id);
        let gone = gone_for(n, conn.stream.as_fd());
        pool.submit(n, gone, move |reply| {
            completions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((id, slot, reply));
            let _ = io::Write::write(&mut &*notify, &[1]);
        });
    }

    /// Bytes without a newline ended a turn: if the socket has nothing more right now
    /// (a peek that does not wait), they are one request.
    fn flush_idle(&mut self) -> io::Result<()> {
        let waiting = std::mem::take(&mut self.idle_flush);
        for &slot in &waiting {
            let Some(conn) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if conn.closing || !conn.inbox.is_empty() || !conn.driver.wants_idle_flush() {
                continue;
            }
            let mut byte = [0u8; 1];
            let more = nix::sys::socket::recv(
                conn.stream.as_raw_fd(),
                &mut byte,
                nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            );
            if matches!(more, Err(nix::errno::Errno::EAGAIN)) {
                let first = conn.driver.on_idle(conn.stream.as_fd());
                if let Some(n) = advance(conn, slot, &mut self.idle_flush, first) {
                    self.hand(slot, n);
                }
                self.pump(slot)?;
            }
        }
        self.idle_flush = waiting;
        self.idle_flush.clear();
        Ok(())
    }

    /// Cancels what the kernel still has of the connection's; it is freed (and its
    /// socket closed) once every operation has come back.
    fn close(&mut self, slot: usize) -> io::Result<()> {
        let Some(conn) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return Ok(());
        };
        if !conn.closing {
            conn.closing = true;
            let (recv, send, polls) = (conn.recv_armed, conn.send_armed, conn.polls_armed);
            if recv {
                self.push(
                    opcode::AsyncCancel::new(RECV | slot as u64)
                        .build()
                        .user_data(CANCEL),
                )?;
            }
            if send {
                self.push(
                    opcode::AsyncCancel::new(SEND | slot as u64)
                        .build()
                        .user_data(CANCEL),
                )?;
            }
            if polls > 0 {
                self.push(
                    opcode::AsyncCancel::new(DOWNSTREAM | slot as u64)
                        .build()
                        .user_data(CANCEL),
                )?;
            }
        }
        self.free_if_done(slot)
    }

    fn free_if_done(&mut self, slot: usize) -> io::Result<()> {
        let done = self.slots[slot]
            .as_ref()
            .is_some_and(|c| c.closing && !c.recv_armed && !c.send_armed && c.polls_armed == 0);
        if done {
            self.slots[slot] = None;
            self.free.push(slot);
            self.open -= 1;
        }
        Ok(())
    }

    /// After the drain (or an error): cancel everything still in flight and wait a
    /// moment for the kernel to return it, so no operation outlives the memory it uses;
    /// then take the buffer ring back.
    fn end(&mut self, buffers: &mut BufRing) -> io::Result<()> {
        for slot in 0..self.slots.len() {
            self.close(slot)?;
        }
        if self.accept_armed {
            self.push(opcode::AsyncCancel::new(ACCEPT).build().user_data(CANCEL))?;
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while (self.open > 0 || self.accept_armed) && Instant::now() < deadline {
            self.wait(Some(Duration::from_millis(50)))?;
            self.reap();
            for i in 0..self.reaped.len() {
                let (user_data, result, flags) = self.reaped[i];
                let slot = (user_data & !KIND) as usize;
                match user_data & KIND {
                    ACCEPT if !cqueue::more(flags) => self.accept_armed = false,
                    RECV => self.on_recv(slot, result, flags, buffers)?,
                    SEND => self.on_send(slot, result)?,
                    DOWNSTREAM => self.on_downstream(slot)?,
                    _ => {}
                }
            }
        }
        if buffers.registered
            && self
                .ring
                .submitter()
                .unregister_buf_ring(BUFFER_GROUP)
                .is_ok()
        {
            buffers.registered = false;
        }
        // Dropping the pool stops its workers; the slots' sockets close with the loop.
        self.pool = None;
        Ok(())
    }
}
