//! The canvas every bench plot is drawn on: SVG through `plotters`, a chart with its
//! legend beside it, one colour per row in report order, peers dashed. The plots
//! themselves belong to the experiments whose data they show.
//!
//! Drawn with `plotters`' SVG backend and its naive font metrics: text is left to the
//! browser, so the files need no fonts to be made and render anywhere.

use plotters::coord::Shift;
use plotters::coord::ranged1d::Ranged;
use plotters::prelude::*;

use super::results::{BenchReport, FLOOR};

/// A plot that plotters could not draw.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot draw a plot: {0}")]
pub struct PlotError(String);

/// The rows in report order, each with its colour: the floor black, so it reads as the
/// reference line; the others spread round the colour wheel by the golden ratio, so
/// neighbours differ however many rows there are.
pub fn series_colors(r: &BenchReport) -> Vec<(String, RGBColor)> {
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
                series_color(k as usize)
            };
            (v, color)
        })
        .collect()
}

/// The `k`th series' colour (from 1): hues a golden-ratio step apart, in three
/// lightnesses, so neighbours differ and no colour is too pale to read on white.
pub fn series_color(k: usize) -> RGBColor {
    let hue = (k as f64 * 0.618_034) % 1.0;
    let lightness = [0.38, 0.52, 0.45][k % 3];
    let c = HSLColor(hue, 0.8, lightness).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// `, regime shared` for the plot of one regime's records, so a picture read alone
/// still says which regime it shows; empty for a report without regimes.
pub fn regime_suffix(r: &BenchReport) -> String {
    match r.regimes.as_slice() {
        [one] => format!(", regime {}", one.name),
        _ => String::new(),
    }
}

/// `25000` -> `25k`, `1500000` -> `1.5M`: axis labels a reader takes in at a glance.
pub fn short(value: f64) -> String {
    let (scaled, suffix) = match value.abs() {
        v if v >= 1e6 => (value / 1e6, "M"),
        v if v >= 1e3 => (value / 1e3, "k"),
        _ => (value, ""),
    };
    let text = format!("{scaled:.1}");
    format!("{}{suffix}", text.trim_end_matches(".0"))
}

/// A row's name, colour and points.
pub type Series = (String, RGBColor, Vec<(f64, f64)>);

/// plotters' error, as a [`PlotError`].
pub fn err<E: std::fmt::Debug>(e: E) -> PlotError {
    PlotError(format!("{e:?}"))
}

/// A legend as a column of coloured lines and names, beside the chart rather than over
/// the data; peers' lines dashed, as in the chart.
pub fn legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    r: &BenchReport,
    series: &[Series],
) -> Result<(), PlotError> {
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

pub type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Width of a chart with its legend, pixels.
pub const WIDTH: u32 = 960;

/// Height of a chart whose legend lists `series` rows: the usual 520 px, taller when
/// the legend needs it, so that every row stays inside the canvas (two dozen peers
/// and variants are ordinary with `--target`).
pub fn height_for(series: usize) -> u32 {
    520u32.max(60 + 18 * series as u32)
}

/// Tick values for a log axis from `lo` to `hi`: 1, 2 and 5 times each power of ten,
/// so a value can be read off the axis (powers of ten alone leave whole decades
/// unlabelled).
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    if !(lo > 0.0 && hi > lo && hi.is_finite()) {
        return ticks;
    }
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for step in [1.0, 2.0, 5.0] {
            let tick = decade * step;
            if (lo..=hi).contains(&tick) {
                ticks.push(tick);
            }
        }
        decade *= 10.0;
    }
    ticks
}

/// The x position of percentile `p` (0-100) on a percentile-spectrum axis, the
/// HdrHistogram convention: log10(1 / (1 - p)), so 90% is 1, 99% is 2, 99.9% is 3 and
/// 99.99% is 4; the tail gets the room a linear axis gives to the median.
pub fn spectrum(p: f64) -> f64 {
    let tail = (1.0 - p / 100.0).max(1e-4);
    -tail.log10()
}

/// The label of a spectrum position: `0%`, `90%`, `99%`, `99.9%`, `99.99%`.
pub fn spectrum_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let text = format!("{p:.2}");
    format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
}

/// A white canvas split into the chart (left) and its legend (right).
pub fn with_legend<'a>(root: &Area<'a>) -> Result<(Area<'a>, Area<'a>), PlotError> {
    root.fill(&WHITE).map_err(err)?;
    Ok(root.split_horizontally(740))
}

/// A chart with the report's title and label room, ready for its coordinates.
pub fn titled<'a, 'b>(area: &'a Area<'b>, title: &str) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    builder
}

/// Req/s against closed-loop clients, both axes logarithmic, its mesh drawn: the chart
/// of every experiment that follows a model as clients grow (waiting, scale). `clients`
/// and `rps` are the axes' ranges.
pub fn clients_chart<'a, 'b>(
    root: &'a Area<'b>,
    title: &str,
    clients: std::ops::Range<f64>,
    rps: std::ops::Range<f64>,
) -> Result<ClientsChart<'a, 'b>, PlotError> {
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(clients.log_scale(), rps.log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("clients (N)")
        .y_desc("req/s")
        .label_style(("sans-serif", 11))
        .x_label_formatter(&|x| short(*x))
        .y_label_formatter(&|y| short(*y))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

/// The chart [`clients_chart`] builds.
pub type ClientsChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<
        plotters::coord::combinators::LogCoord<f64>,
        plotters::coord::combinators::LogCoord<f64>,
    >,
>;

/// A row's line: solid for fiblab's models, dashed for peers (`--target`).
pub fn draw_line<X, Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, Y>>,
    r: &BenchReport,
    name: &str,
    points: &[(f64, f64)],
    color: RGBColor,
) -> Result<(), PlotError>
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
    fn axes_have_readable_ticks() {
        assert_eq!(log_ticks(15.0, 600.0), [20.0, 50.0, 100.0, 200.0, 500.0]);
        assert!(log_ticks(0.0, 10.0).is_empty());
        assert_eq!(spectrum(0.0), 0.0);
        assert!((spectrum(99.0) - 2.0).abs() < 1e-9);
        assert!((spectrum(100.0) - 4.0).abs() < 1e-9, "capped at p99.99");
        let labels: Vec<String> = (0..=4).map(|x| spectrum_label(f64::from(x))).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
        assert_eq!(height_for(3), 520);
        assert!(height_for(32) >= 60 + 18 * 32);
    }
}
