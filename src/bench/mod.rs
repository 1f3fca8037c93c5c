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
//! `--target NAME=HOST:PORT` adds servers started by someone else (the seeds' Python
//! servers, the Go server: `scripts/seed-peers.sh`; redis with `/ping`) as rows of the
//! same tables, measured in the same interleaved loop; fiblab neither starts nor stops
//! them.
//!
//! The `floor` row is the `threads` model serving `--service lookup` (fib from a table,
//! no work): what this machine's loopback and a plain blocking server allow. Every
//! model's throughput is also shown as a ratio to it.
//!
//! The client runs in this process on its own threads; the server is a separate
//! process, so the two compete for the CPUs exactly as the seeds' perf2.py and server
//! did. Machine facts and pinning head every report.

pub mod findings;
pub mod plots;
pub mod report;
pub mod scenario;

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::load::mix::{Class, Mix};
use crate::load::{Hooks, LoadSpec, Stop};
use scenario::{Pinning, Scenario, Variant};

/// A server someone else started, measured as a row of the same tables:
/// `NAME=HOST:PORT` for a fib server, `NAME=HOST:PORT/ping` for one that answers a
/// `PING` line with one line (redis): measured like the floor, with no fib at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub addr: SocketAddr,
    pub ping: bool,
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Target, String> {
        use std::net::ToSocketAddrs as _;
        let Some((name, rest)) = text.split_once('=') else {
            return Err(format!(
                "'{text}': a target is NAME=HOST:PORT (or NAME=HOST:PORT/ping for redis)"
            ));
        };
        let (address, ping) = match rest.strip_suffix("/ping") {
            Some(address) => (address, true),
            None => (rest, false),
        };
        if name.is_empty() || name == FLOOR || crate::models::find(name).is_some() {
            return Err(format!(
                "'{name}': a target needs a name of its own, not empty and not a model's or `floor`"
            ));
        }
        let addr = address
            .to_socket_addrs()
            .map_err(|e| format!("'{address}': not a HOST:PORT address: {e}"))?
            .next()
            .ok_or_else(|| format!("'{address}' resolves to no address"))?;
        Ok(Target {
            name: name.to_string(),
            addr,
            ping,
        })
    }
}

/// One row of the tables: what serves it, and how it is started.
#[derive(Debug, Clone)]
enum Row {
    /// `threads` answering from a table: the loopback's and a blocking server's cost.
    Floor,
    Model(Variant),
    Target(Target),
}

impl Row {
    fn label(&self) -> String {
        match self {
            Row::Floor => FLOOR.to_string(),
            Row::Model(v) => v.label(),
            Row::Target(t) => t.name.clone(),
        }
    }
}

/// Where a running benchmark is, for progress bars.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// Steps finished (cells and starvation runs).
    pub done: usize,
    pub total: usize,
    pub label: &'a str,
}

/// One measured cell of one repetition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The latency HdrHistogram (V2 + DEFLATE, base64), merged across repetitions for
    /// the latency CDF; empty when none was recorded.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub histogram: String,
}

/// Facts about the machine, for the head of every report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub kernel: String,
    pub pinning: String,
}

impl Machine {
    pub fn detect(pinning: Option<&Pinning>) -> Machine {
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
            pinning: Pinning::describe(pinning),
        }
    }
}

/// A `fiblab serve` child process, stopped by PID when dropped.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `fiblab serve`, pinned to `cpus` (none: unpinned), and waits until it
    /// listens.
    pub fn start(
        exe: &PathBuf,
        variant: &Variant,
        service: &str,
        cpus: &[usize],
    ) -> io::Result<ServerProcess> {
        let mut command = Command::new(exe);
        if !cpus.is_empty() {
            pin_before_exec(&mut command, cpus)?;
        }
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then up to 10 s for a clean exit, then SIGKILL.
    pub fn stop(mut self) {
        self.terminate();
    }

    /// Like [`stop`](Self::stop), returning the exit status if the server exited by
    /// itself after SIGTERM (`None`: it had to be killed).
    pub fn stop_status(mut self) -> Option<std::process::ExitStatus> {
        self.terminate()
    }

    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        use nix::sys::signal::{Signal, kill};
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Ok(Some(status)) => return Some(status),
                Err(_) => return None,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.terminate();
        }
    }
}

/// Pins the child to `cpus` between fork and exec, so the server and every thread and
/// process it starts inherit the mask from their first instruction.
fn pin_before_exec(command: &mut Command, cpus: &[usize]) -> io::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let mut set = nix::sched::CpuSet::new();
    for &cpu in cpus {
        set.set(cpu)
            .map_err(|e| io::Error::other(format!("CPU {cpu} cannot be pinned to: {e}")))?;
    }
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: it makes one sched_setaffinity syscall on a
    // CpuSet built before the fork, allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
                .map_err(io::Error::from)
        });
    }
    Ok(())
}

/// Seed 004's experiment on one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// The `n` whose fib takes about `seconds` on a server someone else runs (a peer may
/// be 100x slower than fiblab): fib(n) requests for growing n, timed over the wire, until
/// one takes an eighth of the target, then scaled as [`calibrate_heavy_n`] does.
pub fn calibrate_remote(addr: SocketAddr, seconds: f64) -> io::Result<u32> {
    use std::io::{BufRead as _, Write as _};
    let phi = (1.0 + 5f64.sqrt()) / 2.0;
    let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs_f64(seconds.max(0.1) * 4.0)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    for n in 15..=crate::service::DEFAULT_MAX_N {
        let started = Instant::now();
        writer.write_all(format!("{n}\n").as_bytes())?;
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::other(format!(
                "{addr} closed the connection while timing fib({n})"
            )));
        }
        let took = started.elapsed().as_secs_f64().max(1e-9);
        if took >= seconds / 8.0 {
            let steps = (seconds / took).ln() / phi.ln();
            return Ok(
                ((f64::from(n) + steps).round() as u32).clamp(n, crate::service::DEFAULT_MAX_N)
            );
        }
    }
    Ok(crate::service::DEFAULT_MAX_N)
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

/// Runs every cell of `scenario` (and of each target) `repetitions` times, then the
/// starvation experiment once per model and fib target; `progress` hears of each step.
pub fn run(
    scenario: &Scenario,
    targets: &[Target],
    exe: &PathBuf,
    interrupt: Arc<AtomicBool>,
    progress: &mut dyn FnMut(Step<'_>),
) -> io::Result<Measured> {
    let rows: Vec<Row> = std::iter::once(Row::Floor)
        .chain(scenario.models.iter().cloned().map(Row::Model))
        .chain(targets.iter().cloned().map(Row::Target))
        .collect();
    let cells_per_row = scenario.workloads.len() * scenario.clients.len();
    let starving: Vec<&Row> = match scenario.starvation {
        Some(_) => rows
            .iter()
            .filter(|r| match r {
                Row::Floor => false,
                Row::Model(_) => true,
                Row::Target(t) => !t.ping,
            })
            .collect(),
        None => Vec::new(),
    };
    let total = rows.len() * cells_per_row * scenario.repetitions + starving.len();
    let mut done = 0;
    let mut notes = Vec::new();
    let samples = run_cells(scenario, &rows, exe, &interrupt, &mut notes, &mut |label| {
        progress(Step { done, total, label });
        done += 1;
    })?;
    let mut starved = Vec::new();
    if let Some(experiment) = &scenario.starvation {
        let heavy_n = calibrate_heavy_n(experiment.heavy_seconds);
        let server_cpus = scenario
            .pinning
            .as_ref()
            .map_or(&[][..], |p| p.server.as_slice());
        for (i, row) in starving.iter().enumerate() {
            if interrupt.load(Ordering::SeqCst) {
                break;
            }
            let label = row.label();
            let (server, addr, heavy_n) = match row {
                Row::Model(variant) => {
                    let server = ServerProcess::start(exe, variant, "fib", server_cpus)?;
                    let addr = server.addr;
                    (Some(server), addr, heavy_n)
                }
                Row::Target(t) => match calibrate_remote(t.addr, experiment.heavy_seconds) {
                    Ok(n) => (None, t.addr, n),
                    Err(e) => {
                        notes.push(format!(
                            "`{label}` did not answer when its heavy request was being sized ({e}); it has no starvation row."
                        ));
                        continue;
                    }
                },
                Row::Floor => continue,
            };
            progress(Step {
                done: done + i,
                total,
                label: &format!(
                    "starvation: {label}, fib({heavy_n}) among fib({})",
                    experiment.light_n
                ),
            });
            starved.push(starvation(
                addr,
                &label,
                experiment,
                heavy_n,
                interrupt.clone(),
            )?);
            if let Some(server) = server {
                server.stop();
            }
        }
    }
    Ok(Measured {
        samples,
        starvation: starved,
        notes,
    })
}

/// What [`run`] measured.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub samples: Vec<Sample>,
    pub starvation: Vec<StarvationResult>,
    /// What went wrong on the way and changed what the report can show.
    pub notes: Vec<String>,
}

fn run_cells(
    scenario: &Scenario,
    rows: &[Row],
    exe: &PathBuf,
    interrupt: &Arc<AtomicBool>,
    notes: &mut Vec<String>,
    progress: &mut dyn FnMut(&str),
) -> io::Result<Vec<Sample>> {
    let floor = Variant {
        model: "threads".into(),
        offload: false,
    };
    let (server_cpus, client_cpus) = match &scenario.pinning {
        Some(p) => (p.server.as_slice(), p.client.clone()),
        None => (&[][..], Vec::new()),
    };
    let mut samples = Vec::new();
    for repetition in 0..scenario.repetitions {
        for row in rows {
            let label = row.label();
            let (server, addr, ping) = match row {
                Row::Floor => {
                    let server = ServerProcess::start(exe, &floor, "lookup", server_cpus)?;
                    let addr = server.addr;
                    (Some(server), addr, false)
                }
                Row::Model(variant) => {
                    let server = ServerProcess::start(exe, variant, "fib", server_cpus)?;
                    let addr = server.addr;
                    (Some(server), addr, false)
                }
                Row::Target(t) => (None, t.addr, t.ping),
            };
            for &n in &scenario.workloads {
                for &clients in &scenario.clients {
                    if interrupt.load(Ordering::SeqCst) {
                        return Ok(samples);
                    }
                    progress(&format!(
                        "{label} n={n} clients={clients} repetition {}/{}",
                        repetition + 1,
                        scenario.repetitions,
                    ));
                    let class = match ping {
                        true => Class::text("PING", true),
                        false => Class::fib(n, 1, true),
                    };
                    let spec = LoadSpec {
                        addr,
                        mix: Mix::new(vec![class]).map_err(io::Error::other)?,
                        connections: clients,
                        // Open loop: room for requests to queue when the server falls
                        // behind, so the lateness shows in the latency, not in the schedule.
                        pipeline: if scenario.rate.is_some() { 64 } else { 1 },
                        rate: scenario.rate,
                        stop: Stop::After(scenario.duration),
                        warmup: scenario.warmup,
                        timeout: Duration::from_secs(5),
                        threads: clients.min(crate::server::default_workers().max(1)),
                        spin: false,
                        cpus: (!client_cpus.is_empty()).then(|| client_cpus.clone()),
                        seed: 1,
                    };
                    let r = crate::load::run(&spec, interrupt.clone(), Hooks::default())?;
                    let gone = format!("`{label}` stopped accepting connections");
                    if r.requests_ok == 0
                        && r.errors.connect > 0
                        && !notes.iter().any(|n| n.starts_with(&gone))
                    {
                        notes.push(format!(
                            "{gone} from repetition {}, n={n}, {clients} clients on: its later cells are 0.",
                            repetition + 1
                        ));
                    }
                    let class = r.classes.first();
                    samples.push(Sample {
                        variant: label.clone(),
                        n,
                        clients,
                        repetition,
                        throughput_rps: r.throughput_rps,
                        p50_us: class.map_or(0, |c| c.latency_us.p50),
                        p99_us: class.map_or(0, |c| c.latency_us.p99),
                        per_connection: r.per_connection.clone(),
                        errors: r.errors.total(),
                        histogram: class.map(|c| c.histogram.clone()).unwrap_or_default(),
                    });
                }
            }
            if let Some(server) = server {
                server.stop();
            }
        }
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t: Target = "go=127.0.0.1:50000".parse().unwrap();
        assert_eq!(
            (t.name.as_str(), t.addr.port(), t.ping),
            ("go", 50000, false)
        );
        let r: Target = "redis=127.0.0.1:6379/ping".parse().unwrap();
        assert!(r.ping);
        assert!("threads=127.0.0.1:1".parse::<Target>().is_err());
        assert!("floor=127.0.0.1:1".parse::<Target>().is_err());
        assert!(
            "127.0.0.1:1"
                .parse::<Target>()
                .unwrap_err()
                .contains("NAME=HOST:PORT")
        );
        assert!("x=nowhere".parse::<Target>().is_err());
    }

    #[test]
    fn calibration_is_monotonic_and_bounded() {
        let short = calibrate_heavy_n(0.001);
        let long = calibrate_heavy_n(0.05);
        assert!(short <= long, "{short} > {long}");
        assert!((25..=crate::service::DEFAULT_MAX_N).contains(&long));
    }
}
