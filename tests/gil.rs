//! `--gil` end to end: every model serves correctly under the emulated lock, and the
//! lock's counters (`--gil-stats`) show the mechanism: a CPU-bound request and an
//! I/O-bound client contend, the light one asks, the heavy one is forced to switch.
//! Counts and order only; no timing assertions (the machines are shared and noisy).

mod common;

use std::time::{Duration, Instant};

use common::Server;
use fiblab::gil::{GilCounts, read_published};

fn stats_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fiblab-gil-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.json"))
}

/// The counters once the file shows at least `acquisitions` (the server rewrites it
/// every 50 ms).
fn counts_after(path: &std::path::Path, acquisitions: u64) -> GilCounts {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(c) = read_published(path)
            && (c.acquisitions >= acquisitions || Instant::now() > deadline)
        {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "no counters in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_model_answers_under_the_lock() {
    for variant in fiblab::models::variants() {
        let mut args = vec!["--gil"];
        if variant.offload {
            args.push("--offload");
        }
        let mut server = Server::start(&variant.model, &args);
        let mut client = server.connect();
        assert_eq!(client.ask("20\n"), "6765", "{variant} --gil");
        assert_eq!(client.ask("1\n"), "1", "{variant} --gil");
        assert_eq!(client.ask("x\n"), "ERR not a number", "{variant} --gil");
        drop(client);
        assert!(
            server.terminate(Duration::from_secs(10)).is_some(),
            "{variant}"
        );
    }
}

#[test]
fn a_heavy_request_forces_switches_and_makes_the_light_client_wait() {
    let path = stats_path("threads");
    let path_arg = path.display().to_string();
    let mut server = Server::start(
        "threads",
        &[
            "--gil",
            "--switch-interval",
            "1ms",
            "--gil-stats",
            &path_arg,
        ],
    );
    let mut light = server.connect();
    assert_eq!(light.ask("1\n"), "1");
    let before = counts_after(&path, 1);
    assert_eq!(
        before.forced_switches, 0,
        "nothing to switch yet: {before:?}"
    );
    // fib(32) holds the lock for many switch intervals, debug build or release; the
    // light client keeps asking meanwhile.
    let mut heavy = server.connect();
    heavy.send(b"32\n");
    let mut answered = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut heavy_reply = None;
    while heavy_reply.is_none() && Instant::now() < deadline {
        assert_eq!(light.ask("1\n"), "1");
        answered += 1;
        heavy_reply = heavy.line_within(Duration::from_millis(1)).ok();
    }
    assert_eq!(heavy_reply.as_deref(), Some("2178309"));
    let after = counts_after(&path, before.acquisitions + answered);
    let during = after.since(&before);
    assert!(
        during.drop_requests >= 1,
        "the light thread asked: {during:?}"
    );
    assert!(
        during.forced_switches >= 1,
        "the heavy thread gave way at fib's eval breaker: {during:?}"
    );
    assert!(during.contended >= 1 && during.wait_ns > 0, "{during:?}");
    assert!(server.terminate(Duration::from_secs(10)).is_some());
    let _ = std::fs::remove_file(&path);
}

#[test]
fn without_the_lock_nothing_is_counted_and_processes_keep_their_own() {
    // procpool: the connection threads hold the server's lock only to parse; fib runs
    // in a worker process, under a lock of its own, so the server's lock is never
    // held for long enough to force a switch.
    let path = stats_path("procpool");
    let path_arg = path.display().to_string();
    let mut server = Server::start("procpool", &["--gil", "--gil-stats", &path_arg]);
    let mut a = server.connect();
    let mut b = server.connect();
    for _ in 0..20 {
        assert_eq!(a.ask("25\n"), "75025");
        assert_eq!(b.ask("1\n"), "1");
    }
    let c = counts_after(&path, 40);
    assert!(c.acquisitions >= 40, "{c:?}");
    assert_eq!(c.forced_switches, 0, "fib ran elsewhere: {c:?}");
    assert!(server.terminate(Duration::from_secs(10)).is_some());
    let _ = std::fs::remove_file(&path);
}
