//! The report's plots, as SVG: throughput against clients per model, the latency CDF
//! per model, and seed 004's starvation timeline, one small panel per model.
//!
//! Drawn with `plotters`' SVG backend and its naive font metrics: text is left to the
//! browser, so the files need no fonts to be made and render anywhere.

use plotters::coord::Shift;
use plotters::coord::ranged1d::Ranged;
use plotters::prelude::*;

use super::FLOOR;
use super::report::BenchReport;

/// One plot: its file name in an output folder, a caption, and the SVG itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    pub file: String,
    pub title: String,
    pub svg: String,
}

/// Every plot the report's data allows.
pub fn all(r: &BenchReport) -> Result<Vec<Plot>, String> {
    let mut plots = Vec::new();
    let mut workloads: Vec<u32> = r.cells.iter().map(|c| c.n).collect();
    workloads.sort_unstable();
    workloads.dedup();
    let mut clients: Vec<usize> = r.cells.iter().map(|c| c.clients).collect();
    clients.sort_unstable();
    clients.dedup();
    for &n in &workloads {
        plots.push(throughput(r, n, &clients)?);
        for &c in &clients {
            if let Some(plot) = latency_cdf(r, n, c)? {
                plots.push(plot);
            }
        }
    }
    if !r.starvation.is_empty() {
        plots.push(starvation(r)?);
    }
    Ok(plots)
}

/// The rows in report order, each with its colour: the floor black, so it reads as the
/// reference line; the others spread round the colour wheel by the golden ratio, so
/// neighbours differ however many rows there are.
fn series_colors(r: &BenchReport) -> Vec<(String, RGBColor)> {
    let mut variants: Vec<String> = Vec::new();
    for c in &r.cells {
        if !variants.contains(&c.variant) {
            variants.push(c.variant.clone());
        }
    }
    let mut k = 0u32;
    variants
        .into_iter()
        .map(|v| {
            let color = if v == FLOOR {
                BLACK
            } else {
                k += 1;
                let hue = (f64::from(k) * 0.618_034) % 1.0;
                let lightness = [0.38, 0.52, 0.45][k as usize % 3];
                let c = HSLColor(hue, 0.8, lightness).to_rgba();
                RGBColor(c.0, c.1, c.2)
            };
            (v, color)
        })
        .collect()
}

/// `25000` -> `25k`, `1500000` -> `1.5M`: axis labels a reader takes in at a glance.
fn short(value: f64) -> String {
    let (scaled, suffix) = match value.abs() {
        v if v >= 1e6 => (value / 1e6, "M"),
        v if v >= 1e3 => (value / 1e3, "k"),
        _ => (value, ""),
    };
    let text = format!("{scaled:.1}");
    format!("{}{suffix}", text.trim_end_matches(".0"))
}

/// A row's name, colour and points.
type Series = (String, RGBColor, Vec<(f64, f64)>);

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("cannot draw a plot: {e:?}")
}

/// A legend as a column of coloured lines and names, beside the chart rather than over
/// the data; peers' lines dashed, as in the chart.
fn legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    r: &BenchReport,
    series: &[Series],
) -> Result<(), String> {
    for (i, (label, color, _)) in series.iter().enumerate() {
        let y = 40 + 18 * i as i32;
        let dashes: &[(i32, i32)] = if r.peers.iter().any(|p| &p.name == label) {
            &[(8, 14), (18, 24), (28, 32)]
        } else {
            &[(8, 32)]
        };
        for &(from, to) in dashes {
            area.draw(&PathElement::new(
                vec![(from, y), (to, y)],
                color.stroke_width(3),
            ))
            .map_err(err)?;
        }
        area.draw(&Text::new(label.clone(), (38, y - 7), ("sans-serif", 13)))
            .map_err(err)?;
    }
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// A white canvas split into the chart (left) and its legend (right).
fn with_legend<'a>(root: &Area<'a>) -> Result<(Area<'a>, Area<'a>), String> {
    root.fill(&WHITE).map_err(err)?;
    Ok(root.split_horizontally(740))
}

/// A chart with the report's title and label room, ready for its coordinates.
fn titled<'a, 'b>(area: &'a Area<'b>, title: &str) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    builder
}

/// A row's line: solid for fiblab's models, dashed for peers (`--target`).
fn draw_line<X, Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, Y>>,
    r: &BenchReport,
    name: &str,
    points: &[(f64, f64)],
    color: RGBColor,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let style = color.stroke_width(2);
    if r.peers.iter().any(|p| p.name == name) {
        chart
            .draw_series(DashedLineSeries::new(points.to_vec(), 6, 4, style))
            .map_err(err)?;
    } else {
        chart
            .draw_series(LineSeries::new(points.to_vec(), style))
            .map_err(err)?;
    }
    Ok(())
}

fn throughput(r: &BenchReport, n: u32, clients: &[usize]) -> Result<Plot, String> {
    let title = format!("fib({n}): requests per second against clients");
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
        let root = SVGBackend::with_string(&mut svg, (960, 520)).into_drawing_area();
        let (chart_area, legend_area) = with_legend(&root)?;
        let mut chart = titled(&chart_area, &title)
            .build_cartesian_2d(-0.3..last + 0.3, (lo..hi).log_scale())
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
            .y_labels(8)
            .y_label_formatter(&|y| short(*y))
            .disable_x_mesh()
            .draw()
            .map_err(err)?;
        for (name, color, points) in &series {
            draw_line(&mut chart, r, name, points, *color)?;
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(err)?;
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

fn latency_cdf(r: &BenchReport, n: u32, clients: usize) -> Result<Option<Plot>, String> {
    let series: Vec<Series> = series_colors(r)
        .into_iter()
        .filter_map(|(v, color)| {
            let cell = r
                .cells
                .iter()
                .find(|x| x.variant == v && x.n == n && x.clients == clients)?;
            let points: Vec<(f64, f64)> = cell
                .latency_cdf
                .iter()
                .map(|&[p, us]| (us.max(1.0), p))
                .collect();
            (!points.is_empty()).then_some((v, color, points))
        })
        .collect();
    if series.is_empty() {
        return Ok(None);
    }
    let title = format!(
        "fib({n}), {clients} client{}: latency distribution",
        if clients == 1 { "" } else { "s" }
    );
    let values = series.iter().flat_map(|s| s.2.iter().map(|p| p.0));
    let (lo, hi) = values.fold((f64::MAX, 1f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 520)).into_drawing_area();
        let (chart_area, legend_area) = with_legend(&root)?;
        let mut chart = titled(&chart_area, &title)
            .build_cartesian_2d((lo * 0.8..hi * 1.25).log_scale(), 0.0..100.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("latency, µs (log)")
            .y_desc("requests answered within it, %")
            .x_label_formatter(&|x| short(*x))
            .y_label_formatter(&|y| format!("{y:.0}"))
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

/// Seed 004's timeline: light replies per second over the run, one panel per model,
/// the heavy request's time in the server shaded red.
fn starvation(r: &BenchReport) -> Result<Plot, String> {
    const COLUMNS: usize = 3;
    let title =
        "One heavy request among light ones: light replies per second (heavy request shaded)"
            .to_string();
    let panels = r.starvation.len();
    let rows = panels.div_ceil(COLUMNS);
    let (panel_w, panel_h) = (320u32, 190u32);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(
            &mut svg,
            (panel_w * COLUMNS as u32, 40 + panel_h * rows as u32),
        )
        .into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(&title, ("sans-serif", 17)).map_err(err)?;
        let areas = root.split_evenly((rows, COLUMNS));
        for (s, area) in r.starvation.iter().zip(areas) {
            let length = s.timeline.len() as f64 / 10.0;
            let rates: Vec<(f64, f64)> = s
                .timeline
                .iter()
                .enumerate()
                .map(|(i, &count)| (i as f64 / 10.0 + 0.05, count as f64 * 10.0))
                .collect();
            let top = rates.iter().map(|p| p.1).fold(1.0, f64::max) * 1.15;
            let mut chart = ChartBuilder::on(&area)
                .caption(
                    format!("{}: kept {:.2}", s.variant, s.kept),
                    ("sans-serif", 13),
                )
                .margin(6)
                .x_label_area_size(22)
                .y_label_area_size(46)
                .build_cartesian_2d(0.0..length.max(0.1), 0.0..top)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_labels(6)
                .y_labels(4)
                .label_style(("sans-serif", 10))
                .x_label_formatter(&|x| format!("{x:.0} s"))
                .y_label_formatter(&|y| short(*y))
                .draw()
                .map_err(err)?;
            let heavy_end = s.heavy_s.map_or(length, |t| (s.heavy_at_s + t).min(length));
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [
                        (s.heavy_at_s, 0.0),
                        (heavy_end.max(s.heavy_at_s + 0.02), top),
                    ],
                    RED.mix(0.18).filled(),
                )))
                .map_err(err)?;
            chart
                .draw_series(LineSeries::new(rates, BLUE.stroke_width(1)))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(Plot {
        file: "starvation.svg".into(),
        title,
        svg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_labels() {
        assert_eq!(short(25_000.0), "25k");
        assert_eq!(short(1_500_000.0), "1.5M");
        assert_eq!(short(120.0), "120");
        assert_eq!(short(2.5), "2.5");
    }

    #[test]
    fn svg_has_every_series_and_panel() {
        let report = crate::bench::report::tests::fixture_with_cdf();
        let plots = all(&report).unwrap();
        let files: Vec<&str> = plots.iter().map(|p| p.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "throughput-n1.svg",
                "latency-n1-c1.svg",
                "latency-n1-c2.svg",
                "starvation.svg"
            ]
        );
        for p in &plots {
            assert!(
                p.svg.starts_with("<svg") || p.svg.starts_with("<?xml"),
                "{}",
                p.file
            );
            assert!(p.svg.trim_end().ends_with("</svg>"), "{}", p.file);
        }
        assert!(
            plots[0].svg.contains("\nthreads\n"),
            "legend names the models"
        );
        assert!(plots[3].svg.contains("threads: kept 0.75"));
    }
}
