//! Tests of the records: aggregation, views by regime, fixtures other tests share.

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
        agents: 1,
        rate: None,
        cells: aggregate(&samples),
        samples,
        starvation: vec![],
        findings: vec![],
        peers: vec![],
        notes: vec![],
        settings: vec![],
        calibration: None,
        regimes: vec![],
        python: None,
        connections: None,
        knee: None,
        waiting: None,
        scaleout: None,
        race: None,
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
        timeline: vec![10; 30],
        ..kept_by("threads", 0.75)
    }];
    report
}

/// Seed 004's result for `variant`: light throughput 100 req/s before the heavy
/// request, `kept` times that during it.
pub(crate) fn kept_by(variant: &str, kept: f64) -> StarvationResult {
    StarvationResult {
        regime: String::new(),
        variant: variant.into(),
        heavy_n: 40,
        heavy_s: Some(1.0),
        light_before_rps: 100.0,
        light_during_rps: 100.0 * kept,
        kept,
        timeline: vec![],
        heavy_at_s: 1.0,
    }
}

#[test]
fn cdf_merges_repetitions() {
    let r = fixture_with_cdf();
    let cdf = &r.cells[0].latency_cdf;
    assert_eq!(cdf.len(), CDF_PERCENTILES.len());
    assert_eq!(cdf[0], [0.0, 10.0]);
    assert!(cdf.windows(2).all(|w| w[0][1] <= w[1][1]), "{cdf:?}");
    assert!(merged_cdf(["", "not base64!"].into_iter()).is_empty());
    // The table's p99 and the plot's are one figure: both from the merged histogram.
    let p99 = cdf.iter().find(|p| p[0] == 99.0).unwrap()[1];
    assert_eq!(r.cells[0].p99_us as f64, p99);
}

pub(crate) fn sample(
    variant: &str,
    n: u32,
    clients: usize,
    repetition: usize,
    rps: f64,
    per_connection: Vec<u64>,
) -> Sample {
    Sample {
        regime: String::new(),
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
        client: None,
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
fn targets_parse() {
    let t: Target = "go=127.0.0.1:50000".parse().unwrap();
    assert_eq!(
        (t.name.as_str(), t.addr.port(), t.ping),
        ("go", 50000, false)
    );
    let r: Target = "redis=127.0.0.1:6379/ping".parse().unwrap();
    assert!(r.ping);
    assert!("threads=127.0.0.1:1".parse::<Target>().is_err());
    assert!("floor=127.0.0.1:1".parse::<Target>().is_err());
    assert!(
        "127.0.0.1:1"
            .parse::<Target>()
            .unwrap_err()
            .to_string()
            .contains("NAME=HOST:PORT")
    );
    assert!("x=nowhere".parse::<Target>().is_err());
}

#[test]
fn dates() {
    let d = today();
    assert_eq!(d.len(), 10);
    assert!(d.starts_with("20"));
}
