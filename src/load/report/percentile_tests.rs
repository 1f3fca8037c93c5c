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
