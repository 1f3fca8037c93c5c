//! fiblab: one `fib(n)` TCP microservice served by every classic concurrency model,
//! with clients that measure them. It is the system of the seed documents (Beazley's
//! "Python Concurrency From the Ground Up" and the notes built on it), in Rust.
//!
//! # Layout
//!
//! Bottom up; a module reads only the ones above it in this list (see
//! `docs/ARCHITECTURE.md`; `tests/architecture.rs` checks that no two import each other):
//!
//! - [`units`] — the values flags and scenario files share: durations, CPU lists,
//!   addresses, one parser each.
//! - [`fib`] — the work: naive recursive fib(n), CPU cost ~1.6^n.
//! - [`gil`] — `--gil`: CPython's global interpreter lock, emulated (switch interval,
//!   drop requests, forced switching), and its counters.
//! - [`framing`] — bytes to request lines: `\n`/`\r\n`, pipelining, the seeds'
//!   unterminated requests, over-long lines, bounded memory. Sans-I/O.
//! - [`service`] — what a line means (`fib` or `upper`), `ERR` replies, and
//!   [`service::Session`], framer + service for one connection.
//! - [`accept`] — accepting when the machine says no: one backoff rule for all models.
//! - [`server`] — [`server::Config`], its one parser [`server::ConfigArgs`] and its
//!   inverse [`server::Config::to_args`], [`server::Variant`], the listening line,
//!   [`server::bind`].
//! - [`cpu`] — pinning to CPUs, a thread's CPU time.
//! - [`probe`] — is the client still there? Asked by long work so a reset stops it.
//! - [`pool`] — the bounded producer-consumer queue behind every pool.
//! - [`shutdown`] — [`shutdown::Shutdown`]: stop accepting, wake blocked readers,
//!   drain within a grace period ([`shutdown::Drain`] for event loops); signals.
//! - [`offload`] — `--offload`: fib in a bounded worker pool that wakes the loop.
//! - [`connection`] — the connection loops every model shares (blocking, async, and a
//!   readiness-driven state machine) over one [`connection::SessionDriver`].
//! - [`web`] — the HTTP/1.1 server (hyper) of `/metrics` and the lab, with every
//!   bound a listener needs, and [`web::guard`]: who may drive a surface (Host,
//!   Origin, the token).
//! - [`process`] — child processes that die with their parent, and
//!   [`process::ServerProcess`].
//! - [`models`] — one module per concurrency model behind one signature, and the
//!   [`models::MODELS`] registry that the CLI, the docs and the tests read.
//! - [`load`] — `fiblab load`, the load generator: closed and open loop, mixes,
//!   HdrHistogram latencies corrected for coordinated omission, text/JSON/CSV reports.
//! - [`client`] — `perf1` and `perf2`, the seeds' measuring clients; `soak`.
//! - [`calibrate`] — the machine's primitive costs (round trips, wake-ups, pipes,
//!   readiness calls, fib(n), the load generator's own round trip), measured: `fiblab
//!   calibrate`, and the head of every bench.
//! - [`bench`](mod@bench) — `fiblab bench`: scenarios as data, experiments behind one
//!   interface, results, one exporter per format.
//! - [`advise`] — `fiblab advise`: which model for a service described in its own
//!   terms, predicted for every model from a calibration.
//! - [`demo`] — `fiblab demo`: the seeds' concurrency primitives (locks, deadlock,
//!   semaphores, events, queues, pools, processes, scheduling), each shown running.
//! - [`seeds`] — the seeds' own programs, extracted from the seed documents to run as
//!   peers.
//!
//! `fuzzing` (hidden) holds the fuzz oracle: framing + service against a reference
//! model of the contract, driven by `fuzz/`, the corpus replay and a unit-test sweep.
//!
//! The command line (`src/main.rs` and `src/cli/`) is not part of the library: it
//! parses flags, calls the library, and turns its typed errors into messages.
//!
//! The wire contract is `PROTOCOL.md` in the shared folder; `tests/conformance.rs`
//! checks every registered model against it.

// No panics on network input: outside tests, every unwrap needs a stated reason.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod accept;
pub mod advise;
pub mod backend;
pub mod balancer;
pub mod bench;
pub mod calibrate;
pub mod client;
pub mod compare;
pub mod connection;
pub mod cpu;
pub mod demo;
pub mod downstream;
pub mod exposition;
pub mod fib;
pub mod framing;
#[doc(hidden)]
pub mod fuzzing;
pub mod gil;
pub mod lab;
pub mod load;
pub mod machine;
pub mod metrics;
pub mod models;
pub mod netns;
pub mod offload;
pub mod output;
pub mod pool;
pub mod probe;
pub mod process;
pub mod seeds;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod stats;
pub mod units;
pub mod web;
