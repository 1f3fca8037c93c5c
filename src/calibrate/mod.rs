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
//! | `downstream_cpu` | the CPU `fiblab backend` spends per line it answers (a thread, unpinned, 1 ms delay, 8 connections of fiblab's load generator for 200 ms): what each waiting request costs the machine on the downstream's side |
//! | `balancer_cpu` | the CPU HAProxy (`mode tcp`, one thread, unpinned) spends per request it forwards to a `fiblab serve --model epoll` answering from a table, driven by fiblab's load generator over 8 connections for 200 ms: what the balancer's hop costs the machine (the scale-out experiment); only where `haproxy` is installed |
//! | `thread_resident_kib` | KiB of resident memory a thread per connection costs: `fiblab serve --model threads` holding 200 idle connections, its VmRSS after less before, over 200, as the C10K experiment measures it (not µs: memory) |
//! | `fib` | fib(n) on one core, for each n asked |
//! | `fib_interpreted` | fib(n) in the `isolates` model's WebAssembly interpreter (wasmi), for each n asked |
//!
//! All times are microseconds.

mod render;
mod timing;
pub mod work;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::cpu::allowed_cpus;
pub use render::describe_cpus;
pub use timing::fib_time;
use timing::{
    Spin, balancer_cpu, downstream_cpu, epoll_wait, fib_interpreted_time, handoff,
    loadgen_round_trip, per_call, pipe_round_trip, process_start, read_idle, repeat, round_trip,
    select_call, select_idle, thread_resident_kib, thread_start,
};

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
    /// The machine's online CPUs, of which `cpus` were allowed (0: not recorded).
    #[serde(default)]
    pub online_cpus: usize,
}

impl MachineFacts {
    /// Its CPUs in words: `2 CPUs`, or where this process was allowed fewer than the
    /// machine has (`taskset`, a cgroup), `1 CPU of its 2 (this run was allowed CPU 0)`.
    pub fn cpus_in_words(&self) -> String {
        let plural = |n: usize| match n {
            1 => "1 CPU".to_string(),
            n => format!("{n} CPUs"),
        };
        match self.online_cpus > self.cpus {
            true => format!(
                "{} of its {} (this run was allowed {} {})",
                plural(self.cpus),
                self.online_cpus,
                match self.cpus {
                    1 => "CPU",
                    _ => "CPUs",
                },
                self.allowed_cpus
            ),
            false => plural(self.cpus),
        }
    }
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
    /// The downstream's CPU per answered request, µs (older calibrations: `None`).
    #[serde(default)]
    pub downstream_cpu: Option<Measure>,
    /// HAProxy's CPU per request it forwards, µs (`None`: no `haproxy` here, or an older
    /// calibration).
    #[serde(default)]
    pub balancer_cpu: Option<Measure>,
    /// Resident memory per thread blocked on a connection, KiB (its `median_us` holds
    /// KiB; older calibrations: `None`).
    #[serde(default)]
    pub thread_resident_kib: Option<Measure>,
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
            downstream_cpu: Measure::of(repeat(|| downstream_cpu().ok().map(round3))),
            balancer_cpu: match crate::balancer::available() {
                Ok(_) => Measure::of(repeat(|| balancer_cpu(exe).ok().map(round3))),
                Err(_) => None,
            },
            thread_resident_kib: Measure::of(repeat(|| thread_resident_kib(exe).ok().map(round3))),
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

    /// The calibration as each measuring of the round trips saw the machine (its
    /// start, between regimes, its end: [`Calibration::measure_round_trips_again`]),
    /// every other primitive as it is; empty with fewer than two rounds, or runs that do
    /// not split evenly into them. A VM's round trips can move by half between two
    /// rounds of one run (2 vCPUs, 2026-12-05: two CPUs 14.8 µs, then 21.4 µs).
    pub fn by_round(&self) -> Vec<Calibration> {
        let r = &self.round_trips;
        let rounds = r.rounds as usize;
        let lists = [
            &r.same_cpu,
            &r.two_cpus,
            &r.spinning,
            &r.client_spinning,
            &r.unpinned,
            &r.loadgen,
        ];
        if rounds < 2 || lists.iter().any(|runs| runs.len() % rounds != 0) {
            return Vec::new();
        }
        (0..rounds)
            .map(|i| {
                let part = |runs: &Vec<f64>| {
                    let k = runs.len() / rounds;
                    runs[i * k..(i + 1) * k].to_vec()
                };
                Calibration {
                    round_trips: RoundTripRuns {
                        rounds: 1,
                        same_cpu: part(&r.same_cpu),
                        two_cpus: part(&r.two_cpus),
                        spinning: part(&r.spinning),
                        client_spinning: part(&r.client_spinning),
                        unpinned: part(&r.unpinned),
                        loadgen: part(&r.loadgen),
                    },
                    ..self.clone()
                }
                .with_round_trips()
            })
            .collect()
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
}

/// The load generator's own work per request, µs: its round trip on one CPU less the
/// bare one (`None` when either is missing).
impl Calibration {
    pub fn loadgen_overhead_us(&self) -> Option<f64> {
        Some((self.loadgen_same_cpu?.median_us - self.rtt_same_cpu?.median_us).max(0.0))
    }
}

impl MachineFacts {
    fn detect(allowed: &[usize]) -> MachineFacts {
        let host = crate::machine::Host::get();
        MachineFacts {
            cpu: host.cpu.clone(),
            cpus: allowed.len().max(1),
            threads_per_core: host.threads_per_core,
            virtual_machine: host.virtual_machine,
            kernel: host.kernel.clone(),
            descriptor_limit: crate::machine::descriptor_limit().map_or(0, |(soft, _)| soft),
            allowed_cpus: describe_cpus(allowed),
            online_cpus: nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
                .ok()
                .flatten()
                .map_or(0, |n| n.max(0) as usize),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_allowed_fewer_cpus_than_the_machine_has_says_both() {
        let facts = |cpus, online, allowed: &str| MachineFacts {
            cpus,
            online_cpus: online,
            allowed_cpus: allowed.into(),
            ..MachineFacts::default()
        };
        assert_eq!(facts(2, 2, "0-1").cpus_in_words(), "2 CPUs");
        assert_eq!(
            facts(1, 2, "0").cpus_in_words(),
            "1 CPU of its 2 (this run was allowed CPU 0)"
        );
        assert_eq!(facts(1, 0, "0").cpus_in_words(), "1 CPU", "not recorded");
    }

    #[test]
    fn a_measure_is_the_median_and_its_spread() {
        let m = Measure::of(vec![12.0, 10.0, 11.0, 30.0, 10.5]).unwrap();
        assert_eq!(m.median_us, 11.0);
        assert_eq!(m.spread, round3(20.0 / 11.0));
        assert_eq!(Measure::of(Vec::new()), None);
    }

    #[test]
    fn each_round_of_the_round_trips_is_a_calibration_of_its_own() {
        let runs = |a: f64, b: f64| [vec![a; RUNS], vec![b; RUNS]].concat();
        let c = Calibration {
            round_trips: RoundTripRuns {
                rounds: 2,
                same_cpu: runs(9.0, 11.0),
                two_cpus: runs(15.0, 21.0),
                spinning: runs(5.0, 10.0),
                client_spinning: runs(10.0, 16.0),
                unpinned: runs(14.0, 22.0),
                loadgen: runs(10.0, 10.0),
            },
            ..Calibration::default()
        }
        .with_round_trips();
        let rounds = c.by_round();
        assert_eq!(rounds.len(), 2);
        let two = |c: &Calibration| c.rtt_two_cpus.unwrap().median_us;
        assert_eq!((two(&rounds[0]), two(&rounds[1])), (15.0, 21.0));
        // The wake-up is derived from each round's own round trips.
        assert_eq!(rounds[0].wake_up.unwrap().median_us, 5.0);
        assert_eq!(rounds[1].wake_up.unwrap().median_us, 5.5);
        let mut once = c.clone();
        once.round_trips.rounds = 1;
        assert!(once.by_round().is_empty());
        let mut uneven = c;
        uneven.round_trips.loadgen.pop();
        assert!(uneven.by_round().is_empty());
    }
}
