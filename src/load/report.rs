//! What a load run measured, and the exporters that print it: human text, JSON, CSV.
//!
//! [`Report`] is the documented JSON schema (`fiblab load --json FILE` writes it with
//! `serde_json`); every field below says its unit. Exporters are pure functions of a
//! `Report`, tested against golden output on a fixed report.

use std::fmt::Write as _;

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::spec::{LoadSpec, Stop};
pub use super::stats::Errors;
pub use super::stats::{Calls, ThreadCost};
pub use text::render_text;

mod cost;
mod text;
use super::stats::{ThreadStats, encode_histogram, histogram, widen};
pub use cost::{CallsPerRequest, ClientCost, ServerCost};

/// Version of the JSON layout below; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything one `fiblab load` run measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// The server, `host:port`.
    pub target: String,
    /// `"closed"` (each connection waits for replies) or `"open"` (sent at `rate`).
    pub mode: String,
    pub connections: usize,
    /// Requests in flight per connection (closed loop).
    pub pipeline: usize,
    /// Requests per second asked for, in all (open loop).
    pub rate: Option<f64>,
    /// Client threads.
    pub threads: usize,
    /// The client busy-polled its sockets instead of sleeping.
    pub spin: bool,
    /// Open loop on a tick grid (`--tick`), µs; 0: each request sent at its due time.
    #[serde(default)]
    pub tick_us: f64,
    /// CPUs the client threads were pinned to; `null` means not pinned.
    pub cpus: Option<Vec<usize>>,
    pub seed: u64,
    /// Seconds of warm-up, excluded from every figure.
    pub warmup_s: f64,
    /// Seconds measured (after warm-up).
    pub measured_s: f64,
    /// Correct replies per second over the measured time, all classes.
    pub throughput_rps: f64,
    /// Correct replies, all classes.
    pub requests_ok: u64,
    pub errors: Errors,
    /// Requests still in flight when a timed run ended: neither answered nor failed.
    pub unfinished: u64,
    /// Measured requests sent, counted as each was made (not derived from the others):
    /// in a closed loop every one is exactly one of ok, an error reply, a wrong reply,
    /// lost to a reset, a timeout or unfinished ([`Report::unaccounted`]).
    #[serde(default)]
    pub sent: u64,
    /// Open loop: requests that fell due but were never sent, because their connection
    /// was down (refused, reset, reconnecting) or, at the end, still full with less
    /// than `--timeout` gone. A request due while its connection was up but stalled
    /// is a timeout or a late reply, not missed. Every request due is exactly one of
    /// ok, an error (`errors`), unfinished or missed.
    pub missed: u64,
    pub classes: Vec<ClassReport>,
    /// Correct replies on each connection, in connection order.
    pub per_connection: Vec<u64>,
    /// One entry per whole measured second.
    pub per_second: Vec<SecondReport>,
    pub client: ClientCost,
    /// The server's side of a request's cost, where its process could be read (`fiblab
    /// load` finds the process listening on a loopback target's port, or is given
    /// `--server-pid`); `None` otherwise, and for merged reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerCost>,
    /// Warnings about the measurement itself (the client as bottleneck, ...).
    pub notes: Vec<String>,
    /// The execution segment this agent ran (`I/N`), when the load was split; its
    /// `connections` and `rate` are then this agent's share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// Wall-clock time the measurement started, seconds since the Unix epoch: where
    /// merged reports line their seconds up. Written for agents (`--segment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_unix_s: Option<f64>,
    /// The reports merged into this one (`fiblab load merge`); 0 for a single run.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub merged_from: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One request class (`n=1`, `PING`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassReport {
    pub label: String,
    pub weight: u32,
    /// Correct replies.
    pub requests_ok: u64,
    pub err_replies: u64,
    pub wrong: u64,
    /// Latency from the *intended* send time, in µs: corrected for coordinated
    /// omission (equal to `latency_sent_us` in a closed loop).
    pub latency_us: Percentiles,
    /// Latency from the moment the request was actually written, in µs.
    pub latency_sent_us: Percentiles,
    /// `latency_us` as an HdrHistogram, V2 format with DEFLATE, base64: mergeable
    /// across runs with any HdrHistogram library.
    pub histogram: String,
    /// The same for `latency_sent_us`.
    pub histogram_sent: String,
}

/// Latency percentiles in µs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub p99_99: u64,
    pub max: u64,
}

/// One measured second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondReport {
    /// Seconds since the measurement started (0 = the first second).
    pub second: u64,
    /// How much of this second was measured: 1 for whole seconds, less for the last
    /// one when the run ended within it. The rows add up to the run's totals; the
    /// warm-up is in none of them.
    pub span_s: f64,
    pub classes: Vec<SecondClass>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondClass {
    pub label: String,
    /// Correct replies that arrived in this second.
    pub requests_ok: u64,
    /// 99th percentile latency of those replies, µs (from the intended send time).
    pub p99_us: u64,
    pub errors: u64,
}

/// The per-second series: `second,class,requests_ok,p99_us,errors`.
pub fn render_csv(r: &Report) -> String {
    let mut out = String::from("second,span_s,class,requests_ok,p99_us,errors\n");
    for s in &r.per_second {
        for c in &s.classes {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{}",
                s.second,
                s.span_s,
                csv_field(&c.label),
                c.requests_ok,
                c.p99_us,
                c.errors
            );
        }
    }
    out
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The whole report as pretty JSON.
pub fn render_json(r: &Report) -> String {
    // A Report holds only strings, numbers, options and vectors: it always serializes.
    serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Why a run counts as failed, for its exit status: a load tool run from a script
/// must say in its exit code that it measured nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunFailure {
    #[error(
        "no reply at all: {attempts} connection attempts to {target} failed; is a server running there? Start one with `fiblab serve`"
    )]
    NoServer { attempts: u64, target: String },
    #[error("no request succeeded ({failed} failed: {kinds}); the run measured nothing")]
    NothingSucceeded { failed: u64, kinds: String },
    #[error("{wrong} replies were wrong: the server does not compute fib(n) correctly")]
    WrongReplies { wrong: u64 },
    #[error("{percent:.2}% of requests failed, above --max-error-rate {limit:.2}%")]
    ErrorRate { percent: f64, limit: f64 },
    #[error(
        "{starved} of {connections} connections got no reply at all, above --max-error-rate {limit:.2}%: the server served the others and left these waiting"
    )]
    Starved {
        starved: usize,
        connections: usize,
        limit: f64,
    },
}

impl Report {
    /// Closed loop: measured requests sent that are none of ok, an error reply, a wrong
    /// reply, lost to a reset, a timeout or unfinished (0 when every request is
    /// accounted for; negative: counted twice). An open loop also counts as timeouts
    /// requests that were due and never sent, so this is for closed loops.
    pub fn unaccounted(&self) -> i64 {
        self.sent as i64
            - (self.requests_ok + self.errors.failed_requests() + self.unfinished) as i64
    }

    /// Whether the run succeeded: some request succeeded, no reply was wrong, and the
    /// share of failed requests is at most `max_error_rate` (a fraction, 0.01 = 1%).
    ///
    /// # Errors
    /// The first [`RunFailure`] that applies, in the order of its variants.
    pub fn verdict(&self, max_error_rate: Option<f64>) -> Result<(), RunFailure> {
        let failed = self.errors.failed_requests();
        if self.requests_ok == 0 && failed == 0 && self.errors.connect > 0 {
            return Err(RunFailure::NoServer {
                attempts: self.errors.connect,
                target: self.target.clone(),
            });
        }
        if self.requests_ok == 0 {
            let e = &self.errors;
            let kinds = [
                ("ERR replies", e.err_reply),
                ("wrong replies", e.wrong),
                ("timeouts", e.timeout),
                ("lost to resets", e.reset),
                ("failed connects", e.connect),
            ]
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(what, n)| format!("{n} {what}"))
            .collect::<Vec<_>>();
            let kinds = match kinds.is_empty() {
                true => "no request was answered in the measured time".to_string(),
                false => kinds.join(", "),
            };
            return Err(RunFailure::NothingSucceeded { failed, kinds });
        }
        if self.errors.wrong > 0 {
            return Err(RunFailure::WrongReplies {
                wrong: self.errors.wrong,
            });
        }
        if let Some(limit) = max_error_rate {
            let share = failed as f64 / (failed + self.requests_ok) as f64;
            if share > limit {
                return Err(RunFailure::ErrorRate {
                    percent: share * 100.0,
                    limit: limit * 100.0,
                });
            }
            // A connection that got nothing failed as surely as a request did.
            let (starved, _) = self.starved();
            if self.connections > 0 && starved as f64 / self.connections as f64 > limit {
                return Err(RunFailure::Starved {
                    starved,
                    connections: self.connections,
                    limit: limit * 100.0,
                });
            }
        }
        Ok(())
    }

    /// Connections that got no correct reply in the measured time, and those that got
    /// some but under a tenth of their fair share (the correct replies over the
    /// connections): a server that serves some clients and leaves others waiting.
    /// (0, 0) where the report has no per-connection counts.
    pub fn starved(&self) -> (usize, usize) {
        let n = self.per_connection.len();
        if n == 0 || self.requests_ok == 0 {
            return (0, 0);
        }
        let fair = self.requests_ok as f64 / n as f64;
        let none = self.per_connection.iter().filter(|&&ok| ok == 0).count();
        let thin = self
            .per_connection
            .iter()
            .filter(|&&ok| ok > 0 && (ok as f64) < fair / 10.0)
            .count();
        (none, thin)
    }

    /// The report of a run: every thread's records merged (histograms added, counts
    /// summed, connections and seconds in place), the measured time, and the notes a
    /// reader needs (a busy client, unsent requests, an interruption, no server).
    pub(crate) fn from_threads(
        spec: &LoadSpec,
        threads: usize,
        measure_start: Instant,
        stats: Vec<ThreadStats>,
        interrupted: bool,
    ) -> Report {
        let classes = spec.mix.classes.len();
        let mut intended: Vec<Histogram<u64>> = (0..classes).map(|_| histogram(3)).collect();
        let mut sent: Vec<Histogram<u64>> = (0..classes).map(|_| histogram(3)).collect();
        let mut counts = vec![(0u64, 0u64, 0u64); classes];
        let mut errors = Errors::default();
        let mut per_connection = vec![0u64; spec.connections];
        let seconds_len = stats.iter().map(|s| s.seconds.len()).max().unwrap_or(0);
        let mut seconds: Vec<Vec<(u64, u64, Histogram<u64>)>> = (0..seconds_len)
            .map(|_| (0..classes).map(|_| (0, 0, histogram(2))).collect())
            .collect();
        let mut unfinished = 0;
        let mut sent_count = 0;
        let mut missed = 0;
        let mut last_reply = None::<Instant>;
        let mut stopped = None::<Instant>;
        // Exact (min, max) per class, from the due time and from the send time.
        let mut ranges: Vec<[Option<(u64, u64)>; 2]> = vec![[None, None]; classes];
        for s in &stats {
            for (c, cs) in s.classes.iter().enumerate() {
                let _ = intended[c].add(&cs.intended);
                let _ = sent[c].add(&cs.sent);
                let merge = |a: Option<(u64, u64)>, b: Option<(u64, u64)>| match (a, b) {
                    (Some((lo, hi)), Some(_)) => Some(widen(Some(widen(b, lo)), hi)),
                    (a, b) => a.or(b),
                };
                ranges[c][0] = merge(ranges[c][0], cs.intended_range);
                ranges[c][1] = merge(ranges[c][1], cs.sent_range);
                counts[c].0 += cs.ok;
                counts[c].1 += cs.err_replies;
                counts[c].2 += cs.wrong;
            }
            errors.add(&s.errors);
            unfinished += s.unfinished;
            sent_count += s.sent;
            missed += s.missed;
            for &(index, ok) in &s.per_connection {
                per_connection[index] += ok;
            }
            for (t, classes) in s.seconds.iter().enumerate() {
                for (c, ss) in classes.iter().enumerate() {
                    seconds[t][c].0 += ss.ok;
                    seconds[t][c].1 += ss.errors;
                    let _ = seconds[t][c].2.add(&ss.latency);
                }
            }
            last_reply = last_reply.max(s.last_reply);
            stopped = stopped.max(s.stopped_sending);
        }
        // A run whose every connection was given up ended early: its measured time is
        // what it really ran, not the time it was asked for.
        let gave_up = !stats.is_empty() && stats.iter().all(|s| s.gave_up);
        let measured = match spec.stop {
            Stop::After(d) if !interrupted && !gave_up => d,
            _ => last_reply.or(stopped).map_or(Duration::ZERO, |t| {
                t.saturating_duration_since(measure_start)
            }),
        };
        let whole_seconds = measured.as_secs() as usize;
        // The last, partial second too, so that the rows add up to the totals.
        let every_second = (measured.as_secs_f64().ceil() as usize).max(whole_seconds);
        let requests_ok: u64 = counts.iter().map(|c| c.0).sum();
        let thread_busy: Vec<f64> = stats
            .iter()
            .map(|s| (s.busy * 1000.0).round() / 1000.0)
            .collect();
        let likely_bottleneck = !spec.spin && thread_busy.iter().any(|&b| b > 0.9);
        let mut notes = Vec::new();
        if likely_bottleneck {
            notes.push("a client thread was over 90% busy: the client may limit these figures; try more --threads, or fewer connections per thread".into());
        }
        if spec.rate.is_some() && !spec.tick.is_zero() && !spec.spin {
            notes.push(format!(
                "--tick {} µs: requests sent on the tick grid, up to one tick late and measured from when they were due; replies timed by the kernel's arrival stamp",
                spec.tick.as_micros()
            ));
        }
        if spec.spin {
            notes.push(
                "--spin: client threads busy-polled their sockets (no wake-up latency, one core each)"
                    .into(),
            );
        }
        // Over 1% of what was answered: the server (or the client) could not keep the rate.
        if missed * 100 > requests_ok {
            notes.push(format!(
                "{missed} requests fell due but were never sent (a connection was down, or still full at the end): the server took less than the asked rate"
            ));
        }
        if interrupted {
            notes.push("interrupted: these are the figures up to the interruption".into());
        }
        if errors.timeout > 0 {
            notes.push(format!(
                "latency percentiles are of answered requests: the {} timeouts (no reply within --timeout of when each was due) are not in them",
                errors.timeout
            ));
        }
        if gave_up && !interrupted {
            notes.push(format!(
                "ended early, after {:.2} s: no connection to {} could be opened, or kept open for --timeout",
                measured.as_secs_f64(),
                spec.addr
            ));
        }
        if requests_ok == 0 && errors.connect > 0 {
            notes.push(format!(
                "no reply at all: {} connection attempts failed; is a server listening on {}?",
                errors.connect, spec.addr
            ));
        }
        let own = spec.segment().share_of(spec.connections);
        Report {
            schema: SCHEMA_VERSION,
            target: spec.addr.to_string(),
            mode: if spec.rate.is_some() {
                "open"
            } else {
                "closed"
            }
            .into(),
            connections: own,
            pipeline: spec.pipeline.max(1),
            // An agent offers its connections' share of the rate.
            rate: spec
                .rate
                .map(|rate| rate * own as f64 / spec.connections.max(1) as f64),
            threads,
            spin: spec.spin,
            tick_us: match spec.rate {
                Some(_) => spec.tick.as_secs_f64() * 1e6,
                None => 0.0,
            },
            cpus: spec.cpus.clone(),
            seed: spec.seed,
            warmup_s: spec.warmup.as_secs_f64(),
            measured_s: (measured.as_secs_f64() * 1000.0).round() / 1000.0,
            throughput_rps: if measured.is_zero() {
                0.0
            } else {
                (requests_ok as f64 / measured.as_secs_f64()).round()
            },
            requests_ok,
            errors,
            unfinished,
            sent: sent_count,
            missed,
            classes: spec
                .mix
                .classes
                .iter()
                .enumerate()
                .map(|(c, class)| ClassReport {
                    label: class.label.clone(),
                    weight: class.weight,
                    requests_ok: counts[c].0,
                    err_replies: counts[c].1,
                    wrong: counts[c].2,
                    latency_us: exact(percentiles(&intended[c]), ranges[c][0]),
                    latency_sent_us: exact(percentiles(&sent[c]), ranges[c][1]),
                    histogram: encode_histogram(&intended[c]),
                    histogram_sent: encode_histogram(&sent[c]),
                })
                .collect(),
            per_connection,
            per_second: seconds
                .into_iter()
                .take(every_second)
                .enumerate()
                .map(|(t, classes)| SecondReport {
                    second: t as u64,
                    span_s: match t < whole_seconds {
                        true => 1.0,
                        false => ((measured.as_secs_f64() - t as f64) * 1000.0).round() / 1000.0,
                    },
                    classes: classes
                        .into_iter()
                        .zip(&spec.mix.classes)
                        .map(|((ok, errors, h), class)| SecondClass {
                            label: class.label.clone(),
                            requests_ok: ok,
                            p99_us: if h.is_empty() {
                                0
                            } else {
                                h.value_at_quantile(0.99)
                            },
                            errors,
                        })
                        .collect(),
                })
                .collect(),
            client: ClientCost::new(
                thread_busy,
                likely_bottleneck,
                match stats.iter().all(|s| s.window.is_some()) && !stats.is_empty() {
                    true => Some(ThreadCost::sum(
                        stats.iter().filter_map(|s| s.window.as_ref()),
                    )),
                    false => None,
                },
                requests_ok,
            ),
            server: None,
            notes,
            segment: spec.agent.map(|a| a.segment.to_string()),
            started_unix_s: None,
            merged_from: 0,
        }
    }
}

/// `p` with its min and max replaced by the exact extremes: a histogram keeps values
/// only to its precision, and a "min" below every sample printed would be wrong.
fn exact(p: Percentiles, range: Option<(u64, u64)>) -> Percentiles {
    match range {
        // The percentiles held between the exact extremes: a bucket's highest
        // equivalent value can be above the largest value recorded.
        Some((min, max)) => {
            let hold = |v: u64| v.clamp(min, max.max(min));
            Percentiles {
                min,
                max,
                p50: hold(p.p50),
                p90: hold(p.p90),
                p99: hold(p.p99),
                p99_9: hold(p.p99_9),
                p99_99: hold(p.p99_99),
                ..p
            }
        }
        None => p,
    }
}

/// A histogram's percentiles (its min and max to histogram precision).
pub(crate) fn percentiles_of(h: &Histogram<u64>) -> Percentiles {
    percentiles(h)
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    // A quantile is its bucket's highest equivalent value, which can lie above the
    // largest value recorded (or below the smallest): held between the two, so no
    // percentile is ever printed above the maximum.
    let (min, max) = (h.min(), h.max());
    let q = |quantile: f64| h.value_at_quantile(quantile).clamp(min, max.max(min));
    Percentiles {
        min,
        mean: (h.mean() * 10.0).round() / 10.0,
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        p99_9: q(0.999),
        p99_99: q(0.9999),
        max,
    }
}

#[cfg(test)]
mod percentile_tests;
