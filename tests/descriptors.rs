//! Running out of descriptors at accept (`EMFILE`), for every model and `--offload`
//! variant in the registry: the server is started under a limit of 32 descriptors and
//! given more clients than it can hold. It must stay responsive to the clients it
//! holds, use little CPU while over the limit (`nonblocking` spins by design), log the
//! episode a bounded number of times, serve again once descriptors free up, and exit 0
//! on SIGTERM. Tests are generated from the registry, as `MODEL::accept_out_of_descriptors`.

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
            trials.push(Trial::test(name, move || {
                out_of_descriptors(&variant);
                Ok(())
            }));
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
