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
}

/// One kind of request and the reply that proves it was served correctly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    /// How reports name it: `n=36`, or the request text.
    pub label: String,
    /// The request line as sent, terminator included (unless `--no-newline`).
    pub request: Vec<u8>,
    /// The reply line (without its newline) a correct server sends, when known.
    pub expected: Option<Vec<u8>>,
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
            expected: fib_fast(n).map(|v| v.to_string().into_bytes()),
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

    /// Any line protocol: `PING` for redis, `get k` for memcached. Replies are not
    /// checked, except that an `ERR` reply counts as an error.
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
        assert_eq!(mix.classes[1].expected.as_deref(), Some(&b"14930352"[..]));
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
        // The same limit as `-n`: one check of n, whichever flag carries it.
        assert_eq!(Mix::parse_fib("100:1", true), Err(MixError::TooLarge(100)));
        assert_eq!(
            Class::checked_fib(100, 1, true),
            Err(MixError::TooLarge(100))
        );
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
