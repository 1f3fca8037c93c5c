//! The machine's CPUs as a bound: where server, load generator and downstream (or a
//! balancer) share them, no model serves more than the CPUs over their CPU per request
//! together. `fiblab advise` and the scale-out experiment predict with it.

use crate::calibrate::Calibration;
use crate::models::{CostModel, Model};

/// The machine's CPUs shared by the server, the load generator and the downstream, as
/// `fiblab advise` and the bench's unpinned cells run them (and a service, its clients and its database on one host
/// do): `X <= CPUs / (server + load generator + downstream CPU per request)`, the
/// waiting experiment's machine limit ([`crate::bench::experiments::waiting::bound`])
/// predicted from the calibration rather than read from the run.
pub struct MachineBound {
    pub rps: f64,
    pub cpus: usize,
    pub server_us: f64,
    pub client_us: f64,
    pub downstream_us: f64,
}

impl MachineBound {
    pub fn describe(&self) -> String {
        match self.downstream_us > 0.0 {
            true => format!(
                "the machine's {} CPUs, shared by the server ({:.0} µs), the load generator ({:.0} µs) and the downstream ({:.0} µs of CPU per request)",
                self.cpus, self.server_us, self.client_us, self.downstream_us
            ),
            false => format!(
                "the machine's {} CPUs, shared by the server ({:.0} µs) and the load generator ({:.0} µs of CPU per request)",
                self.cpus, self.server_us, self.client_us
            ),
        }
    }
}

/// The machine bound where server and load share every CPU: the server's CPU is fib(n)
/// (the model's own interpreter for `isolates`), its socket calls (the request and the
/// reply; with a wait also the downstream's send and receive, which `costs.fib` already
/// holds) and its sleeping threads' wake-ups (the calibrated `wake_up` each); the load
/// generator's is its calibrated work, its own two calls and its wake-ups;
/// with a wait, the downstream's is calibrated (`downstream_cpu`), or, where an older
/// calibration lacks it, taken as the load generator's (one thread in epoll reading and
/// writing a line).
pub fn machine_bound(
    calibration: &Calibration,
    costs: &crate::models::cost::Costs,
    model: &Model,
    waits: bool,
) -> Option<MachineBound> {
    let fib = match model.cost {
        CostModel::Isolated => costs.fib_interpreted,
        _ => costs.fib,
    };
    // A thread that sleeps between its requests is woken for each (and, with a wait,
    // again for the downstream's reply; a pool's worker process or an isolate's thread
    // twice more, behind its pipe or hand-off): each wake-up is CPU on the machine. A
    // loop under load finds the next request ready, and is rarely woken for one.
    let waits_n = f64::from(u8::from(waits));
    let (server_wakes, hop) = match model.cost {
        CostModel::ThreadPerConnection
        | CostModel::ConnectionPool
        | CostModel::OneAtATime
        | CostModel::Prefork => (1.0 + waits_n, 0.0),
        CostModel::ProcessPool => (3.0 + waits_n, costs.pipe),
        CostModel::Isolated => (3.0 + waits_n, costs.handoff),
        _ => (0.0, 0.0),
    };
    let server_us = fib + costs.rtt_spin / 2.0 + server_wakes * costs.wake_up + hop;
    // The load generator's threads (one per CPU) wake once per batch of replies: one
    // reply a wake from a thread per connection, a loop's turn's worth from a loop.
    let per_wake = model.cost.replies_per_wake(&crate::models::cost::Costs {
        client_cpus: costs.cpus,
        ..*costs
    });
    let client_us = costs.client_work + costs.rtt_spin / 2.0 + costs.wake_up / per_wake;
    let downstream_us = match waits {
        true => calibration
            .downstream_cpu
            .map_or(client_us, |m| m.median_us),
        false => 0.0,
    };
    let all = server_us + client_us + downstream_us;
    (all > 0.0).then(|| MachineBound {
        rps: costs.cpus as f64 * 1e6 / all,
        cpus: costs.cpus,
        server_us,
        client_us,
        downstream_us,
    })
}
