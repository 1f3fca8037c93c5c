//! The scale-out experiment's records, as plain data.

use serde::{Deserialize, Serialize};

use crate::balancer::Way;

/// The scale-out experiment's records.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ScaleOutRecords {
    /// Measured seconds per load, after its warm-up.
    pub duration_s: f64,
    /// HAProxy's version line, or why its rows are left out.
    pub balancer: String,
    /// Whether HAProxy ran here (its rows exist).
    pub balancer_ran: bool,
    /// The copies served from network namespaces over veth pairs (`--netns`), not
    /// loopback.
    #[serde(default)]
    pub netns: bool,
    pub records: Vec<ScaleOutRecord>,
    #[serde(default)]
    pub kills: Vec<KillRecord>,
}

/// One cell: a model at one n and client count, served one way by some copies, with
/// every repetition's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleOutRecord {
    pub regime: String,
    pub model: String,
    pub way: Way,
    pub copies: usize,
    pub n: u32,
    pub clients: usize,
    /// CPUs each copy was given (pinned) or may use (unpinned: the machine's / copies).
    pub cpus_per_copy: usize,
    /// HAProxy's threads, and whether it shares the copies' CPUs (`false`: CPUs of its
    /// own); `None` where no balancer stands in front.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balancer: Option<(usize, bool)>,
    /// CPUs copies, balancer and load generator share when nothing is pinned (the
    /// machine's); `None` when the regime gives each side its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_cpus: Option<usize>,
    /// Correct replies per second, one per repetition.
    pub throughput_rps: Vec<f64>,
    pub p50_us: Vec<u64>,
    pub p99_us: Vec<u64>,
    /// Requests with no correct reply, and failed connects, over every repetition.
    pub errors: u64,
    /// Requests each copy served over every repetition, warm-up included (its own count,
    /// published).
    pub per_copy: Vec<u64>,
    /// Connections HAProxy gave each copy over every repetition (its stats socket).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions_per_copy: Vec<u64>,
    /// CPU per correct reply over the measured window, µs, one per repetition: every
    /// copy's together, HAProxy's, the load generator's.
    pub server_cpu_us: Vec<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub balancer_cpu_us: Vec<f64>,
    pub client_cpu_us: Vec<f64>,
}

/// A copy killed under load: what the clients saw, every request accounted for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KillRecord {
    pub regime: String,
    pub model: String,
    pub way: Way,
    pub copies: usize,
    pub n: u32,
    pub clients: usize,
    /// When the copy was killed, seconds into the measured window.
    pub killed_at_s: f64,
    /// Requests sent (counted as each was made), and what became of them: answered
    /// correctly, `ERR` replies, wrong replies, lost with a connection that broke (in
    /// flight, or waiting in a dead copy's accept queue), no reply within the timeout,
    /// still in flight at the end. `unaccounted` = sent − all of those (0: every
    /// request accounted for).
    pub sent: u64,
    pub answered: u64,
    pub err_replies: u64,
    pub wrong: u64,
    pub lost: u64,
    pub timeouts: u64,
    pub unfinished: u64,
    pub unaccounted: i64,
    /// Connects refused or failed (attempts, not requests).
    pub connect_errors: u64,
    /// Connections the killed copy held as it last published (at most 100 ms before
    /// the kill). In a closed loop each has one request outstanding at every moment
    /// (sent, on the wire, or being served), so this is the loss predicted.
    pub connections_on_killed: u64,
    /// Correct replies per second before the kill (the measured window up to it) and
    /// over the cell's last second.
    pub before_rps: f64,
    pub after_rps: f64,
    /// The longest time after the kill with no reply at all, ms.
    pub gap_ms: f64,
    /// From the kill until 100 ms of replies reach 90% of the last second's rate, ms;
    /// `None`: not within the cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_ms: Option<f64>,
    /// Behind HAProxy: from the kill until its health checks marked the copy down, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_out_ms: Option<f64>,
    /// Behind HAProxy: connects to the dead copy that failed and were sent to another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redispatched: Option<u64>,
    /// Correct replies per 10 ms from the measured window's start.
    pub timeline: Vec<u32>,
}

/// Bins of [`KillRecord::timeline`], ms.
pub const TIMELINE_MS: f64 = 10.0;
