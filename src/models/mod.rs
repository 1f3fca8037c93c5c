//! The concurrency models, one module each, behind one contract and one registry.
//!
//! Every model is a function with the same signature, [`ServeFn`]:
//!
//! ```text
//! serve(listener: TcpListener, config: &Config, shutdown: Shutdown) -> io::Result<()>
//! ```
//!
//! It gets a listener that is already bound (so tests bind port 0), serves the wire
//! contract on it with [`crate::connection`] or [`crate::service::Session`], and
//! returns once `shutdown` has been triggered and its connections have ended (or the
//! grace period ran out). Models differ only in how they schedule connections and
//! work; a diff between two model files shows one concurrency idea and nothing else.
//!
//! [`MODELS`] is the registry: the CLI's `--model` choices, `fiblab models`, the README
//! table and the conformance suite all read it. Adding a model is one module and one
//! entry here.

use std::io;
use std::net::TcpListener;

use crate::server::{Config, Variant};
use crate::shutdown::Shutdown;
pub use cost::{CostModel, Readiness};
pub use table::{markdown_table, text_table};

pub mod coroutines;
pub mod cost;
pub mod epoll;
pub mod isolates;
pub mod nonblocking;
pub mod per_core;
pub mod prefork;
pub mod procpool;
pub mod select;
pub mod single;
mod table;
pub mod threadpool;
pub mod threads;
pub mod tokio;
pub mod uring;

/// The one signature every model implements; see the module docs.
pub type ServeFn = fn(TcpListener, &Config, Shutdown) -> io::Result<()>;

/// How many clients a model serves at once, as far as the wire can tell. The
/// conformance suite checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clients {
    /// One client at a time; the next waits (connected, unanswered) until it leaves.
    OneAtATime,
    /// Every connected client is answered while the others stay connected (up to the
    /// model's own documented limits, such as a pool's queue).
    Concurrent,
    /// Clients are spread over one-client-at-a-time workers by a hash the server does
    /// not control: a second client is served at once, or (if it lands on the busy
    /// worker) once the first leaves.
    Sharded,
}

/// What `--workers` means for a model, and why its default is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// The model has no pool: one thread, or a thread per connection.
    Unused,
    /// One per usable CPU: runtime threads, processes. More would only take turns on
    /// the same cores.
    Cpus,
    /// One per usable CPU, for the `--offload` pool only: without `--offload` the model
    /// runs on one thread and `--workers` is not used.
    OffloadPool,
    /// Python's `ThreadPoolExecutor` default, the seeds' pool: `min(32, CPUs + 4)`. Each
    /// worker holds a whole connection, so a pool of only one per CPU would leave a
    /// client waiting in the queue for the whole run on a small machine.
    ThreadPoolExecutor,
}

impl Workers {
    /// The default on a machine with `cpus` usable CPUs.
    pub fn default_for(self, cpus: usize) -> usize {
        match self {
            Workers::Unused | Workers::Cpus | Workers::OffloadPool => cpus.max(1),
            Workers::ThreadPoolExecutor => (cpus + 4).min(32),
        }
    }

    /// True when a server of this model, with or without `offload`, runs a pool of
    /// `--workers`.
    pub fn used(self, offload: bool) -> bool {
        match self {
            Workers::Unused => false,
            Workers::OffloadPool => offload,
            Workers::Cpus | Workers::ThreadPoolExecutor => true,
        }
    }

    /// The default on this machine, for the CPUs this process may use.
    pub fn default_here(self) -> usize {
        self.default_for(crate::server::default_workers())
    }
}

/// One registry entry.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// The `--model` name.
    pub name: &'static str,
    /// The module that implements it, so a reader finds it in one step.
    pub source: &'static str,
    /// The seed program this model reproduces, and where it appears.
    pub seed: &'static str,
    /// One line: how it schedules.
    pub summary: &'static str,
    /// What it is good at, in a few words (its module doc says it at length).
    pub good: &'static str,
    /// What it is bad at, in a few words.
    pub bad: &'static str,
    pub clients: Clients,
    /// What `--workers` defaults to for this model.
    pub workers: Workers,
    /// Accepts `--offload`: fib in a bounded worker pool instead of on the loop.
    pub offload: bool,
    /// Accepts `--ports`: one port per worker process instead of one shared port.
    pub ports: bool,
    /// Its listener is bound with `SO_REUSEPORT`, so its processes can bind the
    /// same port.
    pub reuse_port: bool,
    /// Accepts `--max-inflight K`: a semaphore caps its fib computations. Only where
    /// nothing else does (a thread per connection); the pools are capped by `--workers`.
    pub max_inflight: bool,
    /// Stops a request's work when its client resets the connection: fib looks at the
    /// socket now and then (the isolates between fuel slices of their interpreter), or
    /// procpool kills the worker computing it.
    pub cancels: bool,
    /// Resident memory an idle connection may cost it, KiB, where the model promises a
    /// figure: an event loop needs a few bytes of state per connection and no buffer
    /// while it is idle (issue 15's targets; tokio's task and its registration take a
    /// little more). `None`: no target (a thread or a process per connection costs what
    /// its stack and allocator make it; `uring`'s buffer ring is a fixed cost). The
    /// connections experiment holds each model to it, and so does `tests/idle_memory.rs`
    /// on every test run (5,000 idle clients).
    pub idle_target_kib: Option<f64>,
    /// The seeds' Python server this model stands for (the peer's name in
    /// `scenarios/python.toml`, started by `scripts/seed-peers.sh`), if any: the python
    /// experiment compares the two.
    pub python_original: Option<&'static str>,
    /// How its closed-loop throughput follows from the machine's calibrated costs
    /// ([`cost`]); the model's module docs say why.
    pub cost: CostModel,
    /// Whether this kernel lets this process run the model: `Ok` for every model but
    /// those that need a kernel feature (`uring`); the error says what is missing and
    /// what to serve instead. `fiblab serve` checks it first; the test suites skip a
    /// model that is not available, saying why.
    pub available: fn() -> io::Result<()>,
    pub serve: ServeFn,
}

impl Model {
    /// CPUs its work can use: one for a loop on one thread (unless `--offload` sends fib
    /// to a pool), else the server's `server_cpus`.
    pub fn work_cpus(&self, offload: bool, server_cpus: usize) -> usize {
        match self.cost {
            CostModel::OneAtATime | CostModel::EventLoop(_) | CostModel::SpinLoop if !offload => 1,
            _ => server_cpus,
        }
    }
}

/// [`Model::available`] for the models that need nothing beyond sockets and threads.
pub fn always() -> io::Result<()> {
    Ok(())
}

/// Every model fiblab serves, in the order the seeds introduce them.
pub const MODELS: &[Model] = &[
    Model {
        name: "single",
        source: "src/models/single.rs",
        seed: "one_server.py (000, 001, 004)",
        summary: "one thread: accept a client, serve it until it leaves, then the next",
        good: "simplicity; one client at a time is as fast as anything",
        bad: "a second client: it waits until the first leaves",
        clients: Clients::OneAtATime,
        workers: Workers::Unused,
        offload: false,
        ports: false,
        reuse_port: false,
        max_inflight: false,
        cancels: true,
        idle_target_kib: None,
        python_original: Some("py-one_server"),
        cost: CostModel::OneAtATime,
        available: always,
        serve: single::serve,
    },
    Model {
        name: "threads",
        source: "src/models/threads.rs",
        seed: "thread_server.py (000, 001, 002, 004)",
        summary: "one OS thread per connection",
        good: "being obviously correct; a blocked thread costs nothing while it waits",
        bad: "very many connections (a stack and a kernel thread each) and unbounded thread floods",
        clients: Clients::Concurrent,
        workers: Workers::Unused,
        offload: false,
        ports: false,
        reuse_port: false,
        max_inflight: true,
        cancels: true,
        idle_target_kib: None,
        python_original: Some("py-thread_server"),
        cost: CostModel::ThreadPerConnection,
        available: always,
        serve: threads::serve,
    },
    Model {
        name: "threadpool",
        source: "src/models/threadpool.rs",
        seed: "thread pool / ThreadPoolExecutor (002, 003)",
        summary: "--workers threads take connections from a bounded queue; beyond it: ERR server busy",
        good: "bounding threads and memory, shedding load explicitly",
        bad: "long-lived connections: a worker is tied to one client, so idle clients starve the rest",
        clients: Clients::Concurrent,
        workers: Workers::ThreadPoolExecutor,
        offload: false,
        ports: false,
        reuse_port: false,
        max_inflight: false,
        cancels: true,
        idle_target_kib: None,
        python_original: Some("py-thread_server"),
        cost: CostModel::ConnectionPool,
        available: always,
        serve: threadpool::serve,
    },
    Model {
        name: "tokio",
        source: "src/models/tokio/multi.rs",
        seed: "server.go (000, 001)",
        summary: "tokio multi-thread runtime, a task per connection (Go's goroutines)",
        good: "many connections, and CPU-bound requests in parallel on every worker",
        bad: "a long CPU-bound request blocks the tasks queued behind it on its worker",
        clients: Clients::Concurrent,
        workers: Workers::Cpus,
        offload: true,
        ports: false,
        reuse_port: false,
        max_inflight: false,
        cancels: true,
        idle_target_kib: Some(3.0),
        python_original: None,
        cost: CostModel::WorkStealing,
        available: always,
        serve: tokio::multi::serve,
    },
    Model {
        name: "tokio-current",
        source: "src/models/tokio/current.rs",
        seed: "gevent server (002, 003)",
        summary: "tokio current-thread runtime, a task per connection (green threads)",
        good: "many mostly idle connections on one core, no locks or cross-CPU wake-ups",
        bad: "CPU-bound work: one request stops every other client",
        clients: Clients::Concurrent,
        workers: Workers::OffloadPool,
        offload: true,
        ports: false,
        reuse_port: false,
        max_inflight: false,
        cancels: true,
        idle_target_kib: Some(3.0),
        python_original: None,
        cost: CostModel::EventLoop(Readiness::Epoll),
        available: always,
        serve: tokio::current::serve,
    },
    Model {
        name: "nonblocking",
        source: "src/models/nonblocking.rs",
        seed: "non-blocking server (003)",
        summary: "one thread busy-polls non-blocking sockets, no readiness API (burns a core)",
        good: "one or two clients on a machine with a spare core: the lowest latency",
        bad: "everything else: it spins a core and pays for every idle connection",
        clients: Clients::Concurrent,
        workers: Workers::Unused,
        offload: false,
        ports: false,
        reuse_port: false,
        max_inflight: false,
        cancels: true,
        idle_target_kib: Some(1.0),
        python_original: None,
        cost: CostModel::SpinLoop,
        available: always,
        serve: nonblocking::serve,
    },
    Model {
        name: "select",
        seed: "select server (003)",
        source: "src/models/select.rs",
        summary: "one thread, select(2) readiness; past FD_SETSIZE: ERR server busy",
        good: "a few hundred connections on one thread, portability",
        bad: "many connections (O(n) per round, FD_SETSIZE) and CPU-bound requests",
        clients: Clients::Concurrent,
        workers: Workers::Unused,
        offload: false,
        ports: false,
        reuse_port: false,
        max_inflight: false,
        cancels: true,
        idle_target_kib: Some(1.0),
        python_original: None,
        cost: CostModel::EventLoop(Readiness::Select),
        available: always,
        serve: select::serve,
    },
    Model {
        name: "epoll",
        source: "src/models/epoll.rs",
        seed: "selectors server (003)",
        summary: "one thread, edge-triggered epoll (mio), a state machine per connection",
        good: "thousands of connections on one thread (nginx's and redis's design)",
        bad: "CPU-bound requests without --offload, and more than one core",
        clients: Clients::Concurrent,
        workers: Workers::OffloadPool,
        offload: true,
        ports: false,
        reuse_port: false,
        max_inflight: false,
        cancels: true,
        idle_target_kib: Some(1.0),
        python_original: None,
        cost: CostModel::EventLoop(Readiness::Epoll),
        available: always,
        serve: epoll::serve,
    },
    Model {
        name: "coroutines",
        source: "src/models/coroutines/mod.rs",
        seed: "aserver.py (000, 001)",
        summary: "a hand-built executor and epoll reactor, a task per connection (no tokio)",
        good: "showing what async is, and nothing spent per idle connection",
        bad: "CPU-bound work without --offload: one fib stops every client",
        clients: Clients::Concurrent,
        workers: Workers::OffloadPool,
        offload: true,
        ports: false,
        reuse_port: false,
        max_inflight: false,
        cancels: true,
        idle_target_kib: Some(1.0),
        python_original: Some("py-aserver"),
        cost: CostModel::EventLoop(Readiness::Epoll),
        available: always,
        serve: coroutines::serve,
    },
    Model {
        name: "isolates",
        source: "src/models/isolates.rs",
        seed: "subinterpreters_server.py (000, 001)",
        summary: "a thread per connection; fib runs in its own WebAssembly interpreter (wasmi), via channels",
        good: "isolation: a connection's code cannot touch another's state",
        bad: "speed: an interpreter per connection",
        clients: Clients::Concurrent,
        workers: Workers::Unused,
        offload: false,
        ports: false,
        reuse_port: false,
        max_inflight: false,
        cancels: true,
        idle_target_kib: None,
        python_original: Some("py-subinterpreters"),
        cost: CostModel::Isolated,
        available: always,
        serve: isolates::serve,
    },
    Model {
        name: "procpool",
        source: "src/models/procpool.rs",
        seed: "multiprocess_server.py (000, 001, 004)",
        summary: "a thread per connection; fib runs in a pool of --workers worker processes, over pipes",
        good: "CPU-bound work on every core despite a GIL, and crash isolation",
        bad: "everything else in Rust: a pipe round trip per request",
        clients: Clients::Concurrent,
        workers: Workers::Cpus,
        offload: false,
        ports: false,
        reuse_port: false,
        max_inflight: false,
        cancels: true,
        idle_target_kib: None,
        python_original: Some("py-multiprocess"),
        cost: CostModel::ProcessPool,
        available: always,
        serve: procpool::serve,
    },
    Model {
        name: "prefork",
        source: "src/models/prefork.rs",
        seed: "many_server.py (000, 001)",
        summary: "--workers single-thread server processes on one SO_REUSEPORT port (--one-queue: one shared accept queue; --ports: a port each)",
        good: "isolation and every core with no shared state",
        bad: "balance (a copy serves one client at a time) and memory per process",
        clients: Clients::Sharded,
        workers: Workers::Cpus,
        offload: false,
        ports: true,
        reuse_port: true,
        max_inflight: false,
        cancels: true,
        idle_target_kib: None,
        python_original: None,
        cost: CostModel::Prefork,
        available: always,
        serve: prefork::serve,
    },
    Model {
        name: "per-core",
        source: "src/models/per_core.rs",
        seed: "none: thread-per-core (Seastar, glommio, monoio)",
        summary: "--workers epoll loops, each pinned to its own CPU with its own SO_REUSEPORT listener; nothing shared",
        good: "many short requests spread evenly, per-core caches",
        bad: "few connections and skewed load: a collision halves two clients",
        clients: Clients::Concurrent,
        workers: Workers::Cpus,
        offload: false,
        ports: false,
        reuse_port: true,
        max_inflight: false,
        cancels: true,
        idle_target_kib: Some(1.0),
        python_original: None,
        cost: CostModel::PerCore,
        available: always,
        serve: per_core::serve,
    },
    Model {
        name: "uring",
        source: "src/models/uring/mod.rs",
        seed: "none: completion-based I/O (io_uring; monoio, glommio, tokio-uring)",
        summary: "one thread submits accepts, receives and sends to io_uring and handles their completions: multishot accept and receive, kernel-provided buffers, one system call per turn",
        good: "many connections and small requests per turn: fewer system calls per request",
        bad: "one client at a time, CPU-bound requests without --offload, old kernels",
        clients: Clients::Concurrent,
        workers: Workers::OffloadPool,
        offload: true,
        ports: false,
        reuse_port: false,
        max_inflight: false,
        cancels: true,
        idle_target_kib: None,
        python_original: None,
        cost: CostModel::EventLoop(Readiness::Completion),
        available: uring::available,
        serve: uring::serve,
    },
];

/// The models that accept `--offload`, for error messages.
pub fn offload_models() -> Vec<&'static str> {
    MODELS
        .iter()
        .filter(|m| m.offload)
        .map(|m| m.name)
        .collect()
}

/// Looks a model up by its `--model` name.
pub fn find(name: &str) -> Option<&'static Model> {
    MODELS.iter().find(|m| m.name == name)
}

/// A variant the registry does not serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariantError {
    #[error("unknown model '{0}' (see `fiblab models`)")]
    Unknown(String),
    #[error(
        "model {0} cannot --offload: it has no event loop to keep free (its connections already run on their own threads). Models that can: {1}"
    )]
    NoOffload(String, String),
    #[error("model {0} has no --ports or --one-queue: only prefork runs one process per copy")]
    NoPorts(String),
    #[error(
        "model {0} has no --max-inflight: a pool or an event loop is capped by --workers, not by a semaphore. Models that can: {1}"
    )]
    NoMaxInflight(String, String),
}

/// The registry entry that serves `variant`, once it is known to have the variant.
///
/// # Errors
/// An unknown model, or `+offload` on a model without an event loop.
pub fn check(variant: &Variant) -> Result<&'static Model, VariantError> {
    let model = find(&variant.model).ok_or_else(|| VariantError::Unknown(variant.model.clone()))?;
    if variant.offload && !model.offload {
        return Err(VariantError::NoOffload(
            model.name.to_string(),
            offload_models().join(", "),
        ));
    }
    Ok(model)
}

/// The registry entry for `variant` run with `config`: [`check`], and `--ports` and
/// `--one-queue` only where the model has them.
///
/// # Errors
/// As [`check`], and `--ports` on a model with one process.
pub fn check_config(variant: &Variant, config: &Config) -> Result<&'static Model, VariantError> {
    let model = check(variant)?;
    if (config.ports || config.one_queue) && !model.ports {
        return Err(VariantError::NoPorts(model.name.to_string()));
    }
    if config.max_inflight.is_some() && !model.max_inflight {
        let can: Vec<&str> = MODELS
            .iter()
            .filter(|m| m.max_inflight)
            .map(|m| m.name)
            .collect();
        return Err(VariantError::NoMaxInflight(
            model.name.to_string(),
            can.join(", "),
        ));
    }
    Ok(model)
}

/// `epoll` or `epoll+offload`, checked against the registry: how scenarios, `--models`
/// and `soak --model` name a variant.
///
/// # Errors
/// As [`check`].
pub fn parse_variant(text: &str) -> Result<Variant, VariantError> {
    let variant = Variant::split(text);
    check(&variant)?;
    Ok(variant)
}

/// `base` with the settings `model` defaults to (its `--workers`): what `fiblab serve
/// --model M` runs with when given no flags.
pub fn defaults_for(model: &Model, base: Config) -> Config {
    Config {
        workers: model.workers.default_here(),
        ..base
    }
}

/// Every variant the registry serves: each model, and its `+offload` form where it has
/// one. The conformance and adversarial suites run each.
pub fn variants() -> Vec<Variant> {
    MODELS
        .iter()
        .flat_map(|m| {
            let offload = m.offload.then(|| Variant {
                model: m.name.to_string(),
                offload: true,
            });
            std::iter::once(Variant::plain(m.name)).chain(offload)
        })
        .collect()
}

/// Models as a file names them (`epoll`, `epoll+offload`), checked against the
/// registry: for serde's `deserialize_with`.
///
/// # Errors
/// A name the registry does not know, or `+offload` on a model without it.
pub fn deserialize_variants<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<Variant>, D::Error> {
    use serde::Deserialize as _;
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| parse_variant(text).map_err(serde::de::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests;
