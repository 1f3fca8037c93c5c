//! Copies of one server, started the ways `fiblab bench scaleout` compares
//! ([`crate::balancer::Way`]): one process; N copies on one `SO_REUSEPORT` port; N copies
//! on one listening socket; N copies on ports of their own behind HAProxy.
//!
//! ```text
//! this process binds every listening socket ──► copy i: fiblab serve --inherited-listener
//!   (one socket; N sockets on one port with SO_REUSEPORT; N ports)   its socket as stdin,
//!   and closes its own handles at once                               its CPUs' share
//! [HAProxy :P ──► the N ports]                                        publishes its counts
//! ```
//!
//! This process keeps no handle of a copy's socket: a copy killed takes its socket (and
//! with `SO_REUSEPORT` its accept queue and the connections waiting in it) with it, as a
//! dead server's would. Each copy publishes its counters to a file (`--metrics-publish`,
//! every 100 ms), read for the share of requests each served.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Instant;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::Run;
use crate::balancer::{self, Haproxy, Way};
use crate::process::ServerProcess;
use crate::server::{Variant, bind_with};
use crate::service::ServiceKind;

/// Copies of a server serving one address, and what stands in front of them.
pub struct Deployment {
    /// Where clients connect: HAProxy's frontend, or the copies' one port.
    pub addr: SocketAddr,
    copies: Vec<Option<ServerProcess>>,
    pids: Vec<u32>,
    /// Where each copy listens, in order.
    pub copy_addrs: Vec<SocketAddr>,
    pub balancer: Option<Haproxy>,
    /// CPUs each copy was given (pinned), or may use (unpinned: the machine's / N).
    pub cpus_per_copy: usize,
    /// HAProxy's CPUs: its own where the machine has CPUs neither side was given, else
    /// the server's (shared with the copies; empty: unpinned).
    pub balancer_cpus: Vec<usize>,
    /// HAProxy shares the copies' CPUs (or every CPU, unpinned).
    pub balancer_shares: bool,
    dir: PathBuf,
    /// The copies' network namespaces (`--netns`), deleted after the copies stop.
    _hosts: Option<crate::netns::Hosts>,
}

impl Run<'_> {
    /// Starts `copies` copies of `variant` serving fib as `way` shares clients between
    /// them (`Way::Process`: one copy with every server CPU), each sized for
    /// `max_conns` connections, and, for `Way::Haproxy`, HAProxy in front.
    ///
    /// # Errors
    /// A socket cannot be bound, a copy or HAProxy does not start.
    pub fn deploy(
        &self,
        variant: &Variant,
        way: Way,
        copies: usize,
        max_conns: usize,
    ) -> io::Result<Deployment> {
        self.deploy_with(variant, way, copies, max_conns, |_| {})
    }

    /// As [`deploy`](Self::deploy), with `adjust` changing every copy's settings first
    /// (`--downstream`).
    ///
    /// # Errors
    /// As [`deploy`](Self::deploy).
    pub fn deploy_with(
        &self,
        variant: &Variant,
        way: Way,
        copies: usize,
        max_conns: usize,
        adjust: impl Fn(&mut crate::server::Config),
    ) -> io::Result<Deployment> {
        let copies = match way {
            Way::Process => 1,
            _ => copies.max(1),
        };
        let server_cpus = self.regime.server_cpus.clone();
        let all = crate::cpu::allowed_cpus();
        let machine_cpus = all.len().max(1);
        let slices = split(&server_cpus, copies);
        let cpus_per_copy = match server_cpus.len() {
            0 => (machine_cpus / copies).max(1),
            n => (n / copies).max(1),
        };
        let hosts = match self.scenario.scaleout.as_ref().is_some_and(|s| s.netns) {
            true => Some(crate::netns::Hosts::create(match way {
                Way::Haproxy(_) => copies,
                _ => 1,
            })?),
            false => None,
        };
        let sockets = listeners(way, copies, hosts.as_ref())?;
        let dir = crate::output::private_dir(&std::env::temp_dir(), "fiblab-copies-")?;
        let mut started = Vec::with_capacity(copies);
        for (i, (socket, cpus)) in sockets.into_iter().zip(&slices).enumerate() {
            let mut config = super::server_config(variant, ServiceKind::Fib, cpus);
            if let Some(model) = crate::models::find(&variant.model) {
                config.workers = model.workers.default_for(cpus_per_copy);
            }
            config.max_conns = max_conns + 64;
            adjust(&mut config);
            let publish = vec![
                "--metrics-publish".to_string(),
                dir.join(format!("copy-{i}.prom")).display().to_string(),
            ];
            let fd: OwnedFd = socket.into();
            started.push(ServerProcess::start_on(
                self.exe,
                variant,
                &config,
                cpus,
                &publish,
                Some(fd),
            )?);
        }
        let pids = started.iter().map(ServerProcess::pid).collect();
        let copy_addrs: Vec<SocketAddr> = started.iter().map(|c| c.addr).collect();
        let (balancer_cpus, balancer_shares) = self.balancer_cpus(&all);
        let (addr, balancer) = match way.balance() {
            None => (copy_addrs[0], None),
            Some(balance) => {
                let frontend = free_port()?;
                let haproxy = Haproxy::start(
                    balancer::Config {
                        frontend,
                        copies: copy_addrs.clone(),
                        balance,
                        threads: match balancer_shares {
                            true => 1,
                            false => balancer_cpus.len().max(1),
                        },
                        max_conns: max_conns + 64,
                        check_every: balancer::CHECK_EVERY,
                        stats_socket: PathBuf::new(),
                    },
                    &balancer_cpus,
                )?;
                (haproxy.addr(), Some(haproxy))
            }
        };
        Ok(Deployment {
            addr,
            copies: started.into_iter().map(Some).collect(),
            pids,
            copy_addrs,
            balancer,
            cpus_per_copy,
            balancer_cpus,
            balancer_shares,
            dir,
            _hosts: hosts,
        })
    }

    /// HAProxy's CPUs: in a pinned regime, those of the machine neither side was given
    /// (its own), else the server's; unpinned, none (it shares every CPU).
    fn balancer_cpus(&self, all: &[usize]) -> (Vec<usize>, bool) {
        let (server, client) = (&self.regime.server_cpus, &self.regime.client_cpus);
        if server.is_empty() {
            return (Vec::new(), true);
        }
        let own: Vec<usize> = all
            .iter()
            .copied()
            .filter(|c| !server.contains(c) && !client.contains(c))
            .collect();
        match own.is_empty() {
            true => (server.clone(), true),
            false => (own, false),
        }
    }
}

/// `cpus` split into `n` contiguous slices (fewer CPUs than copies: one each, shared
/// round the ring); every slice empty when nothing is pinned.
fn split(cpus: &[usize], n: usize) -> Vec<Vec<usize>> {
    if cpus.is_empty() {
        return vec![Vec::new(); n];
    }
    if cpus.len() < n {
        return (0..n).map(|i| vec![cpus[i % cpus.len()]]).collect();
    }
    let per = cpus.len() / n;
    (0..n)
        .map(|i| cpus[i * per..(i + 1) * per].to_vec())
        .collect()
}

/// The listening sockets of `copies` copies shared `way`'s way: on loopback, or in
/// `hosts` (behind HAProxy, copy `i` in host `i`; otherwise every copy in host 0).
fn listeners(
    way: Way,
    copies: usize,
    hosts: Option<&crate::netns::Hosts>,
) -> io::Result<Vec<TcpListener>> {
    let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    // Host `h`'s socket on `port` (0: a free one), with SO_REUSEPORT where asked.
    let bind_at = |h: usize, port: u16, reuse: bool| match hosts {
        Some(hosts) => hosts.bind_in(h, port, reuse),
        // A free port for copies to share: one no other listener holds.
        None if reuse && port == 0 => {
            crate::server::bind_model(loopback(0), true, false).map_err(|e| match e {
                crate::server::BindError::Io(e) => e,
                other => io::Error::other(other.to_string()),
            })
        }
        None => bind_with(loopback(port), reuse),
    };
    match way {
        Way::Process => Ok(vec![bind_at(0, 0, false)?]),
        Way::OneQueue => {
            let one = bind_at(0, 0, false)?;
            let mut all = Vec::with_capacity(copies);
            for _ in 1..copies {
                all.push(one.try_clone()?);
            }
            all.push(one);
            Ok(all)
        }
        Way::ReusePort => {
            let first = bind_at(0, 0, true)?;
            let port = first.local_addr()?.port();
            let mut all = vec![first];
            for _ in 1..copies {
                all.push(bind_at(0, port, true)?);
            }
            Ok(all)
        }
        Way::Haproxy(_) => (0..copies).map(|i| bind_at(i, 0, false)).collect(),
    }
}

/// A loopback port free now, for HAProxy's frontend (it binds it itself: a race with
/// another process taking it meanwhile shows as HAProxy's start-up error).
fn free_port() -> io::Result<SocketAddr> {
    let probe = TcpListener::bind("127.0.0.1:0")?;
    probe.local_addr()
}

impl Deployment {
    /// The copies' process IDs, in order (a killed one's too).
    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// Requests each copy counted so far (`fiblab_requests_total`), in order; see
    /// [`published`](Self::published).
    pub fn requests(&self) -> Vec<u64> {
        self.published("fiblab_requests_total")
    }

    /// Metric `name` (summed over its labels) as each copy last published it (at most
    /// 100 ms old), in order; a copy whose file cannot be read, 0.
    pub fn published(&self, name: &str) -> Vec<u64> {
        (0..self.pids.len())
            .map(|i| {
                std::fs::read_to_string(self.dir.join(format!("copy-{i}.prom")))
                    .map_or(0, |text| counter(&text, name))
            })
            .collect()
    }

    /// SIGKILL to copy `i`, at once; when it was sent.
    ///
    /// # Errors
    /// No such copy, or it is already gone.
    pub fn kill(&mut self, i: usize) -> io::Result<Instant> {
        let copy = self
            .copies
            .get_mut(i)
            .and_then(Option::take)
            .ok_or_else(|| io::Error::other(format!("no live copy {i}")))?;
        kill(Pid::from_raw(copy.pid() as i32), Signal::SIGKILL).map_err(io::Error::from)?;
        let at = Instant::now();
        copy.stop(); // reaps it
        Ok(at)
    }

    /// Stops HAProxy, then every copy; removes the copies' files.
    pub fn stop(mut self) {
        if let Some(b) = self.balancer.take() {
            b.stop();
        }
        for copy in self.copies.drain(..).flatten() {
            copy.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The sum of every sample of counter `name` in a Prometheus text exposition.
pub fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_split_into_slices_per_copy() {
        assert_eq!(split(&[0, 1, 2, 3], 2), vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(split(&[4], 2), vec![vec![4], vec![4]]);
        assert_eq!(split(&[], 2), vec![Vec::<usize>::new(), Vec::new()]);
    }

    #[test]
    fn counters_sum_their_labelled_samples() {
        let text = "# pid 7\n# TYPE fiblab_requests_total counter\nfiblab_requests_total{class=\"0-9\"} 12\nfiblab_requests_total{class=\"20-29\"} 3\nfiblab_requests_totalx 9\n";
        assert_eq!(counter(text, "fiblab_requests_total"), 15);
        assert_eq!(counter(text, "absent"), 0);
    }
}
