//! Faults that people have reported against tools of this kind, each turned into the
//! right value: error replies of other protocols count as errors, one check per value
//! whichever flag carries it, a run that measured nothing fails, machine formats stand
//! alone on standard output, messages that know the real limits.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output, Stdio};

use common::{Peer, Server, fiblab_bin};

fn fiblab(args: &[&str]) -> Output {
    Command::new(fiblab_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run fiblab")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `fiblab load` against `addr`, 200 requests, the report as JSON on stdout.
fn load_json(addr: SocketAddr, extra: &[&str]) -> (Output, serde_json::Value) {
    let addr = addr.to_string();
    let mut args = vec![
        "load",
        "--addr",
        &addr,
        "--requests",
        "200",
        "-q",
        "--json",
        "-",
    ];
    args.extend_from_slice(extra);
    let out = fiblab(&args);
    let report = serde_json::from_str(&text(&out.stdout)).unwrap_or_else(|e| {
        panic!(
            "stdout is not the JSON report ({e}):\n{}",
            text(&out.stdout)
        )
    });
    (out, report)
}

#[test]
fn redis_error_replies_are_errors() {
    let Some(redis) = Peer::redis() else { return };
    let (out, report) = load_json(redis.addr, &["--request", "FOO"]);
    assert_eq!(report["errors"]["err_reply"], 200, "{report}");
    assert_eq!(report["requests_ok"], 0);
    assert!(!out.status.success(), "nothing succeeded: exit 1");
    assert!(
        text(&out.stderr).contains("no request succeeded"),
        "{}",
        text(&out.stderr)
    );
    let (out, report) = load_json(
        redis.addr,
        &[
            "--request",
            "PING",
            "--protocol",
            "resp",
            "--expect",
            "+PONG",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(report["requests_ok"], 200);
}

#[test]
fn memcached_error_replies_are_errors() {
    let Some(memcached) = Peer::memcached() else {
        return;
    };
    let (out, report) = load_json(
        memcached.addr,
        &["--request", "bogus", "--protocol", "memcached"],
    );
    assert_eq!(report["errors"]["err_reply"], 200, "{report}");
    assert!(!out.status.success());
    let (out, report) = load_json(
        memcached.addr,
        &["--request", "version", "--expect-prefix", "VERSION "],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(report["requests_ok"], 200);
    // A reply that is not the expected one is wrong, and fails the run.
    let (out, report) = load_json(
        memcached.addr,
        &["--request", "version", "--expect", "VERSION 0"],
    );
    assert_eq!(report["errors"]["wrong"], 200, "{report}");
    assert!(!out.status.success());
}

#[test]
fn a_user_given_expected_reply_is_checked_against_fiblab_too() {
    let server = Server::start("threads", &["--service", "upper"]);
    let (out, report) = load_json(server.addr, &["--request", "abc", "--expect", "ABC"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(report["requests_ok"], 200);
}

#[test]
fn n_is_checked_once_whichever_flag_carries_it() {
    for args in [
        &["load", "-n", "100", "--requests", "1"][..],
        &["load", "--mix", "100:1", "--requests", "1"],
        &["perf1", "-n", "100", "--count", "1"],
        &["perf2", "-n", "100", "--count", "1"],
    ] {
        let out = fiblab(args);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            text(&out.stderr)
                .contains("n = 100 is too large: fib(n) fits in 64 bits only up to n = 93"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    for args in [
        &["perf1", "--n", "-1"][..],
        &["perf1", "--n=-1"],
        &["load", "-n", "-1"],
    ] {
        let out = fiblab(args);
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains("from 0 to 93"), "{args:?} says: {err}");
        assert!(!err.contains("4294967295"), "{args:?} says: {err}");
    }
}

#[test]
fn a_run_where_every_request_failed_exits_non_zero() {
    let server = Server::start("threads", &["--max-n", "44"]);
    let addr = server.addr.to_string();
    for args in [
        &["perf1", "--addr", &addr, "--n", "50", "--count", "3"][..],
        &["perf2", "--addr", &addr, "--n", "50", "--count", "20"],
        &[
            "load",
            "--addr",
            &addr,
            "--mix",
            "50:1",
            "--requests",
            "20",
            "-q",
        ],
    ] {
        let out = fiblab(args);
        assert!(
            !out.status.success(),
            "{args:?} exited 0: {}",
            text(&out.stdout)
        );
        let err = text(&out.stderr);
        assert!(
            err.contains("no request succeeded") && err.contains("ERR replies"),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "a one-line reason: {err}");
    }
    // A threshold on the share of failed requests.
    let mix = [
        "load",
        "--addr",
        &addr,
        "--mix",
        "1:1,50:1",
        "--requests",
        "200",
        "-q",
    ];
    let out = fiblab(&[&mix[..], &["--max-error-rate", "10%"]].concat());
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("above --max-error-rate 10.00%"),
        "{}",
        text(&out.stderr)
    );
    let out = fiblab(&[&mix[..], &["--max-error-rate", "90%"]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn machine_formats_stand_alone_on_stdout() {
    let server = Server::start("threads", &[]);
    let addr = server.addr.to_string();
    let out = fiblab(&["load", "--addr", &addr, "--requests", "10", "--json", "-"]);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_str(&text(&out.stdout))
        .unwrap_or_else(|e| panic!("{e}:\n{}", text(&out.stdout)));
    assert_eq!(report["requests_ok"], 10);
    assert!(
        text(&out.stderr).contains("latency (µs)"),
        "the text report moved to stderr"
    );

    let out = fiblab(&[
        "load",
        "--addr",
        &addr,
        "--duration",
        "1500ms",
        "--csv",
        "-",
        "-q",
    ]);
    assert!(out.status.success());
    let csv = text(&out.stdout);
    let header = csv.lines().next().unwrap_or_default();
    assert!(header.contains(','), "CSV header first: {csv}");
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.split(',').count() == header.split(',').count()),
        "every row has the header's fields:\n{csv}"
    );
    let out = fiblab(&[
        "load",
        "--addr",
        &addr,
        "--requests",
        "1",
        "--json",
        "-",
        "--csv",
        "-",
    ]);
    assert!(!out.status.success(), "two formats cannot share stdout");
}

#[test]
fn bench_json_stands_alone_on_stdout() {
    let golden =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/bench_report.json");
    let out = fiblab(&["bench", "--replot", golden.to_str().unwrap(), "--json", "-"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&text(&out.stdout))
        .unwrap_or_else(|e| panic!("{e}:\n{}", text(&out.stdout)));
    assert_eq!(report["scenario"], "fixture");
    let out = fiblab(&[
        "bench",
        "--replot",
        golden.to_str().unwrap(),
        "--json",
        "-",
        "--html",
        "-",
    ]);
    assert!(!out.status.success(), "two formats cannot share stdout");
}

#[test]
fn a_run_that_ended_early_says_when_and_why() {
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = fiblab(&["perf2", "--addr", &free.to_string(), "--duration", "5"]);
    assert!(!out.status.success());
    let summary = text(&out.stdout);
    assert!(
        !summary.contains("in 5.00 s"),
        "claims the whole run: {summary}"
    );
    assert!(
        text(&out.stderr).contains("is a server running there"),
        "{}",
        text(&out.stderr)
    );
    let (_, report) = load_json(free, &[]);
    let notes = report["notes"].to_string();
    assert!(notes.contains("ended early"), "{notes}");
}

#[test]
fn cpu_lists_parse_as_one_value() {
    let server = Server::start("threads", &[]);
    let addr = server.addr.to_string();
    // The README shows `--cpus 1`; any list form must parse, not panic.
    for cpus in ["0", "0,1", "0-1"] {
        let out = fiblab(&[
            "load",
            "--addr",
            &addr,
            "--cpus",
            cpus,
            "--requests",
            "10",
            "-q",
        ]);
        assert!(out.status.success(), "--cpus {cpus}: {}", text(&out.stderr));
    }
}

/// The commands of the README's code blocks, as a new user would type them: each runs,
/// bounded (a second of load, a one-cell bench), against a server of the test's own.
#[test]
fn every_readme_command_runs() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let mut in_block = false;
    let mut commands = Vec::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        let line = line.split(" #").next().unwrap_or("").trim();
        let rest = [
            "fiblab ",
            "target/release/fiblab ",
            "cargo run --release -- ",
        ]
        .iter()
        .find_map(|p| line.strip_prefix(p));
        if let (true, Some(rest)) = (in_block, rest) {
            commands.push(rest.to_string());
        }
    }
    assert!(commands.len() >= 10, "found only {commands:?}");
    let fib = Server::start("threads", &[]);
    let redis = Peer::redis();
    let dir = std::env::temp_dir().join(format!("fiblab-readme-{}", std::process::id()));
    let mut ran = 0;
    for command in &commands {
        // `$T` stands for what a script printed: the peers' flags, started by hand.
        // `&` sends a recipe's step to the background: here each step runs bounded, in
        // the foreground, except a server, which the test's own servers stand in for.
        let words: Vec<String> = command
            .split_whitespace()
            .filter(|w| !w.starts_with('$') && *w != "&")
            .map(String::from)
            .collect();
        if words.get(..2).is_some_and(|w| w == ["load", "merge"]) {
            eprintln!(
                "SKIPPED README command (merges the files of the recipe above; tests/load.rs and `fiblab load merge` in tests/cli.rs merge real agents' reports): fiblab {command}"
            );
            continue;
        }
        if command.trim_end().ends_with('&')
            && words
                .first()
                .is_some_and(|w| w == "serve" || w == "backend")
        {
            eprintln!(
                "SKIPPED README command (a server for a recipe; the test's own stand in): fiblab {command}"
            );
            continue;
        }
        let Some(argv) = bounded(&words, &fib, redis.as_ref(), &dir) else {
            eprintln!("SKIPPED README command (needs redis-server): fiblab {command}");
            continue;
        };
        let out = Command::new(fiblab_bin())
            .args(&argv)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        if argv.iter().any(|a| a == "--tui") {
            // Documented: the live view needs a terminal, and says so.
            assert!(err.contains("needs a terminal"), "fiblab {command}: {err}");
        } else {
            assert!(
                out.status.success(),
                "README command `fiblab {command}` (run as {argv:?}) failed: {err}"
            );
        }
        ran += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        ran >= 9,
        "ran only {ran} of {} README commands",
        commands.len()
    );
}

/// `words` made safe to run here: the test's servers, a temporary folder, a second of
/// load, one small cell of bench. `None` when it needs a peer that is missing.
fn bounded(
    words: &[String],
    fib: &Server,
    redis: Option<&Peer>,
    dir: &std::path::Path,
) -> Option<Vec<String>> {
    let mut argv: Vec<String> = Vec::new();
    let mut skip_value = false;
    let replace = ["--addr", "--duration", "--out", "--count"];
    for (i, w) in words.iter().enumerate() {
        if skip_value {
            skip_value = false;
            continue;
        }
        if replace.contains(&w.as_str()) && i + 1 < words.len() {
            skip_value = true;
            if w == "--count" {
                argv.extend([w.clone(), "3".into()]);
            }
            if w == "--out" {
                argv.extend([
                    w.clone(),
                    dir.join(format!("out-{i}")).display().to_string(),
                ]);
            }
            continue;
        }
        argv.push(w.clone());
    }
    match argv.first().map(String::as_str) {
        Some("load" | "perf1" | "perf2") => {
            let addr = match argv.iter().any(|a| a == "--request") {
                true => redis?.addr,
                false => fib.addr,
            };
            argv.extend(["--addr".into(), addr.to_string()]);
            if !argv.iter().any(|a| a == "--count") {
                argv.extend(["--duration".into(), "1".into()]);
            }
        }
        Some("bench") => argv.extend(
            [
                "--models",
                "threads",
                "--workloads",
                "1",
                "--clients",
                "1",
                "--duration",
                "100ms",
                "--warmup",
                "0s",
                "--repetitions",
                "1",
                "--no-starvation",
            ]
            .map(String::from),
        ),
        _ => {}
    }
    Some(argv)
}

#[test]
fn completions_and_man_page_come_from_the_parser() {
    let bash = fiblab(&["completions", "bash"]);
    assert!(bash.status.success());
    let script = text(&bash.stdout);
    assert!(
        script.contains("--max-error-rate") && script.contains("serve"),
        "{script}"
    );
    let man = fiblab(&["manpage"]);
    assert!(man.status.success());
    let page = text(&man.stdout);
    assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
    assert!(page.contains("fiblab"), "{page}");
}

/// Output cut short by a closed pipe (`| head`) is a normal way to stop, never a panic.
#[test]
fn a_closed_stdout_is_no_panic() {
    let dir = std::env::temp_dir().join(format!("fiblab-seeds-{}", std::process::id()));
    let mut child = Command::new(fiblab_bin())
        .args(["seeds", "extract", "--out", dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away at once
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
