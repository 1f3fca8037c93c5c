//! Output paths checked before a run measures anything: a report that cannot be
//! written is known in a millisecond, not after minutes of measuring.

use std::io;
use std::path::Path;

/// Checks that `path` (a file; `-` is standard output) can be written: opened for
/// writing if it exists (left as it is), else created and removed again.
///
/// # Errors
/// Its folder is missing or not writable, or the file is not (`/proc/...`, a folder).
pub fn check_file(path: &Path) -> io::Result<()> {
    if path.as_os_str() == "-" {
        return Ok(());
    }
    if path.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            format!("{} is a folder, not a file", path.display()),
        ));
    }
    match path.exists() {
        true => std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop),
        false => {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)?;
            std::fs::remove_file(path)
        }
    }
}

/// Checks that `dir` exists or can be made, and that a file can be written in it.
///
/// # Errors
/// It cannot be made, or nothing can be written in it.
pub fn check_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".fiblab-write-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

/// `text` with `&`, `<`, `>` and `"` escaped, for an HTML page's text or attribute
/// values (every HTML report: the bench's, the advice's).
pub fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A new folder `PREFIX` + `PID-RANDOM` in `base`, mode 0700, that did not exist before
/// (as `mkdtemp` makes one): never a folder found there, which another user could have
/// planted with links to follow.
///
/// # Errors
/// `base` is not writable, or sixteen random names were all taken.
pub fn private_dir(base: &Path, prefix: &str) -> io::Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    let mut last = None;
    for _ in 0..16 {
        let dir = base.join(format!(
            "{prefix}{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free name")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritable_paths_are_found_before_anything_runs() {
        let dir = std::env::temp_dir().join(format!("fiblab-output-{}", std::process::id()));
        assert!(check_dir(&dir).is_ok());
        let file = dir.join("r.json");
        assert!(check_file(&file).is_ok());
        assert!(!file.exists(), "the probe leaves nothing behind");
        std::fs::write(&file, "kept").unwrap();
        assert!(check_file(&file).is_ok());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "kept");
        assert!(check_file(&dir.join("no-such-folder/r.json")).is_err());
        assert!(check_file(&dir).is_err(), "a folder is not a file");
        assert!(check_file(Path::new("/proc/fiblab-r.json")).is_err());
        assert!(check_dir(Path::new("/proc/fiblab-x")).is_err());
        assert!(check_file(Path::new("-")).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
