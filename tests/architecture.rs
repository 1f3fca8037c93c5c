//! The layout's rules, checked on the source: no two library modules import each other,
//! directly or round a longer circle, and `main.rs` stays a dispatcher. See
//! docs/ARCHITECTURE.md.
//!
//! Modules are compared with their siblings (children of the same parent): a file's
//! reference to `crate::a::b::c` (or `super::x`) counts as a dependency of its own
//! top-level sibling on the sibling that holds the target. A parent and its own children
//! are one unit (a module re-exporting its children is the usual facade), so they are
//! not compared with each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A library source file and its module path (`["connection", "driver"]`).
struct Source {
    path: PathBuf,
    module: Vec<String>,
    text: String,
}

fn library_sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                // The binary's own modules are not the library.
                if path != root.join("cli") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") && path != root.join("main.rs") {
                files.push(path);
            }
        }
    }
    files
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(&root).unwrap().with_extension("");
            let mut module: Vec<String> = relative
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            Source { path, module, text }
        })
        .collect()
}

/// The module paths a file refers to: `crate::a::b` and `super::a` (resolved), in `use`
/// lines and inline paths alike. Only the path segments that name modules matter; the
/// caller cuts them to the sibling level.
fn references(source: &Source) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for line in source.text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (start, _) in code.match_indices("crate::") {
            let path = path_at(&code[start + "crate::".len()..]);
            found.push(path);
        }
        for (start, _) in code.match_indices("super::") {
            // `super::super::` is not used in this crate; one level up from this module.
            if start >= 2 && &code[start - 2..start] == "::" {
                continue;
            }
            // In a.rs or a/mod.rs alike, `super` is the parent of module `a`.
            let mut base = source.module.clone();
            base.pop();
            base.extend(path_at(&code[start + "super::".len()..]));
            found.push(base);
        }
    }
    found
}

/// `a::b::{c, d}` -> `[a, b]`: the leading identifiers of a path.
fn path_at(text: &str) -> Vec<String> {
    let mut segments = Vec::new();
    for segment in text.split("::") {
        let ident: String = segment
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let whole = ident.len() == segment.len();
        if !ident.is_empty() {
            segments.push(ident);
        }
        if !whole || segments.is_empty() {
            break;
        }
    }
    segments
}

/// The modules each source refers to, cut to modules that exist (the rest names items).
fn module_references(sources: &[Source]) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let modules: BTreeSet<Vec<String>> = sources.iter().map(|s| s.module.clone()).collect();
    sources
        .iter()
        .map(|source| {
            let targets = references(source)
                .into_iter()
                .map(|mut target| {
                    while !target.is_empty() && !modules.contains(&target) {
                        target.pop();
                    }
                    target
                })
                .filter(|t| !t.is_empty() && *t != source.module)
                .collect();
            (source.module.clone(), targets)
        })
        .collect()
}

/// Plain data: a `records` or `settings` module (an experiment's records and its
/// scenario section) that refers only to modules outside the bench and to other plain
/// data. The report and the scenario hold every experiment's records and settings, and
/// the experiments read the report: such a module reads nothing back, so no circle
/// runs through it, and an edge into it is not counted.
fn plain_data(refs: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> BTreeSet<Vec<String>> {
    let named = |m: &Vec<String>| {
        m.first().map(String::as_str) == Some("bench")
            && matches!(m.last().map(String::as_str), Some("records" | "settings"))
    };
    let mut data: BTreeSet<Vec<String>> = refs.keys().filter(|m| named(m)).cloned().collect();
    loop {
        let keep: BTreeSet<Vec<String>> = data
            .iter()
            .filter(|m| {
                refs[*m]
                    .iter()
                    .all(|t| t.first().map(String::as_str) != Some("bench") || data.contains(t))
            })
            .cloned()
            .collect();
        if keep == data {
            return data;
        }
        data = keep;
    }
}

#[test]
fn no_two_modules_import_each_other() {
    let sources = library_sources();
    let refs = module_references(&sources);
    let data = plain_data(&refs);
    // Edges between siblings: (parent, from child, to child).
    let mut edges: BTreeMap<Vec<String>, BTreeSet<(String, String)>> = BTreeMap::new();
    for (from, targets) in &refs {
        for target in targets {
            if data.contains(target) {
                continue;
            }
            let common = from.iter().zip(target).take_while(|(a, b)| a == b).count();
            // A module and its own ancestors or descendants are one unit.
            if common == from.len() || common == target.len() {
                continue;
            }
            edges
                .entry(from[..common].to_vec())
                .or_default()
                .insert((from[common].clone(), target[common].clone()));
        }
    }
    let mut circles = Vec::new();
    for (parent, pairs) in &edges {
        for (a, b) in pairs {
            if reaches(pairs, b, a, &mut BTreeSet::new()) {
                circles.push(format!(
                    "crate::{}: {a} -> {b} -> ... -> {a}",
                    parent.join("::")
                ));
            }
        }
    }
    assert!(
        circles.is_empty(),
        "modules that import each other (move the shared part below both):\n{}",
        circles.join("\n")
    );
}

fn reaches(
    edges: &BTreeSet<(String, String)>,
    from: &str,
    to: &str,
    seen: &mut BTreeSet<String>,
) -> bool {
    if from == to {
        return true;
    }
    if !seen.insert(from.to_string()) {
        return false;
    }
    edges
        .iter()
        .filter(|(a, _)| a == from)
        .any(|(_, b)| reaches(edges, b, to, seen))
}

#[test]
fn the_checker_sees_a_circle() {
    let a = Source {
        path: PathBuf::from("src/a.rs"),
        module: vec!["a".into()],
        text: "use crate::b::Thing;\n".into(),
    };
    let b = Source {
        path: PathBuf::from("src/b/mod.rs"),
        module: vec!["b".into()],
        text: "pub fn f() { crate::a::g(); }\nuse super::c::X; // comment crate::z\n".into(),
    };
    assert_eq!(references(&a), vec![vec!["b".to_string(), "Thing".into()]]);
    assert_eq!(
        references(&b),
        vec![
            vec!["a".to_string(), "g".into()],
            vec!["c".to_string(), "X".into()]
        ]
    );
}

#[test]
fn main_only_parses_and_dispatches() {
    let main =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/main.rs")).unwrap();
    let lines = main.lines().count();
    assert!(
        lines < 250,
        "src/main.rs has {lines} lines: move the work into the library or src/cli/"
    );
}

#[test]
fn library_errors_are_typed() {
    let offenders: Vec<String> = library_sources()
        .iter()
        .filter(|s| s.text.contains(", String>") && s.text.contains("Result<"))
        .filter(|s| {
            s.text
                .lines()
                .any(|l| l.contains("Result<") && l.contains(", String>"))
        })
        .map(|s| s.path.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "Result<_, String> in the library (use a thiserror type): {offenders:?}"
    );
}

/// The bench's one measuring path: only `bench::measure` calls the load engine, so a
/// setting of the load (agents, pinning, spinning) reaches every experiment.
#[test]
fn only_the_measuring_path_runs_a_load_in_the_bench() {
    let offenders: Vec<String> = library_sources()
        .iter()
        .filter(|s| s.module.first().map(String::as_str) == Some("bench"))
        .filter(|s| s.module.get(1).map(String::as_str) != Some("measure"))
        .filter(|s| {
            s.text
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .any(|code| code.contains("load::run(") || code.contains("load::run;"))
        })
        .map(|s| s.path.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "bench modules running a load themselves (use Run::load in bench/measure): {offenders:?}"
    );
}

/// An experiment reads the bench's shared modules, never another experiment: what two
/// experiments share moves below both (`bench::measure`, `bench::rules`, ...).
#[test]
fn experiments_never_import_each_other() {
    let sources = library_sources();
    let experiment_of = |module: &[String]| -> Option<String> {
        match module {
            [bench, experiments, name, ..]
                if bench == "bench" && experiments == "experiments" && name != "tests" =>
            {
                Some(name.clone())
            }
            _ => None,
        }
    };
    let mut offenders = Vec::new();
    for source in &sources {
        let Some(own) = experiment_of(&source.module) else {
            continue;
        };
        for target in references(source) {
            if let Some(other) = experiment_of(&target)
                && other != own
                && sources
                    .iter()
                    .any(|s| experiment_of(&s.module) == Some(other.clone()))
            {
                offenders.push(format!("{} -> {other}", source.path.display()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "experiments importing each other (move the shared part into the bench's shared modules):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn plain_data_is_only_data_that_reads_nothing_of_the_bench() {
    let source = |module: &[&str], text: &str| Source {
        path: PathBuf::from(format!("src/{}.rs", module.join("/"))),
        module: module.iter().map(|m| m.to_string()).collect(),
        text: text.into(),
    };
    let sources = [
        source(&["bench", "report"], "use crate::bench::x::records::R;\n"),
        source(&["bench", "x"], "use crate::bench::report::Report;\n"),
        source(&["bench", "x", "records"], "use crate::units::Ms;\n"),
        source(&["bench", "y"], ""),
        source(
            &["bench", "y", "records"],
            "use crate::bench::report::Report;\n",
        ),
        source(&["units"], ""),
    ];
    let data = plain_data(&module_references(&sources));
    assert!(data.contains(&vec!["bench".into(), "x".into(), "records".into()]));
    assert!(
        !data.contains(&vec!["bench".into(), "y".into(), "records".into()]),
        "records that read the report back are not plain data: an edge into them counts"
    );
}

/// A file past 600 lines is two concepts until shown otherwise. The exceptions, each one
/// concept: the cost formulas of every model behind one enum, and the io_uring loop
/// (submission, completion and the connection state machine, one per opcode).
#[test]
fn no_source_file_is_a_warehouse() {
    const ONE_CONCEPT: &[&str] = &["models/cost.rs", "models/uring/mod.rs"];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let offenders: Vec<String> = library_sources()
        .iter()
        .map(|s| {
            let relative = s.path.strip_prefix(&root).unwrap().display().to_string();
            (relative, s.text.lines().count())
        })
        .filter(|(path, lines)| *lines > 600 && !ONE_CONCEPT.contains(&path.as_str()))
        .map(|(path, lines)| format!("src/{path}: {lines} lines"))
        .collect();
    assert!(
        offenders.is_empty(),
        "split these by concept (or argue in ONE_CONCEPT that each is one):\n{}",
        offenders.join("\n")
    );
}
