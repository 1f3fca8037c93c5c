//! No model leaks a descriptor, a thread or a child process: each one serves in this
//! process, with clients served, one left connected, and (where it can) `--offload`
//! on; after shutdown the process has exactly the descriptors, threads and children
//! it had before.
//!
//! One test that runs the models one after another, alone in its test binary, so
//! nothing else opens descriptors or threads while it counts.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

mod common;

use fiblab::models::MODELS;
use fiblab::server::{Config, bind_with};
use fiblab::shutdown::Shutdown;

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn descriptors() -> usize {
    count("/proc/self/fd")
}

fn threads() -> usize {
    count("/proc/self/task")
}

/// Processes (not zombies) whose parent is this test process.
fn child_processes() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            let Some((_, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next();
            fields.next() == Some(me.as_str()) && state != Some("Z")
        })
        .count()
}

/// Waits up to 2 s for the counts to come back: an exiting thread may still be
/// listed for a moment after it has done its last work.
fn settles_to(before: (usize, usize, usize)) -> (usize, usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let now = (descriptors(), threads(), child_processes());
        if now == before || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ask(stream: &mut BufReader<TcpStream>, request: &str) -> String {
    stream.get_mut().write_all(request.as_bytes()).unwrap();
    let mut line = String::new();
    stream.read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

#[test]
fn no_descriptor_thread_or_process_outlives_a_model() {
    // Process models start the fiblab binary, not this test binary, as their children.
    fiblab::process::use_fiblab_exe(env!("CARGO_BIN_EXE_fiblab").into());
    // Children are forked by one spawner thread that lives as long as the process (the
    // kernel ties a child's death signal to the forking thread): it is started here,
    // before the counting, as the first process model would start it.
    fiblab::process::spawn_tied(std::process::Command::new("true"))
        .unwrap()
        .wait()
        .unwrap();
    let variants = MODELS
        .iter()
        .flat_map(|m| [(m, false), (m, true)])
        .filter(|(m, offload)| !offload || m.offload)
        .filter(|(m, _)| common::runs_here(m.name));
    for (model, offload) in variants {
        let before = (descriptors(), threads(), child_processes());
        eprintln!(
            "leak check: {}{}",
            model.name,
            if offload { " --offload" } else { "" }
        );
        let listener = bind_with("127.0.0.1:0".parse().unwrap(), model.reuse_port).unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new().unwrap();
        let config = Config {
            workers: 2,
            offload,
            grace: Duration::from_secs(2),
            ..Config::default()
        };
        let serving = {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || (model.serve)(listener, &config, shutdown))
        };
        for n in ["10\n", "20\n"] {
            let mut client = BufReader::new(TcpStream::connect(addr).unwrap());
            assert!(!ask(&mut client, n).is_empty());
        }
        // A client still connected (and idle) when shutdown comes.
        let mut idle = BufReader::new(TcpStream::connect(addr).unwrap());
        assert_eq!(ask(&mut idle, "1\n"), "1", "{}", model.name);

        shutdown.trigger();
        serving.join().unwrap().unwrap();
        drop(idle);
        drop(shutdown);
        let after = settles_to(before);
        assert_eq!(
            after,
            before,
            "{}{}: (descriptors, threads, child processes) before {before:?}, after {after:?}",
            model.name,
            if offload { " --offload" } else { "" },
        );
    }
}
