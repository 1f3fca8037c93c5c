//! Binding a server's listening socket: `SO_REUSEADDR` and a deep backlog for every
//! model, `SO_REUSEPORT` only for the models built on it, and never silently onto a port
//! another server holds.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

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

/// A model's first listener could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another socket already listens on the port, and the model binds with
    /// `SO_REUSEPORT`: binding would make this server share the port, the kernel then
    /// splitting new clients between the two servers (crystal-lang/crystal#4019,
    /// Expensify/Bedrock#1872: a second process silently taking half the connections).
    #[error(
        "port {port} already has a listener (another server, perhaps another fiblab); this model binds with SO_REUSEPORT, so it would share the port and the kernel would split new clients between the two servers. Stop the other server, pick another --port, or pass --join-port to share it on purpose"
    )]
    PortHeld { port: u16 },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Binds a model's first listener: as [`bind`] for most models; for those that bind
/// with `SO_REUSEPORT` (`per-core`, `prefork`), only on a port nobody else listens on,
/// unless `join` asks to share one on purpose. Their own further listeners join this
/// one with [`bind_with`].
///
/// How: a probe socket without `SO_REUSEPORT` is bound first, which the kernel refuses
/// (`EADDRINUSE`) while any other socket listens on the port, shared or not; it is
/// dropped before the real bind (port 0: the real bind takes the port the probe got).
///
/// # Errors
/// [`BindError::PortHeld`] for a port already held (`reuse_port` and not `join`);
/// [`BindError::Io`] for anything else, a plain model's busy port included.
pub fn bind_model(
    addr: SocketAddr,
    reuse_port: bool,
    join: bool,
) -> Result<TcpListener, BindError> {
    if !reuse_port || join {
        return Ok(bind_with(addr, reuse_port)?);
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    if addr.is_ipv6() {
        probe.set_only_v6(true)?;
    }
    let port = match probe.bind(&addr.into()) {
        Ok(()) => probe
            .local_addr()?
            .as_socket()
            .map_or(addr.port(), |a| a.port()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            return Err(BindError::PortHeld { port: addr.port() });
        }
        Err(e) => return Err(e.into()),
    };
    drop(probe);
    Ok(bind_with(SocketAddr::new(addr.ip(), port), true)?)
}
