//! The reactor under the coroutine executor: which task waits for which socket or
//! time, and `Async<T>`, the seed's `AsyncSocket`: a non-blocking socket whose
//! operations park the task on `WouldBlock`. With `--downstream`, a waiting request's
//! socket to the downstream is one more `Async<TcpStream>` here, and its timeout one
//! more timer: the task yields on the downstream's `recv` like on its client's.

use std::collections::{BTreeMap, HashMap};
use std::future::{Future, poll_fn};
use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::lock;
use crate::connection::{Activity, AsyncStream};
use crate::downstream::{AsyncDownstream, AsyncNet, connect_nonblocking};

/// Sleeps for `duration` without holding up the executor: the reactor wakes the task
/// when the time is up (aserver.py's scheduler keeps sleeping tasks in a time-ordered
/// queue the same way). Dropped before it is due (a downstream that answered in time),
/// it takes its timer back, so finished waits leave nothing behind.
pub(super) fn sleep(reactor: &Reactor, duration: Duration) -> Sleep<'_> {
    Sleep {
        reactor,
        deadline: Instant::now() + duration,
        key: None,
    }
}

pub(super) struct Sleep<'a> {
    reactor: &'a Reactor,
    deadline: Instant,
    /// Its entry in the reactor's timers, once it has waited.
    key: Option<(Instant, u64)>,
}

impl Future for Sleep<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            if let Some(key) = self.key.take() {
                lock(&self.reactor.timers).remove(&key);
            }
            return Poll::Ready(());
        }
        let key = match self.key {
            Some(key) => key,
            None => {
                let id = self.reactor.next_timer_id.fetch_add(1, Ordering::Relaxed);
                let key = (self.deadline, id);
                self.key = Some(key);
                key
            }
        };
        lock(&self.reactor.timers).insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Sleep<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.reactor.timers).remove(&key);
        }
    }
}

// ---------------------------------------------------------------------------------
// The reactor: which task waits for which socket.

#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

#[derive(Default)]
pub(super) struct Waiting {
    reader: Option<Waker>,
    writer: Option<Waker>,
    /// When this socket last woke its task, for `--idle-timeout` (the one clock every
    /// event loop keeps; see `crate::connection::idle`).
    activity: Activity,
    /// Idle past the timeout: its next read or write fails with `TimedOut`.
    timed_out: bool,
    /// The listener waits for clients, not for bytes: never idle.
    never_idle: bool,
}

pub(super) struct Reactor {
    pub(super) registry: mio::Registry,
    pub(super) waiting: Mutex<HashMap<Token, Waiting>>,
    next_token: AtomicUsize,
    /// Set at shutdown: every read returns end of input from then on.
    reads_stopped: AtomicBool,
    /// Sleeping tasks ([`sleep`]) by (deadline, id): the earliest first.
    timers: Mutex<BTreeMap<(Instant, u64), Waker>>,
    next_timer_id: AtomicU64,
}

impl Reactor {
    /// A reactor on `registry`; tokens below `first_token` are the executor's own.
    pub(super) fn new(registry: mio::Registry, first_token: usize) -> Reactor {
        Reactor {
            registry,
            waiting: Mutex::new(HashMap::new()),
            next_token: AtomicUsize::new(first_token),
            reads_stopped: AtomicBool::new(false),
            timers: Mutex::new(BTreeMap::new()),
            next_timer_id: AtomicU64::new(0),
        }
    }

    /// The earliest timer's deadline, for the executor's wait.
    pub(super) fn next_timer(&self) -> Option<Instant> {
        lock(&self.timers).keys().next().map(|(at, _)| *at)
    }

    /// Wakes every task whose time has come.
    pub(super) fn fire_timers(&self, now: Instant) {
        let due = {
            let mut timers = lock(&self.timers);
            let later = timers.split_off(&(now, u64::MAX));
            std::mem::replace(&mut *timers, later)
        };
        due.into_values().for_each(Waker::wake);
    }

    /// Shutdown: ends every read, waking the tasks parked in one.
    pub(super) fn stop_reads(&self) {
        self.reads_stopped.store(true, Ordering::SeqCst);
        let readers: Vec<Waker> = lock(&self.waiting)
            .values_mut()
            .filter_map(|w| w.reader.take())
            .collect();
        readers.into_iter().for_each(Waker::wake);
    }

    /// `--idle-timeout`: every socket whose task has been parked on it for `limit`
    /// fails its next read or write with `TimedOut`; its tasks are woken to see it.
    pub(super) fn expire_idle(&self, now: Instant, limit: std::time::Duration) {
        let mut woken = Vec::new();
        for w in lock(&self.waiting).values_mut() {
            let parked = w.reader.is_some() || w.writer.is_some();
            if parked && !w.never_idle && w.activity.expired(now, Some(limit)) {
                w.timed_out = true;
                woken.extend(w.reader.take());
                woken.extend(w.writer.take());
            }
        }
        woken.into_iter().for_each(Waker::wake);
    }

    fn timed_out(&self, token: Token) -> bool {
        lock(&self.waiting).get(&token).is_some_and(|w| w.timed_out)
    }

    fn never_idle(&self, token: Token) {
        lock(&self.waiting).entry(token).or_default().never_idle = true;
    }

    /// Leaves `waker` to be woken when `token`'s socket is ready for `direction`.
    fn wait(&self, token: Token, direction: Direction, waker: &Waker) {
        let mut waiting = lock(&self.waiting);
        let entry = waiting.entry(token).or_default();
        let slot = match direction {
            Direction::Read => &mut entry.reader,
            Direction::Write => &mut entry.writer,
        };
        *slot = Some(waker.clone());
    }

    /// An event from epoll: wake whoever waits for it.
    pub(super) fn dispatch(&self, token: Token, readable: bool, writable: bool) {
        let (reader, writer) = match lock(&self.waiting).get_mut(&token) {
            Some(w) => {
                let reader = if readable { w.reader.take() } else { None };
                let writer = if writable { w.writer.take() } else { None };
                if reader.is_some() || writer.is_some() {
                    // Its task runs again: it was not idle.
                    w.activity.touch();
                }
                (reader, writer)
            }
            None => (None, None),
        };
        // Woken outside the lock: waking pushes onto the run queue.
        reader.into_iter().chain(writer).for_each(Waker::wake);
    }
}

// ---------------------------------------------------------------------------------
// Async<T>: the seed's AsyncSocket.

/// A non-blocking socket registered with the reactor (edge-triggered, both ways).
pub(super) struct Async<T: AsRawFd> {
    io: T,
    token: Token,
    reactor: Arc<Reactor>,
}

impl<T: AsRawFd> Async<T> {
    pub(super) fn new(io: T, reactor: &Arc<Reactor>) -> io::Result<Async<T>> {
        let token = Token(reactor.next_token.fetch_add(1, Ordering::Relaxed));
        reactor.registry.register(
            &mut SourceFd(&io.as_raw_fd()),
            token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(Async {
            io,
            token,
            reactor: reactor.clone(),
        })
    }

    /// Tries `op`; on `WouldBlock`, parks the task until the socket is ready for
    /// `direction` and tries again. This is `yield 'recv', sock` in aserver.py.
    async fn io<R>(
        &self,
        direction: Direction,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        poll_fn(|cx| match op(&self.io) {
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock && self.reactor.timed_out(self.token) =>
            {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.reactor.wait(self.token, direction, cx.waker());
                Poll::Pending
            }
            result => Poll::Ready(result),
        })
        .await
    }
}

impl<T: AsRawFd> Drop for Async<T> {
    fn drop(&mut self) {
        let _ = self
            .reactor
            .registry
            .deregister(&mut SourceFd(&self.io.as_raw_fd()));
        lock(&self.reactor.waiting).remove(&self.token);
    }
}

impl Async<TcpListener> {
    pub(super) fn new_listener(listener: TcpListener, reactor: &Arc<Reactor>) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let listener = Async::new(listener, reactor)?;
        reactor.never_idle(listener.token);
        Ok(listener)
    }

    pub(super) async fn accept(&self) -> io::Result<(TcpStream, std::net::SocketAddr)> {
        let (stream, peer) = self.io(Direction::Read, |l| l.accept()).await?;
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        Ok((stream, peer))
    }
}

impl AsyncStream for Async<TcpStream> {
    fn socket(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd as _;
        self.io.as_fd()
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.io(Direction::Read, |mut s| {
            match self.reactor.reads_stopped.load(Ordering::SeqCst) {
                true => Ok(0),
                false => s.read(buf),
            }
        })
        .await
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.reactor.reads_stopped.load(Ordering::SeqCst) {
            true => Ok(0),
            false => (&self.io).read(buf),
        }
    }

    type Net = Net;
    fn net(&self) -> Net {
        Net(self.reactor.clone())
    }

    async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.io(Direction::Write, |mut s| s.write(buf)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        Ok(())
    }
}

/// How a coroutine waits on the downstream (`--downstream`): one more socket in this
/// reactor, and one more timer for its timeout.
pub(super) struct Net(Arc<Reactor>);

/// The socket to the downstream: read and written like a client's, except that
/// shutdown does not end its reads (the request waiting on it still gets its reply).
pub(super) struct Downstream(Async<TcpStream>);

impl AsyncNet for Net {
    type Conn = Downstream;

    async fn connect(&self, addr: SocketAddr) -> io::Result<Downstream> {
        let socket = Async::new(connect_nonblocking(addr)?, &self.0)?;
        // Its waits are bounded by --downstream-timeout, not --idle-timeout.
        self.0.never_idle(socket.token);
        // Writable once the handshake is over; SO_ERROR says how it ended.
        socket
            .io(Direction::Write, |s| match s.take_error()? {
                Some(e) => Err(e),
                None => match s.peer_addr() {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                    Err(e) => Err(e),
                },
            })
            .await?;
        Ok(Downstream(socket))
    }

    async fn sleep(&self, duration: Duration) {
        sleep(&self.0, duration).await;
    }
}

impl std::os::fd::AsFd for Downstream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.io.as_fd()
    }
}

impl AsyncDownstream for Downstream {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.io(Direction::Read, |mut s| s.read(buf)).await
    }

    async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.0.io(Direction::Write, |mut s| s.write(buf)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        Ok(())
    }
}
