//! What a process tree holds and has spent, read from `/proc` (Linux): [`Usage`]
//! (descriptors, memory, threads), [`Work`] (CPU, sleeps, preemptions, thread by
//! thread), the CPU ticks of a tree, and the process listening on a port.

use std::io;

/// What a process and every process below it hold, read from `/proc` (Linux): the
/// server's side of a connection, wherever the model keeps it (`prefork`'s children
/// hold their own clients, `procpool`'s workers hold none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Processes counted: the root and its descendants.
    pub processes: usize,
    /// Open descriptors (`/proc/PID/fd`), summed.
    pub descriptors: usize,
    /// Resident memory (`VmRSS`), KiB, summed. Kernel memory (socket buffers, a
    /// thread's kernel stack) is not in it.
    pub rss_kib: u64,
    /// Address space (`VmSize`), KiB, summed: what threads' stacks reserve shows here.
    pub vsz_kib: u64,
    /// Threads (`Threads`), summed.
    pub threads: u64,
}

impl Usage {
    /// `pid` and its descendants now.
    ///
    /// # Errors
    /// `/proc/PID` cannot be read (the process is gone, or this is not Linux).
    pub fn of_tree(pid: u32) -> io::Result<Usage> {
        let mut usage = Usage::default();
        for pid in tree(pid)? {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                continue; // gone meanwhile
            };
            let field = |name: &str| status_field(&status, name);
            usage.processes += 1;
            usage.rss_kib += field("VmRSS:");
            usage.vsz_kib += field("VmSize:");
            usage.threads += field("Threads:");
            usage.descriptors += std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|dir| dir.count())
                .unwrap_or(0);
        }
        Ok(usage)
    }
}

/// User and system CPU time of `pid` and its live descendants, in USER_HZ ticks
/// (`/proc/PID/stat`, fields 14 and 15: 100 a second): what `process_cpu_seconds_total`
/// reports for a server and its children.
///
/// # Errors
/// `/proc/PID` cannot be read (the process is gone, or this is not Linux).
pub fn cpu_ticks_of_tree(pid: u32) -> io::Result<u64> {
    let mut ticks = 0;
    for pid in tree(pid)? {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue; // gone meanwhile
        };
        // `pid (comm) state ppid ...`: after comm, utime and stime are the 12th and 13th.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let field = |i| {
            rest.split_whitespace()
                .nth(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        ticks += field(11) + field(12);
    }
    Ok(ticks)
}

/// What a server has done: time on a CPU and the times its threads slept or were
/// preempted. A figure of one stretch of load comes from two [`WorkReading`]s,
/// [`WorkReading::since`]; divided by the requests served in it, it is the cost of one
/// request: what a model's loop spends on each reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    /// Time on a CPU, ns (`/proc/P/task/T/schedstat`, first field).
    pub cpu_ns: u64,
    /// Voluntary context switches: a thread went to sleep (blocked in a read, an
    /// `epoll_wait`, a lock) and had to be woken. On a VM each costs a wake-up.
    pub sleeps: u64,
    /// Involuntary context switches: a runnable thread was preempted.
    pub preempted: u64,
}

impl Work {
    fn add(&mut self, other: &Work) {
        self.cpu_ns += other.cpu_ns;
        self.sleeps += other.sleeps;
        self.preempted += other.preempted;
    }

    fn saturating_sub(&self, earlier: &Work) -> Work {
        Work {
            cpu_ns: self.cpu_ns.saturating_sub(earlier.cpu_ns),
            sleeps: self.sleeps.saturating_sub(earlier.sleeps),
            preempted: self.preempted.saturating_sub(earlier.preempted),
        }
    }
}

/// One reading of a process tree's [`Work`], thread by thread (Linux, from `/proc`).
///
/// The kernel keeps these counters per thread and drops them when a thread ends, so a
/// sum over the threads alive now can fall between two readings (a thread-per-connection
/// server's threads come and go). [`since`](Self::since) therefore subtracts thread by
/// thread: a thread born between the readings counts from zero, one that ended takes
/// only its share of the stretch with it (an undercount, never a figure of zero for
/// work that was done). Read while the connections are open, as the load engine's
/// window edges allow ([`crate::load::Hooks::on_window`]), and little is lost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkReading {
    /// By thread id (unique on the machine while the thread lives).
    threads: std::collections::BTreeMap<u32, Work>,
}

impl WorkReading {
    /// `pid`, its descendants and all their threads, now.
    ///
    /// # Errors
    /// `/proc/PID` cannot be read (the process is gone, or this is not Linux).
    pub fn of_tree(pid: u32) -> io::Result<WorkReading> {
        let mut reading = WorkReading::default();
        for pid in tree(pid)? {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue; // gone meanwhile
            };
            for task in tasks.flatten() {
                let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                    continue;
                };
                let path = task.path();
                let mut work = Work::default();
                if let Ok(schedstat) = std::fs::read_to_string(path.join("schedstat")) {
                    work.cpu_ns = schedstat
                        .split_whitespace()
                        .next()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
                if let Ok(status) = std::fs::read_to_string(path.join("status")) {
                    work.sleeps = status_field(&status, "voluntary_ctxt_switches:");
                    work.preempted = status_field(&status, "nonvoluntary_ctxt_switches:");
                }
                reading.threads.insert(tid, work);
            }
        }
        Ok(reading)
    }

    /// Everything the threads alive at this reading have done since they started.
    pub fn total(&self) -> Work {
        let mut total = Work::default();
        for work in self.threads.values() {
            total.add(work);
        }
        total
    }

    /// What was done between `earlier` and `self`, thread by thread; see the type's docs.
    pub fn since(&self, earlier: &WorkReading) -> Work {
        let mut done = Work::default();
        for (tid, now) in &self.threads {
            match earlier.threads.get(tid) {
                Some(before) => done.add(&now.saturating_sub(before)),
                None => done.add(now),
            }
        }
        done
    }
}

/// A process tree's [`WorkReading`] at the two edges of a load's measured window, with
/// the correct replies counted at each: the server's side of a request's cost. Read it
/// from [`crate::load::Hooks::on_window`], while the connections are open.
#[derive(Debug, Clone, Default)]
pub struct WindowWork {
    edges: Vec<(WorkReading, u64)>,
}

impl WindowWork {
    /// Reads `pid`'s tree now, `ok` correct replies in; a tree that cannot be read is
    /// skipped, and [`between`](Self::between) then says `None`.
    pub fn read(&mut self, pid: u32, ok: u64) {
        if let Ok(reading) = WorkReading::of_tree(pid) {
            self.edges.push((reading, ok));
        }
    }

    /// The work between the window's two edges and the correct replies counted between
    /// them; `None` unless exactly both edges were read.
    pub fn between(&self) -> Option<(Work, u64)> {
        match self.edges.as_slice() {
            [(start, ok_start), (end, ok_end)] => {
                Some((end.since(start), ok_end.saturating_sub(*ok_start)))
            }
            _ => None,
        }
    }
}

/// The process listening on TCP `port` (any local address), found as Linux tools do: the
/// socket's inode in `/proc/net/tcp{,6}`, then the process holding a descriptor to it.
/// `None` when no process this user may read holds it (a peer run by another user, or in
/// a container). For peers the bench did not start (`--target`): their cost per request
/// is measured as fiblab's own.
pub fn listener_pid(port: u16) -> Option<u32> {
    const LISTEN: &str = "0A";
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            let listening_here = *state == LISTEN
                && local
                    .rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                    == Some(port);
            if listening_here {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| link.as_os_str() == i.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// The number after `name` in a `/proc` status file (`VmRSS:   1234 kB` -> 1234); 0
/// where it is missing.
fn status_field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `root` and every process whose chain of parents reaches it, from `/proc/*/stat`.
fn tree(root: u32) -> io::Result<Vec<u32>> {
    std::fs::metadata(format!("/proc/{root}"))?;
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_tree_counts_its_children() {
        let me = std::process::id();
        let alone = Usage::of_tree(me).unwrap();
        assert!(alone.descriptors >= 3 && alone.rss_kib > 0 && alone.threads >= 1);
        assert!(alone.vsz_kib >= alone.rss_kib);
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let with_child = Usage::of_tree(me).unwrap();
        let members = tree(me).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        // Other tests of this binary may have children of their own meanwhile.
        assert!(members.contains(&child.id()), "{members:?}");
        assert!(with_child.processes >= 2);
        assert!(Usage::of_tree(u32::MAX).is_err());
    }

    #[test]
    fn work_counts_this_process_cpu_and_sleeps() {
        let before = WorkReading::of_tree(std::process::id()).unwrap();
        let mut spent = 0u64;
        for i in 0..2_000_000u64 {
            spent = spent.wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(spent);
        for _ in 0..10 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let after = WorkReading::of_tree(std::process::id()).unwrap();
        let done = after.since(&before);
        assert!(done.cpu_ns > 0);
        assert!(done.sleeps >= 10, "{done:?}");
        assert_eq!(after.since(&after), Work::default());
    }

    /// The race that made the test above fail one run in four: a thread (another
    /// test's) that ends between the readings took its counters out of the sum, and a
    /// sum's difference fell to zero. Thread by thread, the survivors' work still counts.
    #[test]
    fn a_thread_that_ends_between_readings_does_not_hide_the_others_work() {
        let tid = |n: u32| n;
        let work = |cpu_ns, sleeps| Work {
            cpu_ns,
            sleeps,
            preempted: 0,
        };
        let before = WorkReading {
            threads: [(tid(1), work(100, 1)), (tid(2), work(1_000_000, 50))].into(),
        };
        // Thread 2 ended; thread 3 was born; thread 1 worked 50 ns and slept twice.
        let after = WorkReading {
            threads: [(tid(1), work(150, 3)), (tid(3), work(7, 1))].into(),
        };
        assert!(
            after.total().cpu_ns < before.total().cpu_ns,
            "the sums fell"
        );
        assert_eq!(after.since(&before), work(57, 3));
    }

    #[test]
    fn the_listener_of_a_port_is_found_and_a_free_port_has_none() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(listener_pid(port), Some(std::process::id()));
        drop(listener);
        assert_eq!(listener_pid(port), None);
    }
}
