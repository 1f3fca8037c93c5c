//! The figures fitted over the idle counts: a cost per connection as a slope with its
//! interval, and how an active client's reply time grew with the connections held.

use super::*;

/// A per-connection cost as the slope of the total over the connections held open at
/// every count `row` tried (least squares with its 95% interval, [`crate::stats::slope`]):
/// the marginal cost of one more connection, without what the server spent once. `value`
/// is a record's per-connection figure; counts where it is missing are left out.
pub(super) fn fitted(
    c: &ConnectionRecords,
    row: &str,
    value: impl Fn(&ConnectionRecord) -> Option<f64>,
) -> Option<crate::stats::Interval> {
    let (xs, ys): (Vec<f64>, Vec<f64>) = of_row(c, row)
        .into_iter()
        .filter(|x| x.held > 0)
        .filter_map(|x| {
            let open = (x.held + x.waiting) as f64;
            value(x).map(|v| (open, v * open))
        })
        .unzip();
    // A cost cannot be negative: an interval that reaches below 0 is cut there.
    crate::stats::slope(&xs, &ys).map(|f| crate::stats::Interval {
        ci_low: f.ci_low.max(0.0),
        ..f
    })
}

/// A fitted cost in a table cell: `18.37 [18.33–18.41]`, or `-` with under two counts.
pub(super) fn fitted_cell(
    fit: Option<crate::stats::Interval>,
    format: impl Fn(f64) -> String,
) -> String {
    fit.map_or("-".into(), |f| f.text(format))
}

/// The smallest and the largest idle counts `row` held at which one active client got
/// replies; `None` unless they differ.
pub(super) fn answered_span<'a>(
    c: &'a ConnectionRecords,
    row: &str,
) -> Option<(&'a ConnectionRecord, &'a ConnectionRecord)> {
    let records: Vec<&ConnectionRecord> = of_row(c, row)
        .into_iter()
        .filter(|x| x.held > 0 && load(x, 1).is_some_and(|a| a.requests_ok > 0))
        .collect();
    let (first, last) = (*records.first()?, *records.last()?);
    (first.idle != last.idle).then_some((first, last))
}

/// How one active client's p50 grew from the smallest idle count a row held to the
/// largest: the ratio with an interval from the two p50s' order-statistic intervals
/// (the low end over the high end and back: each 95%, so the ratio's at least 90%; over
/// the requests of one run per count), the two p50s (µs) and the two counts held.
pub(super) struct Growth {
    pub times: Interval,
    pub from_us: u64,
    pub to_us: u64,
    pub from_held: usize,
    pub to_held: usize,
}

/// The reply time of one active client grows by this factor from the smallest idle
/// count a row held to the largest; `None` without both.
pub(super) fn growth(c: &ConnectionRecords, row: &str) -> Option<Growth> {
    let (first, last) = answered_span(c, row)?;
    let (a, b) = (load(first, 1)?, load(last, 1)?);
    let p50 = |x: &ActiveLoad| {
        crate::load::decode_histogram(&x.histogram)
            .ok()
            .and_then(|h| crate::stats::quantile_interval(&h, 0.5))
            .unwrap_or_else(|| Interval::point(x.p50_us as f64))
    };
    let (ia, ib) = (p50(a), p50(b));
    let times = Interval {
        estimate: b.p50_us as f64 / a.p50_us.max(1) as f64,
        ci_low: ib.ci_low / ia.ci_high.max(1.0),
        ci_high: ib.ci_high / ia.ci_low.max(1.0),
        ci_level: if ia.has_width() || ib.has_width() {
            0.9
        } else {
            0.0
        },
        n: ia.n.min(ib.n),
    };
    Some(Growth {
        times,
        from_us: a.p50_us,
        to_us: b.p50_us,
        from_held: first.held,
        to_held: last.held,
    })
}
