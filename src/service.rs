//! The services behind the framing: what one request line means and what its reply is.
//!
//! Two services share the framing of [`crate::framing`]:
//! - `fib`: the line is a decimal `n`, the reply is fib(n) (the seeds' microservice);
//! - `upper`: the line comes back upper-cased (the echo service of seeds 002/003).
//!
//! Parsing ([`Service::parse`]) is separate from the work ([`Request::execute`]) so a
//! model that runs the work elsewhere (a worker pool, another process) parses on the
//! connection and ships only the parsed request. [`Session`] glues framer and service
//! for the common case: bytes in, reply bytes out.

use std::fmt;
use std::io::Write as _;
use std::ops::ControlFlow;

use crate::fib::{MAX_N_FITS_U64, fib, fib_until};
use crate::framing::{Frame, LineFramer};

/// Which service a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ServiceKind {
    /// `n` -> fib(n), by naive recursion.
    #[default]
    Fib,
    /// A line -> the same line in upper case (UTF-8 aware).
    Upper,
    /// `n` -> fib(n) from a table, with no work at all: what the machine's loopback
    /// and the model allow, the benchmark's `floor`.
    Lookup,
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceKind::Fib => "fib",
            ServiceKind::Upper => "upper",
            ServiceKind::Lookup => "lookup",
        })
    }
}

/// Default cap on the `n` one request may ask for. Naive fib(44) takes about 2 s on a
/// 2-vCPU VM (fib(42) 0.8 s, fib(40) 0.3 s), so no single request holds a worker for
/// more than a few seconds, and the seeds' heavy requests (36, 42) are all allowed.
pub const DEFAULT_MAX_N: u32 = 44;

/// Default cap on the length of one request line, terminator excluded.
pub const DEFAULT_MAX_LINE: usize = 1024;

/// A service with its limits. Cheap to copy into every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    pub kind: ServiceKind,
    /// The largest `n` a fib request may ask for (at most 93, where u64 ends).
    pub max_n: u32,
}

impl Default for Service {
    fn default() -> Self {
        Service {
            kind: ServiceKind::Fib,
            max_n: DEFAULT_MAX_N,
        }
    }
}

/// A parsed request, ready to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    Fib(u32),
    Upper(&'a str),
    /// fib(n) from the O(n) table (the `lookup` service).
    Lookup(u32),
}

/// Why a line gets an `ERR` reply. The `Display` text is the reason on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("not a number")]
    NotANumber,
    #[error("negative")]
    Negative,
    #[error("above max-n {max_n}")]
    AboveMaxN { max_n: u32 },
    #[error("line too long")]
    LineTooLong,
    #[error("not utf-8")]
    NotUtf8,
    #[error("server busy")]
    ServerBusy,
    #[error("worker died")]
    WorkerDied,
    /// The client went while its request was being computed; the work was stopped.
    /// Never seen on the wire in practice: nobody is left to read it.
    #[error("client gone")]
    ClientGone,
    /// The downstream (`--downstream`) failed this request: refused, closed, reset, or
    /// did not answer in time.
    #[error("downstream {0}")]
    Downstream(crate::downstream::Failure),
}

impl Rejection {
    /// The whole reply line, `ERR <reason>\n`.
    pub fn reply_line(&self) -> String {
        format!("ERR {self}\n")
    }
}

impl Service {
    /// Parses one line (terminator already removed). `None` means a blank line, which
    /// gets no reply.
    pub fn parse<'a>(&self, line: &'a [u8]) -> Option<Result<Request<'a>, Rejection>> {
        match self.kind {
            ServiceKind::Fib => parse_fib(line, self.max_n),
            ServiceKind::Lookup => parse_fib(line, self.max_n).map(|parsed| {
                parsed.map(|request| match request {
                    Request::Fib(n) => Request::Lookup(n),
                    other => other,
                })
            }),
            ServiceKind::Upper => {
                if line.iter().all(|b| matches!(b, b' ' | b'\t')) {
                    return None;
                }
                Some(
                    std::str::from_utf8(line)
                        .map(Request::Upper)
                        .map_err(|_| Rejection::NotUtf8),
                )
            }
        }
    }
}

/// Writes `ERR <reason>\n`.
pub fn write_rejection(rejection: Rejection, out: &mut Vec<u8>) {
    crate::metrics::error(rejection.metrics_reason());
    // Writing into a Vec cannot fail.
    let _ = writeln!(out, "ERR {rejection}");
}

impl Rejection {
    /// Its reason as `--metrics` counts it: an index into [`crate::metrics::REASONS`],
    /// whose label is the reason on the wire without its figures.
    pub fn metrics_reason(&self) -> usize {
        use crate::downstream::Failure;
        match self {
            Rejection::NotANumber => 0,
            Rejection::Negative => 1,
            Rejection::AboveMaxN { .. } => 2,
            Rejection::LineTooLong => 3,
            Rejection::NotUtf8 => 4,
            Rejection::ServerBusy => 5,
            Rejection::WorkerDied => 6,
            Rejection::ClientGone => 7,
            Rejection::Downstream(f) => match f {
                Failure::Refused => 8,
                Failure::Closed => 9,
                Failure::Reset => 10,
                Failure::TimedOut => 11,
                Failure::Unavailable => 12,
                Failure::Failed => 13,
                Failure::Desync => 14,
            },
        }
    }
}

impl Request<'_> {
    /// Its workload class as `--metrics` counts it: an index into
    /// [`crate::metrics::CLASSES`] (fib's and lookup's `n` by tens, then `upper`).
    pub fn metrics_class(&self) -> usize {
        match *self {
            Request::Fib(n) | Request::Lookup(n) => (n as usize / 10).min(4),
            Request::Upper(_) => 5,
        }
    }

    /// Does the work and writes the reply line. For `Fib(n)` this is the CPU-bound part.
    pub fn execute(&self, out: &mut Vec<u8>) {
        match *self {
            Request::Fib(n) => {
                let _ = writeln!(out, "{}", fib(n));
            }
            Request::Upper(text) => {
                out.extend_from_slice(text.to_uppercase().as_bytes());
                out.push(b'\n');
            }
            Request::Lookup(n) => {
                // n <= max-n <= 93 here, so the value exists.
                let _ = writeln!(out, "{}", crate::fib::fib_fast(n).unwrap_or(0));
            }
        }
    }
}

/// `[ \t]*-?[0-9]+[ \t]*`, bounded by `max_n`.
fn parse_fib(line: &[u8], max_n: u32) -> Option<Result<Request<'static>, Rejection>> {
    let is_blank = |b: &u8| matches!(b, b' ' | b'\t');
    let start = line.iter().position(|b| !is_blank(b))?;
    let end = line
        .iter()
        .rposition(|b| !is_blank(b))
        .map_or(start, |e| e + 1);
    let token = &line[start..end];
    let (negative, digits) = match token.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, token),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Some(Err(Rejection::NotANumber));
    }
    // Saturate instead of overflowing: any n past u32 is simply "too large".
    let value = digits.iter().fold(0u64, |acc, d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    let max_n = max_n.min(MAX_N_FITS_U64);
    Some(if negative && value > 0 {
        Err(Rejection::Negative)
    } else if value > u64::from(max_n) {
        Err(Rejection::AboveMaxN { max_n })
    } else {
        // value <= max_n <= 93 here, so the conversion cannot truncate.
        Ok(Request::Fib(value as u32))
    })
}

/// Where a connection's fib work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// On the connection's own thread or task, inside [`Session::feed`].
    Inline,
    /// Elsewhere (a worker pool, an isolate): `feed` stops at each fib request and hands
    /// its `n` back; the model computes it and writes the reply with
    /// [`Session::write_reply`] before feeding the rest.
    Handed,
}

/// What a session stopped at, for its model to finish before it feeds the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// fib(n), to compute elsewhere (only with [`Work::Handed`]); the model gives the
    /// reply back with [`Session::write_reply`].
    Compute(u32),
    /// A valid request that first waits on the downstream (`--downstream`): the model
    /// sends [`Session::downstream_line`], waits in its own style, and gives the outcome
    /// to [`Session::downstream_replied`], which answers the request.
    Wait,
}

/// What [`Session::feed`] did with the bytes it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// How many bytes it consumed; after a handoff the rest waits for its reply.
    pub consumed: usize,
    /// Where it stopped: a request to compute elsewhere, or to wait on the downstream.
    pub handed: Option<Handoff>,
}

/// Asks whether the client has gone, so that work for it can stop
/// ([`Session::set_probe`], [`fib_until`]).
pub struct Probe(Box<dyn FnMut() -> bool + Send>);

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Probe")
    }
}

/// Framer plus service: what one connection needs to turn bytes into replies.
///
/// Every model drives a `Session`; the I/O loop around it is the only thing that
/// differs between them.
#[derive(Debug)]
pub struct Session {
    framer: LineFramer,
    service: Service,
    work: Work,
    probe: Option<Probe>,
    /// The probe said the client is gone: no more work is done for it.
    cancelled: bool,
    /// Every valid request waits on the downstream first ([`Handoff::Wait`]).
    downstream: bool,
    /// The request waiting on the downstream, newline included (reused between requests).
    wait_line: Vec<u8>,
}

impl Session {
    pub fn new(service: Service, max_line: usize, work: Work) -> Self {
        Session {
            framer: LineFramer::new(max_line),
            service,
            work,
            probe: None,
            cancelled: false,
            downstream: false,
            wait_line: Vec::new(),
        }
    }

    /// Makes every valid request wait on a downstream before it is answered
    /// ([`Handoff::Wait`]); invalid ones are still answered at once.
    pub fn with_downstream(mut self, downstream: bool) -> Self {
        self.downstream = downstream;
        self
    }

    /// The line to send to the downstream for the request handed as [`Handoff::Wait`],
    /// terminator included.
    pub fn downstream_line(&self) -> &[u8] {
        &self.wait_line
    }

    /// The downstream's outcome for the request handed as [`Handoff::Wait`]: on failure
    /// its reply is `ERR downstream <reason>`; on success the request is answered as
    /// usual (inline, holding the GIL if there is one, or handed on as
    /// [`Handoff::Compute`]).
    pub fn downstream_replied(
        &mut self,
        outcome: crate::downstream::Outcome,
        out: &mut Vec<u8>,
        gone: Option<&mut dyn FnMut() -> bool>,
    ) -> Option<Handoff> {
        if let Err(failure) = outcome {
            // Counted in flight when it was framed: answered now, with its error.
            crate::metrics::answered();
            write_rejection(Rejection::Downstream(failure), out);
            return None;
        }
        let line = std::mem::take(&mut self.wait_line);
        let mut handed = None;
        {
            let held = crate::gil::process().map(crate::gil::Gil::hold);
            let gone = gone.map(|g| -> &mut dyn FnMut() -> bool { g });
            let (_, mut state) = self.answering(held.as_ref(), gone);
            state.downstream = false;
            state.resumed = true;
            let body = line.strip_suffix(b"\n").unwrap_or(&line);
            let _ = state.answer(Frame::Line(body), out, &mut handed);
        }
        self.wait_line = line;
        handed
    }

    /// Inline fib work asks `gone` now and then (see [`fib_until`]) and stops once it
    /// says yes: the request gets no reply, nor does any later one
    /// ([`is_cancelled`](Self::is_cancelled)), and the model closes the connection.
    pub fn set_probe(&mut self, gone: impl FnMut() -> bool + Send + 'static) {
        self.probe = Some(Probe(Box::new(gone)));
    }

    /// True once work was abandoned because the client had gone.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }

    /// Feeds bytes just read and appends the replies of the requests they complete.
    /// With [`Work::Handed`] it stops after the first fib request and returns its `n`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Fed {
        self.feed_from(input, out, None)
    }

    /// [`feed`](Self::feed), with inline fib work asking `gone` whether its client has
    /// gone: a probe for this call only, on the connection's own descriptor (no
    /// duplicate to keep open); a probe set with [`set_probe`](Self::set_probe) is
    /// asked when none is given.
    pub fn feed_from(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        gone: Option<&mut dyn FnMut() -> bool>,
    ) -> Fed {
        let mut handed = None;
        let held = crate::gil::process().map(crate::gil::Gil::hold);
        // Reborrowed for this call only, shorter than the lock guard above.
        let gone = gone.map(|g| -> &mut dyn FnMut() -> bool { g });
        let (framer, mut state) = self.answering(held.as_ref(), gone);
        let consumed = framer.push_until(input, |frame| state.answer(frame, out, &mut handed));
        Fed { consumed, handed }
    }

    /// See [`LineFramer::buffered`].
    pub fn buffered(&self) -> usize {
        self.framer.buffered()
    }

    /// See [`LineFramer::wants_idle_flush`].
    pub fn wants_idle_flush(&self) -> bool {
        self.framer.wants_idle_flush()
    }

    /// The socket is drained for now: answers an unterminated client's pending request
    /// (or hands it back, like [`feed`](Self::feed)).
    pub fn on_idle(&mut self, out: &mut Vec<u8>) -> Option<Handoff> {
        self.on_idle_from(out, None)
    }

    /// [`on_idle`](Self::on_idle), asking `gone` as [`feed_from`](Self::feed_from) does.
    pub fn on_idle_from(
        &mut self,
        out: &mut Vec<u8>,
        gone: Option<&mut dyn FnMut() -> bool>,
    ) -> Option<Handoff> {
        self.flush(out, gone, |framer, on| framer.flush_idle(on))
    }

    /// The client closed its side: answers (or hands back) what is pending.
    pub fn on_eof(&mut self, out: &mut Vec<u8>) -> Option<Handoff> {
        self.on_eof_from(out, None)
    }

    /// [`on_eof`](Self::on_eof), asking `gone` as [`feed_from`](Self::feed_from) does.
    pub fn on_eof_from(
        &mut self,
        out: &mut Vec<u8>,
        gone: Option<&mut dyn FnMut() -> bool>,
    ) -> Option<Handoff> {
        self.flush(out, gone, |framer, on| framer.flush_eof(on))
    }

    /// Answers what the framer's `flush` (idle or end of input) completes.
    fn flush(
        &mut self,
        out: &mut Vec<u8>,
        gone: Option<&mut dyn FnMut() -> bool>,
        flush: FlushFn,
    ) -> Option<Handoff> {
        let mut handed = None;
        let held = crate::gil::process().map(crate::gil::Gil::hold);
        // Reborrowed for this call only, shorter than the lock guard above.
        let gone = gone.map(|g| -> &mut dyn FnMut() -> bool { g });
        let (framer, mut state) = self.answering(held.as_ref(), gone);
        flush(framer, &mut |frame| state.answer(frame, out, &mut handed));
        handed
    }

    /// Writes the reply of a request computed elsewhere.
    pub fn write_reply(reply: Result<u64, Rejection>, out: &mut Vec<u8>) {
        crate::metrics::answered();
        match reply {
            Ok(value) => {
                let _ = writeln!(out, "{value}");
            }
            Err(rejection) => write_rejection(rejection, out),
        }
    }
}

/// One of the framer's flushes (idle, end of input), handing each frame it completes to
/// the callback.
type FlushFn = fn(&mut LineFramer, &mut dyn FnMut(Frame<'_>) -> ControlFlow<()>);

/// What answering a frame needs of a [`Session`], borrowed apart from its framer.
struct Answering<'a> {
    service: Service,
    work: Work,
    probe: Option<&'a mut dyn FnMut() -> bool>,
    cancelled: &'a mut bool,
    /// The emulated GIL, held while answering (`--gil`): fib checks its eval breaker.
    gil: Option<&'a crate::gil::Held<'static>>,
    /// Valid requests wait on the downstream first: stop at each, keeping its line.
    downstream: bool,
    wait_line: &'a mut Vec<u8>,
    /// The request back from the downstream: already counted when it was framed.
    resumed: bool,
}

impl Session {
    fn answering<'s: 'p, 'p>(
        &'s mut self,
        gil: Option<&'p crate::gil::Held<'static>>,
        probe: Option<&'p mut dyn FnMut() -> bool>,
    ) -> (&'s mut LineFramer, Answering<'p>) {
        let stored = self
            .probe
            .as_mut()
            .map(|Probe(gone)| &mut **gone as &mut dyn FnMut() -> bool);
        (
            &mut self.framer,
            Answering {
                service: self.service,
                work: self.work,
                probe: probe.or(stored),
                cancelled: &mut self.cancelled,
                gil,
                downstream: self.downstream,
                wait_line: &mut self.wait_line,
                resumed: false,
            },
        )
    }
}

impl Answering<'_> {
    fn answer(
        &mut self,
        frame: Frame<'_>,
        out: &mut Vec<u8>,
        handed: &mut Option<Handoff>,
    ) -> ControlFlow<()> {
        if *self.cancelled {
            return ControlFlow::Continue(()); // the client is gone: read on, answer nothing
        }
        let parsed = match frame {
            Frame::TooLong => Some(Err(Rejection::LineTooLong)),
            Frame::Line(line) => self.service.parse(line),
        };
        if let Some(Ok(request)) = &parsed
            && !self.resumed
        {
            crate::metrics::request(request.metrics_class());
        }
        // Timed only where metrics are on: the clock is read twice per request.
        let started = crate::metrics::get().map(|_| std::time::Instant::now());
        let done = |started: Option<std::time::Instant>| {
            if let Some(started) = started {
                crate::metrics::served(started.elapsed());
            }
            crate::metrics::answered();
        };
        match parsed {
            None => {}
            Some(Err(rejection)) => write_rejection(rejection, out),
            Some(Ok(_)) if self.downstream => {
                if let Frame::Line(line) = frame {
                    self.wait_line.clear();
                    self.wait_line.extend_from_slice(line);
                    self.wait_line.push(b'\n');
                }
                *handed = Some(Handoff::Wait);
                return ControlFlow::Break(());
            }
            Some(Ok(Request::Fib(n))) if self.work == Work::Handed => {
                *handed = Some(Handoff::Compute(n));
                return ControlFlow::Break(());
            }
            Some(Ok(Request::Fib(n))) => match (self.probe.as_mut(), self.gil) {
                (None, None) => {
                    Request::Fib(n).execute(out);
                    done(started);
                }
                (mut probe, gil) => {
                    let mut check = || {
                        if let Some(gil) = gil {
                            gil.check(); // the eval breaker: hand the lock over if asked
                        }
                        probe.as_mut().is_some_and(|gone| gone())
                    };
                    match fib_until(n, &mut check) {
                        Some(value) => {
                            let _ = writeln!(out, "{value}");
                        }
                        None => *self.cancelled = true,
                    }
                    done(started);
                }
            },
            Some(Ok(request)) => {
                request.execute(out);
                done(started);
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests;
