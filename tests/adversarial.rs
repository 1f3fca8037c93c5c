//! The adversarial suite: every model in the registry against hostile clients.
//!
//! Each attack runs against a fresh `fiblab serve`; afterwards the server must be
//! alive, answer a fresh client correctly, and have its descriptor count and resident
//! memory back near where they were before the attack. Tests are generated per (model,
//! attack) from the registry, as in the conformance suite, so a new model is attacked
//! with no new test code; a model with `--offload` is attacked with it too. Run one
//! attack with `cargo test --test adversarial -- ::slowloris`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;
use fiblab::models::{Clients, Model};
use libtest_mimic::{Arguments, Trial};

/// Small limits so attacks cross them cheaply; more workers than the attacks need.
const BASE: &[&str] = &[
    "--max-n",
    "35",
    "--workers",
    "4",
    "--grace",
    "2s",
    "--max-conns",
    "64",
];

/// How far resident memory may stay above its level before the attack: allocators keep
/// some of what they were given, but a per-byte or per-request leak is far larger.
const RSS_SLACK_KB: u64 = 48 * 1024;

type Attack = fn(&Model, &Server);

const ATTACKS: &[(&str, Attack)] = &[
    ("random_bytes", random_bytes),
    ("nul_and_non_utf8", nul_and_non_utf8),
    (
        "megabyte_line_without_newline",
        megabyte_line_without_newline,
    ),
    ("digits_past_u64", digits_past_u64),
    (
        "pipelined_never_reading_replies",
        pipelined_never_reading_replies,
    ),
    ("slowloris", slowloris),
    ("connect_flood", connect_flood),
    (
        "half_close_still_reads_every_reply",
        half_close_still_reads_every_reply,
    ),
    (
        "reset_in_the_middle_of_replies",
        reset_in_the_middle_of_replies,
    ),
    (
        "heavy_request_then_disconnect",
        heavy_request_then_disconnect,
    ),
];

fn main() {
    let args = Arguments::from_args();
    // Floods open hundreds of sockets on this side too.
    if let Ok((_, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        let _ = nix::sys::resource::setrlimit(
            nix::sys::resource::Resource::RLIMIT_NOFILE,
            hard.min(65536),
            hard,
        );
    }
    let mut trials = Vec::new();
    // Every model, and every model's `--offload` variant: the pool is another place
    // where work and memory could pile up.
    for variant in fiblab::models::variants() {
        let model = fiblab::models::check(&variant).expect("the registry's own variant");
        let (label, offload) = (variant.label(), variant.offload);
        for &(name, attack) in ATTACKS {
            let skip = !common::runs_here(model.name);
            trials.push(
                Trial::test(format!("{label}::{name}"), move || {
                    run(model, offload, attack);
                    Ok(())
                })
                .with_ignored_flag(skip),
            );
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

/// What the attack must leave as it found.
struct Footprint {
    fds: usize,
    rss_kb: u64,
}

fn footprint(server: &Server) -> Footprint {
    let pid = server.pid();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let rss_kb = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0);
    Footprint { fds, rss_kb }
}

fn run(model: &Model, offload: bool, attack: Attack) {
    let mut args = BASE.to_vec();
    if offload {
        args.push("--offload");
    }
    let mut server = Server::start(model.name, &args);
    healthy(&server, "before the attack");
    let before = footprint(&server);
    attack(model, &server);
    assert!(server.is_running(), "the server died");
    healthy(&server, "after the attack");
    // Connections close asynchronously: give the server a moment to notice.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let after = footprint(&server);
        let fds_ok = after.fds <= before.fds + 2;
        let rss_ok = after.rss_kb <= before.rss_kb + RSS_SLACK_KB;
        if fds_ok && rss_ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not back to where it started: {} fds (was {}), {} KiB resident (was {})",
            after.fds,
            before.fds,
            after.rss_kb,
            before.rss_kb
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh client gets correct answers. Right after an attack the server may still be
/// closing the attackers' connections and turn the fresh one away as busy (a correct
/// answer at `--max-conns`); it must serve one within a few seconds.
fn healthy(server: &Server, when: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut c = loop {
        let mut c = server.connect();
        c.send(b"10\n");
        match c.line_within(Duration::from_secs(15)) {
            Ok(line) if line == "ERR server busy" && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(line) => {
                assert_eq!(line, "55", "fib(10) {when}");
                break c;
            }
            Err(e) => panic!("no answer to a fresh client {when}: {e}"),
        }
    };
    c.send(b"20\n");
    assert_eq!(c.line(), "6765", "fib(20) {when}");
}

/// Reads whatever replies arrive until `quiet` passes with none; returns them.
fn drain(stream: &mut TcpStream, quiet: Duration) -> Vec<u8> {
    let mut all = Vec::new();
    let mut chunk = [0u8; 65536];
    stream.set_read_timeout(Some(quiet)).unwrap();
    while let Ok(n) = stream.read(&mut chunk) {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&chunk[..n]);
    }
    all
}

fn random_bytes(_: &Model, server: &Server) {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut c = server.connect();
    let bytes: Vec<u8> = (0..64 * 1024)
        .map(|_| match rng.u8(0..16) {
            0 => b'\n',
            1..=4 => b'0' + rng.u8(0..10),
            _ => rng.u8(..),
        })
        .collect();
    // Some models answer while the rest is still arriving; reading alongside keeps a
    // model that is right to push back (blocking writes) from stalling the test.
    let mut reader = c.stream.try_clone().unwrap();
    let reading = std::thread::spawn(move || drain(&mut reader, Duration::from_secs(2)));
    c.send(&bytes);
    c.shutdown_write();
    let replies = reading.join().unwrap();
    let text = String::from_utf8_lossy(&replies);
    assert!(
        text.lines()
            .all(|l| l.starts_with("ERR ") || l.bytes().all(|b| b.is_ascii_digit())),
        "every reply is a number or an ERR line"
    );
}

fn nul_and_non_utf8(_: &Model, server: &Server) {
    let mut c = server.connect();
    c.send(b"\0\0\n\xff\xfe\n1\x002\n5\n");
    for expected in [
        "ERR not a number",
        "ERR not a number",
        "ERR not a number",
        "5",
    ] {
        assert_eq!(c.line(), expected);
    }
}

fn megabyte_line_without_newline(_: &Model, server: &Server) {
    let mut c = server.connect();
    c.send(&vec![b'7'; 1 << 20]);
    c.send(b"\n7\n");
    assert_eq!(c.line(), "ERR line too long");
    assert_eq!(c.line(), "13");
}

fn digits_past_u64(_: &Model, server: &Server) {
    let mut c = server.connect();
    assert_eq!(
        c.ask("99999999999999999999999999999999\n"),
        "ERR above max-n 35"
    );
    assert_eq!(c.ask("-99999999999999999999999999999999\n"), "ERR negative");
    assert_eq!(c.ask("18446744073709551617\n"), "ERR above max-n 35");
}

/// Thousands of requests in one write while never reading a reply: the server must stop
/// reading once its replies back up (the kernel's buffers fill), not buffer them all.
fn pipelined_never_reading_replies(_: &Model, server: &Server) {
    let before = footprint(server);
    let stream = TcpStream::connect(server.addr).unwrap();
    stream.set_nonblocking(true).unwrap();
    let request = b"1\n".repeat(2_000_000);
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut writer = &stream;
    while sent < request.len() && Instant::now() < deadline {
        match writer.write(&request[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("write failed: {e}"),
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let during = footprint(server);
    assert!(
        during.rss_kb <= before.rss_kb + RSS_SLACK_KB,
        "resident memory grew from {} to {} KiB with {sent} bytes of requests unanswered",
        before.rss_kb,
        during.rss_kb
    );
    drop(stream);
}

/// Hundreds of connections, each trickling a byte at a time. One-at-a-time models are
/// stuck behind them while they last (that is what they are); every model must be
/// whole once they go.
fn slowloris(_: &Model, server: &Server) {
    let mut conns: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect_timeout(&server.addr, Duration::from_secs(2)).ok())
        .collect();
    for _ in 0..3 {
        for c in &mut conns {
            let _ = c.write_all(b"1");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(conns);
}

/// Many more connections than `--max-conns` (64), all at once, held, then dropped.
/// Models that serve clients concurrently tell the ones past the limit `ERR server
/// busy` and close them; one-at-a-time models leave them in the backlog.
fn connect_flood(model: &Model, server: &Server) {
    let mut conns: Vec<TcpStream> = (0..600)
        .filter_map(|_| TcpStream::connect_timeout(&server.addr, Duration::from_secs(2)).ok())
        .collect();
    assert!(
        conns.len() >= 100,
        "only {} connections opened",
        conns.len()
    );
    if model.clients == Clients::Concurrent {
        let last = conns.last_mut().unwrap();
        let reply = drain(last, Duration::from_secs(3));
        assert_eq!(
            String::from_utf8_lossy(&reply),
            "ERR server busy\n",
            "the 600th connection, past --max-conns 64"
        );
    }
    drop(conns);
}

fn half_close_still_reads_every_reply(_: &Model, server: &Server) {
    let mut c = server.connect();
    c.send(b"1\n2\n10\n20");
    c.shutdown_write();
    for expected in ["1", "1", "55", "6765"] {
        assert_eq!(c.line(), expected);
    }
    c.assert_closed_within(Duration::from_secs(5));
}

/// The client resets the connection (SO_LINGER 0) while replies are being written.
fn reset_in_the_middle_of_replies(_: &Model, server: &Server) {
    for _ in 0..5 {
        let mut c = server.connect();
        c.send(&b"20\n".repeat(2000));
        let mut first = [0u8; 16];
        let _ = c.stream.read(&mut first);
        socket2::SockRef::from(&c.stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(c);
    }
}

/// The most expensive request allowed, then gone before the answer.
fn heavy_request_then_disconnect(_: &Model, server: &Server) {
    for _ in 0..3 {
        let mut c = server.connect();
        c.send(b"35\n");
        drop(c);
    }
    let mut reset = server.connect();
    reset.send(b"35\n");
    socket2::SockRef::from(&reset.stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(reset);
}
