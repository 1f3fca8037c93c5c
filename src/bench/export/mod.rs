//! The bench's exporters, one per format (as hyperfine's `export/`): [`markdown`],
//! [`html`], [`json`], and the SVG plots the experiments draw. Each renders the same
//! [`Document`]: every experiment's tables and notes, then the findings, then the
//! notes about the run itself. [`write()`] puts them where `--out`, `--markdown`, `--json`
//! and `--html` say.

mod client;
mod fastest;
pub mod html;
pub mod json;
pub mod markdown;

use std::path::{Path, PathBuf};

use super::canvas::PlotError;
use super::experiments::{self, EXPERIMENTS};
use super::results::{BenchReport, PlotLink, Table, Verdict, plural, thousands};
use super::rules;

/// What a report shows, in order, whatever the format.
pub struct Document {
    /// The two lines under the title: the machine, and how each cell was measured.
    pub header: [String; 2],
    /// What the machine's primitives cost, when the run calibrated them.
    pub calibration: Option<String>,
    /// Five lines computed from the results: the machine, the fastest model per
    /// workload, the conclusions that reproduce, those that do not, the regime.
    pub summary: Vec<String>,
    pub tables: Vec<Table>,
    pub notes: Vec<String>,
}

impl Document {
    pub fn of(r: &BenchReport) -> Document {
        let mut tables = Vec::new();
        let mut notes: Vec<String> = Vec::new();
        let names = r.regime_names();
        for name in &names {
            let view = match names.len() {
                1 => r.clone(),
                _ => r.view(name),
            };
            for experiment in EXPERIMENTS {
                let (t, n) = experiment.tables(&view);
                tables.extend(t.into_iter().map(|mut table| {
                    if names.len() > 1 {
                        table.title = format!("{}, regime `{name}`", table.title);
                    }
                    table
                }));
                for note in n {
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                }
            }
        }
        if !r.findings.is_empty() {
            tables.push(rules::table(&r.findings));
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
        if !r.settings.is_empty() {
            notes.push(format!(
                "Settings in force (each model's defaults here; `fiblab serve --help` gives the reasons): {}.",
                r.settings.join("; ")
            ));
        }
        notes.push("`floor` is the `threads` model answering from a table (`--service lookup`): no work, only what the loopback and a blocking server allow.".into());
        Document {
            header: header_lines(r),
            calibration: r.calibration.as_ref().map(|c| c.summary()),
            summary: summary(r),
            tables,
            notes,
        }
    }
}

/// The report's opening lines, each computed from the results; see [`Document::summary`].
fn summary(r: &BenchReport) -> Vec<String> {
    let mut lines = Vec::new();
    let m = &r.machine;
    let checks = super::predict::checks(r);
    let predicted = match super::predict::score(&checks) {
        (_, _, 0) => String::new(),
        (within, explained, all) => format!(
            " From these costs alone the cost formulas predict {within} of {all} cells within {:.0}%; {} more are accounted for (placement, noise, a plateau, an interval that holds the prediction, a machine that moved), {} are not.",
            super::predict::THRESHOLD * 100.0,
            explained - within,
            all - explained
        ),
    };
    lines.push(match &r.calibration {
        Some(c) => {
            let kind = if c.machine.virtual_machine { "a virtual machine" } else { "a machine" };
            match (c.wake_up, c.rtt_same_cpu, c.rtt_two_cpus) {
                (Some(wake), Some(one), Some(two)) => format!(
                    "This machine: {kind} with {}; a blocking round trip costs {:.0} µs across two CPUs against {:.0} µs on one (waking a thread on another CPU: {:.0} µs){}, so a one-client figure measures the wake-up and the kernel's placement as much as the model.{predicted}",
                    c.machine.cpus_in_words(),
                    two.median_us,
                    one.median_us,
                    wake.median_us,
                    c.rtt_unpinned.map_or(String::new(), |u| format!(
                        "; unpinned, where the kernel places both threads, {:.0} µs",
                        u.median_us
                    ))
                ),
                _ => format!("This machine: {kind} with {}: no cross-CPU wake-up to measure.{predicted}", c.machine.cpus_in_words()),
            }
        }
        None => format!("This machine: {} ({} CPUs), not calibrated in this run.", m.cpu, m.cpus),
    });
    lines.extend(client::client_line(r));
    for experiment in super::experiments::EXPERIMENTS {
        lines.extend(experiment.summary(r));
    }
    let mut workloads: Vec<u32> = r.cells.iter().map(|c| c.n).collect();
    workloads.sort_unstable();
    workloads.dedup();
    let widest = r.cells.iter().map(|c| c.clients).max().unwrap_or(1);
    let names = r.regime_names();
    let fastest: Vec<String> = workloads
        .iter()
        .flat_map(|&n| names.iter().map(move |regime| (n, regime)))
        .filter_map(|(n, regime)| {
            let models: Vec<&super::results::Cell> = r
                .cells
                .iter()
                .filter(|c| c.n == n && c.clients == widest && &c.regime == regime)
                .filter(|c| c.variant != super::results::FLOOR && !r.is_peer(&c.variant))
                .collect();
            let samples = |c: &&super::results::Cell| -> Vec<f64> {
                r.samples_of(c).map(|s| s.throughput_rps).collect()
            };
            let ranked = crate::stats::tiers(models, samples);
            let first: Vec<&crate::stats::Ranked<&super::results::Cell>> =
                ranked.iter().filter(|t| t.tier == Some(1)).collect();
            let leader = first.first()?;
            let in_regime = match names.len() {
                1 => String::new(),
                _ => format!(" in `{regime}`"),
            };
            Some(format!(
                "n={n}{in_regime}: {}",
                fastest::in_words(
                    &ranked,
                    |c| c.variant.to_string(),
                    |c| r.samples_of(c).count(),
                    leader
                )
            ))
        })
        .collect();
    if !fastest.is_empty() {
        lines.push(format!(
            "Fastest model with {}: {}.",
            plural(widest, "client"),
            fastest.join("; ")
        ));
        lines.extend(fastest::resolution(r, widest));
        lines.extend(fastest::levels(r));
    }
    // A source with several claims names each by its first words, so that two claims
    // of one seed in two lists can be told apart.
    let sources = |verdict: Verdict| -> Vec<String> {
        r.findings
            .iter()
            .filter(|f| f.verdict == verdict)
            .map(
                |f| match r.findings.iter().filter(|g| g.source == f.source).count() {
                    1 => f.source.to_string(),
                    _ => format!("{} “{}”", f.source, first_words(f.claim, 5)),
                },
            )
            .collect()
    };
    let listed = |v: Vec<String>| match v.is_empty() {
        true => "none".to_string(),
        false => group_sources(&v),
    };
    if !r.findings.is_empty() {
        let regimes = match names.len() {
            1 => String::new(),
            _ => " in every regime".to_string(),
        };
        lines.push(format!(
            "The seeds' conclusions that reproduce here{regimes}: {}.",
            listed(sources(Verdict::Reproduces))
        ));
        let depends = match sources(Verdict::DependsOnRegime) {
            v if v.is_empty() => String::new(),
            v => format!(
                "; depending on the regime (the findings say which machine cost decides): {}",
                group_sources(&v)
            ),
        };
        lines.push(format!(
            "Contradicted{regimes}: {}{depends}; undecided at this run's precision: {}; not applicable without a GIL: {}; not measured: {}.",
            listed(sources(Verdict::Contradicts)),
            listed(sources(Verdict::Undecided)),
            listed(sources(Verdict::DoesNotApply)),
            listed(sources(Verdict::NotMeasured))
        ));
    }
    lines.push(match r.regimes.len() {
        0 => format!(
            "One regime: pinning {}, a load generator that sleeps between replies; figures from another pinning, or with a spinning client, are not comparable with these.",
            m.pinning
        ),
        1 => format!(
            "One regime, {}; figures from another regime are not comparable with these.",
            r.regimes[0].describe()
        ),
        _ => format!(
            "Every cell was measured in {} regimes, each with its own tables: {}. Compare figures within a regime, never across.{}",
            r.regimes.len(),
            r.regimes.iter().map(|p| p.describe()).collect::<Vec<_>>().join("; "),
            r.regimes
                .iter()
                .filter_map(|p| {
                    let regime = <super::scenario::Regime as clap::ValueEnum>::from_str(&p.name, false).ok()?;
                    Some(format!(" `{}` stands for {}.", p.name, regime.stands_for()))
                })
                .collect::<String>()
        ),
    });
    lines
}

/// The first `n` words of `text`, with an ellipsis where it goes on.
fn first_words(text: &str, n: usize) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.len() > n {
        true => format!("{}…", words[..n].join(" ")),
        false => words.join(" "),
    }
}

/// `["seed 000, 总结 1", "seed 000, 总结 3", "seed 000, 总结 3", "seed 004", "seed 004"]`
/// -> `seed 000 (总结 1, 总结 3: 2 claims), seed 004 (2 claims)`.
fn group_sources(sources: &[String]) -> String {
    let mut groups: Vec<(&str, Vec<&str>, usize)> = Vec::new();
    for source in sources {
        let (seed, part) = match source.split_once(", ") {
            Some((seed, part)) => (seed, Some(part)),
            None => (source.as_str(), None),
        };
        let at = match groups.iter().position(|g| g.0 == seed) {
            Some(at) => at,
            None => {
                groups.push((seed, Vec::new(), 0));
                groups.len() - 1
            }
        };
        groups[at].2 += 1;
        groups[at].1.extend(part);
    }
    groups
        .into_iter()
        .map(|(seed, parts, count)| match (parts.is_empty(), count) {
            (false, _) => {
                let mut named: Vec<(&str, usize)> = Vec::new();
                for part in parts {
                    match named.iter_mut().find(|(p, _)| *p == part) {
                        Some((_, n)) => *n += 1,
                        None => named.push((part, 1)),
                    }
                }
                let named: Vec<String> = named
                    .into_iter()
                    .map(|(part, n)| match n {
                        1 => part.to_string(),
                        n => format!("{part}: {n} claims"),
                    })
                    .collect();
                format!("{seed} ({})", named.join(", "))
            }
            (true, 1) => seed.to_string(),
            (true, n) => format!("{seed} ({n} claims)"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn header_lines(r: &BenchReport) -> [String; 2] {
    [
        format!(
            "Machine: {} ({} CPUs{}), Linux {}. {}: {}. Date: {}. Command: `{}`.",
            r.machine.cpu,
            r.machine.cpus,
            r.calibration.as_ref().map_or(String::new(), |c| format!(
                ", {} per core, {}, descriptor limit {}",
                plural(c.machine.threads_per_core, "thread"),
                match c.machine.virtual_machine {
                    true => "a virtual machine",
                    false => "no hypervisor reported",
                },
                thousands(c.machine.descriptor_limit as f64)
            )),
            r.machine.kernel,
            match r.regimes.is_empty() {
                true => "Pinning",
                false => "Regimes",
            },
            r.machine.pinning,
            r.date,
            r.command
        ),
        format!(
            "Each cell: {}{}, {} s measured after {} s warm-up, {}. Throughput is the median of the repetitions (each a server process of its own) with its {:.0}% confidence interval [low–high] (Student t over the repetitions' logarithms); a ratio's interval is Welch's, and a ranking puts in tier 1 the models the repetitions cannot separate from the first (Welch, and Mann-Whitney where it can decide; Holm over the leader's comparisons), and the rest in further tiers the same way. Latency percentiles are of all their requests together, with their order-statistic intervals (over the requests: they do not cover the spread between repetitions).",
            match r.rate {
                None => "a closed loop of fib(n) requests".to_string(),
                Some(rate) => format!(
                    "an open loop of fib(n) requests at {} req/s in all (latency from when each was due)",
                    thousands(rate)
                ),
            },
            match r.agents {
                0 | 1 => String::new(),
                n => format!(
                    ", split across {n} load agents (execution segments, one start; a cell with fewer clients runs as one) whose reports were merged"
                ),
            },
            r.duration_s,
            r.warmup_s,
            repetitions(r),
            crate::stats::LEVEL * 100.0,
        ) + &precision_line(r),
    ]
}

/// What the race after the interleaved rounds did, for the head of the report; empty
/// without one.
fn precision_line(r: &BenchReport) -> String {
    let Some(race) = &r.race else {
        return String::new();
    };
    let open = match race.open.len() {
        0 => "none".to_string(),
        _ => race.open.join("; "),
    };
    format!(
        " Then a race for the questions the report answers ({} in all: the fastest-model rankings and the verdicts that read these cells, per regime): {} of them were open after the interleaved rounds; {} more measurements of only the cells that decide them (the leader and the models not yet separated from it by more than the {:.0}% indifference zone, the cells of a verdict whose interval straddles its threshold) took {:.0} s of the {:.0} s the time budget left, up to {} samples a cell; still open: {open}.",
        race.asked,
        race.open_before,
        race.measurements,
        race.indifference * 100.0,
        race.spent_s,
        race.budget_s,
        race.most_samples,
    )
}

/// How many times each cell was measured: as asked, or, for a run that was stopped
/// early, how many it got.
fn repetitions(r: &BenchReport) -> String {
    let mut counts: Vec<(&str, &str, u32, usize, usize)> = Vec::new();
    for s in &r.samples {
        match counts
            .iter_mut()
            .find(|c| c.0 == s.regime && c.1 == s.variant && c.2 == s.n && c.3 == s.clients)
        {
            Some(c) => c.4 += 1,
            None => counts.push((&s.regime, &s.variant, s.n, s.clients, 1)),
        }
    }
    let fewest = counts.iter().map(|c| c.4).min().unwrap_or(r.repetitions);
    let most = counts.iter().map(|c| c.4).max().unwrap_or(r.repetitions);
    match (fewest, most) {
        (a, b) if a >= r.repetitions && b > r.repetitions => format!(
            "{a} to {b} repetitions ({} interleaved across models, then more of the cells the race needed)",
            r.repetitions
        ),
        (a, b) if a == r.repetitions && b == r.repetitions => {
            format!(
                "{} interleaved across models",
                plural(r.repetitions, "repetition")
            )
        }
        (a, b) if a == b => format!(
            "{a} of the {} repetitions asked (the run was stopped early)",
            r.repetitions
        ),
        (a, b) => format!(
            "{a} to {b} of the {} repetitions asked per cell (the run was stopped early)",
            r.repetitions
        ),
    }
}

/// Where `fiblab bench` writes its report; `None` fields are not written.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// `report.md`, `report.json`, `report.html` and every plot's SVG.
    pub dir: Option<PathBuf>,
    /// The markdown alone, its plot links relative to this file; `-`: standard output.
    pub markdown: Option<PathBuf>,
    /// The JSON report; `-`: standard output.
    pub json: Option<PathBuf>,
    /// The HTML page; `-`: standard output.
    pub html: Option<PathBuf>,
}

impl Outputs {
    /// The one output that goes to standard output (`-`), if any: then nothing else
    /// may be written there.
    pub fn to_stdout(&self) -> Option<&'static str> {
        let dash = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str() == "-");
        [
            (dash(&self.markdown), "--markdown"),
            (dash(&self.json), "--json"),
            (dash(&self.html), "--html"),
        ]
        .into_iter()
        .filter(|(d, _)| *d)
        .map(|(_, flag)| flag)
        .next()
    }

    /// How many outputs want standard output; more than one cannot share it.
    pub fn stdout_count(&self) -> usize {
        [&self.markdown, &self.json, &self.html]
            .into_iter()
            .filter(|p| p.as_ref().is_some_and(|p| p.as_os_str() == "-"))
            .count()
    }
}

/// A report that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// Writes every output `outputs` names; returns the plots drawn (for a summary line).
///
/// # Errors
/// A folder or file cannot be written, or a plot cannot be drawn.
pub fn write(report: &BenchReport, outputs: &Outputs) -> Result<usize, ExportError> {
    let plots = experiments::plots(report)?;
    let put = |path: &Path, text: &str| {
        let written = match path.as_os_str() == "-" {
            true => std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes()),
            false => std::fs::write(path, text),
        };
        written.map_err(|source| ExportError::Write {
            path: path.to_path_buf(),
            source,
        })
    };
    let links = |from: Option<&Path>| -> Vec<PlotLink> {
        let Some(dir) = &outputs.dir else {
            return Vec::new();
        };
        let base = from
            .and_then(|f| dir.strip_prefix(f).ok())
            .map_or(dir.clone(), Path::to_path_buf);
        plots
            .iter()
            .map(|p| PlotLink {
                title: p.title.clone(),
                href: base.join(&p.file).display().to_string(),
            })
            .collect()
    };
    if let Some(dir) = &outputs.dir {
        std::fs::create_dir_all(dir).map_err(|source| ExportError::Write {
            path: dir.clone(),
            source,
        })?;
        put(
            &dir.join("report.md"),
            &markdown::render(report, &links(Some(dir))),
        )?;
        put(&dir.join("report.json"), &(json::render(report) + "\n"))?;
        put(&dir.join("report.html"), &html::render(report, &plots))?;
        for p in &plots {
            put(&dir.join(&p.file), &p.svg)?;
        }
    }
    if let Some(path) = &outputs.markdown {
        let here = path.parent().filter(|p| !p.as_os_str().is_empty());
        put(path, &markdown::render(report, &links(here)))?;
    }
    if let Some(path) = &outputs.json {
        put(path, &(json::render(report) + "\n"))?;
    }
    if let Some(path) = &outputs.html {
        put(path, &html::render(report, &plots))?;
    }
    Ok(plots.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_group_by_seed_and_count_repeated_parts() {
        let sources: Vec<String> = [
            "seed 000, 总结 1",
            "seed 000, 总结 5",
            "seed 000, 总结 5",
            "seed 003",
            "seed 004",
            "seed 004",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            group_sources(&sources),
            "seed 000 (总结 1, 总结 5: 2 claims), seed 003, seed 004 (2 claims)"
        );
    }
    use crate::bench::results::{Sample, tests::report_of};

    fn sample(variant: &str, repetition: usize) -> Sample {
        Sample {
            regime: String::new(),
            variant: variant.into(),
            n: 1,
            clients: 1,
            repetition,
            throughput_rps: 1000.0,
            p50_us: 10,
            p99_us: 20,
            per_connection: vec![1000],
            errors: 0,
            histogram: String::new(),
            client: None,
        }
    }

    #[test]
    fn a_stopped_run_says_how_many_repetitions_each_cell_got() {
        let mut r = report_of(vec![sample("a", 0), sample("a", 1), sample("b", 0)]);
        r.repetitions = 3;
        assert_eq!(
            repetitions(&r),
            "1 to 2 of the 3 repetitions asked per cell (the run was stopped early)"
        );
        r.repetitions = 1;
        r.samples.truncate(1);
        assert_eq!(repetitions(&r), "1 repetition interleaved across models");
        r.repetitions = 2;
        assert!(repetitions(&r).starts_with("1 of the 2 repetitions asked"));
        assert!(
            Document::of(&r).header[1].contains("Latency percentiles are of all their requests")
        );
    }
}
