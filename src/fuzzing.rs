//! The fuzz oracle: framing + service over arbitrary byte streams, split at arbitrary
//! points, checked against a reference model of the wire contract.
//!
//! One function, [`check_session`], serves three drivers: the coverage-guided
//! libFuzzer target in `fuzz/` (`cargo fuzz run session`), the replay of the corpus
//! kept in `fuzz/corpus/session/` in the normal test suite, and a seeded random sweep in
//! the unit tests below. Input layout (any bytes are a valid input):
//!
//! ```text
//! byte 0      max line, 1..=64 (small, so the over-long path is hit often)
//! byte 1      max n, 0..=93
//! byte 2      service, by its value mod 3: fib answered from the table (`lookup`, fast,
//!             any max n), upper, or naive fib (max n cut to 0..=15 to stay fast, and
//!             the one `Work::Handed` really hands over)
//! byte 3..    the stream; each 0xFF byte ends one read (it is not part of the stream)
//! ```
//!
//! Invariants, each a panic when broken:
//! 1. the replies equal the reference model's ([`reference`]): every request line gets
//!    exactly one reply line, in order, with the right value or `ERR` reason;
//! 2. [`Work::Inline`] and [`Work::Handed`] (how pools drive a session) reply alike;
//! 3. the framer never holds more than `max_line + 1` bytes, whatever arrives.

use crate::fib::fib_fast;
use crate::service::{Handoff, Rejection, Service, ServiceKind, Session, Work};

/// Decodes `data` as described in the module docs and checks every invariant.
/// Panics on a broken invariant, which is how fuzzers learn of it.
pub fn check_session(data: &[u8]) {
    let Some((&[max_line, max_n, kind], stream)) = data.split_first_chunk::<3>() else {
        return;
    };
    let max_line = usize::from(max_line % 64) + 1;
    let service = match kind % 3 {
        0 => Service {
            kind: ServiceKind::Lookup,
            max_n: u32::from(max_n) % 94,
        },
        1 => Service {
            kind: ServiceKind::Upper,
            max_n: 0,
        },
        _ => Service {
            kind: ServiceKind::Fib,
            max_n: u32::from(max_n) % 16,
        },
    };
    let reads: Vec<&[u8]> = stream.split(|&b| b == 0xFF).collect();
    let inline = drive(service, max_line, Work::Inline, &reads);
    let handed = drive(service, max_line, Work::Handed, &reads);
    let expected = reference(service, max_line, &reads);
    assert!(
        inline == expected,
        "replies differ from the reference model\n reads: {reads:?}\n got: {:?}\n want: {:?}",
        String::from_utf8_lossy(&inline),
        String::from_utf8_lossy(&expected)
    );
    assert!(
        handed == inline,
        "Work::Handed replies differ from Work::Inline\n reads: {reads:?}"
    );
}

/// A connection as every model drives it: feed each read, flush when idle, flush at
/// the end; with `Work::Handed`, compute each handed request and feed the rest.
fn drive(service: Service, max_line: usize, work: Work, reads: &[&[u8]]) -> Vec<u8> {
    let mut session = Session::new(service, max_line, work);
    let mut out = Vec::new();
    let answer = |handoff: Handoff, out: &mut Vec<u8>| match handoff {
        Handoff::Compute(n) => Session::write_reply(fib_fast(n).ok_or(Rejection::NotANumber), out),
        Handoff::Wait => unreachable!("no downstream in these sessions"),
    };
    for read in reads {
        let mut rest = *read;
        loop {
            let fed = session.feed(rest, &mut out);
            rest = &rest[fed.consumed..];
            match fed.handed {
                Some(n) => answer(n, &mut out),
                None => break,
            }
        }
        assert!(rest.is_empty(), "feed left bytes it never handed back");
        assert!(
            session.buffered() <= max_line + 1,
            "the framer holds {} bytes with max line {max_line}",
            session.buffered()
        );
        if let Some(n) = session.on_idle(&mut out) {
            answer(n, &mut out);
        }
    }
    if let Some(n) = session.on_eof(&mut out) {
        answer(n, &mut out);
    }
    out
}

/// The wire contract written as plainly as possible, whole lines at a time: no state
/// machine shared with [`crate::framing`].
///
/// - Until the client's first newline, the end of each read also ends a request (the
///   seeds' unterminated clients), unless the request is already over-long.
/// - A request is over-long when it exceeds `max_line` bytes (a trailing `\r` aside);
///   it gets one `ERR line too long`. Once it has more than `max_line + 1` bytes with no
///   newline seen, the rest of it up to the next newline is dropped unread.
/// - At the end of the stream, a pending request is answered.
pub fn reference(service: Service, max_line: usize, reads: &[&[u8]]) -> Vec<u8> {
    let mut requests: Vec<Option<Vec<u8>>> = Vec::new(); // None: over-long
    let mut current: Vec<u8> = Vec::new();
    let mut dropping = false;
    let mut seen_newline = false;
    for read in reads {
        for &byte in *read {
            if byte == b'\n' {
                seen_newline = true;
                if !dropping {
                    requests.push(Some(std::mem::take(&mut current)));
                }
                dropping = false;
                current.clear();
            } else if !dropping {
                current.push(byte);
            }
        }
        // The over-long check happens per read, on what is pending at its end.
        if !dropping && current.len() > max_line + 1 {
            requests.push(None);
            current.clear();
            dropping = true;
        }
        if !seen_newline && !dropping && !current.is_empty() {
            requests.push(Some(std::mem::take(&mut current)));
        }
    }
    if !dropping && !current.is_empty() {
        requests.push(Some(current));
    }
    let mut out = Vec::new();
    for request in requests {
        let reply = match request {
            None => Some(Err(Rejection::LineTooLong)),
            Some(mut line) => {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > max_line {
                    Some(Err(Rejection::LineTooLong))
                } else {
                    reference_reply(service, &line)
                }
            }
        };
        match reply {
            None => {}
            Some(Ok(text)) => {
                out.extend_from_slice(&text);
                out.push(b'\n');
            }
            Some(Err(rejection)) => out.extend_from_slice(rejection.reply_line().as_bytes()),
        }
    }
    out
}

/// One request's reply, or `None` for a blank line.
fn reference_reply(service: Service, line: &[u8]) -> Option<Result<Vec<u8>, Rejection>> {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    if service.kind == ServiceKind::Upper {
        if line.iter().all(blank) {
            return None;
        }
        return Some(
            std::str::from_utf8(line)
                .map(|s| s.to_uppercase().into_bytes())
                .map_err(|_| Rejection::NotUtf8),
        );
    }
    let text = String::from_utf8_lossy(line);
    let token = text.trim_matches([' ', '\t']);
    if token.is_empty() {
        return None;
    }
    let (negative, digits) = match token.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, token),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Err(Rejection::NotANumber));
    }
    let zero = digits.bytes().all(|b| b == b'0');
    if negative && !zero {
        return Some(Err(Rejection::Negative));
    }
    let max_n = service.max_n.min(crate::fib::MAX_N_FITS_U64);
    // Compare as decimal strings: no integer type bounds what a client may send.
    let significant = digits.trim_start_matches('0');
    let limit = max_n.to_string();
    let above = significant.len() > limit.len()
        || (significant.len() == limit.len() && significant > limit.as_str());
    if above {
        return Some(Err(Rejection::AboveMaxN { max_n }));
    }
    let n: u32 = significant.parse().unwrap_or(0);
    Some(Ok(fib_fast(n).unwrap_or(0).to_string().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded sweep, so the invariants are exercised on every `cargo test` even where
    /// no fuzzer runs; the structure-aware mutations bias towards the interesting bytes.
    #[test]
    fn random_streams_keep_every_invariant() {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let alphabet = b"0123456789 \t\r\n-+x\x00\xff\xc3\xa9";
        for _ in 0..20_000 {
            let len = rng.usize(0..200);
            let mut data = vec![rng.u8(..), rng.u8(..), rng.u8(..)];
            data.extend((0..len).map(|_| match rng.u8(0..8) {
                0 => rng.u8(..),
                _ => alphabet[rng.usize(0..alphabet.len())],
            }));
            check_session(&data);
        }
    }

    #[test]
    fn reference_agrees_on_the_contracts_examples() {
        let fib = Service {
            kind: ServiceKind::Lookup,
            max_n: 44,
        };
        let r = |reads: &[&[u8]]| String::from_utf8(reference(fib, 16, reads)).unwrap();
        assert_eq!(r(&[b"10\n20\r\n"]), "55\n6765\n");
        assert_eq!(r(&[b"30"]), "832040\n");
        assert_eq!(
            r(&[b"3", b"0"]),
            "2\n0\n",
            "the seeds' rule: each idle read a request"
        );
        assert_eq!(
            r(&[b"1\n3", b"0\n"]),
            "1\n832040\n",
            "after a newline, never split"
        );
        assert_eq!(
            r(&[b"\n  \n-0\n-1\n45\nx\n"]),
            "0\nERR negative\nERR above max-n 44\nERR not a number\n"
        );
        assert_eq!(
            r(&[b"99999999999999999999999\n"]),
            "ERR line too long\n",
            "23 digits: over the 16-byte line"
        );
    }
}
