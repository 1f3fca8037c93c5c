//! A server's child processes (`prefork`'s copies) publish their counters to files the
//! parent's endpoint adds up at each scrape.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use prometheus::Encoder as _;

/// How often a child rewrites its file: a scrape sees its counts at most this late.
const EVERY: Duration = Duration::from_millis(100);

/// Where this process's children publish, once counting is on ([`super::enable`]): a
/// folder made for this process alone on first use, `fiblab-metrics-PID-RANDOM` in
/// `$XDG_RUNTIME_DIR` (else the temporary folder), created exclusively with mode 0700
/// (never one found there: a folder planted by another user could hold links to
/// overwrite or counts to inject), removed by the endpoint when it stops. `None`
/// without `--metrics`, or where no folder can be made (the copies then go uncounted,
/// with a warning).
pub fn children_dir() -> Option<PathBuf> {
    super::get()?;
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| match crate::output::private_dir(&base_dir(), PREFIX) {
        Ok(dir) => Some(dir),
        Err(e) => {
            tracing::warn!(error = %e, "no folder for the copies' counts; /metrics counts this process alone");
            None
        }
    })
    .clone()
}

/// `$XDG_RUNTIME_DIR` where it is an absolute folder (private to the user by the
/// spec), else the temporary folder.
fn base_dir() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute() && dir.is_dir())
        .unwrap_or_else(std::env::temp_dir)
}

const PREFIX: &str = "fiblab-metrics-";

/// Removes the publishing folders ([`children_dir`]) of servers that are gone (one
/// killed outright could not remove its own): only real folders of this user whose
/// process is not running.
pub fn remove_stale() {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir(base_dir()) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .map(|rest| rest.split('-').next().unwrap_or(rest))
        else {
            continue;
        };
        let ours =
            std::fs::symlink_metadata(entry.path()).is_ok_and(|m| m.is_dir() && m.uid() == me);
        if ours && pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Counts in this process and rewrites `path` with its exposition every
/// 100 ms, from a thread of its own, for as long as the process lives (`fiblab
/// serve --metrics-publish PATH`, how `prefork` starts its copies). The file's first
/// line is `# pid N`, so the parent can skip a copy that is gone. Each version is
/// written to a new file (`O_EXCL`: never through a link found in its place) and
/// renamed over `path`.
///
/// # Errors
/// The thread cannot start.
pub fn publish(path: PathBuf) -> io::Result<()> {
    let metrics = super::enable().map_err(io::Error::other)?;
    std::thread::Builder::new()
        .name("metrics-publish".into())
        .spawn(move || {
            loop {
                let mut text = format!("# pid {}\n", std::process::id()).into_bytes();
                let families = metrics.registry().gather();
                if prometheus::TextEncoder::new()
                    .encode(&families, &mut text)
                    .is_ok()
                {
                    let _ = replace(&path, &text);
                }
                std::thread::sleep(EVERY);
            }
        })?;
    Ok(())
}

/// Writes `text` to a new file beside `path` (`PATH.partial`, created with `O_EXCL`,
/// mode 0600: a link found in its place is removed, never followed) and renames it
/// over `path`, so a reader sees the old version or the new one whole.
fn replace(path: &Path, text: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let partial = path.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)?
        .write_all(text)?;
    std::fs::rename(&partial, path)
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
        let plain_file = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
        if path.extension().is_none_or(|e| e != "prom") || !plain_file {
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
    use std::os::unix::fs::PermissionsExt as _;

    /// Issue 41: a folder planted under the name a server would use, holding a link to
    /// a victim file, is neither reused nor written through.
    #[test]
    fn the_folder_is_new_and_private_and_links_are_not_followed() {
        let base = std::env::temp_dir().join(format!("fiblab-private-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let victim = base.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        // The old, predictable name, made by someone else, world-writable.
        let planted = base.join(format!("{PREFIX}{}", std::process::id()));
        std::fs::create_dir(&planted).unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::os::unix::fs::symlink(&victim, planted.join("copy-5.partial")).unwrap();
        let dir = crate::output::private_dir(&base, PREFIX).unwrap();
        assert_ne!(dir, planted);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // Even a link planted inside is replaced, not followed.
        std::os::unix::fs::symlink(&victim, dir.join("copy-5.partial")).unwrap();
        replace(&dir.join("copy-5.prom"), b"# pid 1\nx 1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(
            std::fs::read_to_string(dir.join("copy-5.prom")).unwrap(),
            "# pid 1\nx 1\n"
        );
        // A link named like a copy's file is not read as counts.
        std::fs::write(&victim, "# pid 1\nx 100\n").unwrap();
        std::fs::remove_file(dir.join("copy-5.prom")).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("copy-6.prom")).unwrap();
        assert_eq!(merge("x 1\n", &dir), "x 1\n");
        let _ = std::fs::remove_dir_all(&base);
    }

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
