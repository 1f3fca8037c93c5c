//! `fiblab advise`: which model for a service described in its own terms.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;

use fiblab::advise::{Service, check_clients, parse_slo, parse_wait};
use fiblab::calibrate::Calibration;
use fiblab::calibrate::work::{choose_n, from_table, parse_cpu};
use fiblab::load::mix::parse_n;

/// fib(n) past this is timed here at this n and extended by φ per step: the
/// interpreter's fib(32) already takes a few hundred milliseconds a run.
const MOST_N_TIMED: u32 = 32;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("work").required(true).args(["cpu", "n"])))]
pub struct AdviseArgs {
    /// CPU work per request, e.g. 300us or 2ms (at most 10s): the fib(n) that costs
    /// nearest that on the calibrated machine.
    #[arg(long, value_parser = parse_cpu)]
    cpu: Option<Duration>,
    /// CPU work per request as fib(n), 0 to 45.
    #[arg(short, long, allow_negative_numbers = true, value_parser = parse_n)]
    n: Option<u32>,
    /// Wait per request on a downstream (a database, another service), e.g. 20ms; 0 to
    /// 60s.
    #[arg(long, default_value = "0", value_parser = parse_wait)]
    wait: Duration,
    /// Clients in a closed loop, each sending its next request when its reply is back;
    /// 1 to 1048576.
    #[arg(long, default_value_t = 1, value_parser = parse_clients)]
    clients: usize,
    /// The latency objective, e.g. p99=50ms: a model whose predicted mean latency is
    /// already over it is out.
    #[arg(long, value_parser = parse_slo)]
    slo: Option<f64>,
    /// Predict for another machine from its calibration: a `fiblab calibrate --json`
    /// file, or a bench report (its head's calibration). Default: calibrate here now
    /// (a few seconds).
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Predict only: do not measure the advice here.
    #[arg(long)]
    predict_only: bool,
    /// The time the measurement may take in all (calibration, servers, the race), e.g.
    /// 90s; 10s to 1h.
    #[arg(long, default_value = "90s", value_parser = parse_budget)]
    time_budget: Duration,
    /// Also write the advice as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write the advice as markdown to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

fn parse_clients(text: &str) -> Result<usize, String> {
    let clients: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a whole number of clients"))?;
    check_clients(clients).map_err(|e| e.to_string())
}

fn parse_budget(text: &str) -> Result<Duration, String> {
    match fiblab::units::parse_duration(text).map_err(|e| e.0)? {
        d if (Duration::from_secs(10)..=Duration::from_secs(3600)).contains(&d) => Ok(d),
        _ => Err(format!("'{text}': give 10s to 1h")),
    }
}

/// A calibration from `path`: a calibration's own JSON, or a report holding one.
fn read_calibration(path: &PathBuf) -> Result<Calibration> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the calibration {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let inner = value.get("calibration").cloned().unwrap_or(value);
    serde_json::from_value(inner).with_context(|| {
        format!(
            "{} holds no calibration: give a `fiblab calibrate --json` file or a bench report",
            path.display()
        )
    })
}

pub fn run(args: AdviseArgs) -> Result<()> {
    super::check_outputs(&[("--json", &args.json), ("--markdown", &args.markdown)])?;
    if let Some(n) = args.n.filter(|&n| n > 45) {
        bail!("--n {n}: fib(n) past 45 holds a core for minutes per request; give 0 to 45");
    }
    let (calibration, source, n, asked) = match &args.calibration {
        Some(path) => {
            let calibration = read_calibration(path)?;
            let table: Vec<(u32, f64)> = calibration
                .fib
                .iter()
                .map(|f| (f.n, f.cost.median_us))
                .collect();
            if table.is_empty() {
                bail!(
                    "{} times no fib(n): its CPU costs are unknown",
                    path.display()
                );
            }
            let (n, asked) = match (args.n, args.cpu) {
                (Some(n), _) => (n, None),
                (None, Some(cpu)) => {
                    let choice = choose_n(cpu, from_table(&table));
                    eprintln!("{}", choice.describe("--cpu", "there"));
                    (choice.n, Some(choice.asked_us))
                }
                (None, None) => unreachable!("clap requires --cpu or --n"),
            };
            let source = format!("calibration from {}, another machine's", path.display());
            (calibration, source, n, asked)
        }
        None => {
            let (n, asked) = match (args.n, args.cpu) {
                (Some(n), _) => (n, None),
                (None, Some(cpu)) => {
                    let choice = choose_n(cpu, fiblab::calibrate::fib_time);
                    eprintln!("{}", choice.describe("--cpu", "here"));
                    (choice.n, Some(choice.asked_us))
                }
                (None, None) => unreachable!("clap requires --cpu or --n"),
            };
            fiblab::server::raise_descriptor_limit();
            let exe = std::env::current_exe()
                .context("cannot find the fiblab binary to time its start")?;
            eprintln!("fiblab advise: calibrating this machine (a few seconds)");
            let calibration = Calibration::measure(&exe, &[n.min(MOST_N_TIMED)]);
            (calibration, "calibrated here now".to_string(), n, asked)
        }
    };
    let service = Service {
        n,
        asked_cpu_us: asked,
        wait_us: args.wait.as_secs_f64() * 1e6,
        clients: args.clients,
        slo_p99_us: args.slo,
    };
    let mut advice = fiblab::advise::advise(&calibration, &service, &source);
    if !args.predict_only && args.calibration.is_none() {
        advice.confirmation = Some(confirm(&advice, args.time_budget)?);
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&advice)? + "\n";
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, fiblab::advise::markdown(&advice))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    super::print(&fiblab::advise::text(&advice))
}

/// Measures the advice here: the contenders and a contrast, through the bench.
fn confirm(
    advice: &fiblab::advise::Advice,
    budget: Duration,
) -> Result<fiblab::advise::confirm::Confirmation> {
    use fiblab::advise::confirm;
    let models = confirm::models_to_measure(advice);
    if models.is_empty() {
        bail!(
            "no model can hold this load here, so there is nothing to measure; rerun with --predict-only"
        );
    }
    let scenario = confirm::scenario(advice, &models, budget)?;
    let exe =
        std::env::current_exe().context("cannot find the fiblab binary to start servers with")?;
    eprintln!(
        "fiblab advise: measuring {} here, within about {:.0} s",
        models
            .iter()
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>()
            .join(", "),
        budget.as_secs_f64()
    );
    let interrupt = fiblab::shutdown::interrupt_flag()?;
    let command = format!(
        "fiblab {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let report = super::bench::with_progress(|progress| {
        fiblab::bench::measure(&scenario, &[], &exe, interrupt.clone(), progress, command)
    })??;
    Ok(confirm::read(advice, &report))
}
