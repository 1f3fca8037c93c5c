//! `deadlock` — seed 002's 死锁与递归锁: two threads take two locks in opposite order
//! and each waits forever for the other's; a thread that takes a lock it already holds
//! waits forever for itself.
//!
//! A deadlock is a cycle in the *wait-for graph*: thread A waits for a lock held by B,
//! which waits for a lock held by A. The demo's locks report to such a graph who holds
//! them and who waits for them, and a detector looks for a cycle (as databases and
//! `parking_lot`'s deadlock detection do). Its locks wait with `try_lock` and a short
//! sleep instead of blocking, so that once the cycle is reported the demo can tell the
//! threads to give up and end: a real deadlock never ends.
//!
//! The fixes: one global lock order (both threads take `lock 1` before `lock 2`: no
//! cycle can form), and for re-entry a re-entrant lock (the seed's `RLock`: an owner and
//! a count, released when the count returns to zero).

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// Who holds which lock, and who waits for which: the wait-for graph.
#[derive(Default)]
struct Graph {
    holder: HashMap<&'static str, &'static str>,
    waiting: HashMap<&'static str, &'static str>,
}

impl Graph {
    /// A cycle of "thread waits for lock, held by thread", if one exists.
    fn cycle(&self) -> Option<Vec<String>> {
        for (&start, _) in self.waiting.iter() {
            let mut path = Vec::new();
            let mut thread = start;
            for _ in 0..=self.waiting.len() {
                let lock = *self.waiting.get(thread)?;
                let holder = *self.holder.get(lock)?;
                path.push(format!("{thread} waits for {lock}, held by {holder}"));
                if holder == start {
                    return Some(path);
                }
                thread = holder;
            }
        }
        None
    }
}

/// A mutex that reports to a wait-for graph, and gives up when told to.
struct TrackedLock {
    name: &'static str,
    inner: Mutex<()>,
    graph: Arc<Mutex<Graph>>,
}

struct Held<'a> {
    lock: &'a TrackedLock,
    _guard: MutexGuard<'a, ()>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        lock(&self.lock.graph).holder.remove(self.lock.name);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TrackedLock {
    fn new(name: &'static str, graph: &Arc<Mutex<Graph>>) -> TrackedLock {
        TrackedLock {
            name,
            inner: Mutex::new(()),
            graph: graph.clone(),
        }
    }

    /// Takes the lock for thread `me`; `None` once `give_up` is set.
    fn acquire(&self, me: &'static str, give_up: &AtomicBool) -> Option<Held<'_>> {
        lock(&self.graph).waiting.insert(me, self.name);
        loop {
            match self.inner.try_lock() {
                Ok(guard) => {
                    let mut graph = lock(&self.graph);
                    graph.waiting.remove(me);
                    graph.holder.insert(self.name, me);
                    return Some(Held {
                        lock: self,
                        _guard: guard,
                    });
                }
                Err(TryLockError::WouldBlock) if !give_up.load(Ordering::SeqCst) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => {
                    lock(&self.graph).waiting.remove(me);
                    return None;
                }
            }
        }
    }
}

/// What the three runs showed.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadlockOutcome {
    /// The cycle found when the threads took the locks in opposite order.
    pub opposite_order: Option<Vec<String>>,
    pub detected_after: Duration,
    /// Both threads finished when they took the locks in one order.
    pub one_order_finished: bool,
    /// The cycle found when a thread took a lock it held (a cycle of one).
    pub reentry: Option<Vec<String>>,
    /// How deep the re-entrant lock was taken, and whether it was free after.
    pub reentrant_depth: u32,
    pub reentrant_released: bool,
}

/// Watches `graph` for a cycle for at most `limit`; sets `give_up` when done.
fn detect(graph: &Mutex<Graph>, give_up: &AtomicBool, limit: Duration) -> Option<Vec<String>> {
    let start = Instant::now();
    let found = loop {
        if let Some(cycle) = lock(graph).cycle() {
            break Some(cycle);
        }
        if start.elapsed() > limit {
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    give_up.store(true, Ordering::SeqCst);
    found
}

/// Two threads take `lock 1` and `lock 2`, in opposite orders or in one.
fn two_threads(opposite: bool) -> (Option<Vec<String>>, Duration, bool) {
    let graph = Arc::new(Mutex::new(Graph::default()));
    let locks = Arc::new([
        TrackedLock::new("lock 1", &graph),
        TrackedLock::new("lock 2", &graph),
    ]);
    let give_up = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = [
        ("thread A", [0, 1]),
        ("thread B", if opposite { [1, 0] } else { [0, 1] }),
    ]
    .into_iter()
    .map(|(me, order)| {
        let (locks, give_up) = (locks.clone(), give_up.clone());
        std::thread::spawn(move || {
            let Some(_first) = locks[order[0]].acquire(me, &give_up) else {
                return false;
            };
            // Long enough for the other thread to take its first lock.
            std::thread::sleep(Duration::from_millis(50));
            locks[order[1]].acquire(me, &give_up).is_some()
        })
    })
    .collect();
    // In one order no cycle can form: the threads simply finish.
    let cycle = match opposite {
        true => detect(&graph, &give_up, Duration::from_secs(2)),
        false => None,
    };
    let detected_after = start.elapsed();
    let finished = threads.into_iter().all(|t| t.join().unwrap_or(false));
    (cycle, detected_after, finished)
}

/// The seed's `RLock`: re-entrant by its owner, released when its count returns to 0.
#[derive(Default)]
pub struct ReentrantLock {
    state: Mutex<(Option<ThreadId>, u32)>,
    freed: Condvar,
}

impl ReentrantLock {
    /// Takes the lock (again, if this thread holds it); returns the depth now held.
    pub fn acquire(&self) -> u32 {
        let me = std::thread::current().id();
        let mut state = lock(&self.state);
        while state.0.is_some_and(|owner| owner != me) {
            state = self.freed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.0 = Some(me);
        state.1 += 1;
        state.1
    }

    /// Releases one level; the lock is free when the last is released.
    pub fn release(&self) {
        let mut state = lock(&self.state);
        state.1 = state.1.saturating_sub(1);
        if state.1 == 0 {
            state.0 = None;
            self.freed.notify_one();
        }
    }

    pub fn is_free(&self) -> bool {
        lock(&self.state).0.is_none()
    }
}

pub fn measure() -> DeadlockOutcome {
    let (opposite_order, detected_after, _) = two_threads(true);
    let (_, _, one_order_finished) = two_threads(false);
    // Re-entry: a thread holding `lock 1` takes it again.
    let graph = Arc::new(Mutex::new(Graph::default()));
    let give_up = Arc::new(AtomicBool::new(false));
    let lock1 = TrackedLock::new("lock 1", &graph);
    let reentry = std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let _held = lock1.acquire("thread A", &give_up);
            lock1.acquire("thread A", &give_up).is_some()
        });
        let cycle = detect(&graph, &give_up, Duration::from_secs(2));
        let _ = worker.join();
        cycle
    });
    let rlock = ReentrantLock::default();
    rlock.acquire();
    let reentrant_depth = rlock.acquire();
    rlock.release();
    rlock.release();
    DeadlockOutcome {
        opposite_order,
        detected_after,
        one_order_finished,
        reentry,
        reentrant_depth,
        reentrant_released: rlock.is_free(),
    }
}

pub fn run(out: &mut dyn io::Write) -> io::Result<()> {
    let r = measure();
    writeln!(
        out,
        "two threads, two locks, opposite order (A: lock 1 then lock 2; B: lock 2 then lock 1):"
    )?;
    match &r.opposite_order {
        Some(cycle) => {
            writeln!(
                out,
                "  deadlock: the wait-for graph has a cycle, found {:.0} ms after the start:",
                r.detected_after.as_secs_f64() * 1000.0
            )?;
            for edge in cycle {
                writeln!(out, "    {edge}")?;
            }
        }
        None => writeln!(
            out,
            "  no cycle found (the threads did not overlap this time)"
        )?,
    }
    writeln!(
        out,
        "  fix, one lock order (both take lock 1 first): {}",
        if r.one_order_finished {
            "both threads finished"
        } else {
            "did not finish"
        }
    )?;
    writeln!(
        out,
        "a thread takes a lock it already holds (the seed's Lock re-entered):"
    )?;
    match &r.reentry {
        Some(cycle) => writeln!(out, "  deadlock with itself: {}", cycle.join("; "))?,
        None => writeln!(out, "  no cycle found")?,
    }
    writeln!(
        out,
        "  fix, a re-entrant lock (the seed's RLock): taken {} deep by one thread, {} after as many releases",
        r.reentrant_depth,
        if r.reentrant_released {
            "free"
        } else {
            "still held"
        }
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_is_found_and_ordering_or_reentrancy_fixes_it() {
        let r = measure();
        let cycle = r.opposite_order.expect("opposite order deadlocks");
        assert_eq!(cycle.len(), 2, "{cycle:?}");
        assert!(r.one_order_finished);
        let own = r.reentry.expect("re-entry deadlocks");
        assert_eq!(own, ["thread A waits for lock 1, held by thread A"]);
        assert_eq!(r.reentrant_depth, 2);
        assert!(r.reentrant_released);
    }
}
