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

/// Answers a connection past `--max-conns` with `ERR server busy` and lets it go. The
/// socket is fresh, so the one short line fits its send buffer even when non-blocking;
/// a client that has already gone simply misses it.
pub fn turn_away(stream: &mut impl io::Write, peer: SocketAddr) {
    tracing::debug!(%peer, "at --max-conns; turning the connection away");
    let _ = stream.write(Rejection::ServerBusy.reply_line().as_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;

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
