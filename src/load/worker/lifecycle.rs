//! A load connection's life: connect without blocking, notice when the connect is
//! done or failed, reconnect after a reset, give up on a server that stays away, and
//! account the requests lost on the way.

use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::{Interest, Poll, Token};

use super::{RECONNECT_AFTER, Worker, slots};
use crate::load::Stop;

impl Worker {
    /// Starts a non-blocking connect: a server that drops SYNs (full backlog) must not
    /// stall the other connections of this thread while the handshake waits.
    pub(super) fn connect(&mut self, i: usize, poll: &Poll) -> io::Result<()> {
        let now = Instant::now();
        match mio::net::TcpStream::connect(self.spec.addr) {
            Ok(mut stream) => {
                poll.registry().register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                let conn = &mut self.conns[i];
                conn.stream = Some(stream);
                conn.connecting = Some(now + self.spec.timeout);
                conn.retry_at = None;
                self.sweep_at = self.sweep_at.min(now + self.spec.timeout);
            }
            Err(e) => self.connect_failed(i, &e),
        }
        Ok(())
    }

    /// A connect in progress: done, failed, or still waiting?
    pub(super) fn finish_connect(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        let (Some(deadline), Some(stream)) = (conn.connecting, conn.stream.as_ref()) else {
            return;
        };
        let failure = match stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match stream.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::NotConnected && Instant::now() < deadline => {
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    Some(io::ErrorKind::TimedOut.into())
                }
                Err(e) => Some(e),
            },
        };
        match failure {
            Some(e) => {
                conn.stream = None;
                conn.connecting = None;
                self.connect_failed(i, &e);
            }
            None => self.connected(i),
        }
    }

    pub(super) fn connected(&mut self, i: usize) {
        let now = Instant::now();
        let conn = &mut self.conns[i];
        conn.connecting = None;
        if let Some(stream) = &conn.stream {
            let _ = stream.set_nodelay(true);
        }
        if self.ticked()
            && let Some(stream) = &self.conns[i].stream
        {
            // Replies are read at the ticks: the kernel stamps each as it arrives.
            let _ = nix::sys::socket::setsockopt(
                stream,
                nix::sys::socket::sockopt::ReceiveTimestampns,
                &true,
            );
        }
        let conn = &mut self.conns[i];
        conn.failing_since = None;
        conn.ever_connected = true;
        conn.read_buf.clear();
        conn.write_buf.clear();
        conn.written = 0;
        // The requests that fell due while the connection was down are not sent late
        // (that would bunch them up): they are counted as missed, and the schedule
        // resumes from now.
        if let Some(interval) = self.interval {
            let from = conn.next_due.max(self.measure_start);
            if from < now {
                self.stats.missed += slots(now - from, interval);
            }
        }
        conn.next_due = conn.next_due.max(now);
        self.schedule(i);
    }

    pub(super) fn connect_failed(&mut self, i: usize, e: &io::Error) {
        let now = Instant::now();
        if now >= self.measure_start {
            self.stats.errors.connect += 1;
            self.shared.errors.fetch_add(1, Ordering::Relaxed);
        }
        let conn = &mut self.conns[i];
        let since = *conn.failing_since.get_or_insert(now);
        // Nobody listening at the start is an answer, not a hiccup; a server that went
        // away is retried until the timeout.
        let give_up = (!conn.ever_connected && e.kind() == io::ErrorKind::ConnectionRefused)
            || now.duration_since(since) >= self.spec.timeout;
        conn.retry_at = if give_up {
            None
        } else {
            Some(now + RECONNECT_AFTER)
        };
        if let Some(at) = conn.retry_at {
            self.sweep_at = self.sweep_at.min(at);
        }
        if give_up
            && self
                .conns
                .iter()
                .all(|c| c.stream.is_none() && c.retry_at.is_none())
        {
            self.exhausted = true; // no connection left to send on
            self.stats.gave_up = true;
        }
    }

    pub(super) fn drop_connection(&mut self, i: usize, now: Instant) {
        let conn = &mut self.conns[i];
        conn.stream = None; // closing deregisters it
        conn.in_flight.clear();
        conn.retry_at = Some(now);
        self.sweep_at = self.sweep_at.min(now);
    }

    /// The connection broke: its measured requests in flight are lost.
    pub(super) fn connection_failed(&mut self, i: usize) {
        let lost = self.conns[i]
            .in_flight
            .iter()
            .filter(|f| f.measured)
            .count() as u64;
        self.stats.errors.reset += lost;
        self.shared.errors.fetch_add(lost, Ordering::Relaxed);
        let retry = Instant::now() + RECONNECT_AFTER;
        self.drop_connection(i, retry);
    }
}

/// When the loop must wake by itself.
impl Worker {
    /// How long to wait for replies once sending has stopped: an exact count waits
    /// for every reply (up to the timeout). A timed run's figures end at its end, but
    /// its connections close only once the replies still on the wire are in (up to a
    /// second): closing on an unread reply sends the server a reset, and some servers
    /// (the seeds' aserver.py, one_server.py) die of one.
    pub(super) fn drain(&self) -> Duration {
        match self.spec.stop {
            Stop::Requests(_) => self.spec.timeout,
            Stop::After(_) => self.spec.timeout.min(Duration::from_secs(1)),
        }
    }

    /// The earliest moment the loop must act without being woken by a socket: the next
    /// sweep, the run's end, the drain's end, or (open loop) the next request due.
    pub(super) fn next_deadline(&self, now: Instant, sending: bool) -> Instant {
        let mut wake = self.sweep_at.max(now);
        if let Some(end) = self.end {
            wake = wake.min(end.max(now));
        }
        if let Some(stopped) = self.stats.stopped_sending {
            wake = wake.min(stopped + self.drain());
        }
        if sending && let Some(std::cmp::Reverse((due, _))) = self.due.peek() {
            wake = wake.min(*due);
        }
        wake
    }

    /// The earliest deadline among the connections' slow changes, read in a sweep: a
    /// reconnect, a connect that times out, the oldest request's timeout.
    pub(super) fn slow_deadline(&self) -> Instant {
        let mut wake = self.sweep_at;
        for conn in &self.conns {
            if let Some(retry) = conn.retry_at {
                wake = wake.min(retry);
            }
            if let Some(deadline) = conn.connecting {
                wake = wake.min(deadline);
            }
            if let Some(oldest) = conn.in_flight.front() {
                wake = wake.min(oldest.intended + self.spec.timeout);
            }
        }
        wake
    }
}
