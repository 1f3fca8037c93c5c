//! `semaphore` — seed 002's 信号量 (Semaphore): a lock that lets K holders in at once.
//! The seed's example is a parking lot: N cars, K spaces, the rest wait at the gate.
//!
//! A counting semaphore is a number and a waiting room: `acquire` waits while the number
//! is 0, then takes one; `release` gives one back and wakes a waiter. With K = 1 it is a
//! mutex. Servers use one to cap how much expensive work runs at once (here: fib), so
//! that a burst queues instead of oversubscribing the CPUs.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The seed's `threading.Semaphore(K)`.
pub struct Semaphore {
    permits: Mutex<usize>,
    returned: Condvar,
}

impl Semaphore {
    pub fn new(permits: usize) -> Semaphore {
        Semaphore {
            permits: Mutex::new(permits),
            returned: Condvar::new(),
        }
    }

    /// Waits for a permit and takes it; returns how long it waited.
    pub fn acquire(&self) -> Duration {
        let start = Instant::now();
        let mut permits = self.permits.lock().unwrap_or_else(|p| p.into_inner());
        while *permits == 0 {
            permits = self
                .returned
                .wait(permits)
                .unwrap_or_else(|p| p.into_inner());
        }
        *permits -= 1;
        start.elapsed()
    }

    pub fn release(&self) {
        *self.permits.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.returned.notify_one();
    }
}

/// What `threads` threads computing fib(`n`) under a semaphore of `permits` did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SemaphoreOutcome {
    pub threads: usize,
    pub permits: usize,
    /// The most computations that ran at once.
    pub most_at_once: usize,
    /// The longest and the mean wait for a permit.
    pub longest_wait: Duration,
    pub mean_wait: Duration,
    pub elapsed: Duration,
}

pub fn measure(threads: usize, permits: usize, n: u32) -> SemaphoreOutcome {
    let gate = Arc::new(Semaphore::new(permits));
    let (inside, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let start = Instant::now();
    let waits: Vec<Duration> = (0..threads)
        .map(|_| {
            let (gate, inside, most) = (gate.clone(), inside.clone(), most.clone());
            std::thread::spawn(move || {
                let waited = gate.acquire();
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::hint::black_box(crate::fib::fib(n));
                inside.fetch_sub(1, Ordering::SeqCst);
                gate.release();
                waited
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap_or_default())
        .collect();
    let total: Duration = waits.iter().sum();
    SemaphoreOutcome {
        threads,
        permits,
        most_at_once: most.load(Ordering::SeqCst),
        longest_wait: waits.iter().copied().max().unwrap_or_default(),
        mean_wait: total / threads.max(1) as u32,
        elapsed: start.elapsed(),
    }
}

pub fn run(out: &mut dyn io::Write) -> io::Result<()> {
    let n = 30;
    for permits in [1, 3] {
        let r = measure(8, permits, n);
        writeln!(
            out,
            "8 threads compute fib({n}) behind Semaphore({permits}): at most {} at once (never more than {permits}); waits for a permit: mean {:.1} ms, longest {:.1} ms; all done in {:.1} ms",
            r.most_at_once,
            r.mean_wait.as_secs_f64() * 1000.0,
            r.longest_wait.as_secs_f64() * 1000.0,
            r.elapsed.as_secs_f64() * 1000.0
        )?;
    }
    writeln!(
        out,
        "with 1 permit it is a mutex: the threads take turns; with 3 on a machine of {} CPUs, more permits than CPUs only share them",
        crate::cpu::allowed_cpus().len()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_the_permits_run_at_once() {
        for permits in [1, 2] {
            let r = measure(6, permits, 18);
            assert!(r.most_at_once <= permits, "{r:?}");
            assert!(r.most_at_once >= 1);
        }
    }
}
