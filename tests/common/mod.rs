//! Test harness shared by the integration tests: a `fiblab serve` process on a free
//! port, and a line client with timeouts so that a broken model fails a test instead
//! of hanging it.

#![allow(dead_code)] // each test binary uses its own part of the harness

pub mod downstream;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a test waits for a reply that must come.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the registry's model `name` can run on this machine ([`fiblab::models::Model::available`]).
/// When it cannot (a kernel that refuses io_uring), says so on stderr, loudly, once per
/// test binary: the suites skip such a model (its trials marked ignored) rather than
/// fail, since a refusing kernel is not a bug in fiblab.
pub fn runs_here(name: &str) -> bool {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let Some(model) = fiblab::models::find(name) else {
        return true;
    };
    match (model.available)() {
        Ok(()) => true,
        Err(e) => {
            let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
            if !said.iter().any(|s| s == name) {
                eprintln!("SKIPPED every test of model `{name}`: {e}");
                said.push(name.to_string());
            }
            false
        }
    }
}

pub fn fiblab_bin() -> &'static str {
    env!("CARGO_BIN_EXE_fiblab")
}

/// A `fiblab serve` child process; killed on drop if a test did not stop it.
pub struct Server {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `fiblab serve --model MODEL --port 0 ARGS...` and waits until it listens.
    pub fn start(model: &str, args: &[&str]) -> Server {
        let mut command = Command::new(fiblab_bin());
        command
            .args(["serve", "--model", model, "--port", "0"])
            .args(args);
        Server::spawn(command, model, Stdio::inherit())
    }

    /// Starts `command` (a `fiblab serve` on port 0, perhaps behind a wrapper such as
    /// `prlimit`), its standard error to `stderr`, and waits until it listens.
    pub fn spawn(mut command: Command, model: &str, stderr: Stdio) -> Server {
        let mut child = command
            .env(
                "RUST_LOG",
                std::env::var("FIBLAB_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn fiblab serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = fiblab::server::parse_listening_line(&line).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("fiblab serve --model {model} did not announce its address; it printed {line:?}")
        });
        Server {
            child,
            _stdout: stdout,
            addr,
        }
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits up to `limit` for the exit.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        let _ = kill(self.pid(), Signal::SIGTERM);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A raw TCP client that speaks lines, with a read timeout on every read.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, REPLY_TIMEOUT).expect("connect");
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> &mut Self {
        self.stream.write_all(bytes).expect("send");
        self
    }

    /// The next reply line without its newline; panics after `REPLY_TIMEOUT`.
    pub fn line(&mut self) -> String {
        self.line_within(REPLY_TIMEOUT)
            .unwrap_or_else(|e| panic!("no reply line: {e}"))
    }

    /// The next reply line, or an error saying why there was none within `limit`.
    pub fn line_within(&mut self, limit: Duration) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Ok(String::from_utf8_lossy(&line[..pos]).into_owned());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "timed out after {limit:?} (partial: {:?})",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(format!(
                        "connection closed (partial: {:?})",
                        String::from_utf8_lossy(&self.buf)
                    ));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            // A timed read cut short by the kernel's task work (an
                            // io_uring this process made and dropped): read again.
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
    }

    /// Sends `request` and returns the reply line.
    pub fn ask(&mut self, request: &str) -> String {
        self.send(request.as_bytes());
        self.line()
    }

    /// Asserts that nothing arrives for `quiet`.
    pub fn assert_silent_for(&mut self, quiet: Duration) {
        match self.line_within(quiet) {
            Err(e) if e.starts_with("timed out") => {}
            other => panic!("expected no reply for {quiet:?}, got {other:?}"),
        }
    }

    /// Asserts the server closes the connection within `limit` with nothing more sent.
    pub fn assert_closed_within(&mut self, limit: Duration) {
        match self.line_within(limit) {
            Err(e) if e.starts_with("connection closed (partial: \"\")") => {}
            Err(e) if e.contains("reset") => {}
            other => panic!("expected the server to close the connection, got {other:?}"),
        }
    }

    pub fn shutdown_write(&mut self) {
        self.stream
            .shutdown(Shutdown::Write)
            .expect("shutdown(SHUT_WR)");
    }
}

/// CPU time the server and its child processes have used (user + system, reaped
/// children included), in seconds: procpool's workers and prefork's children work too.
pub fn cpu_seconds(server: &Server) -> f64 {
    let pid = server.pid().as_raw();
    let fields = |pid: i32| -> Option<Vec<String>> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces) start at ") ".
        Some(
            stat.rsplit_once(") ")?
                .1
                .split(' ')
                .map(String::from)
                .collect(),
        )
    };
    let ticks = |f: &[String], from: usize, to: usize| -> f64 {
        f[from..=to]
            .iter()
            .filter_map(|v| v.parse::<f64>().ok())
            .sum()
    };
    // utime, stime, cutime, cstime are fields 14 to 17: 11 to 14 after the name.
    let mut total = fields(pid).map_or(0.0, |f| ticks(&f, 11, 14));
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Some(f) = fields(child)
            && f[1].parse::<i32>().ok() == Some(pid)
        {
            total += ticks(&f, 11, 12);
        }
    }
    total / 100.0
}

/// A server of another protocol from Debian's packages, on a free port; killed on drop.
pub struct Peer {
    child: Child,
    pub addr: SocketAddr,
}

impl Peer {
    /// Starts `program` with `args` (`{port}` replaced); `None`, loudly, when it is not
    /// installed and this is not CI (`.ci/run` installs it).
    pub fn start(program: &str, args: &[&str]) -> Option<Peer> {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(program))
                .find(|p| p.is_file())
        });
        let Some(path) = found else {
            assert!(
                std::env::var_os("CI").is_none(),
                "{program} missing under CI: .ci/run installs it"
            );
            eprintln!("SKIPPED: {program} is not installed (apt-get install {program})");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{port}", &port.to_string()))
            .collect();
        let child = Command::new(path)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let ready = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::net::TcpStream::connect(addr).is_ok()
        });
        let peer = Peer { child, addr };
        assert!(ready, "{program} did not start");
        Some(peer)
    }

    pub fn redis() -> Option<Peer> {
        Peer::start(
            "redis-server",
            &[
                "--port",
                "{port}",
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        )
    }

    pub fn memcached() -> Option<Peer> {
        Peer::start(
            "memcached",
            &["-p", "{port}", "-l", "127.0.0.1", "-U", "0", "-u", "root"],
        )
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Compares `actual` with `tests/golden/NAME`, or rewrites that file under
/// `FIBLAB_BLESS=1` (for intended changes to an exporter's output).
pub fn golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("FIBLAB_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "{name} differs from tests/golden/{name}; if the change is intended, run FIBLAB_BLESS=1 cargo test\n--- actual ---\n{actual}"
    );
}

/// An HTTP/1.x response read whole: its status (0 where the first line has none) and
/// its body.
pub fn http_response(text: &str) -> (u16, String) {
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

/// Whether `prlimit` (util-linux) runs here, for a test that puts a server under a
/// descriptor limit; said loudly where it does not, and a failure under CI, where
/// `.ci/run` installs it.
pub fn prlimit_here(test: &str) -> bool {
    if Command::new("prlimit").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "prlimit is missing under CI; .ci/run installs util-linux"
    );
    eprintln!("SKIPPED {test}: no prlimit (util-linux)");
    false
}

/// A loopback address nobody listens on now (the caller binds it a moment later).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// The processes whose parent is `pid` now, from `/proc/*/stat`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let me = pid.to_string();
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| {
                    let child: u32 = e.file_name().to_str()?.parse().ok()?;
                    let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
                    let ppid = stat
                        .rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .to_string();
                    (ppid == me).then_some(child)
                })
                .collect()
        })
        .unwrap_or_default()
}
