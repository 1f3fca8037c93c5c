//! CPU work in the user's terms: `--cpu 2ms` becomes the fib(n) that costs about 2 ms
//! on this machine, so nobody has to turn a service's "2 ms of CPU per request" into
//! fib(29) from a calibration table by hand.
//!
//! fib(n) by naive recursion makes fib(n+1) calls, so each step of n costs φ ≈ 1.618
//! times the last (Knuth, *TAOCP* vol. 1, §1.2.8): the nearest n is always within a
//! factor √φ ≈ 1.27 of the time asked, and the choice says how far it is.

use std::time::Duration;

use crate::fib::MAX_N_FITS_U64;

/// φ, the ratio of fib(n+1)'s cost to fib(n)'s.
pub const PHI: f64 = 1.618_033_988_749_895;

/// The most CPU per request a duration may ask for: fib(n) near 10 s already holds a
/// core for the length of a whole bench cell.
pub const MOST_CPU: Duration = Duration::from_secs(10);

/// Where the search starts: cheap to time, and far from timer resolution.
const FIRST_GUESS: u32 = 20;

/// Steps of n the search may take after its first estimate; φ's rule lands within one.
const MOST_STEPS: usize = 8;

/// A duration that cannot become work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkError {
    #[error("'{0}': CPU work per request must be more than 0 and at most 10s")]
    OutOfRange(String),
    #[error("{0}")]
    NotADuration(String),
    /// One class of a mix, with the flag it came from.
    #[error("{flag} {class}: {why}")]
    InMix {
        flag: String,
        class: String,
        why: Box<WorkError>,
    },
}

/// The fib(n) chosen for a CPU time per request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkChoice {
    /// What was asked, µs.
    pub asked_us: f64,
    pub n: u32,
    /// fib(n)'s time here on one core, µs (measured, or from a calibration).
    pub cost_us: f64,
}

impl WorkChoice {
    /// `2ms of CPU: fib(29), 2.07 ms on one core here (1.04x what was asked; ...)`.
    pub fn describe(&self, flag: &str, source: &str) -> String {
        format!(
            "{flag} {}: fib({}), {} on one core {source} ({:.2}x what was asked; the next n \
             costs φ = 1.62x more, the one before 1.62x less)",
            in_words(self.asked_us),
            self.n,
            in_words(self.cost_us),
            self.cost_us / self.asked_us,
        )
    }
}

/// A time in µs as a person writes it: `0.45 µs`, `300 µs`, `2.07 ms`, `1.50 s`.
fn in_words(us: f64) -> String {
    match us {
        u if u < 10.0 => format!("{u:.2} µs"),
        u if u < 1_000.0 => format!("{u:.0} µs"),
        u if u < 1e6 => format!("{:.2} ms", u / 1e3),
        u => format!("{:.2} s", u / 1e6),
    }
}

/// Parses a CPU time per request (`300us`, `2ms`), bounded by [`MOST_CPU`]: clap's
/// `value_parser` for `--cpu`.
///
/// # Errors
/// Not a duration, zero, or over 10 s.
pub fn parse_cpu(text: &str) -> Result<Duration, WorkError> {
    let cpu = crate::units::parse_duration(text).map_err(|e| WorkError::NotADuration(e.0))?;
    match cpu.is_zero() || cpu > MOST_CPU {
        true => Err(WorkError::OutOfRange(text.trim().to_string())),
        false => Ok(cpu),
    }
}

/// The n whose fib(n) costs nearest `asked` (nearest on a log scale), with `time_us(n)`
/// giving fib(n)'s cost in µs: [`crate::calibrate::fib_time`] to measure it here, or a
/// calibration's table for another machine.
///
/// Starts from fib(20), steps by φ's rule to an estimate, then walks one n at a time
/// while a neighbour is nearer (at most eight timings past the first two).
pub fn choose_n(asked: Duration, mut time_us: impl FnMut(u32) -> f64) -> WorkChoice {
    let asked_us = asked.as_secs_f64() * 1e6;
    let most = MAX_N_FITS_U64.min(60);
    let first = time_us(FIRST_GUESS).max(1e-6);
    let estimate = f64::from(FIRST_GUESS) + (asked_us / first).ln() / PHI.ln();
    let mut n = estimate.round().clamp(0.0, f64::from(most)) as u32;
    let mut cost = time_us(n);
    // A step is worth taking when the neighbour's predicted cost (φ away) is nearer.
    let distance = |cost: f64| (cost.max(1e-6) / asked_us).ln().abs();
    for _ in 0..MOST_STEPS {
        let step: i64 = match cost < asked_us {
            true if n < most && distance(cost * PHI) < distance(cost) => 1,
            false if n > 0 && distance(cost / PHI) < distance(cost) => -1,
            _ => break,
        };
        let next = (i64::from(n) + step) as u32;
        let next_cost = time_us(next);
        if distance(next_cost) >= distance(cost) {
            break;
        }
        (n, cost) = (next, next_cost);
    }
    WorkChoice {
        asked_us,
        n,
        cost_us: cost,
    }
}

/// A `--mix` whose classes may name CPU time instead of n (`300us:99,5ms:1`): each
/// duration becomes its [`choose_n`] (with `time_us`), whole numbers stay as they are.
/// Returns the mix in n and the choices made, in order.
///
/// # Errors
/// A duration out of range, named with `flag`; anything else is left for the mix's own
/// parser to refuse.
pub fn resolve_mix(
    flag: &str,
    text: &str,
    mut time_us: impl FnMut(u32) -> f64,
) -> Result<(String, Vec<WorkChoice>), WorkError> {
    let mut choices = Vec::new();
    let parts = text
        .split(',')
        .map(|part| {
            let (work, weight) = match part.split_once(':') {
                Some((work, weight)) => (work.trim(), Some(weight)),
                None => (part.trim(), None),
            };
            let starts_a_duration = work.parse::<i64>().is_err()
                && work.chars().any(|c| c.is_ascii_alphabetic() || c == 'µ')
                && work.starts_with(|c: char| c.is_ascii_digit() || c == '.');
            let work = match starts_a_duration {
                true => {
                    let cpu = parse_cpu(work).map_err(|e| WorkError::InMix {
                        flag: flag.to_string(),
                        class: part.trim().to_string(),
                        why: Box::new(e),
                    })?;
                    let choice = choose_n(cpu, &mut time_us);
                    choices.push(choice);
                    choice.n.to_string()
                }
                false => work.to_string(),
            };
            Ok(match weight {
                Some(weight) => format!("{work}:{weight}"),
                None => work,
            })
        })
        .collect::<Result<Vec<_>, WorkError>>()?;
    Ok((parts.join(","), choices))
}

/// A calibration's fib table as a timer for [`choose_n`]: the recorded cost where it
/// has n, else the nearest recorded n scaled by φ per step.
pub fn from_table(table: &[(u32, f64)]) -> impl FnMut(u32) -> f64 + '_ {
    move |n| {
        table
            .iter()
            .min_by_key(|(m, _)| m.abs_diff(n))
            .map(|&(m, us)| us * PHI.powi(n as i32 - m as i32))
            .unwrap_or(f64::NAN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine where fib(n) costs exactly 0.01 µs × φ^n.
    fn ideal(n: u32) -> f64 {
        0.01 * PHI.powi(n as i32)
    }

    #[test]
    fn a_duration_becomes_the_nearest_n() {
        // 0.01 × φ^29 ≈ 11,400 µs; φ^28 ≈ 7,050 µs.
        let choice = choose_n(Duration::from_millis(11), ideal);
        assert_eq!(choice.n, 29);
        let choice = choose_n(Duration::from_millis(7), ideal);
        assert_eq!(choice.n, 28);
        assert!((choice.cost_us / choice.asked_us - 1.0).abs() < 0.27);
    }

    #[test]
    fn a_lumpy_machine_is_walked_to_the_nearest_measured_n() {
        // fib(20) reads 3x too fast (a cache-warm fluke): the estimate overshoots and
        // the walk comes back.
        let lumpy = |n: u32| if n == 20 { ideal(20) / 3.0 } else { ideal(n) };
        assert_eq!(choose_n(Duration::from_millis(11), lumpy).n, 29);
    }

    #[test]
    fn the_smallest_and_largest_asks_stay_in_range() {
        assert_eq!(choose_n(Duration::from_nanos(1), ideal).n, 0);
        assert!(choose_n(MOST_CPU, ideal).n <= 60);
    }

    #[test]
    fn a_table_from_another_machine_is_read_and_extended_by_phi() {
        let table = [(20, 30.0), (30, 3_690.0)];
        let mut timer = from_table(&table);
        assert_eq!(timer(30), 3_690.0);
        assert!((timer(31) - 3_690.0 * PHI).abs() < 1e-6);
        assert!((timer(19) - 30.0 / PHI).abs() < 1e-6);
        assert_eq!(
            choose_n(Duration::from_micros(3_690), from_table(&table)).n,
            30
        );
    }

    #[test]
    fn a_choice_says_what_it_costs_against_what_was_asked() {
        let choice = WorkChoice {
            asked_us: 2_000.0,
            n: 29,
            cost_us: 2_070.0,
        };
        let line = choice.describe("--cpu", "here");
        assert!(
            line.starts_with("--cpu 2.00 ms: fib(29), 2.07 ms on one core here (1.03x"),
            "{line}"
        );
    }

    #[test]
    fn a_mix_may_name_cpu_time() {
        let (mix, choices) = resolve_mix("--mix", "11ms:99, 1:1,7ms", ideal).unwrap();
        assert_eq!(mix, "29:99,1:1,28");
        assert_eq!(choices.len(), 2);
        // Not durations: left for the mix's parser to refuse in its own words.
        assert_eq!(resolve_mix("--mix", "x:1,-3", ideal).unwrap().0, "x:1,-3");
        let err = resolve_mix("--mix", "1:99,20s:1", ideal).unwrap_err();
        assert!(err.to_string().starts_with("--mix 20s:1: '20s'"), "{err}");
    }

    #[test]
    fn bad_durations_are_refused_in_words() {
        for text in ["0", "0ms", "11s", "abc", "-2ms"] {
            let err = parse_cpu(text).unwrap_err().to_string();
            assert!(err.contains(&format!("'{text}'")), "{err}");
        }
        assert_eq!(parse_cpu("300us").unwrap(), Duration::from_micros(300));
    }
}
