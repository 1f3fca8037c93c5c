//! The seed tables as a report shows them: one table per workload (requests per
//! second by client count, predicted beside measured, latency, the floor), the cells
//! the calibration did not predict, and the throughput and latency plots.

use super::*;

/// The workloads and the client counts the cells hold, each rising.
pub(super) fn axes(r: &BenchReport) -> (Vec<u32>, Vec<usize>) {
    let mut workloads: Vec<u32> = r.cells.iter().map(|c| c.n).collect();
    workloads.sort_unstable();
    workloads.dedup();
    let mut clients: Vec<usize> = r.cells.iter().map(|c| c.clients).collect();
    clients.sort_unstable();
    clients.dedup();
    (workloads, clients)
}

pub(super) fn tables(r: &BenchReport) -> (Vec<Table>, Vec<String>) {
    let mut tables = Vec::new();
    let (workloads, clients) = axes(r);
    let mut variants: Vec<&str> = Vec::new();
    for c in &r.cells {
        if !variants.contains(&c.variant.as_str()) {
            variants.push(&c.variant);
        }
    }
    let (mut starved_note, mut queued_note) = (false, false);
    let checks = crate::bench::predict::checks(r);
    let mut off_note = false;
    let widest = *clients.last().unwrap_or(&1);
    for &n in &workloads {
        let kind = if n <= 5 { "I/O-bound" } else { "CPU-bound" };
        let predicted = r.calibration.is_some();
        let mut header = vec!["model".to_string()];
        for &c in &clients {
            header.push(plural(c, "client"));
            if predicted {
                header.push("predicted".into());
            }
        }
        header.push(format!("p50 / p99 µs, {}", plural(widest, "client")));
        header.push(format!("vs floor, {}", plural(widest, "client")));
        let cell = |v: &str, c: usize| {
            r.cells
                .iter()
                .find(|x| x.variant == v && x.n == n && x.clients == c)
        };
        let floor = cell(FLOOR, widest).filter(|f| f.median_rps > 0.0);
        let mut rows = Vec::new();
        for &v in &variants {
            let mut row = vec![format!("`{v}`{}", if r.is_peer(v) { " †" } else { "" })];
            for &c in &clients {
                row.push(match cell(v, c) {
                    Some(cell) => {
                        let mut text = match cell.throughput.n {
                            0 => thousands(cell.median_rps),
                            _ => cell.throughput.text(thousands),
                        };
                        if cell.starved && queues_clients(v) {
                            text.push_str(" ²");
                            queued_note = true;
                        } else if cell.starved {
                            text.push_str(" ¹");
                            starved_note = true;
                        }
                        text
                    }
                    None => String::new(),
                });
                if predicted {
                    row.push(
                        cell(v, c)
                            .and_then(|cell| {
                                let p = predict(r, cell)?;
                                let off = checks.iter().any(|k| {
                                    k.variant == v && k.n == n && k.clients == c && !k.within
                                });
                                off_note |= off;
                                Some(format!("{}{}", label(&p), if off { " ‡" } else { "" }))
                            })
                            .unwrap_or_default(),
                    );
                }
            }
            match cell(v, widest) {
                Some(cell) => {
                    row.push(latency_cell(r, cell));
                    row.push(floor.map_or(String::new(), |f| {
                        match (v != FLOOR)
                            .then(|| versus(r, (v, n, widest), (FLOOR, n, widest)))
                            .flatten()
                        {
                            Some(d) => ratio_ci(&d.ratio),
                            None => ratio(cell.median_rps / f.median_rps),
                        }
                    }));
                }
                None => row.extend([String::new(), String::new()]),
            }
            rows.push(row);
        }
        tables.push(Table {
            title: format!("n={n} ({kind}): requests per second"),
            intro: String::new(),
            header,
            left: 1,
            text_last: false,
            rows,
        });
    }
    let mut notes = Vec::new();
    if starved_note {
        notes.push(
            "¹ a client got no reply at all: the model served only one client at a time.".into(),
        );
    }
    if queued_note {
        notes.push(
            "² a client got no reply at all: it waited the whole cell in the pool's queue, every `--workers` worker holding another connection."
                .into(),
        );
    }
    if let Some(table) = misses(r, &checks) {
        tables.push(table);
    }
    if off_note {
        notes.push(format!(
            "‡ measured more than {:.0}% away from the prediction (or outside its range); the cell is listed under \"Cells off their prediction\" with the reason.",
            THRESHOLD * 100.0
        ));
    }
    if r.calibration.is_some() {
        notes.push("predicted: from this run's calibration and each model's cost formula (`src/models/cost.rs`; the formula is in the model's docs); `a–b`: a range, where placement the formula cannot know decides.".into());
    }
    (tables, notes)
}

/// A cell's `p50 / p99` µs, each with its order-statistic interval over the requests of
/// all its repetitions (their histograms merged); the figures alone where no histogram
/// was kept.
pub(super) fn latency_cell(r: &BenchReport, cell: &crate::bench::results::Cell) -> String {
    let merged =
        crate::bench::results::merged_histogram(r.samples_of(cell).map(|s| s.histogram.as_str()));
    let at = |q: f64, figure: u64| {
        merged
            .as_ref()
            .and_then(|h| crate::stats::quantile_interval(h, q))
            .map_or(figure.to_string(), |i| i.text(|x| format!("{x:.0}")))
    };
    format!("{} / {}", at(0.5, cell.p50_us), at(0.99, cell.p99_us))
}

pub(super) fn throughput(r: &BenchReport, n: u32, clients: &[usize]) -> Result<Plot, PlotError> {
    let title = format!(
        "fib({n}): requests per second against clients{}",
        regime_suffix(r)
    );
    let series: Vec<Series> = series_colors(r)
        .into_iter()
        .map(|(v, color)| {
            let points = clients
                .iter()
                .enumerate()
                .filter_map(|(i, &c)| {
                    r.cells
                        .iter()
                        .find(|x| x.variant == v && x.n == n && x.clients == c)
                        .filter(|x| x.median_rps > 0.0)
                        .map(|x| (i as f64, x.median_rps))
                })
                .collect();
            (v, color, points)
        })
        .collect();
    let values = series.iter().flat_map(|s| s.2.iter().map(|p| p.1));
    let (lo, hi) = values.fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if hi > 0.0 {
        (lo * 0.7, hi * 1.4)
    } else {
        (1.0, 10.0)
    };
    let last = clients.len().saturating_sub(1) as f64;
    let mut svg = String::new();
    {
        let size = (WIDTH, height_for(series.len()));
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let (chart_area, legend_area) = with_legend(&root)?;
        let mut chart = titled(&chart_area, &title)
            .build_cartesian_2d(
                -0.3..last + 0.3,
                (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
            )
            .map_err(err)?;
        let label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                clients
                    .get(i as usize)
                    .map_or(String::new(), usize::to_string)
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_desc("clients (connections, closed loop)")
            .y_desc("requests per second (log)")
            .x_labels(clients.len().max(2) * 4)
            .x_label_formatter(&label)
            .y_label_formatter(&|y| short(*y))
            .disable_x_mesh()
            .draw()
            .map_err(err)?;
        for (name, color, points) in &series {
            draw_line(&mut chart, r, name, points, *color)?;
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(err)?;
            // Each point's confidence interval, as a vertical error bar.
            let bars = clients.iter().enumerate().filter_map(|(i, &c)| {
                let cell = r
                    .cells
                    .iter()
                    .find(|x| &x.variant == name && x.n == n && x.clients == c)
                    .filter(|x| x.throughput.has_width() && x.throughput.ci_low > 0.0)?;
                let x = i as f64;
                Some(ErrorBar::new_vertical(
                    x,
                    cell.throughput.ci_low.max(lo),
                    cell.median_rps,
                    cell.throughput.ci_high.min(hi),
                    color.stroke_width(1),
                    6,
                ))
            });
            chart.draw_series(bars).map_err(err)?;
        }
        legend(&legend_area, r, &series)?;
        root.present().map_err(err)?;
    }
    Ok(Plot {
        file: format!("throughput-n{n}.svg"),
        title,
        svg,
    })
}

/// The cells the cost model misses by more than the threshold, each with its computed
/// reason; `None` when nothing was predicted.
pub(super) fn misses(r: &BenchReport, checks: &[Check]) -> Option<Table> {
    if checks.is_empty() {
        return None;
    }
    let (within, explained, all) = score(checks);
    let measured = |c: &Check| {
        r.cells
            .iter()
            .find(|x| {
                x.regime == c.regime
                    && x.variant == c.variant
                    && x.n == c.n
                    && x.clients == c.clients
            })
            .map(|x| x.throughput)
            .filter(|t| t.n > 0)
    };
    let rows: Vec<Vec<String>> = checks
        .iter()
        .filter(|c| !c.within)
        .map(|c| {
            vec![
                format!("`{}`", c.variant),
                c.n.to_string(),
                c.clients.to_string(),
                measured(c).map_or(thousands(c.measured_rps), |i| i.text(thousands)),
                label(&c.prediction),
                // The measured interval over the prediction's point (its range's middle).
                measured(c).filter(|_| c.measured_rps > 0.0).map_or(
                    format!("{:.2}", c.ratio),
                    |i| {
                        let scale = c.ratio / c.measured_rps;
                        crate::bench::rules::ratio_ci(&i.map(|x| x * scale))
                    },
                ),
                c.explanation.clone(),
            ]
        })
        .collect();
    Some(Table {
        title: "Cells off their prediction".into(),
        intro: format!(
            "{within} of {all} cells ({:.0}%) are within {:.0}% of their prediction (or inside its range); of the {} others, {} are accounted for (placement, noise, a plateau, an interval that holds the prediction, a machine that moved) and {} {} unexplained.",
            100.0 * within as f64 / all as f64,
            THRESHOLD * 100.0,
            all - within,
            explained - within,
            all - explained,
            match all - explained {
                1 => "is",
                _ => "are",
            }
        ),
        header: [
            "model",
            "n",
            "clients",
            "measured req/s",
            "predicted",
            "measured / predicted",
            "why",
        ]
        .map(String::from)
        .to_vec(),
        left: 1,
        text_last: true,
        rows,
    })
}

/// Requests per second as horizontal bars, one group per row and one bar per client
/// count (log axis), each bar's prediction marked with a black tick.
pub(super) fn throughput_bars(
    r: &BenchReport,
    n: u32,
    clients: &[usize],
) -> Result<Plot, PlotError> {
    let title = format!(
        "fib({n}): requests per second, measured (bars, whiskers: 95% interval) and predicted (ticks){}",
        regime_suffix(r)
    );
    let rows: Vec<String> = series_colors(r).into_iter().map(|(v, _)| v).collect();
    let palette = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x2c, 0xa0, 0x2c),
    ];
    let cell = |v: &str, c: usize| {
        r.cells
            .iter()
            .find(|x| x.variant == v && x.n == n && x.clients == c)
    };
    let mut values: Vec<f64> = Vec::new();
    for v in &rows {
        for &c in clients {
            if let Some(cell) = cell(v, c) {
                values.push(cell.median_rps);
                values.push(cell.throughput.ci_high);
                values.extend(predict(r, cell).and_then(|p| p.rps));
            }
        }
    }
    let values: Vec<f64> = values.into_iter().filter(|v| *v > 0.0).collect();
    let lo = values.iter().copied().fold(f64::MAX, f64::min);
    let hi = values.iter().copied().fold(0f64, f64::max);
    let (lo, hi) = if hi > 0.0 {
        (lo * 0.5, hi * 1.6)
    } else {
        (1.0, 10.0)
    };
    let band = 1.0 / (clients.len().max(1) as f64 + 1.0);
    let mut svg = String::new();
    {
        let height = (90 + 26 * rows.len() * clients.len().max(1)).max(360) as u32;
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (chart_area, legend_area) = root.split_horizontally(800);
        let mut builder = ChartBuilder::on(&chart_area);
        builder
            .caption(&title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(170);
        let rows_f = rows.len() as f64;
        let mut chart = builder
            .build_cartesian_2d(
                (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
                0.0..rows_f,
            )
            .map_err(err)?;
        let name = |y: &f64| {
            // Row i sits between rows_f - i - 1 and rows_f - i: the first row on top.
            let i = rows_f - y - 0.5;
            match (i - i.round()).abs() < 1e-6 && i >= 0.0 {
                true => rows.get(i.round() as usize).map_or(String::new(), |v| {
                    format!("{v}{}", if r.is_peer(v) { " †" } else { "" })
                }),
                false => String::new(),
            }
        };
        chart
            .configure_mesh()
            .x_desc("requests per second (log)")
            .x_label_formatter(&|x| short(*x))
            .y_labels(rows.len() * 2 + 1)
            .y_label_formatter(&name)
            .disable_y_mesh()
            .draw()
            .map_err(err)?;
        for (i, v) in rows.iter().enumerate() {
            let top = rows_f - i as f64;
            for (k, &c) in clients.iter().enumerate() {
                let Some(cell) = cell(v, c).filter(|x| x.median_rps > 0.0) else {
                    continue;
                };
                let color = palette[k % palette.len()];
                let y1 = top - band * (k as f64 + 0.5);
                let y0 = y1 - band;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(lo, y0), (cell.median_rps, y1)],
                        color.filled(),
                    )))
                    .map_err(err)?;
                // The cell's confidence interval, as an error bar across the bar's end.
                if cell.throughput.has_width() {
                    let at = (y0 + y1) / 2.0;
                    chart
                        .draw_series(std::iter::once(ErrorBar::new_horizontal(
                            at,
                            cell.throughput.ci_low.max(lo),
                            cell.median_rps,
                            cell.throughput.ci_high.min(hi),
                            BLACK.mix(0.6).stroke_width(1),
                            8,
                        )))
                        .map_err(err)?;
                }
                if let Some(p) = predict(r, cell) {
                    let marks: Vec<f64> = match p.rps {
                        Some(point) => vec![point],
                        None => vec![p.low, p.high],
                    };
                    for x in marks {
                        chart
                            .draw_series(std::iter::once(PathElement::new(
                                vec![(x, y0 - band * 0.15), (x, y1 + band * 0.15)],
                                BLACK.stroke_width(3),
                            )))
                            .map_err(err)?;
                    }
                }
            }
        }
        for (k, &c) in clients.iter().enumerate() {
            let y = 40 + 22 * k as i32;
            legend_area
                .draw(&Rectangle::new(
                    [(8, y - 7), (30, y + 7)],
                    palette[k % palette.len()].filled(),
                ))
                .map_err(err)?;
            legend_area
                .draw(&Text::new(
                    plural(c, "client"),
                    (38, y - 7),
                    ("sans-serif", 13),
                ))
                .map_err(err)?;
        }
        let y = 40 + 22 * clients.len() as i32;
        legend_area
            .draw(&PathElement::new(
                vec![(19, y - 9), (19, y + 9)],
                BLACK.stroke_width(3),
            ))
            .map_err(err)?;
        legend_area
            .draw(&Text::new("predicted", (38, y - 7), ("sans-serif", 13)))
            .map_err(err)?;
        legend_area
            .draw(&Text::new("(two ticks:", (38, y + 11), ("sans-serif", 12)))
            .map_err(err)?;
        legend_area
            .draw(&Text::new("a range)", (38, y + 26), ("sans-serif", 12)))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(Plot {
        file: format!("throughput-n{n}.svg"),
        title,
        svg,
    })
}

pub(super) fn latency_cdf(
    r: &BenchReport,
    n: u32,
    clients: usize,
) -> Result<Option<Plot>, PlotError> {
    let series: Vec<Series> = series_colors(r)
        .into_iter()
        .filter_map(|(v, color)| {
            let cell = r
                .cells
                .iter()
                .find(|x| x.variant == v && x.n == n && x.clients == clients)?;
            // Percentile spectrum against latency, as HdrHistogram plots it.
            let points: Vec<(f64, f64)> = cell
                .latency_cdf
                .iter()
                .filter(|&&[p, _]| p < 100.0)
                .map(|&[p, us]| (spectrum(p), us.max(1.0)))
                .collect();
            (!points.is_empty()).then_some((v, color, points))
        })
        .collect();
    if series.is_empty() {
        return Ok(None);
    }
    let title = format!(
        "fib({n}), {clients} client{}: latency distribution{}",
        if clients == 1 { "" } else { "s" },
        regime_suffix(r)
    );
    let values = series.iter().flat_map(|s| s.2.iter().map(|p| p.1));
    let (lo, hi) = values.fold((f64::MAX, 1f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = (lo * 0.8, hi * 1.25);
    let mut svg = String::new();
    {
        let size = (WIDTH, height_for(series.len()));
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let (chart_area, legend_area) = with_legend(&root)?;
        let mut chart = titled(&chart_area, &title)
            .build_cartesian_2d(
                0.0..4.0,
                (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("percentile (spectrum: 90%, 99%, 99.9%, ... equally spaced)")
            .y_desc("latency, µs (log)")
            .x_labels(9)
            .x_label_formatter(&|x: &f64| match (x - x.round()).abs() < 1e-6 {
                true => spectrum_label(x.round()),
                false => String::new(),
            })
            .y_label_formatter(&|y| short(*y))
            .draw()
            .map_err(err)?;
        for (name, color, points) in &series {
            draw_line(&mut chart, r, name, points, *color)?;
        }
        legend(&legend_area, r, &series)?;
        root.present().map_err(err)?;
    }
    Ok(Some(Plot {
        file: format!("latency-n{n}-c{clients}.svg"),
        title,
        svg,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cells_percentiles_carry_their_intervals_over_all_its_requests() {
        let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        for us in 1..=1000u64 {
            h.record(us).unwrap();
        }
        let sample = crate::bench::results::Sample {
            regime: String::new(),
            variant: "threads".into(),
            n: 1,
            clients: 1,
            repetition: 0,
            throughput_rps: 1000.0,
            p50_us: 500,
            p99_us: 990,
            per_connection: vec![1000],
            errors: 0,
            histogram: crate::load::encode_histogram(&h),
            client: None,
        };
        let r = crate::bench::results::tests::report_of(vec![sample.clone()]);
        // 1,000 requests: ranks 469-532 and 983-997 (scipy's quantile_test).
        assert_eq!(
            latency_cell(&r, &r.cells[0]),
            "500 [469–532] / 990 [983–997]"
        );
        let bare = crate::bench::results::tests::report_of(vec![crate::bench::results::Sample {
            histogram: String::new(),
            ..sample
        }]);
        assert_eq!(latency_cell(&bare, &bare.cells[0]), "500 / 990");
    }
}
