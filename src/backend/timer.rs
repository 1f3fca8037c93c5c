//! The backend's timer: sleeps that end at their due time to within the kernel's timer
//! slack (50 µs by default, `prctl(PR_SET_TIMERSLACK)`), where tokio's own timer wheel
//! rounds every sleep up to the next millisecond.
//!
//! Why it matters: with a 1 ms grid, every line due within one millisecond is answered
//! in the same instant, so a downstream under load sends its replies in bursts (66 at
//! once at 66,000 req/s); the server and the load generator then take each burst in
//! turn and sit idle between them, and a closed loop of 1,000 clients waiting 10 ms
//! each left a quarter of the machine's CPU idle (measured with `/proc/stat`). A real
//! downstream's replies come spread out; so do these, to within the slack.
//!
//! ```text
//! sleep_until(due) ──(due, oneshot)──► timer task: a heap by due time
//!                                        one timerfd armed for the earliest
//!     ◄──────────── fires ─────────────  on expiry: every entry due, in due order
//! ```
//!
//! One timer per backend (per runtime): a `timerfd` registered with tokio's reactor, so
//! expiries wake the runtime's own thread; it is re-armed only when the earliest entry
//! changes, which with a fixed delay is once per expiry.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsFd as _, AsRawFd, RawFd};

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// A handle to the timer task: clone it into every connection.
#[derive(Debug, Clone)]
pub struct Timer {
    entries: mpsc::UnboundedSender<(Instant, oneshot::Sender<()>)>,
}

impl Timer {
    /// Starts the timer task on the current runtime (which must have I/O enabled).
    ///
    /// # Errors
    /// The kernel refused a `timerfd` (descriptors exhausted).
    pub fn start() -> io::Result<Self> {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: `Fd` owns the timerfd and always returns its one descriptor, which stays
        // open until the `AsyncFd` (and so the `Fd` inside it) is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(Fd(fd), Interest::READABLE) }
            .map_err(io::Error::from)?;
        let (entries, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(fd, rx));
        Ok(Self { entries })
    }

    /// Returns at `due`, late by at most the kernel's timer slack plus the runtime's
    /// turn; at once if `due` has passed.
    pub async fn sleep_until(&self, due: Instant) {
        if due <= Instant::now() {
            return;
        }
        let (fire, fired) = oneshot::channel();
        match self.entries.send((due, fire)) {
            Ok(()) => {
                let _ = fired.await;
            }
            // The timer task is gone (the runtime is shutting down): tokio's own timer.
            Err(_) => tokio::time::sleep_until(due).await,
        }
    }
}

/// A `TimerFd` that tokio's reactor can watch.
struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// One waiting sleep, ordered by due time, then by arrival.
struct Entry {
    due: Instant,
    seq: u64,
    fire: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

async fn run(fd: AsyncFd<Fd>, mut rx: mpsc::UnboundedReceiver<(Instant, oneshot::Sender<()>)>) {
    let mut heap: BinaryHeap<Reverse<Entry>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut armed: Option<Instant> = None;
    let mut open = true;
    while open || !heap.is_empty() {
        tokio::select! {
            biased;
            ready = fd.readable() => match ready {
                Ok(mut guard) => {
                    // Read the expiry count; EAGAIN (a spurious wake) is harmless.
                    let _ = nix::unistd::read(guard.get_inner().0.as_fd(), &mut [0u8; 8]);
                    guard.clear_ready();
                    armed = None;
                }
                // The reactor lost the descriptor: fall back to tokio's timer for what
                // is left, a millisecond late at most.
                Err(_) => {
                    let at = heap.peek().map(|Reverse(e)| e.due);
                    if let Some(at) = at {
                        tokio::time::sleep_until(at).await;
                    }
                }
            },
            entry = rx.recv(), if open => match entry {
                Some((due, fire)) => {
                    seq += 1;
                    heap.push(Reverse(Entry { due, seq, fire }));
                }
                None => open = false,
            },
        }
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(e)| e.due <= now) {
            if let Some(Reverse(e)) = heap.pop() {
                let _ = e.fire.send(());
            }
        }
        if let Some(Reverse(next)) = heap.peek()
            && armed != Some(next.due)
        {
            // A relative expiry of at least 1 ns: zero would disarm the timer.
            let left = next
                .due
                .saturating_duration_since(now)
                .max(std::time::Duration::from_nanos(1));
            if fd
                .get_ref()
                .0
                .set(
                    Expiration::OneShot(TimeSpec::from_duration(left)),
                    TimerSetTimeFlags::empty(),
                )
                .is_ok()
            {
                armed = Some(next.due);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sleeps_end_in_due_order_and_not_early() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let timer = Timer::start().unwrap();
            let start = Instant::now();
            let (tx, mut rx) = mpsc::unbounded_channel();
            // Due out of order: 3 ms, 1 ms, 2 ms, and one already past.
            for (i, ms) in [3u64, 1, 2, 0].into_iter().enumerate() {
                let timer = timer.clone();
                let tx = tx.clone();
                let due = start + Duration::from_millis(ms);
                tokio::spawn(async move {
                    timer.sleep_until(due).await;
                    let _ = tx.send((i, Instant::now() >= due));
                });
            }
            drop(tx);
            let mut order = Vec::new();
            while let Some((i, not_early)) = rx.recv().await {
                assert!(not_early, "sleep {i} ended before it was due");
                order.push(i);
            }
            assert_eq!(order, vec![3, 1, 2, 0]);
        });
    }
}
