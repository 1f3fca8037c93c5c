//! Merging the reports of agents that split one load (`fiblab load --segment I/N`, on
//! one host or many) into the report of the whole load: `fiblab load merge A.json ...`.
//!
//! Exact where it can be: each class's HdrHistograms are added, so the merged
//! percentiles are those of one histogram that saw every sample (never an average of
//! percentiles); every count is summed (replies, errors by kind, timeouts, unfinished,
//! missed, per connection); per-second rows are lined up on the wall clock
//! (`started_unix_s`) and their counts summed. Only a second's p99 cannot be merged
//! exactly (each agent keeps the percentile, not the histogram): the merged row takes
//! the worst agent's, an upper bound.

use hdrhistogram::Histogram;

use super::report::{ClassReport, Percentiles, Report, SecondClass, SecondReport};
use super::stats::{encode_histogram, histogram};

/// Reports that cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("nothing to merge: give the agents' JSON reports")]
    Empty,
    #[error(
        "the reports are of different loads ({0}): merge only the agents of one split (same mode and request mix)"
    )]
    Mismatch(&'static str),
    #[error(
        "report {0}: its {1} histogram cannot be read ({2}); was it written by fiblab load --json?"
    )]
    BadHistogram(usize, String, String),
}

/// One report of the whole load from its agents' reports.
///
/// # Errors
/// No reports, reports of different loads (mode, classes), or a histogram
/// that does not decode.
pub fn merge(reports: &[Report]) -> Result<Report, MergeError> {
    let first = reports.first().ok_or(MergeError::Empty)?;
    for r in reports {
        if r.mode != first.mode {
            return Err(MergeError::Mismatch("open or closed loop"));
        }
        let labels = |r: &Report| {
            r.classes
                .iter()
                .map(|c| c.label.clone())
                .collect::<Vec<_>>()
        };
        if labels(r) != labels(first) {
            return Err(MergeError::Mismatch("request classes"));
        }
    }
    let mut classes = Vec::new();
    for (c, class) in first.classes.iter().enumerate() {
        let (mut intended, mut sent) = (histogram(3), histogram(3));
        let mut merged = ClassReport {
            requests_ok: 0,
            err_replies: 0,
            wrong: 0,
            ..class.clone()
        };
        let (mut min, mut min_sent, mut max, mut max_sent) = (u64::MAX, u64::MAX, 0, 0);
        for (i, r) in reports.iter().enumerate() {
            let theirs = &r.classes[c];
            add(&mut intended, &theirs.histogram, i, &class.label)?;
            add(&mut sent, &theirs.histogram_sent, i, &class.label)?;
            merged.requests_ok += theirs.requests_ok;
            merged.err_replies += theirs.err_replies;
            merged.wrong += theirs.wrong;
            if theirs.requests_ok > 0 {
                min = min.min(theirs.latency_us.min);
                max = max.max(theirs.latency_us.max);
                min_sent = min_sent.min(theirs.latency_sent_us.min);
                max_sent = max_sent.max(theirs.latency_sent_us.max);
            }
        }
        let exact = |h: &Histogram<u64>, min: u64, max: u64| match h.len() {
            0 => Percentiles::default(),
            _ => Percentiles {
                min,
                max,
                ..super::report::percentiles_of(h)
            },
        };
        merged.latency_us = exact(&intended, min, max);
        merged.latency_sent_us = exact(&sent, min_sent, max_sent);
        merged.histogram = encode_histogram(&intended);
        merged.histogram_sent = encode_histogram(&sent);
        classes.push(merged);
    }
    let mut errors = first.errors.clone();
    for r in &reports[1..] {
        errors.add(&r.errors);
    }
    let requests_ok: u64 = reports.iter().map(|r| r.requests_ok).sum();
    // The whole load was measured over the agents' common window; each agent's time is
    // the one it was asked for, so they agree unless one ended early.
    let measured_s = reports.iter().map(|r| r.measured_s).fold(0.0, f64::max);
    let mut per_connection = vec![
        0u64;
        reports
            .iter()
            .map(|r| r.per_connection.len())
            .max()
            .unwrap_or(0)
    ];
    for r in reports {
        for (i, ok) in r.per_connection.iter().enumerate() {
            per_connection[i] += ok;
        }
    }
    let mut notes: Vec<String> = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        for note in &r.notes {
            notes.push(format!(
                "agent {}: {note}",
                r.segment.clone().unwrap_or_else(|| (i + 1).to_string())
            ));
        }
    }
    let start = reports
        .iter()
        .filter_map(|r| r.started_unix_s)
        .fold(f64::INFINITY, f64::min);
    if reports.iter().any(|r| r.started_unix_s.is_none()) && reports.len() > 1 {
        notes.push("some reports carry no start time (not run with --segment): their seconds are lined up from each one's own start".into());
    }
    let spread = reports
        .iter()
        .filter_map(|r| r.started_unix_s)
        .fold(f64::NEG_INFINITY, f64::max)
        - start;
    if spread.is_finite() && spread > 0.010 {
        notes.push(format!(
            "the agents started {:.1} ms apart: their schedules were not one (use --start-at)",
            spread * 1000.0
        ));
    }
    let per_second = seconds(reports, start);
    let rate = match reports.iter().all(|r| r.rate.is_some()) {
        true => Some(reports.iter().filter_map(|r| r.rate).sum::<f64>()),
        false => None,
    };
    let mut thread_busy = Vec::new();
    for r in reports {
        thread_busy.extend(&r.client.thread_busy);
    }
    // Agents on other hosts may reach the server at other addresses (its interfaces, a
    // balancer): all of them are named.
    let mut targets: Vec<&str> = reports.iter().map(|r| r.target.as_str()).collect();
    targets.dedup();
    if targets.len() > 1 {
        notes.push(format!(
            "the agents addressed the server as {}",
            targets.join(", ")
        ));
    }
    Ok(Report {
        schema: first.schema,
        target: targets.join(","),
        mode: first.mode.clone(),
        connections: reports.iter().map(|r| r.connections).sum(),
        pipeline: first.pipeline,
        rate: rate.map(|r| (r * 1000.0).round() / 1000.0),
        threads: reports.iter().map(|r| r.threads).sum(),
        spin: reports.iter().any(|r| r.spin),
        tick_us: reports.iter().map(|r| r.tick_us).fold(0.0, f64::max),
        // The agents' pinning, where they all had the same.
        cpus: match reports.iter().all(|r| r.cpus == first.cpus) {
            true => first.cpus.clone(),
            false => None,
        },
        seed: first.seed,
        warmup_s: first.warmup_s,
        measured_s,
        throughput_rps: match measured_s > 0.0 {
            true => (requests_ok as f64 / measured_s).round(),
            false => 0.0,
        },
        requests_ok,
        errors,
        unfinished: reports.iter().map(|r| r.unfinished).sum(),
        missed: reports.iter().map(|r| r.missed).sum(),
        classes,
        per_connection,
        per_second,
        client: super::report::ClientCost::new(
            thread_busy,
            reports.iter().any(|r| r.client.likely_bottleneck),
            // Exact: the agents' windows summed, over all their replies.
            match reports.iter().all(|r| r.client.window.is_some()) {
                true => Some(super::stats::ThreadCost::sum(
                    reports.iter().filter_map(|r| r.client.window.as_ref()),
                )),
                false => None,
            },
            requests_ok,
        ),
        notes,
        segment: None,
        started_unix_s: start.is_finite().then_some(start),
        merged_from: reports.len(),
    })
}

/// Adds one report's base64 HdrHistogram into `into`.
fn add(
    into: &mut Histogram<u64>,
    text: &str,
    report: usize,
    label: &str,
) -> Result<(), MergeError> {
    if text.is_empty() {
        return Ok(());
    }
    let bad = |why: String| MergeError::BadHistogram(report + 1, label.to_string(), why);
    let h = super::stats::decode_histogram(text).map_err(|e| bad(e.to_string()))?;
    into.add(&h).map_err(|e| bad(format!("{e:?}")))
}

/// The per-second rows of every report on one wall clock (seconds since `start`),
/// counts summed; a second's p99 is the worst agent's.
fn seconds(reports: &[Report], start: f64) -> Vec<SecondReport> {
    let mut rows: Vec<SecondReport> = Vec::new();
    for r in reports {
        let offset = match (r.started_unix_s, start.is_finite()) {
            (Some(s), true) => (s - start).round().max(0.0) as u64,
            _ => 0,
        };
        for second in &r.per_second {
            let at = second.second + offset;
            let row = match rows.iter_mut().position(|x| x.second == at) {
                Some(i) => &mut rows[i],
                None => {
                    rows.push(SecondReport {
                        second: at,
                        span_s: second.span_s,
                        classes: second
                            .classes
                            .iter()
                            .map(|c| SecondClass {
                                label: c.label.clone(),
                                requests_ok: 0,
                                p99_us: 0,
                                errors: 0,
                            })
                            .collect(),
                    });
                    let last = rows.len() - 1;
                    &mut rows[last]
                }
            };
            row.span_s = row.span_s.max(second.span_s);
            for (mine, theirs) in row.classes.iter_mut().zip(&second.classes) {
                mine.requests_ok += theirs.requests_ok;
                mine.errors += theirs.errors;
                mine.p99_us = mine.p99_us.max(theirs.p99_us);
            }
        }
    }
    rows.sort_by_key(|r| r.second);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report of one class whose latencies are `samples`, µs.
    fn report(samples: &[u64], segment: &str, started: f64) -> Report {
        let mut h = histogram(3);
        for &s in samples {
            h.record(s).unwrap();
        }
        let p = super::super::report::percentiles_of(&h);
        Report {
            schema: super::super::report::SCHEMA_VERSION,
            target: "127.0.0.1:25000".into(),
            mode: "open".into(),
            connections: 2,
            pipeline: 1,
            rate: Some(1000.0),
            threads: 1,
            spin: false,
            tick_us: 0.0,
            cpus: None,
            seed: 1,
            warmup_s: 0.0,
            measured_s: 1.0,
            throughput_rps: samples.len() as f64,
            requests_ok: samples.len() as u64,
            errors: super::super::stats::Errors {
                timeout: 1,
                ..Default::default()
            },
            unfinished: 2,
            missed: 3,
            classes: vec![ClassReport {
                label: "n=1".into(),
                weight: 1,
                requests_ok: samples.len() as u64,
                err_replies: 0,
                wrong: 0,
                latency_us: Percentiles {
                    min: *samples.iter().min().unwrap(),
                    max: *samples.iter().max().unwrap(),
                    ..p.clone()
                },
                latency_sent_us: p,
                histogram: encode_histogram(&h),
                histogram_sent: encode_histogram(&h),
            }],
            per_connection: vec![samples.len() as u64, 0],
            per_second: vec![SecondReport {
                second: 0,
                span_s: 1.0,
                classes: vec![SecondClass {
                    label: "n=1".into(),
                    requests_ok: samples.len() as u64,
                    p99_us: *samples.iter().max().unwrap(),
                    errors: 0,
                }],
            }],
            // 10 µs of client CPU and one sleep per reply, in each agent.
            client: super::super::report::ClientCost::new(
                vec![0.5],
                false,
                Some(crate::load::ThreadCost {
                    cpu_s: samples.len() as f64 * 10e-6,
                    sleeps: samples.len() as u64,
                    preempted: 0,
                }),
                samples.len() as u64,
            ),
            notes: Vec::new(),
            segment: Some(segment.into()),
            started_unix_s: Some(started),
            merged_from: 0,
        }
    }

    #[test]
    fn merged_percentiles_are_those_of_one_histogram_of_every_sample() {
        // Two agents with very different latencies: an average of their p99s would be
        // far from the p99 of all samples.
        let fast: Vec<u64> = (1..=990).map(|i| 100 + i % 50).collect();
        let slow: Vec<u64> = (1..=10).map(|i| 20_000 + i * 100).collect();
        let a = report(&fast, "1/2", 1000.0);
        let b = report(&slow, "2/2", 1000.0);
        let merged = merge(&[a.clone(), b.clone()]).unwrap();
        let all: Vec<u64> = fast.iter().chain(&slow).copied().collect();
        let one = report(&all, "1/1", 1000.0);
        assert_eq!(merged.classes[0].latency_us, one.classes[0].latency_us);
        assert_eq!(merged.requests_ok, 1000);
        assert_eq!(merged.errors.timeout, 2);
        assert_eq!((merged.unfinished, merged.missed), (4, 6));
        assert_eq!(merged.rate, Some(2000.0));
        assert_eq!(merged.connections, 4);
        assert_eq!(merged.per_connection, [1000, 0]);
        assert_eq!(merged.merged_from, 2);
        // The client's cost: the agents' windows summed, over all their replies.
        assert_eq!(merged.client.cpu_us_per_request, Some(10.0));
        assert_eq!(merged.client.sleeps_per_request, Some(1.0));
        let avg_p99 = (a.classes[0].latency_us.p99 + b.classes[0].latency_us.p99) / 2;
        assert_ne!(merged.classes[0].latency_us.p99, avg_p99);
    }

    #[test]
    fn seconds_line_up_on_the_wall_clock() {
        let a = report(&[100; 10], "1/2", 1000.0);
        let b = report(&[100; 20], "2/2", 1001.0);
        let merged = merge(&[a, b]).unwrap();
        let seconds: Vec<(u64, u64)> = merged
            .per_second
            .iter()
            .map(|s| (s.second, s.classes[0].requests_ok))
            .collect();
        assert_eq!(seconds, [(0, 10), (1, 20)]);
        assert!(
            merged
                .notes
                .iter()
                .any(|n| n.contains("started 1000.0 ms apart"))
        );
    }

    #[test]
    fn reports_of_different_loads_are_refused() {
        let a = report(&[100], "1/2", 0.0);
        let mut b = report(&[100], "2/2", 0.0);
        b.mode = "closed".into();
        assert_eq!(
            merge(&[a.clone(), b]),
            Err(MergeError::Mismatch("open or closed loop"))
        );
        assert_eq!(merge(&[]), Err(MergeError::Empty));
        let mut c = a.clone();
        c.classes[0].histogram = "not base64!".into();
        assert!(matches!(
            merge(&[a, c]),
            Err(MergeError::BadHistogram(2, _, _))
        ));
    }
}
