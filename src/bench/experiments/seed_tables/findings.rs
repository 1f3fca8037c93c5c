//! The seeds' conclusions the seed tables decide (seed 000's 总结, seed 001-003).

use super::*;

pub(super) fn findings(r: &BenchReport) -> Vec<Finding> {
    let mut out = Vec::new();

    out.push(
        Ratio {
            source: "seed 000, 总结 1",
            claim: "I/O-bound, threads perform about like Go",
            a: ("threads", "threads", 1, 2),
            b: ("tokio (Go's design)", "tokio", 1, 2),
            holds: |ratio| (0.8..=1.25).contains(&ratio),
        }
        .check(r),
    );

    let (source, claim) = (
        "seed 000, 总结 2",
        "CPU-bound, Go is tens of times faster than Python threads",
    );
    out.push(match (rps(r, "threads", 20, 2), rps(r, "tokio", 20, 2)) {
        (Some(t), Some(g)) => finding(
            source,
            claim,
            Verdict::DoesNotApply,
            format!("no GIL in Rust: n=20, 2 clients: threads {t:.0} req/s, tokio {g:.0} ({:.2}x); the gap was Python's interpreter, not threads", t / g),
        )
        .reading(&[("threads", 20, 2), ("tokio", 20, 2)]),
        _ => missing(source, claim, "threads and tokio at n=20 with 2 clients"),
    });

    out.push(
        Ratio {
            source: "seed 000, 总结 3",
            claim: "I/O-bound, a process pool is much slower than threads",
            a: ("procpool", "procpool", 1, 2),
            b: ("threads", "threads", 1, 2),
            holds: |ratio| ratio < 0.8,
        }
        .check(r),
    );

    let (source, claim) = (
        "seed 000, 总结 4",
        "CPU-bound, processes gain from a second client and threads do not (the GIL)",
    );
    out.push(match (rps(r, "threads", 20, 1), rps(r, "threads", 20, 2), rps(r, "procpool", 20, 1), rps(r, "procpool", 20, 2)) {
        (Some(t1), Some(t2), Some(p1), Some(p2)) => {
            let (threads_gain, procs_gain) = (t2 / t1, p2 / p1);
            let verdict = if threads_gain < 1.2 && procs_gain >= 1.2 { Verdict::Reproduces } else { Verdict::Contradicts };
            finding(
                source,
                claim,
                verdict,
                format!("n=20, 1 -> 2 clients: threads x{threads_gain:.2} ({t1:.0} -> {t2:.0}), procpool x{procs_gain:.2} ({p1:.0} -> {p2:.0})"),
            )
            .reading(&[("threads", 20, 1), ("threads", 20, 2), ("procpool", 20, 1), ("procpool", 20, 2)])
        }
        _ => missing(source, claim, "threads and procpool at n=20 with 1 and 2 clients"),
    });

    out.push(
        Ratio {
            source: "seed 000, 总结 6",
            claim: "sub-interpreters isolate, but do not cure the interpreter's slowness",
            a: ("isolates (wasmi)", "isolates", 20, 1),
            b: ("threads (native)", "threads", 20, 1),
            holds: |ratio| ratio < 0.5,
        }
        .check(r),
    );

    out
}
