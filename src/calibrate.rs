//! The machine's primitive costs, measured: what every figure of the benchmark is made
//! of. A model's throughput is a round trip over the loopback, a wake-up or not, a
//! readiness call, maybe a pipe to a worker process, and fib(n); on a small virtual
//! machine the wake-up alone can be most of it. `fiblab calibrate` prints them, and
//! every bench run measures them first and heads its report with them.
//!
//! Each primitive is timed in [`RUNS`] runs; the figure is the median run and its
//! spread ((max - min) / median), so a noisy machine shows as noisy.
//!
//! | field | what is timed |
//! |---|---|
//! | `rtt_same_cpu` | a 1-byte TCP ping-pong over loopback, both threads pinned to one CPU (no wake-up across CPUs) |
//! | `rtt_two_cpus` | the same, the two threads on two CPUs, both blocking (each reply wakes a sleeping thread on the other CPU) |
//! | `rtt_spinning` | the same on two CPUs, both busy-polling (nobody sleeps: the pure loopback and syscall cost) |
//! | `rtt_unpinned` | the same with neither thread pinned, both blocking: where the kernel puts them decides between the two above, as it does for a bench's one-client cell |
//! | `rtt_client_spinning` | the same on two CPUs, the client busy-polling and the server blocking (only the server is woken: the `pinned-spinning` regime's round trip) |
//! | `loadgen_same_cpu` | fiblab's own load generator (one connection, sleeping in epoll) against a blocking line-echo server, both pinned to one CPU: the round trip the bench's client really pays; minus `rtt_same_cpu`, the load generator's own work per request |
//! | `wake_up` | derived: (`rtt_two_cpus` - `rtt_spinning`) / 2, the cost of waking a blocked thread on another CPU |
//! | `pipe_round_trip` | fib(1) sent to a procpool worker process and its reply read back, over its two pipes |
//! | `thread_start` | spawning a thread and joining it |
//! | `process_start` | starting `fiblab --version` and waiting for it |
//! | `epoll_1`, `epoll_1000` | one `epoll_wait` with no timeout over 1 and 1000 idle descriptors |
//! | `select_1`, `select_1000` | one `select` with no timeout over 1 and 1000 idle descriptors |
//! | `select_idle_1000` | a ping-pong through a blocking `select` loop watching 1000 idle descriptors besides the active one, minus the same loop watching none, both threads on one CPU: what 1000 idle connections add to each request of the `select` model (the kernel registers on every descriptor's wait queue, sleeps, scans them all again and unregisters) |
//! | `read_idle` | one non-blocking `read` on an idle TCP socket (`EAGAIN`), taken in turn over 256 of them: what the `nonblocking` model pays for every idle connection on every round |
//! | `handoff` | a value sent to another thread over a channel and one sent back (the isolates' and `--offload`'s hop), both threads on one CPU |
//! | `fib` | fib(n) on one core, for each n asked |
//! | `fib_interpreted` | fib(n) in the `isolates` model's WebAssembly interpreter (wasmi), for each n asked |
//!
//! All times are microseconds.

use std::hint::black_box;
use std::io::{self, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cpu;
use crate::fib::fib;

/// Runs of each primitive; the median is reported.
pub const RUNS: usize = 5;

/// One primitive: the median of its runs, in microseconds, and their spread.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Measure {
    pub median_us: f64,
    /// (max - min) / median over the runs.
    pub spread: f64,
}

impl Measure {
    /// The median and spread of `runs` (µs each); `None` for no runs.
    pub fn of(mut runs: Vec<f64>) -> Option<Measure> {
        if runs.is_empty() {
            return None;
        }
        runs.sort_by(f64::total_cmp);
        let median = runs[runs.len() / 2];
        let spread = match median > 0.0 {
            true => (runs[runs.len() - 1] - runs[0]) / median,
            false => 0.0,
        };
        Some(Measure {
            median_us: round3(median),
            spread: round3(spread),
        })
    }
}

/// fib(n)'s time on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FibCost {
    pub n: u32,
    #[serde(flatten)]
    pub cost: Measure,
}

/// What the machine is: the facts a reader needs before any figure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineFacts {
    pub cpu: String,
    /// CPUs this process may run on.
    pub cpus: usize,
    /// Hardware threads per core (2 with SMT/hyper-threading), from /proc/cpuinfo.
    pub threads_per_core: usize,
    /// The CPU reports a hypervisor: a virtual machine, whose vCPUs sleep and wake
    /// through the host.
    pub virtual_machine: bool,
    pub kernel: String,
    /// The descriptor limit (soft) this process runs with.
    pub descriptor_limit: u64,
    /// The CPUs this process may run on, e.g. `0-1`.
    pub allowed_cpus: String,
}

/// Every primitive's cost; see the module docs. `None`: not measurable here (the
/// two-CPU figures on a one-CPU machine).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub schema: u32,
    pub machine: MachineFacts,
    pub rtt_same_cpu: Option<Measure>,
    pub rtt_two_cpus: Option<Measure>,
    pub rtt_spinning: Option<Measure>,
    #[serde(default)]
    pub rtt_unpinned: Option<Measure>,
    #[serde(default)]
    pub rtt_client_spinning: Option<Measure>,
    #[serde(default)]
    pub loadgen_same_cpu: Option<Measure>,
    pub wake_up: Option<Measure>,
    pub pipe_round_trip: Option<Measure>,
    pub thread_start: Option<Measure>,
    pub process_start: Option<Measure>,
    pub epoll_1: Option<Measure>,
    pub epoll_1000: Option<Measure>,
    pub select_1: Option<Measure>,
    pub select_1000: Option<Measure>,
    /// What 1000 idle descriptors add to a blocking select loop's round trip, µs.
    #[serde(default)]
    pub select_idle_1000: Option<Measure>,
    /// One non-blocking read that finds nothing, µs.
    #[serde(default)]
    pub read_idle: Option<Measure>,
    #[serde(default)]
    pub handoff: Option<Measure>,
    pub fib: Vec<FibCost>,
    #[serde(default)]
    pub fib_interpreted: Vec<FibCost>,
    /// Every run of the round trips, µs, kept so that measuring them again later in a
    /// run ([`Calibration::measure_round_trips_again`]) takes the median over all.
    #[serde(default)]
    pub round_trips: RoundTripRuns,
}

/// The round trips' runs, µs each; see [`Calibration::round_trips`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundTripRuns {
    /// How many times the round trips were measured (5 runs each time).
    pub rounds: u32,
    pub same_cpu: Vec<f64>,
    pub two_cpus: Vec<f64>,
    pub spinning: Vec<f64>,
    pub client_spinning: Vec<f64>,
    #[serde(default)]
    pub unpinned: Vec<f64>,
    pub loadgen: Vec<f64>,
}

impl RoundTripRuns {
    /// [`RUNS`] more runs of each round trip on the first two of `allowed`.
    fn measure(&mut self, allowed: &[usize]) {
        let first = allowed.first().copied();
        let second = allowed.get(1).copied();
        // Kept to the nanosecond, so that they read back from JSON bit for bit.
        let rtt = |a, b, spin: Spin| repeat(|| round_trip(a, b, spin).ok().map(round3));
        if let Some(c) = first {
            self.same_cpu.extend(rtt(Some(c), Some(c), Spin::Neither));
            self.loadgen
                .extend(repeat(|| loadgen_round_trip(c).ok().map(round3)));
        }
        if let (Some(a), Some(b)) = (first, second) {
            self.two_cpus.extend(rtt(Some(b), Some(a), Spin::Neither));
            self.spinning.extend(rtt(Some(b), Some(a), Spin::Both));
            self.client_spinning
                .extend(rtt(Some(b), Some(a), Spin::Client));
        }
        self.unpinned.extend(rtt(None, None, Spin::Neither));
        self.rounds += 1;
    }
}

/// The version of [`Calibration`]'s JSON.
pub const SCHEMA: u32 = 2;

impl Calibration {
    /// Measures every primitive, and fib(n) for each of `fib_ns`. `exe` is the fiblab
    /// binary (for the process start and procpool's worker). Takes a few seconds.
    ///
    /// A primitive that fails to run (no second CPU, no descriptors) is `None`.
    pub fn measure(exe: &Path, fib_ns: &[u32]) -> Calibration {
        let allowed = allowed_cpus();
        let first = allowed.first().copied();
        let mut runs = RoundTripRuns::default();
        runs.measure(&allowed);
        let mut ns: Vec<u32> = fib_ns.to_vec();
        ns.sort_unstable();
        ns.dedup();
        Calibration {
            schema: SCHEMA,
            machine: MachineFacts::detect(&allowed),
            rtt_same_cpu: None,
            rtt_two_cpus: None,
            rtt_spinning: None,
            rtt_unpinned: None,
            rtt_client_spinning: None,
            loadgen_same_cpu: None,
            wake_up: None,
            pipe_round_trip: Measure::of(repeat(|| pipe_round_trip().ok())),
            thread_start: Measure::of(repeat(|| Some(per_call(200, thread_start)))),
            process_start: Measure::of(repeat(|| process_start(exe).ok())),
            epoll_1: Measure::of(repeat(|| epoll_wait(1).ok())),
            epoll_1000: Measure::of(repeat(|| epoll_wait(1000).ok())),
            select_1: Measure::of(repeat(|| select_call(1).ok())),
            select_1000: Measure::of(repeat(|| select_call(1000).ok())),
            select_idle_1000: Measure::of(repeat(|| select_idle(1000, first).ok())),
            read_idle: Measure::of(repeat(|| read_idle().ok())),
            handoff: Measure::of(repeat(|| handoff(first).ok())),
            fib: ns
                .iter()
                .copied()
                .filter_map(|n| {
                    Measure::of(repeat(|| Some(fib_time(n)))).map(|cost| FibCost { n, cost })
                })
                .collect(),
            fib_interpreted: ns
                .into_iter()
                .filter_map(|n| {
                    Measure::of(repeat(|| fib_interpreted_time(n).ok()))
                        .map(|cost| FibCost { n, cost })
                })
                .collect(),
            round_trips: runs,
        }
        .with_round_trips()
    }

    /// Measures the round trips again (5 more runs of each) and takes the median over
    /// all runs so far: on a VM their cost drifts with the host's load, so a bench run
    /// measures them at its start, between regimes and at its end, and predicts from all
    /// of them; their spread then shows the drift.
    pub fn measure_round_trips_again(&mut self) {
        let allowed = allowed_cpus();
        self.round_trips.measure(&allowed);
        *self = std::mem::take(self).with_round_trips();
    }

    /// The round trips' measures (and the wake-up derived from them) from their runs.
    fn with_round_trips(mut self) -> Calibration {
        let r = &self.round_trips;
        self.rtt_same_cpu = Measure::of(r.same_cpu.clone());
        self.rtt_two_cpus = Measure::of(r.two_cpus.clone());
        self.rtt_spinning = Measure::of(r.spinning.clone());
        self.rtt_client_spinning = Measure::of(r.client_spinning.clone());
        self.rtt_unpinned = Measure::of(r.unpinned.clone());
        self.loadgen_same_cpu = Measure::of(r.loadgen.clone());
        self.wake_up = match (self.rtt_two_cpus, self.rtt_spinning) {
            (Some(blocking), Some(spinning)) => Some(Measure {
                median_us: round3(((blocking.median_us - spinning.median_us) / 2.0).max(0.0)),
                spread: blocking.spread,
            }),
            _ => None,
        };
        self
    }

    /// fib(n)'s measured cost, if `n` was calibrated.
    pub fn fib_us(&self, n: u32) -> Option<f64> {
        self.fib.iter().find(|f| f.n == n).map(|f| f.cost.median_us)
    }

    /// fib(n)'s measured cost in the isolates' interpreter, if `n` was calibrated.
    pub fn fib_interpreted_us(&self, n: u32) -> Option<f64> {
        self.fib_interpreted
            .iter()
            .find(|f| f.n == n)
            .map(|f| f.cost.median_us)
    }

    /// Every primitive as (what, measure, how it was measured), in table order.
    pub fn rows(&self) -> Vec<(String, Option<Measure>)> {
        let mut rows = vec![
            (
                "loopback round trip, one CPU".to_string(),
                self.rtt_same_cpu,
            ),
            (
                "loopback round trip, two CPUs, blocking".into(),
                self.rtt_two_cpus,
            ),
            (
                "loopback round trip, two CPUs, spinning".into(),
                self.rtt_spinning,
            ),
            (
                "loopback round trip, unpinned, blocking".into(),
                self.rtt_unpinned,
            ),
            (
                "loopback round trip, two CPUs, client spinning".into(),
                self.rtt_client_spinning,
            ),
            (
                "fiblab's load generator round trip, one CPU".into(),
                self.loadgen_same_cpu,
            ),
            (
                "wake-up of a thread on another CPU (derived)".into(),
                self.wake_up,
            ),
            (
                "pipe round trip to a worker process".into(),
                self.pipe_round_trip,
            ),
            ("thread start (spawn + join)".into(), self.thread_start),
            (
                "process start (fiblab --version)".into(),
                self.process_start,
            ),
            ("epoll_wait, 1 descriptor".into(), self.epoll_1),
            ("epoll_wait, 1000 descriptors".into(), self.epoll_1000),
            ("select, 1 descriptor".into(), self.select_1),
            ("select, 1000 descriptors".into(), self.select_1000),
            (
                "select loop, added by 1000 idle descriptors".into(),
                self.select_idle_1000,
            ),
            ("non-blocking read of an idle socket".into(), self.read_idle),
            (
                "hand-off to a thread on the same CPU and back".into(),
                self.handoff,
            ),
        ];
        rows.extend(
            self.fib
                .iter()
                .map(|f| (format!("fib({})", f.n), Some(f.cost))),
        );
        rows.extend(
            self.fib_interpreted
                .iter()
                .map(|f| (format!("fib({}), interpreted (wasmi)", f.n), Some(f.cost))),
        );
        rows
    }

    /// The calibration as a text table, machine facts first.
    pub fn render_text(&self) -> String {
        let m = &self.machine;
        let mut out = format!(
            "fiblab calibrate: {}, {} CPUs ({} per core), {}, Linux {}, descriptor limit {}, may run on CPUs {}\n\n",
            m.cpu,
            m.cpus,
            m.threads_per_core,
            if m.virtual_machine {
                "a virtual machine"
            } else {
                "no hypervisor reported"
            },
            m.kernel,
            m.descriptor_limit,
            m.allowed_cpus
        );
        out.push_str(&format!(
            "{:<46} {:>12} {:>8}\n",
            "primitive", "median µs", "spread"
        ));
        for (what, measure) in self.rows() {
            match measure {
                Some(m) => out.push_str(&format!(
                    "{what:<46} {:>12} {:>7.0}%\n",
                    format_us(m.median_us),
                    m.spread * 100.0
                )),
                None => out.push_str(&format!("{what:<46} {:>12}\n", "n/a")),
            }
        }
        out
    }

    /// One sentence for a report's head: what this machine is like.
    pub fn summary(&self) -> String {
        let us = |m: Option<Measure>| m.map_or("n/a".to_string(), |m| format_us(m.median_us));
        format!(
            "Calibration: a loopback round trip takes {} µs on one CPU, {} µs across two CPUs when both sides block and {} µs when both spin, so waking a thread on another CPU costs about {} µs; {} µs unpinned (the kernel's placement), {} µs with only the client spinning; fiblab's load generator adds {} µs per request; a pipe round trip to a worker process {} µs; epoll_wait over 1000 idle descriptors {} µs, select {} µs; {}.",
            us(self.rtt_same_cpu),
            us(self.rtt_two_cpus),
            us(self.rtt_spinning),
            us(self.wake_up),
            us(self.rtt_unpinned),
            us(self.rtt_client_spinning),
            self.loadgen_overhead_us()
                .map_or("n/a".to_string(), format_us),
            us(self.pipe_round_trip),
            us(self.epoll_1000),
            us(self.select_1000),
            self.fib
                .iter()
                .map(|f| format!("fib({}) {} µs", f.n, format_us(f.cost.median_us)))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl MachineFacts {
    fn detect(allowed: &[usize]) -> MachineFacts {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo.lines().find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_string())
            })
        };
        let siblings: usize = field("siblings").and_then(|v| v.parse().ok()).unwrap_or(1);
        let cores: usize = field("cpu cores").and_then(|v| v.parse().ok()).unwrap_or(1);
        let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(0, |(soft, _)| soft);
        MachineFacts {
            cpu: field("model name").unwrap_or_else(|| "unknown CPU".into()),
            cpus: allowed.len().max(1),
            threads_per_core: (siblings / cores.max(1)).max(1),
            virtual_machine: field("flags")
                .is_some_and(|f| f.split(' ').any(|x| x == "hypervisor")),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            descriptor_limit: limit,
            allowed_cpus: describe_cpus(allowed),
        }
    }
}

/// `0-3,6`: a CPU list as Linux prints one.
pub fn describe_cpus(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        while i + 1 < cpus.len() && cpus[i + 1] == cpus[i] + 1 {
            i += 1;
        }
        parts.push(match cpus[i] == start {
            true => start.to_string(),
            false => format!("{start}-{}", cpus[i]),
        });
        i += 1;
    }
    parts.join(",")
}

pub use crate::cpu::allowed_cpus;

/// `µs` with a sensible number of digits: 0.012, 1.5, 95, 1,200.
fn format_us(us: f64) -> String {
    match us {
        u if u < 1.0 => format!("{u:.3}"),
        u if u < 10.0 => format!("{u:.1}"),
        u => crate::units::thousands(u),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// [`RUNS`] runs of `one`, each µs; failed runs are left out.
fn repeat(mut one: impl FnMut() -> Option<f64>) -> Vec<f64> {
    (0..RUNS).filter_map(|_| one()).collect()
}

/// The mean time of `calls` calls of `f`, µs.
fn per_call(calls: u32, mut f: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..calls {
        f();
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(calls)
}

/// Round trips per run of the ping-pong: enough to average out, short enough that
/// the whole calibration takes seconds even where a round trip costs 100 µs.
const ROUND_TRIPS: u32 = 1000;

/// Which side of a ping-pong busy-polls instead of sleeping in `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spin {
    Neither,
    Client,
    Both,
}

/// The mean 1-byte TCP round trip over loopback, µs, between a client thread on
/// `client_cpu` and a server thread on `server_cpu`; `spin` says who busy-polls.
fn round_trip(server_cpu: Option<usize>, client_cpu: Option<usize>, spin: Spin) -> io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> io::Result<()> {
        if let Some(cpu) = server_cpu {
            cpu::pin_current_thread(cpu)?;
        }
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(spin == Spin::Both)?;
        let mut byte = [0u8; 1];
        loop {
            match stream.read(&mut byte) {
                Ok(0) => return Ok(()),
                Ok(_) => stream.write_all(&byte)?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::hint::spin_loop(),
                Err(e) => return Err(e),
            }
        }
    });
    let client = std::thread::spawn(move || -> io::Result<f64> {
        if let Some(cpu) = client_cpu {
            cpu::pin_current_thread(cpu)?;
        }
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(spin != Spin::Neither)?;
        let mut byte = [0u8; 1];
        let mut one = |stream: &mut TcpStream| -> io::Result<()> {
            stream.write_all(b"x")?;
            loop {
                match stream.read(&mut byte) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(_) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::hint::spin_loop(),
                    Err(e) => return Err(e),
                }
            }
        };
        for _ in 0..50 {
            one(&mut stream)?; // warm up: connection, caches, CPU frequency
        }
        let started = Instant::now();
        for _ in 0..ROUND_TRIPS {
            one(&mut stream)?;
        }
        Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUND_TRIPS))
    });
    let result = client
        .join()
        .map_err(|_| io::Error::other("the ping-pong client panicked"))?;
    let _ = server.join();
    result
}

/// The load generator's own work per request, µs: its round trip on one CPU less the
/// bare one (`None` when either is missing).
impl Calibration {
    pub fn loadgen_overhead_us(&self) -> Option<f64> {
        Some((self.loadgen_same_cpu?.median_us - self.rtt_same_cpu?.median_us).max(0.0))
    }
}

/// The mean round trip, µs, of fiblab's load generator (one connection, one thread,
/// sleeping in epoll between replies) against a blocking server that answers every
/// line with `1`, both pinned to `cpu`.
fn loadgen_round_trip(cpu: usize) -> io::Result<f64> {
    use crate::load::mix::{Class, Mix, Protocol};
    use crate::load::{Hooks, LoadSpec, Stop};
    use std::io::BufRead as _;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> io::Result<()> {
        cpu::pin_current_thread(cpu)?;
        let (stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut writer = stream.try_clone()?;
        let mut reader = io::BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            writer.write_all(b"1\n")?;
        }
    });
    let spec = LoadSpec {
        addr,
        mix: Mix::new(vec![Class::fib(1, 1, true)]).map_err(io::Error::other)?,
        connections: 1,
        pipeline: 1,
        rate: None,
        stop: Stop::After(Duration::from_millis(150)),
        warmup: Duration::from_millis(30),
        timeout: Duration::from_secs(5),
        threads: 1,
        spin: false,
        cpus: Some(vec![cpu]),
        seed: 1,
        agent: None,
        protocol: Protocol::Fiblab,
    };
    let report = crate::load::run(
        &spec,
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        Hooks::default(),
    );
    let _ = server.join();
    let report = report?;
    match report.throughput_rps > 0.0 && report.errors.total() == 0 {
        true => Ok(1e6 / report.throughput_rps),
        false => Err(io::Error::other("the load generator got no clean replies")),
    }
}

/// The mean round trip of fib(1) to a procpool worker process over its pipes, µs.
fn pipe_round_trip() -> io::Result<f64> {
    let mut worker = crate::models::procpool::Worker::start()?;
    for _ in 0..20 {
        worker.fib(1)?;
    }
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        worker.fib(1)?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUND_TRIPS))
}

fn thread_start() {
    let _ = std::thread::spawn(|| black_box(1)).join();
}

/// One start of `exe --version` until it exits, µs.
fn process_start(exe: &Path) -> io::Result<f64> {
    let started = Instant::now();
    let status = std::process::Command::new(exe)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        return Err(io::Error::other("--version failed"));
    }
    Ok(started.elapsed().as_secs_f64() * 1e6)
}

/// `count` idle descriptors to wait on: both ends of socket pairs nobody writes to,
/// all below select's FD_SETSIZE so both calls watch the same set.
fn idle_descriptors(count: usize) -> io::Result<Vec<std::os::unix::net::UnixStream>> {
    let mut fds = Vec::with_capacity(count + 1);
    while fds.len() < count {
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        if b.as_raw_fd() as usize >= nix::sys::select::FD_SETSIZE {
            return Err(io::Error::other("descriptors past FD_SETSIZE"));
        }
        fds.push(a);
        fds.push(b);
    }
    fds.truncate(count);
    Ok(fds)
}

/// One `epoll_wait` with no timeout over `count` idle descriptors, µs.
fn epoll_wait(count: usize) -> io::Result<f64> {
    use mio::unix::SourceFd;
    let fds = idle_descriptors(count)?;
    let mut poll = mio::Poll::new()?;
    for (i, read) in fds.iter().enumerate() {
        poll.registry().register(
            &mut SourceFd(&read.as_raw_fd()),
            mio::Token(i),
            mio::Interest::READABLE,
        )?;
    }
    let mut events = mio::Events::with_capacity(16);
    Ok(per_call(2000, || {
        let _ = poll.poll(&mut events, Some(Duration::ZERO));
    }))
}

/// One `select` with no timeout over `count` idle descriptors, µs.
fn select_call(count: usize) -> io::Result<f64> {
    use nix::sys::select::{FdSet, select};
    use nix::sys::time::TimeVal;
    let fds = idle_descriptors(count)?;
    let nfds = fds.iter().map(|f| f.as_raw_fd()).max().unwrap_or(0) + 1;
    // The set is built anew each call, as a select loop must (select overwrites it).
    Ok(per_call(2000, || {
        let mut set = FdSet::new();
        for read in &fds {
            set.insert(read.as_fd());
        }
        let mut zero = TimeVal::new(0, 0);
        let _ = select(nfds, &mut set, None, None, &mut zero);
    }))
}

/// One non-blocking `read` on an idle TCP socket, which finds nothing (`EAGAIN`), µs:
/// taken in turn over up to 4096 idle connections, as the `nonblocking` loop takes
/// them, so that no one socket's state stays in the caches.
fn read_idle() -> io::Result<f64> {
    crate::server::raise_descriptor_limit();
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft as usize);
    let sockets = (limit.saturating_sub(256) / 2).clamp(1, 4096);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut clients = Vec::with_capacity(sockets);
    let mut servers = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        let client = TcpStream::connect(listener.local_addr()?)?;
        client.set_nonblocking(true)?;
        clients.push(client);
        servers.push(listener.accept()?.0);
    }
    let mut byte = [0u8; 64];
    // The median sweep: a sweep the VM preempted says nothing about a read.
    let mut sweeps: Vec<f64> = (0..21)
        .map(|_| {
            per_call(1, || {
                for client in &mut clients {
                    let _ = black_box(client.read(&mut byte));
                }
            })
        })
        .collect();
    sweeps.sort_by(f64::total_cmp);
    Ok(sweeps[sweeps.len() / 2] / sockets as f64)
}

/// What `idle` idle descriptors add to a round trip through a blocking `select` loop,
/// µs: the loop selects over one active socket and the idle ones, reads a byte and
/// answers it; timed with `idle` descriptors and with none, both threads on `cpu`.
fn select_idle(idle: usize, cpu: Option<usize>) -> io::Result<f64> {
    // On a thread of its own, so the pinning ends with it.
    std::thread::spawn(move || {
        let with = select_loop_round_trip(idle, cpu)?;
        let without = select_loop_round_trip(0, cpu)?;
        Ok((with - without).max(0.0))
    })
    .join()
    .map_err(|_| io::Error::other("the select timing panicked"))?
}

fn select_loop_round_trip(idle: usize, cpu: Option<usize>) -> io::Result<f64> {
    use nix::sys::select::{FdSet, select};
    use std::os::unix::net::UnixStream;
    let fds = idle_descriptors(idle)?;
    let (mut client, server) = UnixStream::pair()?;
    if server.as_raw_fd() as usize >= nix::sys::select::FD_SETSIZE {
        return Err(io::Error::other("descriptors past FD_SETSIZE"));
    }
    std::thread::scope(|scope| {
        let looper = scope.spawn(|| -> io::Result<()> {
            if let Some(cpu) = cpu {
                cpu::pin_current_thread(cpu)?;
            }
            let mut server = &server;
            let nfds = fds
                .iter()
                .map(|f| f.as_raw_fd())
                .chain(std::iter::once(server.as_raw_fd()))
                .max()
                .unwrap_or(0)
                + 1;
            let mut byte = [0u8; 1];
            loop {
                let mut set = FdSet::new();
                for fd in &fds {
                    set.insert(fd.as_fd());
                }
                set.insert(server.as_fd());
                select(nfds, &mut set, None, None, None).map_err(io::Error::from)?;
                server.read_exact(&mut byte)?;
                if byte[0] == 0 {
                    return Ok(());
                }
                server.write_all(&byte)?;
            }
        });
        if let Some(cpu) = cpu {
            cpu::pin_current_thread(cpu)?;
        }
        let mut byte = [1u8; 1];
        let took = per_call(2000, || {
            let _ = client.write_all(&[1]);
            let _ = client.read_exact(&mut byte);
        });
        client.write_all(&[0])?;
        looper
            .join()
            .map_err(|_| io::Error::other("the select loop panicked"))??;
        Ok(took)
    })
}

/// The mean round trip of a value to another thread over a channel and back, µs, both
/// threads on `cpu`: the hop a connection thread makes to a helper thread the kernel
/// wakes beside it.
fn handoff(cpu: Option<usize>) -> io::Result<f64> {
    // On a thread of its own, so the pinning ends with it.
    std::thread::spawn(move || handoff_on(cpu))
        .join()
        .map_err(|_| io::Error::other("the hand-off caller panicked"))?
}

fn handoff_on(cpu: Option<usize>) -> io::Result<f64> {
    if let Some(cpu) = cpu {
        cpu::pin_current_thread(cpu)?;
    }
    let (to_worker, requests) = std::sync::mpsc::channel::<u32>();
    let (to_caller, replies) = std::sync::mpsc::channel::<u32>();
    let worker = std::thread::spawn(move || {
        if let Some(cpu) = cpu {
            let _ = cpu::pin_current_thread(cpu);
        }
        for n in requests {
            if to_caller.send(n).is_err() {
                return;
            }
        }
    });
    let one = || -> io::Result<()> {
        to_worker
            .send(1)
            .map_err(|_| io::Error::other("the hand-off thread stopped"))?;
        replies
            .recv()
            .map(drop)
            .map_err(|_| io::Error::other("the hand-off thread stopped"))
    };
    for _ in 0..50 {
        one()?;
    }
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        one()?;
    }
    let took = started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUND_TRIPS);
    drop(to_worker);
    let _ = worker.join();
    Ok(took)
}

/// fib(n) in the isolates' interpreter, µs, as `isolates` runs it (one instance).
fn fib_interpreted_time(n: u32) -> io::Result<f64> {
    let module = crate::models::isolates::FibModule::assemble()?;
    let mut isolate = module.instantiate(Box::new(|| false))?;
    let mut failed = None;
    let took = batch_time(|| {
        if let Err(e) = isolate.fib(n) {
            failed = Some(e);
        }
    });
    match failed {
        Some(e) => Err(io::Error::other(format!(
            "fib in the interpreter failed: {e}"
        ))),
        None => Ok(took),
    }
}

/// fib(n) on this thread, µs: repeated until the batch takes a few milliseconds.
pub fn fib_time(n: u32) -> f64 {
    batch_time(|| {
        black_box(fib(black_box(n)));
    })
}

/// One call of `f`, µs: calls repeated until the batch takes a few milliseconds.
fn batch_time(mut f: impl FnMut()) -> f64 {
    let mut calls = 1u32;
    loop {
        let started = Instant::now();
        for _ in 0..calls {
            f();
        }
        let took = started.elapsed();
        if took >= Duration::from_millis(5) || calls >= 1 << 24 {
            return took.as_secs_f64() * 1e6 / f64::from(calls);
        }
        calls = calls.saturating_mul(8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measure_is_the_median_and_its_spread() {
        let m = Measure::of(vec![12.0, 10.0, 11.0, 30.0, 10.5]).unwrap();
        assert_eq!(m.median_us, 11.0);
        assert_eq!(m.spread, round3(20.0 / 11.0));
        assert_eq!(Measure::of(Vec::new()), None);
    }

    #[test]
    fn cpu_lists_print_as_linux_does() {
        assert_eq!(describe_cpus(&[0, 1, 2, 3, 6]), "0-3,6");
        assert_eq!(describe_cpus(&[1]), "1");
        assert_eq!(describe_cpus(&[]), "");
    }

    #[test]
    fn primitives_measure_something() {
        assert!(round_trip(None, None, Spin::Neither).unwrap() > 0.0);
        assert!(round_trip(None, None, Spin::Client).unwrap() > 0.0);
        assert!(epoll_wait(1).unwrap() > 0.0);
        assert!(select_call(10).unwrap() > 0.0);
        let fast = fib_time(10);
        let slow = fib_time(20);
        assert!(slow > fast * 10.0, "fib(20) {slow} µs, fib(10) {fast} µs");
        assert_eq!(format_us(0.0123), "0.012");
        assert_eq!(format_us(95.4), "95");
        assert_eq!(format_us(1234.0), "1,234");
    }
}
