//! A service as `fiblab advise` takes it: its work, wait, load and objective, and the
//! checks of each (the CLI's flags and the lab's form name the field).

use std::time::Duration;

use serde::Serialize;

/// The most clients a description may name.
pub const MOST_CLIENTS: usize = 1 << 20;

/// The longest wait a description may name.
pub const MOST_WAIT: Duration = Duration::from_secs(60);

/// A service, described in its own terms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    /// Its CPU work per request: fib(n).
    pub n: u32,
    /// What the user asked for in CPU time, µs, when they gave a duration.
    pub asked_cpu_us: Option<f64>,
    /// Its wait per request on a downstream, µs (0: none).
    pub wait_us: f64,
    /// Clients in a closed loop; in an open loop, the connections the requests are
    /// sent over.
    pub clients: usize,
    /// The latency objective: the 99th percentile under this, µs.
    pub slo_p99_us: Option<f64>,
    /// Requests per second offered in an open loop (`--rate`); `None`: a closed loop.
    pub rate: Option<f64>,
    /// Request classes `(n, weight)` when the work is a mix (`--mix`); empty: every
    /// request is fib(n) (`n` is then the mix's heaviest class).
    pub mix: Vec<(u32, u32)>,
    /// Also predict the thread models under CPython's GIL (`--gil`, emulated by
    /// `fiblab serve --gil`): seed 002's Python threads.
    pub gil: bool,
}

impl Service {
    /// The request classes, `(n, weight)`: the mix, or fib(n) alone.
    pub fn classes(&self) -> Vec<(u32, u32)> {
        match self.mix.is_empty() {
            true => vec![(self.n, 1)],
            false => self.mix.clone(),
        }
    }

    /// The work in the load generator's `--mix` syntax (`1:99,30:1`, or `25`).
    pub fn mix_text(&self) -> String {
        self.classes()
            .iter()
            .map(|(n, w)| match self.mix.is_empty() {
                true => n.to_string(),
                false => format!("{n}:{w}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The most requests per second a description may offer.
pub const MOST_RATE: f64 = 1e7;

/// A description that cannot be advised on; each says the range (the CLI's and the
/// lab's messages name the flag or field).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DescriptionError {
    #[error("{0} clients: give 1 to {MOST_CLIENTS}")]
    Clients(usize),
    #[error("'{0}': give a wait from 0 to 60s, e.g. 20ms")]
    Wait(String),
    #[error("'{0}': write it as p99=50ms (the 99th percentile's objective, more than 0)")]
    Slo(String),
    #[error("'{0}': give requests per second from 1 to 10000000, e.g. 20000/s")]
    Rate(String),
}

/// Parses `--rate 20000/s` (or `20000`), req/s.
///
/// # Errors
/// Not a number, or outside 1 to [`MOST_RATE`].
pub fn parse_rate(text: &str) -> Result<f64, DescriptionError> {
    let number = text.trim().trim_end_matches("/s").trim();
    match number.replace('_', "").parse::<f64>() {
        Ok(r) if (1.0..=MOST_RATE).contains(&r) => Ok(r),
        _ => Err(DescriptionError::Rate(text.to_string())),
    }
}

/// Parses `--slo p99=50ms`, µs.
///
/// # Errors
/// Another percentile, no duration, or zero.
pub fn parse_slo(text: &str) -> Result<f64, DescriptionError> {
    let bad = || DescriptionError::Slo(text.to_string());
    let (key, value) = text.split_once('=').ok_or_else(bad)?;
    if key.trim() != "p99" {
        return Err(bad());
    }
    let d = crate::units::parse_duration(value).map_err(|_| bad())?;
    match d.is_zero() {
        true => Err(bad()),
        false => Ok(d.as_secs_f64() * 1e6),
    }
}

/// Parses `--wait 20ms` (0 to [`MOST_WAIT`]).
///
/// # Errors
/// Not a duration, or over a minute.
pub fn parse_wait(text: &str) -> Result<Duration, DescriptionError> {
    match crate::units::parse_duration(text) {
        Ok(d) if d <= MOST_WAIT => Ok(d),
        _ => Err(DescriptionError::Wait(text.to_string())),
    }
}

/// Checks `--clients`.
///
/// # Errors
/// 0, or more than [`MOST_CLIENTS`].
pub fn check_clients(clients: usize) -> Result<usize, DescriptionError> {
    match (1..=MOST_CLIENTS).contains(&clients) {
        true => Ok(clients),
        false => Err(DescriptionError::Clients(clients)),
    }
}
