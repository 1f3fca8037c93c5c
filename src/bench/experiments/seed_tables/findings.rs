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
    out.push(match versus(r, ("threads", 20, 2), ("tokio", 20, 2)) {
        Some(d) => finding(
            source,
            claim,
            Verdict::DoesNotApply,
            format!(
                "no GIL in Rust: n=20, 2 clients: threads {:.0} req/s, tokio {:.0} ({}x); the gap was Python's interpreter, not threads",
                rps(r, "threads", 20, 2).unwrap_or(0.0),
                rps(r, "tokio", 20, 2).unwrap_or(0.0),
                ratio_ci(&d.ratio)
            ),
        )
        .reading(&[("threads", 20, 2), ("tokio", 20, 2)]),
        None => missing(source, claim, "threads and tokio at n=20 with 2 clients"),
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
    let gain = |model: &str| versus(r, (model, 20, 2), (model, 20, 1));
    out.push(match (gain("threads"), gain("procpool")) {
        (Some(threads), Some(procs)) => {
            let (threads_flat, procs_gain) = (|x: f64| x < 1.2, |x: f64| x >= 1.2);
            let decided = all(&[
                decide(&threads.ratio, threads_flat),
                decide(&procs.ratio, procs_gain),
            ]);
            let figure = |model: &str, c: usize| rps(r, model, 20, c).unwrap_or(0.0);
            finding(
                source,
                claim,
                verdict(decided),
                format!(
                    "n=20, 1 -> 2 clients: threads x{}{} ({:.0} -> {:.0}), procpool x{}{} ({:.0} -> {:.0})",
                    ratio_ci(&threads.ratio),
                    undecided_why(&threads.ratio, threads_flat),
                    figure("threads", 1),
                    figure("threads", 2),
                    ratio_ci(&procs.ratio),
                    undecided_why(&procs.ratio, procs_gain),
                    figure("procpool", 1),
                    figure("procpool", 2),
                ),
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
