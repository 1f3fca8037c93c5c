//! The session driver: everything a connection loop does between its socket and its
//! [`Session`], without the socket. Every loop — blocking, async, readiness — is this
//! driver plus the way its model reads, writes and waits, so the wire behaviour cannot
//! drift between models.
//!
//! ```text
//! loop's read  ── bytes ──> on_read ─┐            ┌─> pending(): replies to write
//!              ── nothing ─> on_idle ─┼─> Session ─┤
//!              ── EOF ─────> on_eof  ─┘            └─> a handoff: the loop finishes it
//!                                                      and resume() frames the rest
//! ```
//!
//! Two handoffs stop the framing until the loop is done with them:
//! - [`Handoff::Compute`]`(n)`: fib(n) runs elsewhere (a pool, a process, an isolate);
//!   its reply goes to [`reply`](SessionDriver::reply).
//! - [`Handoff::Wait`]: the request waits on the downstream first (`--downstream`);
//!   the loop sends [`downstream_line`](SessionDriver::downstream_line), waits in its
//!   own style ([`crate::downstream`]), and gives the outcome to
//!   [`downstream_replied`](SessionDriver::downstream_replied), which answers it (or
//!   hands its fib on as `Compute`).

use std::os::fd::BorrowedFd;

use crate::probe::is_gone;
use crate::server::Config;
use crate::service::{Handoff, Rejection, Session, Work};

/// A connection's session and its buffers; see the module docs.
pub struct SessionDriver {
    session: Session,
    /// Bytes read but not yet framed: the rest of a read after a handed request.
    unfed: Vec<u8>,
    /// A handed request's reply has not come back yet.
    awaiting_reply: bool,
    out: Vec<u8>,
    /// How much of `out` is on the wire already.
    written: usize,
    read_closed: bool,
}

impl SessionDriver {
    /// The driver of a connection: a session with `config`'s service and line limit.
    /// Each call that may run fib inline takes the connection's socket, borrowed for
    /// the call, so that work for a client that reset stops ([`crate::probe::is_gone`])
    /// with no duplicate descriptor per connection. Handed work carries its own probe.
    pub fn for_connection(config: &Config, work: Work) -> SessionDriver {
        SessionDriver::new(
            Session::new(config.service, config.max_line, work)
                .with_downstream(config.downstream.is_some()),
        )
    }

    pub fn new(session: Session) -> SessionDriver {
        SessionDriver {
            session,
            unfed: Vec::new(),
            awaiting_reply: false,
            out: Vec::new(),
            written: 0,
            read_closed: false,
        }
    }

    /// Bytes the socket gave. Returns a request to compute elsewhere, if the session
    /// handed one; the bytes after it wait for [`resume`](Self::resume).
    pub fn on_read(&mut self, bytes: &[u8], socket: BorrowedFd<'_>) -> Option<Handoff> {
        let mut gone = || is_gone(socket);
        let fed = self
            .session
            .feed_from(bytes, &mut self.out, Some(&mut gone));
        if fed.handed.is_some() {
            self.unfed.extend_from_slice(&bytes[fed.consumed..]);
        }
        self.hand(fed.handed)
    }

    /// The socket has nothing more right now: an unterminated request is complete.
    pub fn on_idle(&mut self, socket: BorrowedFd<'_>) -> Option<Handoff> {
        let mut gone = || is_gone(socket);
        let handed = self.session.on_idle_from(&mut self.out, Some(&mut gone));
        self.hand(handed)
    }

    /// End of input: the last request is complete, and the connection finishes once
    /// its replies are written.
    pub fn on_eof(&mut self, socket: BorrowedFd<'_>) -> Option<Handoff> {
        self.read_closed = true;
        let mut gone = || is_gone(socket);
        let handed = self.session.on_eof_from(&mut self.out, Some(&mut gone));
        self.hand(handed)
    }

    /// The reply of the request handed as [`Handoff::Compute`].
    pub fn reply(&mut self, reply: Result<u64, Rejection>) {
        Session::write_reply(reply, &mut self.out);
        self.awaiting_reply = false;
    }

    /// The line to send to the downstream for the request handed as [`Handoff::Wait`],
    /// terminator included.
    pub fn downstream_line(&self) -> &[u8] {
        self.session.downstream_line()
    }

    /// The downstream's outcome for the request handed as [`Handoff::Wait`]: the request
    /// is answered, or its fib handed on ([`Handoff::Compute`], returned); then
    /// [`resume`](Self::resume) frames the rest.
    pub fn downstream_replied(
        &mut self,
        outcome: crate::downstream::Outcome,
        socket: BorrowedFd<'_>,
    ) -> Option<Handoff> {
        let mut gone = || is_gone(socket);
        let handed = self
            .session
            .downstream_replied(outcome, &mut self.out, Some(&mut gone));
        self.awaiting_reply = false;
        self.hand(handed)
    }

    /// Frames the bytes left after a handed request, once its reply is back; returns
    /// the next handed request, if any.
    pub fn resume(&mut self, socket: BorrowedFd<'_>) -> Option<Handoff> {
        if self.awaiting_reply || self.unfed.is_empty() {
            return None;
        }
        let mut gone = || is_gone(socket);
        let fed = self
            .session
            .feed_from(&self.unfed, &mut self.out, Some(&mut gone));
        self.unfed.drain(..fed.consumed);
        self.hand(fed.handed)
    }

    fn hand(&mut self, handed: Option<Handoff>) -> Option<Handoff> {
        self.awaiting_reply |= handed.is_some();
        handed
    }

    /// Replies not yet written.
    pub fn pending(&self) -> &[u8] {
        &self.out[self.written..]
    }

    /// `n` bytes of [`pending`](Self::pending) were written.
    pub fn wrote(&mut self, n: usize) {
        self.written += n;
        if self.written >= self.out.len() {
            self.out.clear();
            self.written = 0;
        }
    }

    /// Has replies to write.
    pub fn wants_write(&self) -> bool {
        !self.pending().is_empty()
    }

    /// Would take more input: not at its end, no reply awaited, nothing left unframed.
    pub fn wants_read(&self) -> bool {
        !self.read_closed && !self.awaiting_reply && self.unfed.is_empty()
    }

    /// A reply computed elsewhere, or the downstream's, is awaited.
    pub fn awaiting_reply(&self) -> bool {
        self.awaiting_reply
    }

    /// Bytes without a newline wait: read again *without waiting*, and if nothing
    /// comes, [`on_idle`](Self::on_idle). See [`Session::wants_idle_flush`].
    pub fn wants_idle_flush(&self) -> bool {
        self.session.wants_idle_flush()
    }

    /// The client has closed its side and got every reply: the connection is done.
    pub fn is_finished(&self) -> bool {
        self.read_closed && !self.awaiting_reply && self.unfed.is_empty() && !self.wants_write()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Service;

    /// A socket that stays open and is never reset, for the inline probe to ask.
    fn fd() -> BorrowedFd<'static> {
        static SOCKETS: std::sync::OnceLock<(
            std::os::unix::net::UnixStream,
            std::os::unix::net::UnixStream,
        )> = std::sync::OnceLock::new();
        let (a, _) = SOCKETS.get_or_init(|| std::os::unix::net::UnixStream::pair().unwrap());
        std::os::fd::AsFd::as_fd(a)
    }

    fn driver(work: Work) -> SessionDriver {
        SessionDriver::new(Session::new(Service::default(), 64, work))
    }

    fn take(d: &mut SessionDriver) -> String {
        let text = String::from_utf8_lossy(d.pending()).into_owned();
        let n = d.pending().len();
        d.wrote(n);
        text
    }

    #[test]
    fn inline_work_answers_in_the_read() {
        let mut d = driver(Work::Inline);
        assert_eq!(d.on_read(b"10\n20\n", fd()), None);
        assert_eq!(take(&mut d), "55\n6765\n");
        assert!(d.wants_read() && !d.is_finished());
        assert_eq!(d.on_eof(fd()), None);
        assert!(d.is_finished());
    }

    #[test]
    fn handed_work_keeps_the_rest_until_the_reply() {
        let mut d = driver(Work::Handed);
        assert_eq!(
            d.on_read(b"10\n20\nabc\n", fd()),
            Some(Handoff::Compute(10))
        );
        assert!(!d.wants_read(), "no reading while a reply is awaited");
        assert_eq!(d.resume(fd()), None, "nothing resumes before the reply");
        d.reply(Ok(55));
        assert_eq!(d.resume(fd()), Some(Handoff::Compute(20)));
        d.reply(Err(Rejection::ServerBusy));
        assert_eq!(d.resume(fd()), None);
        assert_eq!(take(&mut d), "55\nERR server busy\nERR not a number\n");
        assert!(d.wants_read());
    }

    #[test]
    fn unterminated_request_is_answered_when_idle_or_at_eof() {
        let mut d = driver(Work::Inline);
        assert_eq!(d.on_read(b"10", fd()), None);
        assert!(d.wants_idle_flush());
        assert_eq!(d.on_idle(fd()), None);
        assert_eq!(take(&mut d), "55\n");
        let mut d = driver(Work::Handed);
        assert_eq!(d.on_read(b"12", fd()), None);
        assert_eq!(d.on_eof(fd()), Some(Handoff::Compute(12)));
        assert!(!d.is_finished(), "the reply is still owed");
        d.reply(Ok(144));
        assert!(!d.is_finished(), "and not yet written");
        assert_eq!(take(&mut d), "144\n");
        assert!(d.is_finished());
    }

    #[test]
    fn partial_writes_keep_their_place() {
        let mut d = driver(Work::Inline);
        d.on_read(b"10\n", fd());
        d.wrote(1);
        assert_eq!(d.pending(), b"5\n");
        d.wrote(2);
        assert!(!d.wants_write());
    }
}
