//! Tests of the experiments together: findings merged across regimes, plots of many rows.

use super::*;
use crate::bench::results::{Sample, StarvationResult, Verdict};

fn report(cells: &[(&str, u32, usize, f64)], kept: &[(&str, f64)]) -> BenchReport {
    let samples: Vec<Sample> = cells
        .iter()
        .map(|&(variant, n, clients, rps)| {
            crate::bench::results::tests::sample(variant, n, clients, 0, rps, vec![1; clients])
        })
        .collect();
    let mut report = crate::bench::results::tests::report_of(samples);
    report.starvation = kept
        .iter()
        .map(|&(variant, kept)| crate::bench::results::tests::kept_by(variant, kept))
        .collect();
    report
}

fn verdicts(r: &BenchReport) -> Vec<Verdict> {
    findings(r).into_iter().map(|f| f.verdict).collect()
}

#[test]
fn a_pinned_server_gets_the_workers_of_its_own_cpus() {
    use crate::bench::measure::server_config;
    use crate::server::Variant;
    use crate::service::ServiceKind;
    let one = server_config(&Variant::plain("tokio"), ServiceKind::Fib, &[1]);
    assert_eq!(one.workers, 1);
    let pool = server_config(&Variant::plain("threadpool"), ServiceKind::Fib, &[1]);
    assert_eq!(pool.workers, 5, "ThreadPoolExecutor's min(32, CPUs + 4)");
    let unpinned = server_config(&Variant::plain("tokio"), ServiceKind::Fib, &[]);
    assert_eq!(unpinned.workers, crate::server::default_workers());
}

#[test]
fn nothing_measured_means_nothing_claimed() {
    assert!(
        verdicts(&report(&[], &[]))
            .iter()
            .all(|v| *v == Verdict::NotMeasured)
    );
}

#[test]
fn python_like_figures_reproduce_the_seeds() {
    // The seeds' own numbers, shaped as fiblab cells.
    let r = report(
        &[
            ("threads", 1, 2, 19_000.0),
            ("tokio", 1, 2, 20_000.0),
            ("threads", 20, 1, 400.0),
            ("threads", 20, 2, 400.0),
            ("tokio", 20, 2, 11_000.0),
            ("procpool", 1, 1, 1_000.0),
            ("procpool", 1, 2, 4_300.0),
            ("procpool", 20, 1, 400.0),
            ("procpool", 20, 2, 700.0),
            ("coroutines", 1, 2, 14_000.0),
            ("isolates", 20, 1, 150.0),
            ("threads", 1, 1, 12_000.0),
        ],
        &[
            ("threads", 0.9),
            ("epoll", 0.01),
            ("coroutines", 0.01),
            ("procpool", 0.9),
        ],
    );
    let v = verdicts(&r);
    assert_eq!(v[0], Verdict::Reproduces, "threads ~ Go at n=1");
    assert_eq!(v[1], Verdict::DoesNotApply, "no GIL");
    assert_eq!(v[2], Verdict::Reproduces, "procpool slower at I/O");
    assert_eq!(v[3], Verdict::Reproduces, "threads flat, processes gain");
    assert_eq!(v[4], Verdict::Reproduces, "coroutines");
    assert_eq!(
        v[5],
        Verdict::NotMeasured,
        "coroutines lighter: no connections run"
    );
    assert_eq!(v[6], Verdict::Reproduces, "isolates slow");
    // Seed 002's waiting claims (threads for I/O, the GIL released while waiting).
    assert_eq!(v[7], Verdict::NotMeasured, "seed 002: no waiting run");
    assert_eq!(v[8], Verdict::NotMeasured, "seed 002: no waiting run");
    assert_eq!(v[9], Verdict::NotMeasured, "seed 003: no connections run");
    assert_eq!(
        v[10],
        Verdict::NotMeasured,
        "seed 003, 协程: no waiting run"
    );
    assert_eq!(v[11], Verdict::Reproduces, "collapse");
    assert_eq!(v[12], Verdict::Reproduces, "pool removes it at a cost");
}

/// Two regimes of synthetic figures: in `shared` threads pair with their clients
/// (fast) and the loop cannot; in `pinned-spinning` neither can.
fn two_regimes(shared: (f64, f64), pinned: (f64, f64)) -> BenchReport {
    let mut samples = Vec::new();
    for (regime, (threads, coroutines)) in [("shared", shared), ("pinned-spinning", pinned)] {
        for (variant, rps) in [("threads", threads), ("coroutines", coroutines)] {
            samples.push(Sample {
                regime: regime.into(),
                variant: variant.into(),
                n: 1,
                clients: 2,
                repetition: 0,
                throughput_rps: rps,
                p50_us: 1,
                p99_us: 1,
                per_connection: vec![1; 2],
                errors: 0,
                histogram: String::new(),
                client: None,
            });
        }
    }
    let mut r = crate::bench::results::tests::report_of(samples);
    r.calibration = Some(crate::bench::predict::tests::calibration());
    r.regimes = ["shared", "pinned-spinning"]
        .map(|name| crate::bench::scenario::RegimePlan {
            name: name.into(),
            server_cpus: if name == "shared" { vec![] } else { vec![1] },
            client_cpus: if name == "shared" { vec![] } else { vec![0] },
            spin: name != "shared",
        })
        .to_vec();
    r.starvation = ["shared", "pinned-spinning"]
        .map(|regime| StarvationResult {
            regime: regime.into(),
            ..crate::bench::results::tests::kept_by("coroutines", 0.0)
        })
        .to_vec();
    r
}

fn coroutines_claim(r: &BenchReport) -> Finding {
    findings(r)
        .into_iter()
        .find(|f| f.source == "seed 000, 总结 5")
        .unwrap()
}

#[test]
fn regimes_that_disagree_say_which_machine_cost_decides() {
    let r = two_regimes((200_000.0, 30_000.0), (55_000.0, 150_000.0));
    let f = coroutines_claim(&r);
    assert_eq!(f.verdict, Verdict::DependsOnRegime);
    let by: Vec<(&str, Verdict)> = f
        .by_regime
        .iter()
        .map(|v| (v.regime.as_str(), v.verdict))
        .collect();
    assert_eq!(
        by,
        [
            ("shared", Verdict::Contradicts),
            ("pinned-spinning", Verdict::Reproduces)
        ]
    );
    // The calibration predicts the split: threads pair on one CPU in `shared`, the
    // one-thread loop pays the cross-CPU wake-up.
    assert_eq!(f.by_regime[0].predicted, Some(Verdict::Contradicts));
    assert_eq!(f.by_regime[1].predicted, Some(Verdict::Reproduces));
    let why = f.decided_by.unwrap();
    assert!(
        why.starts_with("The calibration predicts the same split"),
        "{why}"
    );
    assert!(why.contains("round trip on one CPU"), "{why}");
    assert!(
        why.contains("waking the sleeping side on another CPU"),
        "{why}"
    );
    assert!(
        crate::bench::rules::table(&[coroutines_claim(&r)]).rows[0][2]
            .contains("contradicts in `shared`")
    );
}

#[test]
fn claims_some_regime_or_prediction_lacks_count_as_not_measured() {
    // The predicted view has no GIL records, so its findings are fewer than the
    // measured ones: merging must match claims by name, not by position.
    let mut r = two_regimes((200_000.0, 30_000.0), (55_000.0, 150_000.0));
    let sample =
        |regime: &str, row: &str, clients: usize, rps: f64| crate::bench::results::PythonSample {
            regime: regime.into(),
            row: row.into(),
            workload: "cpu".into(),
            n: 28,
            clients,
            repetition: 0,
            throughput_rps: rps,
            requests: 100,
            gil: None,
        };
    r.python = Some(crate::bench::results::PythonRecords {
        seed_n: 20,
        light_n: 1,
        python_fib_us: 1000.0,
        cpu_n: 28,
        cpu_n_us: 1000.0,
        how_sized: String::new(),
        switch_interval_ms: 5.0,
        // Only the first regime has them.
        samples: vec![
            sample("shared", "threads+gil", 1, 900.0),
            sample("shared", "threads+gil", 2, 910.0),
        ],
        starvation: vec![],
    });
    let all = findings(&r);
    let gil = all
        .iter()
        .find(|f| f.source == "seed 000, 总结 4 (GIL)" && f.claim.starts_with("CPU-bound, threads"))
        .unwrap();
    assert_eq!(gil.verdict, Verdict::Reproduces);
    assert_eq!(gil.by_regime[1].verdict, Verdict::NotMeasured);
    assert_eq!(
        gil.by_regime[0].predicted, None,
        "no cost model for the lock"
    );
}

#[test]
fn regimes_that_agree_give_one_verdict_and_a_split_the_model_does_not_predict_is_said() {
    let agree = coroutines_claim(&two_regimes((60_000.0, 50_000.0), (55_000.0, 150_000.0)));
    assert_eq!(agree.verdict, Verdict::Reproduces);
    assert!(agree.decided_by.is_none());
    assert!(
        agree.evidence.contains("`shared` (reproduces"),
        "{}",
        agree.evidence
    );
    // Measured split the other way round from the prediction.
    let odd = coroutines_claim(&two_regimes((60_000.0, 50_000.0), (150_000.0, 20_000.0)));
    assert_eq!(odd.verdict, Verdict::DependsOnRegime);
    let why = odd.decided_by.unwrap();
    assert!(why.starts_with("The cost model"), "{why}");
}

#[test]
fn rust_like_figures_contradict_the_gil_claims() {
    let r = report(
        &[
            ("threads", 20, 1, 20_000.0),
            ("threads", 20, 2, 44_000.0),
            ("procpool", 20, 1, 15_000.0),
            ("procpool", 20, 2, 26_000.0),
        ],
        &[],
    );
    let f = findings(&r);
    assert_eq!(f[3].verdict, Verdict::Contradicts);
    assert!(f[3].evidence.contains("threads x2.20"), "{}", f[3].evidence);
    assert!(
        crate::bench::rules::table(&f)
            .rows
            .iter()
            .any(|row| row[0] == "seed 000, 总结 4")
    );
}

#[test]
fn a_ratio_reads_the_same_in_the_table_and_the_findings() {
    let r = report(&[], &[("threads", 1.0946), ("tokio-current", 0.0)]);
    let (tables, _) = starvation::Starvation.tables(&r);
    let row = &tables[0].rows[0];
    assert_eq!(row[4], "1.09");
    let evidence = starvation::Starvation
        .findings(&r)
        .into_iter()
        .map(|f| f.evidence)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(evidence.contains("threads 1.09"), "{evidence}");
    assert!(!evidence.contains('%'), "{evidence}");
}

/// `(height, [y of every text])` of an SVG plotters wrote.
fn text_rows(svg: &str) -> (f64, Vec<f64>) {
    let number = |from: &str, attr: &str| -> Option<f64> {
        let start = from.find(&format!("{attr}=\""))? + attr.len() + 2;
        from[start..].split('"').next()?.parse().ok()
    };
    let height = number(svg, "height").unwrap();
    let ys = svg
        .split("<text")
        .skip(1)
        .filter_map(|t| number(t, "y"))
        .collect();
    (height, ys)
}

#[test]
fn many_series_stay_inside_the_canvas_and_axes_can_be_read() {
    let histogram = crate::bench::results::tests::fixture_with_cdf().samples[0]
        .histogram
        .clone();
    let samples = (0..32)
        .flat_map(|i| {
            let histogram = histogram.clone();
            [1usize, 2].map(move |clients| Sample {
                regime: String::new(),
                variant: format!("row-{i}"),
                n: 1,
                clients,
                repetition: 0,
                throughput_rps: 1000.0 * (i + 1) as f64 * clients as f64,
                p50_us: 10,
                p99_us: 20,
                per_connection: vec![1; clients],
                errors: 0,
                histogram: histogram.clone(),
                client: None,
            })
        })
        .collect();
    let report = crate::bench::results::tests::report_of(samples);
    let plots = plots(&report).unwrap();
    for plot in &plots {
        let (height, ys) = text_rows(&plot.svg);
        assert!(
            ys.iter().all(|&y| y < height),
            "{}: text past the canvas",
            plot.file
        );
        for i in 0..32 {
            assert!(
                plot.svg.contains(&format!(">row-{i}<"))
                    || plot.svg.contains(&format!("\nrow-{i}\n")),
                "{} lacks row-{i}",
                plot.file
            );
        }
    }
    let latency = plots
        .iter()
        .find(|p| p.file.starts_with("latency"))
        .unwrap();
    assert!(
        latency.svg.contains("99.99%"),
        "a percentile-spectrum axis up to p99.99"
    );
    let throughput = &plots[0].svg;
    let ticks = ["2k", "5k", "10k", "20k", "50k"];
    assert!(
        ticks
            .iter()
            .filter(|t| throughput.contains(&format!(">{t}<"))
                || throughput.contains(&format!("\n{t}\n")))
            .count()
            >= 3,
        "a log axis labelled more often than once a decade"
    );
}

#[test]
fn svg_has_every_series_and_panel() {
    let report = crate::bench::results::tests::fixture_with_cdf();
    let plots = plots(&report).unwrap();
    let files: Vec<&str> = plots.iter().map(|p| p.file.as_str()).collect();
    assert_eq!(
        files,
        [
            "throughput-n1.svg",
            "latency-n1-c1.svg",
            "latency-n1-c2.svg",
            "starvation.svg"
        ]
    );
    for p in &plots {
        assert!(
            p.svg.starts_with("<svg") || p.svg.starts_with("<?xml"),
            "{}",
            p.file
        );
        assert!(p.svg.trim_end().ends_with("</svg>"), "{}", p.file);
    }
    assert!(
        plots[0].svg.contains("\nthreads\n"),
        "legend names the models"
    );
    assert!(plots[3].svg.contains("threads: kept 0.75"));
}
