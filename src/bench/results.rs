//! The bench's records, at the bottom of the bench: what a run measured (samples,
//! cells, each experiment's results), the report that holds them, and the shapes every
//! renderer reads (tables, plots, findings). Nothing here measures or renders; every
//! other bench module reads these types, and this module reads none of them.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::scenario::{Pinning, RegimePlan};

pub use super::experiments::connections::records::{
    ActiveLoad, ConnectionRecord, ConnectionRecords,
};
pub use super::experiments::knee::records::{
    KneeRecords, KneeStep, KneeSweep, KneeWorkloadRecord, RequestCost, StepVerdict,
};
pub use super::experiments::python::records::{PythonRecords, PythonSample, PythonStarvation};
pub use super::experiments::scaleout::records::{KillRecord, ScaleOutRecord, ScaleOutRecords};
pub use super::experiments::waiting::records::{WaitingRecord, WaitingRecords};
pub use super::records::StarvationResult;

/// The floor row: `threads` serving `--service lookup`.
pub const FLOOR: &str = "floor";

/// A server someone else started, measured as a row of the same tables:
/// `NAME=HOST:PORT` for a fib server, `NAME=HOST:PORT/ping` for one that answers a
/// `PING` line with one line (redis): measured like the floor, with no fib at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub addr: SocketAddr,
    pub ping: bool,
}

/// A `--target` that cannot be used; the message shows the form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(String);

impl std::str::FromStr for Target {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Target, TargetError> {
        let bad = |why: String| Err(TargetError(why));
        let Some((name, rest)) = text.split_once('=') else {
            return bad(format!(
                "'{text}': a target is NAME=HOST:PORT (or NAME=HOST:PORT/ping for redis)"
            ));
        };
        let (address, ping) = match rest.strip_suffix("/ping") {
            Some(address) => (address, true),
            None => (rest, false),
        };
        if name.is_empty() || name == FLOOR || crate::models::find(name).is_some() {
            return bad(format!(
                "'{name}': a target needs a name of its own, not empty and not a model's or `floor`"
            ));
        }
        let addr = crate::units::parse_addr(address).map_err(|e| TargetError(e.to_string()))?;
        Ok(Target {
            name: name.to_string(),
            addr,
            ping,
        })
    }
}

/// One measured cell of one repetition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The regime it was measured in ([`RegimePlan::name`]); empty in reports from
    /// before regimes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub regime: String,
    pub variant: String,
    pub n: u32,
    pub clients: usize,
    pub repetition: usize,
    pub throughput_rps: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// Correct replies per connection: a 0 means a starved client.
    pub per_connection: Vec<u64>,
    pub errors: u64,
    /// The latency HdrHistogram (V2 + DEFLATE, base64), merged across repetitions for
    /// the latency CDF; empty when none was recorded.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub histogram: String,
    /// What the load generator itself spent on this repetition; `None` where it spun
    /// (busy by design) and in reports from before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientUse>,
}

/// The load generator's own cost in one repetition (`fiblab load`'s `client`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClientUse {
    /// CPU time of its threads over the measured window per correct reply, µs.
    pub cpu_us_per_request: f64,
    /// The busiest client thread's CPU time over its wall time, 0..1: over 0.9, the
    /// client may have limited the cell.
    pub busiest: f64,
}

/// Facts about the machine, for the head of every report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub kernel: String,
    pub pinning: String,
}

impl Machine {
    pub fn detect(regimes: &[RegimePlan]) -> Machine {
        let host = crate::machine::Host::get();
        Machine {
            cpu: host.cpu.clone(),
            cpus: crate::server::default_workers(),
            kernel: host.kernel.clone(),
            pinning: match regimes {
                [] => Pinning::describe(None),
                plans => plans
                    .iter()
                    .map(RegimePlan::describe)
                    .collect::<Vec<_>>()
                    .join("; "),
            },
        }
    }
}

/// A cell's spread (max - min over median) above this is marked as noisy.
pub const WIDE_SPREAD: f64 = 0.15;

/// One (model, n, clients) cell over all repetitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub regime: String,
    pub variant: String,
    pub n: u32,
    pub clients: usize,
    /// Median requests per second over the repetitions.
    pub median_rps: f64,
    /// The same median with its confidence interval over the repetitions (each a server
    /// process of its own; [`crate::stats::Interval::of`]), req/s.
    #[serde(default)]
    pub throughput: crate::stats::Interval,
    /// (max - min) / median of the requests per second.
    pub spread: f64,
    /// p50 and p99 latency, µs, of every repetition's requests together (histograms
    /// merged).
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

/// base64 V2+DEFLATE HdrHistograms merged into one; `None` when none decodes or all
/// are empty.
pub fn merged_histogram<'a>(
    histograms: impl Iterator<Item = &'a str>,
) -> Option<hdrhistogram::Histogram<u64>> {
    let mut merged: Option<hdrhistogram::Histogram<u64>> = None;
    for text in histograms.filter(|t| !t.is_empty()) {
        let Ok(h) = crate::load::decode_histogram(text) else {
            continue;
        };
        match &mut merged {
            None => merged = Some(h),
            Some(m) => {
                let _ = m.add(&h);
            }
        }
    }
    merged.filter(|h| !h.is_empty())
}

/// The merged distribution of base64 V2+DEFLATE HdrHistograms, as `[percentile, µs]`.
pub fn merged_cdf<'a>(histograms: impl Iterator<Item = &'a str>) -> Vec<[f64; 2]> {
    match merged_histogram(histograms) {
        Some(h) => CDF_PERCENTILES
            .iter()
            .map(|&p| [p, h.value_at_quantile(p / 100.0) as f64])
            .collect(),
        None => Vec::new(),
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
    /// Load agents each seed-table cell was split across and merged (1: one load
    /// generator).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub agents: usize,
    /// Open-loop rate of every cell, requests per second; `None`: closed loops.
    #[serde(default)]
    pub rate: Option<f64>,
    pub cells: Vec<Cell>,
    pub samples: Vec<Sample>,
    /// Seed 004's experiment, one entry per model (empty if the scenario has none).
    pub starvation: Vec<StarvationResult>,
    /// The seeds' conclusions checked against these measurements
    /// ([`super::experiments::findings`]); computed again when a report is read back.
    #[serde(skip_deserializing)]
    pub findings: Vec<Finding>,
    /// Rows served by servers fiblab did not start (`--target`).
    pub peers: Vec<Target>,
    /// What went wrong during the run and changed what the report shows.
    pub notes: Vec<String>,
    /// The pool settings each model served with (its defaults on this machine), e.g.
    /// `threadpool: 6 workers, queue 64`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<String>,
    /// The machine's primitive costs, measured before the cells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::calibrate::Calibration>,
    /// The regimes the cells were measured in, in order; empty in reports from before
    /// regimes (one regime, described by `machine.pinning`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regimes: Vec<RegimePlan>,
    /// The python experiment's records (`[python]` in the scenario).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<PythonRecords>,
    /// The connections experiment's records (`[connections]` in the scenario).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<ConnectionRecords>,
    /// The knee experiment's records (`[knee]` in the scenario).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knee: Option<KneeRecords>,
    /// The waiting experiment's records (`[waiting]` in the scenario).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<WaitingRecords>,
    /// The scale-out experiment's records (`[scaleout]` in the scenario).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaleout: Option<ScaleOutRecords>,
    /// What the race after the interleaved rounds asked, spent and left open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub race: Option<RaceRecord>,
}

/// What the race (`bench/experiments/seed_tables/race.rs`) asked, spent and
/// left open once the interleaved rounds were done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaceRecord {
    /// The indifference zone (`--precision`, 0.05: 5%): a tier-1 model slower than the
    /// leader by less than this is as good as the best, and not raced.
    pub indifference: f64,
    /// Seconds the time budget left once every regime had run.
    pub budget_s: f64,
    /// Cells measured again, each in a fresh server process with the others of its row.
    pub measurements: usize,
    /// Seconds those measurements took.
    pub spent_s: f64,
    /// The questions: the head's rankings and the seed-table verdicts, per regime.
    pub asked: usize,
    /// How many were open when the race began.
    pub open_before: usize,
    /// Those still open at its end, in words.
    pub open: Vec<String>,
    /// The most samples a cell reached.
    pub most_samples: usize,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

impl BenchReport {
    /// The regimes' names in order; one unnamed regime (`""`) for a report without.
    pub fn regime_names(&self) -> Vec<String> {
        match self.regimes.is_empty() {
            true => vec![String::new()],
            false => self.regimes.iter().map(|r| r.name.clone()).collect(),
        }
    }

    /// The report of one regime alone: its samples, cells and starvation results,
    /// with findings left empty (the caller computes them).
    pub fn view(&self, regime: &str) -> BenchReport {
        BenchReport {
            samples: self
                .samples
                .iter()
                .filter(|s| s.regime == regime)
                .cloned()
                .collect(),
            cells: self
                .cells
                .iter()
                .filter(|c| c.regime == regime)
                .cloned()
                .collect(),
            starvation: self
                .starvation
                .iter()
                .filter(|s| s.regime == regime)
                .cloned()
                .collect(),
            regimes: self
                .regimes
                .iter()
                .filter(|r| r.name == regime)
                .cloned()
                .collect(),
            python: self.python.as_ref().map(|p| PythonRecords {
                samples: p
                    .samples
                    .iter()
                    .filter(|s| s.regime == regime)
                    .cloned()
                    .collect(),
                starvation: p
                    .starvation
                    .iter()
                    .filter(|s| s.result.regime == regime)
                    .cloned()
                    .collect(),
                ..p.clone()
            }),
            waiting: self.waiting.as_ref().map(|w| WaitingRecords {
                records: w
                    .records
                    .iter()
                    .filter(|r| r.regime == regime)
                    .cloned()
                    .collect(),
                ..w.clone()
            }),
            scaleout: self.scaleout.as_ref().map(|s| ScaleOutRecords {
                records: s
                    .records
                    .iter()
                    .filter(|r| r.regime == regime)
                    .cloned()
                    .collect(),
                kills: s
                    .kills
                    .iter()
                    .filter(|k| k.regime == regime)
                    .cloned()
                    .collect(),
                ..s.clone()
            }),
            connections: self.connections.as_ref().map(|c| ConnectionRecords {
                records: c
                    .records
                    .iter()
                    .filter(|r| r.regime == regime)
                    .cloned()
                    .collect(),
                ..c.clone()
            }),
            knee: self.knee.as_ref().map(|k| KneeRecords {
                sweeps: k
                    .sweeps
                    .iter()
                    .filter(|s| s.regime == regime)
                    .cloned()
                    .collect(),
                ..k.clone()
            }),
            findings: Vec::new(),
            ..self.clone()
        }
    }

    /// The samples (one per repetition) of `cell`: its regime, row, workload and clients.
    pub fn samples_of<'a>(&'a self, cell: &'a Cell) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.regime == cell.regime
                && s.variant == cell.variant
                && s.n == cell.n
                && s.clients == cell.clients
        })
    }

    /// The regime `name` as it ran, if the report names it.
    pub fn regime(&self, name: &str) -> Option<&RegimePlan> {
        self.regimes.iter().find(|r| r.name == name)
    }

    /// True when `variant` is a row of a server fiblab did not start (`--target`).
    pub fn is_peer(&self, variant: &str) -> bool {
        self.peers.iter().any(|p| p.name == variant)
    }
}

/// Median and spread of each cell, in the order the cells were first measured.
pub fn aggregate(samples: &[Sample]) -> Vec<Cell> {
    let mut keys: Vec<(String, String, u32, usize)> = Vec::new();
    for s in samples {
        let key = (s.regime.clone(), s.variant.clone(), s.n, s.clients);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(regime, variant, n, clients)| {
            let runs: Vec<&Sample> = samples
                .iter()
                .filter(|s| {
                    s.regime == regime && s.variant == variant && s.n == n && s.clients == clients
                })
                .collect();
            let rps: Vec<f64> = runs.iter().map(|s| s.throughput_rps).collect();
            let median_rps = crate::stats::median(&rps);
            let spread = match (
                rps.iter().copied().reduce(f64::max),
                rps.iter().copied().reduce(f64::min),
            ) {
                (Some(max), Some(min)) if median_rps > 0.0 => (max - min) / median_rps,
                _ => 0.0,
            };
            // One rule for latency wherever it is shown: percentiles of all the
            // repetitions' requests together (their histograms merged), as the CDF plots
            // draw them; the median of each repetition's percentile only where a sample
            // carried no histogram.
            let merged = merged_histogram(runs.iter().map(|s| s.histogram.as_str()));
            let percentile = |q: f64, each: fn(&Sample) -> u64| match &merged {
                Some(h) => h.value_at_quantile(q),
                None => median_u64(runs.iter().map(|s| each(s)).collect()),
            };
            Cell {
                regime,
                variant,
                n,
                clients,
                median_rps,
                throughput: crate::stats::Interval::of(&rps),
                spread: (spread * 1000.0).round() / 1000.0,
                p50_us: percentile(0.5, |s| s.p50_us),
                p99_us: percentile(0.99, |s| s.p99_us),
                starved: runs.iter().any(|s| s.per_connection.contains(&0)),
                errors: runs.iter().map(|s| s.errors).sum(),
                latency_cdf: merged_cdf(runs.iter().map(|s| s.histogram.as_str())),
            }
        })
        .collect()
}

fn median_u64(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

pub use crate::units::thousands;

/// A table of the report, rendered as markdown or HTML alike. Cells may hold the
/// inline markdown `` `code` `` and `**bold**`; the first column is left-aligned, the
/// others right-aligned unless `left` says otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub title: String,
    pub intro: String,
    pub header: Vec<String>,
    pub left: usize,
    /// The last column is text too (left-aligned), as a "why" column.
    pub text_last: bool,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Column `i` is left-aligned text rather than a right-aligned figure.
    pub fn is_left(&self, i: usize) -> bool {
        i < self.left || (self.text_last && i + 1 == self.header.len())
    }
}

/// A plot as the markdown report links it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotLink {
    pub title: String,
    pub href: String,
}

pub fn plural(count: usize, word: &str) -> String {
    format!("{count} {word}{}", if count == 1 { "" } else { "s" })
}

/// One plot: its file name in an output folder, a caption, and the SVG itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    pub file: String,
    pub title: String,
    pub svg: String,
}

/// What a seed claims, checked against this run: [`Finding::verdict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    Reproduces,
    Contradicts,
    DoesNotApply,
    NotMeasured,
    /// The interval of the figure the rule rests on straddles its threshold: this run
    /// cannot tell; the evidence says how many repetitions would.
    Undecided,
    /// The regimes disagree: see [`Finding::by_regime`].
    DependsOnRegime,
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Reproduces => "reproduces",
            Verdict::Contradicts => "contradicts",
            Verdict::DoesNotApply => "does not apply",
            Verdict::NotMeasured => "not measured",
            Verdict::Undecided => "undecided at this precision",
            Verdict::DependsOnRegime => "depends on the regime",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Where the claim is made.
    pub source: &'static str,
    /// The claim, in English.
    pub claim: &'static str,
    pub verdict: Verdict,
    /// The measured figures the verdict rests on.
    pub evidence: String,
    /// The cells the rule read, as (variant, n, clients).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cells: Vec<(String, u32, usize)>,
    /// With several regimes: the verdict and evidence in each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub by_regime: Vec<RegimeVerdict>,
    /// Where the regimes disagree: which machine cost decides, computed from the
    /// predictions of the cells the rule read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
}

/// A finding's verdict in one regime.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegimeVerdict {
    pub regime: String,
    pub verdict: Verdict,
    pub evidence: String,
    /// The verdict the cost model gives from the calibration alone (the cells'
    /// predicted throughputs in place of the measured ones); `None` where a cell's
    /// prediction is only a range.
    pub predicted: Option<Verdict>,
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
pub(crate) mod tests;
