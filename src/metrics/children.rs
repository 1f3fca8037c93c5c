//! A server's child processes (`prefork`'s copies) publish their counters to files the
//! parent's endpoint adds up at each scrape.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use prometheus::Encoder as _;

/// How often a child rewrites its file: a scrape sees its counts at most this late.
const EVERY: Duration = Duration::from_millis(100);

/// Where this process's children publish, once counting is on ([`super::enable`]):
/// `$TMPDIR/fiblab-metrics-PID/`, removed by the endpoint when it stops. `None`
/// without `--metrics`.
pub fn children_dir() -> Option<PathBuf> {
    super::get()?;
    Some(std::env::temp_dir().join(format!("fiblab-metrics-{}", std::process::id())))
}

/// Removes the publishing folders ([`children_dir`]) of servers that are gone: one
/// killed outright could not remove its own.
pub fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("fiblab-metrics-"))
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Counts in this process and rewrites `path` with its exposition every
/// 100 ms, from a thread of its own, for as long as the process lives (`fiblab
/// serve --metrics-publish PATH`, how `prefork` starts its copies). The file's first
/// line is `# pid N`, so the parent can skip a copy that is gone.
///
/// # Errors
/// The thread cannot start.
pub fn publish(path: PathBuf) -> io::Result<()> {
    let metrics = super::enable().map_err(io::Error::other)?;
    std::thread::Builder::new()
        .name("metrics-publish".into())
        .spawn(move || {
            let partial = path.with_extension("partial");
            loop {
                let mut text = format!("# pid {}\n", std::process::id()).into_bytes();
                let families = metrics.registry().gather();
                if prometheus::TextEncoder::new()
                    .encode(&families, &mut text)
                    .is_ok()
                    && std::fs::write(&partial, &text).is_ok()
                {
                    let _ = std::fs::rename(&partial, &path);
                }
                std::thread::sleep(EVERY);
            }
        })?;
    Ok(())
}

/// `text` (this process's exposition) with every sample raised by the same sample of
/// each live child's file in `dir`: counters, gauges and histogram buckets add up.
/// Samples only a child has (none: every process registers the same families) are
/// left out.
pub fn merge(text: &str, dir: &Path) -> String {
    let mut extra: HashMap<String, f64> = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return text.to_string();
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "prom") {
            continue;
        }
        let Ok(child) = std::fs::read_to_string(&path) else {
            continue;
        };
        let live = child
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# pid "))
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !live {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        for (key, value) in samples(&child) {
            *extra.entry(key.to_string()).or_default() += value;
        }
    }
    let mut merged = String::with_capacity(text.len());
    for line in text.lines() {
        match sample(line) {
            Some((key, value)) if extra.contains_key(key) => {
                merged.push_str(key);
                merged.push(' ');
                merged.push_str(&number(value + extra[key]));
            }
            _ => merged.push_str(line),
        }
        merged.push('\n');
    }
    merged
}

/// `name{labels} value` lines (comments aside) as `(name{labels}, value)`.
fn samples(text: &str) -> impl Iterator<Item = (&str, f64)> {
    text.lines().filter_map(sample)
}

fn sample(line: &str) -> Option<(&str, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let (key, value) = line.rsplit_once(' ')?;
    Some((key, value.parse().ok()?))
}

/// A sample's value as the text format writes it: whole numbers without a fraction.
fn number(x: f64) -> String {
    match x.fract() == 0.0 && x.abs() < 1e15 {
        true => format!("{x:.0}"),
        false => format!("{x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_children_add_up_and_dead_ones_are_dropped() {
        let dir = std::env::temp_dir().join(format!("fiblab-merge-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let me = std::process::id();
        std::fs::write(
            dir.join("a.prom"),
            format!("# pid {me}\n# TYPE x counter\nx{{class=\"n 0-9\"}} 3\ny_sum 0.5\n"),
        )
        .unwrap();
        std::fs::write(
            dir.join("b.prom"),
            format!("# pid {me}\nx{{class=\"n 0-9\"}} 4\n"),
        )
        .unwrap();
        // No process has pid 0 in /proc.
        std::fs::write(dir.join("gone.prom"), "# pid 0\nx{class=\"n 0-9\"} 100\n").unwrap();
        let parent = "# HELP x h\n# TYPE x counter\nx{class=\"n 0-9\"} 1\ny_sum 0.25\nz 2\n";
        let merged = merge(parent, &dir);
        assert_eq!(
            merged,
            "# HELP x h\n# TYPE x counter\nx{class=\"n 0-9\"} 8\ny_sum 0.75\nz 2\n"
        );
        assert!(!dir.join("gone.prom").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
