//! What the page is sent: the points of the live chart, the marks, the server's own
//! figures and the lesson's progress. Below the lab's state and its lessons, which
//! both fill it.

use std::time::Duration;

use serde::Serialize;

/// How often a point of the live chart is taken.
pub const TICK: Duration = Duration::from_millis(250);

/// One point of the live chart: what the load generator saw in one [`TICK`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Seconds since the lab started.
    pub t: f64,
    pub rps: f64,
    /// Latency percentiles of the tick's replies, µs (0: no reply).
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    /// Wrong replies, `ERR` lines and timeouts in the tick.
    pub errors: u64,
    pub clients: usize,
    /// Replies each connection got in the tick, by its index: a starved client is a
    /// zero here, tick after tick.
    pub shares: Vec<u64>,
}

/// Something that happened, drawn as a line across the chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mark {
    pub t: f64,
    pub what: String,
}

/// What the page is sent.
#[derive(Debug, Default)]
pub struct Figures {
    pub points: Vec<Point>,
    /// Points dropped from the front (so an event stream knows where it is).
    pub dropped: usize,
    pub marks: Vec<Mark>,
    /// The server's own `/metrics` figures, read once a second.
    pub server_metrics: Vec<(String, f64)>,
    /// The lesson running or last run.
    pub lesson: Option<Progress>,
}

/// What one step measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    pub label: String,
    /// Median throughput of the measured ticks, req/s.
    pub rps: f64,
    /// Median of the measured ticks' p50 latency, µs.
    pub p50_us: f64,
    /// Each connection's share of the replies, 0-1 (the active clients only).
    pub shares: Vec<f64>,
    /// Idle connections held open beside the load.
    pub idle: usize,
    /// With the heavy request: the light throughput while it ran, req/s, and how long
    /// it took, s.
    pub during_heavy: Option<(f64, f64)>,
}

/// A lesson in progress or done, as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    pub id: &'static str,
    pub title: &'static str,
    pub seed: &'static str,
    pub quote: &'static str,
    pub english: &'static str,
    pub step: usize,
    pub steps: usize,
    pub doing: String,
    pub measured: Vec<Measured>,
    /// Empty until the lesson ends.
    pub observed: Vec<String>,
    pub failed: Option<String>,
}
