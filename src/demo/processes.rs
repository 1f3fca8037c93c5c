//! `processes` — seed 002's 僵尸进程, 孤儿进程, 守护进程 and 守护线程: what happens to a
//! process when it ends before its parent looks, when its parent ends first, and what
//! happens to threads when their process ends.
//!
//! - **Zombie**: a child that has exited stays in the process table (state `Z` in
//!   `/proc/PID/stat`) holding its exit status until the parent reaps it with `wait`.
//!   A parent that never waits leaks them.
//! - **Orphan**: a child whose parent exits is re-parented (to `init`, or to the nearest
//!   subreaper) and runs on. The seeds' `multiprocessing.Pool` leaves its workers
//!   orphaned when the server is killed; fiblab's children ask the kernel to kill them
//!   when the thread that started them ends (`PR_SET_PDEATHSIG`, `src/process.rs`).
//! - **Daemon thread**: when a process ends, every thread in it ends with it, finished
//!   or not; a thread the main thread joins is waited for. In Rust every thread is a
//!   daemon unless joined: returning from `main` ends the process.

use std::io::{self, BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the demo saw.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessesOutcome {
    /// The exited, unreaped child's state letter in `/proc` (`Z`).
    pub zombie_state: Option<char>,
    /// After `wait`: the child is gone from `/proc`.
    pub reaped: bool,
    /// The orphan's parent before and after its parent exited.
    pub orphan_parent_before: u32,
    pub orphan_parent_after: Option<u32>,
    /// fiblab's own child, its starting thread ended: killed by the kernel (the signal
    /// number), and how long after.
    pub fiblab_child_signal: Option<i32>,
    pub fiblab_child_gone_after: Option<Duration>,
    /// The daemon thread's ticks before its process ended; the joined thread finished
    /// before the process returned; the process ended with the daemon still running.
    pub daemon_ticks: usize,
    pub joined_thread_finished: bool,
    pub process_ended: bool,
}

/// A process's state letter and parent from `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// Waits up to `limit` for `pid`'s state to satisfy `done`.
fn wait_for(pid: u32, limit: Duration, done: impl Fn(Option<(char, u32)>) -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done(stat(pid)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// `exe` is the fiblab binary (its `worker` and its `demo --child daemon`).
///
/// # Errors
/// A process cannot be started.
pub fn measure(exe: &std::path::Path) -> io::Result<ProcessesOutcome> {
    // Zombie: a child that exits at once, not waited for.
    let mut child = Command::new("true").spawn()?;
    let pid = child.id();
    wait_for(pid, Duration::from_secs(2), |s| matches!(s, Some(('Z', _))));
    let zombie_state = stat(pid).map(|(state, _)| state);
    child.wait()?;
    let reaped = stat(pid).is_none();

    // Orphan: a shell starts `sleep` in the background and exits.
    let shell = Command::new("sh")
        .args(["-c", "sleep 5 & echo $!; read line"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let shell_pid = shell.id();
    let mut shell = shell;
    let mut line = String::new();
    if let Some(out) = shell.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let orphan: u32 = line.trim().parse().map_err(io::Error::other)?;
    let orphan_parent_before = stat(orphan).map_or(0, |(_, p)| p);
    drop(shell.stdin.take()); // `read` ends: the shell exits
    shell.wait()?;
    wait_for(orphan, Duration::from_secs(2), |s| {
        s.is_some_and(|(_, p)| p != shell_pid)
    });
    let orphan_parent_after = stat(orphan).map(|(_, p)| p);
    // Ours to end: it would otherwise sleep on for seconds.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(orphan as i32),
        nix::sys::signal::Signal::SIGTERM,
    );

    // fiblab's own child: started by a thread that then ends.
    let spawned = std::thread::spawn({
        let exe = exe.to_path_buf();
        move || {
            crate::process::use_fiblab_exe(exe);
            let mut worker = crate::process::fiblab_child()?
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()?;
            // One request answered: the worker has asked for its death signal by now
            // (it does so before reading), so this thread may end.
            if let (Some(input), Some(output)) = (worker.stdin.as_mut(), worker.stdout.as_mut()) {
                crate::models::procpool::wire::write_request(input, 1)?;
                io::Write::flush(input)?;
                crate::models::procpool::wire::read_reply(output)?;
            }
            Ok::<_, io::Error>(worker)
        }
    });
    let mut worker = spawned
        .join()
        .map_err(|_| io::Error::other("the spawning thread panicked"))??;
    let ended = Instant::now();
    let mut fiblab_child_signal = None;
    let mut fiblab_child_gone_after = None;
    while ended.elapsed() < Duration::from_secs(3) {
        if let Some(status) = worker.try_wait()? {
            use std::os::unix::process::ExitStatusExt as _;
            fiblab_child_signal = status.signal();
            fiblab_child_gone_after = Some(ended.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if fiblab_child_gone_after.is_none() {
        let _ = worker.kill();
        let _ = worker.wait();
    }

    // Daemon thread: a child process whose daemon thread ticks until the process ends.
    let output = Command::new(exe)
        .args(["demo", "--child", "daemon"])
        .stderr(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let daemon_ticks = text
        .lines()
        .filter(|l| l.starts_with("daemon: tick"))
        .count();
    let lines: Vec<&str> = text.lines().collect();
    let at = |needle: &str| lines.iter().position(|l| l.starts_with(needle));
    let joined_thread_finished = matches!(
        (at("joined: done"), at("main: returning")),
        (Some(done), Some(main)) if done < main
    );
    Ok(ProcessesOutcome {
        zombie_state,
        reaped,
        orphan_parent_before,
        orphan_parent_after,
        fiblab_child_signal,
        fiblab_child_gone_after,
        daemon_ticks,
        joined_thread_finished,
        process_ended: output.status.success(),
    })
}

/// The child side of the daemon-thread demo (`fiblab demo --child daemon`): a daemon
/// thread that ticks forever, a joined thread that finishes, and `main` returning.
pub fn daemon_child(out: &mut dyn io::Write) -> io::Result<()> {
    std::thread::spawn(|| {
        loop {
            println!("daemon: tick");
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let joined = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(60));
        println!("joined: done");
    });
    let _ = joined.join();
    writeln!(out, "main: returning")?;
    out.flush()
}

pub fn run(out: &mut dyn io::Write) -> io::Result<()> {
    let r = measure(&crate::process::fiblab_exe()?)?;
    writeln!(
        out,
        "zombie: a child exited and not yet waited for has state {} in /proc; after wait(): {}",
        r.zombie_state.map_or("?".into(), |c| c.to_string()),
        if r.reaped {
            "gone (reaped)"
        } else {
            "still there"
        }
    )?;
    writeln!(
        out,
        "orphan: `sleep` had parent {} (a shell); the shell exited, its parent is now {} (init or a subreaper); ended by us",
        r.orphan_parent_before,
        r.orphan_parent_after.map_or("?".into(), |p| p.to_string())
    )?;
    match (r.fiblab_child_signal, r.fiblab_child_gone_after) {
        (Some(signal), Some(after)) => writeln!(
            out,
            "fiblab's worker process, the thread that started it ended: killed by signal {signal} (SIGKILL) {:.1} ms later (PR_SET_PDEATHSIG), never an orphan",
            after.as_secs_f64() * 1000.0
        )?,
        _ => writeln!(
            out,
            "fiblab's worker outlived its parent thread (not expected)"
        )?,
    }
    writeln!(
        out,
        "daemon thread: ticked {} times; the joined thread {} before main returned; the process {} with the daemon thread still running",
        r.daemon_ticks,
        if r.joined_thread_finished {
            "finished"
        } else {
            "did not finish"
        },
        if r.process_ended { "ended" } else { "failed" }
    )?;
    Ok(())
}
