//! The open loop's schedule: when each connection's next request is due (a calendar
//! queue, earliest first), what falls due while a connection cannot send, and the
//! optional tick grid the loop acts on.

use std::cmp::Reverse;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{InFlight, Worker, slots};
use crate::load::Stop;

impl Worker {
    /// Open loop: every in-flight request on connection `i` past its timeout is
    /// counted as a timeout, once; its reply, if it comes, is read and not counted.
    pub(super) fn expire_in_flight(&mut self, i: usize, now: Instant) {
        let timeout = self.spec.timeout;
        let mut expired = 0;
        for f in &mut self.conns[i].in_flight {
            if f.measured && now.duration_since(f.intended) >= timeout {
                f.measured = false;
                expired += 1;
            }
        }
        self.count_timeouts(expired);
    }

    /// Open loop: the slots of connection `i` that fell due more than --timeout ago
    /// and could not be sent (the connection's pipeline was full: the server is
    /// stalled) are timeouts: no reply can come within the timeout now.
    pub(super) fn expire_unsent(&mut self, i: usize, now: Instant) {
        let Some(interval) = self.interval else {
            return;
        };
        while self.conns[i].next_due + self.spec.timeout <= now {
            let due = self.conns[i].next_due;
            self.conns[i].next_due += interval;
            if due < self.measure_start {
                continue;
            }
            if let Stop::Requests(budget) = self.spec.stop
                && self.shared.issued.fetch_add(1, Ordering::Relaxed) >= budget
            {
                self.exhausted = true;
                return;
            }
            self.count_timeouts(1);
        }
    }

    /// Queues every request due on connection `i`.
    pub(super) fn send_due(&mut self, i: usize, now: Instant) {
        self.expire_unsent(i, now);
        loop {
            let conn = &self.conns[i];
            if conn.in_flight.len() >= self.spec.pipeline.max(1) {
                return; // full: its next reply puts it back in the calendar
            }
            let intended = match self.interval {
                None => now,
                Some(_) if conn.next_due <= now => conn.next_due,
                Some(_) => return self.schedule(i),
            };
            let measured = intended >= self.measure_start;
            if measured {
                if let Stop::Requests(budget) = self.spec.stop {
                    if self.shared.issued.fetch_add(1, Ordering::Relaxed) >= budget {
                        self.exhausted = true;
                        return;
                    }
                }
            }
            let class = self
                .spec
                .mix
                .pick(self.rng.u64(0..self.spec.mix.total_weight()));
            if measured {
                self.stats.sent += 1;
            }
            let conn = &mut self.conns[i];
            conn.write_buf
                .extend_from_slice(&self.spec.mix.classes[class].request);
            conn.in_flight.push_back(InFlight {
                class,
                intended,
                sent: Instant::now(),
                measured,
            });
            if let Some(interval) = self.interval {
                conn.next_due += interval;
            }
        }
    }

    /// `at` rounded up to the schedule's tick grid (ticks from the measured window's
    /// start): requests due within one tick are sent on one wake-up.
    pub(super) fn on_grid(&self, at: Instant) -> Instant {
        if self.tick.is_zero() || at <= self.measure_start {
            return at;
        }
        let tick = self.tick.as_nanos();
        let ticks = (at - self.measure_start).as_nanos().div_ceil(tick);
        self.measure_start + Duration::from_nanos(u64::try_from(ticks * tick).unwrap_or(u64::MAX))
    }

    /// Open loop on a tick grid: the loop sleeps to each tick and acts on everything due
    /// by then; replies are read at the ticks with the kernel's arrival stamp.
    pub(super) fn ticked(&self) -> bool {
        self.interval.is_some() && !self.tick.is_zero() && !self.spec.spin
    }

    /// Open loop: connection `i` can send, so its next due time goes in the calendar.
    pub(super) fn schedule(&mut self, i: usize) {
        if self.interval.is_some() && !self.exhausted {
            self.due.push(Reverse((self.conns[i].next_due, i)));
        }
    }

    /// Open loop, at the end of a timed run: the slots that fell due before the end but
    /// could not be sent (the connection was full or down) are missed requests.
    pub(super) fn count_unsent_slots(&mut self) {
        let (Some(interval), Some(end)) = (self.interval, self.end) else {
            return;
        };
        for conn in &self.conns {
            let from = conn.next_due.max(self.measure_start);
            if from < end {
                self.stats.missed += slots(end - from, interval);
            }
        }
    }
}
