use super::*;
use crate::bench::results::Sample;
use crate::stats::usl::Usl;

/// Two repetitions (±2%) of each model's curve at 1 to 64 clients.
fn report(curves: &[(&str, Usl)]) -> BenchReport {
    let mut samples = Vec::new();
    for (variant, usl) in curves {
        for clients in [1usize, 2, 4, 8, 16, 32, 64] {
            for (repetition, e) in [0.98, 1.02].into_iter().enumerate() {
                samples.push(Sample {
                    regime: String::new(),
                    variant: variant.to_string(),
                    n: 20,
                    clients,
                    repetition,
                    throughput_rps: usl.throughput(clients as f64) * e,
                    p50_us: 10,
                    p99_us: 20,
                    per_connection: vec![1; clients],
                    errors: 0,
                    histogram: String::new(),
                    client: None,
                });
            }
        }
    }
    crate::bench::results::tests::report_of(samples)
}

#[test]
fn each_model_gets_its_coefficients_and_a_computed_reading() {
    let loop_ = Usl {
        lambda: 20_000.0,
        sigma: 0.7,
        kappa: 0.0,
    };
    let threads = Usl {
        lambda: 25_000.0,
        sigma: 0.05,
        kappa: 0.0,
    };
    let pool = Usl {
        lambda: 30_000.0,
        sigma: 0.02,
        kappa: 0.005,
    };
    let r = report(&[("epoll", loop_), ("threads", threads), ("threadpool", pool)]);
    let all = fits(&r);
    assert_eq!(all.len(), 3);
    let by = |v: &str| all.iter().find(|m| m.variant == v).unwrap();
    let sigma = |v: &str| by(v).fit.as_ref().unwrap().usl.sigma;
    assert!((sigma("epoll") - 0.7).abs() < 0.05, "{:?}", by("epoll").fit);
    assert!(
        (sigma("threads") - 0.05).abs() < 0.02,
        "{:?}",
        by("threads").fit
    );
    assert!(
        reading(by("epoll")).starts_with("σ = 0.7"),
        "{}",
        reading(by("epoll"))
    );
    assert!(reading(by("epoll")).contains("one loop serializes the work"));
    assert!(
        reading(by("threadpool")).contains("crosstalk; throughput peaks at about 14 clients"),
        "{}",
        reading(by("threadpool"))
    );
    assert!(
        reading(by("threads")).contains("contention small"),
        "{}",
        reading(by("threads"))
    );
    let (tables, _) = Scale.tables(&r);
    assert_eq!(tables[0].rows.len(), 3);
    assert_eq!(tables[0].rows[0].len(), tables[0].header.len());
    let plots = Scale.plots(&r).unwrap();
    assert_eq!(plots.len(), 1);
    assert!(plots[0].svg.contains("<svg"));
}

#[test]
fn a_curve_the_law_cannot_follow_is_said_so() {
    let mut r = report(&[(
        "per-core",
        Usl {
            lambda: 10_000.0,
            sigma: 0.9,
            kappa: 0.0,
        },
    )]);
    // From 8 clients on, a second loop takes half the clients: the curve steps up.
    for s in &mut r.samples {
        if s.clients >= 8 {
            s.throughput_rps *= 2.5;
        }
    }
    r.cells = crate::bench::results::aggregate(&r.samples);
    let all = fits(&r);
    let text = reading(&all[0]);
    assert!(
        text.starts_with("the USL does not follow this curve"),
        "{text}"
    );
    assert!(text.contains("a flat stretch, then a step up"), "{text}");
}

#[test]
fn too_few_client_counts_give_no_table() {
    let mut r = report(&[(
        "threads",
        Usl {
            lambda: 1.0,
            sigma: 0.0,
            kappa: 0.0,
        },
    )]);
    r.samples.retain(|s| s.clients <= 4);
    r.cells = crate::bench::results::aggregate(&r.samples);
    assert!(fits(&r).is_empty());
    assert!(Scale.tables(&r).0.is_empty());
}
