//! Each method against reference values computed once with scipy 1.17.1 and
//! statsmodels 0.15.0 (Python 3, 2026-12-04); the calls are in the comments.

use super::*;

fn close(got: f64, want: f64, tolerance: f64) {
    assert!(
        (got - want).abs() <= tolerance * want.abs().max(1e-12),
        "got {got}, want {want}"
    );
}

#[test]
fn geometric_interval_matches_scipy() {
    // m, s = log(a).mean(), log(a).std(ddof=1); t = scipy.stats.t.ppf(0.975, 2)
    // exp(m -+ t * s / sqrt(3))
    let i = Interval::of(&[84120.0, 81900.0, 86300.0]);
    assert_eq!(i.estimate, 84120.0);
    close(i.ci_low, 78795.35948539186, 1e-9);
    close(i.ci_high, 89735.02740120502, 1e-9);
    assert_eq!((i.n, i.ci_level), (3, LEVEL));
    assert_eq!(i.text(crate::units::thousands), "84,120 [78,795–89,735]");
}

#[test]
fn ratio_interval_and_p_match_welch_in_scipy() {
    // r = scipy.stats.ttest_ind(log(a), log(b), equal_var=False)
    // r.pvalue; exp(r.confidence_interval(0.95))
    let a = [84120.0, 81900.0, 86300.0];
    let b = [70100.0, 72500.0, 69800.0];
    let d = Difference::of(&a, &b).unwrap();
    close(d.p, 0.0010941559631476845, 1e-6);
    close(d.ratio.ci_low, 1.1246543336400079, 1e-9);
    close(d.ratio.ci_high, 1.254592292521257, 1e-9);
    close(d.ratio.estimate, 84120.0 / 70100.0, 1e-12);
    // Unequal sizes and spreads (df = 8.947 by Welch-Satterthwaite).
    let x = [9.2, 10.1, 9.8, 10.4, 9.9, 10.0];
    let y = [10.5, 11.2, 10.9, 11.5, 10.7];
    let d = Difference::of(&x, &y).unwrap();
    close(d.p, 0.0018002346439589157, 1e-6);
    close(d.ratio.ci_low, 0.8567786463847149, 1e-9);
    close(d.ratio.ci_high, 0.9519916251744623, 1e-9);
}

#[test]
fn mann_whitney_matches_scipy_exact_and_asymptotic() {
    // scipy.stats.mannwhitneyu(a, b).pvalue (method="auto")
    let exact = mann_whitney(&[1., 2., 3., 4., 5.], &[6., 7., 8., 9., 10., 11.]);
    close(exact, 0.004329004329004329, 1e-12);
    let exact = mann_whitney(&[1.1, 2.5, 3.3, 4.0], &[2.0, 3.0, 5.5, 6.1]);
    close(exact, 0.4857142857142857, 1e-12);
    // Three against three can never reach 0.05: its smallest p.
    close(mann_whitney(&[1., 2., 3.], &[4., 5., 6.]), 0.1, 1e-12);
    let ties = mann_whitney(
        &[1., 2., 2., 3., 3., 3., 4., 5., 9., 10.],
        &[3., 4., 4., 5., 6., 6., 7., 8., 8., 12., 13.],
    );
    close(ties, 0.03665598273252322, 1e-9);
    let a: Vec<f64> = (0..20).map(f64::from).collect();
    let b: Vec<f64> = a.iter().map(|x| x + 7.5).collect();
    close(mann_whitney(&a, &b), 0.0010140986852160438, 1e-9);
    assert_eq!(mann_whitney(&[], &[1.0]), 1.0);
}

#[test]
fn median_interval_matches_order_statistics() {
    // scipy.stats.quantile_test(x, q=median, p=0.5).confidence_interval(0.95), and
    // the coverage 1 - 2 * scipy.stats.binom.cdf(j - 1, n, 0.5)
    let ten: Vec<f64> = (1..=10).map(f64::from).collect();
    let i = median_interval(&ten, 0.95);
    assert_eq!((i.ci_low, i.ci_high, i.estimate), (2.0, 9.0, 5.5));
    close(i.ci_level, 0.978515625, 1e-12);
    let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
    let i = median_interval(&twenty, 0.95);
    assert_eq!((i.ci_low, i.ci_high), (6.0, 15.0));
    close(i.ci_level, 0.9586105346679688, 1e-12);
    // Too few for 95%: the range, at the coverage it has.
    let i = median_interval(&[3.0, 1.0, 2.0], 0.95);
    assert_eq!((i.ci_low, i.ci_high, i.estimate), (1.0, 3.0, 2.0));
    close(i.ci_level, 0.75, 1e-12);
    let i = median_interval(&[1., 2., 3., 4., 5., 6.], 0.95);
    close(i.ci_level, 0.96875, 1e-12);
}

#[test]
fn holm_matches_statsmodels() {
    // statsmodels.stats.multitest.multipletests(p, method="holm")[1]
    let got = holm(&[0.01, 0.04, 0.03, 0.005]);
    for (g, w) in got.iter().zip([0.03, 0.06, 0.06, 0.02]) {
        close(*g, w, 1e-12);
    }
    let got = holm(&[0.2, 0.001, 0.04, 0.03, 0.5]);
    for (g, w) in got.iter().zip([0.4, 0.005, 0.12, 0.12, 0.5]) {
        close(*g, w, 1e-12);
    }
}

#[test]
fn benjamini_hochberg_matches_statsmodels() {
    // statsmodels.stats.multitest.multipletests(p, method="fdr_bh")[1]
    let got = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.005]);
    for (g, w) in got.iter().zip([0.02, 0.04, 0.04, 0.02]) {
        close(*g, w, 1e-12);
    }
    let got = benjamini_hochberg(&[0.2, 0.001, 0.04, 0.03, 0.5]);
    for (g, w) in got
        .iter()
        .zip([0.25, 0.005, 0.06666666666666667, 0.06666666666666667, 0.5])
    {
        close(*g, w, 1e-12);
    }
}

#[test]
fn points_straddles_and_how_much_more_would_decide() {
    let p = Interval::point(5.0);
    assert!(!p.has_width());
    assert_eq!(p.text(|x| format!("{x}")), "5");
    assert_eq!(p.precision(), 0.0);
    let i = Interval {
        estimate: 1.10,
        ci_low: 0.95,
        ci_high: 1.25,
        ci_level: LEVEL,
        n: 3,
    };
    assert_eq!(i.side_of(1.0), None);
    assert_eq!(i.side_of(0.9), Some(true));
    assert_eq!(i.side_of(1.3), Some(false));
    // Half-width 0.15 against a distance of 0.10: (0.15 / 0.10)^2 * 3 = 6.75 -> 7.
    assert_eq!(i.samples_to_decide(1.0), Some(7));
    assert_eq!(i.samples_to_decide(0.9), None);
    close(i.precision(), 0.15 / 1.10, 1e-12);
}

#[test]
fn a_cell_that_served_nothing_runs_its_interval_down_to_zero() {
    let i = Interval::of(&[0.0, 1000.0, 1100.0]);
    assert_eq!(i.estimate, 1000.0);
    assert_eq!(i.ci_low, 0.0);
    assert!(i.ci_high >= 1100.0);
}

/// Samples from one log-normal distribution (deterministic).
fn draw(rng: &mut fastrand::Rng, n: usize, center: f64, sigma: f64) -> Vec<f64> {
    (0..n)
        .map(|_| {
            // Box-Muller: one standard normal from two uniforms.
            let (u1, u2) = (rng.f64().max(1e-300), rng.f64());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            center * (sigma * z).exp()
        })
        .collect()
}

#[test]
fn one_distribution_is_rarely_called_different_and_two_are_found() {
    let mut rng = fastrand::Rng::with_seed(27);
    let trials = 2000;
    let (mut false_positives, mut covered) = (0, 0);
    for _ in 0..trials {
        let a = draw(&mut rng, 3, 1000.0, 0.1);
        let b = draw(&mut rng, 3, 1000.0, 0.1);
        let d = Difference::of(&a, &b).unwrap();
        false_positives += usize::from(d.significant_at(d.p, a.len(), b.len()));
        let i = Interval::of(&a);
        covered += usize::from(i.ci_low <= 1000.0 && 1000.0 <= i.ci_high);
    }
    let rate = false_positives as f64 / trials as f64;
    assert!(rate <= 0.07, "false positives {rate}");
    let coverage = covered as f64 / trials as f64;
    assert!(coverage >= 0.93, "coverage {coverage}");
    // A 30% difference at 10% noise, three samples a side: found almost always.
    let mut found = 0;
    for _ in 0..trials {
        let a = draw(&mut rng, 3, 1000.0, 0.1);
        let b = draw(&mut rng, 3, 700.0, 0.1);
        let d = Difference::of(&a, &b).unwrap();
        found += usize::from(d.significant_at(d.p, 3, 3));
    }
    let power = found as f64 / trials as f64;
    assert!(power >= 0.8, "power {power}");
}

#[test]
fn tiers_group_what_the_data_cannot_separate() {
    let rows = vec![
        ("slow", vec![500.0, 510.0, 495.0]),
        ("fast", vec![1000.0, 1010.0, 990.0]),
        ("fast-too", vec![1005.0, 980.0, 1020.0]),
        ("none", vec![]),
    ];
    let ranked = tiers(rows, |r| r.1.clone());
    let got: Vec<(&str, Option<usize>)> = ranked.iter().map(|r| (r.item.0, r.tier)).collect();
    assert_eq!(
        got,
        [
            ("fast-too", Some(1)),
            ("fast", Some(1)),
            ("slow", Some(2)),
            ("none", None)
        ]
    );
    // Noise wider than the gap: one tier.
    let rows = vec![
        ("a", vec![900.0, 1300.0, 700.0]),
        ("b", vec![800.0, 1100.0, 1200.0]),
    ];
    let ranked = tiers(rows, |r| r.1.clone());
    assert!(ranked.iter().all(|r| r.tier == Some(1)));
}

/// Issue 42: among fifteen models, two 3x apart with three samples each within ±15%
/// are told apart (tiers compare each with the leader: 14 questions, not 105), and two
/// 1.05x apart are not.
#[test]
fn tiers_separate_3x_among_fifteen_and_not_5_percent() {
    let spread = [0.85, 1.0, 1.15];
    let models: Vec<(usize, Vec<f64>)> = (0..15)
        .map(|i| {
            let median = 1000.0 * 3f64.powf(i as f64 / 14.0);
            (i, spread.iter().map(|s| median * s).collect())
        })
        .collect();
    let ranked = tiers(models, |m| m.1.clone());
    let tier_of = |i: usize| ranked.iter().find(|r| r.item.0 == i).unwrap().tier;
    assert_eq!(tier_of(14), Some(1));
    assert!(
        tier_of(0) > Some(1),
        "3x apart in one tier: {:?}",
        ranked.iter().map(|r| r.tier).collect::<Vec<_>>()
    );
    // Two 1.05x apart at the top of fifteen: one tier.
    let mut models: Vec<(usize, Vec<f64>)> = (0..13)
        .map(|i| {
            (
                i,
                spread.iter().map(|s| 100.0 * (i + 1) as f64 * s).collect(),
            )
        })
        .collect();
    models.push((13, spread.iter().map(|s| 5000.0 * s).collect()));
    models.push((14, spread.iter().map(|s| 5250.0 * s).collect()));
    let ranked = tiers(models, |m| m.1.clone());
    assert_eq!(ranked[0].item.0, 14);
    assert_eq!((ranked[0].tier, ranked[1].tier), (Some(1), Some(1)));
    assert_eq!(ranked[2].tier, Some(2));
}

/// The issue-42 run's own samples (`per-core` and `single`, n=1, 2 clients): Welch on
/// the logarithms gives p = 0.00251 (scipy 1.17.1, `ttest_ind(log a, log b,
/// equal_var=False)`: t = 7.133, df = 3.78); Holm over the leader's 13 comparisons keeps
/// it under 0.05, Holm over 91 pairs did not. Mann-Whitney's smallest p (scipy's exact
/// `mannwhitneyu`): 0.1 for 3 against 3, 0.0079365 for 5 against 5.
#[test]
fn the_leader_comparisons_decide_what_all_pairs_hid() {
    let per_core = [73_640.0, 97_977.0, 115_637.0];
    let single = [23_463.0, 33_363.0, 29_597.0];
    let d = Difference::of(&per_core, &single).unwrap();
    assert!((d.p - 0.002_512_787).abs() < 2e-5, "{}", d.p);
    assert!(d.p * 13.0 < 0.05 && d.p * 91.0 > 0.05);
    assert_eq!(d.p_within(3, 3, 13), d.p);
    assert!(!crate::stats::mann_whitney_can_decide(3, 3, 1));
    assert!(crate::stats::mann_whitney_can_decide(5, 5, 6));
    assert!(!crate::stats::mann_whitney_can_decide(5, 5, 7));
    let ranked = tiers(
        vec![("per-core", per_core.to_vec()), ("single", single.to_vec())],
        |m| m.1.clone(),
    );
    assert_eq!((ranked[0].tier, ranked[1].tier), (Some(1), Some(2)));
}

/// The minimum detectable ratio against a reference computed once with scipy 1.17.1:
/// `exp((t.ppf(1 - 0.05/13/2, 10) + t.ppf(0.8, 10)) * 0.12 * sqrt(2/6))` = 1.37716
/// (`t.ppf(1 - 0.05/26, 10)` = 3.74006, `t.ppf(0.8, 10)` = 0.87906).
#[test]
fn the_smallest_separable_ratio_matches_scipy() {
    let r = smallest_separable_ratio(0.12, 6, 13, 0.8).unwrap();
    assert!((r - 1.37716).abs() < 0.001, "{r}");
    // More samples, a smaller ratio; one sample, none.
    assert!(smallest_separable_ratio(0.12, 12, 13, 0.8).unwrap() < r);
    assert_eq!(smallest_separable_ratio(0.12, 1, 13, 0.8), None);
}

/// Welch's minimum detectable ratio against scipy 1.17.1: with a = log([100, 110, 95,
/// 105]), b = log([90, 97, 88]), se2 = var(a, ddof=1)/4 + var(b, ddof=1)/3 and Welch's
/// df, `exp((t.ppf(0.975, df) + t.ppf(0.8, df)) * sqrt(se2))` = 1.16329.
#[test]
fn the_smallest_detectable_ratio_matches_scipy() {
    let (a, b) = ([100.0, 110.0, 95.0, 105.0], [90.0, 97.0, 88.0]);
    let r = smallest_detectable_ratio(&a, &b, 0.0, 0.0, 0.8).unwrap();
    assert!((r - 1.16329).abs() < 0.0005, "{r}");
    // A resolution besides the spread widens it; one sample a side gives none.
    assert!(smallest_detectable_ratio(&a, &b, 0.01, 0.01, 0.8).unwrap() > r);
    assert_eq!(smallest_detectable_ratio(&a, &[90.0], 0.0, 0.0, 0.8), None);
}

#[test]
fn quantile_ranks_match_scipy_quantile_test() {
    // scipy.stats.quantile_test(arange(1, n + 1), q=..., p=q).confidence_interval(0.95):
    // on 1..=n the order statistic of rank r is r itself.
    assert_eq!(quantile_ranks(100, 0.5, 0.95), (Some(40), Some(61)));
    assert_eq!(quantile_ranks(100, 0.9, 0.95), (Some(84), Some(96)));
    assert_eq!(quantile_ranks(100, 0.99, 0.95), (Some(97), None));
    assert_eq!(quantile_ranks(1000, 0.99, 0.95), (Some(983), Some(997)));
}

#[test]
fn the_bootstrap_ratio_of_means_covers_the_true_ratio_and_allows_zeros() {
    // 20 "buckets" before (mean 100) and 10 during (mean 25): the true ratio is 0.25.
    let mut rng = fastrand::Rng::with_seed(4);
    let (mut covered, trials) = (0, 400);
    for trial in 0..trials {
        let before: Vec<f64> = (0..20).map(|_| 80.0 + 40.0 * rng.f64()).collect();
        let during: Vec<f64> = (0..10).map(|_| 50.0 * rng.f64()).collect();
        let i = bootstrap_ratio_of_means(&during, &before, 1000, trial).unwrap();
        covered += usize::from(i.ci_low <= 0.25 && 0.25 <= i.ci_high);
    }
    // A percentile bootstrap of ten samples runs a little short of 95%.
    assert!(
        covered as f64 / trials as f64 >= 0.88,
        "{covered} of {trials}"
    );
    // All zeros during: a collapse, exactly 0.
    let i = bootstrap_ratio_of_means(&[0.0; 5], &[10.0, 12.0, 11.0], 1000, 1).unwrap();
    assert_eq!((i.estimate, i.ci_low, i.ci_high), (0.0, 0.0, 0.0));
    // Seeded: the same interval every time.
    let a = [1.0, 2.0, 3.0, 0.0];
    let b = [2.0, 2.5, 3.0];
    assert_eq!(
        bootstrap_ratio_of_means(&a, &b, 500, 9),
        bootstrap_ratio_of_means(&a, &b, 500, 9)
    );
    assert_eq!(bootstrap_ratio_of_means(&a, &[0.0], 500, 9), None);
}

#[test]
fn samples_known_to_a_resolution_are_not_exact() {
    // Three equal knees a side, one refinement step (ratio 16,000 / 13,454) apart: without
    // the grid's resolution the difference looks exact; with it, it is a likely one.
    let (a, b) = ([16_000.0; 3], [13_454.0; 3]);
    assert_eq!(Difference::of(&a, &b).unwrap().p, 0.0);
    let grid = (16_000.0f64 / 13_454.0).ln().powi(2) / 12.0;
    let d = Difference::resolved(&a, &b, grid, grid).unwrap();
    assert!(d.p > 0.001 && d.p < 0.05, "{}", d.p);
    assert!(d.ratio.ci_low < d.ratio.estimate && d.ratio.estimate < d.ratio.ci_high);
}

#[test]
fn slope_matches_scipy_linregress() {
    // scipy 1.17.1: r = stats.linregress(x, y); t = stats.t.ppf(0.975, len(x) - 2);
    // r.slope, r.slope -+ t * r.stderr
    let x = [100.0, 1000.0, 5000.0, 15000.0];
    let y = [2488.0, 19210.0, 92500.0, 276300.0];
    let s = slope(&x, &y).unwrap();
    close(s.estimate, 18.37110999767371, 1e-9);
    close(s.ci_low, 18.330608169342224, 1e-9);
    close(s.ci_high, 18.411611826005196, 1e-9);
    assert_eq!(s.n, 4);
    let s = slope(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.1, 3.9, 6.2, 7.8, 10.1]).unwrap();
    close(s.estimate, 1.99, 1e-9);
    close(s.ci_low, 1.7999392904005371, 1e-9);
    close(s.ci_high, 2.180060709599463, 1e-9);
    // Two points: exact; one point or one x: no slope.
    let two = slope(&[1.0, 3.0], &[2.0, 6.0]).unwrap();
    assert_eq!((two.estimate, two.ci_low, two.ci_high), (2.0, 2.0, 2.0));
    assert!(slope(&[1.0], &[2.0]).is_none());
    assert!(slope(&[2.0, 2.0, 2.0], &[1.0, 2.0, 3.0]).is_none());
}
