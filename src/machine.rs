//! The machine, read once per run: what the CPU is, whether its cores run two hardware
//! threads (SMT), whether it is a virtual machine, the kernel, and the limits in
//! `/proc/sys` that decide how many connections and threads a server may hold. The
//! head of every report, the calibration and the connections experiment all read it
//! here ([`Host::get`]); the descriptor limit, which a process raises as it goes, is
//! read when asked ([`descriptor_limit`]).

use std::sync::OnceLock;

/// What this machine is, from `/proc/cpuinfo` and `/proc/sys` (Linux); "unknown" or 0
/// where they cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// `model name`, e.g. `Intel(R) Xeon(R) CPU @ 2.80GHz`.
    pub cpu: String,
    /// Hardware threads per core (`siblings / cpu cores`): 2 with SMT.
    pub threads_per_core: usize,
    /// The CPU reports a hypervisor: a virtual machine, whose vCPUs sleep and wake
    /// through the host.
    pub virtual_machine: bool,
    /// `kernel.osrelease`.
    pub kernel: String,
    pub limits: Limits,
}

/// The kernel's limits on connections and threads, as `/proc/sys` gives them (the
/// text, whitespace collapsed to `-`; `None` where it cannot be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `net.ipv4.ip_local_port_range`: the ports a client's connections come from.
    pub port_range: Option<String>,
    /// `net.core.somaxconn`: the accept backlog's cap.
    pub somaxconn: Option<String>,
    /// `kernel.threads-max`.
    pub threads_max: Option<String>,
    /// `vm.max_map_count`: memory maps per process (a Rust thread takes four).
    pub max_map_count: Option<String>,
}

impl Host {
    /// This machine, read on the first call and kept for the rest of the run.
    pub fn get() -> &'static Host {
        static HOST: OnceLock<Host> = OnceLock::new();
        HOST.get_or_init(Host::read)
    }

    fn read() -> Host {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo.lines().find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_string())
            })
        };
        let siblings: usize = field("siblings").and_then(|v| v.parse().ok()).unwrap_or(1);
        let cores: usize = field("cpu cores").and_then(|v| v.parse().ok()).unwrap_or(1);
        Host {
            cpu: field("model name").unwrap_or_else(|| "unknown CPU".into()),
            threads_per_core: (siblings / cores.max(1)).max(1),
            virtual_machine: field("flags")
                .is_some_and(|f| f.split(' ').any(|x| x == "hypervisor")),
            kernel: sysctl("kernel/osrelease").unwrap_or_default(),
            limits: Limits {
                port_range: sysctl("net/ipv4/ip_local_port_range"),
                somaxconn: sysctl("net/core/somaxconn"),
                threads_max: sysctl("kernel/threads-max"),
                max_map_count: sysctl("vm/max_map_count"),
            },
        }
    }
}

/// `/proc/sys/PATH`, whitespace collapsed to `-` (`32768-60999`).
fn sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/{path}"))
        .ok()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join("-"))
}

/// This process's descriptor limit now, `(soft, hard)`; `None` where it cannot be read.
/// Read when asked: servers and the load generator raise the soft limit to the hard one
/// as they start (`server::raise_descriptor_limit`).
pub fn descriptor_limit() -> Option<(u64, u64)> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_linux_machine_reads_as_one() {
        let host = Host::get();
        assert!(std::ptr::eq(host, Host::get()), "read once");
        assert!(!host.kernel.is_empty());
        assert!(host.threads_per_core >= 1);
        assert!(host.limits.max_map_count.is_some());
        let (soft, hard) = descriptor_limit().unwrap();
        assert!(soft <= hard);
    }
}
