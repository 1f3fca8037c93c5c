//! Downstreams for the tests of `--downstream`: the real `fiblab backend`, run in this
//! process, and fakes that misbehave the ways PROTOCOL.md names (never answers, closes,
//! resets). Each stops by itself when dropped.

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fiblab::backend::{BackendConfig, BackendStats, serve};
use fiblab::shutdown::Shutdown;

/// `fiblab backend` on a free port, in a thread of this process.
pub struct Backend {
    pub addr: SocketAddr,
    pub stats: Arc<BackendStats>,
    shutdown: Shutdown,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Backend {
    pub fn start(delay: Duration, jitter: Duration) -> Backend {
        Backend::start_with(BackendConfig {
            delay,
            jitter,
            seed: 3,
            idle_timeout: None,
        })
    }

    pub fn start_with(config: BackendConfig) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(BackendStats::default());
        let shutdown = Shutdown::new().unwrap();
        let (s, st) = (shutdown.clone(), stats.clone());
        let thread = std::thread::spawn(move || serve(listener, config, s, st));
        Backend {
            addr,
            stats,
            shutdown,
            thread: Some(thread),
        }
    }

    /// `--downstream ADDR` for a server to wait on it.
    pub fn flag(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(t) = self.thread.take() {
            t.join().unwrap().unwrap();
        }
    }
}

/// How a fake downstream misbehaves once it has read a request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Holds the connection and never answers.
    Silent,
    /// Closes the connection (FIN).
    Close,
    /// Resets the connection (RST: linger 0, then close).
    Reset,
    /// Streams `x` without a newline, fast, until the server goes.
    Endless,
    /// Echoes each line, and 50 ms later echoes it again (a stale line).
    Twice,
    /// Sends a line of its own on accept, then echoes.
    Greets,
    /// Echoes the first line, then closes (the keep-alive race).
    EchoThenClose,
}

/// A downstream that accepts, reads one line, then misbehaves; a thread per connection.
pub struct Faulty {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Faulty {
    pub fn start(fault: Fault) -> Faulty {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut handlers = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let flag = flag.clone();
                        handlers.push(std::thread::spawn(move || misbehave(stream, fault, &flag)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            handlers.into_iter().for_each(|h| {
                let _ = h.join();
            });
        });
        Faulty {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    pub fn flag(&self) -> String {
        self.addr.to_string()
    }
}

/// The next line from `stream` (newline included), `None` once it closes or the test
/// is over.
fn next_line(stream: &mut TcpStream, stop: &AtomicBool) -> Option<Vec<u8>> {
    let mut byte = [0u8; 1];
    let mut line = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match stream.read(&mut byte) {
            Ok(0) => return None,
            Ok(_) => {
                line.push(byte[0]);
                if byte[0] == b'\n' {
                    return Some(line);
                }
            }
            Err(_) => {}
        }
    }
    None
}

fn misbehave(mut stream: TcpStream, fault: Fault, stop: &AtomicBool) {
    use std::io::Write as _;
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    if fault == Fault::Greets {
        let _ = stream.write_all(b"hello\n");
    }
    // Up to the first newline, or until the test is over.
    let Some(first) = next_line(&mut stream, stop) else {
        return;
    };
    let mut byte = [0u8; 1];
    match fault {
        Fault::Endless => {
            let chunk = [b'x'; 16 * 1024];
            while !stop.load(Ordering::SeqCst) && stream.write_all(&chunk).is_ok() {}
        }
        Fault::Twice => {
            let mut line = Some(first);
            while let Some(l) = line {
                if stream.write_all(&l).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
                if stream.write_all(&l).is_err() {
                    return;
                }
                line = next_line(&mut stream, stop);
            }
        }
        Fault::Greets => {
            let mut line = Some(first);
            while let Some(l) = line {
                if stream.write_all(&l).is_err() {
                    return;
                }
                line = next_line(&mut stream, stop);
            }
        }
        Fault::EchoThenClose => {
            let _ = stream.write_all(&first);
        }
        Fault::Silent => {
            while !stop.load(Ordering::SeqCst) {
                if let Ok(0) = stream.read(&mut byte) {
                    return;
                }
            }
        }
        Fault::Close => drop(stream),
        Fault::Reset => {
            socket2::SockRef::from(&stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(stream);
        }
    }
}

impl Drop for Faulty {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An address where nothing listens: a port bound and released at once.
pub fn refusing_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Descriptors a process holds now (Linux: /proc/PID/fd).
pub fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}
