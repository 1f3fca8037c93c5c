//! The `uring` loop's side of `--downstream`: a connection's session moved on past its
//! downstream calls ([`advance`]), and the one-shot poll that watches the downstream
//! socket from the ring ([`watch_downstream`]). Apart so that `mod.rs` reads as the loop.

use std::io;
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::time::Instant;

use io_uring::types::Fd;
use io_uring::{IoUring, opcode};
use nix::libc;

use super::Conn;
use super::ring::{CANCEL, DOWNSTREAM};
use crate::downstream::Interest;
use crate::service::Handoff;

/// Moves a connection's session on: `first`, a handoff the caller just got, or else a
/// downstream call that is over; the bytes received; the next call to start. Returns a
/// fib to hand to the pool, if any.
pub(super) fn advance(
    conn: &mut Conn,
    slot: usize,
    idle_flush: &mut Vec<usize>,
    first: Option<Handoff>,
) -> Option<u32> {
    let fd = conn.stream.as_fd();
    let now = Instant::now();
    let mut handed = first;
    if handed.is_none()
        && let Some(downstream) = conn.downstream.as_mut().filter(|d| d.is_calling())
    {
        match downstream.progress(now) {
            Some(outcome) => handed = conn.driver.downstream_replied(outcome, fd),
            None => return None, // still waiting
        }
    }
    loop {
        if handed.is_none() {
            handed = conn.driver.resume(fd);
        }
        while handed.is_none() && conn.driver.wants_read() {
            if !conn.inbox.is_empty() {
                let bytes = std::mem::take(&mut conn.inbox);
                handed = conn.driver.on_read(&bytes, fd);
                conn.inbox = bytes;
                conn.inbox.clear();
                continue;
            }
            if conn.eof {
                handed = conn.driver.on_eof(fd);
            } else if conn.driver.wants_idle_flush() {
                idle_flush.push(slot);
            }
            break;
        }
        match handed.take() {
            None => return None,
            Some(Handoff::Compute(n)) => return Some(n),
            Some(Handoff::Wait) => match conn.downstream.as_mut() {
                Some(downstream) => {
                    downstream.start(conn.driver.downstream_line(), now);
                    match downstream.progress(now) {
                        Some(outcome) => handed = conn.driver.downstream_replied(outcome, fd),
                        None => return None,
                    }
                }
                // A session waits only when the server has a downstream.
                None => handed = conn.driver.downstream_replied(Ok(()), fd),
            },
        }
    }
}

/// Arms a poll on the downstream socket for what its call waits for, or cancels the
/// poll of a call that is over (its socket may be closed: the poll would hold it open).
/// Returns whether a call is in progress.
pub(super) fn watch_downstream(
    conn: &mut Conn,
    slot: usize,
    ring: &mut IoUring,
) -> io::Result<bool> {
    let Some(downstream) = conn.downstream.as_ref() else {
        return Ok(false);
    };
    let entry = match downstream.interest() {
        Some((fd, interest)) if conn.polls_armed == 0 => {
            let events = match interest {
                Interest::Read => libc::POLLIN,
                Interest::Write => libc::POLLOUT,
            };
            conn.polls_armed += 1;
            opcode::PollAdd::new(Fd(fd.as_raw_fd()), events as u32)
                .build()
                .user_data(DOWNSTREAM | slot as u64)
        }
        None if conn.polls_armed > 0 && !conn.poll_cancelling => {
            conn.poll_cancelling = true;
            opcode::AsyncCancel::new(DOWNSTREAM | slot as u64)
                .build()
                .user_data(CANCEL)
        }
        _ => return Ok(downstream.is_calling()),
    };
    loop {
        // SAFETY: a poll and a cancel point to no memory of ours.
        if unsafe { ring.submission().push(&entry) }.is_ok() {
            break;
        }
        match ring.submit() {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(downstream.is_calling())
}
