//! Every model predicted for a service: the cost formula at its load, held to Little's
//! law, the machine's shared CPUs and the model's own caps; an open loop's queue; the
//! GIL's rows; the tiers and the model advised (see the module docs of `advise`).

use super::{ModelAdvice, Service, queue, words};
use crate::bench::experiments::waiting::concurrency_cap;
use crate::bench::predict::machine::machine_bound;
use crate::bench::predict::{THRESHOLD, predict_costs, regime_model_costs};
use crate::bench::scenario::RegimePlan;
use crate::calibrate::Calibration;
use crate::calibrate::work::from_table;
use crate::models::{CostModel, MODELS, Model};

/// `select`'s limit on the descriptors one call may watch (glibc's `FD_SETSIZE`).
pub const FD_SETSIZE: usize = 1024;

/// Descriptors every server holds besides its connections: the listener, stdin,
/// stdout, stderr, and a few a runtime opens (epoll, eventfd, timerfd).
const BASE_DESCRIPTORS: usize = 8;

/// The machine a prediction is for: its calibration, and where server and load run
/// on it.
#[derive(Debug, Clone, Copy)]
pub struct On<'a> {
    pub calibration: &'a Calibration,
    /// A bench report's regime (the 16-core run's `pinned`: server on 8 CPUs, load on
    /// 8 others); `None`: unpinned, server, load and downstream sharing every CPU, as
    /// `fiblab advise` measures here.
    pub regime: Option<&'a RegimePlan>,
}

impl<'a> On<'a> {
    /// Unpinned on `calibration`'s machine.
    pub fn unpinned(calibration: &'a Calibration) -> On<'a> {
        On {
            calibration,
            regime: None,
        }
    }
}

/// The fib tables of `calibration` as timers (µs), extended by φ per step of n.
pub(super) struct FibCosts {
    native: Vec<(u32, f64)>,
    interpreted: Vec<(u32, f64)>,
}

impl FibCosts {
    pub(super) fn of(calibration: &Calibration) -> FibCosts {
        let table = |t: &[crate::calibrate::FibCost]| {
            t.iter()
                .map(|f| (f.n, f.cost.median_us))
                .collect::<Vec<_>>()
        };
        FibCosts {
            native: table(&calibration.fib),
            interpreted: table(&calibration.fib_interpreted),
        }
    }

    pub(super) fn native(&self, n: u32) -> Option<f64> {
        (!self.native.is_empty()).then(|| from_table(&self.native)(n))
    }

    fn interpreted(&self, n: u32) -> Option<f64> {
        (!self.interpreted.is_empty()).then(|| from_table(&self.interpreted)(n))
    }

    /// The mean over `service`'s classes of `cost`, weighted.
    pub(super) fn mean(service: &Service, cost: impl Fn(u32) -> Option<f64>) -> Option<f64> {
        let classes = service.classes();
        let total: f64 = classes.iter().map(|&(_, w)| f64::from(w)).sum();
        let sum = classes
            .iter()
            .map(|&(n, w)| cost(n).map(|c| c * f64::from(w)))
            .sum::<Option<f64>>()?;
        (total > 0.0).then(|| sum / total)
    }

    /// Each class's cost in `service` and its weight, cheapest first.
    fn classes(&self, service: &Service) -> Option<Vec<(f64, f64)>> {
        let mut out = service
            .classes()
            .iter()
            .map(|&(n, w)| self.native(n).map(|c| (c, f64::from(w))))
            .collect::<Option<Vec<_>>>()?;
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some(out)
    }
}

/// The cost of the class a request at the 99th percentile of `classes` (cost µs,
/// weight; cheapest first) belongs to.
fn class_at_p99(classes: &[(f64, f64)]) -> f64 {
    let total: f64 = classes.iter().map(|(_, w)| w).sum();
    let mut seen = 0.0;
    for &(cost, w) in classes {
        seen += w;
        if seen > 0.99 * total {
            return cost;
        }
    }
    classes.last().map_or(0.0, |c| c.0)
}

/// Threads and processes a model runs with `clients` connections and `workers`.
fn threads_of(model: &Model, clients: usize, workers: usize) -> (usize, usize) {
    match model.cost {
        CostModel::OneAtATime | CostModel::EventLoop(_) | CostModel::SpinLoop => (1, 1),
        // An acceptor and a thread per connection.
        CostModel::ThreadPerConnection => (clients + 1, 1),
        CostModel::ConnectionPool => (workers + 1, 1),
        // A connection thread and its interpreter's thread per connection.
        CostModel::Isolated => (2 * clients + 1, 1),
        CostModel::WorkStealing | CostModel::PerCore => (workers, 1),
        // Connection threads, and a process per worker.
        CostModel::ProcessPool => (clients + 1 + workers, workers + 1),
        CostModel::Prefork => (workers, workers),
    }
}

/// Predicts `model` for `service` on `calibration`'s machine; `None` where the
/// calibration cannot (no round trip, or no interpreter timing for `isolates`).
fn predict_model(
    on: &On<'_>,
    fib: &FibCosts,
    model: &'static Model,
    service: &Service,
) -> Option<ModelAdvice> {
    let native = FibCosts::mean(service, |n| fib.native(n))?;
    let interpreted = match model.cost {
        CostModel::Isolated => FibCosts::mean(service, |n| fib.interpreted(n))?,
        _ => FibCosts::mean(service, |n| fib.interpreted(n)).unwrap_or(0.0),
    };
    let waits = service.wait_us > 0.0;
    let at = |clients: usize| {
        regime_model_costs(
            on.calibration,
            on.regime,
            model,
            clients,
            native,
            interpreted,
        )
        .map(|mut c| {
            // The downstream's send and receive, on the server's CPU.
            if waits {
                c.fib += c.rtt_spin / 2.0;
                c.fib_interpreted += c.rtt_spin / 2.0;
            }
            c
        })
    };
    let costs = at(service.clients)?;
    let cpu = predict_costs(model.cost, &costs);
    let alone = predict_costs(model.cost, &at(1)?);
    let path_alone: f64 = alone.terms.iter().map(|t| t.us).sum::<f64>().max(1e-3);
    let workers = costs.workers;
    let cap = concurrency_cap(model, workers);
    let served = cap.map_or(service.clients, |cap| cap.min(service.clients));
    // Without a wait the formula at N clients is the whole model (it knows how N
    // clients pair with the server's threads); a wait holds each request longer.
    let little = match waits {
        true => served as f64 * 1e6 / (service.wait_us + path_alone),
        false => f64::INFINITY,
    };
    let machine = match costs.shared {
        true => machine_bound(on.calibration, &costs, model, waits),
        false => None,
    };
    let bound = little.min(machine.as_ref().map_or(f64::INFINITY, |m| m.rps));
    let (mut low, mut high, mut rps) = (
        cpu.low.min(bound),
        cpu.high.min(bound),
        cpu.rps.map(|x| x.min(bound)),
    );
    // An open loop: the capacity above, the rate offered below it.
    let capacity = [high, low];
    let mut open = None;
    if let Some(rate) = service.rate {
        let servers = model
            .work_cpus(false, costs.cpus)
            .min(cap.unwrap_or(usize::MAX))
            .min(service.clients)
            .max(1);
        open = Some(open_loop(
            fib, service, servers, capacity, rate, path_alone, native,
        )?);
        rps = match rate < low {
            true => Some(rate),
            false => None,
        };
        (low, high) = (low.min(rate), high.min(rate));
    }
    let limit = match machine {
        Some(m) if m.rps < cpu.high && m.rps <= little => m.describe(),
        _ if little < cpu.high => format!(
            "Little's law: {} request{} in flight, each {} µs of wait and path",
            crate::units::thousands(served as f64),
            if served == 1 { "" } else { "s" },
            crate::units::thousands(service.wait_us + path_alone)
        ),
        _ => cpu.limit.describe().to_string(),
    };
    let limit = match service.rate {
        Some(rate) => format!(
            "{:.0}% busy: capacity {} req/s, {limit}",
            100.0 * rate / capacity[0].max(1e-9),
            words::capacity(capacity)
        ),
        None => limit,
    };
    let (threads, processes) = threads_of(model, service.clients, workers);
    let per_connection = if waits { 2 } else { 1 };
    let descriptors = BASE_DESCRIPTORS
        + service.clients * per_connection
        + match model.cost {
            // Each worker's two pipes, both ends held by the parent.
            CostModel::ProcessPool => 4 * workers,
            _ => 0,
        };
    let memory_kib = on.calibration.thread_resident_kib.map(|t| {
        (threads + processes).saturating_sub(2) as f64 * t.median_us
            + service.clients as f64 * model.idle_target_kib.unwrap_or(0.0)
    });
    let limit_fds = on.calibration.machine.descriptor_limit as usize;
    let cannot = match cap {
        Some(cap) if cap < service.clients => Some(format!(
            "serves {cap} connection{} at once ({}); {} {} are never answered",
            if cap == 1 { "" } else { "s" },
            match model.clients {
                crate::models::Clients::OneAtATime => "one at a time".to_string(),
                crate::models::Clients::Sharded => format!("{workers} one-at-a-time copies"),
                crate::models::Clients::Concurrent =>
                    format!("{workers} workers, each holding a connection"),
            },
            match service.rate {
                None => "in a closed loop the other",
                Some(_) => "the requests on the other",
            },
            match service.rate {
                None => format!(
                    "{} clients",
                    crate::units::thousands((service.clients - cap) as f64)
                ),
                Some(_) => format!(
                    "{} connections",
                    crate::units::thousands((service.clients - cap) as f64)
                ),
            }
        )),
        _ if service.rate.is_some_and(|r| r >= capacity[0]) => Some(format!(
            "serves at most {} req/s, under the {} offered: in an open loop its queue grows without bound",
            crate::units::thousands(capacity[0]),
            crate::units::thousands(service.rate.unwrap_or(0.0))
        )),
        _ if matches!(
            model.cost,
            CostModel::EventLoop(crate::models::Readiness::Select)
        ) && descriptors > FD_SETSIZE =>
        {
            Some(format!(
                "would watch {} descriptors, past select's FD_SETSIZE of {FD_SETSIZE}",
                crate::units::thousands(descriptors as f64)
            ))
        }
        _ if limit_fds > 0 && descriptors > limit_fds => Some(format!(
            "needs {} descriptors, past the process's limit of {} (raise `ulimit -n`)",
            crate::units::thousands(descriptors as f64),
            crate::units::thousands(limit_fds as f64)
        )),
        _ => None,
    };
    let clients = service.clients as f64;
    let (mean_latency_us, p99_us) = match open {
        Some(o) => (o.mean_us, Some(o.p99_us)),
        None => (
            [
                clients * 1e6 / high.max(1e-9),
                clients * 1e6 / low.max(1e-9),
            ],
            None,
        ),
    };
    let misses_slo = service
        .slo_p99_us
        .is_some_and(|slo| p99_us.map_or(mean_latency_us[0], |p| p[0]) > slo);
    Some(ModelAdvice {
        model: model.name,
        rps,
        low,
        high,
        mean_latency_us,
        p99_us,
        capacity: service.rate.map(|_| capacity),
        limit,
        threads,
        processes,
        descriptors,
        memory_kib,
        cannot,
        misses_slo,
        tier: 0,
    })
}

/// An open loop's latency at the two ends of a capacity range.
struct OpenLatency {
    mean_us: [f64; 2],
    p99_us: [f64; 2],
}

/// The latency of `rate` req/s offered to `servers` parallel servers of `capacity`
/// req/s (`[high, low]`): one request's path alone and its wait, plus the queue
/// ([`queue::queue`], Poisson arrivals, the mix's spread of service times). The 99th percentile takes the class a request at the
/// 99th percentile belongs to. At a capacity the rate reaches, the other end's figure
/// stands for both (the queue has no steady state there). `None`: the calibration
/// times no fib.
fn open_loop(
    fib: &FibCosts,
    service: &Service,
    servers: usize,
    capacity: [f64; 2],
    rate: f64,
    path_alone: f64,
    mean_fib: f64,
) -> Option<OpenLatency> {
    let classes = fib.classes(service)?;
    let base = path_alone + service.wait_us;
    let tail = base + class_at_p99(&classes) - mean_fib;
    let at = |cap: f64| {
        let overhead = (servers as f64 * 1e6 / cap - mean_fib).max(0.0);
        queue::queue(
            servers,
            cap,
            rate,
            queue::POISSON_ARRIVALS,
            queue::cs2(&classes, overhead),
        )
    };
    let (fast, slow) = match (at(capacity[0]), at(capacity[1])) {
        (Some(f), Some(s)) => (f, s),
        (Some(f), None) => (f, f),
        // Over capacity everywhere: the path alone, marked by `cannot`.
        _ => {
            let q = queue::Queue {
                waits: 0.0,
                mean_us: 0.0,
                p99_us: 0.0,
                utilization: 1.0,
            };
            (q, q)
        }
    };
    Some(OpenLatency {
        mean_us: [base + fast.mean_us, base + slow.mean_us],
        p99_us: [tail + fast.p99_us, tail + slow.p99_us],
    })
}

/// The thread models the GIL applies to (seed 002's Python servers), and their rows'
/// names.
pub const GIL_ROWS: [(&str, &str); 2] = [
    ("threads", "threads --gil"),
    ("threadpool", "threadpool --gil"),
];

/// `a` (a thread model) under a shared GIL: one thread runs the interpreter at a time,
/// so the CPU work of every request goes through one CPU, `X <= 1 / (fib + the
/// server's socket calls)`, while the waits still overlap (a thread waiting on its
/// socket has dropped the lock). The waiting experiment measures the same rows (its
/// `gil` rows). `None` for a model the GIL does not apply to.
fn under_gil(
    on: &On<'_>,
    fib: &FibCosts,
    service: &Service,
    a: &ModelAdvice,
) -> Option<ModelAdvice> {
    let (_, row) = GIL_ROWS.iter().find(|(m, _)| *m == a.model)?;
    let native = FibCosts::mean(service, |n| fib.native(n))?;
    let rtt_spin = on.calibration.rtt_spinning.map_or(0.0, |m| m.median_us);
    let calls = match service.wait_us > 0.0 {
        true => rtt_spin,
        false => rtt_spin / 2.0,
    };
    let one_cpu = 1e6 / (native + calls).max(1e-3);
    let mut g = a.clone();
    g.model = row;
    let gil = format!(
        "the GIL: one thread runs at a time, {} µs of fib and socket calls a request",
        crate::units::thousands(native + calls)
    );
    if let (Some(rate), Some([high, low])) = (service.rate, a.capacity) {
        // An open loop: the capacity under the lock, the rate offered below it, and the
        // interpreter one more queue, of one server, before the model's own.
        let capacity = [high.min(one_cpu), low.min(one_cpu)];
        g.capacity = Some(capacity);
        if one_cpu < high {
            g.limit = format!(
                "{:.0}% busy: capacity {} req/s, {gil}",
                100.0 * rate / capacity[0].max(1e-9),
                words::capacity(capacity)
            );
        }
        let classes = fib.classes(service)?;
        if let Some(q) = queue::queue(
            1,
            one_cpu,
            rate,
            queue::POISSON_ARRIVALS,
            queue::cs2(&classes, calls),
        ) {
            g.mean_latency_us = g.mean_latency_us.map(|m| m + q.mean_us);
            g.p99_us = g.p99_us.map(|p| p.map(|p| p + q.p99_us));
        }
        g.misses_slo = service
            .slo_p99_us
            .is_some_and(|slo| g.p99_us.map_or(g.mean_latency_us[0], |p| p[0]) > slo);
        (g.low, g.high) = (rate.min(capacity[1]), rate.min(capacity[0]));
        g.rps = (rate < capacity[1]).then_some(rate);
        if rate >= capacity[0] && g.cannot.is_none() {
            g.cannot = Some(format!(
                "serves at most {} req/s under the GIL, under the {} offered: in an open loop its queue grows without bound",
                crate::units::thousands(capacity[0]),
                crate::units::thousands(rate)
            ));
        }
    } else {
        if one_cpu < g.high {
            g.limit = gil;
        }
        g.low = g.low.min(one_cpu);
        g.high = g.high.min(one_cpu);
        g.rps = g.rps.map(|x| x.min(one_cpu));
        let clients = service.clients as f64;
        g.mean_latency_us = [
            clients * 1e6 / g.high.max(1e-9),
            clients * 1e6 / g.low.max(1e-9),
        ];
        g.misses_slo = service
            .slo_p99_us
            .is_some_and(|slo| g.mean_latency_us[0] > slo);
    }
    Some(g)
}

/// Every model's prediction for `service`, tiered (best first), and the advised one.
pub fn predict_all(on: &On<'_>, service: &Service) -> Vec<ModelAdvice> {
    let fib = FibCosts::of(on.calibration);
    let mut all: Vec<ModelAdvice> = MODELS
        .iter()
        .filter_map(|m| predict_model(on, &fib, m, service))
        .collect();
    if service.gil {
        let with_gil: Vec<ModelAdvice> = all
            .iter()
            .filter_map(|a| under_gil(on, &fib, service, a))
            .collect();
        all.extend(with_gil);
    }
    let best_low = all
        .iter()
        .filter(|a| a.serves())
        .map(|a| a.low)
        .fold(0.0, f64::max);
    for a in &mut all {
        a.tier = match a.serves() {
            false => 0,
            true if a.high >= best_low * (1.0 - THRESHOLD) => 1,
            true => 2,
        };
    }
    // Tier 1, then 2, then those that cannot serve; within a tier, fastest first.
    all.sort_by(|a, b| {
        let rank = |t: usize| if t == 0 { 3 } else { t };
        rank(a.tier)
            .cmp(&rank(b.tier))
            .then(unlike(b.middle(), a.middle()))
            // An open loop: the shorter tail first, then the more headroom.
            .then(match (a.p99_us, b.p99_us) {
                (Some(x), Some(y)) => unlike(x[0], y[0]),
                _ => std::cmp::Ordering::Equal,
            })
            .then(match (a.capacity, b.capacity) {
                (Some(x), Some(y)) => unlike(y[0], x[0]),
                _ => std::cmp::Ordering::Equal,
            })
    });
    all
}

/// `a` against `b`, equal within half a percent: figures the table prints alike must
/// not decide the advice (the first of the tied, in the table's order, is advised).
fn unlike(a: f64, b: f64) -> std::cmp::Ordering {
    match (a - b).abs() <= 0.005 * a.abs().max(b.abs()) {
        true => std::cmp::Ordering::Equal,
        false => a.total_cmp(&b),
    }
}

/// The tier-1 model that costs least: fewest threads, then descriptors, then the
/// fastest.
pub(super) fn advised(models: &[ModelAdvice]) -> Option<&ModelAdvice> {
    // The GIL's rows show what Python threads would do: a comparison, not a choice.
    let gil_row = |a: &&ModelAdvice| GIL_ROWS.iter().any(|(_, row)| *row == a.model);
    models
        .iter()
        .filter(|a| a.tier == 1 && !gil_row(a))
        .min_by(|a, b| {
            (a.threads + a.processes)
                .cmp(&(b.threads + b.processes))
                .then(a.descriptors.cmp(&b.descriptors))
                .then(unlike(b.middle(), a.middle()))
                // An open loop: all serve the rate; the most headroom (the shorter
                // tail follows from it).
                .then(match (a.capacity, b.capacity) {
                    (Some(x), Some(y)) => unlike(y[1], x[1]),
                    _ => std::cmp::Ordering::Equal,
                })
        })
}
