//! The waiting experiment's tables, plot and findings.

use plotters::prelude::*;

use super::{WaitingRecord, WaitingRecords, bound, share};
use crate::bench::canvas::{PlotError, err};
use crate::bench::results::{BenchReport, Finding, Plot, Table, Verdict, thousands};
use crate::bench::rules::{
    all, decide, finding, missing, ratio, ratio_ci, undecided_why, verdict, versus,
};
use crate::stats::Interval;

/// The delays measured, in order, ms.
fn delays(w: &WaitingRecords) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for r in &w.records {
        if !out.contains(&r.delay_ms) {
            out.push(r.delay_ms);
        }
    }
    out
}

/// The rows measured, in order.
fn rows(w: &WaitingRecords) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in &w.records {
        if !out.contains(&r.row) {
            out.push(r.row.clone());
        }
    }
    out
}

fn cell<'a>(
    w: &'a WaitingRecords,
    row: &str,
    delay: f64,
    clients: usize,
) -> Option<&'a WaitingRecord> {
    w.records
        .iter()
        .find(|r| r.row == row && r.delay_ms == delay && r.clients == clients)
}

/// The share of the bound as a table prints it: `0.97 [0.95–0.99]`.
fn share_text(r: &WaitingRecord) -> String {
    ratio_ci(&share(r))
}

pub(super) fn tables(w: &WaitingRecords) -> (Vec<Table>, Vec<String>) {
    let mut clients: Vec<usize> = w.records.iter().map(|r| r.clients).collect();
    clients.sort_unstable();
    clients.dedup();
    let mut tables = Vec::new();
    for delay in delays(w) {
        let mut header = vec!["model".to_string()];
        header.extend(
            clients
                .iter()
                .map(|c| format!("{c} clients: req/s (share of bound)")),
        );
        tables.push(Table {
            title: format!("Requests that wait {delay} ms on a downstream: throughput against Little's law"),
            intro: format!(
                "Each request waits for the downstream (`fiblab backend`, {}; its timers fire within the kernel's timer slack, about 50 µs), then computes fib({}). Closed loops. In brackets: the share of the cell's bound, the least of min(N, cap) / W (Little's law, W the wait the downstream really gave), the model's CPUs over its CPU per reply, and (nothing pinned) the machine's CPUs over the server's, the load generator's and the downstream's CPU per reply together; its interval is over the measured seconds.",
                asked(delay, w.jitter),
                w.n
            ),
            header,
            left: 1,
            text_last: false,
            rows: rows(w)
                .iter()
                .map(|row| {
                    let mut line = vec![format!("`{row}`")];
                    line.extend(clients.iter().map(|&c| match cell(w, row, delay, c) {
                        Some(r) => format!("{} ({})", thousands(r.throughput_rps), share_text(r)),
                        None => String::new(),
                    }));
                    line
                })
                .collect(),
        });
    }
    // The largest client count in detail: what each waiting request costs, where each stops.
    if let Some(&most) = clients.last() {
        let header = [
            "model",
            "wait (ms)",
            "req/s",
            "bound",
            "limit",
            "share",
            "p50 (ms)",
            "p99 (ms)",
            "no reply",
            "ERR replies",
            "waiting at once",
            "threads per waiting",
            "KiB per waiting",
            "server µs/req",
            "client µs/req",
            "downstream µs/req",
        ];
        let mut table_rows = Vec::new();
        for delay in delays(w) {
            for row in rows(w) {
                let Some(r) = cell(w, &row, delay, most) else {
                    continue;
                };
                let (b, limit) = bound(r);
                let per_waiting = |pair: Option<(u64, u64)>| match pair {
                    Some((before, after)) if r.most_waiting > 0 => format!(
                        "{:.2}",
                        after.saturating_sub(before) as f64 / r.most_waiting as f64
                    ),
                    _ => "–".to_string(),
                };
                table_rows.push(vec![
                    format!("`{row}`"),
                    format!("{delay} (got {:.2})", r.waited_ms),
                    thousands(r.throughput_rps),
                    thousands(b),
                    limit.label().to_string(),
                    share_text(r),
                    format!("{:.2}", r.p50_us as f64 / 1e3),
                    format!("{:.2}", r.p99_us as f64 / 1e3),
                    thousands(r.errors as f64),
                    thousands(r.err_replies as f64),
                    thousands(r.most_waiting as f64),
                    per_waiting(r.threads),
                    per_waiting(r.rss_kib),
                    r.server_cpu_us.map_or("–".into(), |c| format!("{c:.1}")),
                    r.client_cpu_us.map_or("–".into(), |c| format!("{c:.1}")),
                    r.backend_cpu_us.map_or("–".into(), |c| format!("{c:.1}")),
                ]);
            }
        }
        tables.push(Table {
            title: format!("{most} waiting clients: where each model stops, and what a waiting request costs it"),
            intro: "\"limit\": the bound that applies (N / W: every client's request waiting at once; cap / W: the model lets only `cap` wait at once, one for `single`, a worker each for `threadpool` and `prefork`; model's CPUs: its CPUs over its CPU per reply, one CPU for a one-thread loop; machine's CPUs: where nothing is pinned, the machine's CPUs over what server, load generator and downstream spend per reply together). \"no reply\": requests the load's timeout ended; \"ERR replies\": clients turned away (`ERR server busy`: a pool's queue, or `select`'s descriptor ceiling, which a waiting request's second socket halves) or failed waits. \"waiting at once\": the most requests the downstream held at once. Threads and resident memory per waiting request: the server's process tree at the end of the window over what it held after one request, divided by the requests waiting at once. The downstream's own CPU per request says whether it could have been the limit.".into(),
            header: header.iter().map(|h| h.to_string()).collect(),
            left: 1,
            text_last: false,
            rows: table_rows,
        });
    }
    let notes = vec![format!(
        "The downstream (`fiblab backend` in a thread of the bench, on the load generator's CPUs) spent at most {} µs of CPU per request in these runs: it was never the limit.",
        w.records
            .iter()
            .filter_map(|r| r.backend_cpu_us)
            .fold(0.0, f64::max)
            .round()
    )];
    (tables, notes)
}

pub(super) fn plots(r: &BenchReport, w: &WaitingRecords) -> Result<Vec<Plot>, PlotError> {
    let mut plots = Vec::new();
    for delay in delays(w) {
        let title = format!(
            "Waiting {delay} ms on a downstream: req/s against clients (dashed: Little's law, N / W at rest){}",
            crate::bench::canvas::regime_suffix(r)
        );
        let cells: Vec<&WaitingRecord> = w.records.iter().filter(|c| c.delay_ms == delay).collect();
        let max_clients = cells.iter().map(|c| c.clients).max().unwrap_or(1) as f64;
        // The wait with the machine at rest (one client): what N / W is drawn with.
        let waited = cells
            .iter()
            .filter(|c| c.clients == 1)
            .map(|c| c.waited_ms)
            .fold(f64::MAX, f64::min)
            .min(cells.iter().map(|c| c.waited_ms).fold(f64::MAX, f64::min))
            / 1e3;
        let top = cells
            .iter()
            .map(|c| c.throughput_rps)
            .fold(max_clients / waited, f64::max)
            * 1.5;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (900, 560)).into_drawing_area();
            let mut chart = crate::bench::canvas::clients_chart(
                &root,
                &title,
                1.0..max_clients.max(2.0),
                10.0..top.max(100.0),
            )?;
            let little: Vec<(f64, f64)> = (0..=40)
                .map(|i| {
                    let n = max_clients.max(2.0).powf(i as f64 / 40.0);
                    (n, n / waited)
                })
                .collect();
            chart
                .draw_series(DashedLineSeries::new(little, 6, 4, BLACK.stroke_width(1)))
                .map_err(err)?
                .label("N / W")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK));
            for (i, row) in rows(w).iter().enumerate() {
                let color = crate::bench::canvas::series_color(i + 1);
                let mut points: Vec<(f64, f64)> = cells
                    .iter()
                    .filter(|c| &c.row == row)
                    .map(|c| (c.clients as f64, c.throughput_rps.max(1.0)))
                    .collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                    .map_err(err)?
                    .label(row.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
                chart
                    .draw_series(
                        points
                            .into_iter()
                            .map(|p| Circle::new(p, 3, color.filled())),
                    )
                    .map_err(err)?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font(("sans-serif", 11))
                .draw()
                .map_err(err)?;
            root.present().map_err(err)?;
        }
        plots.push(Plot {
            file: format!("waiting-{delay}ms.svg"),
            title,
            svg,
        });
    }
    Ok(plots)
}

/// The longest delay's cells at the largest client count: where overlapping matters most.
fn widest(w: &WaitingRecords) -> Option<(f64, usize)> {
    let delay = w
        .records
        .iter()
        .map(|r| r.delay_ms)
        .fold(None, |m: Option<f64>, d| Some(m.map_or(d, |m| m.max(d))))?;
    let clients = w.records.iter().map(|r| r.clients).max()?;
    Some((delay, clients))
}

/// Throughput of `a` over `b` in one cell, with its interval over the measured seconds.
fn ratio_of(a: &WaitingRecord, b: &WaitingRecord) -> Interval {
    let point = a.throughput_rps / b.throughput_rps.max(1e-9);
    let i = crate::stats::bootstrap_ratio_of_means(&a.per_second, &b.per_second, 2000, 7)
        .unwrap_or_else(|| Interval::point(point));
    Interval {
        estimate: point,
        ci_low: i.ci_low.min(point),
        ci_high: i.ci_high.max(point),
        ..i
    }
}

pub(super) fn findings(r: &BenchReport) -> Vec<Finding> {
    let mut out = Vec::new();
    let w = r.waiting.as_ref().filter(|w| !w.records.is_empty());
    let at = w.and_then(|w| widest(w).map(|(d, c)| (w, d, c)));
    let get = |row: &str| at.and_then(|(w, d, c)| cell(w, row, d, c));

    let (source, claim) = (
        "seed 002, 多进程与多线程的实际应用场景",
        "for I/O-bound work choose threads (processes for CPU-bound work)",
    );
    out.push(match (get("threads"), get("prefork")) {
        (Some(threads), Some(prefork)) => {
            let x = ratio_of(threads, prefork);
            let holds = |v: f64| v >= 2.0;
            finding(
                source,
                claim,
                verdict(decide(&x, holds)),
                format!(
                    "{} clients waiting {} ms: threads {} req/s, prefork (a process each, one request at a time) {} req/s: {}x{}; a waiting thread cost {} threads and {} KiB",
                    threads.clients,
                    threads.delay_ms,
                    thousands(threads.throughput_rps),
                    thousands(prefork.throughput_rps),
                    ratio_ci(&x),
                    undecided_why(&x, holds),
                    per_waiting(threads, threads.threads),
                    per_waiting(threads, threads.rss_kib),
                ),
            )
        }
        _ => missing(source, claim, "`[waiting]` with threads and prefork"),
    });

    let (source, claim) = (
        "seed 003, 协程",
        "switching between tasks raises efficiency for I/O-bound work, and lowers it for CPU-bound work",
    );
    // I/O half: a one-thread loop at the largest client count whose bound is still
    // Little's (the waits, not the CPUs), against itself with one client: overlapping
    // the waits gives N times; at least N / 2 says most of them overlap.
    let loops = [
        "epoll",
        "coroutines",
        "tokio-current",
        "uring",
        "select",
        "nonblocking",
    ];
    let io: Vec<(&str, usize, Interval)> = loops
        .iter()
        .filter_map(|m| {
            let w = at?.0;
            let delay = at?.1;
            let one = cell(w, m, delay, 1)?;
            let most = w
                .records
                .iter()
                .filter(|c| c.row == *m && c.delay_ms == delay && c.clients > 1)
                .filter(|c| bound(c).1 == super::Limit::Waits)
                .max_by_key(|c| c.clients)?;
            Some((*m, most.clients, ratio_of(most, one)))
        })
        .collect();
    // CPU half: fib(20) on one thread cannot overlap; two clients can only overlap the
    // part of a request that is not fib (its round trip), so they stay well below the
    // 2x that two overlapped waits give.
    let cpu = versus(r, ("coroutines", 20, 2), ("coroutines", 20, 1));
    let no_gain = |v: f64| v < 1.9;
    out.push(match io.is_empty() {
        true => missing(source, claim, "`[waiting]` with the one-thread loops at 1 client and more"),
        false => {
            let mut parts: Vec<Option<bool>> = io
                .iter()
                .map(|&(_, n, ref x)| decide(x, |v| v >= n as f64 / 2.0))
                .collect();
            let cpu_text = match &cpu {
                Some(d) => {
                    parts.push(decide(&d.ratio, no_gain));
                    format!(
                        "; CPU-bound (fib(20), the seed tables): coroutines with 2 clients {}x its 1-client throughput{}, below the 2x of overlapped waits",
                        ratio_ci(&d.ratio),
                        undecided_why(&d.ratio, no_gain)
                    )
                }
                None => "; the CPU-bound half needs the seed tables' coroutines at n=20 with 1 and 2 clients".into(),
            };
            let decided = all(&parts);
            let mut f = finding(
                source,
                claim,
                match (cpu.is_some(), decided) {
                    (false, Some(true)) => Verdict::Undecided,
                    _ => verdict(decided),
                },
                format!(
                    "one thread, each request waiting {} ms: N clients over 1 client (N when every wait overlaps) {}{}",
                    at.map_or(0.0, |a| a.1),
                    io.iter()
                        .map(|(m, n, x)| format!(
                            "{m} {}x at {n}{}",
                            ratio_ci(x),
                            undecided_why(x, |v| v >= *n as f64 / 2.0)
                        ))
                        .collect::<Vec<_>>()
                        .join(", "),
                    cpu_text
                ),
            );
            if cpu.is_some() {
                f = f.reading(&[("coroutines", 20, 2), ("coroutines", 20, 1)]);
            }
            f
        }
    });

    let (source, claim) = (
        "seed 002, GIL全局解释锁 (进入IO操作, GIL锁自动释放)",
        "the GIL does not stop threads from overlapping I/O waits (it is released while a thread waits)",
    );
    out.push(match (get("threads --gil"), get("threads")) {
        (Some(gil), Some(free)) => {
            let x = ratio_of(gil, free);
            let holds = |v: f64| v >= 0.8;
            finding(
                source,
                claim,
                verdict(decide(&x, holds)),
                format!(
                    "{} clients waiting {} ms: threads with the GIL {} req/s, without {} req/s: {}x{}",
                    gil.clients,
                    gil.delay_ms,
                    thousands(gil.throughput_rps),
                    thousands(free.throughput_rps),
                    ratio_ci(&x),
                    undecided_why(&x, holds)
                ),
            )
        }
        _ => missing(source, claim, "`[waiting]` with threads and `gil = [\"threads\"]`"),
    });
    out
}

fn per_waiting(r: &WaitingRecord, pair: Option<(u64, u64)>) -> String {
    match pair {
        Some((before, after)) if r.most_waiting > 0 => {
            ratio(after.saturating_sub(before) as f64 / r.most_waiting as f64)
        }
        _ => "–".into(),
    }
}

/// What a downstream delay asked for, in words: `10 ms asked`, or with a spread
/// `9–11 ms asked (uniform, mean 10 ms)`.
fn asked(delay_ms: f64, jitter: f64) -> String {
    let ms = |x: f64| (x * 1e3).round() / 1e3;
    match jitter > 0.0 {
        false => format!("{} ms asked", ms(delay_ms)),
        true => format!(
            "{}–{} ms asked (uniform, mean {} ms)",
            ms(delay_ms * (1.0 - jitter / 2.0)),
            ms(delay_ms * (1.0 + jitter / 2.0)),
            ms(delay_ms),
        ),
    }
}
