//! What a request cost each side: the load generator's own threads ([`ClientCost`],
//! from `getrusage` and its own count of system calls) and, where its process could be
//! read, the server's ([`ServerCost`], from `/proc`), over the same measured window.

use serde::{Deserialize, Serialize};

use super::ThreadCost;

/// What the client itself cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientCost {
    /// CPU time (user + system) of each client thread over its wall time, 0..1.
    pub thread_busy: Vec<f64>,
    /// True when a thread was busy over 90% without `--spin`: the client, not the
    /// server, may be what limits the figures.
    pub likely_bottleneck: bool,
    /// What the client's threads spent over the measured window, summed
    /// (`getrusage(RUSAGE_THREAD)` as the window opened and as sending stopped);
    /// `None` where a thread's window did not both open and close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<ThreadCost>,
    /// `window`'s CPU per correct reply, µs: the load generator's own cost of one
    /// request, to hold beside the server's (a client that costs more than the server
    /// it measures cannot rank servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_us_per_request: Option<f64>,
    /// `window`'s sleeps (the client blocked and was woken) per correct reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleeps_per_request: Option<f64>,
    /// `window`'s system calls on the steady path per correct reply, by kind (the
    /// counts are in `window.calls`); `None` where the window or the count is missing
    /// (reports written before the count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls_per_request: Option<CallsPerRequest>,
}

/// [`super::Calls`] per correct reply.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CallsPerRequest {
    pub total: f64,
    pub send: f64,
    pub receive: f64,
    pub poll: f64,
    pub sleep: f64,
    pub timer: f64,
}

impl ClientCost {
    /// The client's cost of `requests` correct replies over `window`.
    pub fn new(
        thread_busy: Vec<f64>,
        likely_bottleneck: bool,
        window: Option<ThreadCost>,
        requests: u64,
    ) -> ClientCost {
        let per = |x: f64| (requests > 0).then(|| (x / requests as f64 * 1000.0).round() / 1000.0);
        ClientCost {
            thread_busy,
            likely_bottleneck,
            cpu_us_per_request: window.and_then(|w| per(w.cpu_s * 1e6)),
            sleeps_per_request: window.and_then(|w| per(w.sleeps as f64)),
            calls_per_request: window.filter(|w| w.calls.total() > 0).and_then(|w| {
                let c = w.calls;
                Some(CallsPerRequest {
                    total: per(c.total() as f64)?,
                    send: per(c.send as f64)?,
                    receive: per(c.receive as f64)?,
                    poll: per(c.poll as f64)?,
                    sleep: per(c.sleep as f64)?,
                    timer: per(c.timer as f64)?,
                })
            }),
            window: window.map(|w| ThreadCost {
                cpu_s: (w.cpu_s * 1e6).round() / 1e6,
                ..w
            }),
        }
    }
}

/// What the server spent per correct reply over the measured window: its process, its
/// threads and its children, read from `/proc` at the window's edges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerCost {
    /// The process read (with its threads and descendants).
    pub pid: u32,
    /// CPU time, µs per correct reply.
    pub cpu_us_per_request: f64,
    /// Times a server thread blocked and had to be woken, per correct reply.
    pub sleeps_per_request: f64,
    /// Times a runnable server thread was preempted, per correct reply.
    pub preempted_per_request: f64,
    /// The client's CPU per request over the server's: above 1 the load generator
    /// spent more on each request than the server it measures.
    pub client_over_server: Option<f64>,
}

impl ServerCost {
    /// `pid`'s `cpu_ns`, `sleeps` and `preempted` over `requests` correct replies,
    /// beside `client`'s CPU per request; `None` for no replies.
    pub fn new(
        pid: u32,
        (cpu_ns, sleeps, preempted): (u64, u64, u64),
        requests: u64,
        client: &ClientCost,
    ) -> Option<ServerCost> {
        if requests == 0 {
            return None;
        }
        let per = |x: f64| (x / requests as f64 * 1000.0).round() / 1000.0;
        let cpu_us = per(cpu_ns as f64 / 1000.0);
        Some(ServerCost {
            pid,
            cpu_us_per_request: cpu_us,
            sleeps_per_request: per(sleeps as f64),
            preempted_per_request: per(preempted as f64),
            client_over_server: client
                .cpu_us_per_request
                .filter(|_| cpu_us > 0.0)
                .map(|c| (c / cpu_us * 100.0).round() / 100.0),
        })
    }
}
