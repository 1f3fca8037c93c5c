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
