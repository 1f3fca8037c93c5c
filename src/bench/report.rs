//! The benchmark's results: cells aggregated over repetitions, and the exporters
//! (markdown tables shaped like the seeds', JSON with everything).

use std::fmt::Write as _;

use serde::Serialize;

use super::{FLOOR, Machine, Sample, StarvationResult};

/// A cell's spread (max - min over median) above this is marked as noisy.
pub const WIDE_SPREAD: f64 = 0.15;

/// One (model, n, clients) cell over all repetitions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    pub variant: String,
    pub n: u32,
    pub clients: usize,
    /// Median requests per second over the repetitions.
    pub median_rps: f64,
    /// (max - min) / median of the requests per second.
    pub spread: f64,
    /// Median p50 and p99 latency, µs.
    pub p50_us: u64,
    pub p99_us: u64,
    /// Some connection got no reply at all in some repetition (`single`, 2 clients).
    pub starved: bool,
    pub errors: u64,
}

/// Everything one `fiblab bench` run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    pub scenario: String,
    pub about: String,
    /// UTC date of the run, YYYY-MM-DD.
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub repetitions: usize,
    pub cells: Vec<Cell>,
    pub samples: Vec<Sample>,
    /// Seed 004's experiment, one entry per model (empty if the scenario has none).
    pub starvation: Vec<StarvationResult>,
    /// The seeds' conclusions checked against these measurements
    /// ([`super::findings::findings`]).
    pub findings: Vec<super::findings::Finding>,
}

/// Median and spread of each cell, in the order the cells were first measured.
pub fn aggregate(samples: &[Sample]) -> Vec<Cell> {
    let mut keys: Vec<(String, u32, usize)> = Vec::new();
    for s in samples {
        let key = (s.variant.clone(), s.n, s.clients);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(variant, n, clients)| {
            let runs: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.variant == variant && s.n == n && s.clients == clients)
                .collect();
            let rps: Vec<f64> = runs.iter().map(|s| s.throughput_rps).collect();
            let median_rps = median_f64(&rps);
            let spread = match (
                rps.iter().copied().reduce(f64::max),
                rps.iter().copied().reduce(f64::min),
            ) {
                (Some(max), Some(min)) if median_rps > 0.0 => (max - min) / median_rps,
                _ => 0.0,
            };
            Cell {
                variant,
                n,
                clients,
                median_rps,
                spread: (spread * 1000.0).round() / 1000.0,
                p50_us: median_u64(runs.iter().map(|s| s.p50_us).collect()),
                p99_us: median_u64(runs.iter().map(|s| s.p99_us).collect()),
                starved: runs.iter().any(|s| s.per_connection.contains(&0)),
                errors: runs.iter().map(|s| s.errors).sum(),
            }
        })
        .collect()
}

fn median_f64(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        len if len % 2 == 1 => v[len / 2],
        len => (v[len / 2 - 1] + v[len / 2]) / 2.0,
    }
}

fn median_u64(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// `12345.6` -> `12,346`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The seed-shaped tables: one per workload, a row per model, a column per client count.
pub fn render_markdown(r: &BenchReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# fiblab bench: {}\n", r.scenario);
    let _ = writeln!(out, "{}\n", r.about);
    let _ = writeln!(
        out,
        "Machine: {} ({} CPUs), Linux {}. Pinning: {}. Date: {}. Command: `{}`.",
        r.machine.cpu, r.machine.cpus, r.machine.kernel, r.machine.pinning, r.date, r.command
    );
    let _ = writeln!(
        out,
        "Each cell: a closed loop of fib(n) requests, {:.1} s measured after {:.1} s warm-up, median of {} repetitions interleaved across models.\n",
        r.duration_s, r.warmup_s, r.repetitions
    );
    let mut workloads: Vec<u32> = r.cells.iter().map(|c| c.n).collect();
    workloads.dedup();
    workloads.sort_unstable();
    workloads.dedup();
    let mut clients: Vec<usize> = r.cells.iter().map(|c| c.clients).collect();
    clients.sort_unstable();
    clients.dedup();
    let mut variants: Vec<&str> = Vec::new();
    for c in &r.cells {
        if !variants.contains(&c.variant.as_str()) {
            variants.push(&c.variant);
        }
    }
    let (mut starved_note, mut noisy_note) = (false, false);
    for &n in &workloads {
        let kind = if n <= 5 { "I/O-bound" } else { "CPU-bound" };
        let widest = *clients.last().unwrap_or(&1);
        let _ = writeln!(out, "## n={n} ({kind}): requests per second\n");
        let mut header = String::from("| model |");
        let mut rule = String::from("|---|");
        for c in &clients {
            let _ = write!(header, " {c} client{} |", if *c == 1 { "" } else { "s" });
            rule.push_str("---:|");
        }
        let plural = if widest == 1 { "" } else { "s" };
        let _ = write!(
            header,
            " p50 / p99 µs, {widest} client{plural} | vs floor, {widest} client{plural} |"
        );
        rule.push_str("---:|---:|");
        let _ = writeln!(out, "{header}\n{rule}");
        let floor = r
            .cells
            .iter()
            .find(|c| c.variant == FLOOR && c.n == n && c.clients == widest);
        for v in &variants {
            let mut row = format!("| `{v}` |");
            for &c in &clients {
                match r
                    .cells
                    .iter()
                    .find(|x| x.variant == *v && x.n == n && x.clients == c)
                {
                    Some(cell) => {
                        let mut marks = String::new();
                        if cell.starved {
                            marks.push_str(" ¹");
                            starved_note = true;
                        }
                        if cell.spread > WIDE_SPREAD {
                            marks.push_str(" ~");
                            noisy_note = true;
                        }
                        let _ = write!(row, " {}{marks} |", thousands(cell.median_rps));
                    }
                    None => row.push_str(" |"),
                }
            }
            match r
                .cells
                .iter()
                .find(|x| x.variant == *v && x.n == n && x.clients == widest)
            {
                Some(cell) => {
                    let ratio = floor
                        .filter(|f| f.median_rps > 0.0)
                        .map(|f| cell.median_rps / f.median_rps);
                    let _ = write!(
                        row,
                        " {} / {} | {} |",
                        cell.p50_us,
                        cell.p99_us,
                        ratio.map_or("".into(), |x| format!("{x:.2}"))
                    );
                }
                None => row.push_str(" | |"),
            }
            let _ = writeln!(out, "{row}");
        }
        out.push('\n');
    }
    if let Some(first) = r.starvation.first() {
        let _ = writeln!(out, "## One heavy request among light ones (seed 004)\n");
        let _ = writeln!(
            out,
            "A closed loop of light requests on one connection; {:.1} s in, one fib({}) on another connection. \"kept\": light throughput while the heavy request was in the server, over light throughput before it.\n",
            first.heavy_at_s, first.heavy_n
        );
        let _ = writeln!(
            out,
            "| model | light req/s before | light req/s during | kept | heavy request took |\n|---|---:|---:|---:|---:|"
        );
        for s in &r.starvation {
            let took = s
                .heavy_s
                .map_or("no reply in the run".to_string(), |t| format!("{t:.2} s"));
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {:.2} | {took} |",
                s.variant,
                thousands(s.light_before_rps),
                thousands(s.light_during_rps),
                s.kept
            );
        }
        out.push('\n');
    }
    if !r.findings.is_empty() {
        out.push_str(&super::findings::render_markdown(&r.findings));
        out.push('\n');
    }
    if starved_note {
        let _ = writeln!(
            out,
            "¹ a client got no reply at all: the model served only one client at a time."
        );
    }
    if noisy_note {
        let _ = writeln!(
            out,
            "~ noisy: the repetitions spread over more than {:.0}% of the median.",
            WIDE_SPREAD * 100.0
        );
    }
    let _ = writeln!(
        out,
        "`floor` is the `threads` model answering from a table (`--service lookup`): no work, only what the loopback and a blocking server allow."
    );
    out
}

/// The whole report as pretty JSON.
pub fn render_json(r: &BenchReport) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Today's UTC date, YYYY-MM-DD (civil-from-days, no calendar crate needed).
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(
        variant: &str,
        n: u32,
        clients: usize,
        repetition: usize,
        rps: f64,
        per_connection: Vec<u64>,
    ) -> Sample {
        Sample {
            variant: variant.into(),
            n,
            clients,
            repetition,
            throughput_rps: rps,
            p50_us: 20,
            p99_us: 50,
            per_connection,
            errors: 0,
        }
    }

    #[test]
    fn aggregates_median_spread_and_starvation() {
        let samples = vec![
            sample("threads", 1, 2, 0, 100.0, vec![50, 50]),
            sample("threads", 1, 2, 1, 120.0, vec![60, 60]),
            sample("threads", 1, 2, 2, 80.0, vec![40, 40]),
            sample("single", 1, 2, 0, 90.0, vec![90, 0]),
        ];
        let cells = aggregate(&samples);
        assert_eq!(cells.len(), 2);
        assert_eq!(
            (cells[0].median_rps, cells[0].spread, cells[0].starved),
            (100.0, 0.4, false)
        );
        assert!(cells[1].starved);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(12345.6), "12,346");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }

    #[test]
    fn dates() {
        let d = today();
        assert_eq!(d.len(), 10);
        assert!(d.starts_with("20"));
    }
}
