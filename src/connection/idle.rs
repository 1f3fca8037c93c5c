//! `--idle-timeout` for the event loops, one mechanism for all of them: each
//! connection keeps an [`Activity`] clock, touched whenever bytes move (or, in the
//! hand-built reactor, whenever its socket wakes its task), and the loop runs an
//! [`IdleSweep`] every quarter of the timeout that closes the connections whose clock
//! has stood still for the whole timeout. Checking per event would cost every request;
//! a sweep costs nothing between sweeps.
//!
//! The blocking loop uses the socket's own timeouts (`SO_RCVTIMEO`/`SO_SNDTIMEO`), and
//! tokio its timers: they have no loop to sweep from.

use std::time::{Duration, Instant};

/// When a connection last did something, for `--idle-timeout`.
#[derive(Debug, Clone, Copy)]
pub struct Activity {
    last: Instant,
}

impl Activity {
    /// A clock that starts now.
    pub fn new() -> Activity {
        Activity {
            last: Instant::now(),
        }
    }

    /// Something happened: the clock starts again.
    pub fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// True when nothing happened for `limit` up to `now`; never without a limit.
    pub fn expired(&self, now: Instant, limit: Option<Duration>) -> bool {
        limit.is_some_and(|limit| now.saturating_duration_since(self.last) >= limit)
    }
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

/// When an event loop looks for connections idle past `--idle-timeout`: every quarter
/// of the timeout (between 10 ms and 1 s), so the sweep costs nothing per event.
#[derive(Debug)]
pub struct IdleSweep {
    limit: Option<Duration>,
    next: Instant,
}

impl IdleSweep {
    pub fn new(limit: Option<Duration>) -> IdleSweep {
        IdleSweep {
            limit,
            next: Instant::now(),
        }
    }

    pub fn limit(&self) -> Option<Duration> {
        self.limit
    }

    fn interval(limit: Duration) -> Duration {
        (limit / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// The longest the loop may wait before the next sweep is due (`None`: no limit).
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.limit.map(|_| self.next.saturating_duration_since(now))
    }

    /// `timeout`, or a shorter one the loop already had.
    pub fn shorten(&self, now: Instant, timeout: Option<Duration>) -> Option<Duration> {
        match (timeout, self.timeout(now)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// True when a sweep is due now; schedules the next one.
    pub fn due(&mut self, now: Instant) -> bool {
        match self.limit {
            Some(limit) if now >= self.next => {
                self.next = now + Self::interval(limit);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_sweep_runs_every_quarter_timeout_within_bounds() {
        let mut off = IdleSweep::new(None);
        let mut sweep = IdleSweep::new(Some(Duration::from_secs(2)));
        let long = IdleSweep::new(Some(Duration::from_secs(300)));
        let now = Instant::now();
        assert!(!off.due(now));
        assert_eq!(off.timeout(now), None);
        assert_eq!(
            off.shorten(now, Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3))
        );
        assert!(sweep.due(now), "the first sweep is due at once");
        assert!(!sweep.due(now));
        assert_eq!(sweep.timeout(now), Some(Duration::from_millis(500)));
        assert!(sweep.due(now + Duration::from_millis(500)));
        assert_eq!(
            IdleSweep::interval(Duration::from_secs(300)),
            Duration::from_secs(1)
        );
        assert_eq!(
            long.shorten(now, Some(Duration::from_millis(5))),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn activity_expires_only_with_a_limit() {
        let clock = Activity::new();
        let later = Instant::now() + Duration::from_secs(10);
        assert!(!clock.expired(later, None));
        assert!(clock.expired(later, Some(Duration::from_secs(5))));
        assert!(!clock.expired(later, Some(Duration::from_secs(60))));
    }
}
