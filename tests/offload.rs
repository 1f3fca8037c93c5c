//! `--offload` keeps an event loop free: while one connection's fib(40) runs in the
//! pool, another connection's fib(1) requests keep being answered promptly. Runs for
//! every model whose registry entry accepts `--offload`.
//!
//! Without `--offload` the same scenario stalls the single-threaded loops for the
//! whole fib(40); that is the seeds' lesson, shown by the benchmark, not asserted here.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use fiblab::models::MODELS;

/// A light reply slower than this means the loop was blocked (a generous bound: a
/// normal reply takes well under a millisecond, fib(40) takes about a second).
const LIGHT_REPLY_BOUND: Duration = Duration::from_millis(100);

#[test]
fn heavy_request_does_not_stall_light_ones() {
    let models: Vec<_> = MODELS
        .iter()
        .filter(|m| m.offload && common::runs_here(m.name))
        .collect();
    assert!(!models.is_empty(), "no model accepts --offload");
    for model in models {
        // Two workers: the heavy request takes one, light requests the other.
        let server = Server::start(
            model.name,
            &["--offload", "--workers", "2", "--max-n", "40"],
        );
        let mut heavy = server.connect();
        let mut light = server.connect();
        assert_eq!(light.ask("1\n"), "1");

        heavy.send(b"40\n");
        let started = Instant::now();
        let mut light_replies = 0;
        let mut slowest = Duration::ZERO;
        let heavy_reply = loop {
            let sent = Instant::now();
            assert_eq!(light.ask("1\n"), "1", "{}: light reply", model.name);
            slowest = slowest.max(sent.elapsed());
            light_replies += 1;
            if let Ok(reply) = heavy.line_within(Duration::from_millis(1)) {
                break reply;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{}: fib(40) never came back",
                model.name
            );
        };
        assert_eq!(heavy_reply, "102334155", "{}: fib(40)", model.name);
        assert!(
            slowest < LIGHT_REPLY_BOUND,
            "{}: a light reply took {slowest:?} while fib(40) ran ({light_replies} light replies)",
            model.name
        );
        assert!(
            light_replies >= 10,
            "{}: only {light_replies} light replies during fib(40)",
            model.name
        );
    }
}

#[test]
fn offload_is_refused_where_it_means_nothing() {
    let model = MODELS
        .iter()
        .find(|m| !m.offload)
        .expect("a model without --offload");
    let out = std::process::Command::new(common::fiblab_bin())
        .args(["serve", "--model", model.name, "--offload", "--port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot --offload") && err.contains("Models that can: "),
        "{err}"
    );
}
