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
//!
//! Only the parts of one whole are merged (k6 checks that execution segments tile the
//! load; users of vegeta and wrk2 who merged a result file twice reported doubled
//! rates): a report given twice, two reports of the same agent, or agents of different
//! splits are refused, naming the files; an incomplete set of agents is merged only
//! when asked ([`merge_named`] with `partial`), and the report then says which agents
//! are missing.

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
    #[error("{second} is the same report as {first}: give each agent's report once")]
    Duplicate { first: String, second: String },
    #[error(
        "{first} and {second} are both {segment}: two runs of the same part of the load would count it twice; keep one"
    )]
    SameSegment {
        segment: String,
        first: String,
        second: String,
    },
    #[error(
        "{first} is agent {a} and {second} agent {b}: parts of different splits of the load; merge the agents of one split (all run with --segment I/N, one N)"
    )]
    DifferentSplits {
        first: String,
        a: String,
        second: String,
        b: String,
    },
    #[error(
        "agent {missing} of the split is missing (the reports are {given}): merge every agent's report, or pass --partial to merge these and have the report say which agents are missing"
    )]
    Incomplete { missing: String, given: String },
}

/// How a report names its part of the load: `agent 1/2`, or `a whole load (no
/// --segment)`.
fn part(r: &Report) -> String {
    match &r.segment {
        Some(s) => format!("agent {s}"),
        None => "a whole load (no --segment)".into(),
    }
}

/// Checks that `reports` (named `names`, e.g. their files) are distinct parts of one
/// split and, unless `partial`, all of them; returns the agents missing (`2/3`), in
/// order.
///
/// # Errors
/// A report given twice, two of one segment, segments of different splits, or (not
/// `partial`) a missing agent.
pub fn check_parts(
    names: &[String],
    reports: &[Report],
    partial: bool,
) -> Result<Vec<String>, MergeError> {
    let name = |i: usize| {
        names
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("report {}", i + 1))
    };
    let segment = |r: &Report| {
        r.segment
            .as_deref()
            .and_then(|s| super::spec::Segment::parse(s).ok())
            .unwrap_or(super::spec::Segment::WHOLE)
    };
    for (j, b) in reports.iter().enumerate() {
        for (i, a) in reports[..j].iter().enumerate() {
            if a == b {
                return Err(MergeError::Duplicate {
                    first: name(i),
                    second: name(j),
                });
            }
            let (sa, sb) = (segment(a), segment(b));
            if sa.count != sb.count {
                return Err(MergeError::DifferentSplits {
                    first: name(i),
                    a: sa.to_string(),
                    second: name(j),
                    b: sb.to_string(),
                });
            }
            if sa == sb {
                return Err(MergeError::SameSegment {
                    segment: part(a),
                    first: name(i),
                    second: name(j),
                });
            }
        }
    }
    let count = reports.first().map_or(1, |r| segment(r).count);
    let missing: Vec<String> = (0..count)
        .filter(|&index| !reports.iter().any(|r| segment(r).index == index))
        .map(|index| super::spec::Segment { index, count }.to_string())
        .collect();
    if !missing.is_empty() && !partial {
        return Err(MergeError::Incomplete {
            missing: missing.join(", "),
            given: (0..reports.len())
                .map(|i| format!("{} ({})", name(i), part(&reports[i])))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(missing)
}

/// [`merge`] of the reports named `names` (their files, in error messages); with
/// `partial`, an incomplete set of agents is merged and the report's notes say which
/// are missing.
///
/// # Errors
/// As [`check_parts`] and [`merge`].
pub fn merge_named(
    names: &[String],
    reports: &[Report],
    partial: bool,
) -> Result<Report, MergeError> {
    let missing = check_parts(names, reports, partial)?;
    let mut merged = merge_unchecked(reports)?;
    if !missing.is_empty() {
        let count = missing.len() + reports.len();
        merged.notes.push(format!(
            "incomplete: agent{} {} of {count} missing (merged with --partial); connections, rate and every count are those of the {} agents present, not of the whole load",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", "),
            reports.len()
        ));
    }
    Ok(merged)
}

/// One report of the whole load from its agents' reports: every agent of one split,
/// each once ([`check_parts`]).
///
/// # Errors
/// No reports, reports that are not the parts of one whole ([`check_parts`]), reports
/// of different loads (mode, classes), or a histogram that does not decode.
pub fn merge(reports: &[Report]) -> Result<Report, MergeError> {
    if reports.is_empty() {
        return Err(MergeError::Empty);
    }
    check_parts(&[], reports, false)?;
    merge_unchecked(reports)
}

fn merge_unchecked(reports: &[Report]) -> Result<Report, MergeError> {
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
        sent: reports.iter().map(|r| r.sent).sum(),
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
        // Each agent read the server over its own window: not one figure of the whole.
        server: None,
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
mod tests;
