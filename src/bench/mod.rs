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

pub mod findings;
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

/// Seed 004's experiment on one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StarvationResult {
    pub variant: String,
    /// fib(n) of the heavy request.
    pub heavy_n: u32,
    /// Seconds the heavy request took, if it was answered within the run.
    pub heavy_s: Option<f64>,
    /// Light replies per second before the heavy request was sent.
    pub light_before_rps: f64,
    /// Light replies per second while the heavy request was in the server (until the
    /// end of the run if it never came back).
    pub light_during_rps: f64,
    /// `light_during_rps / light_before_rps`: 1 means untouched, 0 means collapsed.
    pub kept: f64,
    /// Light replies per 100 ms over the whole run, for timelines.
    pub timeline: Vec<u64>,
    /// When the heavy request was sent, in seconds from the start of the run.
    pub heavy_at_s: f64,
}

/// The `n` whose naive fib takes about `seconds` here: fib(n) timed in this process
/// for growing n until one takes an eighth of the target, then scaled by the golden
/// ratio per step of n (the last few steps only, where the scaling is reliable), and
/// kept within what servers allow.
pub fn calibrate_heavy_n(seconds: f64) -> u32 {
    let phi = (1.0 + 5f64.sqrt()) / 2.0;
    let mut n = 25;
    loop {
        let started = Instant::now();
        std::hint::black_box(crate::fib::fib(std::hint::black_box(n)));
        let took = started.elapsed().as_secs_f64().max(1e-9);
        if took >= seconds / 8.0 || n >= crate::service::DEFAULT_MAX_N {
            let steps = (seconds / took).ln() / phi.ln();
            return ((f64::from(n) + steps).round() as u32)
                .clamp(25, crate::service::DEFAULT_MAX_N);
        }
        n += 1;
    }
}

/// Runs the starvation experiment against one server.
pub fn starvation(
    addr: SocketAddr,
    label: &str,
    experiment: &scenario::Starvation,
    heavy_n: u32,
    interrupt: Arc<AtomicBool>,
) -> io::Result<StarvationResult> {
    use std::io::{BufRead as _, Write as _};
    let light_times = Arc::new(std::sync::Mutex::new(Vec::<Instant>::with_capacity(
        1 << 18,
    )));
    let recorder = light_times.clone();
    let on_reply: crate::load::OnReply = Arc::new(move |_, _, correct| {
        if correct {
            recorder
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Instant::now());
        }
    });
    // The heavy client arrives `at` into the run, as in seed 004 (a second terminal
    // typing one request); for a one-client-at-a-time model it then waits its turn.
    let start = Instant::now();
    let at = experiment.at;
    let length = experiment.length;
    let heavy_thread = std::thread::spawn(move || -> Option<(Instant, Instant)> {
        std::thread::sleep(at);
        let mut heavy = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        heavy
            .set_read_timeout(Some(
                length.saturating_sub(at).max(Duration::from_millis(1)),
            ))
            .ok()?;
        let sent = Instant::now();
        heavy.write_all(format!("{heavy_n}\n").as_bytes()).ok()?;
        let mut line = String::new();
        std::io::BufReader::new(heavy).read_line(&mut line).ok()?;
        (!line.is_empty()).then(|| (sent, Instant::now()))
    });
    let spec = LoadSpec {
        addr,
        mix: Mix::new(vec![Class::fib(experiment.light_n, 1, true)]).map_err(io::Error::other)?,
        connections: 1,
        pipeline: 1,
        rate: None,
        stop: Stop::After(experiment.length),
        warmup: Duration::ZERO,
        timeout: experiment.length,
        threads: 1,
        spin: false,
        cpus: None,
        seed: 1,
    };
    crate::load::run(
        &spec,
        interrupt,
        Hooks {
            on_reply: Some(on_reply),
            ..Hooks::default()
        },
    )?;
    let heavy_span = heavy_thread.join().ok().flatten();
    let times = light_times
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let end = start + experiment.length;
    let count =
        |from: Instant, to: Instant| times.iter().filter(|&&t| t >= from && t < to).count() as f64;
    let sent_at = start + at;
    let (during_from, during_to) = heavy_span.map_or((sent_at, end), |(s, e)| (s, e.min(end)));
    let rate = |n: f64, span: Duration| {
        if span.is_zero() {
            0.0
        } else {
            n / span.as_secs_f64()
        }
    };
    let light_before_rps = rate(count(start, sent_at), at);
    let light_during_rps = rate(
        count(during_from, during_to),
        during_to.saturating_duration_since(during_from),
    );
    let bins = (experiment.length.as_millis() / 100) as usize;
    let mut timeline = vec![0u64; bins];
    for t in &times {
        let bin = (t.saturating_duration_since(start).as_millis() / 100) as usize;
        if let Some(slot) = timeline.get_mut(bin) {
            *slot += 1;
        }
    }
    Ok(StarvationResult {
        variant: label.to_string(),
        heavy_n,
        heavy_s: heavy_span.map(|(s, e)| ((e - s).as_secs_f64() * 1000.0).round() / 1000.0),
        light_before_rps: light_before_rps.round(),
        light_during_rps: light_during_rps.round(),
        kept: if light_before_rps > 0.0 {
            ((light_during_rps / light_before_rps) * 1000.0).round() / 1000.0
        } else {
            0.0
        },
        timeline,
        heavy_at_s: at.as_secs_f64(),
    })
}

/// The floor row: `threads` serving `--service lookup`.
pub const FLOOR: &str = "floor";

/// Runs every cell of `scenario` `repetitions` times, then the starvation experiment
/// once per model; `progress` gets a line per step.
pub fn run(
    scenario: &Scenario,
    exe: &PathBuf,
    interrupt: Arc<AtomicBool>,
    progress: &mut dyn FnMut(&str),
) -> io::Result<(Vec<Sample>, Vec<StarvationResult>)> {
    let samples = run_cells(scenario, exe, interrupt.clone(), progress)?;
    let mut starved = Vec::new();
    if let Some(experiment) = &scenario.starvation {
        let heavy_n = calibrate_heavy_n(experiment.heavy_seconds);
        for (i, variant) in scenario.models.iter().enumerate() {
            if interrupt.load(Ordering::SeqCst) {
                break;
            }
            progress(&format!(
                "[starvation {}/{}] {:<22} fib({}) among fib({})",
                i + 1,
                scenario.models.len(),
                variant.label(),
                heavy_n,
                experiment.light_n
            ));
            let server = ServerProcess::start(exe, variant, "fib")?;
            starved.push(starvation(
                server.addr,
                &variant.label(),
                experiment,
                heavy_n,
                interrupt.clone(),
            )?);
            server.stop();
        }
    }
    Ok((samples, starved))
}

fn run_cells(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_is_monotonic_and_bounded() {
        let short = calibrate_heavy_n(0.001);
        let long = calibrate_heavy_n(0.05);
        assert!(short <= long, "{short} > {long}");
        assert!((25..=crate::service::DEFAULT_MAX_N).contains(&long));
    }
}
