//! The seeds' claims the connections experiment decides.

use super::*;

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

/// The reply time of one active client grows by this factor from the smallest idle
/// count a row held to the largest; `None` without both.
pub(super) fn growth(c: &ConnectionRecords, row: &str) -> Option<(f64, u64, u64, usize, usize)> {
    let (first, last) = answered_span(c, row)?;
    let (a, b) = (load(first, 1)?.p50_us, load(last, 1)?.p50_us);
    Some((b as f64 / a.max(1) as f64, a, b, first.held, last.held))
}

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
            let say = |name: &str, g: (f64, u64, u64, usize, usize)| {
                format!(
                    "{name} p50 {} -> {} µs from {} to {} idle (x{:.1})",
                    thousands(g.1 as f64),
                    thousands(g.2 as f64),
                    thousands(g.3 as f64),
                    thousands(g.4 as f64),
                    g.0
                )
            };
            let tokio = growth(c, "tokio");
            let verdict =
                crate::bench::rules::holds(spin.0 >= 2.0 && flat(epoll.0) && tokio.is_none_or(|t| flat(t.0)));
            let mut evidence = vec![say("nonblocking", spin)];
            if let Some(s) = select {
                evidence.push(say("select", s));
            }
            if let Some(most) = select_most {
                evidence.push(format!(
                    "select held at most {} (FD_SETSIZE 1024 minus its own descriptors; the rest were told `ERR server busy`)",
                    thousands(most as f64)
                ));
            }
            evidence.push(say("epoll", epoll));
            if let Some(t) = tokio {
                evidence.push(say("tokio", t));
            }
            finding(source, claim, verdict, evidence.join("; "))
        }
        _ => missing(source, claim, "the connections experiment for nonblocking and epoll"),
    });

    let (source, claim) = (
        "seed 000, 总结 5",
        "coroutines are lighter than threads: an idle connection costs a coroutine far less memory",
    );
    let largest = |row: &str| {
        records.and_then(|c| {
            of_row(c, row)
                .into_iter()
                .filter(|x| x.held >= x.idle)
                .filter_map(|x| x.rss_kib.map(|v| (x.idle, v)))
                .next_back()
        })
    };
    out.push(match (largest("threads"), largest("coroutines")) {
        (Some((tn, t)), Some((cn, co))) => {
            let times = t / co.max(0.01);
            let verdict = crate::bench::rules::holds(times >= 5.0);
            let tokio = largest("tokio")
                .map(|(n, v)| format!("; tokio {v:.2} KiB at {}", thousands(n as f64)))
                .unwrap_or_default();
            finding(
                source,
                claim,
                verdict,
                format!(
                    "resident memory per idle connection: threads {t:.2} KiB at {} idle, coroutines {co:.2} KiB at {} ({times:.0}x less){tokio}",
                    thousands(tn as f64),
                    thousands(cn as f64)
                ),
            )
        }
        _ => missing(source, claim, "the connections experiment for threads and coroutines"),
    });
    out
}
