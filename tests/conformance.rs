//! The conformance suite: every model in the registry against every rule of the wire
//! contract (`PROTOCOL.md`), over real TCP, through the real `fiblab serve` binary.
//!
//! Tests are generated: one per (model, rule), named `MODEL::RULE`, so a model added to
//! `fiblab::models::MODELS` is checked by all of them with no new test code. A model
//! that accepts `--offload` is checked a second time with it, as `MODEL+offload::RULE`.
//! Run one model with `cargo test --test conformance -- tokio-current::`.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::Server;
use common::downstream::{Backend, Fault, Faulty, open_fds, refusing_addr};
use fiblab::models::{Clients, Model};
use libtest_mimic::{Arguments, Trial};

/// Server flags every rule uses unless it says otherwise: a small max-n so rules can
/// cross it cheaply, and more workers than the rules have clients.
const BASE: &[&str] = &["--max-n", "35", "--workers", "4", "--grace", "2s"];

/// A model under test, with or without `--offload`.
#[derive(Clone, Copy)]
struct Subject {
    model: &'static Model,
    offload: bool,
}

impl Subject {
    fn name(&self) -> String {
        fiblab::server::Variant {
            model: self.model.name.to_string(),
            offload: self.offload,
        }
        .label()
    }

    /// Starts the server with the base flags plus `extra`.
    fn start_with(&self, extra: &[&str]) -> Server {
        // A flag in `extra` replaces the base's (clap takes each flag once).
        let mut args: Vec<&str> = BASE
            .chunks(2)
            .filter(|pair| !extra.contains(&pair[0]))
            .flatten()
            .copied()
            .collect();
        if self.offload {
            args.push("--offload");
        }
        args.extend_from_slice(extra);
        Server::start(self.model.name, &args)
    }
}

type Rule = fn(Subject);

const RULES: &[(&str, Rule)] = &[
    ("fib_values", fib_values),
    ("crlf_terminated", crlf_terminated),
    ("pipelined_in_order", pipelined_in_order),
    ("unterminated_request", unterminated_request),
    ("blank_lines_ignored", blank_lines_ignored),
    ("spaces_and_tabs", spaces_and_tabs),
    ("not_a_number", not_a_number),
    ("negative", negative),
    ("above_max_n", above_max_n),
    ("line_too_long", line_too_long),
    ("byte_at_a_time", byte_at_a_time),
    ("request_split_across_reads", request_split_across_reads),
    ("half_close_gets_every_reply", half_close_gets_every_reply),
    ("large_pipeline_while_reading", large_pipeline_while_reading),
    ("upper_service", upper_service),
    ("two_clients", two_clients),
    ("disconnect_mid_request", disconnect_mid_request),
    ("sequential_clients", sequential_clients),
    ("shutdown_is_clean", shutdown_is_clean),
    ("idle_connection_is_closed", idle_connection_is_closed),
    (
        "sigterm_under_load_drains_whole_replies",
        sigterm_under_load_drains_whole_replies,
    ),
    (
        "reset_client_work_is_cancelled",
        reset_client_work_is_cancelled,
    ),
    // Waiting on a downstream (PROTOCOL.md): each model in its own style.
    (
        "downstream_waits_then_answers",
        downstream_waits_then_answers,
    ),
    ("downstream_waits_overlap", downstream_waits_overlap),
    ("downstream_refused", downstream_refused),
    ("downstream_never_answers", downstream_never_answers),
    ("downstream_closes_or_resets", downstream_closes_or_resets),
    ("downstream_desync", downstream_desync),
    ("downstream_endless_line", downstream_endless_line),
    ("downstream_keep_alive_race", downstream_keep_alive_race),
];

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    // Every variant the registry serves: each model, and its `--offload` form.
    let subjects = fiblab::models::variants()
        .into_iter()
        .map(|variant| Subject {
            model: fiblab::models::check(&variant).expect("the registry's own variant"),
            offload: variant.offload,
        });
    for subject in subjects {
        for &(rule_name, rule) in RULES {
            let name = format!("{}::{rule_name}", subject.name());
            let skip = !common::runs_here(subject.model.name);
            trials.push(
                Trial::test(name, move || {
                    rule(subject);
                    Ok(())
                })
                .with_ignored_flag(skip),
            );
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

fn start(subject: Subject) -> Server {
    subject.start_with(&[])
}

fn fib_values(subject: Subject) {
    let server = start(subject);
    let mut c = server.connect();
    for (n, v) in [
        ("0", "0"),
        ("1", "1"),
        ("2", "1"),
        ("10", "55"),
        ("20", "6765"),
        ("30", "832040"),
    ] {
        assert_eq!(c.ask(&format!("{n}\n")), v, "fib({n})");
    }
}

fn crlf_terminated(subject: Subject) {
    let server = start(subject);
    let mut c = server.connect();
    assert_eq!(c.ask("10\r\n"), "55");
    assert_eq!(c.ask("20\r\n"), "6765");
}

fn pipelined_in_order(subject: Subject) {
    let server = start(subject);
    let mut c = server.connect();
    let request: String = (1..=30).map(|n| format!("{n}\n")).collect();
    c.send(request.as_bytes());
    for n in 1..=30 {
        assert_eq!(
            c.line(),
            fiblab::fib::fib_fast(n).unwrap().to_string(),
            "reply {n}"
        );
    }
}

fn unterminated_request(subject: Subject) {
    // Beazley's perf1.py: b'30' with no newline, then wait for the answer.
    let server = start(subject);
    let mut c = server.connect();
    assert_eq!(c.ask("30"), "832040");
    assert_eq!(c.ask("12"), "144");
}

fn blank_lines_ignored(subject: Subject) {
    let server = start(subject);
    let mut c = server.connect();
    assert_eq!(c.ask("\n\r\n \t \n10\n"), "55", "blank lines got a reply");
    c.send(b"\n");
    assert_eq!(c.ask("7\n"), "13", "a lone blank line got a reply");
}

fn spaces_and_tabs(subject: Subject) {
    let server = start(subject);
    let mut c = server.connect();
    assert_eq!(c.ask("  \t10\t \n"), "55");
}

fn not_a_number(subject: Subject) {
    let server = start(subject);
    let mut c = server.connect();
    assert_eq!(c.ask("abc\n"), "ERR not a number");
    assert_eq!(c.ask("1 2\n"), "ERR not a number");
    assert_eq!(c.ask("\u{0}\u{7f}\n"), "ERR not a number");
    assert_eq!(
        c.ask("12\n"),
        "144",
        "the connection stays usable after an error"
    );
}

fn negative(subject: Subject) {
    let server = start(subject);
    let mut c = server.connect();
    assert_eq!(c.ask("-5\n"), "ERR negative");
    assert_eq!(c.ask("5\n"), "5");
}

fn above_max_n(subject: Subject) {
    let server = start(subject);
    let mut c = server.connect();
    assert_eq!(c.ask("36\n"), "ERR above max-n 35");
    assert_eq!(c.ask("99999999999999999999999999\n"), "ERR above max-n 35");
    assert_eq!(c.ask("35\n"), "9227465");
}

fn line_too_long(subject: Subject) {
    let server = start(subject);
    let mut c = server.connect();
    c.send(b"1\n").line();
    // 256 KiB of digits with no newline, then the newline and a normal request.
    let chunk = vec![b'7'; 16 * 1024];
    for _ in 0..16 {
        c.send(&chunk);
    }
    c.send(b"\n10\n");
    assert_eq!(c.line(), "ERR line too long");
    assert_eq!(
        c.line(),
        "55",
        "exactly one ERR for one long line, then normal service"
    );
}

fn byte_at_a_time(subject: Subject) {
    let server = start(subject);
    let mut c = server.connect();
    assert_eq!(c.ask("1\n"), "1");
    for byte in b" 25\r\n" {
        c.send(&[*byte]);
        std::thread::sleep(Duration::from_millis(15));
    }
    assert_eq!(c.line(), "75025");
}

fn request_split_across_reads(subject: Subject) {
    let server = start(subject);
    let mut c = server.connect();
    c.send(b"1\n2");
    assert_eq!(c.line(), "1");
    std::thread::sleep(Duration::from_millis(50));
    c.send(b"0\n");
    assert_eq!(
        c.line(),
        "6765",
        "a terminated client's split line is one request"
    );
}

fn half_close_gets_every_reply(subject: Subject) {
    let server = start(subject);
    let mut c = server.connect();
    c.send(b"10\n20\n5");
    c.shutdown_write();
    assert_eq!(c.line(), "55");
    assert_eq!(c.line(), "6765");
    assert_eq!(
        c.line(),
        "5",
        "the last, unterminated request is answered at end of input"
    );
    c.assert_closed_within(common::REPLY_TIMEOUT);
}

fn large_pipeline_while_reading(subject: Subject) {
    // 20,000 requests in one stream while replies flow back: neither side may stall.
    let server = start(subject);
    let mut c = server.connect();
    let mut writer = c.stream.try_clone().unwrap();
    let requests: Vec<u8> = b"1\n".repeat(20_000);
    let sender = std::thread::spawn(move || std::io::Write::write_all(&mut writer, &requests));
    for i in 0..20_000 {
        assert_eq!(c.line(), "1", "reply {i}");
    }
    sender.join().unwrap().unwrap();
}

fn upper_service(subject: Subject) {
    let server = subject.start_with(&["--service", "upper"]);
    let mut c = server.connect();
    assert_eq!(c.ask("hello w\u{f6}rld\r\n"), "HELLO W\u{d6}RLD");
    c.send(b"\xff\xfe\n");
    assert_eq!(c.line(), "ERR not utf-8");
    assert_eq!(c.ask("a\nb\n"), "A");
    assert_eq!(c.line(), "B");
    drop(c); // `single` serves one client at a time
    let mut unterminated = server.connect();
    assert_eq!(unterminated.ask("abc"), "ABC", "unterminated request");
}

fn two_clients(subject: Subject) {
    let server = start(subject);
    let mut first = server.connect();
    assert_eq!(first.ask("10\n"), "55");
    let mut second = server.connect();
    second.send(b"20\n");
    match subject.model.clients {
        Clients::Concurrent => {
            assert_eq!(
                second.line(),
                "6765",
                "second client served while the first stays"
            );
            assert_eq!(first.ask("11\n"), "89", "first client still served");
        }
        Clients::Sharded => match second.line_within(Duration::from_millis(500)) {
            Ok(line) => {
                assert_eq!(line, "6765", "second client, on another worker");
                assert_eq!(first.ask("11\n"), "89", "first client still served");
            }
            Err(_) => {
                // Hashed onto the first client's worker: served once it is free.
                drop(first);
                assert_eq!(
                    second.line(),
                    "6765",
                    "second client served once the first left"
                );
            }
        },
        Clients::OneAtATime => {
            second.assert_silent_for(Duration::from_millis(300));
            drop(first);
            assert_eq!(
                second.line(),
                "6765",
                "second client served once the first left"
            );
        }
    }
}

fn disconnect_mid_request(subject: Subject) {
    let server = start(subject);
    // One client leaves while its fib(35) is being computed, another resets with half
    // a request pending.
    let mut leaving = server.connect();
    leaving.send(b"35\n");
    drop(leaving);
    let mut resetting = server.connect();
    resetting.send(b"3");
    socket2::SockRef::from(&resetting.stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(resetting);
    let mut other = server.connect();
    assert_eq!(other.ask("10\n"), "55");
    assert_eq!(other.ask("20\n"), "6765");
}

fn sequential_clients(subject: Subject) {
    let server = start(subject);
    for i in 0..30u32 {
        let mut c = server.connect();
        let n = i % 20;
        assert_eq!(
            c.ask(&format!("{n}\n")),
            fiblab::fib::fib_fast(n).unwrap().to_string()
        );
    }
}

fn shutdown_is_clean(subject: Subject) {
    let mut server = start(subject);
    let mut idle = server.connect();
    assert_eq!(idle.ask("1\n"), "1");
    let started = Instant::now();
    let status = server
        .terminate(Duration::from_secs(10))
        .expect("server exits within 10 s of SIGTERM");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    idle.assert_closed_within(Duration::from_secs(1));
    TcpListener::bind(server.addr).expect("the port is free again right after exit");
}

/// `--idle-timeout`: a silent connection is closed; one that keeps talking is not.
fn idle_connection_is_closed(subject: Subject) {
    let server = subject.start_with(&["--idle-timeout", "1s"]);
    // The silent one first: a one-at-a-time server serves it first, and must drop it.
    let mut silent = server.connect();
    std::thread::sleep(Duration::from_millis(100));
    let mut talker = server.connect();
    for _ in 0..6 {
        assert_eq!(talker.ask("10\n"), "55");
        std::thread::sleep(Duration::from_millis(300));
    }
    // 1.8 s have passed: the silent one went at 1 s (give the sweep a moment more).
    silent.assert_closed_within(Duration::from_secs(3));
    assert_eq!(talker.ask("20\n"), "6765", "the talker is still served");
}

/// A client that resets its connection while its fib(n) is computed: the work stops,
/// so a one-at-a-time server answers the next client at once instead of after the
/// heavy request. (A plain close is not enough to know: it may be a half-close.)
fn reset_client_work_is_cancelled(subject: Subject) {
    if !subject.model.cancels {
        return; // the work runs in another process or an interpreter: see the registry
    }
    let server = subject.start_with(&["--max-n", "50"]);
    let mut heavy = server.connect();
    heavy.send(b"50\n"); // hours of naive recursion
    std::thread::sleep(Duration::from_millis(200));
    socket2::SockRef::from(&heavy.stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(heavy);
    let started = Instant::now();
    let mut next = server.connect();
    assert_eq!(next.ask("10\n"), "55");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the next client waited {:?}: the reset client's work went on",
        started.elapsed()
    );
    // And no thread is still at it: with no client left (nonblocking spins while it
    // has any), the server is nearly idle.
    drop(next);
    std::thread::sleep(Duration::from_millis(300));
    let busy = common::cpu_seconds(&server);
    std::thread::sleep(Duration::from_secs(1));
    let used = common::cpu_seconds(&server) - busy;
    assert!(
        used < 0.5,
        "the server used {used:.2} s of CPU in 1 s after the reset"
    );
}

/// SIGTERM while a client pipelines thousands of requests: the server exits 0 within its
/// grace period, every reply that arrived is whole and right (none cut in half), and the
/// port is free at once.
fn sigterm_under_load_drains_whole_replies(subject: Subject) {
    use std::io::{Read as _, Write as _};
    let mut server = start(subject);
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    let mut reader = stream.try_clone().unwrap();
    let reading = std::thread::spawn(move || {
        let mut all = Vec::new();
        reader
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let _ = reader.read_to_end(&mut all);
        all
    });
    let writing = std::thread::spawn(move || {
        for _ in 0..200 {
            if stream.write_all(&b"1\n".repeat(1000)).is_err() {
                break; // the server stopped reading: shutdown
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let status = server
        .terminate(Duration::from_secs(10))
        .expect("server exits within 10 s of SIGTERM under load");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        started.elapsed() < Duration::from_secs(2 + 3),
        "took {:?} with --grace 2s",
        started.elapsed()
    );
    let _ = writing.join();
    let replies = reading.join().unwrap();
    assert!(!replies.is_empty(), "no reply before the shutdown");
    assert_eq!(
        replies.last(),
        Some(&b'\n'),
        "the last reply was cut in half"
    );
    assert!(
        replies
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .all(|l| l == b"1"),
        "a reply line is not fib(1)"
    );
    TcpListener::bind(server.addr).expect("the port is free again right after exit");
}

/// Every valid request waits for the downstream, then is answered as usual; invalid
/// ones are answered without a call; order holds, pipelining included.
fn downstream_waits_then_answers(subject: Subject) {
    let delay = Duration::from_millis(50);
    let backend = Backend::start(delay, Duration::ZERO);
    let server = subject.start_with(&["--downstream", &backend.flag()]);
    let mut c = server.connect();
    let started = Instant::now();
    c.send(b"10\nabc\n20\n");
    assert_eq!(c.line(), "55");
    assert_eq!(c.line(), "ERR not a number");
    assert_eq!(c.line(), "6765");
    // One connection's requests wait one after the other.
    assert!(started.elapsed() >= 2 * delay, "{:?}", started.elapsed());
    drop(c); // the one-at-a-time models serve the next client once this one leaves
    // perf1.py's unterminated requests (a client that never sent a newline) wait too.
    assert_eq!(server.connect().ask("12"), "144");
    // The backend counts a line once its reply is written, so the server may have
    // answered (and this client read) before the count moved: wait for the three valid
    // requests to be counted, then a little more for a fourth, which must not come.
    let answered = || {
        backend
            .stats
            .answered
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while answered() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(answered(), 3, "the invalid request went to the downstream");
}

/// Two clients' waits overlap in every model that serves clients at once; `single`
/// waits for one client's request before it even reads the next client's.
fn downstream_waits_overlap(subject: Subject) {
    let backend = Backend::start(Duration::from_millis(800), Duration::ZERO);
    let server = subject.start_with(&["--downstream", &backend.flag()]);
    let mut first = server.connect();
    let mut second = server.connect();
    first.send(b"10\n");
    second.send(b"11\n");
    assert_eq!(first.line(), "55");
    drop(first); // the one-at-a-time models serve the next client once it leaves
    assert_eq!(second.line(), "89");
    let most = backend
        .stats
        .most_waiting
        .load(std::sync::atomic::Ordering::SeqCst);
    match subject.model.clients {
        Clients::Concurrent => assert_eq!(most, 2, "the two waits did not overlap"),
        Clients::OneAtATime => assert_eq!(most, 1, "one client at a time, waits included"),
        Clients::Sharded => assert!((1..=2).contains(&most), "{most}"),
    }
}

/// Nothing listens at the downstream: `ERR downstream refused`, and the connection
/// goes on.
fn downstream_refused(subject: Subject) {
    let server = subject.start_with(&["--downstream", &refusing_addr()]);
    let mut c = server.connect();
    assert_eq!(c.ask("10\n"), "ERR downstream refused");
    assert_eq!(c.ask("-1\n"), "ERR negative");
    assert_eq!(c.ask("11\n"), "ERR downstream refused");
}

/// A downstream that never answers: each request gets `ERR downstream timed out` once
/// the timeout has passed, the connection stays usable, and no descriptor is left.
fn downstream_never_answers(subject: Subject) {
    let silent = Faulty::start(Fault::Silent);
    let timeout = Duration::from_millis(300);
    let server = subject.start_with(&[
        "--downstream",
        &silent.flag(),
        "--downstream-timeout",
        "300ms",
    ]);
    let mut c = server.connect();
    let pid = server.pid().as_raw();
    // One failure first: any descriptor a model opens once (a pool) is open by now.
    assert_eq!(c.ask("10\n"), "ERR downstream timed out");
    let before = open_fds(pid);
    for n in 0..3 {
        let started = Instant::now();
        assert_eq!(c.ask(&format!("{n}\n")), "ERR downstream timed out");
        assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
        assert_eq!(
            c.ask("abc\n"),
            "ERR not a number",
            "answered without a call"
        );
    }
    assert!(
        open_fds(pid) <= before,
        "descriptors grew from {before} to {} over three timed-out calls",
        open_fds(pid)
    );
    drop(c);
    let mut again = server.connect();
    assert_eq!(
        again.ask("x\n"),
        "ERR not a number",
        "the server is still up"
    );
}

/// A downstream that answers twice, or speaks first: the stale line never answers a
/// request; that request gets `ERR downstream desync`, and the next one a fresh
/// connection (PROTOCOL.md).
fn downstream_desync(subject: Subject) {
    let twice = Faulty::start(Fault::Twice);
    let server = subject.start_with(&["--downstream", &twice.flag()]);
    let mut c = server.connect();
    assert_eq!(c.ask("8\n"), "21");
    // The second `8` is in by now, with no request outstanding.
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(c.ask("9\n"), "ERR downstream desync");
    assert_eq!(c.ask("10\n"), "55", "a fresh connection after the desync");
    drop(c);
    let greets = Faulty::start(Fault::Greets);
    let server = subject.start_with(&["--downstream", &greets.flag()]);
    let mut c = server.connect();
    assert_eq!(c.ask("8\n"), "ERR downstream desync");
    assert_eq!(c.ask("x\n"), "ERR not a number", "the connection goes on");
}

/// A downstream that streams one endless line: the request fails at once (the first
/// byte that is not the echo), long before the timeout, and the server goes on.
fn downstream_endless_line(subject: Subject) {
    let endless = Faulty::start(Fault::Endless);
    let server = subject.start_with(&[
        "--downstream",
        &endless.flag(),
        "--downstream-timeout",
        "3s",
    ]);
    let mut c = server.connect();
    let started = Instant::now();
    assert_eq!(c.ask("10\n"), "ERR downstream desync");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}: the endless line held the call",
        started.elapsed()
    );
    assert_eq!(c.ask("abc\n"), "ERR not a number");
}

/// A downstream that closes each connection after one echo: the next request, not yet
/// written, goes on a fresh connection instead of failing (the keep-alive race).
fn downstream_keep_alive_race(subject: Subject) {
    let closing = Faulty::start(Fault::EchoThenClose);
    let server = subject.start_with(&["--downstream", &closing.flag()]);
    let mut c = server.connect();
    for (n, fib) in [(8, "21"), (9, "34"), (10, "55")] {
        assert_eq!(c.ask(&format!("{n}\n")), fib, "request {n}");
        // The downstream's FIN arrives while the connection is idle.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A downstream that closes, then one that resets: the reason on the wire, in order.
fn downstream_closes_or_resets(subject: Subject) {
    for (fault, reason) in [(Fault::Close, "closed"), (Fault::Reset, "reset")] {
        let faulty = Faulty::start(fault);
        let server = subject.start_with(&["--downstream", &faulty.flag()]);
        let mut c = server.connect();
        c.send(b"10\nabc\n12\n");
        assert_eq!(c.line(), format!("ERR downstream {reason}"));
        assert_eq!(c.line(), "ERR not a number");
        assert_eq!(c.line(), format!("ERR downstream {reason}"));
    }
}
