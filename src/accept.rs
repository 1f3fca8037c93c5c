//! Accepting when the machine says no. Out of descriptors (`EMFILE`), out of memory, a
//! client that reset before it was accepted: the next `accept` may well succeed, so the
//! server goes on, but it must not spin on the listener or log every attempt while the
//! cause lasts. [`Backoff`] is the one rule every model follows: pause accepting for
//! [`Backoff::PAUSE`] after a failure, log the first failure of an episode and, when
//! accepting works again, how many attempts failed meanwhile.
//!
//! Meanwhile the connections already open are served as usual; closing one frees the
//! descriptor the next accept needs.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::service::Rejection;

/// Errors after which the next `accept` may well succeed.
pub fn is_transient(e: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(
            Errno::ECONNABORTED
                | Errno::EINTR
                | Errno::EMFILE
                | Errno::ENFILE
                | Errno::ENOBUFS
                | Errno::ENOMEM
                | Errno::EPROTO
                | Errno::EPERM
        )
    )
}

/// Answers a connection past `--max-conns` with `ERR server busy`; the caller then
/// closes it. Written to the descriptor, so a std, tokio or raw socket is answered
/// alike. The socket is fresh, so the one short line fits its send buffer even when
/// non-blocking; a client that has already gone simply misses it.
pub fn turn_away(socket: std::os::fd::BorrowedFd<'_>, peer: SocketAddr) {
    tracing::debug!(%peer, "at --max-conns; turning the connection away");
    let _ = nix::unistd::write(socket, Rejection::ServerBusy.reply_line().as_bytes());
}

/// The state of accepting after transient failures; see the module docs.
#[derive(Debug, Default)]
pub struct Backoff {
    paused_until: Option<Instant>,
    /// Failures in the current episode.
    failures: u64,
}

impl Backoff {
    /// How long accepting pauses after a failure: short enough that a freed
    /// descriptor is used at once by human standards, long enough that a server out of
    /// descriptors makes 20 attempts a second, not millions.
    pub const PAUSE: Duration = Duration::from_millis(50);

    /// An accept failed with a transient error: pause. The first failure of an episode
    /// is logged; the rest are counted.
    pub fn failed(&mut self, e: &io::Error) {
        if self.failures == 0 {
            tracing::warn!(
                error = %e,
                "accept failed; pausing new connections until it works again (serving the open ones; further failures are counted, not logged)"
            );
        }
        self.failures += 1;
        self.paused_until = Some(Instant::now() + Self::PAUSE);
    }

    /// An accept worked, or found nobody waiting: the episode, if any, is over.
    pub fn recovered(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                failed_attempts = self.failures,
                "accepting new connections again"
            );
            self.failures = 0;
        }
        self.paused_until = None;
    }

    /// How long accepting stays paused from `now`; `None` when it is not paused.
    pub fn paused_for(&self, now: Instant) -> Option<Duration> {
        self.paused_until
            .filter(|&until| until > now)
            .map(|until| until - now)
    }

    /// Failures in the current episode.
    pub fn failures(&self) -> u64 {
        self.failures
    }
}

/// Memory maps one Rust thread takes: its stack and the guard page below it, and the
/// signal stack the standard library gives every thread and its guard page.
pub const MAPS_PER_THREAD: usize = 4;

/// How many more connections, each with `threads_per_connection` threads, fit under the
/// kernel's `vm.max_map_count` (maps per process), keeping a sixteenth of it for the
/// heap, the allocator's arenas and the libraries; `None` where `/proc` cannot say.
///
/// A thread-per-connection server must stop below it: past it, `mmap` fails inside a
/// new thread's start-up (its signal stack), where Rust cannot report an error and
/// aborts the whole process. At the default 65,530 that is about 15,000 threads.
pub fn thread_room(threads_per_connection: usize) -> Option<(usize, usize)> {
    let limit: usize = crate::machine::Host::get()
        .limits
        .max_map_count
        .as_deref()?
        .parse()
        .ok()?;
    let now = std::fs::read_to_string("/proc/self/maps")
        .ok()?
        .lines()
        .count();
    let free = limit.saturating_sub(now + limit / 16);
    Some((
        free / (MAPS_PER_THREAD * threads_per_connection.max(1)),
        limit,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_room_leaves_the_maps_a_thread_needs() {
        let (one, limit) = thread_room(1).expect("Linux has /proc/sys/vm/max_map_count");
        let (two, _) = thread_room(2).unwrap();
        assert!(one > 0 && one * MAPS_PER_THREAD < limit);
        assert!(two <= one / 2 + 1, "{two} vs {one}");
    }

    #[test]
    fn a_failure_pauses_and_a_success_ends_the_episode() {
        let mut backoff = Backoff::default();
        assert_eq!(backoff.paused_for(Instant::now()), None);
        let emfile = io::Error::from_raw_os_error(nix::libc::EMFILE);
        assert!(is_transient(&emfile));
        assert!(!is_transient(&io::Error::from_raw_os_error(
            nix::libc::EBADF
        )));
        for _ in 0..3 {
            backoff.failed(&emfile);
        }
        assert_eq!(backoff.failures(), 3);
        let paused = backoff.paused_for(Instant::now()).unwrap();
        assert!(paused <= Backoff::PAUSE && paused > Duration::ZERO);
        assert_eq!(backoff.paused_for(Instant::now() + Backoff::PAUSE), None);
        backoff.recovered();
        assert_eq!(
            (backoff.failures(), backoff.paused_for(Instant::now())),
            (0, None)
        );
    }
}
