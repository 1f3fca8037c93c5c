//! The head line on the load generator's own cost: what fiblab's client spent per
//! request across a run, and the cells where it may have set the figure.

use crate::bench::results::{BenchReport, plural};

/// What the load generator itself spent across the seed tables' repetitions, and the
/// cells where a client thread was so busy that the client, not the server, may have set
/// the figure; `None` without any record of it.
pub(super) fn client_line(r: &BenchReport) -> Option<String> {
    let used: Vec<(
        &crate::bench::results::Sample,
        crate::bench::results::ClientUse,
    )> = r
        .samples
        .iter()
        .filter_map(|s| s.client.map(|c| (s, c)))
        .collect();
    if used.is_empty() {
        return None;
    }
    let cpu: Vec<f64> = used.iter().map(|(_, c)| c.cpu_us_per_request).collect();
    let (low, high) = cpu
        .iter()
        .fold((f64::INFINITY, 0.0_f64), |(l, h), &v| (l.min(v), h.max(v)));
    // Per cell: how many of its repetitions had a client thread over 90% busy, and the
    // busiest.
    let mut busy: std::collections::BTreeMap<(&str, &str, u32, usize), (usize, f64)> =
        std::collections::BTreeMap::new();
    for (s, c) in used.iter().filter(|(_, c)| c.busiest > 0.9) {
        let e = busy
            .entry((s.regime.as_str(), s.variant.as_str(), s.n, s.clients))
            .or_default();
        *e = (e.0 + 1, e.1.max(c.busiest));
    }
    let cells: Vec<String> = busy
        .iter()
        .map(|((regime, variant, n, clients), (times, most))| {
            format!(
                "`{variant}` n={n} {}{} ({} of its repetitions, up to {:.0}%)",
                plural(*clients, "client"),
                match regime.is_empty() {
                    true => String::new(),
                    false => format!(" in `{regime}`"),
                },
                times,
                most * 100.0
            )
        })
        .collect();
    let limited = match cells.len() {
        0 => "no repetition had a client thread over 90% busy".to_string(),
        n => format!(
            "in {n} {} a client thread was over 90% busy, so the client may have set the figure: {}{}",
            if n == 1 { "cell" } else { "cells" },
            cells.iter().take(4).cloned().collect::<Vec<_>>().join(", "),
            if n > 4 { " and more" } else { "" }
        ),
    };
    Some(format!(
        "The load generator's own cost (its threads' CPU time over each measured window, per reply, where it slept between replies; a spinning client is busy by design): median {:.1} µs per request over {} repetitions, {:.1}–{:.1}; {limited}.",
        crate::stats::median(&cpu),
        cpu.len(),
        low,
        high
    ))
}
