//! The CPUs a thread or process runs on, and the CPU time a thread used: pinning for
//! `--cpus`, `--server-cpus` and `--client-cpus`, and the load generator watching its
//! own threads.

use std::io;
use std::time::Duration;

use nix::sched::CpuSet;
use nix::unistd::Pid;

/// The set of `cpus`.
///
/// # Errors
/// A CPU number past what the kernel's CPU set holds.
pub fn set_of(cpus: &[usize]) -> io::Result<CpuSet> {
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu)
            .map_err(|e| io::Error::other(format!("CPU {cpu} cannot be pinned to: {e}")))?;
    }
    Ok(set)
}

/// Pins the calling thread to `cpu`.
///
/// # Errors
/// No such CPU, or the process may not run there (outside its cgroup's CPUs).
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    nix::sched::sched_setaffinity(Pid::from_raw(0), &set_of(&[cpu])?)
        .map_err(|e| io::Error::other(format!("cannot pin to CPU {cpu}: {e}")))
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    let Ok(set) = nix::sched::sched_getaffinity(Pid::from_raw(0)) else {
        return Vec::new();
    };
    (0..nix::sched::CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect()
}

/// CPU time (user + system) of the calling thread.
pub fn thread_time() -> Option<Duration> {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_THREAD).ok()?;
    let to_duration =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    Some(to_duration(usage.user_time()) + to_duration(usage.system_time()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_pins_and_counts_its_time() {
        let cpus = nix::sched::sched_getaffinity(Pid::from_raw(0)).unwrap();
        let first = (0..CpuSet::count())
            .find(|&c| cpus.is_set(c).unwrap_or(false))
            .unwrap();
        std::thread::spawn(move || {
            pin_current_thread(first).unwrap();
            let before = thread_time().unwrap();
            std::hint::black_box(crate::fib::fib(std::hint::black_box(27)));
            assert!(thread_time().unwrap() >= before);
        })
        .join()
        .unwrap();
        assert!(set_of(&[CpuSet::count()]).is_err());
    }
}
