//! The one behaviour that belongs to `threadpool` alone: what happens to connection
//! K+1 when all K workers are busy (it waits in the queue) and to the one after the
//! queue is full (`ERR server busy`, then close). The wire contract itself is checked
//! for every model by `tests/conformance.rs`.

mod common;

use std::time::Duration;

use common::Server;

#[test]
fn connection_beyond_workers_waits_and_beyond_queue_is_turned_away() {
    let server = Server::start("threadpool", &["--workers", "1", "--queue", "1"]);
    let mut served = server.connect();
    assert_eq!(served.ask("10\n"), "55");

    let mut queued = server.connect();
    queued.send(b"5\n");
    queued.assert_silent_for(Duration::from_millis(300));

    let mut refused = server.connect();
    assert_eq!(refused.line(), "ERR server busy");
    refused.assert_closed_within(Duration::from_secs(5));

    assert_eq!(served.ask("11\n"), "89", "the served client is unaffected");
    drop(served);
    assert_eq!(
        queued.line(),
        "5",
        "the queued client is served once a worker is free"
    );
    assert_eq!(queued.ask("12\n"), "144");
}

#[test]
fn workers_serve_clients_in_parallel() {
    let server = Server::start("threadpool", &["--workers", "3", "--queue", "1"]);
    let mut clients: Vec<_> = (0..3).map(|_| server.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.ask("1\n"), "1", "client {i}");
    }
}

/// Pinned to one CPU, the default pool still serves two clients at once: it follows
/// Python's ThreadPoolExecutor, min(32, CPUs + 4), not one worker per CPU (with which
/// the second client waited in the queue for the whole run).
#[test]
fn pinned_to_one_cpu_the_default_pool_serves_two_clients() {
    if std::process::Command::new("taskset")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "taskset missing under CI: .ci/run installs util-linux"
        );
        eprintln!("SKIPPED: taskset (util-linux) is not installed");
        return;
    }
    let mut command = std::process::Command::new("taskset");
    command.args(["-c", "0", common::fiblab_bin()]).args([
        "serve",
        "--model",
        "threadpool",
        "--port",
        "0",
    ]);
    let server = Server::spawn(command, "threadpool", std::process::Stdio::inherit());
    let mut first = server.connect();
    let mut second = server.connect();
    assert_eq!(first.ask("10\n"), "55");
    assert_eq!(second.ask("10\n"), "55", "the second client is served too");
}
