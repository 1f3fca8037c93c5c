//! One turn of an event loop that serves its own connections (`nonblocking`, `select`,
//! `epoll`, `coroutines`, `uring`): the `--idle-timeout` sweep ([`IdleSweep`]) and the
//! drain at shutdown ([`Drain`]) asked in one place, so every loop keeps them alike.
//!
//! ```text
//! loop {
//!     let now = Instant::now();
//!     if let Some(limit) = turns.sweep_due(now) { close the connections idle past limit }
//!     let (step, timeout) = turns.step(&shutdown, open, now, the loop's own bound);
//!     match step { Serving => ..., Draining { first, .. } => stop reads once, Over => return }
//!     wait for events, at most `timeout`; serve them
//! }
//! ```

use std::time::{Duration, Instant};

use super::IdleSweep;
use crate::shutdown::{Drain, DrainStep, Shutdown};

/// The idle sweep and the drain of one event loop; see the module docs.
#[derive(Debug)]
pub struct Turns {
    drain: Drain,
    sweep: IdleSweep,
}

impl Turns {
    /// `grace`: `--grace`, the drain's limit; `idle`: `--idle-timeout` (`None`: off).
    pub fn new(grace: Duration, idle: Option<Duration>) -> Turns {
        Turns {
            drain: Drain::new(grace),
            sweep: IdleSweep::new(idle),
        }
    }

    /// `Some(limit)` when the loop is to close the connections idle for `limit` now
    /// (every quarter of the timeout); the next sweep is then scheduled.
    pub fn sweep_due(&mut self, now: Instant) -> Option<Duration> {
        match self.sweep.due(now) {
            true => self.sweep.limit(),
            false => None,
        }
    }

    /// This turn's drain step with `open` connections still open, and how long the
    /// loop may wait for events: `bound` (the loop's own: a timer, a paused accept),
    /// shortened to the next idle sweep and, while draining, to the grace left.
    pub fn step(
        &mut self,
        shutdown: &Shutdown,
        open: usize,
        now: Instant,
        bound: Option<Duration>,
    ) -> (DrainStep, Option<Duration>) {
        let timeout = self.sweep.shorten(now, bound);
        let step = self.drain.step(shutdown, open);
        let timeout = match step {
            DrainStep::Draining { left, .. } => Some(timeout.map_or(left, |t| t.min(left))),
            _ => timeout,
        };
        (step, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_waits_no_longer_than_the_sweep_or_the_grace_left() {
        let shutdown = Shutdown::new().unwrap();
        let mut turns = Turns::new(Duration::from_secs(5), Some(Duration::from_secs(2)));
        let now = Instant::now();
        assert_eq!(
            turns.sweep_due(now),
            Some(Duration::from_secs(2)),
            "at once"
        );
        assert_eq!(turns.sweep_due(now), None);
        let (step, timeout) = turns.step(&shutdown, 3, now, Some(Duration::from_secs(60)));
        assert_eq!(step, DrainStep::Serving);
        assert!(
            timeout.unwrap() <= Duration::from_millis(500),
            "{timeout:?}"
        );
        shutdown.trigger();
        let mut off = Turns::new(Duration::from_millis(100), None);
        let (step, timeout) = off.step(&shutdown, 1, Instant::now(), None);
        assert!(matches!(step, DrainStep::Draining { first: true, .. }));
        assert!(timeout.unwrap() <= Duration::from_millis(100));
        let (step, _) = off.step(&shutdown, 0, Instant::now(), None);
        assert_eq!(step, DrainStep::Over);
    }
}
