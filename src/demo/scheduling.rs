//! `scheduling` — seed 002's 进程调度: how an operating system picks the next job, and
//! what each policy does to waiting time.
//!
//! - **First-come first-served** (先来先服务): jobs run to completion in arrival order.
//!   Simple and fair in order, but a long job makes every short one behind it wait.
//! - **Shortest job first** (短作业优先): of the jobs waiting, the shortest runs next, to
//!   completion. The least mean waiting time when the costs are known; a long job may
//!   wait a long time.
//! - **Round robin + multilevel feedback queue** (时间片轮转法+多级反馈队列): each job
//!   runs for a time slice; one that uses its whole slice drops to a lower level with a
//!   longer slice; the highest non-empty level runs first. Short jobs finish in their
//!   first slices without knowing costs in advance; long ones sink. (Linux's CFS and
//!   EEVDF descend from this family.)
//!
//! The jobs are the fib workload: costs measured here (fib(n) timed on this machine), a
//! mix of many short requests and a few long ones arriving over time, run through a
//! simulation of one CPU. The same question as the knee's heavy-tailed mix: what a long
//! request does to the short ones behind it.

use std::io;
use std::time::{Duration, Instant};

/// A job: when it arrives and how long it runs, µs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Job {
    pub n: u32,
    pub arrival: f64,
    pub cost: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    FirstComeFirstServed,
    ShortestJobFirst,
    /// Round robin over levels; slices of `slice`, doubling per level.
    Feedback {
        levels: usize,
    },
}

impl Policy {
    pub fn label(&self) -> &'static str {
        match self {
            Policy::FirstComeFirstServed => "first-come first-served",
            Policy::ShortestJobFirst => "shortest job first",
            Policy::Feedback { .. } => "round robin + feedback queue",
        }
    }

    /// The seed's name for it, and what the seed says of it.
    pub fn seed(&self) -> &'static str {
        match self {
            Policy::FirstComeFirstServed => {
                "先来先服务: in arrival order, each to completion; short jobs wait behind long ones"
            }
            Policy::ShortestJobFirst => {
                "短作业优先: the shortest waiting job next, to completion; a long job may starve"
            }
            Policy::Feedback { .. } => {
                "时间片轮转法+多级反馈队列: a time slice each; a job that uses its whole slice drops a level and gets a longer one"
            }
        }
    }
}

/// Each job's completion time, µs, under `policy` with time slice `slice` (used by
/// the feedback queue only), on one CPU.
pub fn simulate(jobs: &[Job], policy: Policy, slice: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by(|&a, &b| jobs[a].arrival.total_cmp(&jobs[b].arrival));
    let mut done = vec![0.0; jobs.len()];
    let mut left: Vec<f64> = jobs.iter().map(|j| j.cost).collect();
    let mut now = 0.0f64;
    let mut next = 0; // next job in `order` to arrive
    match policy {
        Policy::FirstComeFirstServed | Policy::ShortestJobFirst => {
            let mut waiting: Vec<usize> = Vec::new();
            while next < order.len() || !waiting.is_empty() {
                while next < order.len() && jobs[order[next]].arrival <= now {
                    waiting.push(order[next]);
                    next += 1;
                }
                if waiting.is_empty() {
                    now = jobs[order[next]].arrival;
                    continue;
                }
                let pick = match policy {
                    Policy::ShortestJobFirst => waiting
                        .iter()
                        .enumerate()
                        .min_by(|a, b| jobs[*a.1].cost.total_cmp(&jobs[*b.1].cost))
                        .map_or(0, |(i, _)| i),
                    _ => 0,
                };
                let job = waiting.remove(pick);
                now += jobs[job].cost;
                done[job] = now;
            }
        }
        Policy::Feedback { levels } => {
            let levels = levels.max(1);
            let mut queues: Vec<std::collections::VecDeque<usize>> =
                vec![Default::default(); levels];
            loop {
                while next < order.len() && jobs[order[next]].arrival <= now {
                    queues[0].push_back(order[next]);
                    next += 1;
                }
                let Some(level) = queues.iter().position(|q| !q.is_empty()) else {
                    if next >= order.len() {
                        break;
                    }
                    now = jobs[order[next]].arrival;
                    continue;
                };
                let Some(job) = queues[level].pop_front() else {
                    continue;
                };
                let quantum = slice * f64::powi(2.0, level as i32);
                let ran = left[job].min(quantum);
                now += ran;
                left[job] -= ran;
                // Arrivals during the slice queue before the preempted job returns.
                while next < order.len() && jobs[order[next]].arrival <= now {
                    queues[0].push_back(order[next]);
                    next += 1;
                }
                if left[job] <= 0.0 {
                    done[job] = now;
                } else {
                    queues[(level + 1).min(levels - 1)].push_back(job);
                }
            }
        }
    }
    done
}

/// Mean and p99 of waiting (turnaround minus cost) and of turnaround, µs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Waits {
    pub mean_wait: f64,
    pub p99_wait: f64,
    pub mean_turnaround: f64,
    pub p99_turnaround: f64,
    /// Mean turnaround of the short jobs only (the smallest n).
    pub short_turnaround: f64,
}

pub fn waits(jobs: &[Job], done: &[f64]) -> Waits {
    let turnaround: Vec<f64> = jobs.iter().zip(done).map(|(j, d)| d - j.arrival).collect();
    let wait: Vec<f64> = jobs
        .iter()
        .zip(&turnaround)
        .map(|(j, t)| t - j.cost)
        .collect();
    let p99 = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(((v.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0.0)
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let shortest = jobs.iter().map(|j| j.n).min().unwrap_or(0);
    let short: Vec<f64> = jobs
        .iter()
        .zip(&turnaround)
        .filter(|(j, _)| j.n == shortest)
        .map(|(_, t)| *t)
        .collect();
    Waits {
        mean_wait: mean(&wait),
        p99_wait: p99(&wait),
        mean_turnaround: mean(&turnaround),
        p99_turnaround: p99(&turnaround),
        short_turnaround: mean(&short),
    }
}

/// fib(n)'s cost here, µs: the best of a few runs.
pub fn fib_cost_us(n: u32) -> f64 {
    (0..5)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(crate::fib::fib(std::hint::black_box(n)));
            start.elapsed()
        })
        .min()
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
        * 1e6
}

/// `count` jobs: one in `heavy_every` is fib(`long`), the rest fib(`short`), arriving
/// at random (seeded) so that the CPU is `load` busy on average.
pub fn workload(count: usize, short: u32, long: u32, heavy_every: usize, load: f64) -> Vec<Job> {
    let (short_cost, long_cost) = (fib_cost_us(short), fib_cost_us(long));
    let mut rng = fastrand::Rng::with_seed(7);
    let mean_cost = (short_cost * (heavy_every - 1) as f64 + long_cost) / heavy_every as f64;
    let mean_gap = mean_cost / load;
    let mut arrival = 0.0;
    (0..count)
        .map(|i| {
            let heavy = i % heavy_every == heavy_every / 2;
            let job = Job {
                n: if heavy { long } else { short },
                arrival,
                cost: if heavy { long_cost } else { short_cost },
            };
            // Exponential gaps: a Poisson arrival process.
            arrival += -mean_gap * (1.0 - rng.f64()).ln();
            job
        })
        .collect()
}

pub fn run(out: &mut dyn io::Write) -> io::Result<()> {
    let (short, long) = (20, 30);
    let jobs = workload(200, short, long, 20, 0.8);
    let slice = fib_cost_us(short) * 2.0;
    writeln!(
        out,
        "200 jobs on one CPU, 80% busy: fib({short}) ({:.0} µs here) and one in 20 fib({long}) ({:.0} µs), Poisson arrivals; time slice {:.0} µs, doubling over 3 levels",
        fib_cost_us(short),
        fib_cost_us(long),
        slice
    )?;
    writeln!(
        out,
        "  {:<30} {:>12} {:>12} {:>16} {:>16} {:>22}",
        "policy",
        "mean wait",
        "p99 wait",
        "mean turnaround",
        "p99 turnaround",
        "short jobs' turnaround"
    )?;
    for policy in [
        Policy::FirstComeFirstServed,
        Policy::ShortestJobFirst,
        Policy::Feedback { levels: 3 },
    ] {
        let w = waits(&jobs, &simulate(&jobs, policy, slice));
        writeln!(
            out,
            "  {:<30} {:>9.0} µs {:>9.0} µs {:>13.0} µs {:>13.0} µs {:>19.0} µs",
            policy.label(),
            w.mean_wait,
            w.p99_wait,
            w.mean_turnaround,
            w.p99_turnaround,
            w.short_turnaround
        )?;
    }
    for policy in [
        Policy::FirstComeFirstServed,
        Policy::ShortestJobFirst,
        Policy::Feedback { levels: 3 },
    ] {
        writeln!(out, "  {}: {}", policy.label(), policy.seed())?;
    }
    writeln!(
        out,
        "FCFS makes short jobs wait behind long ones (an event loop running fib inline does the same); SJF needs the costs in advance; the feedback queue finds the short ones by letting them finish in their first slice"
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: u32, arrival: f64, cost: f64) -> Job {
        Job { n, arrival, cost }
    }

    #[test]
    fn policies_order_jobs_as_the_seed_describes() {
        // All at time 0: a long job first in line, then two short ones.
        let jobs = [job(30, 0.0, 100.0), job(20, 0.0, 10.0), job(20, 0.0, 10.0)];
        let fcfs = simulate(&jobs, Policy::FirstComeFirstServed, 5.0);
        assert_eq!(fcfs, [100.0, 110.0, 120.0]);
        let sjf = simulate(&jobs, Policy::ShortestJobFirst, 5.0);
        assert_eq!(sjf, [120.0, 10.0, 20.0]);
        // Slices of 5, 10, 20: the short jobs finish within their second slice.
        let mlfq = simulate(&jobs, Policy::Feedback { levels: 3 }, 5.0);
        assert!(mlfq[1] < 40.0 && mlfq[2] < 40.0, "{mlfq:?}");
        assert_eq!(mlfq[0], 120.0);
        // Shortest job first has the least mean wait when all arrive together.
        let w = |done: &[f64]| waits(&jobs, done).mean_wait;
        assert!(w(&sjf) <= w(&fcfs));
        assert!(w(&mlfq) < w(&fcfs));
    }

    #[test]
    fn an_idle_cpu_waits_for_the_next_arrival() {
        let jobs = [job(1, 0.0, 1.0), job(1, 10.0, 1.0)];
        for policy in [Policy::FirstComeFirstServed, Policy::Feedback { levels: 2 }] {
            assert_eq!(simulate(&jobs, policy, 0.5), [1.0, 11.0]);
        }
    }
}
