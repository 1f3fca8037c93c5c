//! The command line as a user meets it: perf1/perf2 output shapes, bounds that stop
//! by themselves, and error messages that say what to do.

mod common;

use std::process::{Command, Output};

use common::{Server, fiblab_bin};

fn fiblab(args: &[&str]) -> Output {
    Command::new(fiblab_bin())
        .args(args)
        .output()
        .expect("run fiblab")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn rates(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.strip_suffix(" reqs/sec")?.parse().ok())
        .collect()
}

#[test]
fn perf2_prints_one_line_per_second_and_a_summary() {
    let server = Server::start("threads", &[]);
    let addr = server.addr.to_string();
    let out = fiblab(&["perf2", "--addr", &addr, "--n", "1", "--duration", "3"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let per_second = rates(&text);
    assert_eq!(per_second.len(), 3, "three per-second lines in:\n{text}");
    assert!(per_second.iter().all(|&r| r > 0), "{text}");
    let summary = text.lines().last().unwrap();
    assert!(summary.starts_with("total: "), "{text}");
    assert!(
        summary.ends_with("; 0 wrong replies, 0 errors"),
        "{summary}"
    );
}

#[test]
fn perf2_against_single_shows_the_second_client_starved_and_still_stops() {
    let server = Server::start("single", &[]);
    let addr = server.addr.to_string();
    let out = fiblab(&[
        "perf2",
        "--addr",
        &addr,
        "--conns",
        "2",
        "--duration",
        "1500ms",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let summary = text
        .lines()
        .find(|l| l.starts_with("total: "))
        .expect("summary");
    // One connection got everything, the other nothing: the seeds' "cannot serve".
    let counts: Vec<u64> = summary
        .split("per connection: ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .map(|s| s.split(", ").filter_map(|c| c.parse().ok()).collect())
        .unwrap_or_default();
    assert_eq!(counts.len(), 2, "{summary}");
    assert_eq!(counts.iter().filter(|&&c| c == 0).count(), 1, "{summary}");
}

#[test]
fn perf1_prints_each_latency_then_a_summary() {
    let server = Server::start("tokio", &[]);
    let addr = server.addr.to_string();
    let out = fiblab(&[
        "perf1",
        "--addr",
        &addr,
        "--n",
        "20",
        "--count",
        "5",
        "--no-newline",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    for line in &lines[..5] {
        assert!(line.ends_with(" µs  6765"), "{line}");
    }
    assert!(lines[5].starts_with("5 requests: min "), "{text}");
}

#[test]
fn perf_clients_explain_a_missing_server() {
    // Bind then drop, so the port is very likely closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = fiblab(&["perf1", "--addr", &port.to_string(), "--count", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a server running there?"), "{err}");
}

#[test]
fn serve_explains_a_busy_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = fiblab(&["serve", "--port", &port]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Pick another with --port"), "{err}");
}

/// Runs `fiblab ARGS`, which must exit by itself within a few seconds (a server that
/// started instead is killed and the test fails).
fn fiblab_exits(args: &[&str]) -> Output {
    let mut child = Command::new(fiblab_bin())
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run fiblab");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "fiblab {args:?} kept running (it started serving?): {}",
                stdout(&out)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Crystal-lang/crystal#4019 and Expensify/Bedrock#1872: a second server on a port
/// whose listener uses `SO_REUSEPORT` silently shares it, the kernel splitting new
/// clients between the two. Every registry model that binds with `SO_REUSEPORT` must
/// refuse a held port (held by a model like it, or by a plain one), and join it only
/// when asked.
#[test]
fn reuse_port_models_refuse_a_port_another_server_holds() {
    let shared: Vec<&str> = fiblab::models::MODELS
        .iter()
        .filter(|m| m.reuse_port)
        .map(|m| m.name)
        .collect();
    assert!(!shared.is_empty(), "the registry has SO_REUSEPORT models");
    for first in shared.iter().copied().chain(["threads"]) {
        let mut held = Server::start(first, &[]);
        let port = held.addr.port().to_string();
        for second in &shared {
            let out = fiblab_exits(&["serve", "--model", second, "--port", &port]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{second} after {first}: {err}");
            assert!(
                err.contains(&format!("port {port} already has a listener"))
                    && err.contains("--join-port"),
                "{second} after {first}: {err}"
            );
        }
        // The first still serves every client.
        assert_eq!(held.connect().ask("10\n"), "55");
        held.terminate(std::time::Duration::from_secs(5));
    }
    // On purpose: two `per-core` servers share one port.
    let first = Server::start("per-core", &[]);
    let port = first.addr.port().to_string();
    let mut command = Command::new(fiblab_bin());
    command.args([
        "serve",
        "--model",
        "per-core",
        "--port",
        &port,
        "--join-port",
    ]);
    let mut joined = Server::spawn(command, "per-core", std::process::Stdio::inherit());
    assert_eq!(joined.addr.port(), first.addr.port());
    assert_eq!(joined.connect().ask("10\n"), "55");
    joined.terminate(std::time::Duration::from_secs(5));
    // A plain model cannot join anything.
    let out = fiblab_exits(&["serve", "--model", "threads", "--port", "0", "--join-port"]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--join-port needs a model that binds with SO_REUSEPORT"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn serve_rejects_unknown_models_and_impossible_limits() {
    let out = fiblab(&["serve", "--model", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values: single, threads"));
    let out = fiblab(&["serve", "--max-n", "94"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("fits in 64 bits only up to n = 93"));
}

#[test]
fn models_lists_the_registry() {
    let text = stdout(&fiblab(&["models"]));
    for model in fiblab::models::MODELS {
        assert!(text.lines().any(|l| l.starts_with(model.name)), "{text}");
    }
}

#[test]
fn readme_model_table_is_the_registry() {
    let readme = include_str!("../README.md");
    let table = readme
        .split("<!-- models:start -->\n")
        .nth(1)
        .and_then(|rest| rest.split("<!-- models:end -->").next())
        .expect("README.md has the <!-- models:start/end --> markers");
    assert_eq!(
        table,
        fiblab::models::markdown_table(),
        "README's model table is out of date: paste `cargo run -- models --markdown` between the markers"
    );
}

#[test]
fn load_tui_needs_a_terminal() {
    let out = fiblab(&["load", "--tui", "--duration", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tui needs a terminal"));
}

/// `fiblab calibrate --json -`: the documented shape (docs/CALIBRATION.md), alone on stdout.
#[test]
fn calibrate_json_has_the_documented_shape() {
    let out = fiblab(&["calibrate", "--n", "1,20", "--json", "-"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c: serde_json::Value =
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}:\n{}", stdout(&out)));
    assert_eq!(c["schema"], 2);
    for field in [
        "cpu",
        "cpus",
        "threads_per_core",
        "virtual_machine",
        "kernel",
        "descriptor_limit",
        "allowed_cpus",
    ] {
        assert!(
            !c["machine"][field].is_null(),
            "machine.{field} missing: {c}"
        );
    }
    for field in [
        "rtt_same_cpu",
        "rtt_two_cpus",
        "rtt_spinning",
        "rtt_client_spinning",
        "loadgen_same_cpu",
        "wake_up",
        "pipe_round_trip",
        "thread_start",
        "process_start",
        "epoll_1",
        "epoll_1000",
        "select_1",
        "select_1000",
        "select_idle_1000",
        "read_idle",
        "handoff",
        "downstream_cpu",
        "thread_resident_kib",
    ] {
        let m = &c[field];
        // Two-CPU figures are null on a one-CPU machine; everything else is measured.
        if m.is_null() {
            assert!(
                field.contains("two") || field.contains("spinning") || field == "wake_up",
                "{field} not measured"
            );
            continue;
        }
        assert!(m["median_us"].as_f64().unwrap() >= 0.0, "{field}: {m}");
        assert!(m["spread"].as_f64().unwrap() >= 0.0, "{field}: {m}");
    }
    for list in ["fib", "fib_interpreted"] {
        let fib = c[list].as_array().unwrap();
        assert_eq!(fib.len(), 2, "{list}");
        assert_eq!(fib[0]["n"], 1, "{list}");
        assert!(
            fib[1]["median_us"].as_f64().unwrap() > fib[0]["median_us"].as_f64().unwrap(),
            "{list}: {c}"
        );
    }
    // Every field the documentation names is in the JSON, and the other way round.
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/CALIBRATION.md"),
    )
    .unwrap();
    for (key, _) in c.as_object().unwrap() {
        assert!(
            doc.contains(&format!("`{key}`")),
            "docs/CALIBRATION.md does not document `{key}`"
        );
    }
}

#[test]
fn load_agents_split_and_merge_through_the_cli() {
    let server = common::Server::start("threads", &[]);
    let dir = std::env::temp_dir().join(format!("fiblab-agents-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let start_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 0.5;
    let addr = server.addr.to_string();
    let agents: Vec<_> = (1..=2)
        .map(|i| {
            let json = dir.join(format!("agent-{i}.json"));
            let child = std::process::Command::new(common::fiblab_bin())
                .args(["load", "--addr", &addr, "--conns", "4", "--rate", "400"])
                .args([
                    "--duration",
                    "1s",
                    "--quiet",
                    "--segment",
                    &format!("{i}/2"),
                ])
                .args(["--start-at", &start_at.to_string(), "--json"])
                .arg(&json)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            (child, json)
        })
        .collect();
    let mut files = Vec::new();
    for (mut child, json) in agents {
        assert!(child.wait().unwrap().success());
        files.push(json);
    }
    let merged = dir.join("merged.json");
    let out = std::process::Command::new(common::fiblab_bin())
        .args(["load", "merge"])
        .args(&files)
        .arg("--json")
        .arg(&merged)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&merged).unwrap()).unwrap();
    assert_eq!(report["merged_from"], 2);
    assert_eq!(report["connections"], 4);
    assert_eq!(report["rate"], 400.0);
    // One agent's report twice, or one agent alone: refused, naming the files; the
    // lone agent merges with --partial, and the report says who is missing.
    let merge = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(common::fiblab_bin())
            .args(["load", "merge"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            stdout(&out),
        )
    };
    let (a, b) = (files[0].as_os_str(), files[1].as_os_str());
    let (ok, err, _) = merge(&[a, a]);
    assert!(
        !ok && err.contains("is the same report as") && err.contains("agent-1.json"),
        "{err}"
    );
    let (ok, err, _) = merge(&[b]);
    assert!(
        !ok && err.contains("agent 1/2 of the split is missing") && err.contains("--partial"),
        "{err}"
    );
    let (ok, err, text) = merge(&[b, std::ffi::OsStr::new("--partial")]);
    assert!(ok, "{err}");
    assert!(text.contains("agent 1/2 of 2 missing"), "{text}");
    // A file that is not a report is refused with what to do.
    let out = fiblab(&["load", "merge", "Cargo.toml"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a fiblab load JSON report"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = fiblab(&["load", "--segment", "3/2"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("write agent I of N as I/N"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `fiblab load` against a server on this machine finds the process listening on the
/// port and reports its CPU per request beside the client's, with the ratio; the
/// client's system calls are counted by kind. `--server-pid` names a process outright,
/// and one that cannot be read is said, not reported as zero.
#[test]
fn load_reports_the_servers_cost_beside_the_clients() {
    let server = common::Server::start("epoll", &[]);
    let addr = server.addr.to_string();
    let run = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["load", "--addr", &addr, "--conns", "4", "--rate", "2000"];
        args.extend(["--duration", "1s", "--quiet", "--json", "-"]);
        args.extend(extra);
        let out = fiblab(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let report = run(&[]);
    let ok = report["requests_ok"].as_f64().unwrap();
    assert!(ok > 1000.0, "{report}");
    let server_cost = &report["server"];
    assert_eq!(
        server_cost["pid"].as_i64(),
        Some(server.pid().as_raw() as i64),
        "{report}"
    );
    let server_cpu = server_cost["cpu_us_per_request"].as_f64().unwrap();
    let client_cpu = report["client"]["cpu_us_per_request"].as_f64().unwrap();
    assert!(server_cpu > 0.0 && client_cpu > 0.0, "{report}");
    let ratio = server_cost["client_over_server"].as_f64().unwrap();
    assert!((ratio - client_cpu / server_cpu).abs() < 0.01, "{report}");
    // Every request is one write of its own (one in flight per connection), and its
    // reply at least one read; the counts are the window's, per correct reply.
    let calls = &report["client"]["calls_per_request"];
    let per = |kind: &str| calls[kind].as_f64().unwrap();
    assert!((per("send") - 1.0).abs() < 0.05, "{report}");
    assert!(per("receive") >= 0.95, "{report}");
    let total = ["send", "receive", "poll", "sleep", "timer"]
        .iter()
        .map(|k| per(k))
        .sum::<f64>();
    assert!((per("total") - total).abs() < 0.01, "{report}");
    let window = &report["client"]["window"]["calls"];
    assert!(window["send"].as_f64().unwrap() >= ok * 0.95, "{report}");
    // A process that is not there: said in a note, no server figure.
    let report = run(&["--server-pid", "999999999"]);
    assert!(report.get("server").is_none(), "{report}");
    assert!(
        report["notes"]
            .to_string()
            .contains("--server-pid 999999999"),
        "{report}"
    );
}
