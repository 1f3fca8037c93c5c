//! `fiblab calibrate`: the machine's primitive costs, as a table or JSON.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::Args;

use fiblab::calibrate::Calibration;

#[derive(Args)]
pub struct CalibrateArgs {
    /// fib(n) to time besides the primitives, e.g. 1,20,42.
    #[arg(long, value_delimiter = ',', default_value = "1,20,30")]
    n: Vec<u32>,
    /// Write the calibration as JSON to this file (- for stdout, alone there).
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(args: CalibrateArgs) -> Result<()> {
    if let Some(n) = args.n.iter().find(|&&n| n > 40) {
        bail!("fib({n}) would take seconds per run: calibrate n up to 40");
    }
    fiblab::server::raise_descriptor_limit();
    let exe = std::env::current_exe().context("cannot find the fiblab binary to time its start")?;
    eprintln!(
        "fiblab calibrate: timing each primitive {} times (a few seconds)",
        fiblab::calibrate::RUNS
    );
    let calibration = Calibration::measure(&exe, &args.n);
    let json = serde_json::to_string_pretty(&calibration)? + "\n";
    match &args.json {
        Some(path) if path.as_os_str() == "-" => super::print(&json)?,
        Some(path) => {
            std::fs::write(path, &json)
                .with_context(|| format!("cannot write {}", path.display()))?;
            super::print(&calibration.render_text())?;
        }
        None => super::print(&calibration.render_text())?,
    }
    Ok(())
}
