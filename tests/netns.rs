//! Load agents as separate hosts, on this machine: a server in one network namespace,
//! two agents in two others, each joined to the server's by its own veth pair (with a
//! 1 ms `tc netem` delay where the kernel has netem). The agents split one open-loop
//! load (`--segment`, `--start-at`), their reports are merged, and the merged report
//! must offer the whole rate and account for every request. Needs root and iproute2;
//! skips loudly where the kernel or the sandbox refuses namespaces.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

/// Runs `ip ARGS`; the error output when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
    }
}

/// The namespaces and their links, removed when dropped (deleting a namespace deletes
/// the veth ends in it, and with them their peers).
struct Hosts {
    names: Vec<String>,
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// A server namespace and `agents` agent namespaces; agent I reaches the server at
/// 10.77.I.1 and is 10.77.I.2. Returns the namespaces (server first) and whether the
/// links carry a netem delay.
fn hosts(agents: usize) -> Result<(Hosts, bool), String> {
    let tag = std::process::id() % 100_000;
    let server = format!("fbs{tag}");
    let mut hosts = Hosts {
        names: vec![server.clone()],
    };
    ip(&["netns", "add", &server])?;
    ip(&["-n", &server, "link", "set", "lo", "up"])?;
    let mut delayed = true;
    for i in 1..=agents {
        let ns = format!("fba{i}x{tag}");
        ip(&["netns", "add", &ns])?;
        hosts.names.push(ns.clone());
        let (here, there) = (format!("fs{i}x{tag}"), format!("fa{i}x{tag}"));
        ip(&[
            "link", "add", &here, "netns", &server, "type", "veth", "peer", "name", &there,
            "netns", &ns,
        ])?;
        ip(&[
            "-n",
            &server,
            "addr",
            "add",
            &format!("10.77.{i}.1/24"),
            "dev",
            &here,
        ])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("10.77.{i}.2/24"),
            "dev",
            &there,
        ])?;
        ip(&["-n", &server, "link", "set", &here, "up"])?;
        ip(&["-n", &ns, "link", "set", &there, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        let netem = Command::new("ip")
            .args([
                "netns", "exec", &ns, "tc", "qdisc", "add", "dev", &there, "root", "netem",
                "delay", "1ms",
            ])
            .output();
        delayed &= netem.is_ok_and(|o| o.status.success());
    }
    Ok((hosts, delayed))
}

fn in_ns(ns: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, common::fiblab_bin()]);
    c
}

#[test]
fn agents_in_separate_namespaces_split_one_load_and_merge() {
    let (hosts, delayed) = match hosts(2) {
        Ok(h) => h,
        Err(why) => {
            eprintln!(
                "SKIPPED agents_in_separate_namespaces_split_one_load_and_merge: network namespaces refused here ({why}); run as root with iproute2"
            );
            return;
        }
    };
    if !delayed {
        eprintln!("note: tc netem is not available here; the links carry no added delay");
    }
    let mut server: Child = in_ns(&hosts.names[0])
        .args([
            "serve", "--model", "epoll", "--bind", "0.0.0.0", "--port", "25000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening"), "{line}");
    let dir = std::env::temp_dir().join(format!("fiblab-netns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let start_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 1.0;
    let agents: Vec<_> = (1..=2)
        .map(|i| {
            let json = dir.join(format!("agent-{i}.json"));
            let child = in_ns(&hosts.names[i])
                .args(["load", "--addr", &format!("10.77.{i}.1:25000")])
                .args([
                    "--conns",
                    "8",
                    "--rate",
                    "2000",
                    "--duration",
                    "2s",
                    "--quiet",
                ])
                .args([
                    "--segment",
                    &format!("{i}/2"),
                    "--start-at",
                    &start_at.to_string(),
                ])
                .arg("--json")
                .arg(&json)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (child, json)
        })
        .collect();
    let mut files = Vec::new();
    for (child, json) in agents {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        files.push(json);
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = server.wait();
    let reports: Vec<fiblab::load::report::Report> = files
        .iter()
        .map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap())
        .collect();
    let merged = fiblab::load::merge::merge(&reports).unwrap();
    assert_eq!(merged.rate, Some(2000.0));
    assert_eq!(merged.connections, 8);
    // 8 connections, a slot every 4 ms each, for 2 s: 4,000 due, each counted once.
    let accounted =
        merged.requests_ok + merged.errors.failed_requests() + merged.unfinished + merged.missed;
    assert!(
        (3992..=4008).contains(&accounted),
        "{accounted}: {merged:?}"
    );
    assert!(merged.requests_ok > 3900, "{merged:?}");
    if delayed {
        // Every reply crossed a link with 1 ms added one way.
        assert!(
            merged.classes[0].latency_us.min >= 1000,
            "{:?}",
            merged.classes[0].latency_us
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    drop(hosts);
}
