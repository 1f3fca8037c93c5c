//! The lab's own small talks with the server it started: one line as `nc` would send
//! it, its `/metrics`, a free port for them, and the size of the heavy request.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A port nobody listens on now, for the child's `--metrics`.
pub(super) fn free_port() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// One line to `addr` on a fresh connection, its reply line back.
pub(super) fn ask(addr: SocketAddr, line: &str, limit: Duration) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, limit)?;
    stream.set_read_timeout(Some(limit))?;
    stream.write_all(format!("{line}\n").as_bytes())?;
    let mut reply = String::new();
    BufReader::new(stream.take(64 * 1024)).read_line(&mut reply)?;
    match reply.is_empty() {
        true => Err(std::io::Error::other("the server closed without a reply")),
        false => Ok(reply.trim_end().to_string()),
    }
}

/// The server's `/metrics`, as `(sample, value)` pairs of the figures the page shows.
pub(super) fn read_metrics(addr: SocketAddr) -> std::io::Result<Vec<(String, f64)>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: lab\r\n\r\n")?;
    let mut text = String::new();
    stream.take(1 << 20).read_to_string(&mut text)?;
    const SHOWN: [&str; 8] = [
        "fiblab_connections_open",
        "fiblab_requests_in_flight",
        "fiblab_gil_wait_seconds_total",
        "fiblab_gil_forced_switches_total",
        "process_threads",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "fiblab_offload_queue_depth",
    ];
    Ok(text
        .lines()
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            SHOWN
                .contains(&name)
                .then(|| Some((name.to_string(), value.parse().ok()?)))?
        })
        .collect())
}

/// The `n` whose fib takes about a second on this machine: fib(25) timed, and each
/// step of n costing the golden ratio more (fib's recursion makes fib(n) calls).
pub(super) fn about_a_second() -> u32 {
    let us = crate::calibrate::fib_time(25).max(1.0);
    let golden = (1.0 + 5f64.sqrt()) / 2.0;
    let steps = (1e6 / us).ln() / golden.ln();
    (25.0 + steps).round().clamp(25.0, 44.0) as u32
}
