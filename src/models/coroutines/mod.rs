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
//! Waiting (`--downstream`): the task yields on the downstream's `recv` (one more
//! `Async` socket in the reactor, one more timer for its timeout; `reactor.rs`), aserver.py's
//! `yield 'recv', sock` on a second socket.
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

mod reactor;

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Wake, Waker};
use std::thread::ThreadId;
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Events, Interest, Token};

use crate::accept::Backoff;
use crate::connection::Turns;
use crate::connection::serve_async;
use crate::offload::Offload;
use crate::server::Config;
use crate::shutdown::{DrainStep, Shutdown};
use reactor::{Async, Reactor, sleep};

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
                serve_async(stream, &peer, &config, pool.as_deref()).await;
                drop(live);
            });
        }
    });
    executor.run(&shutdown, accept_task, grace, idle_timeout)
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
        let reactor = Arc::new(Reactor::new(poll.registry().try_clone()?, 2));
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections are single queue or map operations: a panic cannot tear them.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
