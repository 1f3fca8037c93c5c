//! The seeds' claims the connections experiment decides.

use super::*;

/// The seeds' claims this experiment decides.
pub(super) fn findings(r: &BenchReport) -> Vec<Finding> {
    let mut out = Vec::new();
    let records = r.connections.as_ref().filter(|c| !c.records.is_empty());

    let (source, claim) = (
        "seed 003",
        "from a non-blocking loop to select to selectors (epoll): each step stops paying for idle connections",
    );
    out.push(match records.map(|c| {
        (
            growth(c, "nonblocking"),
            growth(c, "select"),
            growth(c, "epoll"),
            of_row(c, "select").iter().map(|x| x.held).max(),
            c,
        )
    }) {
        Some((Some(spin), select, Some(epoll), select_most, c)) => {
            let flat = |g: f64| g <= 1.0 + THRESHOLD * 2.0;
            let say = |name: &str, g: &Growth| {
                format!(
                    "{name} p50 {} -> {} µs from {} to {} idle (x{})",
                    thousands(g.from_us as f64),
                    thousands(g.to_us as f64),
                    thousands(g.from_held as f64),
                    thousands(g.to_held as f64),
                    g.times.text(|v| format!("{v:.1}"))
                )
            };
            let tokio = growth(c, "tokio");
            let decided = crate::bench::rules::all(&[
                crate::bench::rules::decide(&spin.times, |g| g >= 2.0),
                crate::bench::rules::decide(&epoll.times, flat),
                tokio
                    .as_ref()
                    .map_or(Some(true), |t| crate::bench::rules::decide(&t.times, flat)),
            ]);
            let verdict = crate::bench::rules::verdict(decided);
            let mut evidence = vec![say("nonblocking", &spin)];
            if let Some(s) = &select {
                evidence.push(say("select", s));
            }
            if let Some(most) = select_most {
                evidence.push(format!(
                    "select held at most {} (FD_SETSIZE 1024 minus its own descriptors; the rest were told `ERR server busy`)",
                    thousands(most as f64)
                ));
            }
            evidence.push(say("epoll", &epoll));
            if let Some(t) = &tokio {
                evidence.push(say("tokio", t));
            }
            if decided.is_none() {
                evidence.push(format!(
                    "undecided at this precision: a growth interval straddles x2 (nonblocking) or x{:.1} (epoll, tokio); a longer active load narrows the p50s' intervals",
                    1.0 + THRESHOLD * 2.0
                ));
            }
            finding(source, claim, verdict, evidence.join("; "))
        }
        _ => missing(source, claim, "the connections experiment for nonblocking and epoll"),
    });

    let (source, claim) = (
        "seed 000, 总结 5",
        "coroutines are lighter than threads: an idle connection costs a coroutine far less memory",
    );
    // The slope of resident memory over the counts held: what one more idle connection
    // costs, with its interval (a plain division would spread the fixed cost over them).
    let fit = |row: &str| records.and_then(|c| fitted(c, row, |x| x.rss_kib));
    out.push(match (fit("threads"), fit("coroutines")) {
        (Some(t), Some(co)) => {
            // The ratio's interval from the two slopes' (each 95%: the ratio's at least
            // 90%); a coroutine's slope can reach 0, which leaves the ratio unbounded above.
            let floor = 0.01;
            let times = Interval {
                estimate: t.estimate / co.estimate.max(floor),
                ci_low: t.ci_low / co.ci_high.max(floor),
                ci_high: t.ci_high / co.ci_low.max(floor),
                ci_level: if t.has_width() || co.has_width() { 0.9 } else { 0.0 },
                n: t.n.min(co.n),
            };
            let decided = crate::bench::rules::decide(&times, |x| x >= 5.0);
            let kib = |v: f64| format!("{v:.2}");
            let tokio = fit("tokio")
                .map(|v| format!("; tokio {} KiB", v.text(kib)))
                .unwrap_or_default();
            let why = match decided {
                None => "; undecided at this precision: the ratio's interval straddles 5x (more counts, or repetitions of each, narrow the slopes)".to_string(),
                Some(_) => String::new(),
            };
            finding(
                source,
                claim,
                crate::bench::rules::verdict(decided),
                format!(
                    "resident memory per idle connection, the slope over {} and {} counts held: threads {} KiB, coroutines {} KiB ({} times less){tokio}{why}",
                    t.n,
                    co.n,
                    t.text(kib),
                    co.text(kib),
                    times.text(|v| format!("{v:.0}"))
                ),
            )
        }
        _ => missing(source, claim, "the connections experiment for threads and coroutines"),
    });
    out
}
