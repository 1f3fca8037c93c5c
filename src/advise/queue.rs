//! Latency in an open loop: requests arrive at a rate whatever the server does, so
//! they queue when the server's parallel servers are all busy. `fiblab advise --rate`
//! predicts the queue with the M/G/c approximation of Allen and Cunneen:
//!
//! ```text
//! c        servers: requests the model works on at once on the CPU (its CPUs, at
//!          most its cap on requests at once and the connections)
//! S        the service time on one of them: c / capacity (capacity from the cost
//!          formula, req/s), so that c servers of S serve the capacity
//! a = λS   the offered load in servers; ρ = a / c < 1, else the queue grows
//! C(c, a)  Erlang C, the chance a request waits at all (M/M/c)
//! Wq       = C(c, a) / (c/S - λ) · (Ca² + Cs²) / 2        the mean wait in queue
//! ```
//!
//! Sources: Erlang's C formula and the M/M/c mean wait (Kleinrock, *Queueing Systems*
//! vol. 1, 1975, §3.5; Harchol-Balter, *Performance Modeling and Design of Computer
//! Systems*, 2013, ch. 14); the (Ca² + Cs²) / 2 correction for general arrivals and
//! service (Allen, *Probability, Statistics, and Queueing Theory*, 1990, the
//! Allen-Cunneen approximation; Kingman's formula for c = 1). `Ca²` is the squared
//! coefficient of variation of the gaps between arrivals: 1 for independent users
//! (Poisson), which the advice assumes, 0 for `fiblab load --rate`, which sends on an
//! even schedule as wrk2 does (a measured open loop queues less than predicted); `Cs²`
//! that of the service times, 0 for one fib(n) (M/D/c: half M/M/c's wait), larger for a
//! mix.
//!
//! The 99th percentile of the wait takes the wait of a request that waits as
//! exponential (exact for M/M/c): `P(Wq > t) = C · exp(-t C / Wq)`, so
//! `t99 = (Wq / C) · ln(C / 0.01)` where more than 1% wait, else 0.

use serde::Serialize;

/// Squared coefficient of variation of the gaps between arrivals the advice assumes:
/// 1, a service's independent users (Poisson arrivals, the M of M/G/c). `fiblab load
/// --rate` sends on an even schedule (wrk2's constant throughput, 0), so a measured
/// open loop queues less than predicted: the prediction errs on the safe side.
pub const POISSON_ARRIVALS: f64 = 1.0;

/// Erlang C: the chance an arrival waits at all in an M/M/c queue of `c` servers at an
/// offered load of `a` servers (`a = λS`); 1 where `a >= c` (every arrival waits).
/// Computed from Erlang B's recursion, stable for thousands of servers.
pub fn erlang_c(c: usize, a: f64) -> f64 {
    let c = c.max(1);
    if a >= c as f64 {
        return 1.0;
    }
    if a <= 0.0 {
        return 0.0;
    }
    // Erlang B: B(0) = 1, B(k) = a B(k-1) / (k + a B(k-1)).
    let b = (1..=c).fold(1.0, |b, k| a * b / (k as f64 + a * b));
    let c = c as f64;
    c * b / (c - a * (1.0 - b))
}

/// The wait in queue of an open loop, µs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Queue {
    /// Erlang C: the chance a request waits at all.
    pub waits: f64,
    pub mean_us: f64,
    pub p99_us: f64,
    /// Utilization λ / capacity.
    pub utilization: f64,
}

/// The queue at `rate` req/s before `servers` parallel servers that together serve
/// `capacity` req/s, `ca2` and `cs2` the arrivals' and service times' squared
/// coefficients of variation; `None` at or over capacity, where it grows without bound.
pub fn queue(servers: usize, capacity: f64, rate: f64, ca2: f64, cs2: f64) -> Option<Queue> {
    if rate.is_nan() || rate >= capacity || capacity <= 0.0 {
        return None;
    }
    let c = servers.max(1);
    let service_s = c as f64 / capacity;
    let a = rate * service_s;
    let waits = erlang_c(c, a);
    let mm_c = waits / (capacity - rate);
    let mean_s = mm_c * (ca2 + cs2) / 2.0;
    let p99_s = match waits > 0.01 && mean_s > 0.0 {
        true => (mean_s / waits) * (waits / 0.01).ln(),
        false => 0.0,
    };
    Some(Queue {
        waits,
        mean_us: mean_s * 1e6,
        p99_us: p99_s * 1e6,
        utilization: rate / capacity,
    })
}

/// The squared coefficient of variation of service times `(cost µs, weight)` each
/// served with `overhead_us` more: variance over the squared mean.
pub fn cs2(classes: &[(f64, f64)], overhead_us: f64) -> f64 {
    let total: f64 = classes.iter().map(|(_, w)| w).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let mean = classes
        .iter()
        .map(|(s, w)| (s + overhead_us) * w)
        .sum::<f64>()
        / total;
    let var = classes
        .iter()
        .map(|(s, w)| (s + overhead_us - mean).powi(2) * w)
        .sum::<f64>()
        / total;
    match mean > 0.0 {
        true => var / (mean * mean),
        false => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erlang_c_matches_known_values() {
        // M/M/1: a request waits with chance ρ.
        assert!((erlang_c(1, 0.7) - 0.7).abs() < 1e-12);
        // Two servers at one server's load: 1/3 (B(2,1) = 0.2).
        assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-12);
        // Ten servers at 8: 0.409 (Harchol-Balter's tables give 0.4092).
        assert!((erlang_c(10, 8.0) - 0.4092).abs() < 1e-3);
        assert_eq!(erlang_c(3, 3.0), 1.0);
        assert_eq!(erlang_c(3, 0.0), 0.0);
        // Thousands of servers, no overflow.
        let big = erlang_c(5000, 4900.0);
        assert!(big > 0.0 && big < 1.0, "{big}");
    }

    #[test]
    fn mm1_wait_is_rho_over_mu_minus_lambda() {
        // M/M/1 (Ca² = Cs² = 1) at 1,000 req/s capacity and 500 offered: Wq = ρ/(μ-λ)
        // = 0.5 / 500 s = 1 ms; P(Wq > t) = ρ e^{-(μ-λ)t}: t99 = ln(50)/500 s.
        let q = queue(1, 1000.0, 500.0, 1.0, 1.0).unwrap();
        assert!((q.mean_us - 1000.0).abs() < 1e-6, "{q:?}");
        assert!((q.p99_us - 50f64.ln() / 500.0 * 1e6).abs() < 1e-3, "{q:?}");
        // Even arrivals and one service time: no queue (D/D/1 below capacity).
        assert_eq!(queue(1, 1000.0, 900.0, 0.0, 0.0).unwrap().mean_us, 0.0);
        // At or over capacity: no steady state.
        assert_eq!(queue(2, 1000.0, 1000.0, 1.0, 1.0), None);
    }

    #[test]
    fn a_heavy_tailed_mix_varies() {
        // One request in a hundred 100x the others: Cs² = 99·99²/100 / 1.99² ≈ 24.
        let c = cs2(&[(1.0, 99.0), (100.0, 1.0)], 0.0);
        assert!((c - 24.5).abs() < 0.3, "{c}");
        assert_eq!(cs2(&[(5.0, 1.0)], 3.0), 0.0);
    }
}
