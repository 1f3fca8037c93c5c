//! Why `--offload` uses a bounded pool and not tokio's `spawn_blocking`: a measurement.
//!
//! A flood of CPU-bound jobs (fib(N), far more than there are cores) is handed off
//! from a tokio runtime two ways: `spawn_blocking`, and fiblab's [`Offload`] pool with
//! the server's defaults (a worker per CPU, 64 jobs may wait). For each, the example
//! prints the wall time, the peak number of OS threads in the process, how many jobs
//! were refused (`ERR server busy` in the server), and how long one light job
//! submitted right after the flood waited for its answer.
//!
//! ```sh
//! cargo run --release --example offload_choice            # 2000 jobs of fib(24)
//! cargo run --release --example offload_choice -- 5000 26
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fiblab::fib::fib;
use fiblab::offload::Offload;

fn threads_now() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Samples the thread count every millisecond until `done` is set; returns the peak.
fn watch_threads(done: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !done.load(Ordering::Relaxed) {
            peak = peak.max(threads_now());
            std::thread::sleep(Duration::from_millis(1));
        }
        peak
    })
}

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (jobs, n) = (
        args.first().copied().unwrap_or(2000),
        args.get(1).copied().unwrap_or(24),
    );
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("{jobs} jobs of fib({n}) on {cpus} CPUs, submitted at once from a tokio runtime\n");
    println!(
        "{:<30} {:>8} {:>13} {:>8} {:>26}",
        "hand-off", "wall ms", "peak threads", "refused", "light job"
    );
    for bounded in [true, false] {
        // A fresh runtime each time: spawn_blocking's threads outlive their jobs by 10 s.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cpus)
            .build()
            .unwrap();
        let pool = Arc::new(Offload::start(cpus, 64).unwrap());
        let done = Arc::new(AtomicBool::new(false));
        let watcher = watch_threads(done.clone());
        let started = Instant::now();
        let (refused, light_wait) = runtime.block_on(async {
            let mut handles = Vec::new();
            for _ in 0..jobs {
                let pool = pool.clone();
                handles.push(tokio::spawn(async move {
                    match bounded {
                        true => pool.fib(n, None).await.is_err(),
                        false => tokio::task::spawn_blocking(move || fib(n)).await.is_err(),
                    }
                }));
            }
            tokio::task::yield_now().await;
            let light = Instant::now();
            let answered = match bounded {
                true => pool.fib(1, None).await.is_ok(),
                false => tokio::task::spawn_blocking(|| fib(1)).await.is_ok(),
            };
            let waited = (light.elapsed(), answered);
            let mut refused = 0;
            for h in handles {
                refused += usize::from(h.await.unwrap_or(true));
            }
            (refused, waited)
        });
        let wall = started.elapsed();
        done.store(true, Ordering::Relaxed);
        let peak = watcher.join().unwrap_or(0);
        let name = if bounded {
            "fiblab Offload (bounded, 64)"
        } else {
            "spawn_blocking (unbounded)"
        };
        let (waited, answered) = light_wait;
        let light = format!(
            "{} after {:.1} ms",
            if answered { "answered" } else { "refused" },
            waited.as_secs_f64() * 1e3
        );
        println!(
            "{name:<30} {:>8.0} {peak:>13} {refused:>8} {light:>26}",
            wall.as_secs_f64() * 1e3
        );
        drop(runtime);
    }
}
