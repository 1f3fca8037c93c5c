//! Measuring one row: a fresh server holding the idle connections, what it holds
//! then (from `/proc`), and the active clients' load among them.

use super::*;

/// A fresh server for `subject` holding `idle` connections, measured.
pub(super) fn measure_one(
    run: &Run<'_>,
    c: &scenario::Connections,
    subject: &Subject,
    idle: usize,
) -> io::Result<ConnectionRecord> {
    let most =
        c.idle.iter().max().copied().unwrap_or(idle) + c.active.iter().max().copied().unwrap_or(1);
    let server = run.serve_with(&Row::Model(subject.variant.clone()), |config| {
        // Room for every client the experiment brings, so the model's own limits show.
        config.max_conns = most + 64;
        config.stack_size = subject.stack_size;
    })?;
    let addr = server.addr;
    let pid = server
        .pid
        .ok_or_else(|| io::Error::other("the server's process is gone"))?;
    // One request first: a pool, a runtime or a worker started lazily is in the baseline.
    drop(hold(&HoldSpec::fib1(addr, 1))?);
    std::thread::sleep(Duration::from_millis(200));
    let before = Usage::of_tree(pid)?;
    let held = hold(&HoldSpec::fib1(addr, idle))?;
    // Let the server settle: buffers returned, tasks parked, threads asleep.
    std::thread::sleep(Duration::from_millis(300));
    let after = Usage::of_tree(pid)?;
    let open = held.open();
    let idle_read_us = held.read_sweep_us(9).map(round3);
    let per = |after: f64, before: f64| {
        (open > 0).then(|| round3((after - before).max(0.0) / open as f64))
    };
    let mut active = Vec::new();
    for &clients in &c.active {
        if run.interrupted() {
            break;
        }
        active.push(active_load(run, c, addr, clients)?);
    }
    let record = ConnectionRecord {
        regime: String::new(),
        row: subject.label.clone(),
        model: subject.variant.model.clone(),
        stack_size: subject.stack_size,
        idle,
        held: held.answered,
        waiting: held.unanswered,
        outcome: held.describe(),
        stopped: held.stopped.clone(),
        open_s: round3(held.took.as_secs_f64()),
        descriptors: per(after.descriptors as f64, before.descriptors as f64),
        rss_kib: per(after.rss_kib as f64, before.rss_kib as f64),
        vsz_kib: per(after.vsz_kib as f64, before.vsz_kib as f64),
        threads: per(after.threads as f64, before.threads as f64),
        idle_read_us,
        active,
    };
    drop(held);
    server.stop();
    Ok(record)
}

/// `clients` closed loops of fib(n) for the scenario's duration, among the idle ones.
pub(super) fn active_load(
    run: &Run<'_>,
    c: &scenario::Connections,
    addr: SocketAddr,
    clients: usize,
) -> io::Result<ActiveLoad> {
    let mix = Mix::new(vec![Class::fib(c.n, 1, true)]).map_err(io::Error::other)?;
    let spec = LoadSpec {
        stop: Stop::After(c.duration),
        warmup: c.warmup,
        // A model that answers nobody more shows it within the run.
        timeout: c.duration,
        ..run.spec(addr, mix, clients)
    };
    let report = run.load(&spec, Hooks::default())?;
    let latency = report
        .classes
        .first()
        .map(|class| class.latency_us.clone())
        .unwrap_or_default();
    Ok(ActiveLoad {
        clients,
        throughput_rps: report.throughput_rps.round(),
        requests_ok: report.requests_ok,
        p50_us: latency.p50,
        p99_us: latency.p99,
        p99_9_us: latency.p99_9,
        timeouts: report.errors.timeout,
        err_replies: report.errors.err_reply,
        failed: report.errors.connect + report.errors.reset + report.errors.wrong,
        histogram: report
            .classes
            .first()
            .map(|class| class.histogram.clone())
            .unwrap_or_default(),
    })
}

pub(super) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
