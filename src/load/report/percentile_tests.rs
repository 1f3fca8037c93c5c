//! Tests of the report's percentiles.

use super::*;

#[test]
fn percentiles_of_an_empty_histogram_are_zero() {
    assert_eq!(percentiles(&histogram(3)), Percentiles::default());
    let mut h = histogram(3);
    for v in 1..=100 {
        h.record(v).unwrap();
    }
    let p = percentiles(&h);
    assert_eq!((p.min, p.p50, p.p99, p.max), (1, 50, 99, 100));
    let mut coarse = histogram(3);
    coarse.record(123_456).unwrap();
    let p = exact(percentiles(&coarse), Some((123_456, 123_456)));
    assert_eq!(
        (p.min, p.max),
        (123_456, 123_456),
        "not the bucket's bounds"
    );
}

/// Issue 47: p99.99 printed above the maximum (11,975 against 11,973): a quantile is its
/// bucket's highest equivalent value; it is held under the exact maximum now.
#[test]
fn no_percentile_is_above_the_maximum() {
    let mut h = histogram(3);
    for v in [100, 200, 11_973] {
        h.record(v).unwrap();
    }
    assert!(h.value_at_quantile(0.9999) > 11_973, "the bucket rounds up");
    let p = exact(percentiles(&h), Some((100, 11_973)));
    assert_eq!(p.max, 11_973);
    for q in [p.p50, p.p90, p.p99, p.p99_9, p.p99_99] {
        assert!(
            q <= p.max && q >= p.min,
            "{q} outside [{}, {}]",
            p.min,
            p.max
        );
    }
}

/// Issue 47: 44 of 50 connections got nothing and the report said "0 failed": the
/// starved connections are said first, and fail the run under --max-error-rate.
#[test]
fn starved_connections_are_said_and_fail_the_run() {
    let mut r = Report {
        target: "127.0.0.1:25000".into(),
        connections: 5,
        requests_ok: 1_000,
        per_connection: vec![600, 395, 5, 0, 0],
        ..Report::default()
    };
    assert_eq!(r.starved(), (2, 1));
    let text = super::text::render_text(&r);
    assert!(
        text.contains("STARVED: 2 of 5 connections got no reply at all, and 1 got under a tenth"),
        "{text}"
    );
    assert!(r.verdict(None).is_ok(), "no threshold, no failure");
    let error = r.verdict(Some(0.1)).unwrap_err().to_string();
    assert!(error.contains("2 of 5 connections"), "{error}");
    r.per_connection = vec![200; 5];
    assert_eq!(r.starved(), (0, 0));
    assert!(!super::text::render_text(&r).contains("STARVED"));
}
