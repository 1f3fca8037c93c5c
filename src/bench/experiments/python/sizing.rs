//! Sizing the CPU-bound request: the seeds' fib timed in CPython here, and the n
//! whose native fib costs as much.

use super::*;

/// Why CPython's fib could not be timed.
#[derive(Debug, thiserror::Error)]
pub enum PythonTimingError {
    #[error(transparent)]
    Seeds(#[from] crate::seeds::SeedError),
    #[error("no seed program defines fib(n)")]
    NoFib,
    #[error("cannot run python3: {0}")]
    NoPython(std::io::Error),
    #[error("python3 failed: {0}")]
    Failed(String),
}

/// The seeds' fib(`n`) in python3, µs (the median of 5 batches).
///
/// # Errors
/// The seeds cannot be read, none defines fib, or python3 is missing or fails.
pub fn python_fib_us(n: u32) -> Result<f64, PythonTimingError> {
    let dir = crate::seeds::default_dir();
    let programs = crate::seeds::load(&dir)?;
    let code = programs
        .iter()
        .find_map(|p| fib_definition(&p.code))
        .ok_or(PythonTimingError::NoFib)?;
    let script = format!(
        "{code}\nimport time\nruns = []\nfor _ in range(5):\n    k = 0\n    t = time.perf_counter()\n    while time.perf_counter() - t < 0.05:\n        fib({n}); k += 1\n    runs.append((time.perf_counter() - t) / k)\nruns.sort()\nprint(runs[2] * 1e6)\n"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .map_err(PythonTimingError::NoPython)?;
    if !out.status.success() {
        return Err(PythonTimingError::Failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<f64>()
        .map_err(|e| PythonTimingError::Failed(format!("it printed no time: {e}")))
}

/// `def fib(n): ...` as a seed program writes it: the `def` line and its indented body.
pub(super) fn fib_definition(code: &str) -> Option<String> {
    let mut lines = code.lines().skip_while(|l| !l.starts_with("def fib(n)"));
    let first = lines.next()?;
    let body: Vec<&str> = lines
        .take_while(|l| l.starts_with(' ') || l.starts_with('\t') || l.trim().is_empty())
        .collect();
    Some(
        std::iter::once(first)
            .chain(body)
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// fiblab's n whose native fib costs closest to `us` on this machine (log scale), and
/// its cost.
pub(super) fn native_n_costing(us: f64) -> (u32, f64) {
    let mut best = (1, crate::calibrate::fib_time(1));
    for n in 10..=34 {
        let cost = crate::calibrate::fib_time(n);
        if (cost.ln() - us.ln()).abs() < (best.1.ln() - us.ln()).abs() {
            best = (n, cost);
        }
        if cost > us * 2.0 {
            break;
        }
    }
    best
}

/// Sizes the CPU-bound workload once per run.
pub(super) fn sized(py: &scenario::Python) -> PythonRecords {
    let (python_us, how) = match python_fib_us(py.seed_n) {
        Ok(us) => (
            us,
            format!(
                "the seeds' own fib({}) timed in python3 here: {} µs",
                py.seed_n,
                thousands(us)
            ),
        ),
        Err(why) => {
            // CPython runs naive fib about 50x slower than native code (CPython 3.11
            // on these machines: ~570 µs against ~12 µs for fib(20)).
            let us = crate::calibrate::fib_time(py.seed_n) * 50.0;
            (
                us,
                format!(
                    "python3 could not be timed ({why}); assumed 50x fiblab's fib({}): {} µs",
                    py.seed_n,
                    thousands(us)
                ),
            )
        }
    };
    let (cpu_n, cpu_us) = native_n_costing(python_us);
    PythonRecords {
        seed_n: py.seed_n,
        light_n: py.light_n,
        // To the nanosecond, so that they read back from JSON bit for bit.
        python_fib_us: (python_us * 1000.0).round() / 1000.0,
        cpu_n,
        cpu_n_us: (cpu_us * 1000.0).round() / 1000.0,
        how_sized: how,
        switch_interval_ms: py.switch_interval.as_secs_f64() * 1000.0,
        samples: Vec::new(),
        starvation: Vec::new(),
    }
}
