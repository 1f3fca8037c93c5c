//! Tests of the worker loop.

use super::*;

#[test]
fn schedule_slots_round_up() {
    let ms = Duration::from_millis;
    assert_eq!(slots(ms(10), ms(1)), 10);
    assert_eq!(slots(ms(10), ms(3)), 4);
    assert_eq!(slots(Duration::ZERO, ms(3)), 0);
    assert_eq!(slots(ms(1), Duration::ZERO), 1_000_000);
}
