//! Helpers for the models that run fiblab in child processes (`procpool`, `prefork`):
//! starting the fiblab binary again, and making sure a child never outlives its
//! parent.
//!
//! The seeds' `multiprocessing.Pool` leaves orphans behind when the server is killed,
//! still holding the listening socket. fiblab's children ask the kernel to kill them
//! when the parent thread that started them dies (`PR_SET_PDEATHSIG`), and check at
//! start that the parent is still the one that spawned them (it may have died before
//! the request took effect).

use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use nix::sys::signal::Signal;
use nix::unistd::{Pid, getppid};

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
