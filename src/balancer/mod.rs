//! A load balancer in front of copies of a server: HAProxy (Debian's `haproxy`), started
//! and stopped by fiblab with a configuration it generates, its stats socket read for
//! what each copy was given and when it was taken out.
//!
//! ```text
//! clients ──► HAProxy :P (mode tcp, one frontend) ──► copy 0 :P0
//!               balance leastconn | roundrobin     ├─► copy 1 :P1
//!               health check: a TCP connect         └─► ...
//!               every `inter`, `fall` failures take a copy out
//! ```
//!
//! In `mode tcp` HAProxy pairs each client connection with one connection to a copy for
//! the connection's life and copies bytes both ways: a request crosses one more process
//! each way (the hop `fiblab bench scaleout` measures). `leastconn` gives a new client to
//! the copy with the fewest connections, `roundrobin` to the next one in turn; both
//! balance *connections*, which for a closed loop of persistent clients is load.
//!
//! The process is tied to this one (killed if fiblab dies), in the foreground (`-db`),
//! its log and alerts in a file of its private folder (never a pipe nobody reads).

mod stats;

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use stats::{CopyStat, parse_stats};

/// How HAProxy picks a copy for a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// The copy with the fewest connections now (HAProxy's `leastconn`).
    LeastConn,
    /// The next copy in turn (HAProxy's `roundrobin`).
    RoundRobin,
}

impl Balance {
    /// The keyword in HAProxy's configuration.
    pub fn keyword(self) -> &'static str {
        match self {
            Balance::LeastConn => "leastconn",
            Balance::RoundRobin => "roundrobin",
        }
    }
}

/// How copies of a server share their clients (`fiblab bench scaleout`'s rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Way {
    /// One process using every server CPU (its model's workers): no copies.
    Process,
    /// Copies binding one port with `SO_REUSEPORT`: a socket and an accept queue each,
    /// the kernel's hash of the client's address picks one for each new connection.
    ReusePort,
    /// Copies sharing one listening socket: one accept queue, the copy that calls
    /// `accept` first takes the next connection (the prefork of Apache and gunicorn).
    OneQueue,
    /// Copies on ports of their own behind HAProxy.
    Haproxy(Balance),
}

impl Way {
    /// Every way, in the order the tables show them.
    pub const ALL: [Way; 5] = [
        Way::Process,
        Way::ReusePort,
        Way::OneQueue,
        Way::Haproxy(Balance::LeastConn),
        Way::Haproxy(Balance::RoundRobin),
    ];

    /// Its name in scenarios and tables.
    pub fn label(self) -> &'static str {
        match self {
            Way::Process => "process",
            Way::ReusePort => "reuseport",
            Way::OneQueue => "one-queue",
            Way::Haproxy(Balance::LeastConn) => "haproxy-leastconn",
            Way::Haproxy(Balance::RoundRobin) => "haproxy-roundrobin",
        }
    }

    /// HAProxy's balance, for the rows behind it.
    pub fn balance(self) -> Option<Balance> {
        match self {
            Way::Haproxy(b) => Some(b),
            _ => None,
        }
    }
}

impl std::fmt::Display for Way {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// A name that is none of [`Way::ALL`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a way to share clients (process, reuseport, one-queue, haproxy-leastconn, haproxy-roundrobin)"
)]
pub struct UnknownWay(pub String);

impl TryFrom<String> for Way {
    type Error = UnknownWay;
    fn try_from(name: String) -> Result<Way, UnknownWay> {
        Way::ALL
            .into_iter()
            .find(|w| w.label() == name)
            .ok_or(UnknownWay(name))
    }
}

impl From<Way> for String {
    fn from(way: Way) -> String {
        way.label().to_string()
    }
}

/// What the generated configuration says.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where clients connect.
    pub frontend: SocketAddr,
    /// The copies, in order (`copy0`, `copy1`, ...).
    pub copies: Vec<SocketAddr>,
    pub balance: Balance,
    /// HAProxy's threads (`nbthread`): its CPUs where it is pinned.
    pub threads: usize,
    /// Connections HAProxy holds at once (`maxconn`), each side.
    pub max_conns: usize,
    /// The health check's interval: every copy is connected to this often, and
    /// [`FALL`] failed checks in a row take it out.
    pub check_every: Duration,
    /// The admin socket the counts are read from.
    pub stats_socket: PathBuf,
}

/// Failed health checks in a row that take a copy out (HAProxy's `fall`); as many
/// good ones put it back (`rise`).
pub const FALL: u32 = 2;

/// The health checks' interval a bench cell uses: short, so a dead copy is out within
/// [`FALL`] intervals, 0.2 s (HAProxy's default is 2 s: out after 6 s).
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

impl Config {
    /// The configuration file's text.
    pub fn render(&self) -> String {
        let at = |a: &SocketAddr| match a {
            SocketAddr::V4(v4) => v4.to_string(),
            SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
        };
        let mut text = String::new();
        let _ = writeln!(text, "# generated by fiblab (src/balancer/mod.rs)");
        let _ = writeln!(text, "global");
        let _ = writeln!(text, "    maxconn {}", self.max_conns * 2 + 64);
        let _ = writeln!(text, "    nbthread {}", self.threads.max(1));
        let _ = writeln!(
            text,
            "    stats socket {} mode 600 level admin",
            self.stats_socket.display()
        );
        let _ = writeln!(text, "defaults");
        let _ = writeln!(text, "    mode tcp");
        let _ = writeln!(text, "    timeout connect 1s");
        // A closed loop's connections idle between requests no longer than a cell.
        let _ = writeln!(text, "    timeout client 60s");
        let _ = writeln!(text, "    timeout server 60s");
        let _ = writeln!(text, "    timeout check 500ms");
        // A connect refused by a dead copy is tried once more, on another copy.
        let _ = writeln!(text, "    retries 1");
        let _ = writeln!(text, "    option redispatch");
        let _ = writeln!(text, "frontend fiblab");
        let _ = writeln!(text, "    bind {}", at(&self.frontend));
        let _ = writeln!(text, "    maxconn {}", self.max_conns);
        let _ = writeln!(text, "    default_backend copies");
        let _ = writeln!(text, "backend copies");
        let _ = writeln!(text, "    balance {}", self.balance.keyword());
        let _ = writeln!(
            text,
            "    default-server check inter {}ms fall {FALL} rise {FALL}",
            self.check_every.as_millis().max(1)
        );
        for (i, copy) in self.copies.iter().enumerate() {
            let _ = writeln!(text, "    server copy{i} {}", at(copy));
        }
        text
    }
}

/// `haproxy` is not on the `PATH` or does not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("haproxy is not installed here: its rows are left out (Debian: `apt-get install haproxy`)")]
pub struct Missing;

/// HAProxy's version line, where it runs here.
///
/// # Errors
/// [`Missing`]: `haproxy` is not on the `PATH` or does not run.
pub fn available() -> Result<String, Missing> {
    match Command::new("haproxy").arg("-v").output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("HAProxy")
            .trim()
            .to_string()),
        _ => Err(Missing),
    }
}

/// Checks a configuration file as HAProxy would load it (`haproxy -c -f FILE`).
///
/// # Errors
/// HAProxy's own message where it refuses the file, or it cannot run.
pub fn check(file: &Path) -> io::Result<()> {
    let out = Command::new("haproxy")
        .args(["-c", "-q", "-f"])
        .arg(file)
        .output()?;
    match out.status.success() {
        true => Ok(()),
        false => Err(io::Error::other(format!(
            "haproxy -c refused {}: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// A running HAProxy; stopped (SIGTERM, then SIGKILL) and its folder removed when
/// dropped.
pub struct Haproxy {
    child: Child,
    dir: PathBuf,
    config: Config,
}

impl Haproxy {
    /// Writes `config` (its `stats_socket` is replaced by one in a private folder),
    /// starts `haproxy -db -f` pinned to `cpus` (none: unpinned) and waits until its
    /// frontend accepts and its stats socket answers (up to 5 s).
    ///
    /// # Errors
    /// HAProxy is missing, refuses the configuration (its log says why), or does not
    /// answer in time.
    pub fn start(mut config: Config, cpus: &[usize]) -> io::Result<Haproxy> {
        let dir = crate::output::private_dir(&std::env::temp_dir(), "fiblab-haproxy-")?;
        config.stats_socket = dir.join("stats.sock");
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config.render())?;
        let log = std::fs::File::create(dir.join("haproxy.log"))?;
        let mut command = Command::new("haproxy");
        command
            .args(["-db", "-f"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if !cpus.is_empty() {
            crate::process::pin_before_exec(&mut command, cpus)?;
        }
        let child = crate::process::spawn_tied(command)?;
        let mut haproxy = Haproxy { child, dir, config };
        haproxy.wait_ready(Duration::from_secs(5))?;
        Ok(haproxy)
    }

    fn wait_ready(&mut self, within: Duration) -> io::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(io::Error::other(format!(
                    "haproxy exited ({status}) at start: {}",
                    self.log().trim()
                )));
            }
            let up = std::net::TcpStream::connect_timeout(
                &self.config.frontend,
                Duration::from_millis(100),
            )
            .is_ok();
            if up && self.stats().is_ok_and(|s| s.iter().all(|c| c.up)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "haproxy did not accept on {} with every copy up within {within:?}: {}",
                    self.config.frontend,
                    self.log().trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its log so far (start-up alerts, copies taken out).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self) -> SocketAddr {
        self.config.frontend
    }

    /// Each copy's counts and state now, in the configuration's order, from the stats
    /// socket (`show stat`).
    ///
    /// # Errors
    /// The socket does not answer, or its answer is not HAProxy's CSV.
    pub fn stats(&self) -> io::Result<Vec<CopyStat>> {
        use std::io::{Read as _, Write as _};
        let mut socket = std::os::unix::net::UnixStream::connect(&self.config.stats_socket)?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        socket.write_all(b"show stat\n")?;
        let mut text = String::new();
        socket.read_to_string(&mut text)?;
        parse_stats(&text, "copies")
    }

    /// SIGTERM, up to 2 s, then SIGKILL; the folder is removed.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        use nix::sys::signal::{Signal, kill};
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if self.dir.exists() {
            self.terminate();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(balance: Balance) -> Config {
        Config {
            frontend: "127.0.0.1:7000".parse().unwrap(),
            copies: vec![
                "127.0.0.1:7001".parse().unwrap(),
                "[::1]:7002".parse().unwrap(),
            ],
            balance,
            threads: 2,
            max_conns: 100,
            check_every: CHECK_EVERY,
            stats_socket: "/run/x/stats.sock".into(),
        }
    }

    #[test]
    fn the_configuration_names_the_way_the_copies_and_the_checks() {
        let text = config(Balance::LeastConn).render();
        for line in [
            "mode tcp",
            "balance leastconn",
            "bind 127.0.0.1:7000",
            "server copy0 127.0.0.1:7001",
            "server copy1 [::1]:7002",
            "default-server check inter 100ms fall 2 rise 2",
            "stats socket /run/x/stats.sock mode 600 level admin",
            "nbthread 2",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(
            config(Balance::RoundRobin)
                .render()
                .contains("balance roundrobin")
        );
    }

    #[test]
    fn ways_read_back_by_name() {
        for way in Way::ALL {
            assert_eq!(Way::try_from(way.to_string()), Ok(way));
        }
        assert!(
            Way::try_from("nginx".to_string())
                .unwrap_err()
                .to_string()
                .contains("one-queue")
        );
    }
}
