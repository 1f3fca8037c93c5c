//! `threadpool` — the thread pools of seeds 002 and 003 (producer-consumer,
//! `ThreadPoolExecutor`).
//!
//! A fixed set of `--workers` threads is started up front. The accept loop is the
//! producer: it puts each new connection into a bounded queue. A free worker takes the
//! oldest connection and serves it until the client leaves.
//!
//! ```text
//! accept loop ─► [ queue: C5 C6 ... ] ─► worker 1: serving C1
//!      │                              ─► worker 2: serving C2
//!      └─ more than --queue waiting: "ERR server busy", close
//! ```
//!
//! What happens to connection K+1 when all K workers are busy is the contract of this
//! model, and `tests/threadpool.rs` checks it:
//! - it waits in the queue, connected and unanswered (its requests are buffered by
//!   the kernel), until a worker is free; then it is served normally;
//! - when `--queue` connections are already waiting, it is accepted, gets one line
//!   `ERR server busy`, and is closed at once.
//!
//! Idle workers count as room: a burst of K clients on K idle workers is never turned
//! away, however small `--queue` is (`--queue 0` means "serve now or refuse").
//!
//! Good at: bounding threads and memory however many clients arrive, and shedding load
//! explicitly instead of collapsing. Bad at: long-lived connections: a worker is tied
//! to one client for the client's whole life, so K idle clients starve everyone else.
//! The seeds' pools hand out *requests*, not connections; that needs the event-loop
//! models, where a connection costs nothing while it is idle.

use std::collections::VecDeque;
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::connection::serve_blocking;
use crate::server::Config;
use crate::service::Rejection;
use crate::shutdown::{ConnectionGuard, Shutdown};

/// A connection waiting for a worker, with its shutdown registration.
type Job = (TcpStream, SocketAddr, ConnectionGuard);

/// The bounded producer-consumer queue: one lock, one condition variable.
struct Queue {
    state: Mutex<QueueState>,
    /// Signalled when a job is pushed or the queue closes.
    not_empty: Condvar,
    /// Signalled when a worker becomes idle; only startup waits on it.
    worker_idle: Condvar,
    /// How many jobs may wait beyond those an idle worker is about to take.
    capacity: usize,
}

struct QueueState {
    jobs: VecDeque<Job>,
    /// Workers blocked in `take`: each will take one job without delay.
    idle: usize,
    closed: bool,
}

impl Queue {
    /// Adds a job, or hands it back when `capacity` jobs already wait for a worker.
    fn offer(&self, job: Job) -> Result<(), Job> {
        let mut state = self.lock();
        if state.jobs.len() >= state.idle + self.capacity {
            return Err(job);
        }
        state.jobs.push_back(job);
        self.not_empty.notify_one();
        Ok(())
    }

    /// The oldest job; `None` once the queue is closed and empty.
    fn take(&self) -> Option<Job> {
        let mut state = self.lock();
        state.idle += 1;
        self.worker_idle.notify_all();
        while state.jobs.is_empty() && !state.closed {
            state = self
                .not_empty
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        state.idle -= 1;
        state.jobs.pop_front()
    }

    /// Blocks until `workers` workers wait for jobs, so that the first clients find
    /// the whole pool idle rather than racing its start.
    fn wait_until_idle(&self, workers: usize) {
        let mut state = self.lock();
        while state.idle < workers {
            state = self
                .worker_idle
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.not_empty.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Every critical section is a few field updates that cannot panic halfway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub fn serve(listener: TcpListener, config: &Config, shutdown: Shutdown) -> io::Result<()> {
    let queue = Arc::new(Queue {
        state: Mutex::new(QueueState {
            jobs: VecDeque::new(),
            idle: 0,
            closed: false,
        }),
        not_empty: Condvar::new(),
        worker_idle: Condvar::new(),
        capacity: config.queue,
    });
    let workers = config.workers.max(1);
    for id in 0..workers {
        let (queue, config) = (queue.clone(), *config);
        std::thread::Builder::new()
            .name(format!("worker-{id}"))
            .spawn(move || {
                while let Some((stream, peer, _live)) = queue.take() {
                    serve_blocking(stream, peer, &config);
                }
            })?;
    }
    queue.wait_until_idle(workers);

    while let Some((stream, peer)) = shutdown.accept(&listener)? {
        let live = shutdown.track(Some(&stream));
        if let Err((mut stream, peer, _live)) = queue.offer((stream, peer, live)) {
            tracing::debug!(%peer, "queue full; turning the connection away");
            let _ = stream.write_all(Rejection::ServerBusy.reply_line().as_bytes());
        }
    }
    // Workers finish their client, then drain what is queued (those sockets are already
    // shut for reading, so each ends at once) and exit.
    queue.close();
    shutdown.wait_drained(config.grace);
    Ok(())
}
