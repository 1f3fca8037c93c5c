//! What a running server does, counted for Prometheus (`fiblab serve --metrics ADDR`,
//! `GET http://ADDR/metrics`).
//!
//! The counters live in one process-wide [`Metrics`], switched on by [`enable`]. Until
//! then every hook below is one load of an empty `OnceLock` and returns: a server
//! without `--metrics` pays nothing else. This module sits below everything that
//! counts (it knows no request, only indices into [`CLASSES`] and [`REASONS`]); the
//! endpoint that serves the counters is `crate::exposition`. Hooks sit where every model already passes,
//! so no model counts for itself:
//!
//! ```text
//! requests, by class        service::Answering::answer   (a valid request framed)
//! errors, by reason         service::write_rejection     (every ERR line)
//! service time              service::Answering::answer   (fib done inline, timed)
//! connections               shutdown::Shutdown::admit    (accepted, open, turned away)
//! accept back-offs          shutdown::Shutdown::accept_failed
//! offload queue depth       offload::Offload::submit / its workers
//! the GIL                   gil::stats()                 (its own counters, read here)
//! the process               /proc of the server and its children (crate::exposition)
//! ```
//!
//! The counters are the `prometheus` crate's (atomics; a histogram observation is a
//! few atomic adds), their label values resolved once at [`enable`], so a hook is an
//! atomic add or two. The exposition is that crate's text format (`text/plain;
//! version=0.0.4`), which `promtool check metrics` reads.
//!
//! `prefork`'s copies are processes of their own: each is started with
//! `--metrics-publish FILE` ([`children_dir`]), counts for itself and rewrites FILE with
//! its exposition ten times a second ([`publish`]); the parent's endpoint adds every
//! live copy's figures to its own ([`merge`]), so a scrape shows the server as one. A
//! copy that died takes its counts with it (a counter reset, as a restart is).

mod children;

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub use children::{children_dir, merge, publish, remove_stale};

/// Workload classes of the `requests` counter: fib's `n` by tens (the cost grows
/// 1.6x per step of n, so each class is about 100x the one before), then `upper`.
pub const CLASSES: [&str; 6] = ["n 0-9", "n 10-19", "n 20-29", "n 30-39", "n 40+", "upper"];

/// Reasons of the `errors` counter, one per [`crate::service::Rejection`]: the reason the wire says,
/// without its figures.
pub const REASONS: [&str; 15] = [
    "not a number",
    "negative",
    "above max-n",
    "line too long",
    "not utf-8",
    "server busy",
    "worker died",
    "client gone",
    "downstream refused",
    "downstream closed",
    "downstream reset",
    "downstream timed out",
    "downstream unavailable",
    "downstream failed",
    "downstream desync",
];

/// Why a connection was turned away at once.
pub const TURNED_AWAY: [&str; 2] = ["max-conns", "queue full"];

/// Upper bounds of the service-time histogram's buckets, seconds (fib(1) is a few
/// nanoseconds, fib(44) about two seconds on a small VM).
pub const BUCKETS: [f64; 14] = [
    1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0, 5.0,
];

/// Every counter of one server process, registered in its [`Registry`]; see the
/// module docs. The label values are resolved once, here, so a hook is one atomic add.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: [IntCounter; CLASSES.len()],
    errors: [IntCounter; REASONS.len()],
    service: Histogram,
    accepted: IntCounter,
    open: IntGauge,
    turned_away: [IntCounter; TURNED_AWAY.len()],
    accept_backoffs: IntCounter,
    in_flight: IntGauge,
    offload_queued: IntGauge,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Switches counting on for this process (idempotent) and returns the counters.
///
/// # Errors
/// A name or label the registry refuses (none: they are constants, tested).
pub fn enable() -> prometheus::Result<&'static Metrics> {
    if let Some(m) = METRICS.get() {
        return Ok(m);
    }
    // Two threads may build one each; the first set wins, the other is dropped.
    let _ = METRICS.set(Metrics::new()?);
    METRICS
        .get()
        .ok_or_else(|| prometheus::Error::Msg("the metrics were not kept".into()))
}

/// The counters, once [`enable`] was called.
pub fn get() -> Option<&'static Metrics> {
    METRICS.get()
}

/// `metric`, registered in `registry` (which keeps a handle to the same counters).
///
/// # Errors
/// Its name is already registered there.
pub fn registered<M>(registry: &Registry, metric: M) -> prometheus::Result<M>
where
    M: prometheus::core::Collector + Clone + 'static,
{
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

impl Metrics {
    fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let family = |name: &str, help: &str, label: &str| -> prometheus::Result<IntCounterVec> {
            let family = IntCounterVec::new(Opts::new(name, help), &[label])?;
            registry.register(Box::new(family.clone()))?;
            Ok(family)
        };
        let one = |family: &IntCounterVec, values: &[&str]| -> Vec<IntCounter> {
            values
                .iter()
                .map(|v| family.with_label_values(&[*v]))
                .collect()
        };
        let counter = |name: &str, help: &str| registered(&registry, IntCounter::new(name, help)?);
        let gauge = |name: &str, help: &str| registered(&registry, IntGauge::new(name, help)?);
        let requests = family(
            "fiblab_requests_total",
            "Valid requests framed, by workload class (fib's n by tens, or upper).",
            "class",
        )?;
        let errors = family(
            "fiblab_request_errors_total",
            "ERR replies, by the reason on the wire.",
            "reason",
        )?;
        let away = family(
            "fiblab_connections_turned_away_total",
            "Connections answered ERR server busy and closed at once, by limit.",
            "reason",
        )?;
        let service = Histogram::with_opts(
            HistogramOpts::new(
                "fiblab_request_service_seconds",
                "Time to compute a reply: fib done inline on the connection's thread or loop, or on an --offload worker.",
            )
            .buckets(BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(service.clone()))?;
        fn array<const N: usize>(v: Vec<IntCounter>) -> prometheus::Result<[IntCounter; N]> {
            v.try_into()
                .map_err(|_| prometheus::Error::Msg("one counter per label value".into()))
        }
        Ok(Metrics {
            requests: array(one(&requests, &CLASSES))?,
            errors: array(one(&errors, &REASONS))?,
            turned_away: array(one(&away, &TURNED_AWAY))?,
            service,
            accepted: counter("fiblab_connections_accepted_total", "Connections admitted.")?,
            open: gauge(
                "fiblab_connections_open",
                "Connections admitted and not yet ended.",
            )?,
            accept_backoffs: counter(
                "fiblab_accept_backoffs_total",
                "Accepts that failed for a passing reason (out of descriptors, memory), each pausing accepting.",
            )?,
            in_flight: gauge(
                "fiblab_requests_in_flight",
                "Requests framed and not yet answered (computing, queued for a worker, or waiting on the downstream).",
            )?,
            offload_queued: gauge(
                "fiblab_offload_queue_depth",
                "Jobs waiting in the --offload pool's queue for a free worker.",
            )?,
            registry,
        })
    }

    /// The registry every counter is in, for the exposition.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// A valid request was framed: counted in its class, and in flight until
/// [`answered`].
pub fn request(class: usize) {
    if let Some(m) = get() {
        m.requests[class.min(CLASSES.len() - 1)].inc();
        m.in_flight.inc();
    }
}

/// A request counted by [`request`] got its reply (a value or an error).
pub fn answered() {
    if let Some(m) = get() {
        m.in_flight.dec();
    }
}

/// An `ERR` line was written; `reason` indexes [`REASONS`].
pub fn error(reason: usize) {
    if let Some(m) = get() {
        m.errors[reason.min(REASONS.len() - 1)].inc();
    }
}

/// The work of one request took `took`.
pub fn served(took: Duration) {
    if let Some(m) = get() {
        m.service.observe(took.as_secs_f64());
    }
}

/// A connection was admitted.
pub fn accepted() {
    if let Some(m) = get() {
        m.accepted.inc();
        m.open.inc();
    }
}

/// An admitted connection ended.
pub fn closed() {
    if let Some(m) = get() {
        m.open.dec();
    }
}

/// A connection was turned away at once; `why` indexes [`TURNED_AWAY`].
pub fn turned_away(why: usize) {
    if let Some(m) = get() {
        m.turned_away[why.min(TURNED_AWAY.len() - 1)].inc();
    }
}

/// An accept failed for a reason that passes (out of descriptors, ...), and accepting
/// paused.
pub fn accept_backoff() {
    if let Some(m) = get() {
        m.accept_backoffs.inc();
    }
}

/// A job entered (`+1`) or left (`-1`) the offload pool's queue.
pub fn offload_queued(change: i64) {
    if let Some(m) = get() {
        m.offload_queued.add(change);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_and_label_registers() {
        let m = Metrics::new().unwrap();
        let names: Vec<String> = m
            .registry()
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert!(
            names.iter().any(|n| n == "fiblab_requests_total"),
            "{names:?}"
        );
        assert!(names.iter().all(|n| n.starts_with("fiblab_")), "{names:?}");
    }
}
