//! The one measuring path every experiment takes: start a row's server (a fiblab model,
//! the floor, or a peer someone else started) on the regime's CPUs, build the load from
//! one [`LoadSpec`] builder ([`Run::spec`]), run it through the scenario's load agents
//! ([`Run::load`]), report progress, honour the interrupt, and read what the server
//! spent from `/proc` at the edges of the measured window ([`Run::load_costed`]).
//!
//! ```text
//! experiment ── run.serve(row) ──> Served { addr, pid, server process }
//!            ── run.spec(addr, mix, connections) ──> LoadSpec (regime's CPUs, spin,
//!            │                                        threads, scenario's timings)
//!            ── run.load(spec, hooks) / run.load_costed(spec, pid)
//!            │      agents = 1: load::run        agents = N: N segments, one start,
//!            │                                    reports merged (load::merge)
//!            ── served.stop()
//! ```
//!
//! Nothing else in the bench calls [`crate::load::run`] (`tests/architecture.rs`), so a
//! setting of the load (agents, pinning, spinning) reaches every experiment at once.

pub mod copies;
pub mod downstream;
pub mod heavy;

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::load::mix::{Mix, Protocol};
use crate::load::report::Report;
use crate::load::{Agent, Edge, Hooks, LoadSpec, Segment, Stop};
use crate::process::{ServerProcess, Work};
use crate::server::{Config, Variant};
use crate::service::{Service, ServiceKind};

use super::results::{FLOOR, Target};
use super::scenario::{RegimePlan, Scenario};

/// One row of the tables: what serves it, and how it is started.
#[derive(Debug, Clone)]
pub enum Row {
    /// `threads` answering from a table: the loopback's and a blocking server's cost.
    Floor,
    Model(Variant),
    Target(Target),
}

impl Row {
    pub fn label(&self) -> String {
        match self {
            Row::Floor => FLOOR.to_string(),
            Row::Model(v) => v.label(),
            Row::Target(t) => t.name.clone(),
        }
    }

    /// The floor first, then the scenario's models, then the targets.
    pub fn all(scenario: &Scenario, targets: &[Target]) -> Vec<Row> {
        std::iter::once(Row::Floor)
            .chain(scenario.models.iter().cloned().map(Row::Model))
            .chain(targets.iter().cloned().map(Row::Target))
            .collect()
    }
}

/// Where a running benchmark is, for progress bars.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// Steps finished.
    pub done: usize,
    pub total: usize,
    pub label: &'a str,
}

/// A row being served: its address, the process to read its cost from, and the server
/// fiblab started for it (none for a peer).
pub struct Served {
    pub label: String,
    pub addr: SocketAddr,
    /// The row speaks RESP (`PING`), not fiblab's protocol: a peer such as redis.
    pub ping: bool,
    /// The server's process: fiblab's own child, or a peer's found by its listening
    /// socket ([`crate::process::listener_pid`]); `None` where it cannot be read.
    pub pid: Option<u32>,
    server: Option<ServerProcess>,
}

impl Served {
    /// Stops the server fiblab started for the row (by PID); a peer is left running.
    pub fn stop(self) {
        if let Some(server) = self.server {
            server.stop();
        }
    }

    /// The protocol the row's replies are read in.
    pub fn protocol(&self) -> Protocol {
        match self.ping {
            true => Protocol::Resp,
            false => Protocol::Fiblab,
        }
    }
}

/// What a load measured, with what the server spent over the same window.
#[derive(Debug)]
pub struct Measured {
    pub report: Report,
    /// The server's work between the measured window's edges, and the correct replies
    /// in that window; `None` when the server's process could not be read, or the run
    /// ended before its window closed.
    pub server: Option<(Work, u64)>,
}

/// What a run gives an experiment: the scenario and its rows, servers to start, the
/// interrupt flag, and a progress line to report each step on.
pub struct Run<'a> {
    pub scenario: &'a Scenario,
    pub rows: &'a [Row],
    /// The regime being measured: where server and client run, and how the client waits.
    pub regime: RegimePlan,
    /// Every regime of the run, by name, in order.
    pub regimes: Vec<String>,
    exe: &'a Path,
    interrupt: Arc<AtomicBool>,
    progress: &'a mut dyn FnMut(Step<'_>),
    done: usize,
    total: usize,
}

impl<'a> Run<'a> {
    /// A run of `total` progress steps (every experiment's, every regime's).
    pub fn new(
        scenario: &'a Scenario,
        rows: &'a [Row],
        exe: &'a Path,
        interrupt: Arc<AtomicBool>,
        progress: &'a mut dyn FnMut(Step<'_>),
        total: usize,
    ) -> Run<'a> {
        Run {
            scenario,
            rows,
            regime: RegimePlan {
                name: String::new(),
                server_cpus: Vec::new(),
                client_cpus: Vec::new(),
                spin: false,
            },
            regimes: Vec::new(),
            exe,
            interrupt,
            progress,
            done: 0,
            total,
        }
    }

    /// `more` progress steps beyond those announced (repetitions `--precision` adds).
    pub fn add_steps(&mut self, more: usize) {
        self.total += more;
    }

    /// Ctrl-C (or SIGTERM) asked the run to stop.
    pub fn interrupted(&self) -> bool {
        self.interrupt.load(Ordering::SeqCst)
    }

    /// The flag, for the load generator to stop on too.
    pub fn interrupt(&self) -> Arc<AtomicBool> {
        self.interrupt.clone()
    }

    /// Reports that the step `label` starts.
    pub fn step(&mut self, label: &str) {
        (self.progress)(Step {
            done: self.done,
            total: self.total,
            label,
        });
        self.done += 1;
    }

    /// The CPUs the load generator is pinned to, if any.
    pub fn client_cpus(&self) -> Option<Vec<usize>> {
        Some(self.regime.client_cpus.clone()).filter(|cpus| !cpus.is_empty())
    }

    /// The load generator busy-polls instead of sleeping between replies.
    pub fn spin(&self) -> bool {
        self.regime.spin
    }

    /// Load-generator threads for `connections`: one per pinned CPU when pinned, else
    /// one per connection up to one per CPU.
    pub fn client_threads(&self, connections: usize) -> usize {
        let cpus = match self.regime.client_cpus.len() {
            0 => crate::server::default_workers().max(1),
            pinned => pinned,
        };
        connections.min(cpus).max(1)
    }

    /// The load every experiment starts from: a closed loop of `connections` clients
    /// sending `mix` to `addr`, one request in flight each, for the scenario's duration
    /// after its warm-up, on the regime's client CPUs (spinning where it spins), with
    /// as many threads as [`client_threads`](Self::client_threads) gives. An experiment
    /// changes what it needs with struct update syntax
    /// (`LoadSpec { rate: Some(r), ..run.spec(addr, mix, 64) }`).
    pub fn spec(&self, addr: SocketAddr, mix: Mix, connections: usize) -> LoadSpec {
        LoadSpec {
            addr,
            mix,
            connections,
            pipeline: 1,
            rate: None,
            stop: Stop::After(self.scenario.duration),
            warmup: self.scenario.warmup,
            timeout: Duration::from_secs(5),
            threads: self.client_threads(connections),
            spin: self.spin(),
            tick: Duration::ZERO,
            cpus: self.client_cpus(),
            seed: 1,
            agent: None,
            protocol: Protocol::Fiblab,
        }
    }

    /// Runs `spec`'s load, split across the scenario's `agents` (in-process agents,
    /// one execution segment each, one start) and merged, as `fiblab load --segment`
    /// and `fiblab load merge` do across hosts; as one load where there is one agent
    /// or fewer connections than agents.
    ///
    /// With several agents, the first agent calls `hooks` (its own ticks, window
    /// edges and replies; its counts are its share); `on_reply` is called by every
    /// agent.
    ///
    /// # Errors
    /// A load's error, or reports that do not merge.
    pub fn load(&self, spec: &LoadSpec, hooks: Hooks<'_>) -> io::Result<Report> {
        self.load_split(spec, hooks).map(|(report, _)| report)
    }

    /// [`load`](Self::load), with the first agent's share of the correct replies (1
    /// for one agent).
    fn load_split(&self, spec: &LoadSpec, hooks: Hooks<'_>) -> io::Result<(Report, f64)> {
        let agents = self.scenario.agents;
        if agents <= 1 || spec.connections < agents {
            return crate::load::run(spec, self.interrupt(), hooks).map(|r| (r, 1.0));
        }
        // Far enough ahead for every agent's threads to be up.
        let start_at = std::time::SystemTime::now() + Duration::from_millis(100);
        let interrupt = self.interrupt();
        let agent = |index: usize| LoadSpec {
            agent: Some(Agent {
                segment: Segment {
                    index,
                    count: agents,
                },
                start_at: Some(start_at),
            }),
            threads: spec.threads.div_ceil(agents).max(1),
            ..spec.clone()
        };
        let on_reply = hooks.on_reply.clone();
        let reports = std::thread::scope(|scope| {
            let others: Vec<_> = (1..agents)
                .map(|index| {
                    let spec = agent(index);
                    let interrupt = interrupt.clone();
                    let on_reply = on_reply.clone();
                    scope.spawn(move || {
                        let hooks = Hooks {
                            on_reply,
                            ..Hooks::default()
                        };
                        crate::load::run(&spec, interrupt, hooks)
                    })
                })
                .collect();
            // The first agent runs here, with the caller's hooks (they need not be Send).
            let first = crate::load::run(&agent(0), interrupt.clone(), hooks);
            std::iter::once(first)
                .chain(others.into_iter().map(|other| {
                    other
                        .join()
                        .unwrap_or_else(|_| Err(io::Error::other("a load agent panicked")))
                }))
                .collect::<io::Result<Vec<Report>>>()
        })?;
        let merged = crate::load::merge::merge(&reports).map_err(io::Error::other)?;
        let share = match (reports[0].requests_ok, merged.requests_ok) {
            (_, 0) | (0, _) => 1.0,
            (first, all) => first as f64 / all as f64,
        };
        Ok((merged, share))
    }

    /// [`load`](Self::load), reading the server's work (`pid`'s process tree, thread
    /// by thread, [`crate::process::WorkReading`]) at the edges of the measured window, while every
    /// connection is still open. With several agents the edges are the first agent's
    /// and its replies are scaled to the whole load by its share of the correct replies.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn load_costed(&self, spec: &LoadSpec, pid: Option<u32>) -> io::Result<Measured> {
        let mut edges = crate::process::WindowWork::default();
        let mut on_window = |_: Edge, ok: u64| {
            if let Some(pid) = pid {
                edges.read(pid, ok);
            }
        };
        let (report, share) = self.load_split(
            spec,
            Hooks {
                on_window: Some(&mut on_window),
                ..Hooks::default()
            },
        )?;
        // The agents run one schedule, so the first one's share of any window is its
        // share of the whole run.
        let server = edges
            .between()
            .map(|(work, replies)| (work, (replies as f64 / share).round() as u64));
        Ok(Measured { report, server })
    }

    /// Starts `row`'s server as the regime says (none for a peer; the floor is
    /// `threads` answering from a table) and returns where it serves.
    ///
    /// # Errors
    /// As [`ServerProcess::start`].
    pub fn serve(&self, row: &Row) -> io::Result<Served> {
        self.serve_with(row, |_| {})
    }

    /// As [`serve`](Self::serve), with `adjust` changing a fiblab server's settings
    /// first (`--gil`).
    ///
    /// # Errors
    /// As [`ServerProcess::start`].
    pub fn serve_with(&self, row: &Row, adjust: impl FnOnce(&mut Config)) -> io::Result<Served> {
        let (variant, kind) = match row {
            Row::Floor => (Variant::plain("threads"), ServiceKind::Lookup),
            Row::Model(variant) => (variant.clone(), ServiceKind::Fib),
            Row::Target(t) => {
                return Ok(Served {
                    label: t.name.clone(),
                    addr: t.addr,
                    ping: t.ping,
                    // A peer's cost is read as fiblab's own where its process is found.
                    pid: crate::process::listener_pid(t.addr.port()),
                    server: None,
                });
            }
        };
        let cpus = self.regime.server_cpus.as_slice();
        let mut config = server_config(&variant, kind, cpus);
        adjust(&mut config);
        let server = ServerProcess::start(self.exe, &variant, &config, cpus)?;
        Ok(Served {
            label: row.label(),
            addr: server.addr,
            ping: false,
            pid: Some(server.pid()),
            server: Some(server),
        })
    }
}

/// The settings a bench server of `variant` runs with: the model's own defaults, as
/// `fiblab serve --model M` would take them on the CPUs the regime gives it (`cpus`;
/// none: unpinned, this process's). Pinned, `--workers` follows those CPUs, as the
/// predictions assume.
pub fn server_config(variant: &Variant, kind: ServiceKind, cpus: &[usize]) -> Config {
    let base = Config {
        service: Service {
            kind,
            ..Service::default()
        },
        ..Config::default()
    };
    match crate::models::find(&variant.model) {
        None => base,
        Some(model) if cpus.is_empty() => crate::models::defaults_for(model, base),
        Some(model) => Config {
            workers: model.workers.default_for(cpus.len()),
            ..base
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::mix::Class;
    use std::io::{BufRead as _, Write as _};

    /// A server answering `1` to every line, one thread per connection.
    fn ones() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut out = stream.try_clone().unwrap();
                    for line in std::io::BufReader::new(stream).lines() {
                        if line.is_err() || out.write_all(b"1\n").is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    /// A run of `scenario` with no rows, servers or progress to report.
    fn run_of<'a>(scenario: &'a Scenario, progress: &'a mut dyn FnMut(Step<'_>)) -> Run<'a> {
        let interrupt = Arc::new(AtomicBool::new(false));
        Run::new(scenario, &[], Path::new("fiblab"), interrupt, progress, 0)
    }

    fn scenario(agents: usize) -> Scenario {
        let mut scenario = Scenario::parse(
            "name = 't'\nmodels = ['threads']\nworkloads = [1]\nclients = [1]\nduration = '150ms'\nwarmup = '20ms'\nrepetitions = 1\n",
        )
        .unwrap();
        scenario.agents = agents;
        scenario
    }

    /// Every experiment loads through [`Run::load`] (`tests/architecture.rs` checks
    /// that nothing else in the bench calls the load engine), so the scenario's agents
    /// reach every experiment: a closed and an open loop of four connections run as two
    /// agents and come back as one merged report, with hooks and server costs.
    #[test]
    fn agents_split_every_load_the_measuring_path_runs() {
        let addr = ones();
        let scenario = scenario(2);
        let mut progress = |_: Step<'_>| {};
        let run = run_of(&scenario, &mut progress);
        let mix = Mix::new(vec![Class::fib(1, 1, true)]).unwrap();
        let closed = run
            .load(&run.spec(addr, mix.clone(), 4), Hooks::default())
            .unwrap();
        assert_eq!(closed.merged_from, 2);
        assert_eq!(closed.connections, 4);
        assert!(closed.requests_ok > 0);

        let replies = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = replies.clone();
        let open = LoadSpec {
            rate: Some(2_000.0),
            pipeline: 4,
            ..run.spec(addr, mix, 4)
        };
        let measured = run
            .load_costed(&open, Some(std::process::id()))
            .map(|m| (m.report, m.server))
            .unwrap();
        assert_eq!(measured.0.merged_from, 2);
        let (work, window_replies) = measured.1.expect("both window edges read");
        assert!(work.cpu_ns > 0);
        // The first agent's window, scaled to both: near the whole run's replies.
        assert!(
            window_replies > measured.0.requests_ok / 2
                && window_replies < measured.0.requests_ok * 2,
            "{window_replies} of {}",
            measured.0.requests_ok
        );
        let on_reply: crate::load::OnReply = Arc::new(move |_, _, _, _| {
            counted.fetch_add(1, Ordering::Relaxed);
        });
        let mix = Mix::new(vec![Class::fib(1, 1, true)]).unwrap();
        let with_hook = run
            .load(
                &run.spec(addr, mix, 2),
                Hooks {
                    on_reply: Some(on_reply),
                    ..Hooks::default()
                },
            )
            .unwrap();
        assert_eq!(with_hook.merged_from, 2);
        // Every agent calls on_reply, not only the first (warm-up replies included).
        assert!(replies.load(Ordering::Relaxed) >= with_hook.requests_ok);
    }

    #[test]
    fn one_agent_runs_the_load_as_it_is() {
        let addr = ones();
        let scenario = scenario(1);
        let mut progress = |_: Step<'_>| {};
        let run = run_of(&scenario, &mut progress);
        let mix = Mix::new(vec![Class::fib(1, 1, true)]).unwrap();
        let report = run.load(&run.spec(addr, mix, 3), Hooks::default()).unwrap();
        assert_eq!(report.merged_from, 0);
        assert_eq!(report.connections, 3);
    }
}
