//! The sweep's policy, pure: which rate to offer next, and how a step is judged
//! (sustained, tail, errors, behind, the client's own limit). Tested without a server.

use super::*;

/// A load-generator thread busier than this (without `--spin`) may be the limit.
pub const CLIENT_BUSY: f64 = 0.9;
/// Share of a step's requests that may fail and the step still count as sustained.
pub const FAILED_SHARE: f64 = 0.001;
/// Share of the offered rate a sustained step achieves.
pub const ACHIEVED_SHARE: f64 = 0.99;
/// Lower rates tried when the first step is not sustained.
pub(super) const DOWN_STEPS: usize = 2;
/// A server busy for less than this share of one CPU in a step is lightly loaded: a
/// tail there is the machine waking it (each request wakes a sleeping thread, and on a
/// VM an idle vCPU), not the server running out of capacity, so the climb goes on.
pub const LIGHT_LOAD: f64 = 0.5;

/// The server's busy share of one CPU in `s` (CPU per request x requests per second),
/// where it was measured.
pub fn server_busy(s: &KneeStep) -> Option<f64> {
    s.server.map(|c| c.cpu_us * s.achieved_rps / 1e6)
}

/// The step failed by its tail alone while the server was lightly loaded.
pub(super) fn idle_tail(s: &KneeStep) -> bool {
    s.verdict == StepVerdict::Tail && server_busy(s).is_some_and(|busy| busy < LIGHT_LOAD)
}

/// How a sweep runs: its rates and when it stops.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub start: f64,
    pub factor: f64,
    pub refine: usize,
    pub max: f64,
}

impl Plan {
    pub(super) fn of(k: &scenario::Knee) -> Plan {
        Plan {
            start: k.start_rate,
            factor: k.factor,
            refine: k.refine,
            max: k.max_rate,
        }
    }
}

/// Runs a sweep: `step(rate)` measures one offered rate. Returns the steps in order and
/// why the sweep ended.
///
/// # Errors
/// A step's error, as it came.
pub fn sweep(
    plan: Plan,
    mut step: impl FnMut(f64) -> io::Result<KneeStep>,
) -> io::Result<(Vec<KneeStep>, String)> {
    let mut steps: Vec<KneeStep> = Vec::new();
    let client_limit = |s: &KneeStep| {
        format!(
            "the load generator was saturated at {} req/s offered (a thread {:.0}% busy): the server's knee is above what this client can show",
            thousands(s.offered_rps),
            s.client_busy * 100.0
        )
    };
    // A step whose only fault is its tail is measured once more: on a small VM a
    // lightly loaded machine has the worse tail (idle CPUs to wake, the host's own
    // scheduling), and one stall in a second is not the knee. It fails only if the
    // second measurement fails too; both are kept. Falling behind, failing requests or
    // a saturated client count at once.
    let mut measure = |rate: f64, steps: &mut Vec<KneeStep>| -> io::Result<StepVerdict> {
        let first = step(rate)?;
        let verdict = first.verdict;
        steps.push(first);
        if verdict != StepVerdict::Tail {
            return Ok(verdict);
        }
        let again = step(rate)?;
        let verdict = again.verdict;
        steps.push(again);
        Ok(verdict)
    };
    // Up from the start.
    let mut rate = plan.start;
    let mut good: Option<f64> = None;
    loop {
        match measure(rate, &mut steps)? {
            StepVerdict::Sustained => {
                good = Some(rate);
                if rate * plan.factor > plan.max {
                    return Ok((
                        steps,
                        format!("sustained the sweep's top rate, {} req/s", thousands(rate)),
                    ));
                }
                rate *= plan.factor;
            }
            StepVerdict::ClientLimit => {
                let why = client_limit(steps.last().unwrap_or_else(|| unreachable!()));
                return Ok((steps, why));
            }
            // A tail while the server idles: the machine's wake-ups, not the knee.
            StepVerdict::Tail
                if steps.last().is_some_and(idle_tail) && rate * plan.factor <= plan.max =>
            {
                rate *= plan.factor;
            }
            _ => break,
        }
    }
    // Not even the start: lower, so a slow server still gets a knee (not where the
    // start failed only by an idle server's tail: lower rates are idler still).
    let idle_start = steps
        .iter()
        .find(|s| s.offered_rps >= plan.start)
        .is_some_and(idle_tail);
    if good.is_none() && !idle_start {
        let mut rate = plan.start;
        for _ in 0..DOWN_STEPS {
            rate /= plan.factor;
            if measure(rate, &mut steps)? == StepVerdict::Sustained {
                good = Some(rate);
                break;
            }
        }
    }
    // Between the knee and the first rate above it that was not sustained.
    let bad_above = |steps: &[KneeStep], good: f64| {
        steps
            .iter()
            .filter(|s| s.verdict != StepVerdict::Sustained && s.offered_rps > good)
            .map(|s| s.offered_rps)
            .fold(f64::MAX, f64::min)
    };
    if let Some(mut low) = good {
        let mut high = bad_above(&steps, low);
        for _ in 0..plan.refine {
            if high == f64::MAX {
                break;
            }
            let mid = (low * high).sqrt();
            match measure(mid, &mut steps)? {
                StepVerdict::Sustained => low = mid,
                StepVerdict::ClientLimit => {
                    let why = client_limit(steps.last().unwrap_or_else(|| unreachable!()));
                    return Ok((steps, why));
                }
                _ => high = mid,
            }
        }
    }
    let knee = steps
        .iter()
        .filter(|s| s.verdict == StepVerdict::Sustained)
        .map(|s| s.offered_rps)
        .fold(0.0, f64::max);
    let broke = steps
        .iter()
        .filter(|s| s.verdict != StepVerdict::Sustained && s.offered_rps > knee)
        .min_by(|a, b| a.offered_rps.total_cmp(&b.offered_rps));
    let below: Vec<String> = steps
        .iter()
        .filter(|s| s.verdict != StepVerdict::Sustained && s.offered_rps < knee)
        .map(|s| format!("{} at {} req/s", detail(s), thousands(s.offered_rps)))
        .collect();
    let mut why = match broke {
        Some(s) => format!(
            "at {} req/s offered: {} ({})",
            thousands(s.offered_rps),
            s.verdict.label(),
            detail(s)
        ),
        None => "every step sustained".into(),
    };
    if !below.is_empty() {
        why.push_str(&format!(
            "; below the knee, not sustained: {}",
            below.join(", ")
        ));
        let idle: Vec<&KneeStep> = steps
            .iter()
            .filter(|s| s.offered_rps < knee && idle_tail(s))
            .collect();
        if !idle.is_empty() {
            let most = |f: fn(&KneeStep) -> f64| idle.iter().map(|s| f(s)).fold(0.0, f64::max);
            let least =
                |f: fn(&KneeStep) -> f64| idle.iter().map(|s| f(s)).fold(f64::INFINITY, f64::min);
            why.push_str(&format!(
                " (there the server was at most {:.0}% busy and slept {:.2}-{:.2} times per request: each reply waited for a thread, and on a VM an idle vCPU, to wake)",
                most(|s| server_busy(s).unwrap_or(0.0)) * 100.0,
                least(|s| s.server.map_or(0.0, |c| c.sleeps)),
                most(|s| s.server.map_or(0.0, |c| c.sleeps)),
            ));
        }
    }
    Ok((steps, why))
}

/// The figures behind a step's verdict, in words.
pub(super) fn detail(s: &KneeStep) -> String {
    match s.verdict {
        StepVerdict::Tail => format!("p99 {} µs", thousands(s.p99_us as f64)),
        StepVerdict::Errors => format!(
            "{} failed, {} timed out",
            thousands(s.failed as f64),
            thousands(s.timeouts as f64)
        ),
        StepVerdict::Behind => format!(
            "served {} req/s, {:.0}% of it{}",
            thousands(s.achieved_rps),
            100.0 * s.achieved_rps / s.offered_rps.max(1.0),
            match s.missed {
                0 => String::new(),
                m => format!(
                    "; {} due but never sent, their connections full",
                    thousands(m as f64)
                ),
            }
        ),
        StepVerdict::ClientLimit => format!("a client thread {:.0}% busy", s.client_busy * 100.0),
        StepVerdict::Sustained => format!("p99 {} µs", thousands(s.p99_us as f64)),
    }
}

/// A step's verdict from its figures. The client's own saturation comes first: a
/// step the load generator could not drive says nothing about the server.
/// `failed` counts failed and timed-out requests; `missed`, requests that fell due but
/// could not be sent (their connection's pipeline full): the server not keeping up.
#[allow(
    clippy::too_many_arguments,
    reason = "one figure each, named at the call"
)]
pub fn judge(
    offered: f64,
    achieved: f64,
    requests: f64,
    failed: u64,
    missed: u64,
    p99_us: u64,
    client_busy: f64,
    slo_us: u64,
) -> StepVerdict {
    let share = |n: u64| n as f64 > FAILED_SHARE * requests.max(1.0);
    if client_busy >= CLIENT_BUSY {
        StepVerdict::ClientLimit
    } else if share(failed) {
        StepVerdict::Errors
    } else if achieved < ACHIEVED_SHARE * offered || share(missed) {
        StepVerdict::Behind
    } else if p99_us > slo_us {
        StepVerdict::Tail
    } else {
        StepVerdict::Sustained
    }
}
