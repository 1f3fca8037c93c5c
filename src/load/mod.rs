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
//! ```text
//! mod.rs     run(): start the workers, tick once a second, merge at the end
//! spec.rs    LoadSpec, Stop, Hooks: what a run is asked to do
//! worker.rs  one thread's event loop over its connections
//! stats.rs   what the threads record, and the counters they share
//! report.rs  Report::from_threads, and the text / JSON / CSV renderers
//! hold.rs    idle connections held open meanwhile (`--idle`, the C10K experiment)
//! merge.rs   the reports of agents that split one load, merged exactly
//! ```
//!
//! One load can be split across processes or hosts (`--segment I/N`, an execution
//! segment): agent I runs every Nth connection, each on the schedule it has in the
//! whole load (`Agent`, `Segment`), from a common `--start-at`; `fiblab load merge` adds
//! their histograms and counts into the report of the whole load.
//!
//! The client watches itself: each thread's CPU time is measured, and a report says
//! so when a thread was busy enough that the client may be the bottleneck. `--spin`
//! busy-polls the sockets instead of sleeping in epoll (no wake-up latency, a full
//! core per thread), and `--cpus` pins the threads; both are recorded in the report,
//! because on a small VM they change round-trip figures several times over.

pub mod hold;
pub mod merge;
pub mod mix;
pub mod report;
mod spec;
mod stats;
pub mod tui;
mod worker;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub use spec::{
    Agent, Edge, Hooks, LoadSpec, OnReply, Segment, SpecError, Stop, Tick, WINDOW_END_MARGIN,
};
pub use stats::{HistogramError, ThreadCost, decode_histogram, encode_histogram};

use report::Report;
use stats::{Shared, ThreadStats};
use worker::Worker;

/// Runs the load described by `spec` until it stops by itself or `interrupt` is set
/// (Ctrl-C), and reports what was measured.
pub fn run(
    spec: &LoadSpec,
    interrupt: Arc<AtomicBool>,
    mut hooks: Hooks<'_>,
) -> io::Result<Report> {
    let threads = spec
        .threads
        .clamp(1, spec.segment().share_of(spec.connections).max(1));
    // Split across agents, every agent starts together, or their schedules drift apart.
    let mut late = None;
    // How far past the agreed instant this agent starts (woken late, or called late).
    let mut lag = Duration::ZERO;
    if let Some(at) = spec.agent.and_then(|a| a.start_at) {
        match at.duration_since(SystemTime::now()) {
            // In short sleeps: Ctrl-C ends the wait too.
            Ok(wait) => {
                let until = Instant::now() + wait;
                while !interrupt.load(std::sync::atomic::Ordering::Relaxed) {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    std::thread::sleep(left.min(Duration::from_millis(50)));
                }
            }
            Err(past) => late = Some(past.duration()),
        }
        // Within the warm-up, the schedule still starts at the agreed instant, so the
        // agents measure one window and stop together (a one-at-a-time server would
        // otherwise answer a late agent's client once the others have left). Past it,
        // the window cannot be shared: start now, and say so below.
        lag = SystemTime::now()
            .duration_since(at)
            .unwrap_or_default()
            .min(spec.warmup);
    }
    let start = Instant::now().checked_sub(lag).unwrap_or_else(Instant::now);
    let started_wall = SystemTime::now() - lag + spec.warmup;
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
    let window_end = match spec.stop {
        Stop::After(d) => Some(measure_start + d.saturating_sub(WINDOW_END_MARGIN)),
        _ => None,
    };
    let mut edges = [Edge::Start, Edge::End].into_iter().peekable();
    while shared.running.load(Ordering::SeqCst) > 0 {
        std::thread::sleep(Duration::from_millis(5));
        if hooks.should_stop.as_mut().is_some_and(|stop| stop()) {
            interrupt.store(true, Ordering::SeqCst);
        }
        let now = Instant::now();
        let due = match edges.peek() {
            Some(Edge::Start) => now >= measure_start,
            Some(Edge::End) => window_end.is_some_and(|end| now >= end),
            None => false,
        };
        if due && let Some(edge) = edges.next() {
            let ok = shared.ok.load(Ordering::Relaxed);
            if let Some(on_window) = hooks.on_window.as_mut() {
                on_window(edge, ok);
            }
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
    let mut report = Report::from_threads(
        spec,
        threads,
        measure_start,
        stats,
        interrupt.load(Ordering::SeqCst),
    );
    if spec.agent.is_some() {
        report.started_unix_s = started_wall
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| (d.as_secs_f64() * 1e6).round() / 1e6);
    }
    if let Some(late) = late.filter(|late| *late > spec.warmup) {
        report.notes.push(format!(
            "started {:.1} ms after --start-at, past its {:.1} ms warm-up: this agent's schedule lags the others' by {:.1} ms",
            late.as_secs_f64() * 1000.0,
            spec.warmup.as_secs_f64() * 1000.0,
            (late - spec.warmup).as_secs_f64() * 1000.0
        ));
    }
    Ok(report)
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
