//! The work: `fib(n)` by naive recursion, exactly as the seeds compute it.
//!
//! The cost grows like 1.6^n, which is the point: a small `n` (1) stands for an
//! I/O-bound request whose time is all network and scheduling, a large `n` (20, 30,
//! 36) for a CPU-bound one. Every model calls this one function, so any difference
//! between two models is scheduling, never arithmetic.
//!
//! fiblab uses the standard definition, fib(0) = 0 and fib(1) = fib(2) = 1. The
//! seeds' `fib` returns 1 for every n <= 2, so it differs only at n = 0.

/// The largest `n` whose Fibonacci number fits in a `u64`.
pub const MAX_N_FITS_U64: u32 = 93;

/// fib(n) by naive recursion: ~1.6^n calls, the CPU-bound work of the service.
///
/// For `n > MAX_N_FITS_U64` the result wraps instead of panicking; the service never
/// asks for such `n` (its `--max-n` is far lower), and it would not finish anyway.
pub fn fib(n: u32) -> u64 {
    if n < 2 {
        u64::from(n)
    } else {
        fib(n - 1).wrapping_add(fib(n - 2))
    }
}

/// Below this `n` a subtree runs without looking up: fib(24) takes about 0.2 ms, so a
/// cancelled request stops within a fraction of a millisecond, while fib(30) looks up
/// only at its 33 nodes with n >= 24 (see `examples/cancel_overhead.rs` for the cost).
pub const CANCEL_CHECK_FROM: u32 = 24;

/// fib(n) by the same naive recursion, asking `cancelled` now and then (at every node
/// with n >= [`CANCEL_CHECK_FROM`]); `None` once it says yes. This is how a server
/// stops working for a client that has gone: `cancelled` looks at the client's socket.
pub fn fib_until(n: u32, cancelled: &mut dyn FnMut() -> bool) -> Option<u64> {
    if n < CANCEL_CHECK_FROM {
        return Some(fib(n));
    }
    if cancelled() {
        return None;
    }
    let a = fib_until(n - 1, cancelled)?;
    let b = fib_until(n - 2, cancelled)?;
    Some(a.wrapping_add(b))
}

/// fib(n) in O(n): the oracle that clients and tests check replies against.
///
/// Returns `None` when the value does not fit in a `u64` (n > 93).
pub fn fib_fast(n: u32) -> Option<u64> {
    // `next` is fib(i + 1); it may overflow one step before `current` does.
    let (mut current, mut next) = (0u64, Some(1u64));
    for _ in 0..n {
        let following = next?;
        next = current.checked_add(following);
        current = following;
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        for (n, v) in [(0, 0), (1, 1), (2, 1), (10, 55), (20, 6765), (30, 832_040)] {
            assert_eq!(fib(n), v, "fib({n})");
            assert_eq!(fib_fast(n), Some(v), "fib_fast({n})");
        }
    }

    #[test]
    fn cancellable_fib_matches_and_stops() {
        for n in [0, 1, 23, 24, 25, 30] {
            assert_eq!(fib_until(n, &mut || false), Some(fib(n)), "n = {n}");
        }
        let mut asked = 0;
        let stop_at_third = &mut || {
            asked += 1;
            asked >= 3
        };
        assert_eq!(fib_until(30, stop_at_third), None);
        assert_eq!(asked, 3, "stops at the first yes");
        assert_eq!(
            fib_until(20, &mut || true),
            Some(6765),
            "small n never asks"
        );
    }

    #[test]
    fn naive_matches_fast() {
        for n in 0..=32 {
            assert_eq!(Some(fib(n)), fib_fast(n), "n = {n}");
        }
    }

    #[test]
    fn fast_covers_u64_range() {
        assert_eq!(fib_fast(36), Some(14_930_352));
        assert_eq!(fib_fast(MAX_N_FITS_U64), Some(12_200_160_415_121_876_738));
        assert_eq!(fib_fast(MAX_N_FITS_U64 + 1), None);
    }
}
