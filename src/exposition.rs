//! The `/metrics` endpoint (`fiblab serve --metrics ADDR`): a small HTTP server
//! ([`crate::web`]: hyper on a thread of its own, apart from every model's threads) that answers
//! `GET /metrics` with the counters of [`crate::metrics`], the emulated GIL's counters
//! and the process tree's CPU, memory, threads and descriptors, read from `/proc` at
//! each scrape, and the figures `prefork`'s copies publish added in
//! ([`crate::metrics::merge`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{Counter, Encoder as _, IntCounter, IntGauge, IntGaugeVec, Opts, TextEncoder};

use crate::metrics::{Metrics, registered};

/// `/proc/PID/stat` counts CPU time in USER_HZ ticks, 100 a second on every Linux ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// What the server is, for `fiblab_server_info` (a gauge of 1 whose labels say it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerInfo {
    pub model: String,
    pub service: String,
    /// `shared`, `per-interpreter`, or `none`.
    pub gil: String,
    pub offload: bool,
    pub workers: usize,
}

/// The figures read at each scrape: the process tree (the server and its children:
/// `prefork`'s copies, `procpool`'s workers) and the GIL's own counters.
#[derive(Debug)]
pub struct ProcessTree {
    root: u32,
    cpu: Counter,
    resident: IntGauge,
    threads: IntGauge,
    descriptors: IntGauge,
    processes: IntGauge,
    gil: Option<GilCounters>,
}

#[derive(Debug)]
struct GilCounters {
    acquisitions: IntCounter,
    contended: IntCounter,
    wait: Counter,
    drop_requests: IntCounter,
    forced_switches: IntCounter,
}

impl ProcessTree {
    /// Registers the scrape-time figures of the tree below `root` in `metrics`' registry.
    ///
    /// # Errors
    /// A name is registered twice (a second endpoint in one process).
    pub fn register(metrics: &Metrics, root: u32, info: &ServerInfo) -> prometheus::Result<Self> {
        let registry = metrics.registry();
        let counter = |name: &str, help: &str| registered(registry, Counter::new(name, help)?);
        let int_counter =
            |name: &str, help: &str| registered(registry, IntCounter::new(name, help)?);
        let gauge = |name: &str, help: &str| registered(registry, IntGauge::new(name, help)?);
        let about = IntGaugeVec::new(
            Opts::new(
                "fiblab_server_info",
                "The server's concurrency model and settings, in its labels; always 1.",
            ),
            &["model", "service", "gil", "offload", "workers"],
        )?;
        registry.register(Box::new(about.clone()))?;
        about
            .with_label_values(&[
                info.model.as_str(),
                info.service.as_str(),
                info.gil.as_str(),
                if info.offload { "true" } else { "false" },
                info.workers.to_string().as_str(),
            ])
            .set(1);
        let gil = match crate::gil::installed_counts() {
            None => None,
            Some(_) => Some(GilCounters {
                acquisitions: int_counter(
                    "fiblab_gil_acquisitions_total",
                    "Times a thread took the emulated GIL (--gil).",
                )?,
                contended: int_counter(
                    "fiblab_gil_contended_acquisitions_total",
                    "Acquisitions of the GIL that had to wait for another thread.",
                )?,
                wait: counter(
                    "fiblab_gil_wait_seconds_total",
                    "Time threads spent waiting for the GIL, all together.",
                )?,
                drop_requests: int_counter(
                    "fiblab_gil_drop_requests_total",
                    "Times a waiter ran out of its switch interval and asked the holder to drop the GIL.",
                )?,
                forced_switches: int_counter(
                    "fiblab_gil_forced_switches_total",
                    "Times a holder dropped the GIL because it was asked to.",
                )?,
            }),
        };
        Ok(ProcessTree {
            root,
            cpu: counter(
                "process_cpu_seconds_total",
                "User and system CPU time of the server and its child processes, live ones.",
            )?,
            resident: gauge(
                "process_resident_memory_bytes",
                "Resident memory of the server and its child processes.",
            )?,
            threads: gauge(
                "process_threads",
                "Threads of the server and its child processes.",
            )?,
            descriptors: gauge(
                "process_open_fds",
                "Open file descriptors of the server and its child processes.",
            )?,
            processes: gauge(
                "fiblab_processes",
                "Processes in the server's tree: 1, or more with prefork's copies or procpool's workers.",
            )?,
            gil,
        })
    }

    /// Reads `/proc` and the GIL's counters into the registered figures. A counter only
    /// moves up: a child that ended takes its CPU time with it, and the counter then
    /// waits until the tree's time passes what it showed.
    fn refresh(&self) {
        if let Ok(usage) = crate::process::Usage::of_tree(self.root) {
            self.resident.set(to_i64(usage.rss_kib * 1024));
            self.threads.set(to_i64(usage.threads));
            self.descriptors.set(to_i64(usage.descriptors as u64));
            self.processes.set(to_i64(usage.processes as u64));
        }
        if let Ok(ticks) = crate::process::cpu_ticks_of_tree(self.root) {
            let seconds = ticks as f64 / TICKS_PER_SECOND;
            self.cpu.inc_by((seconds - self.cpu.get()).max(0.0));
        }
        if let (Some(gil), Some(now)) = (&self.gil, crate::gil::installed_counts()) {
            let up = |c: &IntCounter, to: u64| c.inc_by(to.saturating_sub(c.get()));
            up(&gil.acquisitions, now.acquisitions);
            up(&gil.contended, now.contended);
            up(&gil.drop_requests, now.drop_requests);
            up(&gil.forced_switches, now.forced_switches);
            let wait = now.wait_ns as f64 / 1e9;
            gil.wait.inc_by((wait - gil.wait.get()).max(0.0));
        }
    }
}

fn to_i64(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

/// The exposition of every figure now, in Prometheus's text format.
pub fn render(metrics: &Metrics, tree: &ProcessTree) -> String {
    tree.refresh();
    let mut text = Vec::new();
    // Encoding into a Vec fails only on a metric the registry should have refused.
    if let Err(e) = TextEncoder::new().encode(&metrics.registry().gather(), &mut text) {
        tracing::warn!(error = %e, "encoding the metrics failed");
    }
    let text = String::from_utf8(text).unwrap_or_default();
    match crate::metrics::children_dir() {
        Some(dir) => crate::metrics::merge(&text, &dir),
        None => text,
    }
}

/// A running `/metrics` endpoint; dropping it stops it.
pub struct Endpoint {
    server: crate::web::Server,
}

/// The endpoint's bounds: a scraper sends small GETs on a kept-alive connection every
/// few seconds; nothing needs a body, a big head or a hundred connections.
const LIMITS: crate::web::Limits = crate::web::Limits {
    max_connections: 64,
    max_streams: 0,
    // Prometheus keeps its connection between scrapes (15 s apart by default).
    header_timeout: Duration::from_secs(60),
    body_timeout: Duration::from_secs(5),
    max_body: 0,
    max_header_bytes: 16 * 1024,
    max_requests_per_connection: 10_000,
};

impl Endpoint {
    /// Starts counting ([`crate::metrics::enable`]) and serves `GET /metrics` on `addr`
    /// from a thread of its own (see [`crate::web`] for its bounds); any other path
    /// gets 404, any other method 405, a request with a body 413.
    ///
    /// # Errors
    /// `addr` cannot be bound (in use, or not this machine's), or the thread cannot
    /// start.
    pub fn start(addr: SocketAddr, info: &ServerInfo) -> io::Result<Endpoint> {
        let metrics = crate::metrics::enable().map_err(io::Error::other)?;
        crate::metrics::remove_stale();
        let tree = Arc::new(
            ProcessTree::register(metrics, std::process::id(), info).map_err(io::Error::other)?,
        );
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("--metrics {addr}: {e}")))?;
        let handler: crate::web::Handler = Arc::new(move |request, _| {
            let response = respond(&request.head, metrics, &tree);
            Box::pin(std::future::ready(response))
        });
        let server = crate::web::Server::start("metrics", listener, LIMITS, handler)?;
        Ok(Endpoint { server })
    }

    /// Where it listens (the port filled in when `addr` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

fn respond(
    head: &crate::web::Parts,
    metrics: &Metrics,
    tree: &ProcessTree,
) -> crate::web::Response {
    use crate::web::{Method, StatusCode, text, typed};
    match (&head.method, head.uri.path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => typed(
            StatusCode::OK,
            render(metrics, tree),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        (_, "/metrics") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET /metrics is served here",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "fiblab serves its metrics at /metrics",
        ),
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(dir) = crate::metrics::children_dir() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
