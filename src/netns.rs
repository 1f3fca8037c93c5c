//! Hosts on this machine: network namespaces, each joined to this one by a veth pair,
//! so traffic to a server in one crosses a real interface (a veth's queue, its
//! addresses, routing), not loopback. `fiblab bench scaleout --netns` puts each copy in
//! a host of its own, as a balancer's copies on separate machines are.
//!
//! ```text
//! this namespace                       host i (namespace fbh{tag}x{i})
//!   10.79.i.1/30  fhs{tag}x{i} ◄─veth─► fhc{tag}x{i}  10.79.i.2/30   (tag: pid, set)
//!                                      a listening socket made here (setns in a thread)
//! ```
//!
//! A socket belongs to the namespace it was made in, wherever it is used afterwards:
//! a thread enters the host's namespace (`setns`), binds, and leaves; the socket is
//! handed to a copy like any other (`--inherited-listener`). Needs root (CAP_NET_ADMIN)
//! and iproute2's `ip`; every namespace (and with it its veth pair) is deleted on drop.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::process::Command;

/// Network namespaces made by this process, each a host; deleted when dropped.
pub struct Hosts {
    names: Vec<String>,
    /// This side's veth ends, deleted first: a namespace outlives `ip netns del` while
    /// sockets made in it linger (TIME_WAIT), and with it the pair and its addresses.
    links: Vec<String>,
}

/// A host's address: where a server bound in it is reached.
pub fn host_addr(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 79, (i % 256) as u8, 2))
}

/// Runs `ip ARGS`.
fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    match out.status.success() {
        true => Ok(()),
        false => Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

impl Hosts {
    /// `count` hosts, host `i` at [`host_addr`]`(i)`.
    ///
    /// # Errors
    /// `ip` is missing, or the kernel or the sandbox refuses namespaces or veth pairs
    /// (not root): the message says which command failed and why.
    pub fn create(count: usize) -> io::Result<Hosts> {
        // Names unique to this process and this set of hosts (an interface name has at
        // most 15 bytes).
        static SETS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let set = SETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1000;
        let tag = (std::process::id() % 1000) as usize * 1000 + set;
        let mut hosts = Hosts {
            names: Vec::new(),
            links: Vec::new(),
        };
        for i in 0..count {
            let ns = format!("fbh{tag}x{i}");
            ip(&["netns", "add", &ns])?;
            hosts.names.push(ns.clone());
            let (here, there) = (format!("fhs{tag}x{i}"), format!("fhc{tag}x{i}"));
            ip(&[
                "link", "add", &here, "type", "veth", "peer", "name", &there, "netns", &ns,
            ])?;
            hosts.links.push(here.clone());
            let third = i % 256;
            ip(&["addr", "add", &format!("10.79.{third}.1/30"), "dev", &here])?;
            ip(&["link", "set", &here, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.79.{third}.2/30"),
                "dev",
                &there,
            ])?;
            ip(&["-n", &ns, "link", "set", &there, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// A listening socket made in host `i`'s namespace, bound to its address on `port`
    /// (0: a free one), with `SO_REUSEPORT` where asked (copies sharing a port on one
    /// host), as [`crate::server::bind_with`] binds.
    ///
    /// # Errors
    /// No such host, the namespace cannot be entered, or the bind fails.
    pub fn bind_in(&self, i: usize, port: u16, reuse_port: bool) -> io::Result<TcpListener> {
        let name = self
            .names
            .get(i)
            .ok_or_else(|| io::Error::other(format!("no host {i}")))?
            .clone();
        let addr = SocketAddr::new(host_addr(i), port);
        // A thread of its own enters the namespace and ends there: this process's other
        // threads stay where they are.
        std::thread::spawn(move || -> io::Result<TcpListener> {
            let file = std::fs::File::open(format!("/var/run/netns/{name}"))?;
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(io::Error::from)?;
            crate::server::bind_with(addr, reuse_port)
        })
        .join()
        .map_err(|_| io::Error::other("the thread binding in a namespace panicked"))?
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for link in &self.links {
            let _ = ip(&["link", "del", link]);
        }
        for name in &self.names {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
