//! One load thread: its share of the run's connections, one mio (epoll) loop over
//! them. Closed loop: keep `--pipeline` requests in flight per connection. Open loop:
//! send each request when it falls due, woken by a timerfd. Every reply is checked and
//! its latency recorded per class, from when it was due and from when it was sent.
//!
//! A turn of the loop touches only the connections it must: those with socket events,
//! and (open loop) those whose next request fell due, taken in order from a calendar
//! queue (a min-heap of due times, one entry per connection that can send). Everything
//! that is slow to change (connects, reconnects, timeouts) is looked at for all the
//! connections together in a sweep, at most every [`SWEEP`] or sooner when a deadline
//! asks. So the client's cost per request does not grow with its connections.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Write as _};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use super::spec::{LoadSpec, OnReply, Stop};
use super::stats::{Calls, Shared, ThreadCost, ThreadStats, histogram};
use crate::cpu;

mod lifecycle;
mod reply;
mod schedule;

use reply::WallToMonotonic;

/// How long a refused or broken connection waits before it is opened again.
const RECONNECT_AFTER: Duration = Duration::from_millis(100);
const TIMER: Token = Token(usize::MAX);
/// The longest a connection goes unlooked-at as a whole (connect, retry, timeout); its
/// requests and replies are handled as they come, not at this pace. A reply later than
/// `--timeout` is a timeout whenever it is read, so the sweep's pace changes no figure.
const SWEEP: Duration = Duration::from_millis(10);

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

pub struct Worker {
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
    /// This thread's cost when the measured window opened.
    window_open: Option<ThreadCost>,
    cpu: Option<usize>,
    /// Open loop: the calendar, `(due, connection)`, earliest first. An entry whose
    /// connection's schedule moved since (`next_due` differs) is stale and skipped.
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    /// When the next sweep over every connection is due.
    sweep_at: Instant,
    tick: Duration,
    /// Converts the kernel's receive stamps (wall clock) to `Instant`s.
    clock: WallToMonotonic,
    /// The control-message buffer of a stamped read, reused.
    cmsg: Vec<u8>,
    /// Connections whose socket still held bytes when their read turn ended
    /// ([`reply::MOST_READS_PER_TURN`]): read again on the next turn, before any wait.
    reread: Vec<usize>,
    /// The system calls made so far on the steady path (the window's share is in
    /// `stats.window`).
    calls: Calls,
}

impl Worker {
    pub fn new(
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
        // This thread's share of this agent's connections; each keeps its index in the
        // whole load, and with it its place in the shared schedule.
        let conns = spec
            .own_connections()
            .into_iter()
            .skip(thread)
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
                spec.seed
                    ^ (thread as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    // Agents of one split draw different request sequences.
                    ^ (spec.segment().index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
            ),
            stats: ThreadStats::new(classes),
            exhausted: false,
            published_to: 0,
            window_open: None,
            cpu: spec
                .cpus
                .as_ref()
                .filter(|c| !c.is_empty())
                .map(|c| c[thread % c.len()]),
            due: BinaryHeap::new(),
            sweep_at: Instant::now(),
            clock: WallToMonotonic::now(),
            cmsg: reply::stamp_space(),
            reread: Vec::new(),
            tick: spec.tick,
            calls: Calls::default(),
        }
    }

    pub fn run(mut self) -> io::Result<ThreadStats> {
        if let Some(cpu) = self.cpu {
            cpu::pin_current_thread(cpu).map_err(|e| io::Error::other(format!("--cpus: {e}")))?;
        }
        let (wall, cpu) = (Instant::now(), cpu::thread_time());
        let result = self.event_loop();
        self.publish_seconds(usize::MAX);
        self.stats.busy = match (cpu::thread_time(), cpu) {
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
        if self.ticked() {
            // The tick is the schedule's precision: the kernel's default 50 µs slack on
            // a sleep would add to it.
            let _ = nix::sys::prctl::set_timerslack(1);
        }
        loop {
            let now = Instant::now();
            if self.shared.interrupt.load(Ordering::Relaxed) {
                return Ok(());
            }
            let sending = !self.exhausted && self.end.is_none_or(|end| now < end);
            if self.window_open.is_none() && now >= self.measure_start && sending {
                self.window_open = self.cost_so_far();
            }
            if !sending {
                if self.stats.stopped_sending.is_none()
                    && let (Some(open), Some(close)) = (self.window_open, self.cost_so_far())
                {
                    self.stats.window = Some(close.since(&open));
                }
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
            if !sending || self.spec.spin || now >= self.sweep_at {
                self.sweep_at = now + SWEEP;
                for i in 0..self.conns.len() {
                    self.maintain(i, now, sending, &poll)?;
                }
                self.sweep_at = self.sweep_at.min(self.slow_deadline());
            } else {
                // Only the connections whose next request fell due.
                while let Some(&Reverse((due, i))) = self.due.peek() {
                    if due > now {
                        break;
                    }
                    self.due.pop();
                    if self.conns[i].next_due == due {
                        self.maintain(i, now, sending, &poll)?;
                    }
                }
            }
            if !self.reread.is_empty() {
                // A peer that sends faster than one turn reads: its next share now, and
                // round again (so the clock and the interrupt are looked at between).
                for i in std::mem::take(&mut self.reread) {
                    self.read_replies(i, &mut scratch);
                }
                continue;
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
            let wake = self.on_grid(self.next_deadline(now, sending));
            let now = Instant::now();
            let timeout = match sending && self.ticked() {
                true => {
                    // Ticked: sleep to the next tick, then look at the sockets without
                    // waiting. A reply that came meanwhile waited in its socket, stamped
                    // by the kernel as it arrived; with requests in flight the loop looks
                    // every tick, so a full connection's next request is not held up.
                    let wake = match self.conns.iter().any(|c| !c.in_flight.is_empty()) {
                        true => wake.min(self.on_grid(now + Duration::from_nanos(1))),
                        false => wake,
                    };
                    if wake > now {
                        self.calls.sleep += 1;
                        std::thread::sleep(wake - now);
                    }
                    Some(Duration::ZERO)
                }
                // Already due (a busy loop): look at the sockets and go round again,
                // without arming the timer (each arming is a system call, and on a VM
                // a timer programmed in the hardware).
                false if wake <= now => Some(Duration::ZERO),
                false => {
                    if armed.is_none_or(|at| at <= now || wake < at) {
                        let delay = wake
                            .saturating_duration_since(now)
                            .max(Duration::from_nanos(1));
                        self.calls.timer += 1;
                        timer.set(
                            Expiration::OneShot(TimeSpec::from_duration(delay)),
                            TimerSetTimeFlags::empty(),
                        )?;
                        armed = Some(wake);
                    }
                    None
                }
            };
            self.calls.poll += 1;
            match poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for event in &events {
                if event.token() == TIMER {
                    // Not read: the registration is edge-triggered, so each expiry is a
                    // new event whether or not the last one was read (a system call
                    // saved per wake-up).
                    armed = None;
                    continue;
                }
                let i = event.token().0;
                if self.conns[i].connecting.is_some() {
                    self.finish_connect(i);
                    if self.conns[i].connecting.is_none() && self.conns[i].stream.is_some() {
                        self.maintain(i, now, sending, &poll)?;
                    }
                    continue;
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.read_replies(i, &mut scratch);
                }
                if event.is_writable() {
                    self.flush(i);
                }
                // Closed loop: a reply makes room for the next request, sent now.
                if self.interval.is_none() && sending {
                    self.maintain(i, now, sending, &poll)?;
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
        // A request without a reply within --timeout of when it was due is a timeout.
        if let Some(oldest) = self.conns[i].in_flight.front()
            && now.duration_since(oldest.intended) >= self.spec.timeout
        {
            match self.interval {
                // Open loop: the schedule goes on. Each expired request counts once as a
                // timeout; the connection stays (its late replies are read and not
                // counted), so requests due meanwhile are timeouts or late replies,
                // never slots missed to a reconnect.
                Some(_) => self.expire_in_flight(i, now),
                // Closed loop: the request holds the connection's turn; a new
                // connection gets the next one.
                None => {
                    let lost = self.conns[i]
                        .in_flight
                        .iter()
                        .filter(|f| f.measured)
                        .count() as u64;
                    self.count_timeouts(lost);
                    self.drop_connection(i, now);
                    return Ok(());
                }
            }
        }
        if sending {
            self.send_due(i, now);
        }
        self.flush(i);
        Ok(())
    }

    /// This thread's cost so far: the kernel's figures and the calls counted here.
    fn cost_so_far(&self) -> Option<ThreadCost> {
        ThreadCost::of_this_thread().map(|cost| ThreadCost {
            calls: self.calls,
            ..cost
        })
    }

    /// Counts `n` requests as timeouts.
    fn count_timeouts(&mut self, n: u64) {
        self.stats.errors.timeout += n;
        self.shared.errors.fetch_add(n, Ordering::Relaxed);
    }

    fn flush(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        let Some(stream) = conn.stream.as_mut() else {
            return;
        };
        while conn.written < conn.write_buf.len() {
            self.calls.send += 1;
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

#[cfg(test)]
mod tests;
