//! `fiblab advise` as a user meets it: a recorded calibration gives a fixed advice
//! (golden), bad descriptions are refused naming the flag, and `--cpu` becomes fib(n)
//! wherever n is taken.

mod common;

use std::process::{Command, Output};

use common::{Server, fiblab_bin, golden};

fn fiblab(args: &[&str]) -> Output {
    Command::new(fiblab_bin())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run fiblab")
}

/// A folder of this test's own for the files a command writes.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fiblab-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const CALIBRATION: &str = "tests/golden/advise_calibration.json";

#[test]
fn a_recorded_calibration_gives_a_fixed_advice() {
    let dir = scratch("advise");
    let json = dir.join("advice.json");
    let markdown = dir.join("advice.md");
    let html = dir.join("advice.html");
    let out = fiblab(&[
        "advise",
        "--n",
        "25",
        "--wait",
        "5ms",
        "--clients",
        "100",
        "--slo",
        "p99=50ms",
        "--calibration",
        CALIBRATION,
        "--json",
        json.to_str().unwrap(),
        "--markdown",
        markdown.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    golden("advise.txt", &String::from_utf8_lossy(&out.stdout));
    golden("advise.md", &std::fs::read_to_string(&markdown).unwrap());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!doctype html>"), "{page}");
    assert!(page.contains("<th>what limits it</th>") && page.contains("</body></html>"));
    assert_eq!(
        page.matches("<tr>").count(),
        fiblab::models::MODELS.len() + 1
    );
    let advice: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(advice["service"]["clients"], 100);
    assert_eq!(
        advice["models"].as_array().unwrap().len(),
        fiblab::models::MODELS.len()
    );
    assert!(advice["advised"].is_string(), "{advice}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An open loop of a heavy-tailed mix, with the GIL's rows: a fixed advice too.
#[test]
fn an_open_loop_of_a_mix_gives_a_fixed_advice() {
    let out = fiblab(&[
        "advise",
        "--mix",
        "1:99,30:1",
        "--rate",
        "2000/s",
        "--slo",
        "p99=20ms",
        "--gil",
        "--calibration",
        CALIBRATION,
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    golden("advise_open.txt", &text);
    assert!(text.contains("2,000 req/s in an open loop over 64 connections"));
    assert!(text.contains("threads --gil"), "{text}");
}

/// The shared 16-core report's calibration, in its one regime (pinned 8 + 8).
#[test]
fn a_bench_report_predicts_in_its_regime() {
    let report = "../shared/data/16-core/scale-report.json";
    if !std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(report)
        .exists()
    {
        eprintln!("SKIPPED: {report} is missing (CI has ../shared beside the clone)");
        return;
    }
    let out = fiblab(&[
        "advise",
        "--n",
        "20",
        "--clients",
        "64",
        "--calibration",
        report,
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("regime `pinned`: server on CPUs 8-15, load on 0-7"),
        "{text}"
    );
    let out = fiblab(&[
        "advise",
        "--n",
        "20",
        "--clients",
        "64",
        "--calibration",
        report,
        "--regime",
        "shared",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("regime `pinned`"));
}

#[test]
fn a_duration_becomes_fib_n_from_the_calibration() {
    let out = fiblab(&["advise", "--cpu", "2ms", "--calibration", CALIBRATION]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("--cpu 2.00 ms: fib("), "{err}");
    assert!(err.contains("on one core there"), "{err}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("for the 2.0 ms of CPU asked"), "{text}");
}

#[test]
fn bad_descriptions_are_refused_naming_the_flag() {
    for (args, flag) in [
        (vec!["--n", "1", "--clients", "0"], "--clients"),
        (vec!["--n", "1", "--clients", "2000000"], "--clients"),
        (vec!["--cpu", "0"], "--cpu"),
        (vec!["--cpu", "11s"], "--cpu"),
        (vec!["--n", "46"], "--n 46"),
        (vec!["--n", "-1"], "--n"),
        (vec!["--n", "1", "--wait", "2m"], "--wait"),
        (vec!["--n", "1", "--slo", "p50=1ms"], "--slo"),
        (vec!["--n", "1", "--cpu", "1ms"], "--cpu"),
        (vec![], "--cpu <CPU>|--n <N>"),
        (
            vec!["--n", "1", "--calibration", "Cargo.toml"],
            "Cargo.toml is not JSON",
        ),
        (vec!["--n", "1", "--rate", "0"], "--rate"),
        (vec!["--n", "1", "--rate", "fast"], "--rate"),
        (vec!["--mix", "1:x"], "--mix"),
        (vec!["--mix", "1:1,46:1"], "--mix"),
        (vec!["--n", "1", "--mix", "1:1"], "--mix"),
        (vec!["--n", "1", "--regime", "pinned"], "--calibration"),
        (
            vec![
                "--n",
                "1",
                "--calibration",
                CALIBRATION,
                "--regime",
                "pinned",
            ],
            "--regime pinned",
        ),
    ] {
        let out = fiblab(&[&["advise"], args.as_slice()].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

#[test]
fn the_seeds_clients_and_load_take_cpu_time() {
    let server = Server::start("threads", &[]);
    let addr = server.addr.to_string();
    let out = fiblab(&["perf1", "--addr", &addr, "--cpu", "300us", "--count", "2"]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("--cpu 300 µs: fib("), "{err}");
    let out = fiblab(&[
        "load",
        "--addr",
        &addr,
        "--mix",
        "20us:9,300us:1",
        "--requests",
        "20",
    ]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("--mix ").count(), 2, "{err}");
    let out = fiblab(&[
        "load",
        "--addr",
        &addr,
        "--mix",
        "1:1,20s:1",
        "--requests",
        "2",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--mix 20s:1: '20s'"),
        "{out:?}"
    );
}

#[test]
fn an_advice_is_measured_within_its_budget() {
    let dir = scratch("advise-measured");
    let json = dir.join("advice.json");
    let out = fiblab(&[
        "advise",
        "--n",
        "15",
        "--clients",
        "2",
        "--time-budget",
        "20s",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Predicted, then measured here (below)"),
        "{text}"
    );
    assert!(text.contains("\nMeasured here:\n"), "{text}");
    let advice: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = advice["confirmation"]["rows"].as_array().unwrap();
    assert!(rows.len() >= 2, "{advice}");
    for row in rows {
        assert!(row["rps"]["estimate"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["predicted"][1].as_f64().unwrap() > 0.0, "{row}");
    }
    let verdict = advice["confirmation"]["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("Confirmed: ") || verdict.starts_with("Not confirmed: "),
        "{verdict}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
