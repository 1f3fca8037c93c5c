//! The `/metrics` endpoint (`fiblab serve --metrics ADDR`): a small HTTP server
//! (`tiny_http`, one thread of its own, apart from every model's threads) that answers
//! `GET /metrics` with the counters of [`crate::metrics`], the emulated GIL's counters
//! and the process tree's CPU, memory, threads and descriptors, read from `/proc` at
//! each scrape, and the figures `prefork`'s copies publish added in
//! ([`crate::metrics::merge`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

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

/// A running `/metrics` endpoint; dropping it stops its thread.
pub struct Endpoint {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl Endpoint {
    /// Starts counting ([`crate::metrics::enable`]) and serves `GET /metrics` on `addr` from a
    /// thread of its own; any other path gets 404, any other method 405.
    ///
    /// # Errors
    /// `addr` cannot be bound (in use, or not this machine's), or the thread cannot
    /// start.
    pub fn start(addr: SocketAddr, info: &ServerInfo) -> io::Result<Endpoint> {
        let metrics = crate::metrics::enable().map_err(io::Error::other)?;
        crate::metrics::remove_stale();
        let tree =
            ProcessTree::register(metrics, std::process::id(), info).map_err(io::Error::other)?;
        let server = Arc::new(
            tiny_http::Server::http(addr)
                .map_err(|e| io::Error::other(format!("--metrics {addr}: {e}")))?,
        );
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("--metrics: not an IP address"))?;
        let serving = server.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    let response = respond(&request, metrics, &tree);
                    // A scraper that left is no concern of the server's.
                    let _ = request.respond(response);
                }
            })?;
        Ok(Endpoint {
            server,
            thread: Some(thread),
            addr,
        })
    }

    /// Where it listens (the port filled in when `addr` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

fn respond(
    request: &tiny_http::Request,
    metrics: &Metrics,
    tree: &ProcessTree,
) -> tiny_http::Response<io::Cursor<Vec<u8>>> {
    let text = |status: u16, body: String, kind: &str| {
        let mut response = tiny_http::Response::from_string(body).with_status_code(status);
        if let Ok(header) = tiny_http::Header::from_bytes("Content-Type", kind) {
            response.add_header(header);
        }
        response
    };
    let path = request.url().split('?').next().unwrap_or("");
    match (request.method(), path) {
        (tiny_http::Method::Get | tiny_http::Method::Head, "/metrics") => text(
            200,
            render(metrics, tree),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        (_, "/metrics") => text(
            405,
            "only GET /metrics is served here\n".into(),
            "text/plain; charset=utf-8",
        ),
        _ => text(
            404,
            "fiblab serves its metrics at /metrics\n".into(),
            "text/plain; charset=utf-8",
        ),
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(dir) = crate::metrics::children_dir() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
