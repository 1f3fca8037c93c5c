//! `event`, `queue`, `producer-consumer` and `pool` — seed 002's Event事件, 队列 and
//! 线程q, 生产者、消费者模型 and 进程池与线程池 (seed 003's 池): the ways threads hand
//! each other work and news.
//!
//! - An **event** is a flag with a waiting room: threads sleep until it is set, then
//!   all wake. fiblab's shutdown signal is one (every loop waits on it).
//! - A **queue** decides the order work comes back out: first in first out
//!   (`queue.Queue`), last in first out (`LifoQueue`, a stack), or smallest first
//!   (`PriorityQueue`, a heap).
//! - **Producer-consumer**: producers put into a bounded queue and wait when it is full;
//!   consumers take and wait when it is empty; `JoinableQueue.join()` waits until every
//!   item put has been marked done. fiblab's pools are built on this
//!   (`crate::pool::WorkQueue`), and the demo uses it.
//! - A **pool** runs submitted jobs on a fixed set of workers; a job's result is a
//!   future to wait on, and a done-callback runs when it finishes (on the worker). The
//!   demo uses fiblab's offload pool (`crate::offload::Offload`), whose callbacks wake
//!   the event loops.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::pool::WorkQueue;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The seed's `threading.Event`.
#[derive(Default)]
pub struct Event {
    set: Mutex<bool>,
    changed: Condvar,
}

impl Event {
    pub fn set(&self) {
        *lock(&self.set) = true;
        self.changed.notify_all();
    }

    pub fn wait(&self) {
        let mut set = lock(&self.set);
        while !*set {
            set = self.changed.wait(set).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// How long each of `waiters` threads took to wake after the event was set.
pub fn measure_event(waiters: usize) -> Vec<Duration> {
    let event = Arc::new(Event::default());
    let set_at = Arc::new(Mutex::new(None::<Instant>));
    let threads: Vec<_> = (0..waiters)
        .map(|_| {
            let (event, set_at) = (event.clone(), set_at.clone());
            std::thread::spawn(move || {
                event.wait();
                lock(&set_at).map_or(Duration::ZERO, |at| at.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    *lock(&set_at) = Some(Instant::now());
    event.set();
    threads
        .into_iter()
        .map(|t| t.join().unwrap_or_default())
        .collect()
}

pub fn run_event(out: &mut dyn io::Write) -> io::Result<()> {
    let woke = measure_event(4);
    writeln!(
        out,
        "4 threads wait on one event; the main thread sets it after 20 ms:"
    )?;
    for (i, d) in woke.iter().enumerate() {
        writeln!(
            out,
            "  thread {i} woke {:7.1} µs after the set",
            d.as_secs_f64() * 1e6
        )?;
    }
    writeln!(
        out,
        "each wake-up is the kernel scheduling a sleeping thread (Condvar::notify_all); on a VM, waking an idle vCPU costs tens of µs"
    )?;
    Ok(())
}

/// The order `items` come out of a FIFO, a LIFO and a min-priority queue.
pub fn measure_queue(items: &[u32]) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let fifo = WorkQueue::new(items.len());
    for &i in items {
        let _ = fifo.offer(i);
    }
    fifo.close(false);
    let fifo_order = std::iter::from_fn(|| fifo.take()).collect();
    let mut stack: Vec<u32> = items.to_vec();
    let lifo_order = std::iter::from_fn(|| stack.pop()).collect();
    let mut heap: BinaryHeap<Reverse<u32>> = items.iter().map(|&i| Reverse(i)).collect();
    let priority_order = std::iter::from_fn(|| heap.pop().map(|Reverse(i)| i)).collect();
    (fifo_order, lifo_order, priority_order)
}

pub fn run_queue(out: &mut dyn io::Write) -> io::Result<()> {
    let items = [3, 1, 4, 1, 5, 9, 2, 6];
    let (fifo, lifo, priority) = measure_queue(&items);
    writeln!(out, "put in:                          {items:?}")?;
    writeln!(out, "FIFO (queue.Queue; fiblab's pool): {fifo:?}")?;
    writeln!(out, "LIFO (queue.LifoQueue, a stack):   {lifo:?}")?;
    writeln!(
        out,
        "priority (queue.PriorityQueue):    {priority:?}  (smallest first: a heap)"
    )?;
    Ok(())
}

/// What a producer-consumer run did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProducerConsumerOutcome {
    pub produced: usize,
    pub consumed: usize,
    /// Times a producer found the queue full and waited.
    pub waits_for_room: usize,
    /// Items not marked done when `join` returned (0: it waited for all).
    pub undone_at_join: usize,
    pub elapsed: Duration,
}

/// `producers` put `per_producer` items each into a queue of `capacity`; `consumers`
/// take them (each item costs `work`); the main thread joins the queue.
pub fn measure_producer_consumer(
    producers: usize,
    per_producer: usize,
    consumers: usize,
    capacity: usize,
    work: Duration,
) -> ProducerConsumerOutcome {
    let queue = Arc::new(WorkQueue::<usize>::new(capacity));
    // JoinableQueue's count of items put and not yet marked done.
    let unfinished = Arc::new((Mutex::new(0usize), Condvar::new()));
    let (consumed, waits) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let start = Instant::now();
    let consumer_threads: Vec<_> = (0..consumers)
        .map(|_| {
            let (queue, unfinished, consumed) =
                (queue.clone(), unfinished.clone(), consumed.clone());
            std::thread::spawn(move || {
                while let Some(_item) = queue.take() {
                    std::thread::sleep(work);
                    consumed.fetch_add(1, Ordering::SeqCst);
                    // task_done()
                    let (count, all_done) = &*unfinished;
                    let mut n = lock(count);
                    *n -= 1;
                    if *n == 0 {
                        all_done.notify_all();
                    }
                }
            })
        })
        .collect();
    let producer_threads: Vec<_> = (0..producers)
        .map(|p| {
            let (queue, unfinished, waits) = (queue.clone(), unfinished.clone(), waits.clone());
            std::thread::spawn(move || {
                for i in 0..per_producer {
                    *lock(&unfinished.0) += 1;
                    let mut item = p * per_producer + i;
                    // put(): wait while the queue is full.
                    while let Err(back) = queue.offer(item) {
                        item = back;
                        waits.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            })
        })
        .collect();
    for p in producer_threads {
        let _ = p.join();
    }
    // join(): every item put is marked done.
    let (count, all_done) = &*unfinished;
    let mut n = lock(count);
    while *n > 0 {
        n = all_done.wait(n).unwrap_or_else(|p| p.into_inner());
    }
    let undone_at_join = *n;
    drop(n);
    let elapsed = start.elapsed();
    queue.close(false);
    for c in consumer_threads {
        let _ = c.join();
    }
    ProducerConsumerOutcome {
        produced: producers * per_producer,
        consumed: consumed.load(Ordering::SeqCst),
        waits_for_room: waits.load(Ordering::SeqCst),
        undone_at_join,
        elapsed,
    }
}

pub fn run_producer_consumer(out: &mut dyn io::Write) -> io::Result<()> {
    let r = measure_producer_consumer(2, 50, 3, 4, Duration::from_millis(2));
    writeln!(
        out,
        "2 producers x 50 items -> a queue of 4 (beyond idle consumers) -> 3 consumers, 2 ms of work each:"
    )?;
    writeln!(
        out,
        "  produced {}, consumed {}; producers found the queue full {} times and waited",
        r.produced, r.consumed, r.waits_for_room
    )?;
    writeln!(
        out,
        "  join() returned after {:.0} ms with {} items not done (it waits for every task_done)",
        r.elapsed.as_secs_f64() * 1000.0,
        r.undone_at_join
    )?;
    writeln!(
        out,
        "  the bound is back-pressure: producers run no further ahead than the queue holds"
    )?;
    Ok(())
}

/// What a pool run did: each job's n, its result, and the thread its callback ran on.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolOutcome {
    pub results: Vec<(u32, u64)>,
    pub callback_threads: Vec<String>,
    pub elapsed: Duration,
}

/// Submits fib(n) for each of `ns` to a pool of `workers`; waits on every result.
///
/// # Errors
/// The pool cannot start its threads.
pub fn measure_pool(ns: &[u32], workers: usize) -> io::Result<PoolOutcome> {
    let pool = crate::offload::Offload::start(workers, ns.len())?;
    let start = Instant::now();
    let (done, results) = mpsc::channel();
    for &n in ns {
        let done = done.clone();
        // add_done_callback: runs on the worker that computed it.
        pool.submit(n, None, move |reply| {
            let thread = std::thread::current().name().unwrap_or("?").to_string();
            let _ = done.send((n, reply.unwrap_or(0), thread));
        });
    }
    drop(done);
    // result(): each future waited on.
    let mut got: Vec<(u32, u64, String)> = results.iter().collect();
    let elapsed = start.elapsed();
    got.sort_by_key(|(n, _, _)| *n);
    Ok(PoolOutcome {
        results: got.iter().map(|(n, v, _)| (*n, *v)).collect(),
        callback_threads: got.into_iter().map(|(_, _, t)| t).collect(),
        elapsed,
    })
}

pub fn run_pool(out: &mut dyn io::Write) -> io::Result<()> {
    let ns = [30, 25, 28, 20, 27, 26];
    let r = measure_pool(&ns, 2)?;
    writeln!(
        out,
        "fib jobs submitted to a pool of 2 threads (fiblab's offload pool):"
    )?;
    for ((n, v), thread) in r.results.iter().zip(&r.callback_threads) {
        writeln!(out, "  fib({n}) = {v:<8} done-callback ran on {thread}")?;
    }
    writeln!(
        out,
        "  all {} results in {:.0} ms; the callbacks ran on the workers, not on the submitting thread",
        r.results.len(),
        r.elapsed.as_secs_f64() * 1000.0
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_give_their_orders() {
        let (fifo, lifo, priority) = measure_queue(&[3, 1, 2]);
        assert_eq!(fifo, [3, 1, 2]);
        assert_eq!(lifo, [2, 1, 3]);
        assert_eq!(priority, [1, 2, 3]);
    }

    #[test]
    fn every_waiter_wakes_on_the_event() {
        assert_eq!(measure_event(3).len(), 3);
    }

    #[test]
    fn join_waits_for_every_item() {
        let r = measure_producer_consumer(2, 20, 2, 1, Duration::from_millis(1));
        assert_eq!(r.produced, 40);
        assert_eq!(r.consumed, 40);
        assert_eq!(r.undone_at_join, 0);
    }

    #[test]
    fn the_pool_computes_and_calls_back_on_its_workers() {
        let r = measure_pool(&[10, 20], 2).unwrap();
        assert_eq!(r.results, [(10, 55), (20, 6765)]);
        assert!(r.callback_threads.iter().all(|t| t.starts_with("offload-")));
    }
}
