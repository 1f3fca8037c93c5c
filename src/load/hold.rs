//! Idle connections, held open while something else is measured: the C10K side of a
//! load (`fiblab load --idle N`, the bench's `connections` experiment).
//!
//! ```text
//! up to `window` connections in flight at once (so the server's accept backlog never
//! overflows and no SYN waits a second to be sent again):
//!   connect (non-blocking) ─► send one request ─► its reply ─► kept, idle, not polled
//!                                              └► ERR ... / closed / no reply in time
//! ```
//!
//! Each connection sends one request and waits for its reply before it counts as held,
//! so "held" means accepted *and* served, and the time to hold N is the server's accept
//! path under a steady stream of new clients. Once a connection gets no reply within the
//! timeout the server is taking no more (a one-at-a-time model, a full pool): no further
//! connections are opened, and the ones waiting stay open, as real clients would.
//! Dropping [`Held`] resets every connection (`SO_LINGER` 0), so thousands of closes
//! leave no `TIME_WAIT` behind to exhaust the loopback's ports for the next run.

use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// What to hold.
#[derive(Debug, Clone)]
pub struct HoldSpec {
    pub addr: SocketAddr,
    /// Connections to open.
    pub connections: usize,
    /// The one request each sends, terminator included (`b"1\n"`).
    pub request: Vec<u8>,
    /// Connections opening or waiting for their first reply at once.
    pub window: usize,
    /// How long a connection may wait for its reply before the server counts as full.
    pub timeout: Duration,
}

impl HoldSpec {
    /// `connections` to `addr`, each after one fib(1); 256 in flight, 2 s to answer.
    pub fn fib1(addr: SocketAddr, connections: usize) -> HoldSpec {
        HoldSpec {
            addr,
            connections,
            request: b"1\n".to_vec(),
            window: 256,
            timeout: Duration::from_secs(2),
        }
    }
}

/// The connections held, and what the others got. Every connection asked for is
/// exactly one of answered, told an `ERR`, closed, refused, unanswered or not tried.
#[derive(Debug, Default)]
pub struct Held {
    streams: Vec<TcpStream>,
    /// Answered with a reply that is not an `ERR`, and held open.
    pub answered: usize,
    /// Told `ERR ...` (most often `ERR server busy`); closed by the server.
    pub told_err: usize,
    /// The first `ERR` line, for the report.
    pub err_line: Option<String>,
    /// Closed or reset by the server without a reply.
    pub closed: usize,
    /// Connection attempts that failed (refused, or this process out of ports).
    pub refused: usize,
    /// No reply within the timeout; held open, waiting (the backlog, a queue).
    pub unanswered: usize,
    /// Never opened: the run stopped first ([`stopped`](Self::stopped) says why).
    pub not_tried: usize,
    /// From the first connect to the last reply.
    pub took: Duration,
    /// Why not every connection was tried, if so.
    pub stopped: Option<String>,
}

impl Held {
    /// Connections open now (answered and unanswered).
    pub fn open(&self) -> usize {
        self.streams.len()
    }

    /// One non-blocking `read` on an idle connection, µs, taken in turn over every
    /// connection held (each finds nothing: `EAGAIN`), the median of `sweeps` sweeps:
    /// what a loop that tries every socket pays per connection at this many, caches
    /// and all. `None` when none is held.
    pub fn read_sweep_us(&self, sweeps: usize) -> Option<f64> {
        if self.streams.is_empty() {
            return None;
        }
        let mut byte = [0u8; 64];
        let mut times: Vec<f64> = (0..sweeps.max(1))
            .map(|_| {
                let started = std::time::Instant::now();
                for mut stream in &self.streams {
                    let _ = std::hint::black_box(stream.read(&mut byte));
                }
                started.elapsed().as_secs_f64() * 1e6 / self.streams.len() as f64
            })
            .collect();
        times.sort_by(f64::total_cmp);
        Some(times[times.len() / 2])
    }

    /// One line: what a client got.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!(
            "{} answered",
            crate::units::thousands(self.answered as f64)
        )];
        if self.unanswered > 0 {
            parts.push(format!("{} without a reply (waiting)", self.unanswered));
        }
        if self.told_err > 0 {
            parts.push(format!(
                "{} told `{}`",
                self.told_err,
                self.err_line.as_deref().unwrap_or("ERR")
            ));
        }
        if self.closed > 0 {
            parts.push(format!("{} closed without a reply", self.closed));
        }
        if self.refused > 0 {
            parts.push(format!("{} refused", self.refused));
        }
        if self.not_tried > 0 {
            parts.push(format!("{} not tried", self.not_tried));
        }
        parts.join(", ")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        for stream in &self.streams {
            // A reset, not a FIN: no TIME_WAIT left holding a loopback port.
            let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
        }
    }
}

/// One connection between its connect and its first reply.
struct Opening {
    stream: TcpStream,
    started: Instant,
    sent: bool,
    reply: Vec<u8>,
}

/// Opens and holds the connections `spec` asks for; returns when each is held or
/// failed, or the server stopped answering new ones. Raises this process's descriptor
/// limit to its hard limit first; past it, the rest are "not tried" and `stopped` says
/// so.
///
/// # Errors
/// The poller cannot be created or waited on.
pub fn hold(spec: &HoldSpec) -> io::Result<Held> {
    crate::server::raise_descriptor_limit();
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut held = Held::default();
    let mut slots: Vec<Option<Opening>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut in_flight = 0usize;
    let mut opened = 0usize;
    let started = Instant::now();
    let mut last_reply = started;
    let window = spec.window.max(1);
    loop {
        while opened < spec.connections && in_flight < window && held.stopped.is_none() {
            opened += 1;
            match TcpStream::connect(spec.addr) {
                Ok(mut stream) => {
                    let slot = free.pop().unwrap_or_else(|| {
                        slots.push(None);
                        slots.len() - 1
                    });
                    poll.registry().register(
                        &mut stream,
                        Token(slot),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    slots[slot] = Some(Opening {
                        stream,
                        started: Instant::now(),
                        sent: false,
                        reply: Vec::new(),
                    });
                    in_flight += 1;
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(nix::libc::EMFILE | nix::libc::ENFILE)
                    ) =>
                {
                    held.stopped = Some(format!(
                        "this client ran out of descriptors after {} connections ({e}); raise `ulimit -n`",
                        opened - 1
                    ));
                    opened -= 1;
                }
                Err(e) if e.raw_os_error() == Some(nix::libc::EADDRNOTAVAIL) => {
                    held.stopped = Some(format!(
                        "no local port left after {} connections ({e}): the loopback's ephemeral ports are in use",
                        opened - 1
                    ));
                    opened -= 1;
                }
                Err(_) => held.refused += 1,
            }
        }
        if in_flight == 0 && (opened == spec.connections || held.stopped.is_some()) {
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        for event in events.iter() {
            let slot = event.token().0;
            let Some(opening) = slots.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            let outcome = step(
                opening,
                &spec.request,
                event.is_writable(),
                event.is_readable(),
            );
            if let Some(outcome) = outcome {
                let Some(mut opening) = slots[slot].take() else {
                    continue;
                };
                free.push(slot);
                in_flight -= 1;
                let _ = poll.registry().deregister(&mut opening.stream);
                match outcome {
                    Outcome::Answered => {
                        held.answered += 1;
                        last_reply = Instant::now();
                        held.streams.push(opening.stream);
                    }
                    Outcome::Err(line) => {
                        held.told_err += 1;
                        held.err_line.get_or_insert(line);
                    }
                    Outcome::Closed => held.closed += 1,
                    Outcome::Refused => held.refused += 1,
                }
            }
        }
        let now = Instant::now();
        for (slot, entry) in slots.iter_mut().enumerate() {
            if entry
                .as_ref()
                .is_some_and(|o| now.duration_since(o.started) >= spec.timeout)
                && let Some(mut opening) = entry.take()
            {
                free.push(slot);
                in_flight -= 1;
                let _ = poll.registry().deregister(&mut opening.stream);
                held.unanswered += 1;
                held.streams.push(opening.stream);
                held.stopped.get_or_insert_with(|| {
                    format!(
                        "a connection got no reply within {:.1} s: the server takes no more clients, so no more were opened",
                        spec.timeout.as_secs_f64()
                    )
                });
            }
        }
    }
    held.not_tried = spec.connections - opened;
    held.took = last_reply.duration_since(started);
    Ok(held)
}

enum Outcome {
    Answered,
    Err(String),
    Closed,
    Refused,
}

/// Moves one connection on: sends its request once connected, reads its reply.
fn step(opening: &mut Opening, request: &[u8], writable: bool, readable: bool) -> Option<Outcome> {
    if !opening.sent && writable {
        match opening.stream.take_error() {
            Ok(None) => {}
            _ => return Some(Outcome::Refused),
        }
        // Connected only once the peer address is known.
        if opening.stream.peer_addr().is_err() {
            return None;
        }
        match opening.stream.write(request) {
            Ok(_) => opening.sent = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(_) => return Some(Outcome::Refused),
        }
    }
    if readable || opening.sent {
        let mut chunk = [0u8; 256];
        loop {
            match opening.stream.read(&mut chunk) {
                Ok(0) => return Some(Outcome::Closed),
                Ok(k) => {
                    opening.reply.extend_from_slice(&chunk[..k]);
                    if let Some(end) = opening.reply.iter().position(|&b| b == b'\n') {
                        let line = String::from_utf8_lossy(&opening.reply[..end])
                            .trim_end()
                            .to_string();
                        return Some(match line.starts_with("ERR") {
                            true => Outcome::Err(line),
                            false => Outcome::Answered,
                        });
                    }
                    if opening.reply.len() > 4096 {
                        return Some(Outcome::Closed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Some(Outcome::Closed),
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead as _;
    use std::net::TcpListener;

    /// A server on a thread that answers each connection's first line with `reply`
    /// and then keeps it (or closes it, `close`), for `count` connections.
    fn server(reply: &'static str, close: bool, count: usize) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            for stream in listener.incoming().take(count) {
                let mut stream = stream.unwrap();
                let mut line = String::new();
                let _ = io::BufReader::new(&stream).read_line(&mut line);
                let _ = stream.write_all(reply.as_bytes());
                if !close {
                    kept.push(stream);
                }
            }
            std::thread::sleep(Duration::from_secs(2));
        });
        addr
    }

    #[test]
    fn holds_every_connection_a_server_answers() {
        let addr = server("1\n", false, 300);
        let held = hold(&HoldSpec {
            window: 32,
            ..HoldSpec::fib1(addr, 300)
        })
        .unwrap();
        assert_eq!((held.answered, held.open(), held.not_tried), (300, 300, 0));
        assert!(held.read_sweep_us(3).is_some_and(|us| us > 0.0));
        assert!(held.stopped.is_none());
        assert!(held.describe().starts_with("300 answered"));
    }

    #[test]
    fn a_server_that_stops_answering_stops_the_opening() {
        // Listening, never accepting: the kernel completes the handshakes, nobody answers.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let held = hold(&HoldSpec {
            window: 8,
            timeout: Duration::from_millis(150),
            ..HoldSpec::fib1(listener.local_addr().unwrap(), 100)
        })
        .unwrap();
        assert_eq!(held.answered, 0);
        assert_eq!(held.unanswered, 8, "{}", held.describe());
        assert_eq!(held.not_tried, 92);
        assert_eq!(held.open(), 8);
        assert!(held.stopped.as_deref().unwrap().contains("no reply within"));
    }

    #[test]
    fn busy_replies_and_closes_are_counted_apart() {
        let addr = server("ERR server busy\n", true, 20);
        let held = hold(&HoldSpec::fib1(addr, 20)).unwrap();
        assert_eq!(held.told_err, 20, "{}", held.describe());
        assert_eq!(held.err_line.as_deref(), Some("ERR server busy"));
        assert_eq!(held.open(), 0);
        let refused = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let held = hold(&HoldSpec::fib1(refused, 5)).unwrap();
        assert_eq!(held.refused + held.closed, 5, "{}", held.describe());
    }
}
