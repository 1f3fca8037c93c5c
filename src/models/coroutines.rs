//! `coroutines` — Beazley's aserver.py (seeds 000, 001), from the ground up.
//!
//! aserver.py builds concurrency out of generators: each connection is a task that
//! `yield`s `('recv', sock)` when it would block; a scheduler keeps a run queue and,
//! when nothing is runnable, `select()`s on the sockets the tasks wait for and puts
//! the ready ones back in the queue. CPU work goes to a pool, whose done-callback
//! requeues the task and pokes the loop through a socketpair (`future_notify`).
//!
//! This module is the same machine in Rust, with no async runtime, in three parts:
//!
//! ```text
//! Executor   run queue of tasks (Rust futures); poll each until it is Pending
//!     │        when the queue is empty: ask the Reactor to wait
//! Reactor    epoll (mio): which task waits to read or write which socket;
//!     │        a ready socket wakes its task = pushes it back on the run queue
//! Async<T>   a non-blocking socket whose read/write/accept, on WouldBlock, leave the
//!              task's Waker with the Reactor and return Pending: `yield 'recv', sock`
//! ```
//!
//! A task is the same connection loop every async model runs
//! ([`crate::connection::serve_async`]); only the executor under it differs from
//! `tokio-current`. With `--offload`, fib runs in [`crate::offload`]'s pool and the
//! worker wakes the task's `Waker`; from a foreign thread that also writes the
//! reactor's eventfd (`mio::Waker`), exactly the seed's `future_notify` socketpair.
//!
//! Primitives (docs/PRIMITIVES.md): hand-built coroutines and their scheduler (a first-
//! come first-served run queue) over epoll; with `--offload`, futures completed by a
//! thread pool.
//!
//! Good at: showing what async is (a state machine per connection, polled when its
//! socket is ready) and what it costs (nothing per idle connection, one syscall round
//! per batch of ready sockets). Bad at: CPU-bound work without `--offload`: one thread
//! runs everything, so one fib(36) stops every other client, the collapse seed 004
//! shows. Prediction: within a few percent of `tokio-current` (same design, simpler
//! scheduler), and the same stall at n=20 with 2 clients unless `--offload`.
//!
//! Cost model (`CostModel::EventLoop(Readiness::Epoll)`, `src/models/cost.rs`): as
//! `epoll`: one thread, one `epoll_wait` per batch of ready sockets.
//!
//! One connection costs: one descriptor and one task, a boxed future waiting with a
//! 64-byte read (a 16 KiB chunk only while reads fill it). Per round: one `epoll_wait`,
//! then only the woken tasks are polled: O(ready).

use std::collections::{HashMap, VecDeque};
use std::future::{Future, poll_fn};
use std::io::{self, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Token};

use crate::accept::Backoff;
use crate::connection::Turns;
use crate::connection::{Activity, AsyncStream, serve_async};
use crate::offload::Offload;
use crate::server::Config;
use crate::shutdown::{DrainStep, Shutdown};

pub fn serve(listener: TcpListener, config: &Config, shutdown: Shutdown) -> io::Result<()> {
    let mut executor = Executor::new()?;
    let pool = Offload::from_config(config)?.map(Arc::new);
    let listener = Async::new_listener(listener, &executor.reactor)?;
    let (grace, idle_timeout) = (config.grace, config.idle_timeout);
    // One copy of the settings for every connection task, not one each: an idle
    // connection should cost its state, not a copy of the server's configuration.
    let (reactor, config) = (executor.reactor.clone(), Arc::new(config.clone()));
    let conn_shutdown = shutdown.clone();
    // aserver.py's fib_server(): accept, spawn a handler task, repeat.
    let spawner = executor.spawner();
    let accept_task = executor.spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, say: sleep on the reactor's clock, so the
                    // executor goes on serving (and closing) the open connections and
                    // waits in epoll meanwhile; a busy retry would starve them all.
                    conn_shutdown.accept_failed(&e);
                    sleep(&reactor, Backoff::PAUSE).await;
                    continue;
                }
            };
            conn_shutdown.accept_recovered();
            // Counted only: at shutdown the reactor ends every read itself.
            let Some(live) = conn_shutdown.admit(
                std::os::fd::AsFd::as_fd(&stream),
                peer,
                config.max_conns,
                None,
            ) else {
                continue;
            };
            let Ok(stream) = Async::new(stream, &reactor) else {
                continue;
            };
            let (pool, config) = (pool.clone(), config.clone());
            spawner.spawn(async move {
                serve_async(stream, peer, &config, pool.as_deref()).await;
                drop(live);
            });
        }
    });
    executor.run(&shutdown, accept_task, grace, idle_timeout)
}

/// Sleeps for `duration` without holding up the executor: the reactor wakes the task
/// when the time is up (aserver.py's scheduler keeps sleeping tasks in a time-ordered
/// queue the same way).
async fn sleep(reactor: &Reactor, duration: Duration) {
    let deadline = Instant::now() + duration;
    poll_fn(|cx| {
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        reactor.wake_at(deadline, cx.waker());
        Poll::Pending
    })
    .await
}

// ---------------------------------------------------------------------------------
// The executor: a run queue of tasks, and a loop that polls them.

type BoxedFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A spawned future. Its `Waker` is the task itself: waking it puts it back on the
/// run queue.
struct Task {
    future: Mutex<Option<BoxedFuture>>,
    queue: Arc<RunQueue>,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        let queue = self.queue.clone();
        queue.push(self);
    }
}

impl Task {
    /// Polls the future once; drops it when it is done.
    fn run(self: &Arc<Self>) {
        let mut slot = lock(&self.future);
        let Some(future) = slot.as_mut() else { return }; // done or cancelled
        let waker = Waker::from(self.clone());
        if future
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
        {
            *slot = None;
            self.queue.live.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn cancel(&self) {
        if lock(&self.future).take().is_some() {
            self.queue.live.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

struct RunQueue {
    ready: Mutex<VecDeque<Arc<Task>>>,
    /// Tasks spawned and not finished.
    live: AtomicUsize,
    /// Interrupts the reactor's wait when a task is woken from another thread (an
    /// offload worker): the seed's `future_notify.send(b'x')`.
    notify: mio::Waker,
    executor_thread: ThreadId,
}

impl RunQueue {
    fn push(&self, task: Arc<Task>) {
        lock(&self.ready).push_back(task);
        if std::thread::current().id() != self.executor_thread {
            let _ = self.notify.wake();
        }
    }

    fn pop(&self) -> Option<Arc<Task>> {
        lock(&self.ready).pop_front()
    }
}

/// Spawns tasks from inside other tasks.
#[derive(Clone)]
struct Spawner(Arc<RunQueue>);

impl Spawner {
    fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) -> Arc<Task> {
        let task = Arc::new(Task {
            future: Mutex::new(Some(Box::pin(future))),
            queue: self.0.clone(),
        });
        self.0.live.fetch_add(1, Ordering::SeqCst);
        self.0.push(task.clone());
        task
    }
}

struct Executor {
    poll: mio::Poll,
    reactor: Arc<Reactor>,
    queue: Arc<RunQueue>,
}

const NOTIFY: Token = Token(0);
const SHUTDOWN: Token = Token(1);

impl Executor {
    fn new() -> io::Result<Executor> {
        let poll = mio::Poll::new()?;
        let queue = Arc::new(RunQueue {
            ready: Mutex::new(VecDeque::new()),
            live: AtomicUsize::new(0),
            notify: mio::Waker::new(poll.registry(), NOTIFY)?,
            executor_thread: std::thread::current().id(),
        });
        let reactor = Arc::new(Reactor {
            registry: poll.registry().try_clone()?,
            waiting: Mutex::new(HashMap::new()),
            next_token: AtomicUsize::new(2),
            reads_stopped: AtomicBool::new(false),
            timers: Mutex::new(Vec::new()),
        });
        Ok(Executor {
            poll,
            reactor,
            queue,
        })
    }

    fn spawner(&self) -> Spawner {
        Spawner(self.queue.clone())
    }

    fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) -> Arc<Task> {
        self.spawner().spawn(future)
    }

    /// aserver.py's run(): poll ready tasks; when none is ready, wait for the reactor.
    /// On shutdown, cancels `accept_task` and runs the rest until they finish or
    /// `grace` passes.
    fn run(
        &mut self,
        shutdown: &Shutdown,
        accept_task: Arc<Task>,
        grace: std::time::Duration,
        idle_timeout: Option<std::time::Duration>,
    ) -> io::Result<()> {
        let wake_fd = shutdown.wake_fd().as_raw_fd();
        self.poll
            .registry()
            .register(&mut SourceFd(&wake_fd), SHUTDOWN, Interest::READABLE)?;
        let mut events = Events::with_capacity(1024);
        let mut turns = Turns::new(grace, idle_timeout);
        loop {
            while let Some(task) = self.queue.pop() {
                task.run();
            }
            let now = Instant::now();
            if let Some(limit) = turns.sweep_due(now) {
                self.reactor.expire_idle(now, limit);
                continue; // run the tasks it woke
            }
            // One look at the timers per turn: a due one runs now, else it bounds the wait.
            let next_timer = self.reactor.next_timer();
            if next_timer.is_some_and(|at| at <= now) {
                self.reactor.fire_timers(now);
                continue;
            }
            let next_timer = next_timer.map(|at| at - now);
            // The accept task counts as live until it is cancelled at the first step.
            let live = self.queue.live.load(Ordering::SeqCst);
            let (step, timeout) = turns.step(shutdown, live, now, next_timer);
            match step {
                DrainStep::Serving => {}
                DrainStep::Draining { first, .. } => {
                    if first {
                        // Stop accepting, and end every read: each task answers what
                        // it has, writes what it owes, and finishes.
                        accept_task.cancel();
                        self.reactor.stop_reads();
                        let _ = self.poll.registry().deregister(&mut SourceFd(&wake_fd));
                        continue; // run the tasks it woke
                    }
                }
                DrainStep::Over => break,
            }
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in &events {
                match event.token() {
                    // Woken tasks are already on the run queue; a shutdown is seen by
                    // the drain step at the top of the loop.
                    NOTIFY | SHUTDOWN => {}
                    token => self.reactor.dispatch(
                        token,
                        event.is_readable() || event.is_read_closed() || event.is_error(),
                        event.is_writable() || event.is_error(),
                    ),
                }
            }
        }
        // Tasks still waiting for a socket are owned by their wakers in the reactor
        // (and they own their sockets): dropping the wakers drops them, closing the sockets.
        // Taken out before dropping: a dropped task drops its sockets, which lock the map.
        let waiting = std::mem::take(&mut *lock(&self.reactor.waiting));
        drop(waiting);
        let ready = std::mem::take(&mut *lock(&self.queue.ready));
        drop(ready);
        Ok(())
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
struct Waiting {
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

struct Reactor {
    registry: mio::Registry,
    waiting: Mutex<HashMap<Token, Waiting>>,
    next_token: AtomicUsize,
    /// Set at shutdown: every read returns end of input from then on.
    reads_stopped: AtomicBool,
    /// Sleeping tasks ([`sleep`]) and when to wake them.
    timers: Mutex<Vec<(Instant, Waker)>>,
}

impl Reactor {
    fn wake_at(&self, at: Instant, waker: &Waker) {
        lock(&self.timers).push((at, waker.clone()));
    }

    /// The earliest timer's deadline, for the executor's wait.
    fn next_timer(&self) -> Option<Instant> {
        lock(&self.timers).iter().map(|(at, _)| *at).min()
    }

    /// Wakes every task whose time has come.
    fn fire_timers(&self, now: Instant) {
        let due: Vec<Waker> = {
            let mut timers = lock(&self.timers);
            let (due, later) = timers.drain(..).partition(|(at, _)| *at <= now);
            *timers = later;
            due.into_iter().map(|(_, waker)| waker).collect::<Vec<_>>()
        };
        due.into_iter().for_each(Waker::wake);
    }

    /// Shutdown: ends every read, waking the tasks parked in one.
    fn stop_reads(&self) {
        self.reads_stopped.store(true, Ordering::SeqCst);
        let readers: Vec<Waker> = lock(&self.waiting)
            .values_mut()
            .filter_map(|w| w.reader.take())
            .collect();
        readers.into_iter().for_each(Waker::wake);
    }

    /// `--idle-timeout`: every socket whose task has been parked on it for `limit`
    /// fails its next read or write with `TimedOut`; its tasks are woken to see it.
    fn expire_idle(&self, now: Instant, limit: std::time::Duration) {
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
    fn dispatch(&self, token: Token, readable: bool, writable: bool) {
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
struct Async<T: AsRawFd> {
    io: T,
    token: Token,
    reactor: Arc<Reactor>,
}

impl<T: AsRawFd> Async<T> {
    fn new(io: T, reactor: &Arc<Reactor>) -> io::Result<Async<T>> {
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
    fn new_listener(listener: TcpListener, reactor: &Arc<Reactor>) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let listener = Async::new(listener, reactor)?;
        reactor.never_idle(listener.token);
        Ok(listener)
    }

    async fn accept(&self) -> io::Result<(TcpStream, std::net::SocketAddr)> {
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections are single queue or map operations: a panic cannot tear them.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
