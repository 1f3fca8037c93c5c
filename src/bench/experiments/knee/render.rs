//! What a knee report shows: the per-workload tables, the ranking beside the other
//! experiments' facts, the comparison with the peers, and the latency curves.

use super::*;

pub(super) fn rows_in_order(k: &KneeRecords) -> Vec<String> {
    let mut rows: Vec<String> = Vec::new();
    for s in &k.sweeps {
        if !rows.contains(&s.row) {
            rows.push(s.row.clone());
        }
    }
    rows
}

/// The rate `row` can serve at most on workload `w`, from the calibration and its cost
/// model: its closed-loop throughput with as many clients as the open loop has
/// connections. The knee lies below it: past the capacity a queue grows without
/// bound, and the tail crosses any SLO before that. `None` for a peer, a mix, or a
/// workload the calibration did not time.
pub fn capacity(
    r: &BenchReport,
    k: &KneeRecords,
    sweep: &KneeSweep,
    w: &KneeWorkloadRecord,
) -> Option<f64> {
    let n: u32 = w.mix.trim().parse().ok()?;
    let (model, costs) =
        crate::bench::predict::inputs_for(r, &sweep.regime, &sweep.row, n, k.connections)?;
    let p = model.predict(&costs);
    Some(p.rps.unwrap_or(p.high))
}

pub(super) fn slo_text(w: &KneeWorkloadRecord) -> String {
    match w.slo_us {
        us if us >= 1000 && us % 1000 == 0 => format!("{} ms", us / 1000),
        us => format!("{us} µs"),
    }
}

/// The knee step's server cost, and the load generator's beside it where recorded
/// (`¤` where the client spent more CPU on a request than the server).
pub(super) fn server_cell(step: &KneeStep) -> String {
    let server = step.server.map_or("-".into(), |c| c.describe());
    match step.client {
        None => server,
        Some(client) => format!(
            "{server}; client {:.1} µs CPU, {:.2} sleeps{}{}",
            client.cpu_us,
            client.sleeps,
            client
                .calls
                .map_or(String::new(), |c| format!(", {c:.2} system calls")),
            match RequestCost::client_costs_more(step.server, step.client) {
                true => " ¤",
                false => "",
            }
        ),
    }
}

/// What the client column means, said once where any step recorded it.
pub(super) fn client_note(sweeps: &[&KneeSweep]) -> String {
    let recorded = sweeps
        .iter()
        .any(|s| s.steps.iter().any(|x| x.client.is_some()));
    match recorded {
        false => String::new(),
        true => " Client: what the load generator's own threads spent per request over the same window (`getrusage` per thread) and the system calls it counted on its steady path (sends, receives, polls, sleeps, timer settings); ¤ where it spent more CPU than the server, so the step measures the client as much as the server.".into(),
    }
}

/// What the load generator's tick does to the figures, for a table's intro.
fn tick_note(k: &KneeRecords) -> String {
    match k.tick_us > 0.0 {
        true => format!(
            " The load generator works on a {} µs tick (`fiblab load --tick`): at most one wake-up per tick instead of about one per request, so its limit lies above more of the servers' knees; each request is sent up to one tick late and measured from when it was due (the lateness is in every latency), and replies are timed by the kernel's arrival stamp.",
            k.tick_us
        ),
        false => String::new(),
    }
}

pub(super) fn tables(r: &BenchReport, k: &KneeRecords) -> Vec<Table> {
    let mut out = Vec::new();
    let peer = |row: &str| match r.is_peer(row) {
        true => " †",
        false => "",
    };
    for w in &k.workloads {
        let sweeps: Vec<&KneeSweep> = rows_in_order(k)
            .iter()
            .filter_map(|row| sweep_of(k, row, &w.label))
            .collect();
        if sweeps.is_empty() {
            continue;
        }
        out.push(Table {
            title: format!("{}: the highest rate sustained with p99 under {}", w.label, slo_text(w)),
            intro: format!(
                "{} An open loop of {} connections (at most {} in flight on each), each step {:.1} s, rates rising by a factor until a step is not sustained, then refined between. Sustained: at least {:.0}% of the offered rate served, at most {:.1}% of requests failed, p99 (from when each request was due, so a stall is not hidden) under {}. A step where the load generator was saturated ends the sweep as the client's limit, never as the server's knee; one that failed by its tail while the server was under {:.0}% of a CPU busy does not end the climb (the machine waking an idle server, said below the knee). Capacity predicted: the model's closed-loop throughput with {} clients from the calibration and its cost formula (docs/MODELS.md); the knee lies below it (‡ where it does not), and knee / capacity is how much of it the model can use before its tail crosses the SLO. Server per request: what the server's processes and threads spent at the knee step, read from /proc at the edges of its measured window and divided by the replies between (CPU time; sleeps, the times a thread blocked and had to be woken, each a wake-up that costs a VM tens of µs; preemptions).",
                sweeps_intro(k),
                k.connections,
                crate::bench::results::plural(k.pipeline, "request"),
                k.step_s,
                ACHIEVED_SHARE * 100.0,
                FAILED_SHARE * 100.0,
                slo_text(w),
                LIGHT_LOAD * 100.0,
                k.connections
            ) + &tick_note(k)
                + &floor_noise(k, &w.label).map_or(String::new(), |n| format!(" {n}"))
                + &client_note(&sweeps),
            header: [
                "model",
                "sustained req/s (median of the sweeps [interval])",
                "each sweep's knee",
                "p50 µs there",
                "p99 µs there",
                "p99.9 µs there",
                "capacity predicted, req/s",
                "knee / capacity",
                "server per request there",
                "steps",
                "where and why it broke",
            ]
            .map(String::from)
            .to_vec(),
            left: 1,
            text_last: true,
            rows: sweeps
                .iter()
                .map(|s| {
                    let knee = s.knee();
                    let figure = |f: fn(&KneeStep) -> f64| {
                        knee.map_or("-".to_string(), |x| thousands(f(x)))
                    };
                    let capacity = capacity(r, k, s, w);
                    let share = match (knee, capacity) {
                        (Some(_), Some(c)) if c > 0.0 => {
                            // The knee over the sweeps (median and range) over the capacity.
                            let over = crate::stats::median_interval(
                                &knees(k, &s.row, &w.label),
                                crate::stats::LEVEL,
                            )
                            .map(|x| x / c);
                            // Above the capacity (widened by the threshold) the rule fails.
                            let off = over.estimate > 1.0 + crate::bench::predict::THRESHOLD;
                            format!(
                                "{}{}",
                                crate::bench::rules::ratio_ci(&over),
                                if off { " ‡" } else { "" }
                            )
                        }
                        _ => "-".into(),
                    };
                    let mut ended = s.ended.clone();
                    if let Some(why) = machine_share(k, s) {
                        ended.push_str(&format!("; {why}"));
                    }
                    if let Some(why) = client_share(s) {
                        ended.push_str(&format!("; {why}"));
                    }
                    vec![
                        format!("`{}`{}", s.row, peer(&s.row)),
                        knee_text(k, &s.row, &w.label),
                        each_knee(k, &s.row, &w.label),
                        figure(|x| x.p50_us as f64),
                        figure(|x| x.p99_us as f64),
                        figure(|x| x.p99_9_us as f64),
                        capacity.map_or("-".into(), thousands),
                        share,
                        knee.map_or("-".into(), server_cell),
                        s.steps.len().to_string(),
                        ended,
                    ]
                })
                .collect(),
        });
    }
    out.extend(ranking(r, k));
    out
}

/// Where the load generator ended `sweep`: what it and the server spent per request at
/// that step, their ratio, and why where the figures say: on loopback each side's write
/// runs the other side's TCP receive, so the two are alike (within 1.5x either way) and
/// one client CPU loads about one server CPU; a client far above the server where the
/// server sleeps for most requests pays for waking it, as its write does the waking.
/// `None` where the client did not end the sweep or a cost was not recorded.
pub fn client_share(sweep: &KneeSweep) -> Option<String> {
    let broke = sweep
        .broke()
        .filter(|b| b.verdict == StepVerdict::ClientLimit)?;
    let (client, server) = (broke.client?, broke.server?);
    if server.cpu_us <= 0.0 {
        return None;
    }
    let ratio = client.cpu_us / server.cpu_us;
    let why = if ratio > 1.5 && server.sleeps >= 0.5 {
        format!(
            ": the server slept {:.2} times per request, and on loopback the client's write runs its receive and wakes it",
            server.sleeps
        )
    } else if (1.0 / 1.5..=1.5).contains(&ratio) {
        ": alike, as on loopback each side's write runs the other's receive, so one client CPU loads about one server CPU".into()
    } else {
        String::new()
    };
    Some(format!(
        "there the client spent {:.1} µs of CPU per request and the server {:.1} ({ratio:.2}x){why}",
        client.cpu_us, server.cpu_us
    ))
}

/// Where `sweep` broke at a rate the floor (no work, only the loopback, the client and
/// the machine) did not sustain either: the machine's tail, not the model's. `None` for
/// the floor itself, where the floor sustained that rate, or where the load generator
/// ended the sweep.
pub fn machine_share(k: &KneeRecords, sweep: &KneeSweep) -> Option<String> {
    if sweep.row == FLOOR {
        return None;
    }
    let floor = sweep_of(k, FLOOR, &sweep.workload)?;
    // A sweep the client ended says nothing of the machine's tail.
    let broke = sweep
        .broke()
        .filter(|b| b.verdict != StepVerdict::ClientLimit)?;
    // The floor's verdict at the nearest rate it tried at or below the break.
    let near = floor
        .steps
        .iter()
        .filter(|s| s.offered_rps <= broke.offered_rps * 1.001)
        .max_by(|a, b| a.offered_rps.total_cmp(&b.offered_rps))?;
    (near.verdict != StepVerdict::Sustained).then(|| {
        format!(
            "the floor failed there too ({} at {} req/s): the machine's tail, not the model's",
            detail(near),
            thousands(near.offered_rps)
        )
    })
}

/// What the floor's own sweep says of this machine on workload `workload`: the rates
/// below its knee where even it (no work at all) missed the SLO. On a small VM a lightly
/// loaded machine has the worse tail (idle CPUs to wake, the host's own scheduling), so
/// a model's knee below the floor's may be the machine's, not the model's. `None` when
/// the floor sustained every rate up to its knee.
pub fn floor_noise(k: &KneeRecords, workload: &str) -> Option<String> {
    let floor = sweep_of(k, FLOOR, workload)?;
    let knee = floor.knee()?.offered_rps;
    let missed: Vec<String> = floor
        .steps
        .iter()
        .filter(|s| s.verdict != StepVerdict::Sustained && s.offered_rps < knee)
        .map(|s| format!("{} at {} req/s", detail(s), thousands(s.offered_rps)))
        .collect();
    (!missed.is_empty()).then(|| {
        format!(
            "On this machine the floor itself (no work) missed the SLO below its own knee of {} req/s ({}): a p99 above the SLO at such rates is the machine's tail as much as the model's, and a knee below the floor's may be the machine's.",
            thousands(knee),
            missed.join(", ")
        )
    })
}

/// "Which model for which workload": each workload's rows ranked by their knee, with
/// what else this report measured of them, and the best fiblab model against each peer.
pub(super) fn ranking(r: &BenchReport, k: &KneeRecords) -> Option<Table> {
    let starvation = !r.starvation.is_empty();
    let connections = r
        .connections
        .as_ref()
        .is_some_and(|c| !c.records.is_empty());
    let mut header = vec![
        "workload",
        "tier",
        "model",
        "sustained req/s (knee table)",
        "p99 µs there",
        "server CPU µs per request there",
    ];
    if starvation {
        header.push("light throughput kept during a heavy request (seed 004 table)");
    }
    if connections {
        header.push("idle connections held, KiB each (connections tables)");
    }
    let mut rows = Vec::new();
    let mut versus = Vec::new();
    for w in &k.workloads {
        let ranked = ranked(k, w);
        for (rank, s) in &ranked {
            let knee = s.knee();
            let mut row = vec![
                w.label.clone(),
                rank.map_or("-".into(), |rank| rank.to_string()),
                format!("`{}`{}", s.row, if r.is_peer(&s.row) { " †" } else { "" }),
                knee_text(k, &s.row, &w.label),
                knee.map_or("-".into(), |x| thousands(x.p99_us as f64)),
                knee.and_then(|x| x.server)
                    .map_or("-".into(), |c| format!("{:.1}", c.cpu_us)),
            ];
            if starvation {
                row.push(
                    r.starvation
                        .iter()
                        .find(|x| x.variant == s.row)
                        .map_or("-".into(), |x| format!("{:.2}", x.kept)),
                );
            }
            if connections {
                row.push(
                    r.connections
                        .as_ref()
                        .and_then(|c| {
                            c.records
                                .iter()
                                .filter(|x| x.row == s.row && x.held > 0)
                                .max_by_key(|x| x.held)
                        })
                        .map_or("-".into(), |x| {
                            format!(
                                "{}{}",
                                thousands(x.held as f64),
                                x.rss_kib
                                    .map_or(String::new(), |kib| format!(", {kib:.2} KiB"))
                            )
                        }),
                );
            }
            rows.push(row);
        }
        let best = ranked
            .iter()
            .map(|(_, s)| s)
            .find(|s| !r.is_peer(&s.row) && s.knee().is_some());
        for peer in ranked.iter().map(|(_, s)| s).filter(|s| r.is_peer(&s.row)) {
            if let (Some(best), Some(theirs)) = (best, peer.knee()) {
                let ours = best.knee().map_or(0.0, |x| x.offered_rps);
                let ratio = crate::stats::Difference::of(
                    &knees(k, &best.row, &w.label),
                    &knees(k, &peer.row, &w.label),
                )
                .map(|d| d.ratio)
                .unwrap_or_else(|| {
                    crate::stats::Interval::point(ours / theirs.offered_rps.max(1.0))
                });
                let side = match ratio.side_of(1.0) {
                    Some(true) => "ahead",
                    Some(false) => "behind",
                    None => "not separable from it",
                };
                versus.push(format!(
                    "{}: fiblab's best, `{}`, sustains {} req/s with p99 under {}; `{}` {} req/s: fiblab {side} ({}x){}",
                    w.label,
                    best.row,
                    knee_text(k, &best.row, &w.label),
                    slo_text(w),
                    peer.row,
                    knee_text(k, &peer.row, &w.label),
                    crate::bench::rules::ratio_ci(&ratio),
                    cost_versus(best, peer),
                ));
            }
        }
    }
    if rows.is_empty() {
        return None;
    }
    let mut intro = "Each workload's models and peers (not the floor, the reference) in tiers by the highest rate they sustain with p99 under its SLO, over the sweeps: a row joins the tier above unless its knees are significantly lower than that tier's leader's (Welch on the logarithms, each knee known only to its sweep's step between the last rate sustained and the next one tried, and Mann-Whitney with five sweeps or more where it can decide, Holm-corrected over the leader's comparisons), so rows in one tier are not separable on this machine at this precision; a knee at the client's limit is a lower bound and ties with every row above it (tier 1); a row that sustains none is not ranked. Beside what else this report measured of them; every figure is a cell of the table named in its column. The rank answers \"which model for this request rate\"; the other columns what it costs: how much a heavy request starves its neighbours, and what idle clients cost.".to_string();
    if !versus.is_empty() {
        intro.push_str(&format!(
            " Against the peers (same client, same run): {}.",
            versus.join("; ")
        ));
    }
    Some(Table {
        title: "Which model for which workload".into(),
        intro,
        header: header.into_iter().map(String::from).collect(),
        left: 3,
        text_last: false,
        rows,
    })
}

/// "; per request, `epoll` at 32,000 req/s against `redis` at 32,000: CPU 4.1 vs 9.0 µs,
/// ..." from each sweep's highest sustained step at or below the lower of the two
/// knees, so both costs are read at about one load (empty where either lacks one).
pub(super) fn cost_versus(ours: &KneeSweep, theirs: &KneeSweep) -> String {
    let (Some(a), Some(b)) = (ours.knee(), theirs.knee()) else {
        return String::new();
    };
    let rate = a.offered_rps.min(b.offered_rps);
    let at = |s: &KneeSweep| -> Option<(f64, RequestCost)> {
        s.steps
            .iter()
            .filter(|x| x.verdict == StepVerdict::Sustained && x.offered_rps <= rate)
            .max_by(|x, y| x.offered_rps.total_cmp(&y.offered_rps))
            .and_then(|x| Some((x.offered_rps, x.server?)))
    };
    let (Some((rate_a, a)), Some((rate_b, b))) = (at(ours), at(theirs)) else {
        return String::new();
    };
    format!(
        "; per request, `{}` at {} req/s against `{}` at {}: CPU {:.1} vs {:.1} µs, sleeps {:.2} vs {:.2}",
        ours.row,
        thousands(rate_a),
        theirs.row,
        thousands(rate_b),
        a.cpu_us,
        b.cpu_us,
        a.sleeps,
        b.sleeps
    )
}

/// One workload's curves: p99 against the achieved rate, one line per row, the SLO
/// drawn across.
pub(super) fn curve(
    r: &BenchReport,
    k: &KneeRecords,
    w: &KneeWorkloadRecord,
    index: usize,
) -> Result<Plot, PlotError> {
    let title = format!(
        "{}: p99 against the rate served (SLO {}){}",
        w.label,
        slo_text(w),
        regime_suffix(r)
    );
    let rows = rows_in_order(k);
    let series: Vec<Series> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, row)| {
            let s = sweep_of(k, row, &w.label)?;
            let mut points: Vec<(f64, f64)> = s
                .steps
                .iter()
                .filter(|x| x.achieved_rps > 0.0 && x.p99_us > 0)
                .map(|x| (x.achieved_rps, x.p99_us as f64))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            (!points.is_empty()).then(|| {
                (
                    row.clone(),
                    crate::bench::canvas::series_color(i + 1),
                    points,
                )
            })
        })
        .collect();
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.0))
        .collect();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .chain(std::iter::once(w.slo_us as f64))
        .collect();
    let (x_lo, x_hi) = match xs.is_empty() {
        true => (100.0, 1000.0),
        false => (
            xs.iter().copied().fold(f64::MAX, f64::min) * 0.7,
            xs.iter().copied().fold(0.0, f64::max) * 1.4,
        ),
    };
    let y_lo = ys.iter().copied().fold(f64::MAX, f64::min).max(1.0) * 0.6;
    let y_hi = ys.iter().copied().fold(0.0, f64::max) * 1.6;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height_for(series.len())))
            .into_drawing_area();
        let (chart_area, legend_area) = with_legend(&root)?;
        let mut chart = titled(&chart_area, &title)
            .build_cartesian_2d(
                (x_lo..x_hi)
                    .log_scale()
                    .with_key_points(log_ticks(x_lo, x_hi)),
                (y_lo..y_hi)
                    .log_scale()
                    .with_key_points(log_ticks(y_lo, y_hi)),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("requests per second served (log)")
            .y_desc("p99 µs, from when each request was due (log)")
            .x_label_formatter(&|x| short(*x))
            .y_label_formatter(&|y| short(*y))
            .draw()
            .map_err(err)?;
        let slo = w.slo_us as f64;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x_lo, slo), (x_hi, slo)],
                8,
                6,
                BLACK.stroke_width(1),
            ))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("SLO {}", slo_text(w)),
                (x_lo * 1.05, slo * 1.12),
                ("sans-serif", 12),
            )))
            .map_err(err)?;
        for (name, color, points) in &series {
            crate::bench::canvas::draw_line(&mut chart, r, name, points, *color)?;
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(err)?;
        }
        legend(&legend_area, r, &series)?;
        root.present().map_err(err)?;
    }
    Ok(Plot {
        file: format!("knee-{}.svg", index + 1),
        title,
        svg,
    })
}
