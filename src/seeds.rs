//! The seeds' own programs, read out of the seed documents at run time.
//!
//! The seed documents (`../shared/seeds/*.txt`) carry their Python and Go programs as
//! code blocks (markdown fences or Hugo `{{< highlight >}}` shortcodes). fiblab never
//! copies them into its repository; it extracts them when a test or a benchmark wants
//! to run a seed program as a peer (`fiblab seeds extract`). A block is named by the
//! file name in its first comment lines (`# perf1.py`, `// server.go`); unnamed
//! blocks are snippets and are skipped.

use std::path::{Path, PathBuf};

/// One named program from one seed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedProgram {
    /// The seed document's number, e.g. `"000"`.
    pub seed: String,
    /// The program's file name, e.g. `"perf1.py"`.
    pub name: String,
    pub code: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(
        "cannot read the seed documents in {dir}: {source} (set FIBLAB_SEEDS to the folder that holds them)"
    )]
    Read {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("seed {seed} has no program named {name} (see `fiblab seeds list`)")]
    NotFound { seed: String, name: String },
}

/// Where the seed documents are: `$FIBLAB_SEEDS`, else `shared/seeds` beside the
/// repository.
pub fn default_dir() -> PathBuf {
    std::env::var_os("FIBLAB_SEEDS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/seeds"))
}

/// Every named program in every seed document of `dir`, by seed then position.
pub fn load(dir: &Path) -> Result<Vec<SeedProgram>, SeedError> {
    let read_err = |source| SeedError::Read {
        dir: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let mut programs = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(read_err)?;
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let seed = stem.split('_').next().unwrap_or(&stem).to_string();
        for (name, code) in programs_in(&text) {
            programs.push(SeedProgram {
                seed: seed.clone(),
                name,
                code,
            });
        }
    }
    Ok(programs)
}

/// The program `name` of seed `seed` (the first one, if a document shows it twice).
pub fn find(dir: &Path, seed: &str, name: &str) -> Result<SeedProgram, SeedError> {
    load(dir)?
        .into_iter()
        .find(|p| p.seed == seed && p.name == name)
        .ok_or_else(|| SeedError::NotFound {
            seed: seed.into(),
            name: name.into(),
        })
}

/// The named code blocks of one document, as (file name, code).
pub fn programs_in(text: &str) -> Vec<(String, String)> {
    let mut programs = Vec::new();
    let mut block: Option<Vec<&str>> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        match &mut block {
            None if trimmed.starts_with("```") || trimmed.starts_with("{{< highlight") => {
                block = Some(Vec::new());
            }
            None => {}
            Some(_) if trimmed == "```" || trimmed.starts_with("{{< /highlight") => {
                let lines = block.take().unwrap_or_default();
                if let Some(name) = program_name(&lines) {
                    programs.push((name, lines.join("\n") + "\n"));
                }
            }
            Some(lines) => lines.push(line),
        }
    }
    programs
}

/// The file name in a block's first comment lines: `# perf1.py` or `// server.go`.
fn program_name(lines: &[&str]) -> Option<String> {
    lines.iter().take(5).find_map(|line| {
        let comment = line
            .trim()
            .strip_prefix('#')
            .or_else(|| line.trim().strip_prefix("//"))?;
        let word = comment.split_whitespace().next()?;
        let is_file = (word.ends_with(".py") || word.ends_with(".go"))
            && word.len() > 3
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        is_file.then(|| word.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_block_styles() {
        let doc = "text\n```python\n# python3\n# perf1.py\nprint(1)\n```\n\
                   {{< highlight python >}}\n# perf2.py\nx = 2\n{{< /highlight >}}\n\
                   ```\nno name here\n```\n```go\n// server.go\npackage main\n```\n";
        let got = programs_in(doc);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["perf1.py", "perf2.py", "server.go"]);
        assert_eq!(got[0].1, "# python3\n# perf1.py\nprint(1)\n");
    }

    #[test]
    fn real_seeds_have_their_clients() {
        let dir = default_dir();
        if !dir.exists() {
            eprintln!(
                "SKIPPED: no seed documents at {} (set FIBLAB_SEEDS)",
                dir.display()
            );
            return;
        }
        let perf1 = find(&dir, "000", "perf1.py").unwrap();
        assert!(perf1.code.contains("sock.recv(100)"));
        let beazley = find(&dir, "004", "perf1.py").unwrap();
        assert!(beazley.code.contains("sock.send(b'30')"));
        assert!(
            find(&dir, "000", "server.go")
                .unwrap()
                .code
                .contains("package main")
        );
    }
}
