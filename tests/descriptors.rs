//! Running out of descriptors at accept (`EMFILE`), for every model and `--offload`
//! variant in the registry: the server is started under a limit of 32 descriptors and
//! given more clients than it can hold. It must stay responsive to the clients it
//! holds, use little CPU while over the limit (`nonblocking` spins by design), log the
//! episode a bounded number of times, serve again once descriptors free up, and exit 0
//! on SIGTERM. Tests are generated from the registry, as `MODEL::accept_out_of_descriptors`.
//!
//! And what a connection costs: with many clients connected, each after one request,
//! every model that holds them at once holds **one descriptor per client**: the
//! cancellation probe and the shutdown tracker use the connection's own descriptor,
//! never a duplicate (`MODEL::one_descriptor_per_connection`).

mod common;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Client, Server};
use libtest_mimic::{Arguments, Failed, Trial};

/// The descriptor limit the server runs under: room for stdio, the listener, its own
/// machinery and a handful of clients.
const LIMIT: u32 = 32;
/// More clients than the limit allows.
const CLIENTS: usize = 40;
/// Log lines the whole episode may write (one warning, perhaps one per process).
const MAX_LOG_LINES: usize = 20;

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for variant in fiblab::models::variants() {
        let model = fiblab::models::find(&variant.model).unwrap();
        if model.clients != fiblab::models::Clients::Concurrent {
            // One client at a time per process: the others wait in the kernel's
            // backlog, holding no descriptor of the server's yet.
            continue;
        }
        let name = format!("{}::one_descriptor_per_connection", variant.label());
        let skip = !common::runs_here(&variant.model);
        trials.push(
            Trial::test(name, move || {
                descriptors_per_connection(&variant);
                Ok(())
            })
            .with_ignored_flag(skip),
        );
    }
    if Command::new("prlimit").arg("--version").output().is_err() {
        // util-linux's prlimit sets the limit for the server alone; without it there
        // is nothing to run the server under.
        eprintln!("SKIPPED tests/descriptors.rs: `prlimit` (util-linux) is not installed");
        if std::env::var_os("CI").is_some() {
            trials.push(Trial::test("prlimit_is_installed", || {
                Err(Failed::from("CI must install util-linux (prlimit)"))
            }));
        }
    } else {
        for variant in fiblab::models::variants() {
            let name = format!("{}::accept_out_of_descriptors", variant.label());
            let skip = !common::runs_here(&variant.model);
            trials.push(
                Trial::test(name, move || {
                    out_of_descriptors(&variant);
                    Ok(())
                })
                .with_ignored_flag(skip),
            );
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

fn out_of_descriptors(variant: &fiblab::server::Variant) {
    let log = std::env::temp_dir().join(format!(
        "fiblab-descriptors-{}-{}.log",
        variant.label(),
        std::process::id()
    ));
    let stderr = std::fs::File::create(&log).unwrap();
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--nofile={LIMIT}:{LIMIT}"))
        .arg("--")
        .arg(common::fiblab_bin())
        .args(["serve", "--model", &variant.model, "--port", "0"])
        .args(["--workers", "2", "--grace", "2s"]);
    if variant.offload {
        command.arg("--offload");
    }
    let mut server = Server::spawn(command, &variant.model, Stdio::from(stderr));

    let mut held = server.connect();
    assert_eq!(held.ask("10\n"), "55", "served before the flood");
    let flood: Vec<TcpStream> = (0..CLIENTS)
        .filter_map(|_| TcpStream::connect_timeout(&server.addr, Duration::from_secs(2)).ok())
        .collect();
    assert!(!flood.is_empty(), "the kernel's backlog takes connections");
    // Give every model time to run into the limit.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        held.ask("11\n"),
        "89",
        "a held client is served while over the limit"
    );

    let before = common::cpu_seconds(&server);
    std::thread::sleep(Duration::from_secs(1));
    let used = common::cpu_seconds(&server) - before;
    if variant.model != "nonblocking" {
        assert!(
            used < 0.3,
            "{used:.2} s of CPU in one second over the descriptor limit: the accept loop spins"
        );
    }
    assert_eq!(
        held.ask("12\n"),
        "144",
        "still served after a second over the limit"
    );

    drop(flood);
    drop(held);
    let mut fresh = Client::connect(server.addr);
    assert_eq!(
        fresh.ask("10\n"),
        "55",
        "served again once descriptors are free"
    );
    drop(fresh);

    let status = server
        .terminate(Duration::from_secs(10))
        .expect("exits within 10 s of SIGTERM");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines = text.lines().count();
    let _ = std::fs::remove_file(&log);
    assert!(
        lines <= MAX_LOG_LINES,
        "{lines} log lines for one episode (at most {MAX_LOG_LINES}); the first ones:\n{}",
        text.lines().take(5).collect::<Vec<_>>().join("\n")
    );
}

/// Open descriptors of `pid`, counted in /proc.
fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Connections held at once for the count: within every model's defaults (threadpool:
/// its workers plus its queue).
const HELD: usize = 48;

fn descriptors_per_connection(variant: &fiblab::server::Variant) {
    let mut args = vec!["--workers", "2"];
    if variant.offload {
        args.push("--offload");
    }
    let mut server = Server::start(&variant.model, &args);
    let pid = server.pid().as_raw() as u32;
    // One connection served and gone first, so that every lazily made piece of the
    // model (runtime threads, pools, buffers) exists before the baseline.
    {
        let mut warm = server.connect();
        assert_eq!(warm.ask("5\n"), "5");
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = open_descriptors(pid);
    let mut clients: Vec<Client> = (0..HELD).map(|_| server.connect()).collect();
    for client in &mut clients {
        client.send(b"5\n");
    }
    // Served ones answer; threadpool's queued ones wait, accepted, for a worker. On a
    // busy machine the accepts take a while: wait for the state (every client's
    // descriptor there, the count steady for 200 ms), not for the clock.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let (mut after, mut steady_since) = (open_descriptors(pid), std::time::Instant::now());
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let now = open_descriptors(pid);
        if now != after {
            (after, steady_since) = (now, std::time::Instant::now());
        } else if after >= before + HELD && steady_since.elapsed() >= Duration::from_millis(200) {
            break;
        }
    }
    let per_client = (after as f64 - before as f64) / HELD as f64;
    assert!(
        (0.95..=1.1).contains(&per_client),
        "{}: {before} descriptors before {HELD} clients, {after} with them: {per_client:.2} per client",
        variant.label()
    );
    drop(clients);
    assert!(server.terminate(Duration::from_secs(10)).is_some());
}
