//! `fiblab soak`, short: every event-loop model (and its --offload variant) under mixed
//! pipelined load for a few seconds, with exact accounting and a clean SIGTERM exit. The
//! long runs (10 minutes, a million requests and more) are in the closing notes and
//! README; this keeps the command and its verdict honest on every `cargo test`.

mod common;

use std::process::Command;

fn soak(model: &str) {
    let json =
        std::env::temp_dir().join(format!("fiblab-soak-{}-{model}.json", std::process::id()));
    let out = Command::new(common::fiblab_bin())
        .args(["soak", "--model", model, "--duration", "3s", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    assert_eq!(report["lost"], 0, "{text}");
    assert_eq!(report["wrong"], 0, "{text}");
    assert_eq!(report["clean_exit"], true, "{text}");
    assert!(report["answered"].as_u64().unwrap() > 100, "{text}");
}

#[test]
fn event_loop_models_soak_clean() {
    for model in [
        "nonblocking",
        "select",
        "epoll",
        "epoll+offload",
        "coroutines",
        "coroutines+offload",
        "tokio-current",
        "tokio+offload",
    ] {
        soak(model);
    }
}
