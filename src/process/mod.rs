//! The process boundary: starting the fiblab binary again as a child, for the models
//! that run in several processes (`procpool`, `prefork`), and [`ServerProcess`], a
//! `fiblab serve` child for the bench, the soak and anyone who measures a server from
//! outside; and making sure a child never outlives its parent.
//!
//! A server child gets its settings as argv from [`Config::to_args`] and announces its
//! address with [`crate::server::listening_line`]; both ends of that boundary are in
//! [`crate::server`], next to each other.
//!
//! The seeds' `multiprocessing.Pool` leaves orphans behind when the server is killed,
//! still holding the listening socket. fiblab's children ask the kernel to kill them
//! when the parent thread that started them dies (`PR_SET_PDEATHSIG`), and check at
//! start that the parent is still the one that spawned them (it may have died before
//! the request took effect).

use std::io::{self, BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, getppid};

use crate::server::{Config, Variant, parse_listening_line};

mod usage;

pub use usage::{Usage, WindowWork, Work, WorkReading, cpu_ticks_of_tree, listener_pid};

/// Set by a parent in its children's environment: the pid they must die with.
const PARENT_ENV: &str = "FIBLAB_PARENT_PID";

static FIBLAB_EXE: OnceLock<PathBuf> = OnceLock::new();

/// Makes process models start `exe` as their children instead of this executable:
/// for programs that run the models in-process but are not the fiblab binary (tests).
/// Only the first call counts.
pub fn use_fiblab_exe(exe: PathBuf) {
    let _ = FIBLAB_EXE.set(exe);
}

/// The fiblab binary the process models start: this executable, unless
/// [`use_fiblab_exe`] said otherwise.
pub fn fiblab_exe() -> io::Result<PathBuf> {
    match FIBLAB_EXE.get() {
        Some(exe) => Ok(exe.clone()),
        None => std::env::current_exe(),
    }
}

/// A command that runs the fiblab binary as a child of this process. The child must
/// call [`die_with_parent`] first thing.
pub fn fiblab_child() -> io::Result<Command> {
    let mut command = Command::new(fiblab_exe()?);
    command.env(PARENT_ENV, std::process::id().to_string());
    Ok(command)
}

/// In a child started by [`fiblab_child`]: be killed when the parent dies, and exit
/// (status 0, silently) at once if it already has.
///
/// The signal is SIGKILL: a child must not outlive its parent even while busy
/// computing or ignoring the usual signals.
pub fn die_with_parent() -> io::Result<()> {
    let Some(parent) = std::env::var(PARENT_ENV)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return Ok(()); // started by hand, not by a fiblab parent
    };
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    if getppid() != Pid::from_raw(parent) {
        return Err(io::Error::other(
            "the fiblab parent exited before this child started",
        ));
    }
    Ok(())
}

/// The listening socket a parent process passed as standard input (how `prefork`
/// starts its children), after [`die_with_parent`].
///
/// # Errors
/// The parent is gone, or standard input is not a listening socket.
pub fn inherited_listener() -> io::Result<std::net::TcpListener> {
    use std::os::fd::AsFd as _;
    die_with_parent()?;
    let fd = io::stdin().as_fd().try_clone_to_owned()?;
    let listening = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::AcceptConn);
    if !matches!(listening, Ok(true)) {
        return Err(io::Error::other(
            "--inherited-listener: standard input is not a listening socket",
        ));
    }
    Ok(std::net::TcpListener::from(fd))
}

/// Starts `command` as a child that the kernel kills (SIGKILL) when this process dies,
/// however it dies, SIGKILL included.
///
/// The kernel ties `PR_SET_PDEATHSIG` to the *thread* that forked the child, not the
/// process: a child spawned from a short-lived thread (a request's handler, a pool's
/// blocking thread) would be killed when that thread ends. So every tied child is
/// forked by one spawner thread that lives as long as the process. Between fork and
/// exec the child sets the signal and checks that its parent is still this process
/// (it may have died before the request took effect); the setting survives `exec` of
/// an ordinary binary.
///
/// # Errors
/// The spawner thread cannot start, or `spawn` fails (the binary is missing, or this
/// process died meanwhile).
pub fn spawn_tied(mut command: Command) -> io::Result<Child> {
    use std::os::unix::process::CommandExt as _;
    use std::sync::Mutex;
    use std::sync::mpsc::{Sender, channel};
    type Job = (Command, Sender<io::Result<Child>>);
    static SPAWNER: Mutex<Option<Sender<Job>>> = Mutex::new(None);

    let parent = nix::unistd::getpid();
    // SAFETY: runs in the forked child before exec, where only async-signal-safe calls
    // are allowed: a prctl and a getppid syscall on values copied before the fork; no
    // allocation, no lock.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if getppid() != parent {
                return Err(io::Error::other(
                    "the parent exited before its child started",
                ));
            }
            Ok(())
        });
    }
    let (reply, answer) = channel();
    {
        let mut spawner = SPAWNER.lock().unwrap_or_else(|p| p.into_inner());
        if spawner.is_none() {
            let (jobs, inbox) = channel::<Job>();
            std::thread::Builder::new()
                .name("spawner".into())
                .spawn(move || {
                    // Lives as long as the process: the sender is never dropped.
                    for (mut command, reply) in inbox {
                        let _ = reply.send(command.spawn());
                    }
                })?;
            *spawner = Some(jobs);
        }
        spawner
            .as_ref()
            .ok_or_else(|| io::Error::other("no spawner thread"))?
            .send((command, reply))
            .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    }
    answer
        .recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}

/// A `fiblab serve` child process, stopped by PID when dropped, and killed by the
/// kernel if this process dies first ([`spawn_tied`]).
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `exe serve --model M --port 0` with `config`'s settings (its `offload`
    /// taken from `variant`), pinned to `cpus` (none: unpinned), and waits until it
    /// listens. Its log goes to this process's standard error, at `warn`.
    ///
    /// # Errors
    /// The binary cannot be started, a CPU cannot be pinned to, or the child exits
    /// before it prints its listening line.
    pub fn start(
        exe: &Path,
        variant: &Variant,
        config: &Config,
        cpus: &[usize],
    ) -> io::Result<ServerProcess> {
        ServerProcess::start_with(exe, variant, config, cpus, &[])
    }

    /// As [`start`](Self::start), with `extra` flags of `fiblab serve` that are not
    /// settings of the server (`--metrics ADDR`).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_with(
        exe: &Path,
        variant: &Variant,
        config: &Config,
        cpus: &[usize],
        extra: &[String],
    ) -> io::Result<ServerProcess> {
        ServerProcess::start_on(exe, variant, config, cpus, extra, None)
    }

    /// As [`start_with`](Self::start_with), serving on `listener` (a listening socket
    /// this process bound, handed over as the child's standard input, `fiblab serve
    /// --inherited-listener`) instead of binding a port of its own: how copies of a
    /// server share one socket or one `SO_REUSEPORT` port (`fiblab bench scaleout`).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_on(
        exe: &Path,
        variant: &Variant,
        config: &Config,
        cpus: &[usize],
        extra: &[String],
        listener: Option<std::os::fd::OwnedFd>,
    ) -> io::Result<ServerProcess> {
        let mut command = Command::new(exe);
        if !cpus.is_empty() {
            pin_before_exec(&mut command, cpus)?;
        }
        let config = Config {
            offload: variant.offload,
            ..config.clone()
        };
        command
            .args(["serve", "--model", &variant.model, "--port", "0"])
            .args(config.to_args())
            .args(extra);
        let stdin = match listener {
            Some(fd) => {
                command.arg("--inherited-listener");
                Stdio::from(fd)
            }
            None => Stdio::null(),
        };
        command
            .env("RUST_LOG", "warn")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = spawn_tied(command)?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            BufReader::new(stdout).read_line(&mut line)?;
        }
        match parse_listening_line(&line) {
            Some(addr) => Ok(ServerProcess { child, addr }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(io::Error::other(format!(
                    "fiblab serve --model {variant} did not start"
                )))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then up to 10 s for a clean exit, then SIGKILL.
    pub fn stop(mut self) {
        self.terminate();
    }

    /// Like [`stop`](Self::stop), returning the exit status if the server exited by
    /// itself after SIGTERM (`None`: it had to be killed).
    pub fn stop_status(mut self) -> Option<ExitStatus> {
        self.terminate()
    }

    fn terminate(&mut self) -> Option<ExitStatus> {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Ok(Some(status)) => return Some(status),
                Err(_) => return None,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.terminate();
        }
    }
}

/// Pins the child to `cpus` between fork and exec, so the server and every thread and
/// process it starts inherit the mask from their first instruction.
pub fn pin_before_exec(command: &mut Command, cpus: &[usize]) -> io::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let set = crate::cpu::set_of(cpus)?;
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: it makes one sched_setaffinity syscall on a
    // CpuSet built before the fork, allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            nix::sched::sched_setaffinity(Pid::from_raw(0), &set).map_err(io::Error::from)
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tied child outlives the thread that asked for it (the kernel's death signal
    /// follows the forking thread, which is the long-lived spawner), and a second ask
    /// reuses that spawner.
    #[test]
    fn a_tied_child_outlives_the_thread_that_started_it() {
        let start = || {
            std::thread::spawn(|| {
                let mut sleep = Command::new("sleep");
                sleep.arg("30");
                spawn_tied(sleep).unwrap()
            })
            .join()
            .unwrap()
        };
        let mut first = start();
        let mut second = start();
        std::thread::sleep(Duration::from_millis(200));
        for child in [&mut first, &mut second] {
            assert!(
                matches!(child.try_wait(), Ok(None)),
                "killed with its thread"
            );
            child.kill().unwrap();
            child.wait().unwrap();
        }
        let spawners = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "spawner")
            })
            .count();
        assert_eq!(spawners, 1);
    }
}
