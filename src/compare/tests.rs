//! The comparison on synthetic bench reports: runs drawn from one distribution are
//! rarely called different, runs from two known distributions are told apart, and
//! reports that cannot be compared are refused with a reason.

use super::*;
use crate::bench::results::{Machine, Sample, aggregate};

/// A bench report of `cells` cells, each with `repetitions` samples drawn log-normally
/// around `center(cell)` with spread `sigma` (deterministic from `seed`).
fn report(
    scenario: &str,
    cells: usize,
    repetitions: usize,
    sigma: f64,
    center: impl Fn(usize) -> f64,
    seed: u64,
) -> BenchReport {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut samples = Vec::new();
    for repetition in 0..repetitions {
        for cell in 0..cells {
            let (u1, u2) = (rng.f64().max(1e-300), rng.f64());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            samples.push(Sample {
                regime: String::new(),
                variant: format!("model-{cell}"),
                n: 1,
                clients: 2,
                repetition,
                throughput_rps: center(cell) * (sigma * z).exp(),
                p50_us: 10,
                p99_us: 20,
                per_connection: vec![1, 1],
                errors: 0,
                histogram: String::new(),
                client: None,
            });
        }
    }
    BenchReport {
        scenario: scenario.into(),
        about: String::new(),
        date: "2026-12-04".into(),
        command: String::new(),
        machine: Machine {
            cpu: "Test CPU".into(),
            cpus: 2,
            kernel: "6.18".into(),
            pinning: "none".into(),
        },
        duration_s: 0.5,
        warmup_s: 0.15,
        repetitions,
        agents: 1,
        rate: None,
        cells: aggregate(&samples),
        samples,
        starvation: Vec::new(),
        findings: Vec::new(),
        peers: Vec::new(),
        notes: Vec::new(),
        settings: Vec::new(),
        calibration: None,
        regimes: Vec::new(),
        python: None,
        connections: None,
        knee: None,
        waiting: None,
        scaleout: None,
        race: None,
    }
}

fn json(r: &BenchReport) -> String {
    serde_json::to_string(r).unwrap()
}

#[test]
fn identical_distributions_flag_at_most_five_percent_of_cells() {
    // 400 cells, 10% noise per repetition, three repetitions a side: the false-positive
    // rate of the whole rule (significance and the 2% noise threshold).
    let old = report("quick", 400, 3, 0.10, |_| 10_000.0, 1);
    let new = report("quick", 400, 3, 0.10, |_| 10_000.0, 2);
    let c = Comparison::of_json(&json(&old), &json(&new), Options::default()).unwrap();
    assert_eq!(c.rows.len(), 400);
    let flagged = c.rows.iter().filter(|r| r.mark != Mark::Same).count();
    assert!(flagged <= 20, "{flagged} of 400 flagged");
    // What a `~` could have missed: three repetitions with 10% noise a side detect
    // about a 30% change (the spread 0.1 in logs, t on about 4 df); never under 10%.
    let detectable: Vec<f64> = c.rows.iter().filter_map(|r| r.detectable).collect();
    assert_eq!(detectable.len(), 400);
    let typical = crate::stats::median(&detectable);
    assert!(typical > 1.15 && typical < 1.6, "{typical}");
    assert!(c.render_text().contains("detectable"));
}

#[test]
fn a_halved_throughput_is_found_and_gates() {
    // Half of the cells lose half their throughput (half the CPUs for a CPU-bound,
    // multi-threaded model); the other half do not move.
    let old = report("quick", 40, 3, 0.10, |_| 10_000.0, 3);
    let new = report(
        "quick",
        40,
        3,
        0.10,
        |cell| if cell % 2 == 0 { 5_000.0 } else { 10_000.0 },
        4,
    );
    let options = Options {
        noise: 0.02,
        fail_on_regression: Some(0.05),
    };
    let c = Comparison::of_json(&json(&old), &json(&new), options).unwrap();
    let halved = c.rows.iter().step_by(2);
    let found = halved
        .filter(|r| r.mark == Mark::Worse && r.regression)
        .count();
    assert!(found >= 18, "{found} of 20 halved cells found");
    let unmoved = c.rows.iter().skip(1).step_by(2);
    assert!(unmoved.filter(|r| r.mark != Mark::Same).count() <= 2);
    assert!(!c.regressions().is_empty());
    assert!(c.render_text().contains("-!"));
}

#[test]
fn different_scenarios_and_kinds_are_refused_and_machines_warned() {
    let a = report("quick", 2, 3, 0.1, |_| 1000.0, 5);
    let b = report("knee", 2, 3, 0.1, |_| 1000.0, 6);
    let e = Comparison::of_json(&json(&a), &json(&b), Options::default()).unwrap_err();
    assert!(
        e.to_string().contains("compare two runs of one scenario"),
        "{e}"
    );
    let e = Comparison::of_json("{\"x\": 1}", &json(&b), Options::default()).unwrap_err();
    assert!(e.to_string().starts_with("OLD is not a fiblab"), "{e}");
    let mut other = report("quick", 3, 3, 0.1, |_| 1000.0, 7);
    other.machine.cpus = 16;
    let c = Comparison::of_json(&json(&a), &json(&other), Options::default()).unwrap();
    assert_eq!(c.rows.len(), 2);
    assert!(c.warnings.iter().any(|w| w.contains("machines differ")));
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("1 cells are in one report only"))
    );
}

/// Knee records of one row: three sweeps, each sustaining `knee` (times the sweep's
/// scale) and failing a refinement step (x1.19) above it.
fn knee_records(knee: f64, scales: [f64; 3]) -> crate::bench::results::KneeRecords {
    use crate::bench::results::{KneeRecords, KneeStep, KneeSweep, StepVerdict};
    let step = |offered: f64, verdict: StepVerdict| KneeStep {
        offered_rps: offered,
        achieved_rps: offered,
        p50_us: 50,
        p99_us: 500,
        p99_9_us: 900,
        failed: 0,
        timeouts: 0,
        missed: 0,
        client_busy: 0.2,
        server: None,
        client: None,
        verdict,
        histogram: String::new(),
    };
    KneeRecords {
        tick_us: 0.0,
        connections: 64,
        pipeline: 1,
        step_s: 0.5,
        workloads: Vec::new(),
        sweeps: scales
            .iter()
            .enumerate()
            .map(|(round, s)| KneeSweep {
                regime: String::new(),
                row: "epoll".into(),
                workload: "n=20".into(),
                round,
                steps: vec![
                    step(knee * s, StepVerdict::Sustained),
                    step(knee * s * 1.19, StepVerdict::Tail),
                ],
                ended: String::new(),
                set_aside: false,
            })
            .collect(),
    }
}

#[test]
fn knees_compare_within_their_sweeps_resolution() {
    let mut old = report("knee", 1, 3, 0.1, |_| 1000.0, 8);
    let mut same = report("knee", 1, 3, 0.1, |_| 1000.0, 9);
    let mut halved = same.clone();
    old.knee = Some(knee_records(16_000.0, [1.0, 1.0, 1.19]));
    same.knee = Some(knee_records(16_000.0, [1.0, 1.19, 1.0]));
    halved.knee = Some(knee_records(8_000.0, [1.0, 1.0, 1.0]));
    let knee_row = |c: &Comparison| {
        c.rows
            .iter()
            .find(|r| r.what.starts_with("knee n=20 epoll"))
            .cloned()
            .unwrap()
    };
    let c = Comparison::of_json(&json(&old), &json(&same), Options::default()).unwrap();
    assert_eq!(knee_row(&c).mark, Mark::Same);
    let c = Comparison::of_json(&json(&old), &json(&halved), Options::default()).unwrap();
    let row = knee_row(&c);
    assert_eq!(row.mark, Mark::Worse, "{row:?}");
    assert!((row.change.estimate - 0.5).abs() < 1e-9);
}

/// Seed 004's light throughput kept is compared too (issue 47), by its intervals over
/// each run's 100 ms buckets: a collapse is found, a wobble inside them is not.
#[test]
fn the_starvation_results_are_compared_by_their_intervals() {
    let with = |kept: f64, wobble: u64| {
        let mut r = report("quick", 2, 3, 0.1, |_| 1000.0, 9);
        let mut s = crate::bench::results::tests::kept_by("epoll", kept);
        // Ten buckets before the heavy request at 1 s, ten during it.
        s.timeline = (0..20)
            .map(|i| match i < 10 {
                true => 100 + (i % 3) * wobble,
                false => ((100.0 * kept) as u64) + (i % 3) * wobble,
            })
            .collect();
        s.heavy_at_s = 1.0;
        r.starvation = vec![s];
        r
    };
    let c = Comparison::of_json(
        &json(&with(1.0, 5)),
        &json(&with(0.1, 5)),
        Options::default(),
    )
    .unwrap();
    let row = c
        .rows
        .iter()
        .find(|r| r.what.contains("seed 004 epoll"))
        .unwrap();
    assert_eq!(row.mark, Mark::Worse, "{row:?}");
    assert!(c.render_text().contains("light throughput kept"));
    let same = Comparison::of_json(
        &json(&with(1.0, 5)),
        &json(&with(0.98, 5)),
        Options::default(),
    )
    .unwrap();
    let row = same
        .rows
        .iter()
        .find(|r| r.what.contains("seed 004"))
        .unwrap();
    assert_eq!(row.mark, Mark::Same, "{row:?}");
}
