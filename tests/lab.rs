//! `fiblab lab`: the page's API as a browser drives it (start a server, add clients,
//! see points arrive, the heavy request marked, a switch, stop), the bad inputs it must
//! refuse with a 4xx while it keeps running, and no child left behind when it exits.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A `fiblab lab` child on a free port; SIGTERM on drop.
struct Lab {
    child: Child,
    addr: SocketAddr,
}

impl Lab {
    fn start(extra: &[&str]) -> Lab {
        let port = common::free_addr().port();
        let mut child = Command::new(common::fiblab_bin())
            .args(["lab", "--addr", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("fiblab lab: open http://"), "{line:?}");
        Lab {
            child,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
        }
    }

    /// (status, body) of one HTTP/1.0 request.
    fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        common::http_response(&text)
    }

    fn ok(&self, path: &str, body: &str) -> serde_json::Value {
        let (status, text) = self.http("POST", path, body);
        assert_eq!(status, 200, "{path} {body}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// The children of the lab process now.
    fn children(&self) -> Vec<u32> {
        common::children_of(self.child.id())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// Reads the event stream until `done` holds for the events seen so far.
fn watch(lab: &Lab, limit: Duration, mut done: impl FnMut(&[serde_json::Value]) -> bool) {
    let mut s = TcpStream::connect(lab.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /events HTTP/1.1\r\nHost: lab\r\n\r\n").unwrap();
    let mut reader = BufReader::new(s);
    let mut events = Vec::new();
    let deadline = Instant::now() + limit;
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            events.push(serde_json::from_str(data).unwrap());
            if done(&events) {
                return;
            }
        }
    }
    panic!("the event stream never showed it; {} events", events.len());
}

fn has_mark(events: &[serde_json::Value], prefix: &str) -> bool {
    events.iter().any(|e| {
        e["marks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["what"].as_str().unwrap().starts_with(prefix))
    })
}

#[test]
fn a_session_as_a_teacher_runs_it_and_nothing_is_left_behind() {
    let lab = Lab::start(&[]);
    let (status, page) = lab.http("GET", "/", "");
    assert_eq!(status, 200);
    assert!(page.contains("<canvas id=\"chart\""));
    let state = lab.ok("/api/server", r#"{"model":"threads"}"#);
    assert_eq!(state["server"]["label"], "threads");
    lab.ok("/api/load", r#"{"clients":2,"n":1}"#);
    // Points arrive with throughput and two clients.
    watch(&lab, Duration::from_secs(20), |events| {
        events.iter().any(|e| {
            e["points"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["rps"].as_f64().unwrap() > 0.0 && p["clients"] == 2)
        })
    });
    // The server's own figures come along.
    watch(&lab, Duration::from_secs(20), |events| {
        events.iter().any(|e| {
            e["server_metrics"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m[0] == "process_threads")
        })
    });
    let heavy = lab.ok("/api/heavy", "{}");
    let n = heavy["n"].as_u64().unwrap();
    assert!((25..=44).contains(&n), "{heavy}");
    watch(&lab, Duration::from_secs(40), |events| {
        has_mark(events, &format!("heavy: fib({n}) answered in"))
    });
    let asked = lab.ok("/api/ask", r#"{"line":"20"}"#);
    assert_eq!(asked["reply"], "6765");
    let asked = lab.ok("/api/ask", r#"{"line":"-1"}"#);
    assert_eq!(asked["reply"], "ERR negative");
    // A switch keeps the load and marks the chart.
    let state = lab.ok("/api/server", r#"{"model":"epoll","gil":"none"}"#);
    assert_eq!(state["server"]["label"], "epoll");
    assert_eq!(state["load"]["clients"], 2);
    watch(&lab, Duration::from_secs(20), |events| {
        has_mark(events, "server: epoll")
    });
    assert!(!lab.children().is_empty(), "the server is the lab's child");
    let pid = lab.child.id();
    let children = lab.children();
    drop(lab);
    // SIGTERM stopped the lab, and it stopped its server.
    let deadline = Instant::now() + Duration::from_secs(10);
    while children
        .iter()
        .any(|c| std::path::Path::new(&format!("/proc/{c}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "lab {pid} left {children:?} behind"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A lesson runs its steps and ends with observations computed from what it measured,
/// beside the seed's words: `single` leaves the second client unanswered, `threads`
/// serves both.
#[test]
fn the_two_clients_lesson_ends_with_what_was_measured() {
    let lab = Lab::start(&[]);
    let state = lab.ok("/api/lesson", r#"{"id":"two-clients"}"#);
    assert!(state["lessons"].as_array().unwrap().len() >= 3);
    // A second lesson while one runs is refused.
    assert_eq!(lab.http("POST", "/api/lesson", r#"{"id":"gil"}"#).0, 422);
    let mut observed = Vec::new();
    watch(&lab, Duration::from_secs(90), |events| {
        match events.last().map(|e| &e["lesson"]) {
            Some(l) if l["failed"].is_string() => panic!("the lesson failed: {l}"),
            Some(l) if !l["observed"].as_array().is_none_or(|o| o.is_empty()) => {
                observed = l["observed"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o.as_str().unwrap().to_string())
                    .collect();
                assert!(l["quote"].as_str().unwrap().contains("线程"), "{l}");
                true
            }
            _ => false,
        }
    });
    assert!(
        observed[0].starts_with("single: two clients") && observed[0].contains("1 client got none"),
        "{observed:?}"
    );
    assert!(
        observed[1].starts_with("threads: two clients") && !observed[1].contains(" 0% "),
        "{observed:?}"
    );
}

#[test]
fn bad_inputs_get_a_4xx_and_the_lab_goes_on() {
    let lab = Lab::start(&[]);
    let cases: &[(&str, &str, &str, u16)] = &[
        ("POST", "/api/server", "not json", 400),
        ("POST", "/api/server", r#"{"model":"rm -rf /"}"#, 422),
        (
            "POST",
            "/api/server",
            r#"{"model":"threads","gil":"maybe"}"#,
            422,
        ),
        (
            "POST",
            "/api/server",
            r#"{"model":"threads","workers":100000}"#,
            422,
        ),
        (
            "POST",
            "/api/server",
            r#"{"model":"threads","offload":true}"#,
            422,
        ),
        ("POST", "/api/load", r#"{"clients":1,"n":1}"#, 422),
        ("POST", "/api/heavy", "{}", 422),
        ("POST", "/api/ask", r#"{"line":"1"}"#, 422),
        ("POST", "/api/nothing", "{}", 404),
        ("POST", "/api/lesson", r#"{"id":"nope"}"#, 422),
        ("DELETE", "/", "", 405),
        ("GET", "/../../etc/passwd", "", 404),
    ];
    for (method, path, body, status) in cases {
        let (got, text) = lab.http(method, path, body);
        assert_eq!(got, *status, "{method} {path} {body}: {text}");
        assert!(!text.trim().is_empty(), "{method} {path}: no reason given");
    }
    lab.ok("/api/server", r#"{"model":"single"}"#);
    for (path, body, status) in [
        ("/api/load", r#"{"clients":100000,"n":1}"#, 422),
        ("/api/load", r#"{"clients":1,"n":90}"#, 422),
        ("/api/load", r#"{"clients":-1,"n":1}"#, 400),
        (
            "/api/ask",
            &format!(r#"{{"line":"{}"}}"#, "9".repeat(5000)),
            400,
        ),
        ("/api/ask", r#"{"line":"1\n2"}"#, 422),
        ("/api/load", r#"{"clients":1,"n":1,"rate":0}"#, 422),
        ("/api/load", r#"{"clients":1,"n":1,"rate":1e12}"#, 422),
        ("/api/load", r#"{"clients":1,"n":1,"mix":"1:99,40:1"}"#, 422),
        ("/api/load", r#"{"clients":1,"n":1,"mix":"one"}"#, 422),
    ] {
        let (got, text) = lab.http("POST", path, body);
        assert_eq!(got, status, "{path}: {text}");
    }
    // An open loop of a mix is taken.
    let state = lab.ok(
        "/api/load",
        r#"{"clients":2,"n":1,"mix":"1:9,20:1","rate":500}"#,
    );
    assert_eq!(state["load"]["rate"], 500.0);
    // `single` serves one connection at a time: the load goes before the line is sent.
    lab.ok("/api/load", r#"{"clients":0,"n":1}"#);
    // Still serving.
    assert_eq!(lab.ok("/api/ask", r#"{"line":"10"}"#)["reply"], "55");
}

#[test]
fn beyond_loopback_a_token_is_required() {
    let out = Command::new(common::fiblab_bin())
        .args(["lab", "--addr", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lab = Lab::start(&["--token", "s3cret"]);
    assert_eq!(lab.http("GET", "/api/state", "").0, 401);
    assert_eq!(lab.http("GET", "/api/state?token=nope", "").0, 401);
    assert_eq!(lab.http("GET", "/api/state?token=s3cret", "").0, 200);
}
