//! Memory per idle connection, held as a test: resident memory is not timing, so it
//! does not move with the machine's load and a test may hold it. For every model the
//! registry gives a target (`Model::idle_target_kib`), a fresh server, one request
//! first (a runtime, a pool or a slab started lazily is in the baseline), then
//! [`CLIENTS`] clients that each send `5`, are answered and stay connected; the
//! server's resident memory (`VmRSS` of its process tree) grows by at most the target
//! per held client, plus [`MARGIN`].
//!
//! Issue 45: an idle `coroutines` connection had grown from under 1 KiB to 1.57 KiB
//! (the waiting support's future held in every connection's task) and nothing noticed.

mod common;

use std::time::Duration;

use fiblab::load::hold::{HoldSpec, hold};
use fiblab::process::Usage;

/// Clients held per model: enough that a few pages of allocator noise weigh under
/// 0.01 KiB each, few enough for a test (`select` holds the ~1,000 its `FD_SETSIZE`
/// allows; the rest are told `ERR server busy`, and the growth is divided by those
/// held).
const CLIENTS: usize = 5000;

/// What the measurement needs beyond the target, KiB per client. The figure itself is
/// steady (two runs agree to 0.01 KiB: it counts bytes, not time), but the test's
/// server is the debug build, laid out differently from the release build the targets
/// speak of (coroutines, 2026-12-07: 0.91 KiB here at 5,000 clients, 0.93 released at
/// 10,000), and a map or slab that doubles its capacity near the count held adds up to
/// a spare slot per client. Before issue 45's fix `coroutines` read 1.54 KiB here, well
/// past 1.0 + this margin.
const MARGIN: f64 = 0.1;

#[test]
fn an_idle_connection_costs_no_more_than_its_model_promises() {
    let mut over = Vec::new();
    let mut seen = Vec::new();
    for model in fiblab::models::MODELS {
        let Some(target) = model.idle_target_kib else {
            continue;
        };
        if !common::runs_here(model.name) {
            continue;
        }
        let limit = (CLIENTS + 64).to_string();
        let server = common::Server::start(model.name, &["--max-conns", &limit]);
        let pid = server.pid().as_raw() as u32;
        let first = hold(&spec(server.addr, 1)).unwrap();
        assert_eq!(first.answered, 1, "{}: {}", model.name, first.describe());
        drop(first);
        std::thread::sleep(Duration::from_millis(200));
        let before = Usage::of_tree(pid).unwrap();
        let held = hold(&spec(server.addr, CLIENTS)).unwrap();
        assert!(
            held.open() >= 900,
            "{}: only {} held: {}",
            model.name,
            held.open(),
            held.describe()
        );
        // Let the server settle: buffers returned, tasks parked.
        std::thread::sleep(Duration::from_millis(300));
        let after = Usage::of_tree(pid).unwrap();
        let per_client = after.rss_kib.saturating_sub(before.rss_kib) as f64 / held.open() as f64;
        seen.push(format!(
            "{}: {per_client:.2} KiB per client ({} held; target {target})",
            model.name,
            held.open()
        ));
        if per_client > target + MARGIN {
            over.push(seen.last().cloned().unwrap_or_default());
        }
        drop(held);
    }
    eprintln!("idle memory: {}", seen.join("; "));
    assert!(
        over.is_empty(),
        "past the registry's idle_target_kib (+{MARGIN} KiB): {over:?}; all: {seen:?}"
    );
}

/// `connections` clients that each ask fib(5) once.
fn spec(addr: std::net::SocketAddr, connections: usize) -> HoldSpec {
    HoldSpec {
        request: b"5\n".to_vec(),
        ..HoldSpec::fib1(addr, connections)
    }
}
