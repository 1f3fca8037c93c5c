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
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(BackendStats::default());
        let shutdown = Shutdown::new().unwrap();
        let config = BackendConfig {
            delay,
            jitter,
            seed: 3,
        };
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

fn misbehave(mut stream: TcpStream, fault: Fault, stop: &AtomicBool) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut byte = [0u8; 1];
    // Up to the first newline, or until the test is over.
    while !stop.load(Ordering::SeqCst) {
        match stream.read(&mut byte) {
            Ok(0) => return,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) | Err(_) => {}
        }
    }
    match fault {
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
