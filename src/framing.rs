//! Wire framing shared by every model: bytes in, request lines out.
//!
//! [`LineFramer`] is a sans-I/O state machine: a model feeds it whatever its socket
//! read returned and gets complete lines back, so blocking threads, event loops and
//! async tasks all frame requests the same way, and the framing is unit-tested
//! without a socket.
//!
//! The rules (see `PROTOCOL.md`):
//! - a line ends at `\n`; a `\r` right before it is dropped (telnet sends `\r\n`);
//! - a line longer than `max_line` yields one [`Frame::TooLong`] as soon as the limit
//!   is crossed, and the rest of it is discarded up to its newline, so the buffer
//!   never holds more than `max_line + 1` bytes whatever the client sends;
//! - the seeds' clients send `30` with no newline and wait. A model calls
//!   [`LineFramer::flush_idle`] when its socket has nothing more to read right now,
//!   and the pending bytes become one request. fiblab applies that rule only while the
//!   connection has never sent a newline: a client that terminates its lines is never
//!   cut in the middle of a line, however its bytes are split across reads;
//! - at end of input ([`LineFramer::flush_eof`]) pending bytes are a last request.

use std::ops::ControlFlow;

/// What the framer hands to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// One line without its terminator.
    Line(&'a [u8]),
    /// A line crossed the length limit; its bytes are being discarded.
    TooLong,
}

/// Splits a byte stream into lines with bounded memory. See the module docs.
#[derive(Debug)]
pub struct LineFramer {
    /// Bytes of the current line that arrived in earlier reads.
    pending: Vec<u8>,
    max_line: usize,
    /// True after a `TooLong`, until the newline that ends the over-long line.
    discarding: bool,
    /// True once the client sent a newline: from then on it frames its own lines and
    /// idle flushing (the rule for the seeds' unterminated clients) is off.
    line_mode: bool,
}

impl LineFramer {
    pub fn new(max_line: usize) -> Self {
        LineFramer {
            pending: Vec::new(),
            max_line,
            discarding: false,
            line_mode: false,
        }
    }

    /// Feeds bytes just read; calls `on_frame` for each frame they complete, in order.
    pub fn push(&mut self, input: &[u8], mut on_frame: impl FnMut(Frame<'_>)) {
        self.push_until(input, |frame| {
            on_frame(frame);
            ControlFlow::Continue(())
        });
    }

    /// Like [`push`](Self::push), but stops right after a line whose callback returns
    /// `Break` and returns how many bytes of `input` it consumed; the caller feeds the
    /// rest later. Models that hand a request to a worker pool use it to wait for the
    /// reply before framing the next request, which keeps replies in order and bounds
    /// the work one connection can queue.
    pub fn push_until(
        &mut self,
        input: &[u8],
        mut on_frame: impl FnMut(Frame<'_>) -> ControlFlow<()>,
    ) -> usize {
        let mut rest = input;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.line_mode = true;
            let segment = &rest[..end];
            rest = &rest[end + 1..];
            let flow = if self.discarding {
                self.discarding = false;
                ControlFlow::Continue(())
            } else if self.pending.is_empty() {
                self.emit(segment, &mut on_frame)
            } else {
                let mut line = std::mem::take(&mut self.pending);
                line.extend_from_slice(segment);
                let flow = self.emit(&line, &mut on_frame);
                line.clear();
                self.pending = line; // keep the allocation
                flow
            };
            if flow.is_break() {
                return input.len() - rest.len();
            }
        }
        if !rest.is_empty() && !self.discarding {
            // One byte of slack: the line may end in a `\r` whose `\n` is still to come.
            if self.pending.len() + rest.len() > self.max_line + 1 {
                self.pending.clear();
                self.discarding = true;
                let _ = on_frame(Frame::TooLong);
            } else {
                self.pending.extend_from_slice(rest);
            }
        }
        input.len()
    }

    /// Bytes held for a line still to be completed (at most `max_line + 1`).
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// True when pending bytes would become a request if the socket is idle now. Models
    /// check this after a read to decide whether to look for more bytes without waiting.
    pub fn wants_idle_flush(&self) -> bool {
        !self.line_mode && !self.discarding && !self.pending.is_empty()
    }

    /// The socket has nothing more to read right now: an unterminated client's pending
    /// bytes are its request.
    pub fn flush_idle(&mut self, on_frame: impl FnMut(Frame<'_>) -> ControlFlow<()>) {
        if self.wants_idle_flush() {
            self.flush(on_frame);
        }
    }

    /// The client closed its side: pending bytes are a last request, answered before
    /// the connection closes.
    pub fn flush_eof(&mut self, on_frame: impl FnMut(Frame<'_>) -> ControlFlow<()>) {
        if !self.discarding && !self.pending.is_empty() {
            self.flush(on_frame);
        }
        self.discarding = false;
    }

    fn flush(&mut self, mut on_frame: impl FnMut(Frame<'_>) -> ControlFlow<()>) {
        let line = std::mem::take(&mut self.pending);
        let _ = self.emit(&line, &mut on_frame);
        self.pending = line;
        self.pending.clear();
    }

    fn emit(
        &self,
        line: &[u8],
        on_frame: &mut impl FnMut(Frame<'_>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.max_line {
            on_frame(Frame::TooLong)
        } else {
            on_frame(Frame::Line(line))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames as owned strings, `TooLong` as "<too long>", for easy comparison.
    fn collect(framer: &mut LineFramer, chunks: &[&[u8]]) -> Vec<String> {
        let mut out = Vec::new();
        for chunk in chunks {
            framer.push(chunk, |f| out.push(show(f)));
        }
        out
    }

    fn keep(out: &mut Vec<String>, frame: Frame<'_>) -> ControlFlow<()> {
        out.push(show(frame));
        ControlFlow::Continue(())
    }

    fn show(frame: Frame<'_>) -> String {
        match frame {
            Frame::Line(l) => String::from_utf8_lossy(l).into_owned(),
            Frame::TooLong => "<too long>".into(),
        }
    }

    #[test]
    fn lf_and_crlf() {
        let mut f = LineFramer::new(16);
        assert_eq!(collect(&mut f, &[b"10\n20\r\n"]), ["10", "20"]);
    }

    #[test]
    fn pipelined_in_one_read() {
        let mut f = LineFramer::new(16);
        assert_eq!(collect(&mut f, &[b"1\n2\n3\n"]), ["1", "2", "3"]);
    }

    #[test]
    fn byte_at_a_time() {
        let mut f = LineFramer::new(16);
        let input = b"12\r\n345\n\n6\n";
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(collect(&mut f, &chunks), ["12", "345", "", "6"]);
    }

    #[test]
    fn request_split_across_reads() {
        let mut f = LineFramer::new(16);
        assert_eq!(collect(&mut f, &[b"1\n2", b"3\r", b"\n4"]), ["1", "23"]);
        // "4" waits for its newline: this client terminates lines.
        assert!(!f.wants_idle_flush());
        assert_eq!(collect(&mut f, &[b"5\n"]), ["45"]);
    }

    #[test]
    fn crlf_split_between_reads() {
        let mut f = LineFramer::new(4);
        // Exactly max_line bytes, then "\r" and "\n" in separate reads: not too long.
        assert_eq!(collect(&mut f, &[b"x\n", b"abcd\r", b"\n"]), ["x", "abcd"]);
    }

    #[test]
    fn unterminated_request_flushed_when_idle() {
        let mut f = LineFramer::new(16);
        assert!(collect(&mut f, &[b"30"]).is_empty());
        assert!(f.wants_idle_flush());
        let mut out = Vec::new();
        f.flush_idle(|fr| keep(&mut out, fr));
        assert_eq!(out, ["30"]);
        assert!(!f.wants_idle_flush());
        // The next unterminated request starts afresh.
        assert!(collect(&mut f, &[b"3", b"1"]).is_empty());
        f.flush_idle(|fr| keep(&mut out, fr));
        assert_eq!(out, ["30", "31"]);
    }

    #[test]
    fn no_idle_flush_once_client_sent_a_newline() {
        let mut f = LineFramer::new(16);
        assert_eq!(collect(&mut f, &[b"1\n3"]), ["1"]);
        assert!(!f.wants_idle_flush());
        let mut out = Vec::new();
        f.flush_idle(|fr| keep(&mut out, fr));
        assert!(out.is_empty());
        f.flush_eof(|fr| keep(&mut out, fr));
        assert_eq!(out, ["3"]);
    }

    #[test]
    fn eof_flushes_pending_bytes() {
        let mut f = LineFramer::new(16);
        let mut out = collect(&mut f, &[b"7\r"]);
        f.flush_eof(|fr| keep(&mut out, fr));
        assert_eq!(out, ["7"]);
    }

    #[test]
    fn over_long_line_reported_once_and_discarded() {
        let mut f = LineFramer::new(4);
        let out = collect(&mut f, &[b"123", b"45678", b"9999", b"99\n5\n"]);
        assert_eq!(out, ["<too long>", "5"]);
    }

    #[test]
    fn over_long_line_in_one_read() {
        let mut f = LineFramer::new(4);
        assert_eq!(collect(&mut f, &[b"123456\n7\n"]), ["<too long>", "7"]);
    }

    #[test]
    fn over_long_unterminated_is_not_flushed() {
        let mut f = LineFramer::new(4);
        assert_eq!(collect(&mut f, &[b"1234567"]), ["<too long>"]);
        assert!(!f.wants_idle_flush());
        let mut out = Vec::new();
        f.flush_eof(|fr| keep(&mut out, fr));
        assert!(out.is_empty());
    }

    #[test]
    fn memory_stays_bounded() {
        let mut f = LineFramer::new(1024);
        let chunk = vec![b'7'; 64 * 1024];
        let mut frames = 0;
        for _ in 0..64 {
            f.push(&chunk, |_| frames += 1);
            assert!(f.pending.capacity() <= 2 * 1025);
        }
        assert_eq!(frames, 1, "one TooLong for one 4 MiB line");
    }

    #[test]
    fn push_until_stops_after_the_breaking_line() {
        let mut f = LineFramer::new(16);
        let input = b"1\n22\n333\n4";
        let mut seen = Vec::new();
        let consumed = f.push_until(input, |fr| {
            seen.push(show(fr));
            if seen.len() == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(
            (seen.as_slice(), consumed),
            (&["1".to_string(), "22".to_string()][..], 5)
        );
        let rest = collect(&mut f, &[&input[consumed..]]);
        assert_eq!(rest, ["333"]);
    }

    #[test]
    fn any_split_gives_same_frames_for_terminated_clients() {
        let input = b"1\n22\r\n\n  333 \nabc\n";
        let mut whole = LineFramer::new(8);
        let expected = collect(&mut whole, &[input]);
        // The first line arrives whole: before its newline the client could be one of
        // the seeds' unterminated clients, and idle flushing applies.
        for cut_a in 2..input.len() {
            for cut_b in cut_a..input.len() {
                let mut f = LineFramer::new(8);
                let parts = [&input[..cut_a], &input[cut_a..cut_b], &input[cut_b..]];
                let mut got = Vec::new();
                for p in parts {
                    f.push(p, |fr| got.push(show(fr)));
                    f.flush_idle(|fr| keep(&mut got, fr));
                }
                assert_eq!(got, expected, "cuts at {cut_a},{cut_b}");
            }
        }
    }
}
