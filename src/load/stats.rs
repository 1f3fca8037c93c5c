//! What the load threads record: each worker's own [`ThreadStats`] (merged into the
//! report at the end, see [`super::report::Report::from_threads`]), and the [`Shared`]
//! counters every worker updates for progress and for an exact request count.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer as _, V2DeflateSerializer};

use serde::Serialize;

/// Failed requests and connections, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Errors {
    /// Connection attempts refused or failed.
    pub connect: u64,
    /// Requests lost to a reset or closed connection.
    pub reset: u64,
    /// Requests without a reply within `--timeout` of when they were due (sent late or
    /// not at all because the server stalled, in an open loop); counted once, and not
    /// in the latency percentiles.
    pub timeout: u64,
    /// `ERR ...` replies.
    pub err_reply: u64,
    /// Replies that are not the right fib(n).
    pub wrong: u64,
}

impl Errors {
    /// Everything counted, connection attempts included.
    pub fn total(&self) -> u64 {
        self.connect + self.failed_requests()
    }

    /// Requests that got no correct reply (connection attempts are not requests).
    pub fn failed_requests(&self) -> u64 {
        self.reset + self.timeout + self.err_reply + self.wrong
    }

    pub fn add(&mut self, other: &Errors) {
        self.connect += other.connect;
        self.reset += other.reset;
        self.timeout += other.timeout;
        self.err_reply += other.err_reply;
        self.wrong += other.wrong;
    }
}

/// Latency range the histograms hold: 1 µs to one hour.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Counters every worker updates, for progress and for the exact request count.
pub struct Shared {
    pub interrupt: Arc<AtomicBool>,
    /// Measured requests sent so far (for `Stop::Requests`).
    pub issued: AtomicU64,
    pub ok: AtomicU64,
    pub errors: AtomicU64,
    pub running: AtomicUsize,
    pub class_ok: Vec<AtomicU64>,
    /// Per second, per class: latencies the workers have published (each worker adds
    /// a second's histogram once it has moved past that second).
    pub published: Mutex<Vec<Vec<Histogram<u64>>>>,
}

pub struct ClassStats {
    /// Exact extremes, µs (the histograms keep values only to their precision):
    /// `(min, max)` from the due time and from the send time; `None` before any reply.
    pub intended_range: Option<(u64, u64)>,
    pub sent_range: Option<(u64, u64)>,
    pub intended: Histogram<u64>,
    pub sent: Histogram<u64>,
    pub ok: u64,
    pub err_replies: u64,
    pub wrong: u64,
}

/// One class in one second (2 significant figures: enough for a per-second p99).
pub struct SecondStats {
    pub ok: u64,
    pub errors: u64,
    pub latency: Histogram<u64>,
}

pub struct ThreadStats {
    pub classes: Vec<ClassStats>,
    pub errors: Errors,
    /// Per second, per class.
    pub seconds: Vec<Vec<SecondStats>>,
    pub per_connection: Vec<(usize, u64)>,
    pub busy: f64,
    pub last_reply: Option<Instant>,
    pub stopped_sending: Option<Instant>,
    /// Every connection of this thread was given up (refused, or down for `--timeout`):
    /// it stopped before the run's end.
    pub gave_up: bool,
    /// Measured requests queued to be written, counted as each is made: every one ends
    /// as exactly one reply, error, timeout or unfinished request (closed loop).
    pub sent: u64,
    /// Requests still in flight when a timed run ended (not errors).
    pub unfinished: u64,
    /// Open loop: requests that fell due but were never sent.
    pub missed: u64,
    /// What this thread spent over the measured window (read as it opened and as
    /// sending stopped); `None` where the window did not both open and close.
    pub window: Option<ThreadCost>,
}

/// What load threads spent over the measured window, summed: the client's side of a
/// request's cost (`getrusage(RUSAGE_THREAD)`).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ThreadCost {
    /// CPU time, user and system, seconds.
    pub cpu_s: f64,
    /// Voluntary context switches: the thread blocked (in `epoll_wait`) and was woken.
    pub sleeps: u64,
    /// Involuntary context switches: the thread was preempted.
    pub preempted: u64,
    /// The system calls of the load's steady path, counted by the load threads
    /// themselves (`getrusage` has no such count); zero in a reading of the kernel's
    /// figures alone ([`of_this_thread`](Self::of_this_thread)).
    #[serde(default)]
    pub calls: Calls,
}

/// The system calls a load thread makes on its steady path, by kind: what a request
/// costs the client besides the kernel's TCP work. Connecting, reconnecting and closing
/// are not counted (they are not per request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Calls {
    /// `write` on a connection (its due requests in one call), those that found the
    /// socket full included.
    pub send: u64,
    /// `read` or `recvmsg` on a connection, those that found nothing (`EAGAIN`)
    /// included.
    pub receive: u64,
    /// `epoll_wait`, with or without a timeout.
    pub poll: u64,
    /// `clock_nanosleep` to the next tick (`--tick`).
    pub sleep: u64,
    /// `timerfd_settime`: the open loop's timer armed for the next request due.
    pub timer: u64,
}

impl Calls {
    /// Every call counted.
    pub fn total(&self) -> u64 {
        self.send + self.receive + self.poll + self.sleep + self.timer
    }

    /// What was counted between `earlier` and `self`.
    pub fn since(&self, earlier: &Calls) -> Calls {
        Calls {
            send: self.send.saturating_sub(earlier.send),
            receive: self.receive.saturating_sub(earlier.receive),
            poll: self.poll.saturating_sub(earlier.poll),
            sleep: self.sleep.saturating_sub(earlier.sleep),
            timer: self.timer.saturating_sub(earlier.timer),
        }
    }

    /// `self` and `other` added.
    pub fn plus(&self, other: &Calls) -> Calls {
        Calls {
            send: self.send + other.send,
            receive: self.receive + other.receive,
            poll: self.poll + other.poll,
            sleep: self.sleep + other.sleep,
            timer: self.timer + other.timer,
        }
    }
}

impl ThreadCost {
    /// The calling thread's totals so far; `None` where the kernel cannot say.
    pub fn of_this_thread() -> Option<ThreadCost> {
        use nix::sys::resource::{UsageWho, getrusage};
        let usage = getrusage(UsageWho::RUSAGE_THREAD).ok()?;
        let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        Some(ThreadCost {
            cpu_s: seconds(usage.user_time()) + seconds(usage.system_time()),
            sleeps: usage.voluntary_context_switches() as u64,
            preempted: usage.involuntary_context_switches() as u64,
            calls: Calls::default(),
        })
    }

    /// What was spent between `earlier` and `self`.
    pub fn since(&self, earlier: &ThreadCost) -> ThreadCost {
        ThreadCost {
            cpu_s: (self.cpu_s - earlier.cpu_s).max(0.0),
            sleeps: self.sleeps.saturating_sub(earlier.sleeps),
            preempted: self.preempted.saturating_sub(earlier.preempted),
            calls: self.calls.since(&earlier.calls),
        }
    }

    /// The sum of `costs`.
    pub fn sum<'a>(costs: impl IntoIterator<Item = &'a ThreadCost>) -> ThreadCost {
        costs
            .into_iter()
            .fold(ThreadCost::default(), |a, c| ThreadCost {
                cpu_s: a.cpu_s + c.cpu_s,
                sleeps: a.sleeps + c.sleeps,
                preempted: a.preempted + c.preempted,
                calls: a.calls.plus(&c.calls),
            })
    }
}

#[allow(
    clippy::expect_used,
    reason = "constant bounds that hdrhistogram accepts, checked by the unit tests"
)]
pub fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, sigfig).expect("valid histogram bounds")
}

/// HdrHistogram V2 + DEFLATE, base64: the interchange format of HdrHistogram libraries.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    match V2DeflateSerializer::new().serialize(h, &mut bytes) {
        Ok(_) => base64::engine::general_purpose::STANDARD.encode(bytes),
        Err(_) => String::new(),
    }
}

/// A histogram in a report that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistogramError {
    #[error("not base64: {0}")]
    Base64(String),
    #[error("not an HdrHistogram V2: {0}")]
    Format(String),
}

/// The inverse of [`encode_histogram`].
///
/// # Errors
/// Not base64, or not an HdrHistogram V2 (with or without DEFLATE); the error says which.
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, HistogramError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| HistogramError::Base64(e.to_string()))?;
    hdrhistogram::serialization::Deserializer::new()
        .deserialize::<u64, _>(&mut bytes.as_slice())
        .map_err(|e| HistogramError::Format(format!("{e:?}")))
}

/// How long a correct reply took: from when its request was due, and from when it was
/// sent (they differ when the client had to wait to send it).
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub intended: Duration,
    pub sent: Duration,
}

/// What a measured reply was.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Ok(Latency),
    /// An `ERR` line.
    ErrReply,
    /// Not the expected reply.
    Wrong,
}

impl ThreadStats {
    /// Empty records for `classes` request classes.
    pub fn new(classes: usize) -> ThreadStats {
        ThreadStats {
            classes: (0..classes)
                .map(|_| ClassStats {
                    intended_range: None,
                    sent_range: None,
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
            gave_up: false,
            sent: 0,
            unfinished: 0,
            window: None,
            missed: 0,
        }
    }

    /// Records one measured reply of `class`, in measured second `second`, at `now`.
    pub fn record(&mut self, class: usize, second: usize, outcome: Outcome, now: Instant) {
        let classes = self.classes.len();
        while self.seconds.len() <= second {
            self.seconds.push(
                (0..classes)
                    .map(|_| SecondStats {
                        ok: 0,
                        errors: 0,
                        latency: histogram(2),
                    })
                    .collect(),
            );
        }
        // Any reply ends the measured time, an error reply too.
        self.last_reply = Some(now);
        let per_second = &mut self.seconds[second][class];
        let stats = &mut self.classes[class];
        match outcome {
            Outcome::Ok(latency) => {
                let (intended, sent) = (micros(latency.intended), micros(latency.sent));
                stats.ok += 1;
                stats.intended.saturating_record(intended);
                stats.sent.saturating_record(sent);
                stats.intended_range = Some(widen(stats.intended_range, intended));
                stats.sent_range = Some(widen(stats.sent_range, sent));
                per_second.ok += 1;
                per_second.latency.saturating_record(intended);
            }
            Outcome::ErrReply => {
                stats.err_replies += 1;
                self.errors.err_reply += 1;
                per_second.errors += 1;
            }
            Outcome::Wrong => {
                stats.wrong += 1;
                self.errors.wrong += 1;
                per_second.errors += 1;
            }
        }
    }
}

/// `range` widened to hold `value`.
pub fn widen(range: Option<(u64, u64)>, value: u64) -> (u64, u64) {
    range.map_or((value, value), |(lo, hi)| (lo.min(value), hi.max(value)))
}

/// Whole microseconds, at least 1 (the histograms' lowest value).
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_recorded_per_class_and_second() {
        let mut stats = ThreadStats::new(2);
        let now = Instant::now();
        let fast = Latency {
            intended: Duration::from_micros(30),
            sent: Duration::from_micros(20),
        };
        stats.record(0, 0, Outcome::Ok(fast), now);
        stats.record(1, 2, Outcome::ErrReply, now);
        stats.record(1, 2, Outcome::Wrong, now);
        assert_eq!(stats.seconds.len(), 3);
        assert_eq!(stats.classes[0].ok, 1);
        assert_eq!(stats.classes[0].intended.max(), 30);
        assert_eq!(stats.classes[0].sent.max(), 20);
        assert_eq!(stats.classes[0].intended_range, Some((30, 30)));
        assert_eq!(widen(Some((5, 9)), 2), (2, 9));
        assert_eq!(
            (stats.classes[1].err_replies, stats.classes[1].wrong),
            (1, 1)
        );
        assert_eq!((stats.errors.err_reply, stats.errors.wrong), (1, 1));
        assert_eq!(stats.seconds[2][1].errors, 2);
        assert_eq!(stats.last_reply, Some(now));
        assert_eq!(micros(Duration::ZERO), 1);
    }
}
