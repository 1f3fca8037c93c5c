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
    /// The token from the URL it printed (URL-decoded); `None` with `--no-token`.
    token: Option<String>,
}

impl Lab {
    fn start(extra: &[&str]) -> Lab {
        Lab::start_with(Command::new(common::fiblab_bin()), extra)
    }

    /// `command` (the fiblab binary, or a wrapper such as `prlimit` before it) with
    /// `lab --addr 127.0.0.1:PORT` and `extra`.
    fn start_with(mut command: Command, extra: &[&str]) -> Lab {
        let port = common::free_addr().port();
        let mut child = command
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
        let token = line.split_once("?token=").map(|(_, rest)| {
            let value = rest.split_whitespace().next().unwrap();
            percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .unwrap()
                .to_string()
        });
        Lab {
            child,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            token,
        }
    }

    /// (status, body) of one request as the lab's page sends it: `Host: localhost`,
    /// the token in its header, JSON.
    fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.request(method, path, &[("Content-Type", "application/json")], body)
    }

    /// (status, body) of one request with the token and `headers` (a `Host` among
    /// them replaces `localhost`).
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            head.push_str("Host: localhost\r\n");
        }
        if let Some(token) = &self.token {
            head.push_str(&format!("X-Fiblab-Token: {token}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        let (_, text) = self.raw(head.as_bytes(), Duration::from_secs(40));
        common::http_response(&text)
    }

    /// Sends `bytes` as they are and reads until the lab closes the connection (or
    /// `limit` passes): how long that took, and what came back.
    fn raw(&self, bytes: &[u8], limit: Duration) -> (Duration, String) {
        let started = Instant::now();
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(limit)).unwrap();
        s.write_all(bytes).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        (started.elapsed(), String::from_utf8_lossy(&got).to_string())
    }

    fn ok(&self, path: &str, body: &str) -> serde_json::Value {
        let (status, text) = self.http("POST", path, body);
        assert_eq!(status, 200, "{path} {body}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    fn state(&self) -> serde_json::Value {
        let (status, text) = self.http("GET", "/api/state", "");
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    /// The children of the lab process now.
    fn children(&self) -> Vec<u32> {
        common::children_of(self.child.id())
    }

    /// Opens an event stream: the first 12 bytes of the answer (`HTTP/1.1 200`) and
    /// the connection, left open.
    fn open_events(&self) -> ([u8; 12], TcpStream) {
        let token = self.token.clone().unwrap_or_default();
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /events HTTP/1.1\r\nHost: localhost\r\nX-Fiblab-Token: {token}\r\n\r\n"
        )
        .unwrap();
        let mut first = [0u8; 12];
        s.read_exact(&mut first).unwrap();
        (first, s)
    }

    /// Whether the lab process still runs.
    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
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
    let token = lab.token.clone().unwrap_or_default();
    write!(
        s,
        "GET /events HTTP/1.1\r\nHost: localhost\r\nX-Fiblab-Token: {token}\r\n\r\n"
    )
    .unwrap();
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
    // A second lesson while one runs is refused, as busy.
    assert_eq!(lab.http("POST", "/api/lesson", r#"{"id":"gil"}"#).0, 409);
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
            413,
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

/// Issue 41's cross-site request forgery and DNS rebinding, as a page elsewhere would
/// send them: refused with the reason, and nothing starts. (The browser's own view of
/// it is in tests/lab_browser.rs.)
#[test]
fn other_origins_and_host_names_cannot_drive_it() {
    let lab = Lab::start(&[]);
    // DNS rebinding: the attacker's name, now resolving here, is in Host.
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/events"),
        ("GET", "/api/state"),
        ("POST", "/api/server"),
    ] {
        let (status, text) = lab.request(
            method,
            path,
            &[
                ("Host", "evil.example:8025"),
                ("Content-Type", "application/json"),
            ],
            r#"{"model":"epoll"}"#,
        );
        assert_eq!(status, 403, "{method} {path}: {text}");
        assert!(text.contains("--allow-host"), "{text}");
    }
    // Cross-site requests: a simple (unpreflighted) POST, a form, a page of another
    // origin; JSON only, from the lab's own origin only.
    let evil: &[(&[(&str, &str)], u16)] = &[
        (
            &[
                ("Origin", "http://evil.example"),
                ("Content-Type", "text/plain"),
            ],
            403,
        ),
        (
            &[
                ("Origin", "http://evil.example"),
                ("Content-Type", "application/json"),
            ],
            403,
        ),
        (
            &[
                ("Origin", "http://localhost:1"),
                ("Content-Type", "application/json"),
            ],
            403,
        ),
        (
            &[("Origin", "null"), ("Content-Type", "application/json")],
            403,
        ),
        (
            &[
                ("Sec-Fetch-Site", "cross-site"),
                ("Content-Type", "application/json"),
            ],
            403,
        ),
        (
            &[
                ("Sec-Fetch-Site", "same-site"),
                ("Content-Type", "application/json"),
            ],
            403,
        ),
        (&[("Content-Type", "text/plain")], 415),
        (
            &[("Content-Type", "application/x-www-form-urlencoded")],
            415,
        ),
        (&[("Content-Type", "multipart/form-data; boundary=x")], 415),
        (&[], 415),
    ];
    for (headers, status) in evil {
        for (path, body) in [
            ("/api/server", r#"{"model":"epoll"}"#),
            ("/api/load", r#"{"clients":8,"n":1,"rate":200000}"#),
            ("/api/heavy", "{}"),
            ("/api/lesson", r#"{"id":"two-clients"}"#),
        ] {
            let (got, text) = lab.request("POST", path, headers, body);
            assert_eq!(got, *status, "{path} {headers:?}: {text}");
        }
    }
    // A form's text/plain body that looks like JSON with a trailing field: refused
    // even as JSON, since unknown fields are.
    let (got, text) = lab.http("POST", "/api/server", r#"{"model":"epoll","x=":""}"#);
    assert_eq!(got, 400, "{text}");
    // The lab's own page (same origin) is served.
    let own = format!("http://localhost:{}", lab.addr.port());
    let host = format!("localhost:{}", lab.addr.port());
    let (got, text) = lab.request(
        "POST",
        "/api/server/stop",
        &[
            ("Host", host.as_str()),
            ("Origin", own.as_str()),
            ("Sec-Fetch-Site", "same-origin"),
            ("Content-Type", "application/json"),
        ],
        "{}",
    );
    assert_eq!(got, 200, "{text}");
    let state = lab.state();
    assert!(state["server"].is_null(), "{state}");
    assert!(lab.children().is_empty(), "{:?}", lab.children());
    // A name given with --allow-host is answered.
    let named = Lab::start(&["--allow-host", "fiblab.test"]);
    let (got, text) = named.request("GET", "/api/state", &[("Host", "fiblab.test:80")], "");
    assert_eq!(got, 200, "{text}");
}

/// A token by default (random, printed in the URL), never an empty one; from a file
/// or the environment instead of `ps`; URL-encoded by the lab and decoded by it.
#[test]
fn a_token_is_on_by_default_never_empty_and_read_as_sent() {
    let lab = Lab::start(&[]);
    let token = lab.token.clone().expect("a token in the printed URL");
    assert_eq!(token.len(), 32, "{token}");
    let get = |lab: &Lab, path: &str| {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        common::http_response(&lab.raw(request.as_bytes(), Duration::from_secs(10)).1).0
    };
    assert_eq!(get(&lab, "/api/state"), 401);
    assert_eq!(get(&lab, "/api/state?token="), 401);
    assert_eq!(get(&lab, "/api/state?token=0"), 401);
    assert_eq!(get(&lab, &format!("/api/state?token={token}")), 200);
    assert_eq!(get(&lab, &format!("/?token={token}")), 200);
    drop(lab);

    // An empty token is refused, wherever it comes from.
    let refused = |args: &[&str], env: Option<&str>| {
        let mut command = Command::new(common::fiblab_bin());
        command.arg("lab").args(args);
        if !args.contains(&"--addr") {
            command.args(["--addr", "127.0.0.1:0"]);
        }
        if let Some(value) = env {
            command.env("FIBLAB_LAB_TOKEN", value);
        }
        let out = command.stdin(Stdio::null()).output().unwrap();
        assert!(!out.status.success(), "{args:?} started");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let said = refused(&["--token", ""], None);
    assert!(said.contains("empty"), "{said}");
    let file = std::env::temp_dir().join(format!("fiblab-lab-token-{}", std::process::id()));
    std::fs::write(&file, "\n").unwrap();
    let said = refused(&["--token-file", file.to_str().unwrap()], None);
    assert!(said.contains("empty"), "{said}");
    let said = refused(&[], Some(""));
    assert!(said.contains("empty"), "{said}");
    let said = refused(&["--no-token", "--addr", "0.0.0.0:0"], None);
    assert!(said.contains("--no-token"), "{said}");

    // A token with + and / from a file: the printed URL carries it encoded, and the
    // page's encoded query and the raw header both work.
    std::fs::write(&file, "s3cr+t/Tok\n").unwrap();
    let lab = Lab::start(&["--token-file", file.to_str().unwrap()]);
    assert_eq!(lab.token.as_deref(), Some("s3cr+t/Tok"));
    assert_eq!(get(&lab, "/api/state?token=s3cr%2Bt%2FTok"), 200);
    assert_eq!(lab.http("GET", "/api/state", "").0, 200);
    assert_eq!(get(&lab, "/api/state?token=s3cr%20t%2FTok"), 401);
    let _ = std::fs::remove_file(&file);

    // From the environment.
    let mut command = Command::new(common::fiblab_bin());
    command.env("FIBLAB_LAB_TOKEN", "from-the-env");
    let lab = Lab::start_with(command, &[]);
    assert_eq!(lab.token.as_deref(), Some("from-the-env"));
    assert_eq!(get(&lab, "/api/state?token=from-the-env"), 200);

    // --no-token on loopback: served without one.
    let lab = Lab::start(&["--no-token"]);
    assert!(lab.token.is_none());
    assert_eq!(get(&lab, "/api/state"), 200);
}

/// Issue 41's malformed and oversized requests, each answered with an error or
/// closed in bounded time, and the lab still serving after all of them.
#[test]
fn malformed_oversized_and_slow_requests_are_bounded() {
    let lab = Lab::start(&[]);
    let token = lab.token.clone().unwrap();
    let resident_kib = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    let before = resident_kib(lab.child.id());
    let status = |text: &str| common::http_response(text).0;
    // A body declared larger than any call: 413 at once, nothing read or allocated.
    let (took, text) = lab.raw(
        format!("POST /api/load HTTP/1.1\r\nHost: localhost\r\nX-Fiblab-Token: {token}\r\nContent-Type: application/json\r\nContent-Length: 999999999999999\r\n\r\n").as_bytes(),
        Duration::from_secs(10),
    );
    assert_eq!(status(&text), 413, "{text}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // A header of 4 MiB: 431, and the lab's memory does not grow by it.
    let mut huge = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: ".to_vec();
    huge.resize(huge.len() + (4 << 20), b'a');
    let mut s = TcpStream::connect(lab.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(&huge); // the lab may close before it is all written
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert_eq!(status(&String::from_utf8_lossy(&got)), 431);
    let after = resident_kib(lab.child.id());
    assert!(
        after < before + 32 * 1024,
        "{before} KiB before, {after} KiB after"
    );
    // HEAD, a bare-LF request: answered; an HTTP/2 preface: closed at once.
    let (_, text) = lab.raw(
        format!("HEAD /?token={token} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .as_bytes(),
        Duration::from_secs(10),
    );
    assert_eq!(status(&text), 200, "{text}");
    let (_, text) = lab.raw(
        format!("GET /api/state?token={token} HTTP/1.1\nHost: localhost\nConnection: close\n\n")
            .as_bytes(),
        Duration::from_secs(10),
    );
    assert_eq!(status(&text), 200, "{text}");
    let (took, _) = lab.raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Duration::from_secs(10));
    assert!(took < Duration::from_secs(5), "{took:?}");

    // Held open at once: 40 calls that declare a body and never send it, 20 event
    // streams (more than the 16 allowed), and a head never finished.
    let started = Instant::now();
    let held_body = format!(
        "POST /api/load HTTP/1.1\r\nHost: localhost\r\nX-Fiblab-Token: {token}\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
    );
    let mut bodies: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = TcpStream::connect(lab.addr).unwrap();
            s.write_all(held_body.as_bytes()).unwrap();
            s
        })
        .collect();
    let mut streams = Vec::new();
    let mut refused_streams = 0;
    for _ in 0..20 {
        let (first, s) = lab.open_events();
        match &first {
            b"HTTP/1.1 200" => streams.push(s),
            b"HTTP/1.1 503" => refused_streams += 1,
            other => panic!("{}", String::from_utf8_lossy(other)),
        }
    }
    assert_eq!((streams.len(), refused_streams), (16, 4));
    let mut slow = TcpStream::connect(lab.addr).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: loc").unwrap();
    // Meanwhile the API answers at once.
    let asked = Instant::now();
    assert_eq!(lab.state()["server"], serde_json::Value::Null);
    assert!(asked.elapsed() < Duration::from_secs(5));
    // The held bodies get 408 once the body timeout (10 s) passes, the unfinished
    // head is closed at the header timeout (10 s), both well before 20 s.
    for s in &mut bodies {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        assert_eq!(status(&text), 408, "{text}");
    }
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
    drop(streams);
    // Streams again once the lab has seen the pages go (at its next write to them,
    // within a few keep-alive seconds).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match &lab.open_events().0 {
            b"HTTP/1.1 200" => break,
            b"HTTP/1.1 503" if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            other => panic!("{}", String::from_utf8_lossy(other)),
        }
    }
}

/// One heavy request at a time: the second, sent while the first is out, is told
/// it is busy (409), and the lab goes on.
#[test]
fn one_heavy_request_at_a_time() {
    let lab = Lab::start(&[]);
    lab.ok("/api/server", r#"{"model":"threads"}"#);
    lab.ok("/api/heavy", "{}");
    let (status, text) = lab.http("POST", "/api/heavy", "{}");
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("one at a time"), "{text}");
    watch(&lab, Duration::from_secs(60), |events| {
        has_mark(events, "heavy: fib(")
            && events.iter().any(|e| {
                e["marks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["what"].as_str().unwrap().contains("answered in"))
            })
    });
    // Answered: the next one is taken.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match lab.http("POST", "/api/heavy", "{}").0 {
            200 => break,
            409 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("{other}"),
        }
    }
}

/// Out of descriptors (a lab under a 128-descriptor limit and 300 connections), the
/// lab pauses accepting and goes on: it neither exits nor stops listening, and
/// answers once the connections leave.
#[test]
fn out_of_descriptors_the_lab_waits_and_goes_on() {
    if !common::prlimit_here("out_of_descriptors_the_lab_waits_and_goes_on") {
        return;
    }
    let mut command = Command::new("prlimit");
    command.args(["--nofile=128", common::fiblab_bin()]);
    let mut lab = Lab::start_with(command, &[]);
    let held: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(lab.addr).ok())
        .collect();
    assert!(held.len() >= 200, "{} connected", held.len());
    std::thread::sleep(Duration::from_millis(500));
    assert!(lab.is_running(), "the lab exited out of descriptors");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut s = TcpStream::connect(lab.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let token = lab.token.clone().unwrap();
        let _ = write!(
            s,
            "GET /api/state HTTP/1.1\r\nHost: localhost\r\nX-Fiblab-Token: {token}\r\nConnection: close\r\n\r\n"
        );
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        if common::http_response(&text).0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never answered again: {text:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(lab.is_running());
}

/// Killed outright (SIGKILL: no handler runs), the lab leaves nothing behind: its
/// `prefork` server and the server's copies are killed by the kernel.
#[test]
fn its_children_die_with_it_even_on_sigkill() {
    let lab = Lab::start(&[]);
    lab.ok("/api/server", r#"{"model":"prefork","workers":2}"#);
    lab.ok("/api/load", r#"{"clients":4,"n":5}"#);
    let servers = lab.children();
    assert_eq!(servers.len(), 1, "{servers:?}");
    // prefork announces its port before its copies are all up: wait for them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let copies = loop {
        let copies = common::children_of(servers[0]);
        if copies.len() >= 2 {
            break copies;
        }
        assert!(
            Instant::now() < deadline,
            "prefork has no copies: {copies:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    kill(Pid::from_raw(lab.child.id() as i32), Signal::SIGKILL).unwrap();
    let all: Vec<u32> = servers.iter().chain(&copies).copied().collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while all.iter().any(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            // A zombie (state Z) has exited; only its parent has not reaped it yet.
            .is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .is_some_and(|(_, s)| !s.trim_start().starts_with('Z'))
            })
    }) {
        assert!(Instant::now() < deadline, "left behind: {all:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
