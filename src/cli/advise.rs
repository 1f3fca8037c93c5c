//! `fiblab advise`: which model for a service described in its own terms.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;

use fiblab::advise::{Service, check_clients, parse_slo, parse_wait};
use fiblab::bench::scenario::RegimePlan;
use fiblab::calibrate::Calibration;
use fiblab::calibrate::work::{choose_n, from_table, parse_cpu};
use fiblab::load::mix::parse_n;

/// fib(n) past this is timed here at this n and extended by φ per step: the
/// interpreter's fib(32) already takes a few hundred milliseconds a run.
const MOST_N_TIMED: u32 = 32;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("work").required(true).args(["cpu", "n", "mix"])))]
pub struct AdviseArgs {
    /// CPU work per request, e.g. 300us or 2ms (at most 10s): the fib(n) that costs
    /// nearest that on the calibrated machine.
    #[arg(long, value_parser = parse_cpu)]
    cpu: Option<Duration>,
    /// CPU work per request as fib(n), 0 to 45.
    #[arg(short, long, allow_negative_numbers = true, value_parser = parse_n)]
    n: Option<u32>,
    /// Request classes by weight, as `fiblab load --mix`: fib(n) or a CPU time per
    /// class, e.g. 1:99,30:1 or 50us:99,5ms:1.
    #[arg(long)]
    mix: Option<String>,
    /// Wait per request on a downstream (a database, another service), e.g. 20ms; 0 to
    /// 60s.
    #[arg(long, default_value = "0", value_parser = parse_wait)]
    wait: Duration,
    /// Clients in a closed loop, each sending its next request when its reply is back;
    /// with --rate, the connections the requests go over. 1 to 1048576; default 1, or
    /// 64 with --rate.
    #[arg(long, value_parser = parse_clients)]
    clients: Option<usize>,
    /// Requests per second in an open loop (sent on schedule whatever the server does),
    /// e.g. 20000/s; 1 to 10000000.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// The latency objective, e.g. p99=50ms: a model whose predicted mean latency is
    /// already over it is out.
    #[arg(long, value_parser = parse_slo)]
    slo: Option<f64>,
    /// Predict for another machine from its calibration: a `fiblab calibrate --json`
    /// file, or a bench report (its head's calibration). Default: calibrate here now
    /// (a few seconds).
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// With a bench report as --calibration: predict for one of its regimes (where its
    /// servers and load ran), e.g. pinned; default its only regime. `shared`: unpinned.
    #[arg(long, requires = "calibration")]
    regime: Option<String>,
    /// Also predict `threads` and `threadpool` under CPython's GIL (emulated, as
    /// `fiblab serve --gil`): seed 002's Python threads; measured where there is a
    /// wait.
    #[arg(long)]
    gil: bool,
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
    /// Also write the advice as one self-contained HTML page to this file.
    #[arg(long)]
    html: Option<PathBuf>,
}

fn parse_clients(text: &str) -> Result<usize, String> {
    let clients: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a whole number of clients"))?;
    check_clients(clients).map_err(|e| e.to_string())
}

fn parse_rate(text: &str) -> Result<f64, String> {
    fiblab::advise::parse_rate(text).map_err(|e| e.to_string())
}

/// Connections an open loop sends over when `--clients` is not given: as the knee's.
const OPEN_LOOP_CONNECTIONS: usize = 64;

/// `--mix` in n, each class's CPU time turned into its fib(n) by `time_us`.
fn mix_classes(
    text: &str,
    where_: &str,
    time_us: impl FnMut(u32) -> f64,
) -> Result<Vec<(u32, u32)>> {
    let (mix, choices) = fiblab::calibrate::work::resolve_mix("--mix", text, time_us)?;
    for choice in choices {
        eprintln!("{}", choice.describe("--mix", where_));
    }
    let parsed = fiblab::load::mix::Mix::parse_fib(&mix, true)
        .map_err(|e| anyhow::anyhow!("--mix '{text}': {e}"))?;
    let classes: Vec<(u32, u32)> = parsed
        .classes
        .iter()
        .map(|c| {
            let n = c.label.trim_start_matches("n=").parse().unwrap_or(0);
            (n, c.weight)
        })
        .collect();
    if let Some((n, _)) = classes.iter().find(|(n, _)| *n > 45) {
        bail!("--mix: fib({n}) past 45 holds a core for minutes per request; give 0 to 45");
    }
    Ok(classes)
}

fn parse_budget(text: &str) -> Result<Duration, String> {
    match fiblab::units::parse_duration(text).map_err(|e| e.0)? {
        d if (Duration::from_secs(10)..=Duration::from_secs(3600)).contains(&d) => Ok(d),
        _ => Err(format!("'{text}': give 10s to 1h")),
    }
}

/// fib(n), the CPU time asked (µs) and the mix's classes `(n, weight)`.
type Work = (u32, Option<f64>, Vec<(u32, u32)>);

/// The work the description names: fib(n), the n asked as CPU time (µs), and the mix's
/// classes (then n is its heaviest), `time_us` timing fib(n) on the calibrated machine
/// (`where_` says which, in the choice's words).
fn work(args: &AdviseArgs, where_: &str, mut time_us: impl FnMut(u32) -> f64) -> Result<Work> {
    Ok(match (args.n, args.cpu, &args.mix) {
        (Some(n), _, _) => (n, None, Vec::new()),
        (None, Some(cpu), _) => {
            let choice = choose_n(cpu, time_us);
            eprintln!("{}", choice.describe("--cpu", where_));
            (choice.n, Some(choice.asked_us), Vec::new())
        }
        (None, None, Some(text)) => {
            let classes = mix_classes(text, where_, &mut time_us)?;
            let heaviest = classes.iter().map(|&(n, _)| n).max().unwrap_or(0);
            match classes.len() {
                1 => (heaviest, None, Vec::new()),
                _ => (heaviest, None, classes),
            }
        }
        (None, None, None) => unreachable!("clap requires --cpu, --n or --mix"),
    })
}

/// A calibration from `path`: a calibration's own JSON, or a report holding one, and
/// the report's regimes (none for a calibration's own file).
fn read_calibration(path: &PathBuf) -> Result<(Calibration, Vec<RegimePlan>)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the calibration {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let regimes: Vec<RegimePlan> = value
        .get("regimes")
        .cloned()
        .and_then(|r| serde_json::from_value(r).ok())
        .unwrap_or_default();
    let inner = value.get("calibration").cloned().unwrap_or(value);
    let calibration = serde_json::from_value(inner).with_context(|| {
        format!(
            "{} holds no calibration: give a `fiblab calibrate --json` file or a bench report",
            path.display()
        )
    })?;
    Ok((calibration, regimes))
}

/// The regime `--regime` names among a report's, or its only one; `None`: unpinned.
fn pick_regime(
    asked: Option<&str>,
    regimes: &[RegimePlan],
    path: &std::path::Path,
) -> Result<Option<RegimePlan>> {
    let names = || {
        regimes
            .iter()
            .map(|r| r.name.as_str())
            .chain(["shared"])
            .collect::<Vec<_>>()
            .join(", ")
    };
    match asked {
        Some("shared") => Ok(None),
        Some(name) => match regimes.iter().find(|r| r.name == name) {
            Some(r) => Ok(Some(r.clone())),
            None => bail!(
                "--regime {name}: {} has no such regime; give one of {}",
                path.display(),
                names()
            ),
        },
        None => match regimes {
            [only] => Ok(Some(only.clone())),
            [] => Ok(None),
            _ => bail!(
                "{} ran {} regimes: pick one with --regime ({})",
                path.display(),
                regimes.len(),
                names()
            ),
        },
    }
}

pub fn run(args: AdviseArgs) -> Result<()> {
    super::check_outputs(&[
        ("--json", &args.json),
        ("--markdown", &args.markdown),
        ("--html", &args.html),
    ])?;
    if let Some(n) = args.n.filter(|&n| n > 45) {
        bail!("--n {n}: fib(n) past 45 holds a core for minutes per request; give 0 to 45");
    }
    let mut regime = None;
    let (calibration, source, (n, asked, mix)) = match &args.calibration {
        Some(path) => {
            let (calibration, regimes) = read_calibration(path)?;
            regime = pick_regime(args.regime.as_deref(), &regimes, path)?;
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
            let work = work(&args, "there", from_table(&table))?;
            let source = format!("calibration from {}, another machine's", path.display());
            (calibration, source, work)
        }
        None => {
            let work = work(&args, "here", fiblab::calibrate::fib_time)?;
            fiblab::server::raise_descriptor_limit();
            let exe = std::env::current_exe()
                .context("cannot find the fiblab binary to time its start")?;
            eprintln!("fiblab advise: calibrating this machine (a few seconds)");
            let mut timed: Vec<u32> = std::iter::once(work.0)
                .chain(work.2.iter().map(|&(n, _)| n))
                .map(|n| n.min(MOST_N_TIMED))
                .collect();
            timed.sort_unstable();
            timed.dedup();
            let calibration = Calibration::measure(&exe, &timed);
            (calibration, "calibrated here now".to_string(), work)
        }
    };
    let service = Service {
        n,
        asked_cpu_us: asked,
        wait_us: args.wait.as_secs_f64() * 1e6,
        clients: args.clients.unwrap_or(match args.rate {
            Some(_) => OPEN_LOOP_CONNECTIONS,
            None => 1,
        }),
        slo_p99_us: args.slo,
        rate: args.rate,
        mix,
        gil: args.gil,
    };
    let on = fiblab::advise::On {
        calibration: &calibration,
        regime: regime.as_ref(),
    };
    let mut advice = fiblab::advise::advise_on(&on, &service, &source);
    let unmeasurable = fiblab::advise::confirm::unmeasurable(&service);
    if let (Some(why), false, None) = (unmeasurable, args.predict_only, &args.calibration) {
        eprintln!("fiblab advise: {why}");
    }
    if !args.predict_only && args.calibration.is_none() && unmeasurable.is_none() {
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
    if let Some(path) = &args.html {
        std::fs::write(path, fiblab::advise::html(&advice))
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
    Ok(super::bench::with_progress(|progress| {
        confirm::run(advice, budget, &exe, interrupt.clone(), progress, command)
    })??)
}
