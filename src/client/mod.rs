//! Clients: the seeds' `perf1` (latency of each request) and `perf2` (requests per
//! second), rebuilt so they check every reply and always stop by themselves.
//!
//! [`LineClient`] is the one request/reply loop they share: send a request line, read
//! until the reply's newline.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::fib::fib_fast;

pub mod perf1;
pub mod perf2;

/// What a perf client sends and expects back.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The bytes of one request, e.g. `b"30\n"`, or `b"30"` in the seeds' no-newline form.
    pub request: Vec<u8>,
    /// The reply line (without `\n`) a correct server sends, when it is known.
    pub expected: Option<Vec<u8>>,
}

impl Workload {
    /// A fib(n) request, with or without its newline (Beazley's clients send none).
    pub fn fib(n: u32, newline: bool) -> Workload {
        let mut request = n.to_string().into_bytes();
        if newline {
            request.push(b'\n');
        }
        Workload {
            request,
            expected: fib_fast(n).map(|v| v.to_string().into_bytes()),
        }
    }

    /// True when `reply` is the right answer (or when there is nothing to check).
    pub fn is_correct(&self, reply: &[u8]) -> bool {
        self.expected.as_deref().is_none_or(|e| e == reply)
    }
}

/// One connection that sends a request and waits for its reply line.
pub struct LineClient {
    stream: TcpStream,
    /// Bytes read past the last reply's newline (none with a conforming server).
    buf: Vec<u8>,
    /// Where the current reply line ends in `buf`, once found.
    line_end: usize,
}

impl LineClient {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<LineClient> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        Ok(LineClient {
            stream,
            buf: Vec::with_capacity(256),
            line_end: 0,
        })
    }

    /// A second handle on the socket, to shut it down from another thread and so
    /// unblock a call waiting for a reply that will never come.
    pub fn try_clone_stream(&self) -> io::Result<TcpStream> {
        self.stream.try_clone()
    }

    /// Sends `request` and returns the reply line without its newline.
    pub fn call(&mut self, request: &[u8]) -> io::Result<&[u8]> {
        self.buf.drain(..self.line_end);
        self.line_end = 0;
        self.stream.write_all(request)?;
        let mut scanned = 0;
        loop {
            if let Some(pos) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                self.line_end = scanned + pos + 1;
                return Ok(&self.buf[..scanned + pos]);
            }
            scanned = self.buf.len();
            if self.buf.len() > 64 * 1024 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "reply line over 64 KiB",
                ));
            }
            let old = self.buf.len();
            self.buf.resize(old + 4096, 0);
            let n = self.stream.read(&mut self.buf[old..])?;
            self.buf.truncate(old + n);
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
        }
    }
}

/// Parses `1.5`, `3s`, `500ms`, `2m`: the duration flags of the clients and server.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration: try 3s, 500ms or 2m"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        _ => return Err(format!("unknown unit '{unit}' in '{text}': use ms, s or m")),
    };
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("'{text}' is not a duration: it must be positive and finite"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn workload_expectations() {
        let w = Workload::fib(30, false);
        assert_eq!(w.request, b"30");
        assert!(w.is_correct(b"832040"));
        assert!(!w.is_correct(b"832041"));
        assert_eq!(Workload::fib(1, true).request, b"1\n");
    }

    #[test]
    fn call_reads_one_line_per_request() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 16];
            for reply in [&b"5"[..], b"5\n"] {
                let _ = s.read(&mut buf).unwrap();
                s.write_all(reply).unwrap();
                if reply == b"5" {
                    std::thread::sleep(Duration::from_millis(20));
                    s.write_all(b"5\n").unwrap();
                }
            }
        });
        let mut c = LineClient::connect(addr, Duration::from_secs(5)).unwrap();
        assert_eq!(c.call(b"10\n").unwrap(), b"55", "reply split across reads");
        assert_eq!(c.call(b"5\n").unwrap(), b"5");
        server.join().unwrap();
    }
}
