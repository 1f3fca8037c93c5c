//! Graceful shutdown, shared by every model.
//!
//! A [`Shutdown`] is handed to a model's `serve` with its listener. When it is
//! triggered (SIGINT/SIGTERM at the CLI edge, or a test):
//!
//! 1. accept loops stop: blocking ones wait in `poll(2)` on the listener *and* on a
//!    wake-up socket that becomes readable at trigger time ([`Shutdown::accept`]);
//!    async ones await [`ShutdownWatch::triggered`];
//! 2. connections stop reading: a blocking connection's socket, admitted with
//!    [`Shutdown::admit`] as one to watch, gets `shutdown(SHUT_RD)`, so a thread parked
//!    in `read` wakes up with end-of-file, writes the replies it owes and leaves;
//! 3. `serve` waits for the tracked connections with [`Shutdown::wait_drained`] up to
//!    the grace period, then cuts whatever is left (`SHUT_RDWR` also frees writers
//!    blocked on a client that stopped reading) and returns.

use std::collections::HashMap;
use std::io::{self, Write as _};
use std::net::{Shutdown as Direction, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

pub use crate::accept::turn_away;
use crate::accept::{Backoff, is_transient};

/// A cloneable handle to one server's shutdown. See the module docs.
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    triggered: AtomicBool,
    /// Written once at trigger time and never read, so `wake_rx` stays readable for
    /// every poller: the blocking accept loops' way of hearing about shutdown.
    wake_tx: UnixStream,
    wake_rx: UnixStream,
    /// The async side of the same event.
    watch: tokio::sync::watch::Sender<bool>,
    /// Live connections, with a clone of their socket where the model needs one shut
    /// down to wake a blocked reader.
    live: Mutex<Live>,
    /// Signalled whenever a tracked connection ends.
    ended: Condvar,
    /// Accepting after transient failures, whichever loop accepts.
    backoff: Mutex<Backoff>,
}

#[derive(Default)]
struct Live {
    next_id: u64,
    sockets: HashMap<u64, Option<Arc<TcpStream>>>,
}

impl Shutdown {
    pub fn new() -> io::Result<Shutdown> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        let (watch, _) = tokio::sync::watch::channel(false);
        Ok(Shutdown {
            inner: Arc::new(Inner {
                triggered: AtomicBool::new(false),
                wake_tx,
                wake_rx,
                watch,
                live: Mutex::new(Live::default()),
                ended: Condvar::new(),
                backoff: Mutex::new(Backoff::default()),
            }),
        })
    }

    /// Starts the shutdown. Idempotent.
    pub fn trigger(&self) {
        if self.inner.triggered.swap(true, Ordering::SeqCst) {
            return;
        }
        // A full or closed socket only means a poller already has its wake-up.
        let _ = (&self.inner.wake_tx).write(b"!");
        self.inner.watch.send_replace(true);
        for socket in self.live().sockets.values().flatten() {
            let _ = socket.shutdown(Direction::Read);
        }
    }

    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::SeqCst)
    }

    /// A descriptor that becomes readable, and stays so, once shutdown is triggered:
    /// event loops watch it beside their sockets.
    pub fn wake_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inner.wake_rx.as_fd()
    }

    /// Sleeps until shutdown is triggered or `timeout` passes; true if triggered.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let mut fds = [PollFd::new(self.inner.wake_rx.as_fd(), PollFlags::POLLIN)];
        let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let _ = poll(&mut fds, PollTimeout::from(millis));
        self.is_triggered()
    }

    /// A receiver for async code; see [`ShutdownWatch::triggered`].
    pub fn watch(&self) -> ShutdownWatch {
        ShutdownWatch(self.inner.watch.subscribe())
    }

    /// Accepts the next connection and admits it ([`admit`](Self::admit): past `limit`
    /// live connections it is turned away and the next one is waited for), or returns
    /// `Ok(None)` once shutdown is triggered. The stream comes back shared with the
    /// tracker, so a shutdown wakes a thread blocked reading it.
    ///
    /// Transient accept errors (the client already reset, out of descriptors) pause
    /// accepting ([`Backoff`]) instead of ending the server; the pause sleeps in `poll`,
    /// so a shutdown still ends it at once.
    pub fn accept(
        &self,
        listener: &TcpListener,
        limit: usize,
    ) -> io::Result<Option<(Arc<TcpStream>, SocketAddr, ConnectionGuard)>> {
        self.accept_with(listener, |stream, peer| {
            // Accepted sockets do not inherit O_NONBLOCK on Linux, but be explicit:
            // every blocking model relies on it.
            stream.set_nonblocking(false)?;
            let stream = Arc::new(stream);
            Ok(self
                .admit(stream.as_fd(), peer, limit, Some(stream.clone()))
                .map(|live| (stream, peer, live)))
        })
    }

    /// As [`accept`](Self::accept), for a loop that watches the shutdown itself
    /// (`nonblocking` sleeps here while it has no client): the stream comes back
    /// non-blocking and owned, the guard only counts it.
    ///
    /// # Errors
    /// As [`accept`](Self::accept).
    pub fn accept_unwatched(
        &self,
        listener: &TcpListener,
        limit: usize,
    ) -> io::Result<Option<(TcpStream, SocketAddr, ConnectionGuard)>> {
        self.accept_with(listener, |stream, peer| {
            stream.set_nonblocking(true)?;
            Ok(self
                .admit(stream.as_fd(), peer, limit, None)
                .map(|live| (stream, peer, live)))
        })
    }

    /// The waiting of [`accept`](Self::accept): the next connection `admit` takes
    /// (`Ok(None)` from it: turned away, wait for the next), or `None` at shutdown.
    fn accept_with<T>(
        &self,
        listener: &TcpListener,
        mut admit: impl FnMut(TcpStream, SocketAddr) -> io::Result<Option<T>>,
    ) -> io::Result<Option<T>> {
        listener.set_nonblocking(true)?;
        loop {
            if self.is_triggered() {
                return Ok(None);
            }
            let paused = self.accept_paused_for(Instant::now());
            let mut fds = [
                PollFd::new(self.inner.wake_rx.as_fd(), PollFlags::POLLIN),
                PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            ];
            // While paused, only the shutdown is watched, for the rest of the pause.
            let (watched, timeout) = match paused {
                Some(left) => (
                    &mut fds[..1],
                    PollTimeout::from(u16::try_from(left.as_millis() + 1).unwrap_or(u16::MAX)),
                ),
                None => (&mut fds[..], PollTimeout::NONE),
            };
            match poll(watched, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            if paused.is_some() {
                continue;
            }
            match listener.accept() {
                Ok((stream, peer)) => {
                    self.accept_recovered();
                    if let Some(admitted) = admit(stream, peer)? {
                        return Ok(Some(admitted));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if is_transient(&e) => self.accept_failed(&e),
                Err(e) => return Err(e),
            }
        }
    }

    /// An accept failed with a transient error: accepting pauses ([`Backoff::failed`]).
    pub fn accept_failed(&self, e: &io::Error) {
        crate::metrics::accept_backoff();
        self.backoff().failed(e);
    }

    /// An accept worked again ([`Backoff::recovered`]).
    pub fn accept_recovered(&self) {
        let mut backoff = self.backoff();
        if backoff.failures() > 0 {
            backoff.recovered();
        }
    }

    /// How long accepting stays paused after a transient failure; `None`: accept now.
    pub fn accept_paused_for(&self, now: Instant) -> Option<Duration> {
        self.backoff().paused_for(now)
    }

    fn backoff(&self) -> MutexGuard<'_, Backoff> {
        // One assignment per update: a panic cannot leave it torn.
        self.inner.backoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admission, the one rule every model follows (`--max-conns`, [`Config::max_conns`]
    /// passed as `limit`): with fewer than `limit` connections live, the connection on
    /// `socket` is tracked until the returned guard drops; at `limit` it is told
    /// `ERR server busy` ([`turn_away`]) and `None` comes back, for the caller to
    /// close it. The count and the registration are one step, so loops accepting on
    /// several threads (`per-core`) cannot overshoot together.
    ///
    /// With `watched`, shutdown also shuts the socket's read side so a thread blocked
    /// reading it wakes up; pass `None` for connections whose loop watches the shutdown
    /// itself (event loops, async tasks). The stream is shared, not duplicated: a
    /// connection costs one descriptor.
    ///
    /// [`Config::max_conns`]: crate::server::Config::max_conns
    pub fn admit(
        &self,
        socket: BorrowedFd<'_>,
        peer: SocketAddr,
        limit: usize,
        watched: Option<Arc<TcpStream>>,
    ) -> Option<ConnectionGuard> {
        let mut live = self.live();
        if live.sockets.len() >= limit {
            drop(live);
            crate::metrics::turned_away(0);
            turn_away(socket, peer);
            return None;
        }
        Some(self.register(&mut live, watched))
    }

    /// Tracks a connection without a limit; see [`admit`](Self::admit).
    #[cfg(test)]
    fn track(&self, stream: Option<Arc<TcpStream>>) -> ConnectionGuard {
        let mut live = self.live();
        self.register(&mut live, stream)
    }

    fn register(&self, live: &mut Live, socket: Option<Arc<TcpStream>>) -> ConnectionGuard {
        if self.is_triggered() {
            if let Some(s) = &socket {
                let _ = s.shutdown(Direction::Read);
            }
        }
        let id = live.next_id;
        live.next_id += 1;
        live.sockets.insert(id, socket);
        crate::metrics::accepted();
        ConnectionGuard {
            shutdown: self.clone(),
            id,
        }
    }

    /// Number of tracked connections still open.
    pub fn live_connections(&self) -> usize {
        self.live().sockets.len()
    }

    /// Waits until every tracked connection has ended, or `grace` has passed; then
    /// shuts down both directions of whatever is left, and returns how many were cut.
    pub fn wait_drained(&self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        let mut live = self.live();
        while !live.sockets.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            live = match self.inner.ended.wait_timeout(live, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        for socket in live.sockets.values().flatten() {
            let _ = socket.shutdown(Direction::Both);
        }
        live.sockets.len()
    }

    fn live(&self) -> MutexGuard<'_, Live> {
        // The map stays consistent even if a holder panicked: every update is one call.
        self.inner.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The grace period of an event loop that serves its connections itself (`nonblocking`,
/// `select`, `epoll`, `coroutines`): asked once per turn of the loop, it says whether
/// the loop serves as usual, drains (stop reading at the first turn, wait at most the
/// time left), or stops (every connection finished, or the grace is over).
#[derive(Debug)]
pub struct Drain {
    grace: Duration,
    deadline: Option<Instant>,
}

/// What [`Drain::step`] tells the loop to do this turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainStep {
    /// No shutdown: serve as usual.
    Serving,
    /// Shutdown: finish the open connections, waiting at most `left` for them.
    /// `first` on the turn the shutdown is first seen: stop accepting and stop every
    /// connection's reads then.
    Draining { left: Duration, first: bool },
    /// Every connection finished, or the grace period is over: return.
    Over,
}

impl Drain {
    pub fn new(grace: Duration) -> Drain {
        Drain {
            grace,
            deadline: None,
        }
    }

    /// This turn's step, with `open` connections still open.
    pub fn step(&mut self, shutdown: &Shutdown, open: usize) -> DrainStep {
        if !shutdown.is_triggered() {
            return DrainStep::Serving;
        }
        let first = self.deadline.is_none();
        let deadline = *self
            .deadline
            .get_or_insert_with(|| Instant::now() + self.grace);
        let left = deadline.saturating_duration_since(Instant::now());
        if open == 0 || left.is_zero() {
            if left.is_zero() && open > 0 {
                tracing::warn!(left = open, "grace period over; cutting connections");
            }
            return DrainStep::Over;
        }
        DrainStep::Draining { left, first }
    }
}

/// Keeps a connection counted as live; see [`Shutdown::admit`].
pub struct ConnectionGuard {
    shutdown: Shutdown,
    id: u64,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.shutdown.live().sockets.remove(&self.id);
        crate::metrics::closed();
        self.shutdown.inner.ended.notify_all();
    }
}

/// The async view of a [`Shutdown`].
pub struct ShutdownWatch(tokio::sync::watch::Receiver<bool>);

impl ShutdownWatch {
    /// Completes once shutdown is triggered (at once if it already was).
    pub async fn triggered(&mut self) {
        // An error means the Shutdown was dropped, which also ends everything.
        let _ = self.0.wait_for(|&t| t).await;
    }
}

/// Runs `first` on the first SIGINT/SIGTERM and exits (status 1) on the second. Call it
/// before any other thread starts: threads inherit the blocked mask, so only the
/// signal thread ever sees these signals.
///
/// # Errors
/// The signals cannot be blocked, or the thread cannot be started.
pub fn on_signals(mut first: impl FnMut() + Send + 'static) -> io::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block()?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            while let Ok(signal) = signals.wait() {
                seen += 1;
                if seen == 1 {
                    first();
                    tracing::info!(?signal, "stopping: a second signal exits at once");
                } else {
                    tracing::warn!(?signal, "second signal: exiting now");
                    std::process::exit(1);
                }
            }
        })?;
    Ok(())
}

/// A flag that the first SIGINT/SIGTERM sets, for clients that then report what they
/// measured so far; a second signal exits at once. See [`on_signals`].
///
/// # Errors
/// As [`on_signals`].
pub fn interrupt_flag() -> io::Result<Arc<AtomicBool>> {
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    on_signals(move || flag.store(true, Ordering::SeqCst))?;
    Ok(interrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_serves_then_drains_then_stops() {
        let shutdown = Shutdown::new().unwrap();
        let mut drain = Drain::new(Duration::from_secs(60));
        assert_eq!(drain.step(&shutdown, 3), DrainStep::Serving);
        shutdown.trigger();
        assert!(matches!(
            drain.step(&shutdown, 3),
            DrainStep::Draining { first: true, .. }
        ));
        assert!(matches!(
            drain.step(&shutdown, 1),
            DrainStep::Draining { first: false, .. }
        ));
        assert_eq!(drain.step(&shutdown, 0), DrainStep::Over);
        let mut no_grace = Drain::new(Duration::ZERO);
        assert_eq!(no_grace.step(&shutdown, 5), DrainStep::Over);
    }
    use std::io::Read as _;

    #[test]
    fn accept_turns_away_past_max_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new().unwrap();
        let first = TcpStream::connect(addr).unwrap();
        let mut second = TcpStream::connect(addr).unwrap();
        let (_accepted, _, live) = shutdown.accept(&listener, 1).unwrap().unwrap();
        assert_eq!(shutdown.live_connections(), 1);
        let third = TcpStream::connect(addr).unwrap();
        let s2 = shutdown.clone();
        // The second is turned away inside accept, which then waits for the next.
        let t = std::thread::spawn(move || s2.accept(&listener, 1).unwrap().map(|(s, ..)| s));
        let mut reply = String::new();
        second.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "ERR server busy\n");
        drop(live);
        drop((first, third));
        shutdown.trigger();
        let _ = t.join().unwrap();
    }

    #[test]
    fn accept_returns_none_after_trigger() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let shutdown = Shutdown::new().unwrap();
        let s2 = shutdown.clone();
        let t = std::thread::spawn(move || s2.accept(&listener, 8).unwrap().is_none());
        std::thread::sleep(Duration::from_millis(50));
        shutdown.trigger();
        assert!(t.join().unwrap());
    }

    #[test]
    fn accept_returns_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new().unwrap();
        let _client = TcpStream::connect(addr).unwrap();
        let (stream, _, live) = shutdown.accept(&listener, 8).unwrap().unwrap();
        assert!(!stream.local_addr().unwrap().ip().is_unspecified());
        assert_eq!(shutdown.live_connections(), 1);
        drop(live);
        assert_eq!(shutdown.live_connections(), 0);
    }

    #[test]
    fn trigger_wakes_a_blocked_reader_and_drain_waits_for_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let stream = Arc::new(stream);
        let shutdown = Shutdown::new().unwrap();
        let guard = shutdown.track(Some(stream.clone()));
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8];
            let n = (&*stream).read(&mut buf).unwrap();
            drop(guard);
            n
        });
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(shutdown.live_connections(), 1);
        shutdown.trigger();
        assert_eq!(shutdown.wait_drained(Duration::from_secs(5)), 0);
        assert_eq!(reader.join().unwrap(), 0, "reader saw end-of-file");
    }

    #[test]
    fn drain_gives_up_after_grace() {
        let shutdown = Shutdown::new().unwrap();
        let _guard = shutdown.track(None);
        shutdown.trigger();
        let start = Instant::now();
        assert_eq!(shutdown.wait_drained(Duration::from_millis(100)), 1);
        assert!(start.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn async_watch_sees_trigger() {
        let shutdown = Shutdown::new().unwrap();
        let mut watch = shutdown.watch();
        shutdown.trigger();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(watch.triggered());
    }
}
