//! The seeds' own clients against every model: `perf1.py` and `perf2.py` of seed 000
//! (newline-terminated, port and n from argv) and Beazley's versions from seed 004
//! (`b'30'` / `b'1'` with no newline, port 25000 hard-coded).
//!
//! The scripts are extracted from `../shared/seeds` at test time and run unchanged.
//! A small Python shim wraps them: it points their `connect` at the test server's
//! port (Beazley's scripts hard-code 25000, which parallel tests cannot share), checks
//! every reply they receive against the true fib(n), and ends the endless loop after
//! a few seconds with a verdict line. One test per (model, script), generated from
//! the registry like the conformance suite.
//!
//! Needs `python3`. Without it the tests are reported as ignored with the reason, and
//! under CI (`CI` set) they fail: `.ci/run` installs python3.

mod common;

use std::process::{Command, Stdio};

use common::Server;
use fiblab::models::MODELS;
use fiblab::seeds;
use libtest_mimic::{Arguments, Failed, Trial};

/// Runs a seed script with its socket calls redirected and its replies checked.
const SHIM: &str = r#"
import os, runpy, socket, sys, threading
port = int(os.environ["FIBLAB_PORT"])
expected = os.environ["FIBLAB_EXPECT"].encode() + b"\n"
stats = {"ok": 0, "bad": 0}
real_connect, real_recv = socket.socket.connect, socket.socket.recv
def connect(self, address):
    return real_connect(self, ("127.0.0.1", port))
def recv(self, size, *flags):
    data = real_recv(self, size, *flags)
    if data == expected:
        stats["ok"] += 1
    else:
        stats["bad"] += 1
        sys.stderr.write("shim: unexpected reply %r\n" % (data,))
    return data
socket.socket.connect, socket.socket.recv = connect, recv
def finish():
    sys.stdout.flush()
    # Leading newline: the script may be halfway through printing a line.
    print("\nshim: ok=%d bad=%d" % (stats["ok"], stats["bad"]), flush=True)
    os._exit(0)
threading.Timer(float(os.environ["FIBLAB_SECONDS"]), finish).start()
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"#;

/// (seed, script, argv after the port, expected reply, runs a per-second monitor)
const SCRIPTS: &[(&str, &str, &[&str], &str, bool)] = &[
    ("000", "perf1.py", &["25"], "75025", false),
    ("000", "perf2.py", &["1"], "1", true),
    ("004", "perf1.py", &[], "832040", false),
    ("004", "perf2.py", &[], "1", true),
];

fn main() {
    let args = Arguments::from_args();
    let python_missing = Command::new("python3").arg("--version").output().is_err();
    let workdir = std::env::temp_dir().join(format!("fiblab-seed-clients-{}", std::process::id()));
    let mut trials = Vec::new();
    for &(seed, script, argv, expected, monitor) in SCRIPTS {
        for model in MODELS {
            let name = format!("{}::seed{seed}_{}", model.name, script.replace('.', "_"));
            let workdir = workdir.clone();
            let trial = Trial::test(name, move || {
                if python_missing {
                    return Err("python3 is not installed: `.ci/run` installs it".into());
                }
                run_script(model.name, &workdir, seed, script, argv, expected, monitor)
            });
            let skip = (python_missing && std::env::var_os("CI").is_none())
                || !common::runs_here(model.name);
            trials.push(trial.with_ignored_flag(skip));
        }
    }
    if python_missing {
        eprintln!("SKIPPED seed client tests: python3 not found (install python3 to run them)");
    }
    let conclusion = libtest_mimic::run(&args, trials);
    let _ = std::fs::remove_dir_all(&workdir);
    conclusion.exit();
}

fn run_script(
    model: &str,
    workdir: &std::path::Path,
    seed: &str,
    script: &str,
    argv: &[&str],
    expected: &str,
    monitor: bool,
) -> Result<(), Failed> {
    let program = seeds::find(&seeds::default_dir(), seed, script)?;
    let folder = workdir.join(format!("{model}-{seed}"));
    std::fs::create_dir_all(&folder)?;
    let (script_path, shim_path) = (folder.join(script), folder.join(format!("shim-{script}")));
    std::fs::write(&script_path, &program.code)?;
    std::fs::write(&shim_path, SHIM)?;

    let server = Server::start(model, &[]);
    let port = server.addr.port().to_string();
    // Seed 000's scripts take the port and n on the command line; seed 004's take none.
    let mut args = vec![
        shim_path.display().to_string(),
        script_path.display().to_string(),
    ];
    if !argv.is_empty() {
        args.push(port.clone());
        args.extend(argv.iter().map(|a| a.to_string()));
    }
    let output = Command::new("python3")
        .args(&args)
        .env("FIBLAB_PORT", &port)
        .env("FIBLAB_EXPECT", expected)
        .env("FIBLAB_SECONDS", if monitor { "2.5" } else { "1.0" })
        .stdin(Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let verdict = stdout
        .lines()
        .find_map(|l| l.strip_prefix("shim: "))
        .ok_or_else(|| format!("{script} ended without a verdict; stderr:\n{stderr}"))?;
    let count = |key: &str| -> u64 {
        verdict
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    if count("bad=") > 0 || count("ok=") == 0 {
        return Err(
            format!("{seed}/{script} against {model}: {verdict}; stderr:\n{stderr}").into(),
        );
    }
    if monitor {
        let rates: Vec<u64> = stdout
            .lines()
            .filter_map(|l| l.strip_suffix(" reqs/sec")?.trim().parse().ok())
            .collect();
        if !rates.iter().any(|&r| r > 0) {
            return Err(
                format!("{seed}/{script} printed no positive reqs/sec line:\n{stdout}").into(),
            );
        }
    }
    Ok(())
}
