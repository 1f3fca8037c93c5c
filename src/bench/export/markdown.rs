//! The report as markdown: the seed-shaped tables, notes, and links to the plots.

use std::fmt::Write as _;

use super::Document;
use crate::bench::results::{BenchReport, PlotLink};

/// The seed-shaped tables: one per workload, a row per model, a column per client count;
/// then the starvation experiment, the findings, and links to `plots` if any.
pub fn render(r: &BenchReport, plots: &[PlotLink]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# fiblab bench: {}\n", r.scenario);
    let _ = writeln!(out, "{}\n", r.about);
    let Document {
        header: [machine, method],
        calibration,
        summary,
        tables,
        notes,
    } = Document::of(r);
    for line in &summary {
        let _ = writeln!(out, "- {line}");
    }
    let _ = writeln!(out, "\n{machine}\n\n{method}\n");
    if let Some(calibration) = &calibration {
        let _ = writeln!(out, "{calibration}\n");
    }
    for t in &tables {
        let _ = writeln!(out, "## {}\n", t.title);
        if !t.intro.is_empty() {
            let _ = writeln!(out, "{}\n", t.intro);
        }
        let _ = writeln!(out, "| {} |", t.header.join(" | "));
        let rule: Vec<&str> = (0..t.header.len())
            .map(|i| if t.is_left(i) { "---" } else { "---:" })
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
