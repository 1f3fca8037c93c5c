//! `fiblab bench`: the seeds' tables, measured on this machine, for every model.
//!
//! ```text
//! for each repetition:                       (interleaved, so drift hits every model alike)
//!     for floor + each model in the scenario:
//!         start `fiblab serve --model M --port 0` as its own process, wait for it
//!         for each workload n, each client count c:
//!             closed loop, c connections, --warmup then --duration  (crate::load)
//!         stop it by PID (SIGTERM), never leaving it behind
//! then: median and spread of each cell over the repetitions -> tables, JSON
//! ```
//!
//! The `floor` row is the `threads` model serving `--service lookup` (fib from a table,
//! no work): what this machine's loopback and a plain blocking server allow. Every
//! model's throughput is also shown as a ratio to it.
//!
//! The client runs in this process on its own threads; the server is a separate
//! process, so the two compete for the CPUs exactly as the seeds' perf2.py and server
//! did. Machine facts and pinning head every report.

pub mod report;
pub mod scenario;

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::load::mix::{Class, Mix};
use crate::load::{Hooks, LoadSpec, Stop};
use scenario::{Scenario, Variant};

/// One measured cell of one repetition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub variant: String,
    pub n: u32,
    pub clients: usize,
    pub repetition: usize,
    pub throughput_rps: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// Correct replies per connection: a 0 means a starved client.
    pub per_connection: Vec<u64>,
    pub errors: u64,
}

/// Facts about the machine, for the head of every report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub kernel: String,
    pub pinning: String,
}

impl Machine {
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split(':').nth(1))
            })
            .map_or("unknown CPU".to_string(), |m| m.trim().to_string());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        Machine {
            cpu,
            cpus: crate::server::default_workers(),
            kernel: kernel.trim().to_string(),
            pinning: "none: server and client threads unpinned".into(),
        }
    }
}

/// A `fiblab serve` child process, stopped by PID when dropped.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
}

impl ServerProcess {
    pub fn start(exe: &PathBuf, variant: &Variant, service: &str) -> io::Result<ServerProcess> {
        let mut command = Command::new(exe);
        command.args([
            "serve",
            "--model",
            &variant.model,
            "--port",
            "0",
            "--service",
            service,
        ]);
        if variant.offload {
            command.arg("--offload");
        }
        let mut child = command
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            BufReader::new(stdout).read_line(&mut line)?;
        }
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok());
        match addr {
            Some(addr) => Ok(ServerProcess { child, addr }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(io::Error::other(format!(
                    "fiblab serve --model {} did not start",
                    variant.label()
                )))
            }
        }
    }

    /// SIGTERM, then up to 10 s for a clean exit, then SIGKILL.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        use nix::sys::signal::{Signal, kill};
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
        }
    }
}

/// The floor row: `threads` serving `--service lookup`.
pub const FLOOR: &str = "floor";

/// Runs every cell of `scenario` `repetitions` times; `progress` gets a line per cell.
pub fn run(
    scenario: &Scenario,
    exe: &PathBuf,
    interrupt: Arc<AtomicBool>,
    progress: &mut dyn FnMut(&str),
) -> io::Result<Vec<Sample>> {
    let floor = Variant {
        model: "threads".into(),
        offload: false,
    };
    let rows: Vec<(String, &Variant, &str)> =
        std::iter::once((FLOOR.to_string(), &floor, "lookup"))
            .chain(scenario.models.iter().map(|v| (v.label(), v, "fib")))
            .collect();
    let total = scenario.cells() * scenario.repetitions;
    let started = Instant::now();
    let mut samples = Vec::new();
    for repetition in 0..scenario.repetitions {
        for (label, variant, service) in &rows {
            let server = ServerProcess::start(exe, variant, service)?;
            for &n in &scenario.workloads {
                for &clients in &scenario.clients {
                    if interrupt.load(Ordering::SeqCst) {
                        return Ok(samples);
                    }
                    let done = samples.len();
                    let eta = if done == 0 {
                        scenario.estimate()
                    } else {
                        started
                            .elapsed()
                            .mul_f64((total - done) as f64 / done as f64)
                    };
                    progress(&format!(
                        "[{:>3}/{total}] {label:<22} n={n:<2} clients={clients:<3} repetition {}/{}   eta {:>4.0} s",
                        done + 1,
                        repetition + 1,
                        scenario.repetitions,
                        eta.as_secs_f64()
                    ));
                    let spec = LoadSpec {
                        addr: server.addr,
                        mix: Mix::new(vec![Class::fib(n, 1, true)]).map_err(io::Error::other)?,
                        connections: clients,
                        pipeline: 1,
                        rate: None,
                        stop: Stop::After(scenario.duration),
                        warmup: scenario.warmup,
                        timeout: Duration::from_secs(5),
                        threads: clients.min(crate::server::default_workers().max(1)),
                        spin: false,
                        cpus: None,
                        seed: 1,
                    };
                    let r = crate::load::run(&spec, interrupt.clone(), Hooks::default())?;
                    let latency = r
                        .classes
                        .first()
                        .map(|c| (c.latency_us.p50, c.latency_us.p99))
                        .unwrap_or((0, 0));
                    samples.push(Sample {
                        variant: label.clone(),
                        n,
                        clients,
                        repetition,
                        throughput_rps: r.throughput_rps,
                        p50_us: latency.0,
                        p99_us: latency.1,
                        per_connection: r.per_connection.clone(),
                        errors: r.errors.total(),
                    });
                }
            }
            server.stop();
        }
    }
    Ok(samples)
}
