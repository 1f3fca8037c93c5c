//! What the load generator sends: one request class, or a weighted mix of them.
//!
//! `--mix '1:99,36:1'` means fib(1) with weight 99 and fib(36) with weight 1: each
//! request picks its class at random (seeded, so a run can be repeated), and every
//! statistic is kept per class, so "many light requests and a rare heavy one" is one
//! command with one report.

use crate::fib::{MAX_N_FITS_U64, fib_fast};

/// A mix or class that cannot be sent as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    #[error("a mix needs at least one class")]
    Empty,
    #[error("the weights of a mix must not all be 0")]
    ZeroWeight,
    #[error("'{0}' in --mix: n must be a whole number, as in 1:99,36:1")]
    BadN(String),
    #[error("'{0}' in --mix: the weight must be a whole number")]
    BadWeight(String),
    #[error("n = {0} is too large: fib(n) fits in 64 bits only up to n = {MAX_N_FITS_U64}")]
    TooLarge(u32),
    #[error("'{0}' is not an n: fib(n) takes a whole number from 0 to {MAX_N_FITS_U64}")]
    NotAnN(String),
}

/// Which reply lines are errors: a property of the protocol being driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Protocol {
    /// Any error form below: fiblab's, RESP's and memcached's.
    #[default]
    Auto,
    /// fiblab's contract (PROTOCOL.md): `ERR reason`.
    Fiblab,
    /// redis (RESP): a line starting with `-` (`-ERR ...`, `-WRONGTYPE ...`).
    Resp,
    /// memcached's text protocol: `ERROR`, `CLIENT_ERROR ...`, `SERVER_ERROR ...`.
    Memcached,
}

impl Protocol {
    /// True when `line` (terminator removed) is an error reply in this protocol.
    pub fn is_error(self, line: &[u8]) -> bool {
        let fiblab = || line.starts_with(b"ERR");
        let resp = || line.starts_with(b"-");
        let memcached = || {
            line == b"ERROR"
                || line.starts_with(b"ERROR ")
                || line.starts_with(b"CLIENT_ERROR")
                || line.starts_with(b"SERVER_ERROR")
        };
        match self {
            Protocol::Auto => fiblab() || resp() || memcached(),
            Protocol::Fiblab => fiblab(),
            Protocol::Resp => resp(),
            Protocol::Memcached => memcached(),
        }
    }
}

/// The reply that proves a request was served correctly, when one is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Exactly this line (fib(n)'s value; `--expect`).
    Exact(Vec<u8>),
    /// A line that starts with this (`--expect-prefix`, e.g. `VALUE` for memcached).
    Prefix(Vec<u8>),
}

impl Expected {
    pub fn matches(&self, line: &[u8]) -> bool {
        match self {
            Expected::Exact(e) => e == line,
            Expected::Prefix(p) => line.starts_with(p),
        }
    }
}

/// Parses the `n` of a fib request as a person types it (`-n`, `--n=-1`): a whole
/// number from 0 to 93, the one check of it whichever flag carries it.
///
/// # Errors
/// Not a whole number, negative, or past 93 (where fib(n) leaves u64).
pub fn parse_n(text: &str) -> Result<u32, MixError> {
    match text.trim().parse::<i64>() {
        Ok(n) if (0..=i64::from(MAX_N_FITS_U64)).contains(&n) => Ok(n as u32),
        Ok(n) if n > 0 => Err(MixError::TooLarge(u32::try_from(n).unwrap_or(u32::MAX))),
        _ => Err(MixError::NotAnN(text.to_string())),
    }
}

/// One kind of request and the reply that proves it was served correctly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    /// How reports name it: `n=36`, or the request text.
    pub label: String,
    /// The request line as sent, terminator included (unless `--no-newline`).
    pub request: Vec<u8>,
    /// The reply line (without its newline) a correct server sends, when known.
    pub expected: Option<Expected>,
    pub weight: u32,
}

impl Class {
    /// fib(n), checked against the true value.
    pub fn fib(n: u32, weight: u32, newline: bool) -> Class {
        let mut request = n.to_string().into_bytes();
        if newline {
            request.push(b'\n');
        }
        Class {
            label: format!("n={n}"),
            request,
            expected: fib_fast(n).map(|v| Expected::Exact(v.to_string().into_bytes())),
            weight,
        }
    }

    /// [`Class::fib`] for an `n` a person gave (`-n`, `--mix`): the one check of it.
    ///
    /// # Errors
    /// `n` past 93, where fib(n) leaves u64 and no reply could be checked.
    pub fn checked_fib(n: u32, weight: u32, newline: bool) -> Result<Class, MixError> {
        if n > MAX_N_FITS_U64 {
            return Err(MixError::TooLarge(n));
        }
        Ok(Class::fib(n, weight, newline))
    }

    /// True when the request ends in a newline (not `--no-newline`).
    pub fn terminated(&self) -> bool {
        self.request.ends_with(b"\n")
    }

    /// Any line protocol: `PING` for redis, `version` for memcached. Replies are not
    /// checked unless [`expecting`](Self::expecting) says what they must be; an error
    /// reply of the run's [`Protocol`] counts as an error.
    pub fn text(text: &str, newline: bool) -> Class {
        let mut request = text.as_bytes().to_vec();
        if newline {
            request.push(b'\n');
        }
        Class {
            label: text.to_string(),
            request,
            expected: None,
            weight: 1,
        }
    }
}

impl Class {
    /// This class, its replies checked against `expected`.
    pub fn expecting(self, expected: Expected) -> Class {
        Class {
            expected: Some(expected),
            ..self
        }
    }

    /// Whether `line` is a correct reply: not an error of `protocol`, and the expected
    /// reply where one is known.
    pub fn judge(&self, protocol: Protocol, line: &[u8]) -> Reply {
        if protocol.is_error(line) {
            Reply::Error
        } else if self.expected.as_ref().is_none_or(|e| e.matches(line)) {
            Reply::Correct
        } else {
            Reply::Wrong
        }
    }
}

/// What a reply line was, as [`Class::judge`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Correct,
    /// An error reply of the protocol.
    Error,
    /// Not the expected reply.
    Wrong,
}

/// The classes of a run and how to pick one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    pub classes: Vec<Class>,
    /// Running totals of the weights, for picking by one random number.
    cumulative: Vec<u64>,
}

impl Mix {
    /// A mix of `classes`, picked by weight.
    ///
    /// # Errors
    /// No class, or every weight 0.
    pub fn new(classes: Vec<Class>) -> Result<Mix, MixError> {
        if classes.is_empty() {
            return Err(MixError::Empty);
        }
        let mut total = 0u64;
        let cumulative = classes
            .iter()
            .map(|c| {
                total += u64::from(c.weight);
                total
            })
            .collect();
        if total == 0 {
            return Err(MixError::ZeroWeight);
        }
        Ok(Mix {
            classes,
            cumulative,
        })
    }

    /// Parses `--mix`: `N:WEIGHT,N:WEIGHT,...` (a bare `N` has weight 1).
    ///
    /// # Errors
    /// A part that is not `N:WEIGHT`, an `n` past 93, no weight at all.
    pub fn parse_fib(text: &str, newline: bool) -> Result<Mix, MixError> {
        let classes = text
            .split(',')
            .map(|part| {
                let part = part.trim();
                let (n, weight) = part.split_once(':').unwrap_or((part, "1"));
                let n: u32 = n
                    .trim()
                    .parse()
                    .map_err(|_| MixError::BadN(part.to_string()))?;
                let weight: u32 = weight
                    .trim()
                    .parse()
                    .map_err(|_| MixError::BadWeight(part.to_string()))?;
                Class::checked_fib(n, weight, newline)
            })
            .collect::<Result<Vec<_>, MixError>>()?;
        Mix::new(classes)
    }

    /// The class for a uniformly random `roll` in `0..total_weight()`.
    pub fn pick(&self, roll: u64) -> usize {
        self.cumulative.partition_point(|&c| c <= roll)
    }

    pub fn total_weight(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_weights_and_labels() {
        let mix = Mix::parse_fib("1:99, 36:1", true).unwrap();
        assert_eq!(mix.classes.len(), 2);
        assert_eq!(mix.classes[0].label, "n=1");
        assert_eq!(mix.classes[1].request, b"36\n");
        assert_eq!(
            mix.classes[1].expected,
            Some(Expected::Exact(b"14930352".to_vec()))
        );
        assert_eq!(mix.total_weight(), 100);
        assert_eq!(
            Mix::parse_fib("20", false).unwrap().classes[0].request,
            b"20"
        );
    }

    #[test]
    fn rejects_nonsense() {
        assert!(Mix::parse_fib("a:1", true).is_err());
        assert!(Mix::parse_fib("1:x", true).is_err());
        assert!(Mix::parse_fib("1:0", true).is_err());
        assert_eq!(parse_n("30"), Ok(30));
        assert_eq!(parse_n("94"), Err(MixError::TooLarge(94)));
        assert!(matches!(parse_n("-1"), Err(MixError::NotAnN(_))));
        assert!(parse_n("-1").unwrap_err().to_string().contains("0 to 93"));
        // The same limit as `-n`: one check of n, whichever flag carries it.
        assert_eq!(Mix::parse_fib("100:1", true), Err(MixError::TooLarge(100)));
        assert_eq!(
            Class::checked_fib(100, 1, true),
            Err(MixError::TooLarge(100))
        );
    }

    #[test]
    fn each_protocol_knows_its_errors() {
        let fib = Class::fib(10, 1, true);
        assert_eq!(fib.judge(Protocol::Fiblab, b"55"), Reply::Correct);
        assert_eq!(fib.judge(Protocol::Fiblab, b"ERR busy"), Reply::Error);
        assert_eq!(fib.judge(Protocol::Fiblab, b"56"), Reply::Wrong);
        let ping = Class::text("PING", true);
        assert_eq!(ping.judge(Protocol::Resp, b"+PONG"), Reply::Correct);
        assert_eq!(
            ping.judge(Protocol::Resp, b"-ERR unknown command"),
            Reply::Error
        );
        assert_eq!(
            ping.judge(Protocol::Fiblab, b"-ERR unknown command"),
            Reply::Correct
        );
        for line in [
            &b"ERROR"[..],
            b"CLIENT_ERROR bad",
            b"SERVER_ERROR out of memory",
        ] {
            assert_eq!(ping.judge(Protocol::Memcached, line), Reply::Error);
            assert_eq!(ping.judge(Protocol::Auto, line), Reply::Error);
        }
        assert_eq!(
            ping.judge(Protocol::Memcached, b"ERRORS are fine"),
            Reply::Correct
        );
        let stats = Class::text("version", true).expecting(Expected::Prefix(b"VERSION ".to_vec()));
        assert_eq!(stats.judge(Protocol::Auto, b"VERSION 1.6"), Reply::Correct);
        assert_eq!(stats.judge(Protocol::Auto, b"STAT x"), Reply::Wrong);
    }

    #[test]
    fn picks_by_weight() {
        let mix = Mix::parse_fib("1:99,36:1", true).unwrap();
        assert_eq!(mix.pick(0), 0);
        assert_eq!(mix.pick(98), 0);
        assert_eq!(mix.pick(99), 1);
        let mut rng = fastrand::Rng::with_seed(7);
        let heavy = (0..100_000)
            .filter(|_| mix.pick(rng.u64(0..mix.total_weight())) == 1)
            .count();
        assert!((800..1200).contains(&heavy), "{heavy} heavy of 100000");
    }
}
