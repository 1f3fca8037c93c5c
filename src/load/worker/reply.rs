//! Reading replies: every complete line matched with the oldest request in flight on
//! its connection, judged, and timed; on a tick grid, timed by the kernel's arrival
//! stamp rather than by when the loop got round to reading it.

use std::io::{self, Read as _};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::sys::time::TimeSpec;

use super::Worker;
use crate::load::mix::Reply;
use crate::load::stats::{Latency, Outcome};

/// The longest reply line the load generator takes (64 KiB, far past any valid reply
/// of fiblab or of a peer it is pointed at): a longer one is a wrong reply, and its
/// connection is dropped, so an endless line cannot grow memory or hold a thread.
pub const MAX_REPLY_LINE: usize = 64 * 1024;

/// Full reads of one connection per turn of the event loop: past it, the connection is
/// read again next turn (the clock, the interrupt and the other connections first), so
/// a peer that floods cannot keep a thread from `--duration` or Ctrl-C.
pub(super) const MOST_READS_PER_TURN: usize = 16;

impl Worker {
    pub(super) fn read_replies(&mut self, i: usize, scratch: &mut [u8]) {
        let ticked = self.ticked();
        for _ in 0..MOST_READS_PER_TURN {
            let Some(stream) = self.conns[i].stream.as_mut() else {
                return;
            };
            self.calls.receive += 1;
            let read = match ticked {
                true => stamped_read(stream.as_raw_fd(), scratch, &mut self.cmsg),
                false => stream.read(scratch).map(|n| (n, None)),
            };
            match read {
                Ok((0, _)) => return self.connection_failed(i),
                Ok((n, stamp)) => {
                    self.conns[i].read_buf.extend_from_slice(&scratch[..n]);
                    let arrived = stamp.map_or_else(Instant::now, |s| self.clock.instant(s));
                    self.take_lines(i, arrived);
                    if self.conns[i].read_buf.len() > MAX_REPLY_LINE {
                        return self.reply_too_long(i, arrived);
                    }
                    // A short read emptied the socket's queue: what arrives later is a
                    // new edge, so the read that would only say EAGAIN is saved (one
                    // system call per reply).
                    if n < scratch.len() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.connection_failed(i),
            }
        }
        // The turn's reads are spent and the socket may hold more: next turn.
        if !self.reread.contains(&i) {
            self.reread.push(i);
        }
    }

    /// A reply line past [`MAX_REPLY_LINE`]: a wrong reply to the oldest request in
    /// flight, and the connection dropped (the rest of it in flight is lost).
    fn reply_too_long(&mut self, i: usize, now: Instant) {
        self.conns[i].read_buf.clear();
        if let Some(request) = self.conns[i].in_flight.pop_front()
            && request.measured
        {
            let second = now.saturating_duration_since(self.measure_start).as_secs() as usize;
            self.stats
                .record(request.class, second, Outcome::Wrong, now);
            self.shared.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.connection_failed(i);
    }

    /// Matches every complete reply line with the oldest request in flight.
    pub(super) fn take_lines(&mut self, i: usize, now: Instant) {
        let was_full = self.conns[i].in_flight.len() >= self.spec.pipeline.max(1);
        let mut consumed = 0;
        while let Some(pos) = self.conns[i].read_buf[consumed..]
            .iter()
            .position(|&b| b == b'\n')
        {
            let end = consumed + pos;
            let line_start = consumed;
            consumed = end + 1;
            let Some(request) = self.conns[i].in_flight.pop_front() else {
                continue; // a reply to nothing: the server talks out of turn; ignore it
            };
            if !request.measured {
                continue;
            }
            if self.end.is_some_and(|end| now > end) {
                // Answered after the measured time: it was in flight at the end.
                self.stats.unfinished += 1;
                continue;
            }
            if now.duration_since(request.intended) >= self.spec.timeout {
                // Past --timeout from when it was due: a timeout, whether or not a sweep
                // noticed it before its reply came.
                self.count_timeouts(1);
                continue;
            }
            let line = &self.conns[i].read_buf[line_start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let class = &self.spec.mix.classes[request.class];
            let judged = class.judge(self.spec.protocol, line);
            let correct = judged == Reply::Correct;
            if let Some(on_reply) = &self.on_reply {
                let connection = self.conns[i].index;
                on_reply(now.duration_since(request.sent), line, correct, connection);
            }
            let second = now.saturating_duration_since(self.measure_start).as_secs() as usize;
            if second > self.published_to {
                self.publish_seconds(second);
            }
            let latency = Latency {
                intended: now.duration_since(request.intended),
                sent: now.duration_since(request.sent),
            };
            let outcome = match judged {
                Reply::Correct => Outcome::Ok(latency),
                Reply::Error => Outcome::ErrReply,
                Reply::Wrong => Outcome::Wrong,
            };
            self.stats.record(request.class, second, outcome, now);
            if correct {
                self.conns[i].ok += 1;
                self.shared.ok.fetch_add(1, Ordering::Relaxed);
                self.shared.class_ok[request.class].fetch_add(1, Ordering::Relaxed);
            } else {
                self.shared.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.conns[i].read_buf.drain(..consumed);
        if was_full
            && self.conns[i].in_flight.len() < self.spec.pipeline.max(1)
            && self.conns[i].stream.is_some()
        {
            self.schedule(i);
        }
    }
}

/// One `recvmsg` with the kernel's receive stamp (`SO_TIMESTAMPNS`, wall clock): when
/// the last of the bytes read reached the socket.
/// `cmsg` is the control-message buffer, kept by the worker so a read allocates nothing
/// (room for one stamp: [`stamp_space`]).
fn stamped_read(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
    cmsg: &mut [u8],
) -> io::Result<(usize, Option<TimeSpec>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg =
        recvmsg::<()>(fd, &mut iov, Some(cmsg), MsgFlags::MSG_DONTWAIT).map_err(io::Error::from)?;
    let stamp = msg.cmsgs().ok().and_then(|mut c| {
        c.find_map(|m| match m {
            ControlMessageOwned::ScmTimestampns(t) => Some(t),
            _ => None,
        })
    });
    Ok((msg.bytes, stamp))
}

/// The wall clock's offset from the monotonic one, to place a kernel receive stamp
/// (wall clock) on the `Instant` timeline; read again at every use, so a clock step or
/// slew during the run moves it too.
pub(super) struct WallToMonotonic;

impl WallToMonotonic {
    pub(super) fn now() -> WallToMonotonic {
        WallToMonotonic
    }

    /// The `Instant` of wall-clock time `stamp`: now, less how long ago the stamp was.
    fn instant(&self, stamp: TimeSpec) -> Instant {
        let (now, wall) = (Instant::now(), std::time::SystemTime::now());
        let stamp = std::time::UNIX_EPOCH + Duration::from(stamp);
        now - wall.duration_since(stamp).unwrap_or(Duration::ZERO)
    }
}

/// A control-message buffer with room for one receive stamp.
pub(super) fn stamp_space() -> Vec<u8> {
    nix::cmsg_space!(TimeSpec)
}
