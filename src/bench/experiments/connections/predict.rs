//! What each model should cost per connection, from its cost model and the
//! calibration: the reply time an idle connection adds, the address space and
//! descriptors a connection's threads take (glibc's and Rust's constants).

use super::*;

/// A guard page below each thread's stack, KiB.
pub(super) const GUARD_KIB: f64 = 4.0;
/// Rust's default stack for a spawned thread, bytes.
pub(super) const DEFAULT_STACK: usize = 2 << 20;
/// µs a request of one active client pays per idle connection, from the calibration,
/// and the rule in words. `None`: the model's cost model has no such term.
pub fn per_idle_us(model: &str, calibration: &Calibration) -> Option<(f64, String)> {
    let cost = crate::models::find(model)?.cost;
    match cost {
        CostModel::SpinLoop => calibration.read_idle.map(|m| {
            (
                m.median_us,
                format!(
                    "one round of the loop reads every connection ({:.3} µs per idle read, calibrated), and a request waits about one round",
                    m.median_us
                ),
            )
        }),
        CostModel::EventLoop(Readiness::Select) => calibration.select_idle_1000.map(|m| {
            let per = m.median_us / 1000.0;
            (
                per,
                format!(
                    "each request passes one blocking select, which registers on every watched descriptor, sleeps, scans them all again and unregisters: {per:.3} µs per idle descriptor (calibrated)"
                ),
            )
        }),
        _ => Some((
            0.0,
            // Every cost model named: a new one must say what an idle connection costs.
            match cost {
                CostModel::EventLoop(Readiness::Epoll)
                | CostModel::WorkStealing
                | CostModel::PerCore => {
                    "epoll reports only the ready connections: an idle one costs a request nothing".to_string()
                }
                CostModel::EventLoop(Readiness::Completion) => {
                    "an idle connection is one armed multishot receive in the kernel, which completes only when bytes arrive: it costs a request nothing".to_string()
                }
                CostModel::OneAtATime
                | CostModel::ThreadPerConnection
                | CostModel::ConnectionPool
                | CostModel::Isolated
                | CostModel::ProcessPool
                | CostModel::Prefork
                | CostModel::EventLoop(Readiness::Select)
                | CostModel::SpinLoop => {
                    "each connection's thread sleeps in its own read: the kernel wakes only the one with data".to_string()
                }
            },
        )),
    }
}

/// The reply time of one active client at the largest idle count `row` held, predicted
/// from its time at the smallest: `(idle, predicted p50, measured p50, why)`. A loop
/// that tries every socket pays a round of reads, each at the cost measured at that
/// count (the caches hold fewer sockets' state as they grow); the others pay the
/// calibrated cost per idle connection, or none.
pub(super) fn predicted_p50(
    r: &BenchReport,
    c: &ConnectionRecords,
    row: &str,
) -> Option<(usize, f64, u64, String)> {
    let (first, last) = answered_span(c, row)?;
    let base = load(first, 1)?.p50_us as f64;
    let measured = load(last, 1)?.p50_us;
    let cost = crate::models::find(&first.model)?.cost;
    if cost == CostModel::SpinLoop
        && let (Some(a), Some(b)) = (first.idle_read_us, last.idle_read_us)
    {
        let round = |x: &ConnectionRecord, us: f64| x.held as f64 * us;
        let predicted = base - round(first, a) + round(last, b);
        return Some((
            last.idle,
            predicted,
            measured,
            format!(
                "a request waits about one round of the loop, a read of every connection: {a:.3} µs per idle read over {} sockets, {b:.3} over {} (measured at each count)",
                thousands(first.held as f64),
                thousands(last.held as f64)
            ),
        ));
    }
    let (per, why) = per_idle_us(&first.model, r.calibration.as_ref()?)?;
    // The idle connections the loop holds, not those asked for (select stops at 1024).
    let grown = last.held.saturating_sub(first.held) as f64;
    Some((last.idle, base + per * grown, measured, why))
}

/// The address space a connection's threads reserve, KiB: their stacks and guard pages.
pub(super) fn predicted_vsz(record: &ConnectionRecord) -> Option<f64> {
    let threads = record.threads?;
    (threads >= 0.5).then(|| {
        let stack = record.stack_size.unwrap_or(DEFAULT_STACK) as f64 / 1024.0;
        // `isolates` runs a second thread per connection with the default stack.
        let first = stack + GUARD_KIB;
        let others = (threads - 1.0).max(0.0) * (DEFAULT_STACK as f64 / 1024.0 + GUARD_KIB);
        first + others
    })
}

/// glibc's malloc gives new threads arenas of their own, up to 8 per CPU, each
/// reserving 64 MiB of address space (`M_ARENA_MAX`, `HEAP_MAX_SIZE` on 64-bit): at
/// most this much more per connection, KiB, when `open` connections brought them.
pub(super) fn arena_share_kib(cpus: usize, open: usize) -> f64 {
    (8 * cpus.max(1)) as f64 * 65536.0 / open.max(1) as f64
}

/// The address space per connection predicted for `record`, KiB: its threads' stacks,
/// and up to a share of the allocator's arenas. `None` without a thread per connection.
pub(super) fn predicted_vsz_range(
    r: &BenchReport,
    record: &ConnectionRecord,
) -> Option<(f64, f64)> {
    let stacks = predicted_vsz(record)?;
    let cpus = r.calibration.as_ref().map_or(1, |c| c.machine.cpus);
    Some((
        stacks,
        stacks + arena_share_kib(cpus, record.held + record.waiting),
    ))
}

/// How far this machine's round trip wandered during the run, µs: the spread of the
/// unpinned round trips the calibration measured at its start, between regimes and at
/// its end. A reply time predicted flat is kept within it.
pub(super) fn drift_us(r: &BenchReport) -> f64 {
    let runs = r
        .calibration
        .as_ref()
        .map(|c| c.round_trips.unpinned.clone())
        .unwrap_or_default();
    let hi = runs.iter().copied().fold(f64::MIN, f64::max);
    let lo = runs.iter().copied().fold(f64::MAX, f64::min);
    if runs.len() >= 2 { hi - lo } else { 0.0 }
}

/// The descriptors per open connection `record`'s model should hold, and why.
pub(super) fn predicted_descriptors(record: &ConnectionRecord) -> (f64, &'static str) {
    use crate::models::Clients;
    let open = (record.held + record.waiting).max(1) as f64;
    match crate::models::find(&record.model).map(|m| m.clients) {
        Some(Clients::OneAtATime | Clients::Sharded) => (
            record.held as f64 / open,
            "only the clients it serves are accepted; the others wait in the kernel's backlog and hold none of its descriptors",
        ),
        _ => (
            1.0,
            "the connection's own socket; a duplicate for a probe or a tracker would make it 2 or 3",
        ),
    }
}
