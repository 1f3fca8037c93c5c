//! `fiblab compare OLD.json NEW.json`: the change between two bench (or load) reports,
//! with intervals and p-values; `--fail-on-regression` makes it a CI gate.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

use fiblab::compare::{Comparison, Options};

#[derive(Args)]
pub struct CompareArgs {
    /// The earlier report: `report.json` from `fiblab bench`, or `fiblab load --json`.
    old: PathBuf,
    /// The later report, of the same kind and scenario.
    new: PathBuf,
    /// Changes smaller than this count as no change, significant or not (e.g. 2%).
    #[arg(long, default_value = "2%", value_parser = fiblab::units::parse_percent)]
    noise: f64,
    /// Exit 1 when a figure is significantly worse by more than this (e.g. 5%).
    #[arg(long, value_parser = fiblab::units::parse_percent)]
    fail_on_regression: Option<f64>,
}

pub fn run(args: CompareArgs) -> Result<()> {
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let options = Options {
        noise: args.noise,
        fail_on_regression: args.fail_on_regression,
    };
    let comparison = Comparison::of_json(&read(&args.old)?, &read(&args.new)?, options)?;
    super::print(&comparison.render_text())?;
    let regressions = comparison.regressions();
    if !regressions.is_empty() {
        anyhow::bail!(
            "{} figures regressed beyond {:.0}%: {}",
            regressions.len(),
            args.fail_on_regression.unwrap_or(0.0) * 100.0,
            regressions
                .iter()
                .map(|r| r.what.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
