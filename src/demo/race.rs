//! `race` — seed 002's 互斥锁: two workers add to one counter, and without a lock some
//! additions are lost.
//!
//! Python's `n += 1` is a load, an add and a store, and the interpreter may switch
//! threads between them: both threads load 5, both store 6, one addition is gone. Safe
//! Rust does not compile the seed's version — a plain `u64` shared by two threads can
//! only be read (`Arc<u64>`), and writing it needs `unsafe` (`static mut`), because that
//! would be a data race, undefined behaviour. The demo keeps the seed's bug without the
//! undefined behaviour: an atomic read and a separate atomic write (each one is whole,
//! the pair is not), exactly the interleaving the seed shows. Then the two fixes: the
//! whole read-add-write under a `Mutex` (the seed's `Lock`), or one atomic
//! read-modify-write (`fetch_add`, one instruction, no lock).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What two threads adding `per_thread` each did to one counter, three ways.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RaceOutcome {
    pub per_thread: u64,
    /// Additions lost with a separate load and store (final count short of 2 x per_thread).
    pub lost_unlocked: u64,
    pub lost_mutex: u64,
    pub lost_atomic: u64,
    /// Wall time per addition, ns, both threads running.
    pub unlocked_ns: f64,
    pub mutex_ns: f64,
    pub atomic_ns: f64,
}

/// Runs the three versions, two threads each, `per_thread` additions per thread.
pub fn measure(per_thread: u64) -> RaceOutcome {
    let unlocked = Arc::new(AtomicU64::new(0));
    let (lost_unlocked, unlocked_time) = two_threads(
        per_thread,
        {
            let counter = unlocked.clone();
            move || {
                // The seed's `n += 1`: read, then write back one more; another thread
                // may write in between, and its addition is overwritten.
                let seen = counter.load(Ordering::Relaxed);
                std::hint::spin_loop();
                counter.store(seen + 1, Ordering::Relaxed);
            }
        },
        move || unlocked.load(Ordering::Relaxed),
    );
    let locked = Arc::new(Mutex::new(0u64));
    let (lost_mutex, mutex_time) = two_threads(
        per_thread,
        {
            let counter = locked.clone();
            move || *counter.lock().unwrap_or_else(|p| p.into_inner()) += 1
        },
        move || *locked.lock().unwrap_or_else(|p| p.into_inner()),
    );
    let atomic = Arc::new(AtomicU64::new(0));
    let (lost_atomic, atomic_time) = two_threads(
        per_thread,
        {
            let counter = atomic.clone();
            move || {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        },
        move || atomic.load(Ordering::Relaxed),
    );
    let ops = 2 * per_thread;
    RaceOutcome {
        per_thread,
        lost_unlocked,
        lost_mutex,
        lost_atomic,
        unlocked_ns: super::per_op_ns(unlocked_time, ops),
        mutex_ns: super::per_op_ns(mutex_time, ops),
        atomic_ns: super::per_op_ns(atomic_time, ops),
    }
}

/// Two threads call `add` `per_thread` times each; then `read` gives the counter.
/// Returns the additions lost and the wall time.
fn two_threads(
    per_thread: u64,
    add: impl Fn() + Send + Clone + 'static,
    read: impl Fn() -> u64,
) -> (u64, Duration) {
    let start = Instant::now();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let add = add.clone();
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    add();
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    let elapsed = start.elapsed();
    (2 * per_thread - read().min(2 * per_thread), elapsed)
}

pub fn run(out: &mut dyn io::Write) -> io::Result<()> {
    let r = measure(1_000_000);
    let expected = 2 * r.per_thread;
    writeln!(
        out,
        "two threads, {} additions each, one counter (expected {expected}):",
        r.per_thread
    )?;
    for (how, lost, ns) in [
        (
            "separate load and store (the seed's n += 1)",
            r.lost_unlocked,
            r.unlocked_ns,
        ),
        (
            "Mutex around load-add-store (the seed's Lock)",
            r.lost_mutex,
            r.mutex_ns,
        ),
        ("atomic fetch_add", r.lost_atomic, r.atomic_ns),
    ] {
        writeln!(
            out,
            "  {how:<48} lost {lost:>9} ({:5.2}%)   {ns:6.1} ns per addition",
            100.0 * lost as f64 / expected as f64
        )?;
    }
    writeln!(
        out,
        "why: between one thread's load and its store the other stores, and one of the two additions is overwritten. Safe Rust refuses the seed's version (a shared u64 cannot be written without unsafe: a data race); the lock and the atomic make the read-add-write one step."
    )?;
    writeln!(out, "cost: {}", costs_in_words(&r))?;
    Ok(())
}

/// What the three timings say, in words, from which was faster: under this contention
/// (two threads doing nothing but add) the counter's cache line is what costs.
pub fn costs_in_words(r: &RaceOutcome) -> String {
    let (lock, atomic) = (r.mutex_ns, r.atomic_ns);
    let common = "every addition that lands on another core than the last one moves the counter's cache line across (tens of ns, more on a VM)";
    match lock < atomic {
        true => format!(
            "the Mutex ({lock:.1} ns) beat the atomic ({atomic:.1} ns) here: {common}, and each fetch_add moves it; a thread that holds the Mutex does a run of additions while the other waits asleep, so the line stays on one core (a convoy: fast in total, unfair and slow for the waiter). With work between the additions, or more threads waiting, the atomic wins: no lock to take, nobody put to sleep."
        ),
        false => format!(
            "the atomic ({atomic:.1} ns) beat the Mutex ({lock:.1} ns): {common}, once per fetch_add; the Mutex pays for that and for taking and releasing the lock (and, contended, for waking the waiter)."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_costs_say_which_won_and_why() {
        let r = |mutex_ns, atomic_ns| RaceOutcome {
            per_thread: 1,
            lost_unlocked: 0,
            lost_mutex: 0,
            lost_atomic: 0,
            unlocked_ns: 14.1,
            mutex_ns,
            atomic_ns,
        };
        assert!(
            costs_in_words(&r(9.3, 13.2))
                .starts_with("the Mutex (9.3 ns) beat the atomic (13.2 ns)")
        );
        assert!(costs_in_words(&r(9.3, 13.2)).contains("convoy"));
        assert!(costs_in_words(&r(20.0, 6.0)).starts_with("the atomic (6.0 ns) beat the Mutex"));
    }

    #[test]
    fn the_lock_and_the_atomic_lose_nothing() {
        let r = measure(20_000);
        assert_eq!(r.lost_mutex, 0);
        assert_eq!(r.lost_atomic, 0);
    }
}
