//! The bounded producer-consumer queue behind every pool in fiblab: the `threadpool`
//! model's queue of connections, and the offload pool's queue of fib jobs.
//!
//! One mutex, one condition variable, a `VecDeque`: the textbook shape (Python's
//! `queue.Queue`, which the seeds' pools use, is built the same way). Its one twist is
//! how "full" is counted: idle workers count as room, so a burst of K jobs on K idle
//! workers is never refused however small the capacity is, and `capacity` is the
//! number of jobs that may wait *beyond* the idle workers.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

pub struct WorkQueue<T> {
    state: Mutex<State<T>>,
    /// Signalled when a job is pushed or the queue closes.
    not_empty: Condvar,
    /// Signalled when a worker becomes idle; only [`WorkQueue::wait_until_idle`] waits.
    worker_idle: Condvar,
    capacity: usize,
}

struct State<T> {
    jobs: VecDeque<T>,
    /// Workers blocked in `take`: each will take one job without delay.
    idle: usize,
    closed: bool,
}

impl<T> WorkQueue<T> {
    /// A queue where `capacity` jobs may wait beyond those idle workers are taking.
    pub fn new(capacity: usize) -> Self {
        WorkQueue {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                idle: 0,
                closed: false,
            }),
            not_empty: Condvar::new(),
            worker_idle: Condvar::new(),
            capacity,
        }
    }

    /// Adds a job, or hands it back when the queue is full or closed.
    pub fn offer(&self, job: T) -> Result<(), T> {
        let mut state = self.lock();
        if state.closed || state.jobs.len() >= state.idle + self.capacity {
            return Err(job);
        }
        state.jobs.push_back(job);
        self.not_empty.notify_one();
        Ok(())
    }

    /// The oldest job, blocking while there is none; `None` once the queue is closed
    /// and empty.
    pub fn take(&self) -> Option<T> {
        let mut state = self.lock();
        state.idle += 1;
        self.worker_idle.notify_all();
        while state.jobs.is_empty() && !state.closed {
            state = self
                .not_empty
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        state.idle -= 1;
        state.jobs.pop_front()
    }

    /// Blocks until `workers` workers wait in `take`, so that the first jobs find the
    /// whole pool idle rather than racing its start.
    pub fn wait_until_idle(&self, workers: usize) {
        let mut state = self.lock();
        while state.idle < workers {
            state = self
                .worker_idle
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Refuses new jobs and wakes every worker. Jobs already queued are still taken,
    /// unless `discard` drops them.
    pub fn close(&self, discard: bool) {
        let mut state = self.lock();
        state.closed = true;
        if discard {
            state.jobs.clear();
        }
        drop(state);
        self.not_empty.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every critical section is a few field updates that cannot panic halfway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A counting semaphore (the seeds' `threading.Semaphore(K)`): at most `permits`
/// holders at once, the others wait. `threads --max-inflight K` caps its fib
/// computations with one; it remembers the most holders it ever had, for the log and
/// `fiblab demo semaphore`.
pub struct Semaphore {
    state: Mutex<SemaphoreState>,
    returned: Condvar,
}

struct SemaphoreState {
    free: usize,
    held: usize,
    most_held: usize,
}

/// A permit; given back when dropped.
pub struct Permit<'a>(&'a Semaphore);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.free += 1;
        state.held -= 1;
        drop(state);
        self.0.returned.notify_one();
    }
}

impl Semaphore {
    pub fn new(permits: usize) -> Semaphore {
        Semaphore {
            state: Mutex::new(SemaphoreState {
                free: permits,
                held: 0,
                most_held: 0,
            }),
            returned: Condvar::new(),
        }
    }

    /// Waits for a permit and takes it.
    pub fn acquire(&self) -> Permit<'_> {
        let mut state = self.lock();
        while state.free == 0 {
            state = self.returned.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.free -= 1;
        state.held += 1;
        state.most_held = state.most_held.max(state.held);
        Permit(self)
    }

    /// The most permits ever held at once.
    pub fn most_held(&self) -> usize {
        self.lock().most_held
    }

    fn lock(&self) -> MutexGuard<'_, SemaphoreState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn capacity_counts_beyond_idle_workers() {
        let q = Arc::new(WorkQueue::new(1));
        assert_eq!(q.offer(1), Ok(()));
        assert_eq!(q.offer(2), Err(2), "one may wait, no worker is idle");
        let worker = {
            let q = q.clone();
            std::thread::spawn(move || q.take())
        };
        assert_eq!(worker.join().unwrap(), Some(1));
        let idle: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || q.take())
            })
            .collect();
        q.wait_until_idle(2);
        // Two idle workers plus one waiting slot.
        assert_eq!(
            (q.offer(3), q.offer(4), q.offer(5)),
            (Ok(()), Ok(()), Ok(()))
        );
        let mut got: Vec<_> = idle
            .into_iter()
            .map(|t| t.join().unwrap().unwrap())
            .collect();
        got.sort();
        assert_eq!(got, [3, 4]);
        assert_eq!(q.take(), Some(5));
    }

    #[test]
    fn close_wakes_workers_and_can_discard() {
        let q = Arc::new(WorkQueue::<u32>::new(4));
        q.offer(7).unwrap();
        q.close(true);
        assert_eq!(q.take(), None);
        assert_eq!(q.offer(8), Err(8), "closed");
        let q2 = Arc::new(WorkQueue::<u32>::new(4));
        q2.offer(9).unwrap();
        q2.close(false);
        assert_eq!((q2.take(), q2.take()), (Some(9), None));
    }
}
