//! The knee experiment's records, as plain data (kept in the report, read back by
//! `--replot`).

use serde::{Deserialize, Serialize};

/// The knee experiment's records: how the open loop ran, and every sweep's steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KneeRecords {
    pub connections: usize,
    /// Requests in flight per connection, at most.
    pub pipeline: usize,
    /// Measured seconds per step, after its warm-up.
    pub step_s: f64,
    /// The load generator's tick, µs (`fiblab load --tick`); 0: each request at its due
    /// time.
    #[serde(default)]
    pub tick_us: f64,
    pub workloads: Vec<KneeWorkloadRecord>,
    pub sweeps: Vec<KneeSweep>,
}

/// A workload as the report names it, and its SLO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KneeWorkloadRecord {
    /// `n=1`, `n=20`, `mix 1:99,30:1`.
    pub label: String,
    pub mix: String,
    /// p99 a sustained step stays under, µs.
    pub slo_us: u64,
}

/// One row's sweep of one workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KneeSweep {
    pub regime: String,
    pub row: String,
    pub workload: String,
    /// Which of the experiment's sweeps of this row and workload (0-based); sweeps are
    /// interleaved across rows, each against a server process of its own.
    #[serde(default)]
    pub round: usize,
    /// In the order they ran.
    pub steps: Vec<KneeStep>,
    /// Why the sweep ended, in words.
    pub ended: String,
    /// Its round was disturbed (every row's knee fell at once, [`disturbed_round`]) and
    /// measured again: kept in the records, left out of the knees and the ranking.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub set_aside: bool,
}

/// How far every row's knee must fall at once, in one round against its other rounds
/// (the median over rows of their ratio), for the round to count as disturbed: the
/// machine moved, not the models (a host's burst of other work, a vCPU taken away).
pub const DISTURBED: f64 = 0.5;

/// The round of `sweeps` (one regime's, three rounds or more) in which the rows' knees
/// fell together below [`DISTURBED`] of their other rounds' median: the median, over
/// every (row, workload) with a knee in its other rounds, of this round's knee over
/// theirs. Returns that round and its median ratio; `None` where no round is so far
/// below the others. The round effect is the level of variance that interleaving
/// spreads over every row alike; when it is this large it swamps the rows' own
/// differences, so the round is measured again rather than averaged in.
pub fn disturbed_round(sweeps: &[KneeSweep]) -> Option<(usize, f64)> {
    let live: Vec<&KneeSweep> = sweeps.iter().filter(|s| !s.set_aside).collect();
    let mut rounds: Vec<usize> = live.iter().map(|s| s.round).collect();
    rounds.sort_unstable();
    rounds.dedup();
    if rounds.len() < 3 {
        return None;
    }
    let mut worst: Option<(usize, f64)> = None;
    for &round in &rounds {
        let mut ratios = Vec::new();
        for s in live.iter().filter(|s| s.round == round) {
            let others: Vec<f64> = live
                .iter()
                .filter(|o| o.round != round && o.row == s.row && o.workload == s.workload)
                .map(|o| o.knee_rps())
                .collect();
            let typical = crate::stats::median(&others);
            if others.is_empty() || typical <= 0.0 {
                continue;
            }
            ratios.push(s.knee_rps() / typical);
        }
        if ratios.len() < 3 {
            continue;
        }
        let effect = crate::stats::median(&ratios);
        if effect < DISTURBED && worst.is_none_or(|(_, w)| effect < w) {
            worst = Some((round, effect));
        }
    }
    worst
}

/// How a step of a sweep went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepVerdict {
    /// Achieved at least 99% of the offered rate, no errors, p99 under the SLO.
    Sustained,
    /// p99 above the SLO.
    Tail,
    /// Requests failed: errors, resets, timeouts.
    Errors,
    /// Served less than 99% of the offered rate.
    Behind,
    /// The load generator itself was saturated: not the server's limit.
    ClientLimit,
}

impl StepVerdict {
    pub fn label(self) -> &'static str {
        match self {
            StepVerdict::Sustained => "sustained",
            StepVerdict::Tail => "p99 above the SLO",
            StepVerdict::Errors => "requests failed",
            StepVerdict::Behind => "fell behind the offered rate",
            StepVerdict::ClientLimit => "the load generator was saturated",
        }
    }
}

/// One offered rate, measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KneeStep {
    pub offered_rps: f64,
    pub achieved_rps: f64,
    /// Latency from when each request was due, µs (0 when none was answered).
    pub p50_us: u64,
    pub p99_us: u64,
    pub p99_9_us: u64,
    /// Failed requests (errors, resets, wrong replies) and timeouts.
    pub failed: u64,
    pub timeouts: u64,
    /// Requests that fell due but were never sent, their connection's pipeline full.
    #[serde(default)]
    pub missed: u64,
    /// The busiest load-generator thread's CPU time over its wall time, 0..1.
    pub client_busy: f64,
    /// What the server spent per request in this step, where its process could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<RequestCost>,
    /// What the load generator's own threads spent per request over the same window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<RequestCost>,
    pub verdict: StepVerdict,
    /// Every request's latency from when it was due, HdrHistogram V2+DEFLATE, base64.
    pub histogram: String,
}

/// A server's work per request over one step of load: [`crate::process::Work`] read
/// at the edges of the step's measured window (its connections open), divided by the
/// replies between the two readings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RequestCost {
    /// CPU time, µs per request, all the server's threads and processes.
    pub cpu_us: f64,
    /// Times a server thread went to sleep and had to be woken, per request: 1 where
    /// every reply costs a wake-up, near 0 where a thread finds the next request
    /// waiting (or spins).
    pub sleeps: f64,
    /// Times a runnable server thread was preempted, per request.
    #[serde(default)]
    pub preempted: f64,
    /// The load generator's system calls on its steady path per request (its own count,
    /// [`crate::load::report::Calls`]); `None` for a server, and in steps recorded
    /// before the count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<f64>,
}

impl RequestCost {
    /// The load generator's `window` spread over `requests` (`None` when none were
    /// answered).
    pub fn of_client(window: &crate::load::ThreadCost, requests: u64) -> Option<RequestCost> {
        let work = crate::process::Work {
            cpu_ns: (window.cpu_s * 1e9).round() as u64,
            sleeps: window.sleeps,
            preempted: window.preempted,
        };
        let calls = window.calls.total();
        RequestCost::of(&work, requests).map(|cost| RequestCost {
            calls: (calls > 0).then(|| (calls as f64 / requests as f64 * 100.0).round() / 100.0),
            ..cost
        })
    }

    /// True when the client spent more CPU on a request than the server did: the
    /// figures measure the load generator as much as the server.
    pub fn client_costs_more(server: Option<RequestCost>, client: Option<RequestCost>) -> bool {
        matches!((server, client), (Some(s), Some(c)) if c.cpu_us > s.cpu_us)
    }

    /// `work` spread over `requests` (`None` when none were answered).
    pub fn of(work: &crate::process::Work, requests: u64) -> Option<RequestCost> {
        if requests == 0 {
            return None;
        }
        let per = |x: u64| (x as f64 / requests as f64 * 1000.0).round() / 1000.0;
        Some(RequestCost {
            cpu_us: per(work.cpu_ns / 1000),
            sleeps: per(work.sleeps),
            preempted: per(work.preempted),
            calls: None,
        })
    }

    /// "4.1 µs CPU, 0.52 sleeps, 0.01 preempted" for a table cell.
    pub fn describe(&self) -> String {
        format!(
            "{:.1} µs CPU, {:.2} sleeps, {:.2} preempted",
            self.cpu_us, self.sleeps, self.preempted
        )
    }
}

impl KneeSweep {
    /// The highest rate sustained, and its step.
    pub fn knee(&self) -> Option<&KneeStep> {
        self.steps
            .iter()
            .filter(|s| s.verdict == StepVerdict::Sustained)
            .max_by(|a, b| a.offered_rps.total_cmp(&b.offered_rps))
    }

    /// The knee as a sample for the statistics: the highest rate sustained, 0 where none
    /// was, req/s.
    pub fn knee_rps(&self) -> f64 {
        self.knee().map_or(0.0, |k| k.offered_rps)
    }

    /// How finely `sweeps` located their knees: the mean over them of
    /// `ln(broke / knee)^2 / 12`, the variance of the logarithm of a knee that lies
    /// anywhere between the last rate sustained and the next one tried (0 where no sweep
    /// has such a step). See [`crate::stats::Difference::resolved`].
    pub fn grid_variance(sweeps: &[&KneeSweep]) -> f64 {
        let steps: Vec<f64> = sweeps
            .iter()
            .filter_map(|s| {
                let (knee, broke) = (s.knee()?.offered_rps, s.broke()?.offered_rps);
                (knee > 0.0 && broke > knee).then(|| (broke / knee).ln().powi(2) / 12.0)
            })
            .collect();
        match steps.is_empty() {
            true => 0.0,
            false => steps.iter().sum::<f64>() / steps.len() as f64,
        }
    }

    /// True when the load generator, not the server, ended the sweep: its knee is a
    /// lower bound.
    pub fn at_client_limit(&self) -> bool {
        self.broke()
            .is_some_and(|b| b.verdict == StepVerdict::ClientLimit)
    }

    /// The lowest rate above the knee that was not sustained, if any (a step below
    /// the knee that failed once and passed when measured again is not where it broke).
    pub fn broke(&self) -> Option<&KneeStep> {
        let knee = self.knee().map_or(0.0, |k| k.offered_rps);
        self.steps
            .iter()
            .filter(|s| s.verdict != StepVerdict::Sustained && s.offered_rps > knee)
            .min_by(|a, b| a.offered_rps.total_cmp(&b.offered_rps))
    }
}
