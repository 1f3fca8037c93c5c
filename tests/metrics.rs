//! `fiblab serve --metrics ADDR`: the Prometheus exposition of every model, checked by
//! `promtool check metrics` (Debian's `prometheus`; `.ci/run` installs it), with
//! counters that move with the load and the GIL's with `--gil`.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, runs_here};

/// `METHOD path` over HTTP/1.0: (status code, body). Retries while the endpoint is not
/// up yet (it starts with the server, just before the listening line).
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(mut stream) => {
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                write!(stream, "{method} {path} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
                let mut text = String::new();
                stream.read_to_string(&mut text).expect("read the response");
                return common::http_response(&text);
            }
            Err(e) if Instant::now() > deadline => panic!("metrics at {addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn scrape(addr: SocketAddr) -> String {
    let (status, body) = http(addr, "GET", "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the sample `name{labels}` (labels exactly as exposed, or empty).
fn value(text: &str, sample: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, v) = l.rsplit_once(' ')?;
        (name == sample).then(|| v.parse().ok())?
    })
}

fn start(model: &str, extra: &[&str]) -> (Server, SocketAddr) {
    let metrics = common::free_addr();
    let at = metrics.to_string();
    let mut args = vec!["--metrics", at.as_str()];
    args.extend_from_slice(extra);
    (Server::start(model, &args), metrics)
}

/// `promtool check metrics` on `text`: its complaints, or `None` where promtool is
/// missing (said loudly; under CI, where `.ci/run` installs it, a failure).
fn promtool(text: &str) -> Option<String> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool is missing under CI ({e}); .ci/run installs Debian's prometheus"
            );
            eprintln!(
                "SKIPPED the promtool check: promtool not found ({e}); install Debian's `prometheus`"
            );
            return None;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(match out.status.success() {
        true => String::new(),
        false => said,
    })
}

#[test]
fn the_exposition_is_clean_and_counts_requests_errors_and_connections() {
    let (server, metrics) = start("threads", &[]);
    let before = scrape(metrics);
    if let Some(complaints) = promtool(&before) {
        assert!(complaints.is_empty(), "promtool: {complaints}\n{before}");
    }
    assert_eq!(
        value(&before, "fiblab_requests_total{class=\"n 0-9\"}"),
        Some(0.0)
    );
    assert!(
        value(&before, "process_threads").unwrap() >= 2.0,
        "{before}"
    );
    assert!(value(&before, "process_resident_memory_bytes").unwrap() > 0.0);
    let about = before
        .lines()
        .find(|l| l.starts_with("fiblab_server_info{"))
        .unwrap_or_default();
    assert!(
        about.contains("model=\"threads\"")
            && about.contains("gil=\"none\"")
            && about.ends_with(" 1"),
        "{before}"
    );

    let mut client = server.connect();
    for _ in 0..5 {
        assert_eq!(client.ask("1"), "1");
    }
    assert_eq!(client.ask("25"), "75025");
    assert_eq!(client.ask("abc"), "ERR not a number");
    let after = scrape(metrics);
    if let Some(complaints) = promtool(&after) {
        assert!(complaints.is_empty(), "promtool: {complaints}\n{after}");
    }
    let v = |sample: &str| value(&after, sample).unwrap_or(-1.0);
    assert_eq!(v("fiblab_requests_total{class=\"n 0-9\"}"), 5.0, "{after}");
    assert_eq!(v("fiblab_requests_total{class=\"n 20-29\"}"), 1.0);
    assert_eq!(
        v("fiblab_request_errors_total{reason=\"not a number\"}"),
        1.0
    );
    assert_eq!(v("fiblab_request_service_seconds_count"), 6.0);
    assert!(v("fiblab_request_service_seconds_sum") > 0.0);
    assert_eq!(v("fiblab_connections_open"), 1.0);
    assert_eq!(v("fiblab_connections_accepted_total"), 1.0);
    assert_eq!(v("fiblab_requests_in_flight"), 0.0);
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(5);
    while value(&scrape(metrics), "fiblab_connections_open") != Some(0.0) {
        assert!(
            Instant::now() < deadline,
            "the closed connection stays open"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // No GIL, no GIL counters.
    assert!(!after.contains("fiblab_gil_"), "{after}");
}

#[test]
fn with_gil_the_locks_counters_move() {
    let (server, metrics) = start("threads", &["--gil"]);
    let mut a = server.connect();
    let mut b = server.connect();
    for _ in 0..3 {
        assert_eq!(a.ask("22"), "17711");
        assert_eq!(b.ask("22"), "17711");
    }
    let text = scrape(metrics);
    if let Some(complaints) = promtool(&text) {
        assert!(complaints.is_empty(), "promtool: {complaints}\n{text}");
    }
    assert!(
        value(&text, "fiblab_gil_acquisitions_total").unwrap() >= 6.0,
        "{text}"
    );
    for name in [
        "fiblab_gil_contended_acquisitions_total",
        "fiblab_gil_wait_seconds_total",
        "fiblab_gil_drop_requests_total",
        "fiblab_gil_forced_switches_total",
    ] {
        assert!(value(&text, name).is_some(), "{name} missing:\n{text}");
    }
}

/// Every model counts its requests through the shared service, whatever its threads,
/// loops or processes; `prefork`'s copies count in their own processes and the parent's
/// endpoint adds them up.
#[test]
fn every_model_counts_the_requests_it_serves() {
    for model in fiblab::models::MODELS {
        if !runs_here(model.name) {
            continue;
        }
        let (server, metrics) = start(model.name, &[]);
        let mut client = server.connect();
        for _ in 0..3 {
            assert_eq!(client.ask("10"), "55", "{}", model.name);
        }
        let text = scrape(metrics);
        let counted = value(&text, "fiblab_requests_total{class=\"n 10-19\"}");
        if model.name == "prefork" {
            // The copies publish ten times a second: wait for the count to arrive.
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut text = text;
            while value(&text, "fiblab_requests_total{class=\"n 10-19\"}") != Some(3.0) {
                assert!(
                    Instant::now() < deadline,
                    "prefork's copies never reported:\n{text}"
                );
                std::thread::sleep(Duration::from_millis(50));
                text = scrape(metrics);
            }
            assert!(value(&text, "fiblab_processes").unwrap() >= 2.0, "{text}");
            assert_eq!(value(&text, "fiblab_connections_open"), Some(1.0), "{text}");
            if let Some(complaints) = promtool(&text) {
                assert!(complaints.is_empty(), "promtool: {complaints}\n{text}");
            }
            // The copies publish into a folder of this server's alone: made new
            // (a random name), mode 0700.
            let pid = server.pid();
            let folders = copies_folders(pid.as_raw() as u32);
            assert_eq!(folders.len(), 1, "{folders:?}");
            let folder = &folders[0];
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(folder).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", folder.display());
            assert_ne!(
                folder.file_name().unwrap().to_str().unwrap(),
                format!("fiblab-metrics-{pid}"),
                "a name another user could predict and plant"
            );
            // Stopped as a person would: the copies' folder goes with the server.
            drop(client);
            let mut server = server;
            assert!(server.terminate(Duration::from_secs(10)).is_some());
            assert!(!folder.exists(), "{} left behind", folder.display());
            continue;
        }
        assert_eq!(counted, Some(3.0), "{}:\n{text}", model.name);
    }
}

/// The folders `fiblab-metrics-PID-*` of server `pid`, where servers make them.
fn copies_folders(pid: u32) -> Vec<std::path::PathBuf> {
    let mut bases = vec![std::env::temp_dir()];
    bases.extend(std::env::var_os("XDG_RUNTIME_DIR").map(std::path::PathBuf::from));
    bases
        .iter()
        .filter_map(|base| std::fs::read_dir(base).ok())
        .flat_map(|dir| dir.flatten())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("fiblab-metrics-{pid}-")))
        })
        .collect()
}

/// Sends `bytes` to the endpoint as they are; what came back before it closed (or
/// `limit` passed).
fn raw(addr: SocketAddr, bytes: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    let _ = s.write_all(bytes);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    String::from_utf8_lossy(&got).to_string()
}

/// Issue 41: one request declaring a body of a petabyte killed the server (the HTTP
/// library allocated it); one declaring 5,000 bytes and sending none held every other
/// scrape; a huge header was read whole. Now: 413 at once, the others unaffected, 431,
/// and the fib port serves throughout.
#[test]
fn one_request_can_neither_kill_nor_block_the_endpoint() {
    let (mut server, metrics) = start("epoll", &[]);
    let _ = scrape(metrics);
    let answer = raw(
        metrics,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999999\r\n\r\n",
        Duration::from_secs(10),
    );
    assert_eq!(common::http_response(&answer).0, 413, "{answer}");
    assert!(server.is_running(), "the server died");
    assert_eq!(server.connect().ask("10"), "55");
    // Held open: a body never sent, and 100 connections more than the endpoint's 64.
    let mut held = TcpStream::connect(metrics).unwrap();
    held.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let _ = scrape(metrics);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let crowd: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(metrics).unwrap())
        .collect();
    // Past the bound a connection is told so at once, not left waiting.
    let answer = raw(
        metrics,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(10),
    );
    assert_eq!(common::http_response(&answer).0, 503, "{answer}");
    drop(crowd);
    let mut huge = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    huge.resize(huge.len() + (1 << 20), b'a');
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let answer = raw(metrics, &huge, Duration::from_secs(10));
        // The crowd's connections take a moment to be seen closed.
        if !answer.starts_with("HTTP/1.1 503") || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(common::http_response(&answer).0, 431, "{answer}");
    assert!(server.is_running(), "the server died");
    assert_eq!(server.connect().ask("10"), "55");
    let _ = scrape(metrics);
}

/// Issue 41: out of descriptors (a 256-descriptor limit and 400 idle fib clients) the
/// endpoint's listener died for good. Now it pauses accepting, and scrapes work again
/// once the clients leave.
#[test]
fn out_of_descriptors_the_endpoint_comes_back() {
    if !common::prlimit_here("out_of_descriptors_the_endpoint_comes_back") {
        return;
    }
    let metrics = common::free_addr();
    let mut command = Command::new("prlimit");
    command
        .args([
            "--nofile=256",
            common::fiblab_bin(),
            "serve",
            "--model",
            "epoll",
        ])
        .args(["--port", "0", "--metrics", &metrics.to_string()]);
    let mut server = Server::spawn(command, "epoll", Stdio::null());
    let _ = scrape(metrics);
    let clients: Vec<TcpStream> = (0..400)
        .filter_map(|_| TcpStream::connect(server.addr).ok())
        .collect();
    // Meanwhile the scrape may wait or be refused; the server must not die.
    let _ = TcpStream::connect_timeout(&metrics, Duration::from_secs(1));
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = raw(
            metrics,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(2),
        );
        if common::http_response(&answer).0 == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/metrics never came back: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(server.is_running());
}

#[test]
fn other_paths_and_methods_are_refused_and_a_taken_address_is_an_error() {
    let (server, metrics) = start("epoll", &[]);
    assert_eq!(http(metrics, "GET", "/").0, 404);
    assert_eq!(http(metrics, "POST", "/metrics").0, 405);
    // Garbage instead of HTTP: the endpoint and the server go on.
    let mut raw = TcpStream::connect(metrics).unwrap();
    let _ = raw.write_all(b"\x00\xff not http at all\r\n\r\n");
    drop(raw);
    assert_eq!(server.connect().ask("3"), "2");
    let _ = scrape(metrics);

    let out = Command::new(common::fiblab_bin())
        .args(["serve", "--port", "0", "--metrics", &metrics.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("cannot serve --metrics on"), "{said}");
}
