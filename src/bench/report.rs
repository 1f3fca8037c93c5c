//! The benchmark's results: cells aggregated over repetitions, and the exporters
//! (markdown tables shaped like the seeds', JSON with everything).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{FLOOR, Machine, Sample, StarvationResult};

/// A cell's spread (max - min over median) above this is marked as noisy.
pub const WIDE_SPREAD: f64 = 0.15;

/// One (model, n, clients) cell over all repetitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// `[percentile, µs]` points of the latency distribution, all repetitions merged;
    /// empty when the samples carried no histogram.
    pub latency_cdf: Vec<[f64; 2]>,
}

/// The percentiles a latency CDF is drawn through.
pub const CDF_PERCENTILES: &[f64] = &[
    0.0, 1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 97.5, 99.0, 99.5,
    99.9, 99.99, 100.0,
];

/// The merged distribution of base64 V2+DEFLATE HdrHistograms, as `[percentile, µs]`.
pub fn merged_cdf<'a>(histograms: impl Iterator<Item = &'a str>) -> Vec<[f64; 2]> {
    use base64::Engine as _;
    let mut merged: Option<hdrhistogram::Histogram<u64>> = None;
    for text in histograms.filter(|t| !t.is_empty()) {
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text) else {
            continue;
        };
        let Ok(h) = hdrhistogram::serialization::Deserializer::new()
            .deserialize::<u64, _>(&mut bytes.as_slice())
        else {
            continue;
        };
        match &mut merged {
            None => merged = Some(h),
            Some(m) => {
                let _ = m.add(&h);
            }
        }
    }
    match merged {
        Some(h) if !h.is_empty() => CDF_PERCENTILES
            .iter()
            .map(|&p| [p, h.value_at_quantile(p / 100.0) as f64])
            .collect(),
        _ => Vec::new(),
    }
}

/// Everything one `fiblab bench` run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Open-loop rate of every cell, requests per second; `None`: closed loops.
    #[serde(default)]
    pub rate: Option<f64>,
    pub cells: Vec<Cell>,
    pub samples: Vec<Sample>,
    /// Seed 004's experiment, one entry per model (empty if the scenario has none).
    pub starvation: Vec<StarvationResult>,
    /// The seeds' conclusions checked against these measurements
    /// ([`super::findings::findings`]); computed again when a report is read back.
    #[serde(skip_deserializing)]
    pub findings: Vec<super::findings::Finding>,
    /// Rows served by servers fiblab did not start (`--target`).
    pub peers: Vec<super::Target>,
    /// What went wrong during the run and changed what the report shows.
    pub notes: Vec<String>,
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
                latency_cdf: merged_cdf(runs.iter().map(|s| s.histogram.as_str())),
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

/// A table of the report, rendered as markdown or HTML alike. Cells may hold the
/// inline markdown `` `code` `` and `**bold**`; the first column is left-aligned, the
/// others right-aligned unless `left` says otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub title: String,
    pub intro: String,
    pub header: Vec<String>,
    pub left: usize,
    pub rows: Vec<Vec<String>>,
}

/// A plot as the markdown report links it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotLink {
    pub title: String,
    pub href: String,
}

fn plural(count: usize, word: &str) -> String {
    format!("{count} {word}{}", if count == 1 { "" } else { "s" })
}

/// Every table of the report, in order, and the footnotes they need.
pub fn tables(r: &BenchReport) -> (Vec<Table>, Vec<String>) {
    let mut tables = Vec::new();
    let mut workloads: Vec<u32> = r.cells.iter().map(|c| c.n).collect();
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
    let is_peer = |v: &str| r.peers.iter().any(|p| p.name == v);
    let (mut starved_note, mut noisy_note) = (false, false);
    let widest = *clients.last().unwrap_or(&1);
    for &n in &workloads {
        let kind = if n <= 5 { "I/O-bound" } else { "CPU-bound" };
        let mut header = vec!["model".to_string()];
        header.extend(clients.iter().map(|&c| plural(c, "client")));
        header.push(format!("p50 / p99 µs, {}", plural(widest, "client")));
        header.push(format!("vs floor, {}", plural(widest, "client")));
        let cell = |v: &str, c: usize| {
            r.cells
                .iter()
                .find(|x| x.variant == v && x.n == n && x.clients == c)
        };
        let floor = cell(FLOOR, widest).filter(|f| f.median_rps > 0.0);
        let mut rows = Vec::new();
        for &v in &variants {
            let mut row = vec![format!("`{v}`{}", if is_peer(v) { " †" } else { "" })];
            for &c in &clients {
                row.push(match cell(v, c) {
                    Some(cell) => {
                        let mut text = thousands(cell.median_rps);
                        if cell.starved {
                            text.push_str(" ¹");
                            starved_note = true;
                        }
                        if cell.spread > WIDE_SPREAD {
                            text.push_str(" ~");
                            noisy_note = true;
                        }
                        text
                    }
                    None => String::new(),
                });
            }
            match cell(v, widest) {
                Some(cell) => {
                    row.push(format!("{} / {}", cell.p50_us, cell.p99_us));
                    row.push(floor.map_or(String::new(), |f| {
                        format!("{:.2}", cell.median_rps / f.median_rps)
                    }));
                }
                None => row.extend([String::new(), String::new()]),
            }
            rows.push(row);
        }
        tables.push(Table {
            title: format!("n={n} ({kind}): requests per second"),
            intro: String::new(),
            header,
            left: 1,
            rows,
        });
    }
    if let Some(first) = r.starvation.first() {
        let heavy: Vec<u32> = r.starvation.iter().map(|s| s.heavy_n).collect();
        let sized = if heavy.iter().all(|&h| h == first.heavy_n) {
            format!("fib({})", first.heavy_n)
        } else {
            "fib(n), n sized per server to take about as long".to_string()
        };
        tables.push(Table {
            title: "One heavy request among light ones (seed 004)".into(),
            intro: format!(
                "A closed loop of light requests on one connection; {:.1} s in, one {sized} on another connection. \"kept\": light throughput while the heavy request was in the server, over light throughput before it.",
                first.heavy_at_s
            ),
            header: [
                "model",
                "heavy n",
                "light req/s before",
                "light req/s during",
                "kept",
                "heavy request took",
            ]
            .map(String::from)
            .to_vec(),
            left: 1,
            rows: r
                .starvation
                .iter()
                .map(|s| {
                    vec![
                        format!("`{}`{}", s.variant, if is_peer(&s.variant) { " †" } else { "" }),
                        s.heavy_n.to_string(),
                        thousands(s.light_before_rps),
                        thousands(s.light_during_rps),
                        format!("{:.2}", s.kept),
                        s.heavy_s
                            .map_or("no reply in the run".to_string(), |t| format!("{t:.2} s")),
                    ]
                })
                .collect(),
        });
    }
    if !r.findings.is_empty() {
        tables.push(super::findings::table(&r.findings));
    }
    let mut notes = Vec::new();
    if starved_note {
        notes.push(
            "¹ a client got no reply at all: the model served only one client at a time.".into(),
        );
    }
    if noisy_note {
        notes.push(format!(
            "~ noisy: the repetitions spread over more than {:.0}% of the median.",
            WIDE_SPREAD * 100.0
        ));
    }
    if !r.peers.is_empty() {
        let peers: Vec<String> = r
            .peers
            .iter()
            .map(|p| {
                format!(
                    "`{}` at {}{}",
                    p.name,
                    p.addr,
                    if p.ping { " (PING)" } else { "" }
                )
            })
            .collect();
        notes.push(format!(
            "† a peer, started outside fiblab and measured by the same client in the same run: {}.",
            peers.join(", ")
        ));
    }
    notes.extend(r.notes.iter().cloned());
    notes.push("`floor` is the `threads` model answering from a table (`--service lookup`): no work, only what the loopback and a blocking server allow.".into());
    (tables, notes)
}

fn header_lines(r: &BenchReport) -> [String; 2] {
    [
        format!(
            "Machine: {} ({} CPUs), Linux {}. Pinning: {}. Date: {}. Command: `{}`.",
            r.machine.cpu, r.machine.cpus, r.machine.kernel, r.machine.pinning, r.date, r.command
        ),
        format!(
            "Each cell: {}, {:.1} s measured after {:.1} s warm-up, median of {} repetitions interleaved across models.",
            match r.rate {
                None => "a closed loop of fib(n) requests".to_string(),
                Some(rate) => format!(
                    "an open loop of fib(n) requests at {} req/s in all (latency from when each was due)",
                    thousands(rate)
                ),
            },
            r.duration_s,
            r.warmup_s,
            r.repetitions
        ),
    ]
}

/// The seed-shaped tables: one per workload, a row per model, a column per client count;
/// then the starvation experiment, the findings, and links to `plots` if any.
pub fn render_markdown(r: &BenchReport, plots: &[PlotLink]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# fiblab bench: {}\n", r.scenario);
    let _ = writeln!(out, "{}\n", r.about);
    let [machine, method] = header_lines(r);
    let _ = writeln!(out, "{machine}\n\n{method}\n");
    let (tables, notes) = tables(r);
    for t in &tables {
        let _ = writeln!(out, "## {}\n", t.title);
        if !t.intro.is_empty() {
            let _ = writeln!(out, "{}\n", t.intro);
        }
        let _ = writeln!(out, "| {} |", t.header.join(" | "));
        let rule: Vec<&str> = (0..t.header.len())
            .map(|i| if i < t.left { "---" } else { "---:" })
            .collect();
        let _ = writeln!(out, "|{}|", rule.join("|"));
        for row in &t.rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out.push('\n');
    }
    for note in &notes {
        let _ = writeln!(out, "{note}");
    }
    if !plots.is_empty() {
        out.push_str("\n## Plots\n\n");
        for p in plots {
            let _ = writeln!(out, "![{}]({})\n", p.title, p.href);
        }
    }
    out
}

/// `&`, `<`, `>` and `"` escaped, then `` `code` `` and `**bold**` as HTML.
fn inline_html(text: &str) -> String {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    let mut out = String::new();
    for (i, part) in escaped.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            for (j, piece) in part.split("**").enumerate() {
                match j % 2 {
                    1 => {
                        let _ = write!(out, "<strong>{piece}</strong>");
                    }
                    _ => out.push_str(piece),
                }
            }
        }
    }
    out
}

/// One self-contained HTML page: the tables, the findings, and every plot inline.
pub fn render_html(r: &BenchReport, plots: &[super::plots::Plot]) -> String {
    let mut out = String::new();
    let title = inline_html(&format!("fiblab bench: {}", r.scenario));
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    let [machine, method] = header_lines(r);
    for p in [&r.about, &machine, &method] {
        let _ = writeln!(out, "<p>{}</p>", inline_html(p));
    }
    let (tables, notes) = tables(r);
    for t in &tables {
        let _ = writeln!(out, "<h2>{}</h2>", inline_html(&t.title));
        if !t.intro.is_empty() {
            let _ = writeln!(out, "<p>{}</p>", inline_html(&t.intro));
        }
        out.push_str("<table>\n<tr>");
        for (i, h) in t.header.iter().enumerate() {
            let class = if i < t.left { "" } else { " class=\"num\"" };
            let _ = write!(out, "<th{class}>{}</th>", inline_html(h));
        }
        out.push_str("</tr>\n");
        for row in &t.rows {
            out.push_str("<tr>");
            for (i, cell) in row.iter().enumerate() {
                let class = if i < t.left { "" } else { " class=\"num\"" };
                let _ = write!(out, "<td{class}>{}</td>", inline_html(cell));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
    for note in &notes {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", inline_html(note));
    }
    if !plots.is_empty() {
        out.push_str("<h2>Plots</h2>\n");
        for p in plots {
            let _ = writeln!(
                out,
                "<figure id=\"{}\">\n{}\n<figcaption>{}</figcaption>\n</figure>",
                p.file.trim_end_matches(".svg"),
                p.svg.trim_start_matches(|c| c != '<').trim(),
                inline_html(&p.title)
            );
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

const STYLE: &str = "body { font-family: sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.75rem; text-align: left; vertical-align: top; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { background: #f4f4f4; padding: 0 0.2rem; }
figure { margin: 2rem 0; }
figure svg { max-width: 100%; height: auto; }
.note { color: #555; font-size: 0.9rem; }
";

/// A report written by [`render_json`], read back (to draw it again); the findings are
/// computed anew from its cells.
pub fn parse_json(text: &str) -> Result<BenchReport, String> {
    let mut report: BenchReport = serde_json::from_str(text).map_err(|e| e.to_string())?;
    report.findings = super::findings::findings(&report);
    Ok(report)
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
pub(crate) mod tests {
    use super::*;

    /// A report of `samples` and nothing else, for tests of what is computed from them.
    pub(crate) fn report_of(samples: Vec<Sample>) -> BenchReport {
        BenchReport {
            scenario: "t".into(),
            about: String::new(),
            date: String::new(),
            command: String::new(),
            machine: Machine {
                cpu: String::new(),
                cpus: 2,
                kernel: String::new(),
                pinning: String::new(),
            },
            duration_s: 1.0,
            warmup_s: 0.0,
            repetitions: 1,
            rate: None,
            cells: aggregate(&samples),
            samples,
            starvation: vec![],
            findings: vec![],
            peers: vec![],
            notes: vec![],
        }
    }

    /// A small report whose samples carry real latency histograms.
    pub(crate) fn fixture_with_cdf() -> BenchReport {
        let histogram = |base: u64| {
            let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
            for i in 0..1000 {
                h.record(base + i % 97).unwrap();
            }
            crate::load::encode_histogram(&h)
        };
        let samples: Vec<Sample> = [
            ("floor", 1, 10),
            ("floor", 2, 12),
            ("threads", 1, 20),
            ("threads", 2, 30),
        ]
        .into_iter()
        .map(|(variant, clients, base)| Sample {
            histogram: histogram(base),
            ..sample(
                variant,
                1,
                clients,
                0,
                1000.0 * clients as f64 / base as f64,
                vec![1; clients],
            )
        })
        .collect();
        let mut report = report_of(samples);
        report.starvation = vec![StarvationResult {
            variant: "threads".into(),
            heavy_n: 40,
            heavy_s: Some(1.0),
            light_before_rps: 100.0,
            light_during_rps: 75.0,
            kept: 0.75,
            timeline: vec![10; 30],
            heavy_at_s: 1.0,
        }];
        report
    }

    #[test]
    fn cdf_merges_repetitions() {
        let r = fixture_with_cdf();
        let cdf = &r.cells[0].latency_cdf;
        assert_eq!(cdf.len(), CDF_PERCENTILES.len());
        assert_eq!(cdf[0], [0.0, 10.0]);
        assert!(cdf.windows(2).all(|w| w[0][1] <= w[1][1]), "{cdf:?}");
        assert!(merged_cdf(["", "not base64!"].into_iter()).is_empty());
    }

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
            histogram: String::new(),
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
    fn inline_markdown_to_html() {
        assert_eq!(
            inline_html("`a<b>` is **x** & y"),
            "<code>a&lt;b&gt;</code> is <strong>x</strong> &amp; y"
        );
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
