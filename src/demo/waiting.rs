//! `waiting` — seed 003's 协程 section: "for I/O-bound work switching raises efficiency;
//! for CPU-bound work it lowers it" (对于 IO密集型 操作来说，切换会提升效率; 对于 计算密集型
//! 操作来说，切换会降低效率).
//!
//! The seed's I/O-bound demo: two tasks, `da` and `mie`, each print three times and
//! `time.sleep(2)` after each: 12 s one after the other, 6 s as gevent coroutines, which
//! switch to the other task whenever one waits. Here the sleep is scaled down (50 ms by
//! default) and the two tasks run four ways:
//!
//! ```text
//! serial       da da da mie mie mie             6 waits one after another
//! threads      da da da   (an OS thread each)   the kernel overlaps the waits
//!              mie mie mie
//! coroutines   da mie da mie da mie             one thread; a hand-written scheduler
//!                                                 sleeps until the earliest task is due
//! async        the same on tokio's current-thread runtime (an .await per sleep)
//! ```
//!
//! The seed's CPU-bound demo: the same two tasks summing numbers instead of sleeping,
//! once one after the other and once switching after every step: switching only adds
//! its own cost, since nothing waits. Both are measured, and each time is printed
//! beside what the rule predicts (I/O: serial = 2 x 3 x sleep, overlapped = 3 x sleep;
//! CPU: interleaved >= serial).

use std::collections::BinaryHeap;
use std::io;
use std::time::{Duration, Instant};

/// Steps (prints and sleeps) of each task, as in the seed.
pub const STEPS: u32 = 3;

/// Numbers each CPU-bound task sums (the seed's 10,000,000, fewer: here a switch costs
/// a hundred times the addition between two switches, where in CPython it costs about
/// as much).
pub const SUM: u64 = 2_000_000;

/// How the two tasks ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Serial,
    Threads,
    Coroutines,
    Async,
}

impl Way {
    pub const ALL: [Way; 4] = [Way::Serial, Way::Threads, Way::Coroutines, Way::Async];

    pub fn name(self) -> &'static str {
        match self {
            Way::Serial => "serial",
            Way::Threads => "threads",
            Way::Coroutines => "coroutines",
            Way::Async => "async (tokio)",
        }
    }

    /// What the seed's rule predicts for two tasks of `STEPS` sleeps of `sleep` each.
    pub fn expected(self, sleep: Duration) -> Duration {
        match self {
            Way::Serial => sleep * 2 * STEPS,
            _ => sleep * STEPS,
        }
    }
}

/// What the demo measured.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitingOutcome {
    pub sleep: Duration,
    /// The I/O-bound tasks, each way, and the order the steps ran in ("da", "mie").
    pub io: Vec<(Way, Duration, Vec<&'static str>)>,
    /// The CPU-bound tasks: one after the other, then switching after every step.
    pub cpu_serial: Duration,
    pub cpu_switching: Duration,
}

impl WaitingOutcome {
    /// Serial time over a way's time: about 2 where switching overlaps the waits.
    pub fn speedup(&self, way: Way) -> f64 {
        let time = |w: Way| {
            self.io
                .iter()
                .find(|(x, _, _)| *x == w)
                .map_or(f64::NAN, |(_, t, _)| t.as_secs_f64())
        };
        time(Way::Serial) / time(way)
    }

    /// Switching time over serial time for CPU-bound work: at least about 1.
    pub fn cpu_ratio(&self) -> f64 {
        self.cpu_switching.as_secs_f64() / self.cpu_serial.as_secs_f64()
    }
}

/// Runs both demos with `sleep` per I/O step and `sum` numbers per CPU task.
///
/// # Errors
/// A thread or tokio's runtime could not start.
pub fn measure(sleep: Duration, sum: u64) -> io::Result<WaitingOutcome> {
    let mut io_runs = Vec::new();
    for way in Way::ALL {
        let started = Instant::now();
        let order = match way {
            Way::Serial => {
                let mut steps = task("da", sleep);
                steps.extend(task("mie", sleep));
                in_order(steps)
            }
            Way::Threads => {
                let other = std::thread::Builder::new().spawn(move || task("mie", sleep))?;
                let mut steps = task("da", sleep);
                steps.extend(other.join().unwrap_or_default());
                in_order(steps)
            }
            Way::Coroutines => coroutines(sleep),
            Way::Async => tokio_tasks(sleep)?,
        };
        io_runs.push((way, started.elapsed(), order));
    }
    let started = Instant::now();
    std::hint::black_box(count(sum, false)?);
    let cpu_serial = started.elapsed();
    let started = Instant::now();
    std::hint::black_box(count(sum, true)?);
    let cpu_switching = started.elapsed();
    Ok(WaitingOutcome {
        sleep,
        io: io_runs,
        cpu_serial,
        cpu_switching,
    })
}

/// One of the seed's tasks: sleep, then print (record, with the time) its name, three
/// times.
fn task(name: &'static str, sleep: Duration) -> Vec<(Instant, &'static str)> {
    (0..STEPS)
        .map(|_| {
            std::thread::sleep(sleep);
            (Instant::now(), name)
        })
        .collect()
}

/// The names in the order their steps happened.
fn in_order(mut steps: Vec<(Instant, &'static str)>) -> Vec<&'static str> {
    steps.sort_by_key(|(at, _)| *at);
    steps.into_iter().map(|(_, name)| name).collect()
}

/// The two tasks as coroutines on one thread: each is a state (steps left) and a time
/// it is due; the scheduler sleeps until the earliest is due, runs one step of it, and
/// puts it back with its next time: gevent's hub, without gevent.
fn coroutines(sleep: Duration) -> Vec<&'static str> {
    let start = Instant::now();
    // (due, name, steps left), earliest first.
    let mut due: BinaryHeap<std::cmp::Reverse<(Instant, &'static str, u32)>> = BinaryHeap::new();
    for name in ["da", "mie"] {
        due.push(std::cmp::Reverse((start + sleep, name, STEPS)));
    }
    let mut order = Vec::new();
    while let Some(std::cmp::Reverse((at, name, left))) = due.pop() {
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        order.push(name);
        if left > 1 {
            due.push(std::cmp::Reverse((at + sleep, name, left - 1)));
        }
    }
    order
}

/// The two tasks as tokio tasks on one thread, each awaiting its sleeps.
fn tokio_tasks(sleep: Duration) -> io::Result<Vec<&'static str>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    runtime.block_on(async {
        let tasks: Vec<_> = ["da", "mie"]
            .into_iter()
            .map(|name| {
                let order = order.clone();
                tokio::spawn(async move {
                    for _ in 0..STEPS {
                        tokio::time::sleep(sleep).await;
                        order.lock().unwrap_or_else(|p| p.into_inner()).push(name);
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    let order = order.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(order)
}

/// The seed's CPU-bound tasks on tokio's current-thread runtime: two tasks each sum
/// 0..`n`; `switching`: each yields to the other after every number (the seed's
/// `yield` / `next(g)`, a real trip through the scheduler), else one runs to the end,
/// then the other.
fn count(n: u64, switching: bool) -> io::Result<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    Ok(runtime.block_on(async move {
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                tokio::spawn(async move {
                    let mut total = 0u64;
                    for i in 0..n {
                        total = total.wrapping_add(std::hint::black_box(i));
                        if switching {
                            tokio::task::yield_now().await;
                        }
                    }
                    total
                })
            })
            .collect();
        let mut sum = 0u64;
        for t in tasks {
            sum = sum.wrapping_add(t.await.unwrap_or(0));
        }
        sum
    }))
}

/// `fiblab demo waiting`.
pub fn run(out: &mut dyn io::Write) -> io::Result<()> {
    let sleep = Duration::from_millis(50);
    let outcome = measure(sleep, SUM)?;
    writeln!(
        out,
        "Seed 003, 协程: two tasks (da, mie), each {STEPS} steps of time.sleep({} ms) (the seed's 2 s, scaled down).",
        sleep.as_millis()
    )?;
    writeln!(
        out,
        "{:<15} {:>10} {:>10} {:>16}  order of the steps",
        "way", "measured", "expected", "serial / this"
    )?;
    for (way, took, order) in &outcome.io {
        writeln!(
            out,
            "{:<15} {:>7.0} ms {:>7.0} ms {:>15.2}x  {}",
            way.name(),
            took.as_secs_f64() * 1e3,
            way.expected(sleep).as_secs_f64() * 1e3,
            outcome.speedup(*way),
            order.join(" ")
        )?;
    }
    writeln!(
        out,
        "I/O-bound: switching overlaps the waits, so the two tasks take about half the serial time (the seed: 12 s -> 6 s)."
    )?;
    writeln!(
        out,
        "CPU-bound (the seed's sum, two tasks of {SUM} numbers, tokio on one thread): one after the other {:.0} ms, yielding after every number {:.0} ms: {:.1}x the serial time (the seed: 1.16 s -> 2.07 s). Nothing waits, so switching only adds its own cost.",
        outcome.cpu_serial.as_secs_f64() * 1e3,
        outcome.cpu_switching.as_secs_f64() * 1e3,
        outcome.cpu_ratio()
    )?;
    writeln!(
        out,
        "In the servers: `fiblab serve --downstream ADDR` makes every request wait on another service; the event loops and tasks overlap those waits as the coroutines do here (docs/WAITING.md)."
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switching_halves_waiting_and_does_not_help_counting() {
        let outcome = measure(Duration::from_millis(30), 200_000).unwrap();
        for way in [Way::Threads, Way::Coroutines, Way::Async] {
            // The rule, not a timing: the two tasks' waits overlap (2x), far from 1x.
            assert!(outcome.speedup(way) > 1.5, "{way:?}: {outcome:?}");
        }
        assert!(outcome.speedup(Way::Serial) == 1.0);
        let (_, _, serial) = &outcome.io[0];
        assert_eq!(serial, &["da", "da", "da", "mie", "mie", "mie"]);
        let (_, _, coroutines) = &outcome.io[2];
        assert_eq!(coroutines, &["da", "mie", "da", "mie", "da", "mie"]);
        // Nothing waits: switching cannot make the sum faster than doing it in a row.
        assert!(outcome.cpu_ratio() > 1.0, "{outcome:?}");
    }
}
