//! The seeds' measuring clients, `perf1` (latency of each request) and `perf2`
//! (requests per second), as presets of the load generator ([`crate::load`]): the
//! same engine, the seeds' output; and `soak`, a long mixed run with exact accounting.

use std::time::Duration;

pub mod perf1;
pub mod perf2;
pub mod soak;

/// Parses `1.5`, `3s`, `500ms`, `2m`: the duration flags of the clients and server.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration: try 3s, 500ms or 2m"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        _ => return Err(format!("unknown unit '{unit}' in '{text}': use ms, s or m")),
    };
    let duration = Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("'{text}' is not a duration: it must be positive and finite"))?;
    // Far beyond any sensible setting, and far from where `Instant + Duration` overflows.
    if duration > Duration::from_secs(365 * 24 * 3600) {
        return Err(format!("'{text}' is longer than a year"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("1e12").is_err());
    }
}
