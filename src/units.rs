//! The values every command line and scenario file shares, each with one parser:
//! durations (`3s`, `500ms`, `2m`), CPU lists (`0,2-3`) and socket addresses. A flag,
//! a scenario field and a child's argv that carry the same value go through the same
//! function, so they cannot check it differently.

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::time::Duration;

/// A value that does not parse; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Parses `1.5`, `3s`, `500ms`, `250us`, `2m` (no unit: seconds). At most a year.
///
/// # Errors
/// Not a number, an unknown unit, negative or not finite, or longer than a year.
pub fn parse_duration(text: &str) -> Result<Duration, ParseError> {
    let bad = |why: String| Err(ParseError(why));
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic() || c == 'µ')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let Ok(value) = number.parse::<f64>() else {
        return bad(format!("'{text}' is not a duration: try 3s, 500ms or 2m"));
    };
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        _ => return bad(format!("unknown unit '{unit}' in '{text}': use ms, s or m")),
    };
    let Ok(duration) = Duration::try_from_secs_f64(value * scale) else {
        return bad(format!(
            "'{text}' is not a duration: it must be positive and finite"
        ));
    };
    // Far beyond any sensible setting, and far from where `Instant + Duration` overflows.
    if duration > Duration::from_secs(365 * 24 * 3600) {
        return bad(format!("'{text}' is longer than a year"));
    }
    Ok(duration)
}

/// A share given as `5%` or as a fraction `0.05`, returned as the fraction (0.05).
/// Errors name the accepted forms; negative shares and fractions of 1 or more written
/// without `%` are refused (100%, written so, is allowed).
pub fn parse_percent(text: &str) -> Result<f64, ParseError> {
    let text = text.trim();
    let bad = || {
        ParseError(format!(
            "'{text}': a share is a percentage like 5% or a fraction like 0.05"
        ))
    };
    let value = match text.strip_suffix('%') {
        Some(number) => number.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
        None => {
            let fraction = text.parse::<f64>().map_err(|_| bad())?;
            if fraction >= 1.0 {
                return Err(ParseError(format!(
                    "'{text}': as a fraction it must be under 1; write {text}% for a percentage"
                )));
            }
            fraction
        }
    };
    match value.is_finite() && value >= 0.0 {
        true => Ok(value),
        false => Err(bad()),
    }
}

/// A whole number with thousands separators: `1234567.0` -> `1,234,567` (negative
/// values print as 0: counts and rates only).
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration as [`parse_duration`] reads it back exactly: whole microseconds.
pub fn format_duration(duration: Duration) -> String {
    format!("{}us", duration.as_micros())
}

/// Parses a size in bytes: `131072`, `128KiB`, `2MiB`, `1GiB` (also `K`, `KB`, `M`, `MB`,
/// `G`, `GB`, all binary: 1 KiB = 1024 bytes).
///
/// # Errors
/// Not a whole number, an unknown unit, or past what a usize holds.
pub fn parse_bytes(text: &str) -> Result<usize, ParseError> {
    let text = text.trim();
    let bad = || {
        ParseError(format!(
            "'{text}' is not a size: try 256KiB, 2MiB or 131072"
        ))
    };
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: usize = number.trim().parse().map_err(|_| bad())?;
    let scale: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    value.checked_mul(scale).ok_or_else(bad)
}

/// A size as a person reads it: `2MiB`, `128KiB`, or bytes when neither divides it.
/// [`parse_bytes`] reads it back exactly.
pub fn format_bytes(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}KiB", b >> 10),
        b => b.to_string(),
    }
}

/// Parses a CPU list: `0,1`, `2-3`, `0, 2-3`.
///
/// # Errors
/// A part that is not a number or a rising range.
pub fn parse_cpus(text: &str) -> Result<Vec<usize>, ParseError> {
    let bad = || ParseError(format!("'{text}' is not a CPU list: try 0,1 or 2-3"));
    let mut cpus = Vec::new();
    for part in text.split(',') {
        match part.trim().split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.trim().parse().map_err(|_| bad())?),
        }
    }
    Ok(cpus)
}

/// Parses a share: `1%`, `0.5%` or a fraction `0.01`; between 0 and 1.
///
/// # Errors
/// Not a number, or outside 0-100%.
pub fn parse_share(text: &str) -> Result<f64, ParseError> {
    let trimmed = text.trim();
    let (number, scale) = match trimmed.strip_suffix('%') {
        Some(number) => (number, 0.01),
        None => (trimmed, 1.0),
    };
    match number.trim().parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&(value * scale)) => Ok(value * scale),
        _ => Err(ParseError(format!(
            "'{text}' is not a share: try 1% or 0.01 (0 to 100%)"
        ))),
    }
}

/// A list of CPUs as flags give it (`0,1`, `2-3`): one value to clap, so a flag of this
/// type is parsed by [`parse_cpus`] whole (a `Vec<usize>` flag would make clap split it
/// and read each part as a number on its own).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuList(pub Vec<usize>);

impl std::str::FromStr for CpuList {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<CpuList, ParseError> {
        parse_cpus(text).map(CpuList)
    }
}

/// Parses `HOST:PORT` (a name is resolved; the first address wins).
///
/// # Errors
/// Not a host:port, or a name that resolves to nothing.
pub fn parse_addr(text: &str) -> Result<SocketAddr, ParseError> {
    text.to_socket_addrs()
        .map_err(|e| ParseError(format!("'{text}' is not a host:port address: {e}")))?
        .next()
        .ok_or_else(|| ParseError(format!("'{text}' resolves to no address")))
}

/// A duration field of a file (`"200ms"`, `"2s"`), parsed by [`parse_duration`]: for
/// serde's `deserialize_with`.
///
/// # Errors
/// The text is not a duration.
pub fn deserialize_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::time::Duration, D::Error> {
    use serde::Deserialize as _;
    parse_duration(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// serde: a list of durations as text (`["1ms", "10ms"]`).
pub fn deserialize_durations<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<std::time::Duration>, D::Error> {
    use serde::Deserialize as _;
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| parse_duration(text).map_err(serde::de::Error::custom))
        .collect()
}

/// serde: an optional duration as text (`"290s"`); absent is `None`.
pub fn deserialize_optional_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::time::Duration>, D::Error> {
    deserialize_duration(d).map(Some)
}

/// serde: an optional share as text (`"5%"` or `"0.05"`), as a fraction.
pub fn deserialize_percent<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<f64>, D::Error> {
    use serde::Deserialize as _;
    parse_percent(&String::deserialize(d)?)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_back_as_written() {
        assert_eq!(parse_bytes("131072"), Ok(131_072));
        assert_eq!(parse_bytes("128KiB"), Ok(128 << 10));
        assert_eq!(parse_bytes("2 MiB"), Ok(2 << 20));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        for bad in [
            "",
            "KiB",
            "1.5MiB",
            "-4K",
            "3 parsecs",
            "99999999999999999999G",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
        for bytes in [1, 1000, 4096, 3 << 20, (1 << 20) + 1] {
            assert_eq!(parse_bytes(&format_bytes(bytes)), Ok(bytes));
        }
        assert_eq!(format_bytes(256 << 10), "256KiB");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7µs"), Ok(Duration::from_micros(7)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("1e12").is_err());
    }

    #[test]
    fn formatted_durations_read_back() {
        for d in [0, 1, 999, 1_500_000, 300_000_000] {
            let d = Duration::from_micros(d);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn shares_as_percentages_or_fractions() {
        assert_eq!(parse_percent("5%").unwrap(), 0.05);
        assert_eq!(parse_percent("0.02").unwrap(), 0.02);
        assert!(
            parse_percent("5")
                .unwrap_err()
                .to_string()
                .contains("write 5%")
        );
        assert!(parse_percent("-1%").is_err());
        assert!(parse_percent("x").is_err());
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(12345.6), "12,346");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }

    #[test]
    fn shares() {
        assert_eq!(parse_share("1%"), Ok(0.01));
        assert_eq!(parse_share("0.5"), Ok(0.5));
        assert_eq!(parse_share("0"), Ok(0.0));
        assert!(parse_share("150%").is_err());
        assert!(parse_share("-1").is_err());
        assert!(parse_share("lots").is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("0,1"), Ok(vec![0, 1]));
        assert_eq!(parse_cpus("2-4"), Ok(vec![2, 3, 4]));
        assert_eq!(parse_cpus("0, 2-3"), Ok(vec![0, 2, 3]));
        assert!(parse_cpus("3-1").is_err());
        assert!(parse_cpus("x").is_err());
        assert_eq!("0,2-3".parse::<CpuList>(), Ok(CpuList(vec![0, 2, 3])));
    }
}
