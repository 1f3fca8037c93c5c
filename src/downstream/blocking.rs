//! The blocking call: the thread and process models wait on the downstream the way
//! they wait on their client, asleep in a system call.

use std::io::{self, Read as _, Write as _};
use std::net::TcpStream;
use std::time::Instant;

use super::{DownstreamConfig, Failure, Outcome, REPLY_CHUNK, ReplyLine};

/// A connection's downstream, called with blocking sockets: `connect`, `write`, `read`
/// with `SO_SNDTIMEO`/`SO_RCVTIMEO` set to what is left of the timeout. While one thread
/// waits here, it holds nothing else: no lock (`--gil` is released, as CPython does around
/// `recv`), no CPU.
#[derive(Debug)]
pub struct Blocking {
    config: DownstreamConfig,
    conn: Option<TcpStream>,
}

impl Blocking {
    pub fn new(config: DownstreamConfig) -> Blocking {
        Blocking { config, conn: None }
    }

    /// Sends `line` (terminator included) and waits for the reply's line, at most the
    /// timeout; connects first if there is no connection yet.
    pub fn call(&mut self, line: &[u8]) -> Outcome {
        let deadline = Instant::now() + self.config.timeout;
        let outcome = self
            .try_call(line, deadline)
            .map_err(|e| Failure::from_io(&e));
        if outcome.is_err() {
            self.conn = None;
        }
        outcome
    }

    fn try_call(&mut self, line: &[u8], deadline: Instant) -> io::Result<()> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let conn = TcpStream::connect_timeout(&self.config.addr, self.config.timeout)?;
                conn.set_nodelay(true)?;
                self.conn.insert(conn)
            }
        };
        let left = || {
            deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or(io::Error::from(io::ErrorKind::TimedOut))
        };
        conn.set_write_timeout(Some(left()?))?;
        conn.write_all(line)?;
        let mut reply = ReplyLine::default();
        let mut buf = [0u8; REPLY_CHUNK];
        loop {
            conn.set_read_timeout(Some(left()?))?;
            match conn.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) if reply.saw(&buf[..n]) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
