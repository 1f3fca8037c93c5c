//! The scale-out experiment's tables, the kill's timeline plot, and its findings: every
//! figure measured, predicted (`predict.rs`) or computed from the records.

use plotters::prelude::*;

use super::predict::{check, imbalance, shares};
use super::records::{KillRecord, ScaleOutRecord, ScaleOutRecords, TIMELINE_MS};
use crate::balancer::Way;
use crate::bench::canvas::{PlotError, err};
use crate::bench::predict::THRESHOLD;
use crate::bench::results::{BenchReport, Finding, Plot, Table, Verdict, thousands};
use crate::bench::rules::{finding, missing, ratio, ratio_ci};
use crate::stats::{Interval, median};

fn label(r: &ScaleOutRecord) -> String {
    match r.way {
        Way::Process => "process".to_string(),
        way => format!("{way} ×{}", r.copies),
    }
}

/// The cells of one model and n, in the order measured.
fn groups(s: &ScaleOutRecords) -> Vec<(String, String, u32)> {
    let mut out: Vec<(String, String, u32)> = Vec::new();
    for r in &s.records {
        let key = (r.regime.clone(), r.model.clone(), r.n);
        if !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

fn ms(us: f64) -> String {
    format!("{:.2}", us / 1e3)
}

/// A percentile over the repetitions, ms: their median with its interval.
fn latency(per_repetition: &[u64]) -> String {
    let values: Vec<f64> = per_repetition.iter().map(|&x| x as f64).collect();
    Interval::of(&values).text(ms)
}

/// What the machine shares, in words, for the tables' intro.
fn sharing(s: &ScaleOutRecords) -> String {
    let Some(r) = s.records.first() else {
        return String::new();
    };
    let hosts = match s.netns {
        true => {
            " Each copy (copies sharing a port or a queue: all of them) sits in a network namespace of its own, reached over a veth pair: requests cross a real interface, not loopback."
        }
        false => "",
    };
    let cpus = match r.shared_cpus {
        Some(cpus) => format!(
            "Nothing is pinned: the copies, HAProxy and the load generator share this machine's {cpus} CPUs, so N copies share the CPUs one process has (each copy may use {cpus}/N), and a copy's gain can only come from how the work is spread, not from more CPUs."
        ),
        None => "Each copy is pinned to its own slice of the server's CPUs; HAProxy runs on CPUs of its own where the machine has CPUs neither side was given, else on the server's (said per row).".to_string(),
    };
    cpus + hosts
}

pub(super) fn tables(report: &BenchReport, s: &ScaleOutRecords) -> (Vec<Table>, Vec<String>) {
    let mut tables = Vec::new();
    for (regime, model, n) in groups(s) {
        let cells: Vec<&ScaleOutRecord> = s
            .records
            .iter()
            .filter(|r| r.regime == regime && r.model == model && r.n == n)
            .collect();
        let header = [
            "way",
            "clients",
            "req/s [95% CI]",
            "predicted",
            "measured / predicted",
            "p50 (ms) [95% CI]",
            "p99 (ms) [95% CI]",
            "share per copy",
            "busiest / even",
            "copies µs/req",
            "HAProxy µs/req (predicted)",
            "client µs/req",
            "errors",
            "why off",
        ];
        let rows = cells
            .iter()
            .map(|r| {
                let checked = check(report, r);
                let predicted =
                    checked
                        .as_ref()
                        .map_or("–".to_string(), |(p, _, _)| match p.range {
                            true => format!("{}–{}", thousands(p.low), thousands(p.high)),
                            false => thousands(p.rps),
                        });
                let vs = checked
                    .as_ref()
                    .map_or("–".to_string(), |(_, q, _)| ratio(*q));
                let why = checked
                    .as_ref()
                    .and_then(|(_, _, why)| why.as_ref().map(|w| w.1.clone()))
                    .unwrap_or_default();
                let hop = match (
                    r.balancer_cpu_us.is_empty(),
                    checked.as_ref().and_then(|c| c.0.hop),
                ) {
                    (false, Some(h)) => {
                        format!("{:.1} ({:.1})", median(&r.balancer_cpu_us), h.cpu_us)
                    }
                    _ => "–".to_string(),
                };
                let per_copy = match r.copies {
                    1 => "–".to_string(),
                    _ => shares(r)
                        .iter()
                        .map(|s| format!("{:.0}%", s * 100.0))
                        .collect::<Vec<_>>()
                        .join(" / "),
                };
                let median_us = |v: &[f64]| match v.is_empty() {
                    true => "–".to_string(),
                    false => format!("{:.1}", median(v)),
                };
                vec![
                    format!("`{}`", label(r)),
                    r.clients.to_string(),
                    Interval::of(&r.throughput_rps).text(thousands),
                    predicted,
                    vs,
                    latency(&r.p50_us),
                    latency(&r.p99_us),
                    per_copy,
                    match r.copies {
                        1 => "–".to_string(),
                        _ => format!("{:.2}", imbalance(r)),
                    },
                    median_us(&r.server_cpu_us),
                    hop,
                    median_us(&r.client_cpu_us),
                    r.errors.to_string(),
                    why,
                ]
            })
            .collect();
        let regime_words = match regime.is_empty() {
            true => String::new(),
            false => format!(" ({regime})"),
        };
        tables.push(Table {
            title: format!("Scale-out: `{model}`, fib({n}){regime_words}"),
            intro: format!(
                "Closed loops of persistent clients; each cell {} repetitions of {:.1} s, interleaved across the ways. {} Predicted: each copy by the model's formula on its share of the CPUs and clients, times the copies; held to the machine's CPUs where everything shares them (server, load generator and balancer CPU per request, calibrated); behind HAProxy one more hop each way, priced from the calibration (its CPU: HAProxy's calibrated CPU per forwarded request; its latency: a round trip across CPUs). Share per copy: the requests each copy counted itself. {}",
                cells.first().map_or(0, |r| r.throughput_rps.len()),
                s.duration_s,
                sharing(s),
                s.balancer
            ),
            header: header.iter().map(|h| h.to_string()).collect(),
            left: 1,
            text_last: true,
            rows,
        });
    }
    if !s.kills.is_empty() {
        tables.push(kill_table(s));
    }
    (tables, Vec::new())
}

/// The run's answers in sentences, each computed from the records: which way spreads
/// load most evenly, what the hop costs, what a dead copy costs each way.
pub(super) fn summary(report: &BenchReport, s: &ScaleOutRecords) -> Vec<String> {
    let mut out = Vec::new();
    let spreads: Vec<(Way, f64, usize)> = Way::ALL
        .into_iter()
        .filter_map(|w| way_imbalance(s, w).map(|(x, n)| (w, x, n)))
        .collect();
    if let Some(best) = spreads.iter().map(|s| s.1).min_by(f64::total_cmp) {
        let each: Vec<String> = spreads
            .iter()
            .map(|(w, x, n)| format!("`{w}` {x:.2} ({n} cells)"))
            .collect();
        // Ways within 0.02 of the most even one are as even (a copy's count moves by
        // about that between repetitions).
        let evenest: Vec<String> = spreads
            .iter()
            .filter(|s| s.1 <= best + 0.02)
            .map(|s| format!("`{}`", s.0))
            .collect();
        out.push(format!(
            "Spread over the copies (the busiest copy's share of requests over an even share, median over the cells of 2 or more copies; 1.00 is even): {}. Most even here: {}.",
            each.join(", "),
            evenest.join(" and ")
        ));
    }
    if let Some(words) = hop_words(report, s) {
        out.push(words);
    }
    if let Some(words) = score_words(report, s) {
        out.push(words);
    }
    for k in &s.kills {
        out.push(format!("Killed copy, {}.", kill_words(k)));
    }
    out
}

/// How the predictions held, with the reasons of those off.
fn score_words(report: &BenchReport, s: &ScaleOutRecords) -> Option<String> {
    use super::predict::Why;
    let checks: Vec<Option<Why>> = s
        .records
        .iter()
        .filter_map(|r| check(report, r))
        .map(|(_, _, why)| why.map(|w| w.0))
        .collect();
    if checks.is_empty() {
        return None;
    }
    let count = |w: Option<Why>| checks.iter().filter(|&&c| c == w).count();
    Some(format!(
        "Predictions: {} of {} cells within 30%; of the rest, {} held by the machine's CPUs at the CPU per request this run measured (copies, load generator and HAProxy together: more than the calibrated costs add up to), {} uneven copies, {} HAProxy over its calibrated CPU, {} noisy, {} unexplained.",
        count(None),
        checks.len(),
        count(Some(Why::Machine)),
        count(Some(Why::Uneven)),
        count(Some(Why::Balancer)),
        count(Some(Why::Noisy)),
        count(Some(Why::Unexplained)),
    ))
}

/// The hop measured: HAProxy in front of one copy against the one process, at each
/// group's fewest clients (where latency decides), beside its predicted cost.
fn hop_words(report: &BenchReport, s: &ScaleOutRecords) -> Option<String> {
    let mut added_us = Vec::new();
    let mut kept = Vec::new();
    let mut predicted = Vec::new();
    for (regime, model, n) in groups(s) {
        let fewest = s
            .records
            .iter()
            .filter(|r| r.regime == regime && r.model == model && r.n == n)
            .map(|r| r.clients)
            .min()?;
        let find = |way: Way| {
            s.records.iter().find(|r| {
                r.regime == regime
                    && r.model == model
                    && r.n == n
                    && r.clients == fewest
                    && r.way == way
                    && r.copies == 1
            })
        };
        let (Some(direct), Some(hopped)) = (
            find(Way::Process),
            find(Way::Haproxy(crate::balancer::Balance::LeastConn)),
        ) else {
            continue;
        };
        let p50 =
            |r: &ScaleOutRecord| median(&r.p50_us.iter().map(|&x| x as f64).collect::<Vec<_>>());
        added_us.push(p50(hopped) - p50(direct));
        kept.push(median(&hopped.throughput_rps) / median(&direct.throughput_rps).max(1e-9));
        // Little's law on both predictions: a closed loop's mean latency is N / X.
        if let (Some(h), Some(d)) = (check(report, hopped), check(report, direct)) {
            let n = fewest as f64 * 1e6;
            predicted.push(n / h.0.rps.max(1e-9) - n / d.0.rps.max(1e-9));
        }
    }
    if added_us.is_empty() {
        return None;
    }
    let balancer: Vec<f64> = s
        .records
        .iter()
        .filter(|r| !r.balancer_cpu_us.is_empty())
        .map(|r| median(&r.balancer_cpu_us))
        .collect();
    let calibrated = report
        .calibration
        .as_ref()
        .and_then(|c| c.balancer_cpu)
        .map_or("not calibrated".to_string(), |m| {
            format!("{:.1} µs calibrated", m.median_us)
        });
    Some(format!(
        "The hop: HAProxy in front of one copy adds {:.0} µs to the median latency at the fewest clients ({} groups; predicted {:.0} µs, the clients over each predicted throughput, Little's law: a closed loop waits out whatever slows its throughput) and keeps {:.2}x of the one process's throughput; it spends {:.1} µs of CPU per request (median over its {} cells; {calibrated}).",
        median(&added_us),
        added_us.len(),
        match predicted.is_empty() {
            true => 0.0,
            false => median(&predicted),
        },
        median(&kept),
        median(&balancer),
        balancer.len()
    ))
}

fn kill_table(s: &ScaleOutRecords) -> Table {
    let header = [
        "way",
        "killed at (s)",
        "sent",
        "answered",
        "ERR",
        "lost with a connection",
        "predicted lost (its connections)",
        "timed out",
        "unfinished",
        "unaccounted",
        "connects failed",
        "req/s before → after",
        "longest gap (ms)",
        "recovered after (ms)",
        "taken out after (ms)",
        "redispatched by HAProxy",
    ];
    let first = &s.kills[0];
    Table {
        title: format!(
            "A copy killed under load: `{}` ×{}, fib({}), {} clients",
            first.model, first.copies, first.n, first.clients
        ),
        intro: "SIGKILL to copy 0 mid-cell. Predicted lost: the connections it held (each has one request outstanding at every moment of a closed loop). Every request sent is one of: answered, an ERR or wrong reply, lost with its connection (in flight on the dead copy, or waiting in its accept queue), timed out, or unfinished at the end; `unaccounted` is sent minus all of them, counted apart (0: every request accounted for). Recovered: from the kill to the first 100 ms whose replies reach 90% of the last second's rate. Taken out: until HAProxy's health checks marked the copy down; redispatched: connects to the dead copy HAProxy sent to another instead (its `retries` and `option redispatch`), so the client never saw them fail.".into(),
        header: header.iter().map(|h| h.to_string()).collect(),
        left: 1,
        text_last: false,
        rows: s
            .kills
            .iter()
            .map(|k| {
                let opt = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.0}"));
                vec![
                    format!("`{}`", k.way),
                    format!("{:.2}", k.killed_at_s),
                    thousands(k.sent as f64),
                    thousands(k.answered as f64),
                    k.err_replies.to_string(),
                    k.lost.to_string(),
                    k.connections_on_killed.to_string(),
                    k.timeouts.to_string(),
                    k.unfinished.to_string(),
                    k.unaccounted.to_string(),
                    k.connect_errors.to_string(),
                    format!("{} → {}", thousands(k.before_rps), thousands(k.after_rps)),
                    format!("{:.0}", k.gap_ms),
                    opt(k.recovered_ms).replace('–', "not within the cell"),
                    opt(k.taken_out_ms),
                    k.redispatched.map_or("–".to_string(), |r| r.to_string()),
                ]
            })
            .collect(),
    }
}

pub(super) fn plots(s: &ScaleOutRecords) -> Result<Vec<Plot>, PlotError> {
    let title = "A copy killed under load: correct replies per 10 ms (the kill at the dashed line)";
    let longest = s.kills.iter().map(|k| k.timeline.len()).max().unwrap_or(1);
    let top = s
        .kills
        .iter()
        .flat_map(|k| k.timeline.iter().copied())
        .max()
        .unwrap_or(1) as f64
        * 1.15;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let seconds = longest as f64 * TIMELINE_MS / 1e3;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..seconds, 0.0..top.max(1.0))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("seconds into the measured window")
            .y_desc("replies per 10 ms")
            .label_style(("sans-serif", 11))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(err)?;
        for (i, k) in s.kills.iter().enumerate() {
            let color = crate::bench::canvas::series_color(i + 1);
            let points: Vec<(f64, f64)> = k
                .timeline
                .iter()
                .enumerate()
                .map(|(b, &c)| (b as f64 * TIMELINE_MS / 1e3, c as f64))
                .collect();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(1)))
                .map_err(err)?
                .label(k.way.to_string())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(k.killed_at_s, 0.0), (k.killed_at_s, top)],
                    4,
                    4,
                    color.stroke_width(1),
                ))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 11))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(vec![Plot {
        file: "scaleout-kill.svg".into(),
        title: title.into(),
        svg,
    }])
}

const SOURCE: &str = "issue 46: past one process";
const EVEN: &str = "One shared accept queue spreads an event loop's clients over its copies less evenly than SO_REUSEPORT's hash, and HAProxy's leastconn spreads them evenly (Cloudflare, \"Why does one NGINX worker take all the load?\")";
const HOP: &str = "A balancer's hop costs each request what the balancer spends forwarding it alone (its calibrated CPU per request), whatever the copies behind it (HAProxy, mode tcp)";
const ACCOUNTED: &str = "A copy killed under load loses only the requests on its connections: every request sent is answered, an error, lost, timed out or unfinished";

pub(super) fn findings(report: &BenchReport) -> Vec<Finding> {
    let Some(s) = report
        .scaleout
        .as_ref()
        .filter(|s| !s.records.is_empty() || !s.kills.is_empty())
    else {
        return Vec::new();
    };
    vec![evenness(s), hop(report, s), accounted(s)]
}

/// The busiest copy's share over an even one, the median over a way's cells of copies.
fn way_imbalance(s: &ScaleOutRecords, way: Way) -> Option<(f64, usize)> {
    let values: Vec<f64> = s
        .records
        .iter()
        .filter(|r| r.way == way && r.copies > 1 && r.per_copy.iter().sum::<u64>() > 0)
        .map(imbalance)
        .collect();
    (!values.is_empty()).then(|| (median(&values), values.len()))
}

fn evenness(s: &ScaleOutRecords) -> Finding {
    let one = way_imbalance(s, Way::OneQueue);
    let hash = way_imbalance(s, Way::ReusePort);
    let least = way_imbalance(s, Way::Haproxy(crate::balancer::Balance::LeastConn));
    let (Some((one, a)), Some((hash, b)), Some((least, c))) = (one, hash, least) else {
        return missing(
            SOURCE,
            EVEN,
            "`one-queue`, `reuseport` and `haproxy-leastconn` rows with 2 or more copies",
        );
    };
    let holds = one > hash && least <= 1.0 + THRESHOLD / 3.0;
    finding(
        SOURCE,
        EVEN,
        crate::bench::rules::holds(holds),
        format!(
            "the busiest copy's share over an even one, median over the cells: one queue {one:.2} ({a} cells), SO_REUSEPORT {hash:.2} ({b}), HAProxy leastconn {least:.2} ({c}); {} spreads load most evenly here",
            [
                ("one queue", one),
                ("SO_REUSEPORT", hash),
                ("HAProxy leastconn", least)
            ]
            .into_iter()
            .min_by(|x, y| x.1.total_cmp(&y.1))
            .map_or("", |w| w.0)
        ),
    )
}

fn hop(report: &BenchReport, s: &ScaleOutRecords) -> Finding {
    let pairs: Vec<(f64, f64)> = s
        .records
        .iter()
        .filter(|r| !r.balancer_cpu_us.is_empty())
        .filter_map(|r| {
            let hop = check(report, r)?.0.hop?;
            Some((median(&r.balancer_cpu_us), hop.cpu_us))
        })
        .collect();
    if pairs.is_empty() {
        return missing(
            SOURCE,
            HOP,
            "HAProxy rows (haproxy installed) and a calibration",
        );
    }
    let ratios: Vec<f64> = pairs.iter().map(|(m, p)| m / p).collect();
    let measured: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let x = Interval::of(&ratios);
    let decided = crate::bench::rules::decide(&x, |q| (q - 1.0).abs() <= THRESHOLD);
    Finding {
        verdict: crate::bench::rules::verdict(decided),
        ..finding(
            SOURCE,
            HOP,
            Verdict::NotMeasured,
            format!(
                "HAProxy's CPU per request, median over {} cells: {:.1} µs measured, {:.1} µs predicted (HAProxy's calibrated CPU per request, `balancer_cpu`); measured / predicted, median over the cells {}{}",
                pairs.len(),
                median(&measured),
                median(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()),
                ratio_ci(&x),
                crate::bench::rules::undecided_why(&x, |q| (q - 1.0).abs() <= THRESHOLD)
            ),
        )
    }
}

fn accounted(s: &ScaleOutRecords) -> Finding {
    if s.kills.is_empty() {
        return missing(SOURCE, ACCOUNTED, "a `[scaleout.kill]` section");
    }
    // Every request accounted for, and the loss the one the dead copy's connections
    // predict (a connection more or less: its count is up to 100 ms old).
    let all = s.kills.iter().all(|k| {
        k.unaccounted == 0
            && k.lost.abs_diff(k.connections_on_killed) <= 1.max(k.connections_on_killed / 10)
    });
    let words: Vec<String> = s.kills.iter().map(kill_words).collect();
    finding(
        SOURCE,
        ACCOUNTED,
        crate::bench::rules::holds(all),
        words.join("; "),
    )
}

/// One kill in a sentence.
pub fn kill_words(k: &KillRecord) -> String {
    let out = k.taken_out_ms.map_or(String::new(), |t| {
        format!(", HAProxy took the copy out after {t:.0} ms")
    });
    format!(
        "`{}`: {} sent = {} answered + {} ERR + {} lost + {} timed out + {} unfinished{}; {} lost against {} predicted (the connections the copy held); the longest gap {:.0} ms, {} req/s before, {} after{}",
        k.way,
        k.sent,
        k.answered,
        k.err_replies + k.wrong,
        k.lost,
        k.timeouts,
        k.unfinished,
        match k.unaccounted {
            0 => String::new(),
            u => format!(" ({u} unaccounted)"),
        },
        k.lost,
        k.connections_on_killed,
        k.gap_ms,
        thousands(k.before_rps),
        thousands(k.after_rps),
        out
    )
}
