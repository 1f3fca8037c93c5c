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
