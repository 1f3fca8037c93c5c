//! `prefork` — the seeds' `many_server.py` (seeds 000, 001).
//!
//! N (`--workers`) copies of the single-thread server, each its own process: the
//! `single` model, started from the fiblab binary. The parent only supervises.
//!
//! ```text
//! parent: binds N listening sockets ─► starts child i on socket i (its stdin)
//!         loop: a child died? start a new one on the same socket
//!         SIGTERM: forward it to the children, wait for them, exit 0
//! child i: fiblab serve --model single, on the socket it inherited
//! ```
//!
//! Three ways to share the clients:
//! - default: one port, a socket per child. All N sockets are bound to it with
//!   `SO_REUSEPORT` and the kernel spreads new connections over them by a hash of the
//!   client's address and port. It balances *connections*, not load: a new client may
//!   land on a child that is busy with another client and wait for it, even while
//!   other children are idle (Cloudflare's "Why does one NGINX worker take all the
//!   load?" is the same trade from the other side).
//! - `--one-queue`: one port, one socket, one accept queue shared by every child (the
//!   classic prefork of Apache and gunicorn): only a child waiting in `accept` takes a
//!   connection, so an idle child takes the next client and a busy one is never handed
//!   one. The children wake on the one queue (the kernel wakes one waiter per
//!   connection, `accept`'s exclusive wait).
//! - `--ports`: the seed's form, one port per child (the given port, then the next
//!   ones; with `--port 0`, free ports), logged at start. Clients choose the port.
//!
//! `SO_REUSEPORT` stays the default: it is what `per-core` and nginx's `reuseport` do,
//! what the seeds' tables and the recorded reports measured, and what the cost formula
//! predicts (a range from `single` to `threads`, by the hash); `--one-queue` is the
//! fairer way for a server whose copies serve one client at a time.
//!
//! The parent keeps every socket open, so a child that dies loses no queued
//! connection: its replacement accepts them from the same socket. Children die with
//! the parent (`PR_SET_PDEATHSIG`), so no orphan keeps serving or holds the port.
//!
//! Primitives (docs/PRIMITIVES.md): processes sharing one listening port; children
//! reaped (no zombies) and killed with their parent (no orphans).
//!
//! Waiting (`--downstream`): a blocking call in the child serving the connection; each
//! child waits for one request at a time, so at most `--workers` waits overlap.
//!
//! Good at: isolation (a crash takes one child and its clients, and is repaired)
//! and using every core with no shared state at all. Bad at: balance, since a child
//! serves one client at a time and the kernel does not know which ones are busy, and
//! per-process memory. Prediction: like `threads` when clients land on different
//! children; with 2 clients on 2 children a hash collision now and then puts both on
//! one child, and that run looks like `single`.
//!
//! Cost model (`CostModel::Prefork`, `src/models/cost.rs`): one client, as `single`; from
//! two clients a range between `single` (every connection hashed onto one child) and
//! `threads` (each on its own child): the kernel's `SO_REUSEPORT` hash decides.
//!
//! One connection costs: one descriptor in the child serving it; a child serves one
//! connection at a time, so the others wait in the kernel's backlog of the listening
//! socket they share.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::process::fiblab_child;
use crate::server::{Config, bind, bind_with};
use crate::shutdown::Shutdown;

/// How often the parent looks for dead children.
const SUPERVISE_EVERY: Duration = Duration::from_millis(50);

pub fn serve(listener: TcpListener, config: &Config, shutdown: Shutdown) -> io::Result<()> {
    let sockets = bind_sockets(listener, config)?;
    for (i, socket) in sockets.iter().enumerate() {
        tracing::info!(child = i, addr = %socket.local_addr()?, "prefork child listening");
    }
    let mut children = sockets
        .iter()
        .map(|socket| start_child(socket, config).map(Some))
        .collect::<io::Result<Vec<Option<Child>>>>()?;

    while !shutdown.wait_timeout(SUPERVISE_EVERY) {
        for (i, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            let Ok(Some(status)) = child.try_wait() else {
                continue;
            };
            tracing::warn!(child = i, pid = child.id(), %status, "child died; starting a new one on its socket");
            *slot = match start_child(&sockets[i], config) {
                Ok(child) => Some(child),
                Err(e) => {
                    tracing::warn!(child = i, error = %e, "cannot restart the child; will retry");
                    None
                }
            };
        }
        // A child that could not be restarted gets another try each round.
        for (i, slot) in children.iter_mut().enumerate().filter(|(_, s)| s.is_none()) {
            *slot = start_child(&sockets[i], config).ok();
        }
    }

    // Shutdown: each child stops accepting and drains its client within the grace.
    let mut live: Vec<Child> = children.into_iter().flatten().collect();
    for child in &live {
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    }
    let deadline = Instant::now() + config.grace + Duration::from_secs(1);
    while Instant::now() < deadline {
        live.retain_mut(|child| matches!(child.try_wait(), Ok(None)));
        if live.is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for child in &mut live {
        tracing::warn!(pid = child.id(), "child did not stop in time; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(())
}

/// The given listener and N-1 more: on the same port with `SO_REUSEPORT` (the given
/// one was bound with it too; see the registry), or on the following ports; with
/// `--one-queue`, N handles of the given one (one socket, one accept queue).
fn bind_sockets(listener: TcpListener, config: &Config) -> io::Result<Vec<TcpListener>> {
    let addr = listener.local_addr()?;
    if config.one_queue {
        let mut sockets = Vec::with_capacity(config.workers.max(1));
        for _ in 1..config.workers.max(1) {
            sockets.push(listener.try_clone()?);
        }
        sockets.insert(0, listener);
        return Ok(sockets);
    }
    let mut sockets = vec![listener];
    for i in 1..config.workers.max(1) {
        let socket = if config.ports {
            let port = match config.free_ports {
                true => 0,
                false => addr
                    .port()
                    .checked_add(i as u16)
                    .ok_or_else(|| io::Error::other("no port left above the base port"))?,
            };
            bind(SocketAddr::new(addr.ip(), port))
        } else {
            bind_with(addr, true)
        };
        sockets.push(
            socket.map_err(|e| io::Error::new(e.kind(), format!("prefork socket {i}: {e}")))?,
        );
    }
    Ok(sockets)
}

/// `fiblab serve --model single --inherited-listener` with `socket` as its stdin and
/// every setting of this server (`--max-conns`, `--idle-timeout`, ...) but the ones
/// that describe the processes: each child is one plain single-threaded server.
fn start_child(socket: &TcpListener, config: &Config) -> io::Result<Child> {
    let inherited = socket.as_fd().try_clone_to_owned()?;
    let child_config = Config {
        offload: false,
        ports: false,
        one_queue: false,
        workers: 1,
        // Each child has its own lock, with one thread it never waits for: only the
        // parent (no lock) writes the counters.
        gil_stats: None,
        ..config.clone()
    };
    let mut child = fiblab_child()?;
    child
        .args(["serve", "--model", "single", "--inherited-listener"])
        .args(child_config.to_args());
    // With `--metrics`, each copy counts for itself and publishes to a file of its own
    // that the parent's endpoint adds up (`crate::metrics::merge`).
    if let Some(dir) = crate::metrics::children_dir() {
        child
            .arg("--metrics-publish")
            .arg(dir.join(format!("copy-{}.prom", socket.as_raw_fd())));
    }
    child
        .stdin(Stdio::from(inherited))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    crate::process::spawn_tied(child)
}
