//! `--gil`: CPython's global interpreter lock, emulated, so that fiblab's models show
//! what the seeds' Python servers showed, and why.
//!
//! The lock follows the "new GIL" of CPython 3.2 and later (Beazley, "Understanding
//! the New GIL", 2010; CPython's `Python/ceval_gil.c`):
//!
//! ```text
//! take():   while someone holds it:
//!               wait up to the switch interval (5 ms, sys.getswitchinterval())
//!               timed out and no switch happened meanwhile -> set the drop request
//!           hold it; wake the thread that was forced to drop it (if any)
//! drop():   release it, wake one waiter
//! check():  (the eval breaker, in the interpreter's loop: here, in fib's recursion)
//!           a drop request is set -> drop it, wait until another thread has taken it
//!           (forced switching), then take() again
//! released(f): drop it around a blocking call (Py_BEGIN_ALLOW_THREADS), take it after
//! ```
//!
//! A thread holds the lock while it runs "interpreter" code: parsing a request,
//! computing fib, formatting the reply ([`crate::service::Session`] takes it for each
//! batch of input). Everything a model does around that, reading and writing sockets
//! and waiting in `select`/`epoll`, runs without it, as CPython releases the lock around
//! every blocking call. Models do not change: they pass through the session.
//!
//! Consequences the seeds measured, and that `fiblab bench python` reproduces:
//! - CPU-bound threads do not scale: only the lock holder computes.
//! - One CPU-bound request starves an I/O-bound thread (the convoy effect): the light
//!   thread releases the lock at every `recv`, and each time it wants it back it must
//!   wait out the heavy thread's switch interval: one light request per 5 ms.
//! - Processes are not affected: each has its own lock (`procpool`'s workers,
//!   `prefork`'s children).
//!
//! [`GilMode::PerInterpreter`] gives each `isolates` interpreter a lock of its own
//! (PEP 684, Python 3.12); [`GilMode::Shared`] shares the process's lock among them
//! (Python 3.8-3.11 subinterpreters). No `--gil` at all is the free-threaded build
//! (PEP 703, Python 3.13t) and Rust.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// CPython's default switch interval (`sys.getswitchinterval()`).
pub const DEFAULT_SWITCH_INTERVAL: Duration = Duration::from_millis(5);

/// Which interpreters share a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum GilMode {
    /// One lock for the whole process, every interpreter included (CPython up to
    /// 3.11).
    #[default]
    Shared,
    /// One lock per interpreter: `isolates` get one each (PEP 684, CPython 3.12+); the
    /// rest of the process shares the main interpreter's.
    PerInterpreter,
}

impl std::fmt::Display for GilMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GilMode::Shared => "shared",
            GilMode::PerInterpreter => "per-interpreter",
        })
    }
}

/// What the locks of a process did, counted since it started: the mechanism in
/// numbers. Every lock of the process adds to the same counters.
#[derive(Debug, Default)]
pub struct GilStats {
    acquisitions: AtomicU64,
    contended: AtomicU64,
    wait_ns: AtomicU64,
    drop_requests: AtomicU64,
    forced_switches: AtomicU64,
}

/// A copy of [`GilStats`] at one moment; the difference of two is what happened
/// between them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GilCounts {
    /// Times a thread took a lock.
    pub acquisitions: u64,
    /// ... of which it had to wait.
    pub contended: u64,
    /// Nanoseconds threads spent waiting for a lock, all together.
    pub wait_ns: u64,
    /// Times a waiter ran out of its switch interval and asked the holder to drop it.
    pub drop_requests: u64,
    /// Times a holder dropped it because it was asked to.
    pub forced_switches: u64,
}

impl GilCounts {
    /// `self - earlier`, counter by counter.
    pub fn since(&self, earlier: &GilCounts) -> GilCounts {
        GilCounts {
            acquisitions: self.acquisitions.saturating_sub(earlier.acquisitions),
            contended: self.contended.saturating_sub(earlier.contended),
            wait_ns: self.wait_ns.saturating_sub(earlier.wait_ns),
            drop_requests: self.drop_requests.saturating_sub(earlier.drop_requests),
            forced_switches: self.forced_switches.saturating_sub(earlier.forced_switches),
        }
    }
}

impl GilStats {
    pub fn counts(&self) -> GilCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        GilCounts {
            acquisitions: get(&self.acquisitions),
            contended: get(&self.contended),
            wait_ns: get(&self.wait_ns),
            drop_requests: get(&self.drop_requests),
            forced_switches: get(&self.forced_switches),
        }
    }
}

/// One interpreter lock; see the module docs.
#[derive(Debug)]
pub struct Gil {
    interval: Duration,
    state: Mutex<State>,
    /// Waiters for the lock sleep here (CPython's `gil->cond`).
    released: Condvar,
    /// A holder forced to drop the lock sleeps here until another thread has taken it
    /// (CPython's `gil->switch_cond`).
    taken: Condvar,
    /// The eval breaker's flag: read without the mutex at every check.
    drop_request: AtomicBool,
    stats: Arc<GilStats>,
}

#[derive(Debug, Default)]
struct State {
    locked: bool,
    /// The thread that took it last (it may have dropped it since).
    last_holder: Option<ThreadId>,
    /// Counts every take: a waiter that times out asks for a drop only if no switch
    /// happened while it waited.
    switch_number: u64,
}

impl Gil {
    /// A lock with this switch interval, counting into `stats`.
    pub fn new(interval: Duration, stats: Arc<GilStats>) -> Gil {
        Gil {
            interval: interval.max(Duration::from_micros(1)),
            state: Mutex::new(State::default()),
            released: Condvar::new(),
            taken: Condvar::new(),
            drop_request: AtomicBool::new(false),
            stats,
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the lock, waiting (and, after each switch interval, asking the holder to
    /// drop it) as long as another thread holds it.
    pub fn take(&self) {
        let mut state = self.lock_state();
        let started = Instant::now();
        let mut waited = false;
        while state.locked {
            waited = true;
            let switch_number = state.switch_number;
            let (next, timeout) = self
                .released
                .wait_timeout(state, self.interval)
                .unwrap_or_else(|p| p.into_inner());
            state = next;
            if timeout.timed_out()
                && state.locked
                && state.switch_number == switch_number
                && !self.drop_request.swap(true, Ordering::SeqCst)
            {
                self.stats.drop_requests.fetch_add(1, Ordering::Relaxed);
            }
        }
        state.locked = true;
        state.last_holder = Some(thread::current().id());
        state.switch_number += 1;
        // A drop request, if any, is answered: this thread got the lock.
        self.drop_request.store(false, Ordering::SeqCst);
        self.taken.notify_all();
        drop(state);
        self.stats.acquisitions.fetch_add(1, Ordering::Relaxed);
        if waited {
            self.stats.contended.fetch_add(1, Ordering::Relaxed);
            let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.stats.wait_ns.fetch_add(ns, Ordering::Relaxed);
        }
    }

    /// Releases the lock. `forced`: because a waiter asked; then waits until another
    /// thread has taken it, so the dropper cannot take it straight back (CPython's
    /// `FORCE_SWITCHING`). The wait is bounded by the switch interval, in case the
    /// waiter that asked is gone.
    pub fn drop_lock(&self, forced: bool) {
        let me = thread::current().id();
        let mut state = self.lock_state();
        state.locked = false;
        self.released.notify_one();
        if forced {
            self.stats.forced_switches.fetch_add(1, Ordering::Relaxed);
            let deadline = Instant::now() + self.interval;
            while state.last_holder == Some(me) && !state.locked {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                state = self
                    .taken
                    .wait_timeout(state, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
    }

    /// The eval breaker: hands the lock over if a waiter asked for it. Called by the
    /// holder at check points of interpreter code.
    pub fn check(&self) {
        if self.drop_request.load(Ordering::Relaxed) {
            self.drop_lock(true);
            self.take();
        }
    }

    /// Runs `blocking` with the lock released, and takes it again after
    /// (`Py_BEGIN_ALLOW_THREADS` ... `Py_END_ALLOW_THREADS`).
    pub fn released<T>(&self, blocking: impl FnOnce() -> T) -> T {
        self.drop_lock(false);
        let result = blocking();
        self.take();
        result
    }

    /// Takes the lock until the guard is dropped.
    pub fn hold(&self) -> Held<'_> {
        self.take();
        Held(self)
    }
}

/// The lock, held; dropping the guard releases it.
#[derive(Debug)]
pub struct Held<'a>(&'a Gil);

impl Held<'_> {
    /// See [`Gil::check`].
    pub fn check(&self) {
        self.0.check();
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.drop_lock(false);
    }
}

/// The process's lock settings, once `serve --gil` installed them.
#[derive(Debug)]
struct Process {
    mode: GilMode,
    interval: Duration,
    main: Gil,
}

static PROCESS: OnceLock<Process> = OnceLock::new();
static STATS: OnceLock<Arc<GilStats>> = OnceLock::new();

fn stats() -> Arc<GilStats> {
    STATS.get_or_init(Arc::default).clone()
}

/// Turns the emulated GIL on for this process (`serve --gil`). Only the first call
/// counts; a process has one setting.
pub fn install(mode: GilMode, interval: Duration) {
    let _ = PROCESS.set(Process {
        mode,
        interval,
        main: Gil::new(interval, stats()),
    });
}

/// What every lock of the process did since `--gil` installed them; `None` without
/// `--gil`.
pub fn installed_counts() -> Option<GilCounts> {
    PROCESS.get().map(|_| counts())
}

/// The process's (main interpreter's) lock, if `--gil` is on.
pub fn process() -> Option<&'static Gil> {
    PROCESS.get().map(|p| &p.main)
}

/// The lock a new interpreter (an `isolates` isolate) runs under: the process's with
/// [`GilMode::Shared`], a lock of its own with [`GilMode::PerInterpreter`], none
/// without `--gil`.
pub fn for_interpreter() -> Option<InterpreterGil> {
    let process = PROCESS.get()?;
    Some(match process.mode {
        GilMode::Shared => InterpreterGil::Process(&process.main),
        GilMode::PerInterpreter => {
            InterpreterGil::Own(Arc::new(Gil::new(process.interval, stats())))
        }
    })
}

/// An interpreter's lock: the process's, or its own.
#[derive(Debug, Clone)]
pub enum InterpreterGil {
    Process(&'static Gil),
    Own(Arc<Gil>),
}

impl std::ops::Deref for InterpreterGil {
    type Target = Gil;

    fn deref(&self) -> &Gil {
        match self {
            InterpreterGil::Process(gil) => gil,
            InterpreterGil::Own(gil) => gil,
        }
    }
}

/// Everything this process's locks have counted so far.
pub fn counts() -> GilCounts {
    stats().counts()
}

/// Writes [`counts`] as one JSON line to `path` every `every`, replacing the file
/// atomically (write a sibling, rename), for as long as the process lives: how `fiblab
/// bench` reads a server's lock statistics per cell without touching the wire.
///
/// # Errors
/// The first write failed (the folder does not exist or is not writable).
pub fn publish(path: &Path, every: Duration) -> std::io::Result<()> {
    let write = |path: &Path| -> std::io::Result<()> {
        let line = serde_json::to_string(&counts()).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, line + "\n")?;
        std::fs::rename(&tmp, path)
    };
    write(path)?;
    let path = path.to_path_buf();
    thread::Builder::new()
        .name("gil-stats".into())
        .spawn(move || {
            loop {
                thread::sleep(every);
                if write(&path).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

/// Reads a file [`publish`] wrote; `None` if it is missing or not yet whole.
pub fn read_published(path: &Path) -> Option<GilCounts> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn gil(interval_ms: u64) -> Arc<Gil> {
        Arc::new(Gil::new(
            Duration::from_millis(interval_ms),
            Arc::new(GilStats::default()),
        ))
    }

    #[test]
    fn a_waiter_gets_the_lock_only_after_the_holder_checks_in() {
        // The holder never blocks; it checks the eval breaker in a loop. The waiter
        // must first ask (a drop request after its interval), then be handed the lock
        // by a forced switch: no other way in.
        let g = gil(1);
        let held = g.hold();
        let (tx, rx) = mpsc::channel();
        let waiter = {
            let g = g.clone();
            thread::spawn(move || {
                g.take();
                tx.send(()).unwrap();
                g.drop_lock(false);
            })
        };
        while rx.try_recv().is_err() {
            held.check();
            thread::yield_now();
        }
        drop(held);
        waiter.join().unwrap();
        let c = g.stats.counts();
        assert!(c.drop_requests >= 1, "the waiter asked: {c:?}");
        assert_eq!(c.forced_switches, 1, "the holder gave way once: {c:?}");
        assert_eq!(c.acquisitions, 3, "holder, waiter, holder again: {c:?}");
        assert!((1..=2).contains(&c.contended), "{c:?}");
    }

    #[test]
    fn a_forced_switch_hands_over_before_the_holder_takes_it_back() {
        // Order, not time: after the holder's forced drop, the next thread to hold the
        // lock is the waiter, never the holder again.
        let g = gil(1);
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = g.hold();
        let waiter = {
            let (g, order) = (g.clone(), order.clone());
            thread::spawn(move || {
                g.take();
                order.lock().unwrap().push("waiter");
                g.drop_lock(false);
            })
        };
        while !g.drop_request.load(Ordering::SeqCst) {
            thread::yield_now();
        }
        held.check(); // drops (forced), waits for the waiter to take it, takes it back
        order.lock().unwrap().push("holder again");
        drop(held);
        waiter.join().unwrap();
        assert_eq!(*order.lock().unwrap(), ["waiter", "holder again"]);
    }

    #[test]
    fn a_blocking_call_runs_without_the_lock() {
        let g = gil(1_000);
        let held = g.hold();
        let inside = g.released(|| {
            // Another thread can take and drop the lock while this one "blocks".
            let g2 = g.clone();
            thread::spawn(move || {
                g2.take();
                g2.drop_lock(false);
            })
            .join()
            .unwrap();
            "done"
        });
        assert_eq!(inside, "done");
        let c = g.stats.counts();
        assert_eq!(
            c.acquisitions, 3,
            "held, the other thread, taken back: {c:?}"
        );
        assert_eq!(c.drop_requests, 0, "nobody waited out an interval");
        drop(held);
        assert!(!g.lock_state().locked);
    }

    #[test]
    fn without_contention_nothing_is_asked_or_forced() {
        let g = gil(1);
        for _ in 0..100 {
            let held = g.hold();
            held.check();
        }
        let c = g.stats.counts();
        assert_eq!(
            (
                c.acquisitions,
                c.contended,
                c.drop_requests,
                c.forced_switches
            ),
            (100, 0, 0, 0)
        );
    }

    #[test]
    fn counts_subtract_and_publish_round_trips() {
        let a = GilCounts {
            acquisitions: 10,
            wait_ns: 500,
            ..GilCounts::default()
        };
        let b = GilCounts {
            acquisitions: 4,
            wait_ns: 100,
            ..GilCounts::default()
        };
        assert_eq!(a.since(&b).acquisitions, 6);
        assert_eq!(b.since(&a).wait_ns, 0, "never below zero");
        let dir = std::env::temp_dir().join(format!("fiblab-gil-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stats.json");
        publish(&path, Duration::from_secs(3600)).unwrap();
        assert!(read_published(&path).is_some());
        assert!(read_published(&dir.join("none.json")).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn per_interpreter_locks_are_separate() {
        // Without install() in this test process there is no lock at all; the two
        // modes are told apart by construction here.
        let stats = Arc::new(GilStats::default());
        let main: &'static Gil =
            Box::leak(Box::new(Gil::new(DEFAULT_SWITCH_INTERVAL, stats.clone())));
        let shared = InterpreterGil::Process(main);
        let own = InterpreterGil::Own(Arc::new(Gil::new(DEFAULT_SWITCH_INTERVAL, stats)));
        let _main_held = main.hold();
        // The isolate with its own lock runs while the main lock is held...
        let held = own.hold();
        drop(held);
        // ...the isolate sharing the process's lock cannot.
        assert!(shared.lock_state().locked);
        assert!(!own.lock_state().locked);
    }
}
