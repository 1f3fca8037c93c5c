//! What every model is given: its [`Config`], and a listener bound by [`bind`].

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::service::{DEFAULT_MAX_LINE, Service};

/// Settings shared by every model. Models ignore the fields that do not apply to them
/// (`single` has no pool), so one `serve` signature fits all.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub service: Service,
    /// Longest request line, terminator excluded.
    pub max_line: usize,
    /// Pool size: worker threads (`threadpool`), runtime threads (`tokio`).
    pub workers: usize,
    /// Connections that may wait for a free worker (`threadpool`) before new ones are
    /// turned away with `ERR server busy`.
    pub queue: usize,
    /// How long shutdown waits for open connections before cutting them.
    pub grace: Duration,
    /// `prefork`: one port per process (the seed's form) instead of one shared port.
    pub ports: bool,
    /// The server was asked for `--port 0`: extra listeners (`prefork --ports`) take
    /// free ports too, instead of the ports after the first.
    pub free_ports: bool,
    /// Connections served at once; past it, new ones get `ERR server busy` and are closed.
    pub max_conns: usize,
    /// A connection that sends nothing (or reads none of its replies) for this long is
    /// closed; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Run fib in a bounded worker pool (`--workers` threads, `--queue` waiting jobs)
    /// instead of on the loop; only models whose registry entry allows it.
    pub offload: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            service: Service::default(),
            max_line: DEFAULT_MAX_LINE,
            workers: default_workers(),
            queue: 64,
            max_conns: DEFAULT_MAX_CONNS,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            grace: Duration::from_secs(5),
            offload: false,
            ports: false,
            free_ports: false,
        }
    }
}

/// Default `--max-conns`: above the bench's largest scenario (1000 clients), far below
/// what the descriptor limit fiblab raises itself to allows, and small enough that a
/// thread-per-connection model's stacks stay a modest reservation.
pub const DEFAULT_MAX_CONNS: usize = 1024;

/// Default `--idle-timeout`: long enough for a person typing into `nc`, short enough
/// that silent connections (slowloris) do not hold their slots for good.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// One worker per CPU this process may run on.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Binds a listening socket: `SO_REUSEADDR` so a restarted server gets its port back at
/// once (as the seeds do), and a deep accept backlog so a burst of clients queues in the
/// kernel instead of being refused.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    bind_with(addr, false)
}

/// [`bind`], optionally with `SO_REUSEPORT`, so that other sockets (`prefork`'s
/// processes) can bind the same port and the kernel spreads connections over them.
/// Only models that ask for it get it: on an ordinary server it would let a second
/// server start on a busy port and silently take half its clients.
pub fn bind_with(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_port_zero_then_rebind_same_port() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        drop(first);
        let again = bind(addr).unwrap();
        assert_eq!(again.local_addr().unwrap(), addr);
    }
}
