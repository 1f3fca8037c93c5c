//! The GIL claims this experiment decides, each without the lock, with it and for
//! CPython, and the table that shows all three.

use super::*;

pub(super) fn lock_of(r: &BenchReport, label: &str) -> &'static str {
    if r.is_peer(label) {
        "CPython's"
    } else if label.ends_with("+gil") {
        "`--gil`"
    } else {
        "none"
    }
}

pub(super) fn per_request_wait(g: &GilCounts, requests: u64) -> String {
    match requests {
        0 => String::new(),
        r => format!("{:.0} µs", g.wait_ns as f64 / 1000.0 / r as f64),
    }
}

pub(super) fn mean_wait(g: &GilCounts) -> String {
    match g.contended {
        0 => "0".into(),
        c => format!("{:.0} µs", g.wait_ns as f64 / 1000.0 / c as f64),
    }
}

/// The samples, aggregated: medians of throughput, sums of the lock's counters.
pub(super) struct Cells<'a> {
    py: &'a PythonRecords,
}

pub(super) fn cells(py: &PythonRecords) -> Cells<'_> {
    Cells { py }
}

impl Cells<'_> {
    pub(super) fn matching<'b>(
        &'b self,
        row: &'b str,
        workload: &'b str,
        clients: usize,
    ) -> impl Iterator<Item = &'b PythonSample> + 'b {
        self.py
            .samples
            .iter()
            .filter(move |s| s.row == row && s.workload == workload && s.clients == clients)
    }

    pub(super) fn rps(&self, row: &str, workload: &str, clients: usize) -> Option<f64> {
        let mut v: Vec<f64> = self
            .matching(row, workload, clients)
            .map(|s| s.throughput_rps)
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().filter(|x| *x > 0.0)
    }

    /// The median throughput with its interval over the repetitions.
    pub(super) fn throughput(&self, row: &str, workload: &str, clients: usize) -> Option<Interval> {
        let v: Vec<f64> = self
            .matching(row, workload, clients)
            .map(|s| s.throughput_rps)
            .collect();
        (!v.is_empty() && v.iter().any(|x| *x > 0.0)).then(|| Interval::of(&v))
    }

    pub(super) fn gil(
        &self,
        row: &str,
        workload: &str,
        clients: usize,
    ) -> Option<(GilCounts, u64)> {
        let mut total: Option<(GilCounts, u64)> = None;
        for s in self.matching(row, workload, clients) {
            let Some(g) = s.gil else { continue };
            let (t, requests) = total.get_or_insert((GilCounts::default(), 0));
            t.acquisitions += g.acquisitions;
            t.contended += g.contended;
            t.wait_ns += g.wait_ns;
            t.drop_requests += g.drop_requests;
            t.forced_switches += g.forced_switches;
            *requests += s.requests;
        }
        total
    }

    /// Forced switches per second of measured time.
    pub(super) fn gil_rate(&self, row: &str, workload: &str, clients: usize) -> Option<f64> {
        let (g, requests) = self.gil(row, workload, clients)?;
        let rps = self.rps(row, workload, clients)?;
        let seconds = requests as f64 / rps;
        (seconds > 0.0).then(|| g.forced_switches as f64 / seconds)
    }
}

/// The CPU-bound gain from the fewest to the most clients, with Welch's interval over
/// the repetitions ([`crate::stats::Difference`]).
pub(super) fn gain(cells: &Cells<'_>, row: &str) -> Option<Interval> {
    let mut clients: Vec<usize> = cells.py.samples.iter().map(|s| s.clients).collect();
    clients.sort_unstable();
    clients.dedup();
    let (&first, &last) = (clients.first()?, clients.last()?);
    if first == last {
        return None;
    }
    let samples = |c: usize| -> Vec<f64> {
        cells
            .matching(row, "cpu", c)
            .map(|s| s.throughput_rps)
            .collect()
    };
    Difference::of(&samples(last), &samples(first)).map(|d| d.ratio)
}

/// Light throughput kept during the heavy request, with its bootstrap interval
/// ([`crate::bench::rules::kept_of`]).
pub(super) fn kept_of(r: &BenchReport, row: &str) -> Option<Interval> {
    r.python
        .as_ref()?
        .starvation
        .iter()
        .find(|s| s.result.variant == row)
        .map(|s| crate::bench::rules::kept_of(&s.result))
}

/// One GIL claim, decided without the lock, with it, and for CPython.
pub(super) struct Claim {
    pub(super) source: &'static str,
    pub(super) claim: &'static str,
    pub(super) without: Option<Verdict>,
    pub(super) with_gil: Option<Verdict>,
    pub(super) python: Option<Verdict>,
    pub(super) evidence: String,
}

/// A rule's verdict: `None` not measured, `Some(None)` undecided at this precision.
pub(super) fn verdict(holds: Option<Option<bool>>) -> Option<Verdict> {
    holds.map(crate::bench::rules::verdict)
}

/// The seeds' Python server `model` stands for, from the registry.
pub(super) fn original(model: &str) -> Option<&'static str> {
    crate::models::find(model).and_then(|m| m.python_original)
}

pub(super) fn claims(r: &BenchReport) -> Vec<Claim> {
    let Some(py) = &r.python else {
        return Vec::new();
    };
    let cells = cells(py);
    let peer = |model: &str| original(model).filter(|p| r.is_peer(p));
    let gain_of = |row: &str| gain(&cells, row);
    let show_gain = |row: &str| {
        gain_of(row).map_or("not measured".to_string(), |g| format!("x{}", ratio_ci(&g)))
    };
    let show_kept =
        |row: &str| kept_of(r, row).map_or("not measured".to_string(), |k| ratio_ci(&k));
    let mut out = Vec::new();

    // With one CPU for the server no second client can gain on CPU-bound work, lock
    // or no lock: the scaling claims do not apply in such a regime.
    let one_cpu = r.regimes.first().is_some_and(|p| p.server_cpus.len() == 1);
    let scaling = |v: Option<Verdict>| match one_cpu {
        true => v.map(|_| Verdict::DoesNotApply),
        false => v,
    };
    let one_cpu_note = match one_cpu {
        true => {
            " (the server has one CPU in this regime: nothing can gain from a second client; the Python servers are not pinned by fiblab)"
        }
        false => "",
    };
    // "Does not gain": under 1.3x, or no more than one lock allows: with fib
    // serialized, a second client can only overlap its round trip with the other's
    // fib, so the gain is at most (one client's request time) / (fib's time).
    let serial_bound = |row: &str| {
        let work = match r.is_peer(row) {
            true => py.python_fib_us,
            false => py.cpu_n_us,
        };
        cells.rps(row, "cpu", 1).map(|rps| 1e6 / rps / work)
    };
    let holds = |row: &str| {
        let bound = serial_bound(row);
        gain_of(row).map(|g| decide(&g, |x| x < 1.3 || bound.is_some_and(|b| x <= b * 1.05)))
    };
    let show_bound = |row: &str| {
        serial_bound(row).map_or(String::new(), |b| {
            format!(" (one lock allows x{})", ratio(b))
        })
    };
    let py_threads = peer("threads");
    out.push(Claim {
        source: "seed 000, 总结 4 (GIL)",
        claim: "CPU-bound, threads do not gain from a second client: the GIL lets one run at a time",
        without: scaling(verdict(holds("threads"))),
        with_gil: scaling(verdict(holds("threads+gil"))),
        python: py_threads.and_then(|p| scaling(verdict(holds(p)))),
        evidence: format!(
            "CPU-bound throughput, 1 -> 2 clients: threads {}{}, threads --gil {}{}{}{one_cpu_note}",
            show_gain("threads"),
            show_bound("threads"),
            show_gain("threads+gil"),
            show_bound("threads+gil"),
            py_threads.map_or(String::new(), |p| format!(
                ", CPython's {p} {}{}",
                show_gain(p),
                show_bound(p)
            ))
        ),
    });

    let gains = |g: Option<Interval>| g.map(|g| decide(&g, |x| x >= 1.2));
    let both = |a: Option<Option<bool>>, b: Option<Option<bool>>| match (a, b) {
        (Some(a), Some(b)) => Some(all(&[a, b])),
        (a, None) => a,
        (None, b) => b,
    };
    let py_procs = peer("procpool");
    out.push(Claim {
        source: "seed 000, 总结 4 (GIL)",
        claim: "CPU-bound, processes gain from a second client: each has its own interpreter and lock",
        without: scaling(verdict(both(gains(gain_of("procpool")), gains(gain_of("prefork"))))),
        with_gil: scaling(verdict(both(
            gains(gain_of("procpool+gil")),
            gains(gain_of("prefork+gil")),
        ))),
        python: py_procs.and_then(|p| scaling(verdict(gains(gain_of(p))))),
        evidence: format!(
            "CPU-bound throughput, 1 -> 2 clients: procpool --gil {}, prefork --gil {}{}{one_cpu_note}",
            show_gain("procpool+gil"),
            show_gain("prefork+gil"),
            py_procs.map_or(String::new(), |p| format!(", CPython's {p} {}", show_gain(p)))
        ),
    });

    let collapses = |k: Option<Interval>| k.map(|k| decide(&k, |x| x < 0.1));
    out.push(Claim {
        source: "seed 004 (GIL)",
        claim: "one CPU-bound request collapses an I/O-bound thread's throughput (~100x): the light thread waits a switch interval for the lock at every request",
        without: verdict(collapses(kept_of(r, "threads"))),
        with_gil: verdict(collapses(kept_of(r, "threads+gil"))),
        python: py_threads.and_then(|p| verdict(collapses(kept_of(r, p)))),
        evidence: format!(
            "light throughput kept during the heavy request: threads {}, threads --gil {}{}",
            show_kept("threads"),
            show_kept("threads+gil"),
            py_threads.map_or(String::new(), |p| format!(", CPython's {p} {}", show_kept(p)))
        ),
    });

    let survives = |k: Option<Interval>| k.map(|k| decide(&k, |x| x > 0.5));
    out.push(Claim {
        source: "seed 004 (GIL)",
        claim: "a process pool removes the collapse: the heavy request holds a worker process's lock, not the server's",
        without: verdict(survives(kept_of(r, "procpool"))),
        with_gil: verdict(survives(kept_of(r, "procpool+gil"))),
        python: py_procs.and_then(|p| verdict(survives(kept_of(r, p)))),
        evidence: format!(
            "light throughput kept: procpool --gil {}{}",
            show_kept("procpool+gil"),
            py_procs.map_or(String::new(), |p| format!(", CPython's {p} {}", show_kept(p)))
        ),
    });
    out
}

pub(super) fn claims_table(r: &BenchReport) -> Table {
    let label =
        |v: Option<Verdict>| v.map_or("not measured".to_string(), |v| v.label().to_string());
    Table {
        title: "The seeds' GIL conclusions, without the lock, with it, and in CPython".into(),
        intro: "Each claim decided three times by the same rule: on fiblab's models without a lock, with `--gil`, and on the seed's own Python server measured in the same run. \"agrees\": `--gil` and CPython give the same verdict.".into(),
        header: ["source", "claim", "no lock", "`--gil`", "CPython", "agrees", "evidence"]
            .map(String::from)
            .to_vec(),
        left: 2,
        text_last: true,
        rows: claims(r)
            .into_iter()
            .map(|c| {
                vec![
                    c.source.to_string(),
                    c.claim.to_string(),
                    label(c.without),
                    format!("**{}**", label(c.with_gil)),
                    label(c.python),
                    match (c.with_gil, c.python) {
                        (Some(Verdict::Undecided), Some(_)) | (Some(_), Some(Verdict::Undecided)) => {
                            "cannot tell at this precision".into()
                        }
                        (Some(a), Some(b)) if a == b => "yes".into(),
                        (Some(_), Some(_)) => "**no**".into(),
                        _ => "n/a".into(),
                    },
                    c.evidence,
                ]
            })
            .collect(),
    }
}
