//! Figures in words, shared by the table, the paragraphs and the confirmation.

use super::ModelAdvice;
use crate::units::thousands;

/// A time in µs as a person reads it: `850 µs`, `2.3 ms`, `1.50 s`.
pub fn duration_us(us: f64) -> String {
    match us {
        u if u < 0.1 => format!("{u:.3} µs"),
        u if u < 10.0 => format!("{u:.2} µs"),
        u if u < 1_000.0 => format!("{u:.0} µs"),
        u if u < 10_000.0 => format!("{:.1} ms", u / 1e3),
        u if u < 1e6 => format!("{:.0} ms", u / 1e3),
        u => format!("{:.2} s", u / 1e6),
    }
}

/// A model's rate: the point, or the range where placement decides.
pub fn rate(a: &ModelAdvice) -> String {
    match a.rps {
        _ if (a.high - a.low) / a.high.max(1e-9) < 0.005 => thousands(a.rps.unwrap_or(a.high)),
        Some(x) => format!(
            "{} [{}–{}]",
            thousands(x),
            thousands(a.low),
            thousands(a.high)
        ),
        None => format!("{}–{}", thousands(a.low), thousands(a.high)),
    }
}

/// The mean latency over the range.
pub fn latency([fast, slow]: [f64; 2]) -> String {
    let (fast, slow) = (duration_us(fast), duration_us(slow));
    match fast == slow {
        true => fast,
        false => format!("{fast}–{slow}"),
    }
}

/// A capacity range `[high, low]`, req/s.
pub fn capacity([high, low]: [f64; 2]) -> String {
    match (high - low) / high.max(1e-9) < 0.005 {
        true => thousands(high),
        false => format!("{}–{}", thousands(low), thousands(high)),
    }
}

/// Resident memory in KiB as a person reads it: `840 KiB`, `18 MiB`, `1.2 GiB`; `–`
/// where unknown.
pub fn memory_kib(kib: Option<f64>) -> String {
    match kib {
        None => "–".to_string(),
        Some(k) if k < 1024.0 => format!("{k:.0} KiB"),
        Some(k) if k < 10.0 * 1024.0 => format!("{:.1} MiB", k / 1024.0),
        Some(k) if k < 1024.0 * 1024.0 => format!("{:.0} MiB", k / 1024.0),
        Some(k) => format!("{:.1} GiB", k / 1024.0 / 1024.0),
    }
}
