//! The calibration for people: its rows as a text table (`fiblab calibrate`), the
//! one-sentence summary that heads a report, and how CPU lists and microseconds print.

use super::{Calibration, Measure};

/// A spread past this (largest - smallest over the median) marks a figure the runs
/// disagree on too much to be used alone.
pub const UNSTABLE_SPREAD: f64 = 0.5;

impl Calibration {
    /// Every primitive as (what, measure, how it was measured), in table order.
    pub fn rows(&self) -> Vec<(String, Option<Measure>)> {
        let mut rows = vec![
            (
                "loopback round trip, one CPU".to_string(),
                self.rtt_same_cpu,
            ),
            (
                "loopback round trip, two CPUs, blocking".into(),
                self.rtt_two_cpus,
            ),
            (
                "loopback round trip, two CPUs, spinning".into(),
                self.rtt_spinning,
            ),
            (
                "loopback round trip, unpinned, blocking".into(),
                self.rtt_unpinned,
            ),
            (
                "loopback round trip, two CPUs, client spinning".into(),
                self.rtt_client_spinning,
            ),
            (
                "fiblab's load generator round trip, one CPU".into(),
                self.loadgen_same_cpu,
            ),
            (
                "wake-up of a thread on another CPU (derived)".into(),
                self.wake_up,
            ),
            (
                "pipe round trip to a worker process".into(),
                self.pipe_round_trip,
            ),
            ("thread start (spawn + join)".into(), self.thread_start),
            (
                "process start (fiblab --version)".into(),
                self.process_start,
            ),
            ("epoll_wait, 1 descriptor".into(), self.epoll_1),
            ("epoll_wait, 1000 descriptors".into(), self.epoll_1000),
            ("select, 1 descriptor".into(), self.select_1),
            ("select, 1000 descriptors".into(), self.select_1000),
            (
                "select loop, added by 1000 idle descriptors".into(),
                self.select_idle_1000,
            ),
            ("non-blocking read of an idle socket".into(), self.read_idle),
            (
                "hand-off to a thread on the same CPU and back".into(),
                self.handoff,
            ),
            (
                "downstream's CPU per request (fiblab backend)".into(),
                self.downstream_cpu,
            ),
            (
                "balancer's CPU per request (HAProxy, mode tcp)".into(),
                self.balancer_cpu,
            ),
            (
                "threads: resident KiB per idle connection".into(),
                self.thread_resident_kib,
            ),
        ];
        rows.extend(
            self.fib
                .iter()
                .map(|f| (format!("fib({})", f.n), Some(f.cost))),
        );
        rows.extend(
            self.fib_interpreted
                .iter()
                .map(|f| (format!("fib({}), interpreted (wasmi)", f.n), Some(f.cost))),
        );
        rows
    }

    /// The calibration as a text table, machine facts first.
    pub fn render_text(&self) -> String {
        let m = &self.machine;
        let mut out = format!(
            "fiblab calibrate: {}, {} CPUs ({} per core), {}, Linux {}, descriptor limit {}, may run on CPUs {}\n\n",
            m.cpu,
            m.cpus,
            m.threads_per_core,
            if m.virtual_machine {
                "a virtual machine"
            } else {
                "no hypervisor reported"
            },
            m.kernel,
            m.descriptor_limit,
            m.allowed_cpus
        );
        out.push_str(&format!(
            "{:<46} {:>12} {:>8}\n",
            "primitive", "median µs", "spread"
        ));
        let mut unstable = Vec::new();
        for (what, measure) in self.rows() {
            match measure {
                Some(m) => {
                    // Past half the median, the runs disagree too much for the figure
                    // to predict anything on its own.
                    let mark = match m.spread > UNSTABLE_SPREAD {
                        true => {
                            unstable.push(what.trim().to_string());
                            " !"
                        }
                        false => "",
                    };
                    out.push_str(&format!(
                        "{what:<46} {:>12} {:>7.0}%{mark}\n",
                        format_us(m.median_us),
                        m.spread * 100.0
                    ));
                }
                None => out.push_str(&format!("{what:<46} {:>12}\n", "n/a")),
            }
        }
        out.push_str(&format!(
            "spread: (largest - smallest) / median of the runs, in % of the median.{}\n",
            match unstable.is_empty() {
                true => String::new(),
                false => format!(
                    " ! over {:.0}%: the runs disagree too much for the figure to be used alone ({}); the machine moved while it was measured: run `fiblab calibrate` again, or read it inside a bench, which measures the round trips again between regimes",
                    UNSTABLE_SPREAD * 100.0,
                    unstable.join(", ")
                ),
            }
        ));
        out
    }

    /// One sentence for a report's head: what this machine is like.
    pub fn summary(&self) -> String {
        let us = |m: Option<Measure>| m.map_or("n/a".to_string(), |m| format_us(m.median_us));
        format!(
            "Calibration: a loopback round trip takes {} µs on one CPU, {} µs across two CPUs when both sides block and {} µs when both spin, so waking a thread on another CPU costs about {} µs; {} µs unpinned (the kernel's placement), {} µs with only the client spinning; fiblab's load generator adds {} µs per request; a pipe round trip to a worker process {} µs; epoll_wait over 1000 idle descriptors {} µs, select {} µs; {}.",
            us(self.rtt_same_cpu),
            us(self.rtt_two_cpus),
            us(self.rtt_spinning),
            us(self.wake_up),
            us(self.rtt_unpinned),
            us(self.rtt_client_spinning),
            self.loadgen_overhead_us()
                .map_or("n/a".to_string(), format_us),
            us(self.pipe_round_trip),
            us(self.epoll_1000),
            us(self.select_1000),
            self.fib
                .iter()
                .map(|f| format!("fib({}) {} µs", f.n, format_us(f.cost.median_us)))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// `0-3,6`: a CPU list as Linux prints one.
pub fn describe_cpus(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        while i + 1 < cpus.len() && cpus[i + 1] == cpus[i] + 1 {
            i += 1;
        }
        parts.push(match cpus[i] == start {
            true => start.to_string(),
            false => format!("{start}-{}", cpus[i]),
        });
        i += 1;
    }
    parts.join(",")
}

/// `µs` with a sensible number of digits: 0.012, 1.5, 95, 1,200.
fn format_us(us: f64) -> String {
    match us {
        u if u < 1.0 => format!("{u:.3}"),
        u if u < 10.0 => format!("{u:.1}"),
        u => crate::units::thousands(u),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_print_as_linux_does() {
        assert_eq!(describe_cpus(&[0, 1, 2, 3, 6]), "0-3,6");
        assert_eq!(describe_cpus(&[1]), "1");
        assert_eq!(describe_cpus(&[]), "");
    }

    #[test]
    fn microseconds_print_with_sensible_digits() {
        assert_eq!(format_us(0.0123), "0.012");
        assert_eq!(format_us(95.4), "95");
        assert_eq!(format_us(1234.0), "1,234");
    }

    /// Issue 47: the spread column names what it is a share of, and a figure the runs
    /// disagree on is marked.
    #[test]
    fn the_spread_is_named_and_an_unstable_figure_marked() {
        let c = Calibration {
            rtt_same_cpu: Measure::of(vec![10.0, 10.5, 11.0]),
            rtt_unpinned: Measure::of(vec![20.0, 48.0, 90.0]),
            ..Calibration::default()
        };
        let text = c.render_text();
        assert!(
            text.contains("spread: (largest - smallest) / median"),
            "{text}"
        );
        assert!(text.contains(" !"), "{text}");
        assert!(text.contains("unpinned"), "{text}");
        let calm = Calibration {
            rtt_same_cpu: Measure::of(vec![10.0, 10.5, 11.0]),
            ..Calibration::default()
        };
        assert!(!calm.render_text().contains("disagree"));
    }
}
