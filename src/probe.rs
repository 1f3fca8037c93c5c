//! Is the client still there? A probe a long computation asks now and then, so a
//! request whose client reset the connection stops instead of burning a core for
//! nobody. Below [`crate::connection`] and [`crate::offload`], which both hand probes
//! to the work they start.

use std::io;
use std::os::fd::{AsFd as _, BorrowedFd, FromRawFd as _, OwnedFd};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::fib::CANCEL_CHECK_FROM;

/// Says whether the client a job works for has gone ([`gone_probe`]).
pub type Gone = Box<dyn FnMut() -> bool + Send>;

/// A probe on a client's socket: true once the socket was reset or broke
/// (`POLLERR`/`POLLHUP`: the client closed with replies unread, was killed with data in
/// flight, or a reply was written to a client that had closed). A plain end of input
/// is *not* "gone": a client that half-closes still reads its replies, and TCP cannot
/// tell it from one that closed, until a reply is written. It polls its own duplicate
/// of the descriptor, so a pool thread may hold it safely: for work handed to another
/// thread only, and only while that work runs ([`gone_for`]); inline work asks
/// [`is_gone`] of the connection's own descriptor. `None` when the descriptor
/// cannot be duplicated (out of descriptors): the work then runs to the end.
pub fn gone_probe(socket: BorrowedFd<'_>) -> Option<impl FnMut() -> bool + Send + 'static> {
    let socket = dup_above_select_range(socket).ok()?;
    Some(move || is_gone(socket.as_fd()))
}

/// The probe's question, asked once of a socket the caller holds: true once it was
/// reset or broke. Work done inline, on the thread that owns the connection, asks this
/// of the connection's own descriptor and needs no duplicate.
pub fn is_gone(socket: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(socket, PollFlags::empty())];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1..))
        && fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
}

/// A boxed [`gone_probe`] for a request of `n` on `socket`, only where the work is
/// long enough for stopping it to matter: below [`CANCEL_CHECK_FROM`] it would never
/// be asked.
pub fn gone_for(n: u32, socket: BorrowedFd<'_>) -> Option<Gone> {
    if n < CANCEL_CHECK_FROM {
        return None;
    }
    gone_probe(socket).map(|probe| Box::new(probe) as Gone)
}

/// A duplicate of `fd` numbered 1024 or more where the descriptor limit allows, so
/// duplicates never take the low numbers that `select(2)` can watch.
fn dup_above_select_range(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    match nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(1024)) {
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) just created this descriptor and returned it
        // to us alone; the OwnedFd becomes its only owner and closes it once.
        Ok(raw) => Ok(unsafe { OwnedFd::from_raw_fd(raw) }),
        Err(_) => fd.try_clone_to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    #[test]
    fn gone_probe_sees_a_reset_not_a_half_close() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let half = TcpStream::connect(addr).unwrap();
        let (served_half, _) = listener.accept().unwrap();
        let reset = TcpStream::connect(addr).unwrap();
        let (served_reset, _) = listener.accept().unwrap();
        let mut half_gone = gone_probe(served_half.as_fd()).unwrap();
        let mut reset_gone = gone_probe(served_reset.as_fd()).unwrap();
        assert!(!half_gone() && !reset_gone());
        half.shutdown(std::net::Shutdown::Write).unwrap();
        socket2::SockRef::from(&reset)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(reset);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!half_gone(), "a half-closed client is owed its replies");
        assert!(reset_gone());
    }

    #[test]
    fn short_work_gets_no_probe() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(gone_for(CANCEL_CHECK_FROM - 1, client.as_fd()).is_none());
        assert!(gone_for(CANCEL_CHECK_FROM, client.as_fd()).is_some());
    }
}
