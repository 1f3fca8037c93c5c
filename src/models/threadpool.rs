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
//! Primitives (docs/PRIMITIVES.md): producer-consumer: the accept loop puts connections
//! into a bounded FIFO queue (Mutex + Condvar, src/pool.rs) that a fixed pool of
//! threads takes from.
//!
//! Waiting (`--downstream`): a blocking call on the worker holding the connection: a
//! waiting request holds its worker, so at most `--workers` waits overlap and the others
//! queue (Little's law: X <= workers / wait).
//!
//! Good at: bounding threads and memory however many clients arrive, and shedding load
//! explicitly instead of collapsing. Bad at: long-lived connections: a worker is tied
//! to one client for the client's whole life, so K idle clients starve everyone else.
//! The seeds' pools hand out *requests*, not connections; that needs the event-loop
//! models, where a connection costs nothing while it is idle.
//!
//! Prediction: the same as `threads` for 1 and 2 clients (a connection holds a worker
//! just as it holds a thread); it differs only beyond `--workers` clients, where the
//! extra ones wait or are turned away instead of getting a thread each.
//!
//! Cost model (`CostModel::ConnectionPool`, `src/models/cost.rs`): the same as
//! `threads` while clients <= `--workers`; beyond, `threads` with `--workers` clients,
//! since the others wait in the queue and add nothing (16 cores, 8 + 8, 12 workers, 16
//! and 64 clients: 0.43M and 0.37M req/s, beside `threads`' 0.56M and 0.83M).
//!
//! One connection costs: one descriptor, and a worker for its whole life (or a queue
//! slot while it waits); at most `--workers` connections are served at once, which
//! bounds the memory at the price of queued clients.

use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

use crate::connection::serve_blocking;
use crate::pool::WorkQueue;
use crate::server::Config;
use crate::service::Rejection;
use crate::shutdown::{ConnectionGuard, Shutdown};

/// A connection waiting for a worker, with its shutdown registration.
type Job = (Arc<TcpStream>, SocketAddr, ConnectionGuard);

pub fn serve(listener: TcpListener, config: &Config, shutdown: Shutdown) -> io::Result<()> {
    // The producer-consumer queue itself is src/pool.rs, shared with the offload pool.
    let queue = Arc::new(WorkQueue::<Job>::new(config.queue));
    let workers = config.workers.max(1);
    for id in 0..workers {
        let (queue, config) = (queue.clone(), config.clone());
        std::thread::Builder::new()
            .name(format!("worker-{id}"))
            .spawn(move || {
                while let Some((stream, peer, _live)) = queue.take() {
                    serve_blocking(stream, peer, &config);
                }
            })?;
    }
    queue.wait_until_idle(workers);

    while let Some((stream, peer, live)) = shutdown.accept(&listener, config.max_conns)? {
        if let Err((stream, peer, _live)) = queue.offer((stream, peer, live)) {
            tracing::debug!(%peer, "queue full; turning the connection away");
            crate::metrics::turned_away(1);
            let _ = (&*stream).write_all(Rejection::ServerBusy.reply_line().as_bytes());
        }
    }
    // Workers finish their client, then drain what is queued (those sockets are already
    // shut for reading, so each ends at once) and exit.
    queue.close(false);
    shutdown.wait_drained(config.grace);
    Ok(())
}
