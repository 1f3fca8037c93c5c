//! The experiment's tables and plots.

use super::*;

/// The limits the experiment runs under, one line each, read from this machine.
pub(super) fn limits() -> Vec<String> {
    let limits = &crate::machine::Host::get().limits;
    let read = |value: &Option<String>| value.clone().unwrap_or_else(|| "unknown".into());
    let descriptors =
        crate::machine::descriptor_limit().map_or("unknown".to_string(), |(soft, hard)| {
            format!(
                "{} (hard {})",
                thousands(soft as f64),
                thousands(hard as f64)
            )
        });
    vec![
        format!(
            "descriptors per process: {descriptors}, for the bench's client and each server alike (both raise their soft limit to the hard one)"
        ),
        format!(
            "loopback ephemeral ports: {} (`net.ipv4.ip_local_port_range`; one per client connection)",
            read(&limits.port_range)
        ),
        format!(
            "accept backlog: the servers ask 1024, the kernel caps it at `net.core.somaxconn` {}",
            read(&limits.somaxconn)
        ),
        format!(
            "threads: `kernel.threads-max` {}; memory maps per process: `vm.max_map_count` {} (a thread takes four: its stack and its signal stack, each with a guard page)",
            read(&limits.threads_max),
            read(&limits.max_map_count)
        ),
    ]
}

/// The records of `row`, by idle count.
pub(super) fn of_row<'a>(c: &'a ConnectionRecords, row: &str) -> Vec<&'a ConnectionRecord> {
    c.records.iter().filter(|r| r.row == row).collect()
}

/// Every row, in measured order.
pub(super) fn row_names(c: &ConnectionRecords) -> Vec<String> {
    let mut rows: Vec<String> = Vec::new();
    for r in &c.records {
        if !rows.contains(&r.row) {
            rows.push(r.row.clone());
        }
    }
    rows
}

/// Every idle count, rising.
pub(super) fn idle_counts(c: &ConnectionRecords) -> Vec<usize> {
    let mut idle: Vec<usize> = c.records.iter().map(|r| r.idle).collect();
    idle.sort_unstable();
    idle.dedup();
    idle
}

pub(super) fn cell<'a>(
    c: &'a ConnectionRecords,
    row: &str,
    idle: usize,
) -> Option<&'a ConnectionRecord> {
    c.records.iter().find(|r| r.row == row && r.idle == idle)
}

pub(super) fn load(record: &ConnectionRecord, clients: usize) -> Option<&ActiveLoad> {
    record.active.iter().find(|a| a.clients == clients)
}

/// What one active load got, in a table cell: `p50 / p99 / p99.9` µs (p50 and p99 with
/// their order-statistic intervals where the histogram was kept: within the one run), or
/// what the client got instead.
pub(super) fn latency_cell(a: &ActiveLoad) -> String {
    let histogram = crate::load::decode_histogram(&a.histogram).ok();
    let at = |q: f64| {
        histogram
            .as_ref()
            .and_then(|h| crate::stats::quantile_interval(h, q))
    };
    match a.requests_ok {
        0 => failure(a),
        _ if histogram.is_some() => format!(
            "{} / {} / {} ({}/s)",
            at(0.5).map_or(thousands(a.p50_us as f64), |i| i.text(thousands)),
            at(0.99).map_or(thousands(a.p99_us as f64), |i| i.text(thousands)),
            thousands(a.p99_9_us as f64),
            thousands(a.throughput_rps)
        ),
        _ => format!(
            "{} / {} / {} ({}/s)",
            thousands(a.p50_us as f64),
            thousands(a.p99_us as f64),
            thousands(a.p99_9_us as f64),
            thousands(a.throughput_rps)
        ),
    }
}

pub(super) fn failure(a: &ActiveLoad) -> String {
    let mut parts = Vec::new();
    if a.err_replies > 0 {
        parts.push(format!("{} ERR replies", thousands(a.err_replies as f64)));
    }
    if a.timeouts > 0 {
        parts.push(format!("{} timed out", thousands(a.timeouts as f64)));
    }
    if a.failed > 0 {
        parts.push(format!("{} reset or refused", thousands(a.failed as f64)));
    }
    match parts.is_empty() {
        true => "no answer".into(),
        false => format!("no answer: {}", parts.join(", ")),
    }
}
pub(super) fn tables(r: &BenchReport, c: &ConnectionRecords) -> (Vec<Table>, Vec<String>) {
    let idle = idle_counts(c);
    let rows = row_names(c);
    let head = |first: &str, extra: &[&str]| -> Vec<String> {
        std::iter::once(first.to_string())
            .chain(
                idle.iter()
                    .map(|n| format!("{} idle", thousands(*n as f64))),
            )
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    // A row's name and its value at every idle count: the start of every table's row.
    let grid = |value: &dyn Fn(&ConnectionRecord) -> String, row: &str| -> Vec<String> {
        std::iter::once(format!("`{row}`"))
            .chain(idle.iter().map(|&n| match cell(c, row, n) {
                Some(x) => value(x),
                None => "not tried".into(),
            }))
            .collect()
    };
    let per_conn = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let mut tables = Vec::new();

    tables.push(Table {
        title: "Idle connections held, and the time to open them".into(),
        intro: format!(
            "Each model, a fresh server per count: that many clients connect (256 at once), each sends fib(1) and stays idle once answered. A cell: the connections answered and held, and the time from the first connect to the last reply (the server's accept path under a stream of new clients); where it held fewer, what the clients got instead. A model that held fewer is not tried at larger counts. Per connection opened: the slope of the time over the counts every client was held at, with its 95% interval (least squares, t with counts - 2 degrees of freedom; one run per count, so the scatter between the counts is the only spread it knows). Limits in force: {}.",
            c.limits.join("; ")
        ),
        header: head("model", &["µs per connection opened, fitted", "what a client past the limit gets"]),
        left: 1,
        text_last: true,
        rows: rows
            .iter()
            .map(|row| {
                let mut cells = grid(
                    &|x| match x.held >= x.idle {
                        true => format!("{} in {:.2} s", thousands(x.held as f64), x.open_s),
                        false => x.outcome.clone(),
                    },
                    row,
                );
                cells.push(fitted_cell(
                    fitted(c, row, |x| {
                        let open = (x.held + x.waiting).max(1) as f64;
                        (x.held >= x.idle).then_some(x.open_s * 1e6 / open)
                    }),
                    |v| format!("{v:.1}"),
                ));
                cells.push(
                    of_row(c, row)
                        .iter()
                        .find(|x| x.held < x.idle)
                        .map_or("every client held".to_string(), |x| {
                            x.stopped
                                .clone()
                                .unwrap_or_else(|| limit_reason(&x.model).to_string())
                        }),
                );
                cells
            })
            .collect(),
    });

    tables.push(Table {
        title: "Descriptors per idle connection".into(),
        intro: "Open descriptors of the server's processes after the idle connections, minus before, per connection held open (answered, or waiting in the backlog or a queue). Exact counts (no interval: nothing here varies between runs but the count). Predicted at the largest count tried, from the model's registry entry.".into(),
        header: head("model", &["predicted", "why"]),
        left: 1,
        text_last: true,
        rows: rows
            .iter()
            .map(|row| {
                let mut cells = grid(&|x| per_conn(x.descriptors), row);
                match of_row(c, row).last() {
                    Some(last) => {
                        let (p, why) = predicted_descriptors(last);
                        let off = last.descriptors.is_some_and(|d| (d - p).abs() > 0.05);
                        cells.push(format!("{p:.2}{}", if off { " ‡" } else { "" }));
                        cells.push(why.into());
                    }
                    None => cells.extend(["-".to_string(), String::new()]),
                }
                cells
            })
            .collect(),
    });

    tables.push(Table {
        title: "Resident memory per idle connection, KiB".into(),
        intro: "The server's resident memory (VmRSS, all its processes) after the idle connections, minus before, per connection; fitted: the slope of the growth over every count held, with its 95% interval (least squares), what one more connection costs without what the server spent once. Kernel memory (socket buffers, a thread's kernel stack) is not in it. The event-loop models are held to a target: an idle connection needs a few bytes of state and no buffer; a thread per connection costs its stack's touched pages, which no target bounds.".into(),
        header: head("model", &["per connection, fitted", "target", "met at every count"]),
        left: 1,
        text_last: true,
        rows: rows
            .iter()
            .map(|row| {
                let mut cells = grid(&|x| per_conn(x.rss_kib), row);
                cells.push(fitted_cell(fitted(c, row, |x| x.rss_kib), |v| format!("{v:.2}")));
                let model = of_row(c, row).first().map(|x| x.model.clone()).unwrap_or_default();
                match crate::models::find(&model).and_then(|m| m.idle_target_kib) {
                    Some(target) => {
                        let measured: Vec<f64> =
                            of_row(c, row).iter().filter_map(|x| x.rss_kib).collect();
                        cells.push(format!("<= {target}"));
                        cells.push(match measured.iter().all(|v| *v <= target) {
                            true => "yes".into(),
                            false => format!(
                                "no ‡ (up to {:.2} KiB)",
                                measured.iter().copied().fold(0.0, f64::max)
                            ),
                        });
                    }
                    None => cells.extend([
                        "none".to_string(),
                        rss_rule(&model).to_string(),
                    ]),
                }
                cells
            })
            .collect(),
    });

    tables.push(Table {
        title: "Address space per idle connection, KiB".into(),
        intro: "The server's address space (VmSize) after the idle connections, minus before, per connection; fitted: the slope over every count held, with its 95% interval. Predicted for a thread per connection, at the largest count held: its stack and guard page (Rust's default 2 MiB, or `--stack-size`) per thread, plus up to a share of the allocator's arenas (glibc gives new threads their own, up to 8 per CPU, 64 MiB each: a large share over few connections, little over many). Reserved, not resident: a smaller stack changes this table and hardly the one above.".into(),
        header: head("model", &["per connection, fitted", "threads per connection", "predicted", "why"]),
        left: 1,
        text_last: true,
        rows: rows
            .iter()
            .map(|row| {
                let mut cells = grid(&|x| per_conn(x.vsz_kib), row);
                cells.push(fitted_cell(fitted(c, row, |x| x.vsz_kib), |v| match v >= 100.0 {
                    true => format!("{v:.0}"),
                    false => format!("{v:.2}"),
                }));
                let records = of_row(c, row);
                let last = records.iter().rev().find(|x| x.held > 0);
                cells.push(last.and_then(|x| x.threads).map_or("-".into(), |t| format!("{t:.2}")));
                match last.and_then(|x| predicted_vsz_range(r, x).map(|p| (p, x))) {
                    Some(((lo, hi), x)) => {
                        let off = x
                            .vsz_kib
                            .is_some_and(|v| v < lo * (1.0 - THRESHOLD) || v > hi * (1.0 + THRESHOLD));
                        cells.push(format!("{lo:.0}–{hi:.0}{}", if off { " ‡" } else { "" }));
                        cells.push("a stack and a guard page per connection thread, and up to a share of the allocator's arenas".into());
                    }
                    None => cells.extend(["-".to_string(), "no thread per connection: the heap's growth only".into()]),
                }
                cells
            })
            .collect(),
    });

    let predicted = r.calibration.is_some();
    let drift = drift_us(r);
    tables.push(Table {
        title: format!("One active client among the idle ones: fib({}) reply time p50 / p99 / p99.9, µs (requests per second)", c.n),
        intro: format!(
            "A closed loop of one client for {:.1} s while the idle connections stay open; p50 and p99 with their 95% order-statistic intervals over the run's replies (one run per count: the intervals cover the requests, not the server process). Predicted: the p50 at the largest count with replies, from the p50 at the smallest plus the model's cost per idle connection held (its rule, from the calibration); ‡ where the measurement is off by more than {:.0}% or the {} µs this machine's round trip wandered during the run (its unpinned round trips, measured at the start and the end), whichever is more.",
            c.duration_s,
            THRESHOLD * 100.0,
            thousands(drift)
        ),
        header: match predicted {
            true => head("model", &["predicted p50 at the largest", "why"]),
            false => head("model", &[]),
        },
        left: 1,
        text_last: predicted,
        rows: rows
            .iter()
            .map(|row| {
                let mut cells = grid(&|x| load(x, 1).map_or("-".into(), latency_cell), row);
                if predicted {
                    match predicted_p50(r, c, row) {
                        Some((idle, p, measured, why)) => {
                            let off = (measured as f64 - p).abs() > (THRESHOLD * p).max(drift);
                            cells.push(format!(
                                "{} at {} idle{}",
                                thousands(p),
                                thousands(idle as f64),
                                if off { " ‡" } else { "" }
                            ));
                            cells.push(why);
                        }
                        None => cells.extend(["-".to_string(), "no reply to predict from".into()]),
                    }
                }
                cells
            })
            .collect(),
    });

    let most = most_active(c);
    if most > 1 {
        tables.push(Table {
            title: format!("{most} active clients among the idle ones: fib({}) reply time p50 / p99 / p99.9, µs (requests per second)", c.n),
            intro: format!(
                "{most} closed loops of fib({}) for {:.1} s while the idle connections stay open. A loop that scans every connection per round serves the active ones once per round; one that is told which are ready does not notice the idle ones.",
                c.n, c.duration_s
            ),
            header: head("model", &[]),
            left: 1,
            text_last: false,
            rows: rows
                .iter()
                .map(|row| grid(&|x| load(x, most).map_or("-".into(), latency_cell), row))
                .collect(),
        });
    }
    (tables, Vec::new())
}

/// Why a model holds no more clients than it does, from the registry.
pub(super) fn limit_reason(model: &str) -> &'static str {
    use crate::models::Clients;
    if crate::models::find(model).is_some_and(|m| m.cost == CostModel::EventLoop(Readiness::Select))
    {
        return "select's FD_SETSIZE: a descriptor past 1024 cannot be watched, so the client is told `ERR server busy` and closed";
    }
    if let Some(CostModel::ThreadPerConnection | CostModel::Isolated | CostModel::ProcessPool) =
        crate::models::find(model).map(|m| m.cost)
    {
        return "memory maps: each connection thread takes four of `vm.max_map_count` (see the limits above), so the server caps `--max-conns` below it and tells the rest `ERR server busy` (a thread that cannot map its signal stack would abort the process)";
    }
    match crate::models::find(model).map(|m| m.clients) {
        Some(Clients::OneAtATime) => {
            "one client at a time: the others wait in the accept backlog, unanswered"
        }
        Some(Clients::Sharded) => {
            "one client at a time per process: the others wait behind the busy ones"
        }
        _ => "its own limit (see the model's docs)",
    }
}

/// What an idle connection's resident memory is, for models without a target.
pub(super) fn rss_rule(model: &str) -> &'static str {
    match crate::models::find(model).map(|m| m.cost) {
        Some(CostModel::ThreadPerConnection | CostModel::ProcessPool) => {
            "a thread: the stack pages it touched, and its share of the allocator"
        }
        Some(CostModel::Isolated) => {
            "two threads (connection and interpreter) and the interpreter's instance"
        }
        Some(CostModel::EventLoop(Readiness::Completion)) => {
            "a few hundred bytes of state; the kernel-provided receive buffers (one 2 MiB ring for all) become resident as they cycle: a fixed cost, spread thin at large counts"
        }
        _ => "the connections it holds: few or none past its limit",
    }
}

/// The lines of one measure, one per row: `(row, its place among every row (its
/// colour, the same in every plot), [(idle connections, value)])`.
pub(super) type Lines = Vec<(String, usize, Vec<(f64, f64)>)>;

pub(super) fn lines(
    c: &ConnectionRecords,
    value: &dyn Fn(&ConnectionRecord) -> Option<f64>,
) -> Lines {
    row_names(c)
        .into_iter()
        .enumerate()
        .map(|(k, row)| {
            let points = of_row(c, &row)
                .into_iter()
                .filter(|x| x.held > 0)
                .filter_map(|x| value(x).map(|v| (x.idle as f64, v)))
                .collect();
            (row, k, points)
        })
        .filter(|(_, _, points): &(String, usize, Vec<(f64, f64)>)| !points.is_empty())
        .collect()
}

/// An axis label that keeps small values readable: `0.05`, `0.2`, `3`, `25k`.
pub(super) fn tick(value: f64) -> String {
    match value.abs() {
        v if v >= 1000.0 => short(value),
        v if v >= 1.0 => format!("{value:.0}"),
        _ => {
            let text = format!("{value:.2}");
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    }
}

/// The most active clients any record measured (1 when none did).
fn most_active(c: &ConnectionRecords) -> usize {
    c.records
        .iter()
        .flat_map(|x| x.active.iter().map(|a| a.clients))
        .max()
        .unwrap_or(1)
}

pub(super) fn plots(r: &BenchReport, c: &ConnectionRecords) -> Result<Vec<Plot>, PlotError> {
    let most = most_active(c);
    let ok = |a: &ActiveLoad| a.requests_ok > 0;
    let measures: Vec<(&str, String, &str, bool, Lines)> = vec![
        (
            "connections-open-time.svg",
            "Time to open and answer the idle connections".into(),
            "seconds (log)",
            true,
            lines(c, &|x| (x.held >= x.idle).then_some(x.open_s.max(0.001))),
        ),
        (
            "connections-descriptors.svg",
            "Descriptors per idle connection".into(),
            "descriptors",
            false,
            lines(c, &|x| x.descriptors),
        ),
        (
            "connections-memory.svg",
            "Resident memory per idle connection".into(),
            "KiB (log)",
            true,
            lines(c, &|x| x.rss_kib),
        ),
        (
            "connections-address-space.svg",
            "Address space per idle connection".into(),
            "KiB (log)",
            true,
            lines(c, &|x| x.vsz_kib),
        ),
        (
            "connections-latency-1.svg",
            format!("One active client: fib({}) reply time p50", c.n),
            "µs (log)",
            true,
            lines(c, &|x| {
                load(x, 1).filter(|a| ok(a)).map(|a| a.p50_us as f64)
            }),
        ),
        (
            "connections-latency-many.svg",
            format!("{most} active clients: fib({}) reply time p99", c.n),
            "µs (log)",
            true,
            lines(c, &|x| {
                load(x, most).filter(|a| ok(a)).map(|a| a.p99_us as f64)
            }),
        ),
        (
            "connections-throughput.svg",
            format!("{most} active clients: requests per second"),
            "req/s (log)",
            true,
            lines(c, &|x| {
                load(x, most).filter(|a| ok(a)).map(|a| a.throughput_rps)
            }),
        ),
    ];
    measures
        .into_iter()
        .map(|(file, title, unit, log_y, lines)| {
            // A log axis cannot show 0 (fewer bytes than a page over few connections).
            let lines: Lines = lines
                .into_iter()
                .map(|(row, k, points)| {
                    let points = points.into_iter().filter(|p| !log_y || p.1 > 0.0).collect();
                    (row, k, points)
                })
                .filter(|(_, _, points): &(String, usize, Vec<(f64, f64)>)| !points.is_empty())
                .collect();
            (file, title, unit, log_y, lines)
        })
        .filter(|m| !m.4.is_empty())
        .map(|(file, title, unit, log_y, lines)| {
            line_plot(
                r,
                file,
                &format!("{title}{}", regime_suffix(r)),
                unit,
                log_y,
                &lines,
            )
        })
        .collect()
}

/// One measure against the idle connections (log x), a line per row.
pub(super) fn line_plot(
    r: &BenchReport,
    file: &str,
    title: &str,
    unit: &str,
    log_y: bool,
    lines: &Lines,
) -> Result<Plot, PlotError> {
    let xs: Vec<f64> = lines
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|q| q.0))
        .collect();
    let ys: Vec<f64> = lines
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|q| q.1))
        .collect();
    let x_lo = xs.iter().copied().fold(f64::MAX, f64::min) * 0.7;
    let x_hi = xs.iter().copied().fold(0.0, f64::max) * 1.4;
    let y_hi = ys.iter().copied().fold(0.0, f64::max);
    let y_lo = ys
        .iter()
        .copied()
        .filter(|y| *y > 0.0)
        .fold(f64::MAX, f64::min);
    let series: Vec<crate::bench::canvas::Series> = lines
        .iter()
        .map(|(row, k, points)| {
            (
                row.clone(),
                crate::bench::canvas::series_color(k + 1),
                points.clone(),
            )
        })
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height_for(series.len())))
            .into_drawing_area();
        let (chart_area, legend_area) = with_legend(&root)?;
        let x_range = (x_lo..x_hi)
            .log_scale()
            .with_key_points(log_ticks(x_lo, x_hi));
        let x_desc = "idle connections (log)";
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(x_desc)
                    .y_desc(unit)
                    .x_label_formatter(&|x| short(*x))
                    .y_label_formatter(&|y| tick(*y))
                    .draw()
                    .map_err(err)?;
                for (_, color, points) in &series {
                    chart
                        .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                        .map_err(err)?;
                    chart
                        .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                        .map_err(err)?;
                }
            }};
        }
        if log_y && y_lo < f64::MAX {
            let (lo, hi) = (y_lo * 0.6, y_hi * 1.6);
            draw!(
                titled(&chart_area, title)
                    .build_cartesian_2d(
                        x_range,
                        (lo..hi).log_scale().with_key_points(log_ticks(lo, hi))
                    )
                    .map_err(err)?
            );
        } else {
            draw!(
                titled(&chart_area, title)
                    .build_cartesian_2d(x_range, 0.0..(y_hi * 1.25).max(1.0))
                    .map_err(err)?
            );
        }
        legend(&legend_area, r, &series)?;
        root.present().map_err(err)?;
    }
    Ok(Plot {
        file: file.into(),
        title: title.into(),
        svg,
    })
}
