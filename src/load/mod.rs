//! `fiblab load`: a load generator for line request/reply protocols that is accurate
//! and stays out of the way.
//!
//! ```text
//! main thread: start T worker threads, print progress once a second, merge the stats
//! worker:      its share of the C connections, one mio (epoll) loop over them
//!              closed loop: keep --pipeline requests in flight per connection
//!              open loop:   send each request when it is due (--rate over all
//!                           connections, timed by a timerfd to the nanosecond)
//!              each reply:  check it, record its latency in HdrHistograms per class
//! ```
//!
//! Two latencies are kept for every request: from when it was *due* (open loop: its
//! slot in the schedule; closed loop: when it was sent) and from when it was actually
//! *sent*. A connection has at most `--pipeline` requests in flight, so when a server
//! stalls, the requests that fall due meanwhile cannot be sent until it answers.
//! Measuring from the send time hides that wait ("coordinated omission": the client
//! politely stopped asking while the server was stuck); measuring from the due time
//! shows it, as a user arriving on schedule would see it. Both are reported.
//!
//! The client watches itself: each thread's CPU time is measured, and a report says
//! so when a thread was busy enough that the client may be the bottleneck. `--spin`
//! busy-polls the sockets instead of sleeping in epoll (no wake-up latency, a full
//! core per thread), and `--cpus` pins the threads; both are recorded in the report,
//! because on a small VM they change round-trip figures several times over.

pub mod mix;
pub mod report;
pub mod tui;

use std::collections::VecDeque;
use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer as _, V2DeflateSerializer};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use mix::Mix;
use report::{ClassReport, ClientCost, Errors, Percentiles, Report, SecondClass, SecondReport};

/// When a run stops sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this long (after the warm-up).
    After(Duration),
    /// After exactly this many requests (after the warm-up).
    Requests(u64),
}

/// Everything a run needs to know.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    pub mix: Mix,
    pub connections: usize,
    /// Requests in flight per connection (at least 1). Closed loop: always this many.
    /// Open loop: at most this many; a request that falls due while its connection
    /// is full is sent as soon as there is room, and measured from when it was due.
    pub pipeline: usize,
    /// Open loop: requests per second over all connections.
    pub rate: Option<f64>,
    pub stop: Stop,
    pub warmup: Duration,
    /// A request without a reply for this long counts as a timeout; its connection
    /// is closed and opened again.
    pub timeout: Duration,
    pub threads: usize,
    pub spin: bool,
    pub cpus: Option<Vec<usize>>,
    pub seed: u64,
}

/// A load that cannot run as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("--conns and --pipeline must be at least 1")]
    NoConnections,
    #[error(
        "--no-newline needs --pipeline 1: unterminated requests sent back to back run together (30 30 arrives as 3030)"
    )]
    UnterminatedPipeline,
    #[error("--timeout must be more than 0")]
    NoTimeout,
    #[error("--rate must be a positive number of requests per second")]
    BadRate,
    #[error("--threads must be at least 1")]
    NoThreads,
}

impl LoadSpec {
    /// Checks what the types alone do not: a run this spec describes can start.
    ///
    /// # Errors
    /// No connections or pipeline, unterminated requests pipelined, a zero timeout, a
    /// rate that is not a positive number, no threads.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.connections == 0 || self.pipeline == 0 {
            return Err(SpecError::NoConnections);
        }
        if self.pipeline > 1 && self.mix.classes.iter().any(|c| !c.terminated()) {
            return Err(SpecError::UnterminatedPipeline);
        }
        if self.timeout.is_zero() {
            return Err(SpecError::NoTimeout);
        }
        if self.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            return Err(SpecError::BadRate);
        }
        if self.threads == 0 {
            return Err(SpecError::NoThreads);
        }
        Ok(())
    }
}

/// Called on a worker thread for every measured reply: (latency from send, reply
/// line, correct).
pub type OnReply = Arc<dyn Fn(Duration, &[u8], bool) + Send + Sync>;

/// What the run did in one measured second, for live views.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// Seconds since the measurement started (0 = the first second).
    pub second: u64,
    /// Correct replies in this second, all classes.
    pub ok: u64,
    /// Errors so far.
    pub errors: u64,
    /// Correct replies in this second, per class.
    pub class_ok: Vec<u64>,
    /// p99 latency (µs, from the intended send time) per class, of the most recent
    /// second every thread has finished (one or two seconds behind).
    pub class_p99_us: Vec<u64>,
}

/// Callbacks for the clients built on the engine (`perf1`, `perf2`, the live views).
#[derive(Default)]
pub struct Hooks<'a> {
    /// Once a second, on the calling thread.
    pub on_second: Option<&'a mut dyn FnMut(&Tick)>,
    /// Checked every few milliseconds on the calling thread; returning true stops the
    /// run as Ctrl-C does (a live view's quit key).
    pub should_stop: Option<&'a mut dyn FnMut() -> bool>,
    pub on_reply: Option<OnReply>,
}

/// How long a refused or broken connection waits before it is opened again.
const RECONNECT_AFTER: Duration = Duration::from_millis(100);
const TIMER: Token = Token(usize::MAX);
/// Latency range the histograms hold: 1 µs to one hour.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Runs the load described by `spec` until it stops by itself or `interrupt` is set
/// (Ctrl-C), and reports what was measured.
pub fn run(
    spec: &LoadSpec,
    interrupt: Arc<AtomicBool>,
    mut hooks: Hooks<'_>,
) -> io::Result<Report> {
    let threads = spec.threads.clamp(1, spec.connections.max(1));
    let start = Instant::now();
    let measure_start = start + spec.warmup;
    let shared = Arc::new(Shared {
        interrupt: interrupt.clone(),
        issued: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        running: AtomicUsize::new(threads),
        class_ok: spec.mix.classes.iter().map(|_| AtomicU64::new(0)).collect(),
        published: Mutex::new(Vec::new()),
    });
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let worker = Worker::new(
                spec,
                t,
                threads,
                measure_start,
                shared.clone(),
                hooks.on_reply.clone(),
            );
            std::thread::Builder::new()
                .name(format!("load-{t}"))
                .spawn(move || worker.run())
        })
        .collect::<io::Result<_>>()?;

    // Progress, once a second of measured time.
    let mut ticker = Ticker {
        second: 0,
        counted: 0,
        class_counted: vec![0; spec.mix.classes.len()],
    };
    while shared.running.load(Ordering::SeqCst) > 0 {
        std::thread::sleep(Duration::from_millis(5));
        if hooks.should_stop.as_mut().is_some_and(|stop| stop()) {
            interrupt.store(true, Ordering::SeqCst);
        }
        if Instant::now() >= measure_start + Duration::from_secs(ticker.second + 1) {
            ticker.tick(&shared, &mut hooks);
        }
    }
    // The workers may finish just before the last tick: report the seconds that ended.
    while Instant::now() >= measure_start + Duration::from_secs(ticker.second + 1)
        && !interrupt.load(Ordering::SeqCst)
        && !matches!(spec.stop, Stop::After(d) if Duration::from_secs(ticker.second) >= d)
    {
        ticker.tick(&shared, &mut hooks);
    }
    let stats: Vec<ThreadStats> = workers
        .into_iter()
        .map(|w| {
            w.join()
                .unwrap_or_else(|_| Err(io::Error::other("a load thread panicked")))
        })
        .collect::<io::Result<_>>()?;
    Ok(merge(
        spec,
        threads,
        measure_start,
        stats,
        interrupt.load(Ordering::SeqCst),
    ))
}

/// Turns the shared counters into one [`Tick`] per second.
struct Ticker {
    second: u64,
    counted: u64,
    class_counted: Vec<u64>,
}

impl Ticker {
    fn tick(&mut self, shared: &Shared, hooks: &mut Hooks<'_>) {
        let ok = shared.ok.load(Ordering::Relaxed);
        let class_now: Vec<u64> = shared
            .class_ok
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let published = shared.published.lock().unwrap_or_else(|p| p.into_inner());
        // The latest second that every thread has moved past is complete.
        let complete = published
            .len()
            .checked_sub(1)
            .and_then(|s| published.get(s.saturating_sub(1)));
        let class_p99_us = (0..class_now.len())
            .map(|c| {
                complete
                    .and_then(|h| h.get(c))
                    .filter(|h| !h.is_empty())
                    .map_or(0, |h| h.value_at_quantile(0.99))
            })
            .collect();
        drop(published);
        let tick = Tick {
            second: self.second,
            ok: ok - self.counted,
            errors: shared.errors.load(Ordering::Relaxed),
            class_ok: class_now
                .iter()
                .zip(&self.class_counted)
                .map(|(n, c)| n - c)
                .collect(),
            class_p99_us,
        };
        if let Some(on_second) = hooks.on_second.as_mut() {
            on_second(&tick);
        }
        self.counted = ok;
        self.class_counted = class_now;
        self.second += 1;
    }
}

/// Counters every worker updates, for progress and for the exact request count.
struct Shared {
    interrupt: Arc<AtomicBool>,
    /// Measured requests sent so far (for `Stop::Requests`).
    issued: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    running: AtomicUsize,
    class_ok: Vec<AtomicU64>,
    /// Per second, per class: latencies the workers have published (each worker adds
    /// a second's histogram once it has moved past that second).
    published: Mutex<Vec<Vec<Histogram<u64>>>>,
}

/// A request on the wire.
struct InFlight {
    class: usize,
    /// When it was due (open loop) or sent (closed loop).
    intended: Instant,
    sent: Instant,
    /// Sent after the warm-up: its reply counts.
    measured: bool,
}

struct Conn {
    /// Position among all the run's connections.
    index: usize,
    stream: Option<mio::net::TcpStream>,
    read_buf: Vec<u8>,
    write_buf: Vec<u8>,
    written: usize,
    in_flight: VecDeque<InFlight>,
    /// Open loop: when this connection's next request is due.
    next_due: Instant,
    /// Closed or refused: when to try connecting again.
    retry_at: Option<Instant>,
    /// When connecting started failing (a server that stays away is given up on
    /// after `timeout`).
    failing_since: Option<Instant>,
    /// A connect in progress, and when it times out.
    connecting: Option<Instant>,
    ever_connected: bool,
    ok: u64,
}

struct ClassStats {
    intended: Histogram<u64>,
    sent: Histogram<u64>,
    ok: u64,
    err_replies: u64,
    wrong: u64,
}

/// One class in one second (2 significant figures: enough for a per-second p99).
struct SecondStats {
    ok: u64,
    errors: u64,
    latency: Histogram<u64>,
}

struct ThreadStats {
    classes: Vec<ClassStats>,
    errors: Errors,
    /// Per second, per class.
    seconds: Vec<Vec<SecondStats>>,
    per_connection: Vec<(usize, u64)>,
    busy: f64,
    last_reply: Option<Instant>,
    stopped_sending: Option<Instant>,
    /// Requests still in flight when a timed run ended (not errors).
    unfinished: u64,
    /// Open loop: requests that fell due but were never sent.
    missed: u64,
}

#[allow(
    clippy::expect_used,
    reason = "constant bounds that hdrhistogram accepts, checked by the unit tests"
)]
fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, sigfig).expect("valid histogram bounds")
}

struct Worker {
    spec: LoadSpec,
    conns: Vec<Conn>,
    measure_start: Instant,
    end: Option<Instant>,
    /// Open loop: time between two requests on one connection.
    interval: Option<Duration>,
    shared: Arc<Shared>,
    on_reply: Option<OnReply>,
    rng: fastrand::Rng,
    stats: ThreadStats,
    /// No more measured requests may be sent (request budget spent).
    exhausted: bool,
    /// Seconds below this are published to `Shared::published`.
    published_to: usize,
    cpu: Option<usize>,
}

impl Worker {
    fn new(
        spec: &LoadSpec,
        thread: usize,
        threads: usize,
        measure_start: Instant,
        shared: Arc<Shared>,
        on_reply: Option<OnReply>,
    ) -> Worker {
        let interval = spec
            .rate
            .map(|rate| Duration::from_secs_f64(spec.connections as f64 / rate.max(1e-9)));
        let first_due = measure_start - spec.warmup;
        let conns = (thread..spec.connections)
            .step_by(threads)
            .map(|index| Conn {
                index,
                stream: None,
                read_buf: Vec::with_capacity(4096),
                write_buf: Vec::new(),
                written: 0,
                in_flight: VecDeque::new(),
                // Spread the connections' schedules evenly over one interval.
                next_due: first_due
                    + interval.map_or(Duration::ZERO, |i| {
                        i.mul_f64(index as f64 / spec.connections as f64)
                    }),
                retry_at: Some(first_due),
                failing_since: None,
                connecting: None,
                ever_connected: false,
                ok: 0,
            })
            .collect();
        let classes = spec.mix.classes.len();
        Worker {
            end: match spec.stop {
                Stop::After(d) => Some(measure_start + d),
                Stop::Requests(_) => None,
            },
            spec: spec.clone(),
            conns,
            measure_start,
            interval,
            shared,
            on_reply,
            rng: fastrand::Rng::with_seed(
                spec.seed ^ (thread as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ),
            stats: ThreadStats {
                classes: (0..classes)
                    .map(|_| ClassStats {
                        intended: histogram(3),
                        sent: histogram(3),
                        ok: 0,
                        err_replies: 0,
                        wrong: 0,
                    })
                    .collect(),
                errors: Errors::default(),
                seconds: Vec::new(),
                per_connection: Vec::new(),
                busy: 0.0,
                last_reply: None,
                stopped_sending: None,
                unfinished: 0,
                missed: 0,
            },
            exhausted: false,
            published_to: 0,
            cpu: spec
                .cpus
                .as_ref()
                .filter(|c| !c.is_empty())
                .map(|c| c[thread % c.len()]),
        }
    }

    fn run(mut self) -> io::Result<ThreadStats> {
        if let Some(cpu) = self.cpu {
            pin_to(cpu)?;
        }
        let (wall, cpu) = (Instant::now(), thread_cpu_time());
        let result = self.event_loop();
        self.publish_seconds(usize::MAX);
        self.stats.busy = match (thread_cpu_time(), cpu) {
            (Some(end), Some(begin)) => {
                (end - begin).as_secs_f64() / wall.elapsed().as_secs_f64().max(1e-9)
            }
            _ => 0.0,
        };
        self.shared.running.fetch_sub(1, Ordering::SeqCst);
        result?;
        self.stats.per_connection = self.conns.iter().map(|c| (c.index, c.ok)).collect();
        Ok(self.stats)
    }

    fn event_loop(&mut self) -> io::Result<()> {
        let mut poll = Poll::new()?;
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        poll.registry()
            .register(&mut SourceFd(&timer.as_fd_raw()), TIMER, Interest::READABLE)?;
        let mut events = Events::with_capacity(1024);
        let mut scratch = vec![0u8; 64 * 1024];
        // When the timer is set to fire; re-armed only when an earlier wake-up is
        // needed, not on every turn (a closed loop turns once per reply).
        let mut armed: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if self.shared.interrupt.load(Ordering::Relaxed) {
                return Ok(());
            }
            let sending = !self.exhausted && self.end.is_none_or(|end| now < end);
            if !sending {
                if self.stats.stopped_sending.is_none() {
                    self.count_unsent_slots();
                }
                if self.stats.stopped_sending.is_none() && matches!(self.spec.stop, Stop::After(_))
                {
                    // A timed run ended while these were on the wire: they are reported
                    // as unfinished now, and their replies, if they come, are read but
                    // not counted (they would fall outside the measured time).
                    for conn in &mut self.conns {
                        for f in conn.in_flight.iter_mut().filter(|f| f.measured) {
                            f.measured = false;
                            self.stats.unfinished += 1;
                        }
                    }
                }
                let stopped = *self.stats.stopped_sending.get_or_insert(now);
                let waiting = self.conns.iter().any(|c| match self.spec.stop {
                    Stop::Requests(_) => c.in_flight.iter().any(|f| f.measured),
                    Stop::After(_) => !c.in_flight.is_empty() && c.stream.is_some(),
                });
                if !waiting {
                    return Ok(());
                }
                if now >= stopped + self.drain() {
                    for conn in &mut self.conns {
                        let left = conn.in_flight.iter().filter(|f| f.measured).count() as u64;
                        // Every request of an exact count must be accounted for.
                        self.stats.errors.timeout += left;
                        conn.in_flight.clear();
                    }
                    return Ok(());
                }
            }
            for i in 0..self.conns.len() {
                self.maintain(i, now, sending, &poll)?;
            }
            if self.spec.spin {
                // Busy-poll: try every socket instead of sleeping in epoll.
                for i in 0..self.conns.len() {
                    if self.conns[i].connecting.is_some() {
                        self.finish_connect(i);
                        continue;
                    }
                    self.read_replies(i, &mut scratch);
                    self.flush(i);
                }
                continue;
            }
            let wake = self.next_deadline(now, sending);
            let now = Instant::now();
            if armed.is_none_or(|at| at <= now || wake < at) {
                let delay = wake
                    .saturating_duration_since(now)
                    .max(Duration::from_nanos(1));
                timer.set(
                    Expiration::OneShot(TimeSpec::from_duration(delay)),
                    TimerSetTimeFlags::empty(),
                )?;
                armed = Some(wake);
            }
            match poll.poll(&mut events, None) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in &events {
                if event.token() == TIMER {
                    let _ = timer.wait(); // clears the expiry; EAGAIN if already cleared
                    armed = None;
                    continue;
                }
                let i = event.token().0;
                if self.conns[i].connecting.is_some() {
                    self.finish_connect(i);
                    // Connected or not, the next turn of the loop sends what is due.
                    continue;
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.read_replies(i, &mut scratch);
                }
                if event.is_writable() {
                    self.flush(i);
                }
            }
        }
    }

    /// Connects, sends what is due, and enforces the timeout on connection `i`.
    fn maintain(&mut self, i: usize, now: Instant, sending: bool, poll: &Poll) -> io::Result<()> {
        if self.conns[i].stream.is_none() {
            if self.conns[i].retry_at.is_some_and(|at| at <= now) && sending {
                self.connect(i, poll)?;
            }
            if self.conns[i].stream.is_none() {
                return Ok(());
            }
        }
        if self.conns[i].connecting.is_some() {
            self.finish_connect(i); // also enforces the connect timeout
            if self.conns[i].connecting.is_some() || self.conns[i].stream.is_none() {
                return Ok(());
            }
        }
        if let Some(oldest) = self.conns[i].in_flight.front() {
            if now.duration_since(oldest.sent) >= self.spec.timeout {
                let lost = self.conns[i]
                    .in_flight
                    .iter()
                    .filter(|f| f.measured)
                    .count() as u64;
                self.stats.errors.timeout += lost;
                self.shared.errors.fetch_add(lost, Ordering::Relaxed);
                self.drop_connection(i, now);
                return Ok(());
            }
        }
        if sending {
            self.send_due(i, now);
        }
        self.flush(i);
        Ok(())
    }

    /// Starts a non-blocking connect: a server that drops SYNs (full backlog) must not
    /// stall the other connections of this thread while the handshake waits.
    fn connect(&mut self, i: usize, poll: &Poll) -> io::Result<()> {
        let now = Instant::now();
        match mio::net::TcpStream::connect(self.spec.addr) {
            Ok(mut stream) => {
                poll.registry().register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                let conn = &mut self.conns[i];
                conn.stream = Some(stream);
                conn.connecting = Some(now + self.spec.timeout);
                conn.retry_at = None;
            }
            Err(e) => self.connect_failed(i, &e),
        }
        Ok(())
    }

    /// A connect in progress: done, failed, or still waiting?
    fn finish_connect(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        let (Some(deadline), Some(stream)) = (conn.connecting, conn.stream.as_ref()) else {
            return;
        };
        let failure = match stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match stream.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::NotConnected && Instant::now() < deadline => {
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    Some(io::ErrorKind::TimedOut.into())
                }
                Err(e) => Some(e),
            },
        };
        match failure {
            Some(e) => {
                conn.stream = None;
                conn.connecting = None;
                self.connect_failed(i, &e);
            }
            None => self.connected(i),
        }
    }

    fn connected(&mut self, i: usize) {
        let now = Instant::now();
        let conn = &mut self.conns[i];
        conn.connecting = None;
        if let Some(stream) = &conn.stream {
            let _ = stream.set_nodelay(true);
        }
        conn.failing_since = None;
        conn.ever_connected = true;
        conn.read_buf.clear();
        conn.write_buf.clear();
        conn.written = 0;
        // The requests that fell due while the connection was down are not sent late
        // (that would bunch them up): they are counted as missed, and the schedule
        // resumes from now.
        if let Some(interval) = self.interval {
            let from = conn.next_due.max(self.measure_start);
            if from < now {
                self.stats.missed += slots(now - from, interval);
            }
        }
        conn.next_due = conn.next_due.max(now);
    }

    fn connect_failed(&mut self, i: usize, e: &io::Error) {
        let now = Instant::now();
        if now >= self.measure_start {
            self.stats.errors.connect += 1;
            self.shared.errors.fetch_add(1, Ordering::Relaxed);
        }
        let conn = &mut self.conns[i];
        let since = *conn.failing_since.get_or_insert(now);
        // Nobody listening at the start is an answer, not a hiccup; a server that went
        // away is retried until the timeout.
        let give_up = (!conn.ever_connected && e.kind() == io::ErrorKind::ConnectionRefused)
            || now.duration_since(since) >= self.spec.timeout;
        conn.retry_at = if give_up {
            None
        } else {
            Some(now + RECONNECT_AFTER)
        };
        if give_up
            && self
                .conns
                .iter()
                .all(|c| c.stream.is_none() && c.retry_at.is_none())
        {
            self.exhausted = true; // no connection left to send on
        }
    }

    fn drop_connection(&mut self, i: usize, now: Instant) {
        let conn = &mut self.conns[i];
        conn.stream = None; // closing deregisters it
        conn.in_flight.clear();
        conn.retry_at = Some(now);
    }

    /// Queues every request due on connection `i`.
    fn send_due(&mut self, i: usize, now: Instant) {
        loop {
            let conn = &self.conns[i];
            let intended = match self.interval {
                None if conn.in_flight.len() < self.spec.pipeline.max(1) => now,
                Some(_)
                    if conn.next_due <= now && conn.in_flight.len() < self.spec.pipeline.max(1) =>
                {
                    conn.next_due
                }
                _ => return,
            };
            let measured = intended >= self.measure_start;
            if measured {
                if let Stop::Requests(budget) = self.spec.stop {
                    if self.shared.issued.fetch_add(1, Ordering::Relaxed) >= budget {
                        self.exhausted = true;
                        return;
                    }
                }
            }
            let class = self
                .spec
                .mix
                .pick(self.rng.u64(0..self.spec.mix.total_weight()));
            let conn = &mut self.conns[i];
            conn.write_buf
                .extend_from_slice(&self.spec.mix.classes[class].request);
            conn.in_flight.push_back(InFlight {
                class,
                intended,
                sent: Instant::now(),
                measured,
            });
            if let Some(interval) = self.interval {
                conn.next_due += interval;
            }
        }
    }

    fn flush(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        let Some(stream) = conn.stream.as_mut() else {
            return;
        };
        while conn.written < conn.write_buf.len() {
            match stream.write(&conn.write_buf[conn.written..]) {
                Ok(0) => break,
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.connection_failed(i),
            }
        }
        conn.write_buf.clear();
        conn.written = 0;
    }

    /// The connection broke: its measured requests in flight are lost.
    fn connection_failed(&mut self, i: usize) {
        let lost = self.conns[i]
            .in_flight
            .iter()
            .filter(|f| f.measured)
            .count() as u64;
        self.stats.errors.reset += lost;
        self.shared.errors.fetch_add(lost, Ordering::Relaxed);
        let retry = Instant::now() + RECONNECT_AFTER;
        self.drop_connection(i, retry);
    }

    fn read_replies(&mut self, i: usize, scratch: &mut [u8]) {
        loop {
            let Some(stream) = self.conns[i].stream.as_mut() else {
                return;
            };
            match stream.read(scratch) {
                Ok(0) => return self.connection_failed(i),
                Ok(n) => {
                    self.conns[i].read_buf.extend_from_slice(&scratch[..n]);
                    self.take_lines(i);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.connection_failed(i),
            }
        }
    }

    /// Matches every complete reply line with the oldest request in flight.
    fn take_lines(&mut self, i: usize) {
        let now = Instant::now();
        let mut consumed = 0;
        while let Some(pos) = self.conns[i].read_buf[consumed..]
            .iter()
            .position(|&b| b == b'\n')
        {
            let end = consumed + pos;
            let line_start = consumed;
            consumed = end + 1;
            let Some(request) = self.conns[i].in_flight.pop_front() else {
                continue; // a reply to nothing: the server talks out of turn; ignore it
            };
            if !request.measured {
                continue;
            }
            if self.end.is_some_and(|end| now > end) {
                // Answered after the measured time: it was in flight at the end.
                self.stats.unfinished += 1;
                continue;
            }
            let line = &self.conns[i].read_buf[line_start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let class = &self.spec.mix.classes[request.class];
            let is_err = line.starts_with(b"ERR");
            let correct = !is_err && class.expected.as_deref().is_none_or(|e| e == line);
            if let Some(on_reply) = &self.on_reply {
                on_reply(now.duration_since(request.sent), line, correct);
            }
            let second = now.saturating_duration_since(self.measure_start).as_secs() as usize;
            let classes = self.spec.mix.classes.len();
            while self.stats.seconds.len() <= second {
                self.stats.seconds.push(
                    (0..classes)
                        .map(|_| SecondStats {
                            ok: 0,
                            errors: 0,
                            latency: histogram(2),
                        })
                        .collect(),
                );
            }
            if second > self.published_to {
                self.publish_seconds(second);
            }
            let per_second = &mut self.stats.seconds[second][request.class];
            let stats = &mut self.stats.classes[request.class];
            if correct {
                let intended = micros(now.duration_since(request.intended));
                stats.ok += 1;
                stats.intended.saturating_record(intended);
                stats
                    .sent
                    .saturating_record(micros(now.duration_since(request.sent)));
                per_second.ok += 1;
                per_second.latency.saturating_record(intended);
                self.conns[i].ok += 1;
                self.shared.ok.fetch_add(1, Ordering::Relaxed);
                self.shared.class_ok[request.class].fetch_add(1, Ordering::Relaxed);
                self.stats.last_reply = Some(now);
            } else {
                if is_err {
                    stats.err_replies += 1;
                    self.stats.errors.err_reply += 1;
                } else {
                    stats.wrong += 1;
                    self.stats.errors.wrong += 1;
                }
                per_second.errors += 1;
                self.shared.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.conns[i].read_buf.drain(..consumed);
    }

    /// Open loop, at the end of a timed run: the slots that fell due before the end but
    /// could not be sent (the connection was full or down) are missed requests.
    fn count_unsent_slots(&mut self) {
        let (Some(interval), Some(end)) = (self.interval, self.end) else {
            return;
        };
        for conn in &self.conns {
            let from = conn.next_due.max(self.measure_start);
            if from < end {
                self.stats.missed += slots(end - from, interval);
            }
        }
    }

    /// Adds this thread's latencies of the seconds before `until` to the shared
    /// per-second histograms that live views read.
    fn publish_seconds(&mut self, until: usize) {
        let until = until.min(self.stats.seconds.len());
        if until <= self.published_to {
            return;
        }
        let mut published = self
            .shared
            .published
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for second in self.published_to..until {
            while published.len() <= second {
                published.push(self.spec.mix.classes.iter().map(|_| histogram(2)).collect());
            }
            for (shared, mine) in published[second]
                .iter_mut()
                .zip(&self.stats.seconds[second])
            {
                let _ = shared.add(&mine.latency);
            }
        }
        self.published_to = until;
    }

    /// How long to wait for replies once sending has stopped: an exact count waits
    /// for every reply (up to the timeout). A timed run's figures end at its end, but
    /// its connections close only once the replies still on the wire are in (up to a
    /// second): closing on an unread reply sends the server a reset, and some servers
    /// (the seeds' aserver.py, one_server.py) die of one.
    fn drain(&self) -> Duration {
        match self.spec.stop {
            Stop::Requests(_) => self.spec.timeout,
            Stop::After(_) => self.spec.timeout.min(Duration::from_secs(1)),
        }
    }

    /// The earliest moment the loop must act without being woken by a socket.
    fn next_deadline(&self, now: Instant, sending: bool) -> Instant {
        let mut wake = now + Duration::from_millis(100);
        if let Some(end) = self.end {
            wake = wake.min(end.max(now));
        }
        if let Some(stopped) = self.stats.stopped_sending {
            wake = wake.min(stopped + self.drain());
        }
        for conn in &self.conns {
            if let Some(retry) = conn.retry_at {
                wake = wake.min(retry);
            }
            if let Some(deadline) = conn.connecting {
                wake = wake.min(deadline);
            }
            if let Some(oldest) = conn.in_flight.front() {
                wake = wake.min(oldest.sent + self.spec.timeout);
            }
            if sending
                && self.interval.is_some()
                && conn.stream.is_some()
                && conn.in_flight.len() < self.spec.pipeline.max(1)
            {
                wake = wake.min(conn.next_due);
            }
        }
        wake
    }
}

trait RawTimer {
    fn as_fd_raw(&self) -> std::os::fd::RawFd;
}

impl RawTimer for TimerFd {
    fn as_fd_raw(&self) -> std::os::fd::RawFd {
        std::os::fd::AsFd::as_fd(self).as_raw_fd()
    }
}

/// How many schedule slots of `interval` fit in `span` (rounded up).
fn slots(span: Duration, interval: Duration) -> u64 {
    let interval = interval.as_nanos().max(1);
    u64::try_from(span.as_nanos().div_ceil(interval)).unwrap_or(u64::MAX)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn pin_to(cpu: usize) -> io::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)
        .map_err(|e| io::Error::other(format!("--cpus: CPU {cpu} does not exist: {e}")))?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .map_err(|e| io::Error::other(format!("--cpus: cannot pin to CPU {cpu}: {e}")))
}

/// CPU time (user + system) of the calling thread.
fn thread_cpu_time() -> Option<Duration> {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_THREAD).ok()?;
    let to_duration =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    Some(to_duration(usage.user_time()) + to_duration(usage.system_time()))
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        min: h.min(),
        mean: (h.mean() * 10.0).round() / 10.0,
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p99_9: h.value_at_quantile(0.999),
        p99_99: h.value_at_quantile(0.9999),
        max: h.max(),
    }
}

/// HdrHistogram V2 + DEFLATE, base64: the interchange format of HdrHistogram libraries.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    match V2DeflateSerializer::new().serialize(h, &mut bytes) {
        Ok(_) => base64::engine::general_purpose::STANDARD.encode(bytes),
        Err(_) => String::new(),
    }
}

fn merge(
    spec: &LoadSpec,
    threads: usize,
    measure_start: Instant,
    stats: Vec<ThreadStats>,
    interrupted: bool,
) -> Report {
    let classes = spec.mix.classes.len();
    let mut intended: Vec<Histogram<u64>> = (0..classes).map(|_| histogram(3)).collect();
    let mut sent: Vec<Histogram<u64>> = (0..classes).map(|_| histogram(3)).collect();
    let mut counts = vec![(0u64, 0u64, 0u64); classes];
    let mut errors = Errors::default();
    let mut per_connection = vec![0u64; spec.connections];
    let seconds_len = stats.iter().map(|s| s.seconds.len()).max().unwrap_or(0);
    let mut seconds: Vec<Vec<(u64, u64, Histogram<u64>)>> = (0..seconds_len)
        .map(|_| (0..classes).map(|_| (0, 0, histogram(2))).collect())
        .collect();
    let mut unfinished = 0;
    let mut missed = 0;
    let mut last_reply = None::<Instant>;
    let mut stopped = None::<Instant>;
    for s in &stats {
        for (c, cs) in s.classes.iter().enumerate() {
            let _ = intended[c].add(&cs.intended);
            let _ = sent[c].add(&cs.sent);
            counts[c].0 += cs.ok;
            counts[c].1 += cs.err_replies;
            counts[c].2 += cs.wrong;
        }
        errors.add(&s.errors);
        unfinished += s.unfinished;
        missed += s.missed;
        for &(index, ok) in &s.per_connection {
            per_connection[index] += ok;
        }
        for (t, classes) in s.seconds.iter().enumerate() {
            for (c, ss) in classes.iter().enumerate() {
                seconds[t][c].0 += ss.ok;
                seconds[t][c].1 += ss.errors;
                let _ = seconds[t][c].2.add(&ss.latency);
            }
        }
        last_reply = last_reply.max(s.last_reply);
        stopped = stopped.max(s.stopped_sending);
    }
    let measured = match spec.stop {
        Stop::After(d) if !interrupted => d,
        _ => last_reply.or(stopped).map_or(Duration::ZERO, |t| {
            t.saturating_duration_since(measure_start)
        }),
    };
    let whole_seconds = measured.as_secs() as usize;
    let requests_ok: u64 = counts.iter().map(|c| c.0).sum();
    let thread_busy: Vec<f64> = stats
        .iter()
        .map(|s| (s.busy * 1000.0).round() / 1000.0)
        .collect();
    let likely_bottleneck = !spec.spin && thread_busy.iter().any(|&b| b > 0.9);
    let mut notes = Vec::new();
    if likely_bottleneck {
        notes.push("a client thread was over 90% busy: the client may limit these figures; try more --threads, or fewer connections per thread".into());
    }
    if spec.spin {
        notes.push(
            "--spin: client threads busy-polled their sockets (no wake-up latency, one core each)"
                .into(),
        );
    }
    // Over 1% of what was answered: the server (or the client) could not keep the rate.
    if missed * 100 > requests_ok {
        notes.push(format!(
            "{missed} requests fell due but were never sent (a connection was down, or still full at the end): the server took less than the asked rate"
        ));
    }
    if interrupted {
        notes.push("interrupted: these are the figures up to the interruption".into());
    }
    if requests_ok == 0 && errors.connect > 0 {
        notes.push(format!(
            "no reply at all: {} connection attempts failed; is a server listening on {}?",
            errors.connect, spec.addr
        ));
    }
    Report {
        schema: report::SCHEMA_VERSION,
        target: spec.addr.to_string(),
        mode: if spec.rate.is_some() {
            "open"
        } else {
            "closed"
        }
        .into(),
        connections: spec.connections,
        pipeline: spec.pipeline.max(1),
        rate: spec.rate,
        threads,
        spin: spec.spin,
        cpus: spec.cpus.clone(),
        seed: spec.seed,
        warmup_s: spec.warmup.as_secs_f64(),
        measured_s: (measured.as_secs_f64() * 1000.0).round() / 1000.0,
        throughput_rps: if measured.is_zero() {
            0.0
        } else {
            (requests_ok as f64 / measured.as_secs_f64()).round()
        },
        requests_ok,
        errors,
        unfinished,
        missed,
        classes: spec
            .mix
            .classes
            .iter()
            .enumerate()
            .map(|(c, class)| ClassReport {
                label: class.label.clone(),
                weight: class.weight,
                requests_ok: counts[c].0,
                err_replies: counts[c].1,
                wrong: counts[c].2,
                latency_us: percentiles(&intended[c]),
                latency_sent_us: percentiles(&sent[c]),
                histogram: encode_histogram(&intended[c]),
                histogram_sent: encode_histogram(&sent[c]),
            })
            .collect(),
        per_connection,
        per_second: seconds
            .into_iter()
            .take(whole_seconds)
            .enumerate()
            .map(|(t, classes)| SecondReport {
                second: t as u64,
                classes: classes
                    .into_iter()
                    .zip(&spec.mix.classes)
                    .map(|((ok, errors, h), class)| SecondClass {
                        label: class.label.clone(),
                        requests_ok: ok,
                        p99_us: if h.is_empty() {
                            0
                        } else {
                            h.value_at_quantile(0.99)
                        },
                        errors,
                    })
                    .collect(),
            })
            .collect(),
        client: ClientCost {
            thread_busy,
            likely_bottleneck,
        },
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_slots_round_up() {
        let ms = Duration::from_millis;
        assert_eq!(slots(ms(10), ms(1)), 10);
        assert_eq!(slots(ms(10), ms(3)), 4);
        assert_eq!(slots(Duration::ZERO, ms(3)), 0);
        assert_eq!(slots(ms(1), Duration::ZERO), 1_000_000);
    }

    #[test]
    fn percentiles_of_an_empty_histogram_are_zero() {
        assert_eq!(percentiles(&histogram(3)), Percentiles::default());
        let mut h = histogram(3);
        for v in 1..=100 {
            h.record(v).unwrap();
        }
        let p = percentiles(&h);
        assert_eq!((p.min, p.p50, p.p99, p.max), (1, 50, 99, 100));
    }
}
