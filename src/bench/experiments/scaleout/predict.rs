//! Each scale-out cell predicted from the run's calibration, and, where the measurement
//! is more than [`THRESHOLD`] off, the computed reason.
//!
//! - **Copies**: each copy is the model's own formula (`models/cost.rs`, as
//!   `bench/predict.rs` gives a seed-table cell) on its share of the CPUs
//!   (`cpus_per_copy`) with its share of the clients (an even split: what leastconn and
//!   roundrobin do, and what one queue and the kernel's hash do on average), times the
//!   copies. `process` is the one copy with every server CPU.
//! - **The machine** (`bench/predict/machine.rs`, as `fiblab advise` uses it): where
//!   nothing is pinned, copies, load generator and balancer share every CPU, so
//!   `X <= CPUs / (server + load generator + balancer CPU per request)`, each from the
//!   calibration.
//! - **The hop** (HAProxy): each request crosses the balancer both ways. Its CPU per
//!   request `h` is calibrated (`balancer_cpu`: HAProxy alone forwarding a light load);
//!   where the calibration lacks it (no `haproxy` when it ran), it is priced from kernel
//!   primitives: it reads and writes the request and the reply (the socket calls of a
//!   round trip with neither side asleep, `rtt_spin`) and is woken once per batch of
//!   them, as the load generator is (`wake_up / replies per wake`).
//!   It adds one round trip across CPUs to each request's path, `L = rtt_cross`, which
//!   a closed loop of `C` clients waits out: `1/X = 1/X_copies + L / C` (Little's law).
//!   Its CPU comes out of the machine's bound above; where HAProxy has CPUs of its own,
//!   `X <= threads / h`; on the server's CPUs, `X <= CPUs / (server + h)`.

use super::records::ScaleOutRecord;
use crate::balancer::Way;
use crate::bench::predict::machine::machine_bound;
use crate::bench::predict::{THRESHOLD, predict_costs, regime_model_costs};
use crate::bench::results::BenchReport;
use crate::models::cost::Costs;
use crate::server::Variant;
use crate::stats::median;

/// A cell's prediction, req/s: a point, or where the model's formula gives a range
/// (placement decides) the range with `rps` its middle.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicted {
    pub rps: f64,
    pub low: f64,
    pub high: f64,
    /// Whether the formula gave a range.
    pub range: bool,
    /// Behind HAProxy: its predicted CPU per request and the latency the hop adds, µs.
    pub hop: Option<Hop>,
    /// The CPUs' bound the prediction was held to, req/s (see the module docs).
    pub machine_rps: Option<f64>,
}

/// The balancer's hop, µs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hop {
    /// CPU per request: the calibrated `balancer_cpu`, else the socket calls of a round
    /// trip with neither side asleep (`rtt_spin`) and a wake-up per batch of replies.
    pub cpu_us: f64,
    /// Latency added per request: one round trip across CPUs (`rtt_cross`).
    pub latency_us: f64,
}

/// `r`'s prediction from `report`'s calibration; `None` without one, or for a model or
/// workload it did not time.
pub fn predict(report: &BenchReport, r: &ScaleOutRecord) -> Option<Predicted> {
    let calibration = report.calibration.as_ref()?;
    let model = crate::models::find(&Variant::split(&r.model).model)?;
    let fib = calibration.fib_us(r.n)?;
    let interpreted = calibration.fib_interpreted_us(r.n).unwrap_or(0.0);
    let copies = r.copies.max(1);
    let per_copy = (r.clients / copies).max(1);
    let base = regime_model_costs(
        calibration,
        report.regime(&r.regime),
        model,
        per_copy,
        fib,
        interpreted,
    )?;
    let costs = Costs {
        cpus: r.cpus_per_copy.max(1),
        workers: model.workers.default_for(r.cpus_per_copy.max(1)),
        offload: Variant::split(&r.model).offload,
        // The load generator's CPUs, counted once over the copies.
        client_cpus: match base.client_cpus {
            0 => 0,
            n => (n / copies).max(1),
        },
        ..base
    };
    let p = predict_costs(model.cost, &costs);
    let n = copies as f64;
    let hop = r.way.balance().map(|_| Hop {
        cpu_us: calibration.balancer_cpu.map_or_else(
            || base.rtt_spin + base.wake_up / model.cost.replies_per_wake(&costs).max(1.0),
            |m| m.median_us,
        ),
        latency_us: base.rtt_cross,
    });
    let balancer_us = hop.map_or(0.0, |h| h.cpu_us);
    // The machine's CPUs: where nothing is pinned, copies, load generator and balancer
    // share them all; pinned, a balancer on CPUs of its own is bound by its threads, one
    // on the server's CPUs shares them with the copies.
    let whole = Costs {
        clients: r.clients,
        cpus: r.shared_cpus.unwrap_or(r.cpus_per_copy * copies).max(1),
        ..costs
    };
    let machine = machine_bound(calibration, &whole, model, false);
    let cap = match (r.shared_cpus, r.balancer, &machine) {
        (Some(cpus), _, Some(m)) => {
            Some(cpus as f64 * 1e6 / (m.server_us + m.client_us + balancer_us))
        }
        (None, Some((threads, false)), _) => Some(threads as f64 * 1e6 / balancer_us.max(1e-3)),
        (None, Some((_, true)), Some(m)) => {
            Some(whole.cpus as f64 * 1e6 / (m.server_us + balancer_us))
        }
        _ => None,
    };
    // The hop's latency: a closed loop of `clients` waits it out on every request.
    let through = |x: f64| {
        let x = match hop {
            Some(h) if x > 0.0 => 1e6 / (1e6 / x + h.latency_us / r.clients.max(1) as f64),
            _ => x,
        };
        cap.map_or(x, |c| x.min(c))
    };
    let (low, high) = (through(p.low * n), through(p.high * n));
    Some(Predicted {
        rps: p.rps.map_or((low + high) / 2.0, |x| through(x * n)),
        low,
        high,
        range: p.rps.is_none() && high > low * (1.0 + THRESHOLD),
        hop,
        machine_rps: cap,
    })
}

/// A cell's measured median against its prediction: the ratio (against the nearest end
/// of a range, 1 inside it) and, where it is more than [`THRESHOLD`] off, the reason.
pub fn check(report: &BenchReport, r: &ScaleOutRecord) -> Option<Checked> {
    let p = predict(report, r)?;
    let measured = median(&r.throughput_rps);
    let ratio = match p.range {
        true if measured >= p.low && measured <= p.high => 1.0,
        true if measured < p.low => measured / p.low.max(1e-9),
        true => measured / p.high.max(1e-9),
        false => measured / p.rps.max(1e-9),
    };
    let off = (ratio - 1.0).abs() > THRESHOLD;
    let reason = off.then(|| reason(r, &p, measured, ratio));
    Some((p, ratio, reason))
}

/// The share of requests each copy served, 0-1, in order.
pub fn shares(r: &ScaleOutRecord) -> Vec<f64> {
    let total: u64 = r.per_copy.iter().sum();
    r.per_copy
        .iter()
        .map(|&c| match total {
            0 => 0.0,
            t => c as f64 / t as f64,
        })
        .collect()
}

/// The busiest copy's share over an even one (1: even; `copies`: one copy took all).
pub fn imbalance(r: &ScaleOutRecord) -> f64 {
    let shares = shares(r);
    shares.iter().copied().fold(0.0, f64::max) * shares.len().max(1) as f64
}

/// The repetitions' spread, (max − min) / median.
pub fn spread(r: &ScaleOutRecord) -> f64 {
    let m = median(&r.throughput_rps);
    let max = r.throughput_rps.iter().copied().fold(0.0, f64::max);
    let min = r
        .throughput_rps
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    match m > 0.0 {
        true => (max - min) / m,
        false => 0.0,
    }
}

/// A cell's prediction, measured / predicted, and where off, why (which, and words).
pub type Checked = (Predicted, f64, Option<(Why, String)>);

/// Which reason a cell off its prediction has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The machine's CPUs, at the CPU per request the run measured.
    Machine,
    /// The copies served unevenly.
    Uneven,
    /// HAProxy spent more than its calibrated cost.
    Balancer,
    /// The repetitions disagree.
    Noisy,
    Unexplained,
}

/// Why a cell is off its prediction: the first of these that the record shows.
fn reason(r: &ScaleOutRecord, p: &Predicted, measured: f64, ratio: f64) -> (Why, String) {
    let server = (!r.server_cpu_us.is_empty()).then(|| median(&r.server_cpu_us));
    let client = (!r.client_cpu_us.is_empty()).then(|| median(&r.client_cpu_us));
    let balancer = (!r.balancer_cpu_us.is_empty()).then(|| median(&r.balancer_cpu_us));
    if let (Some(cpus), Some(server)) = (r.shared_cpus, server) {
        let all = server + client.unwrap_or(0.0) + balancer.unwrap_or(0.0);
        let bound = cpus as f64 * 1e6 / all.max(1e-3);
        if measured >= 0.85 * bound && p.low > bound {
            let hop = balancer.map_or(String::new(), |b| format!(", HAProxy ({b:.0} µs)"));
            return (
                Why::Machine,
                format!(
                    "held by the machine's {cpus} CPUs, shared by the copies ({server:.0} µs), the load generator ({:.0} µs){hop} of CPU per request: at most {} req/s, which the formulas leave out",
                    client.unwrap_or(0.0),
                    crate::units::thousands(bound)
                ),
            );
        }
    }
    // Pinned, HAProxy on the server's CPUs: the copies and the balancer share them.
    if let (None, Some((_, true)), Some(server), Some(b)) =
        (r.shared_cpus, r.balancer, server, balancer)
    {
        let cpus = r.cpus_per_copy * r.copies;
        let bound = cpus as f64 * 1e6 / (server + b).max(1e-3);
        if measured >= 0.85 * bound && p.low > bound {
            return (
                Why::Machine,
                format!(
                    "held by the server's {cpus} CPUs, shared by the copies ({server:.0} µs) and HAProxy ({b:.0} µs of CPU per request): at most {} req/s, which the formulas leave out",
                    crate::units::thousands(bound)
                ),
            );
        }
    }
    let uneven = imbalance(r);
    if r.copies > 1 && uneven > 1.0 + THRESHOLD {
        return (
            Why::Uneven,
            format!(
                "uneven: the busiest copy served {:.0}% of the requests (an even share is {:.0}%), and a closed loop waits on it",
                uneven / r.copies as f64 * 100.0,
                100.0 / r.copies as f64
            ),
        );
    }
    if let (Some(hop), Some(b)) = (p.hop, balancer)
        && b > hop.cpu_us * (1.0 + THRESHOLD)
    {
        return (
            Why::Balancer,
            format!(
                "HAProxy spent {b:.0} µs of CPU per request, {:.1}x the {:.0} µs it was priced at (its calibrated or computed cost)",
                b / hop.cpu_us.max(1e-3),
                hop.cpu_us
            ),
        );
    }
    if spread(r) > 0.15 {
        return (
            Why::Noisy,
            format!(
                "noisy: its repetitions spread over {:.0}% of the median, so one median cannot be held to the prediction",
                spread(r) * 100.0
            ),
        );
    }
    (
        Why::Unexplained,
        format!("unexplained: {ratio:.2}x the prediction"),
    )
}

/// Where the way's rows differ from `process` by design, for the tables' intro.
pub fn way_note(way: Way) -> &'static str {
    match way {
        Way::Process => "one process, every server CPU",
        Way::ReusePort => "a socket per copy on one port, the kernel's hash",
        Way::OneQueue => "one socket and accept queue shared by the copies",
        Way::Haproxy(_) => "copies on their own ports behind HAProxy",
    }
}
