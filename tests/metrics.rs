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
            // Stopped as a person would: the copies' folder goes with the server.
            let pid = server.pid();
            drop(client);
            let mut server = server;
            assert!(server.terminate(Duration::from_secs(10)).is_some());
            let folder = std::env::temp_dir().join(format!("fiblab-metrics-{pid}"));
            assert!(!folder.exists(), "{} left behind", folder.display());
            continue;
        }
        assert_eq!(counted, Some(3.0), "{}:\n{text}", model.name);
    }
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
