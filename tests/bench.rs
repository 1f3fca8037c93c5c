//! `fiblab bench` end to end on a tiny scenario, and its markdown exporter against
//! golden output.

mod common;

use std::process::Command;

use fiblab::bench::report::{self, BenchReport};
use fiblab::bench::{Machine, Sample};

#[test]
fn tiny_scenario_end_to_end() {
    let dir = std::env::temp_dir().join(format!("fiblab-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("tiny.toml");
    std::fs::write(
        &scenario,
        "name = 'tiny'\nabout = 'smoke'\nmodels = ['single', 'epoll']\nworkloads = [1]\nclients = [1, 2]\nduration = '200ms'\nwarmup = '50ms'\nrepetitions = 2\n[starvation]\nlight_n = 1\nheavy_seconds = 0.3\nat = '500ms'\nlength = '1500ms'\n",
    )
    .unwrap();
    let json = dir.join("tiny.json");
    let out = Command::new(common::fiblab_bin())
        .args([
            "bench",
            scenario.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tables = String::from_utf8_lossy(&out.stdout);
    for row in [
        "| `floor` |",
        "| `single` |",
        "| `epoll` |",
        "## n=1 (I/O-bound)",
    ] {
        assert!(tables.contains(row), "missing {row} in:\n{tables}");
    }
    let single = tables
        .lines()
        .find(|l| l.starts_with("| `single` |"))
        .unwrap();
    assert!(
        single.contains('¹'),
        "single's second client must show as starved: {single}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        report["samples"].as_array().unwrap().len(),
        3 * 2 * 2,
        "3 rows x 2 client counts x 2 repetitions"
    );
    assert!(
        report["cells"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["median_rps"].as_f64().unwrap() > 0.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn fixture() -> BenchReport {
    let sample = |variant: &str, n: u32, clients: usize, rps: f64, starved: bool| Sample {
        variant: variant.into(),
        n,
        clients,
        repetition: 0,
        throughput_rps: rps,
        p50_us: 20,
        p99_us: 45,
        per_connection: if starved {
            vec![1, 0]
        } else {
            vec![1; clients]
        },
        errors: 0,
    };
    let samples = vec![
        sample("floor", 1, 1, 40_000.0, false),
        sample("floor", 1, 2, 100_000.0, false),
        sample("single", 1, 1, 38_000.0, false),
        sample("single", 1, 2, 39_000.0, true),
        sample("threads", 1, 1, 41_000.0, false),
        sample("threads", 1, 2, 95_000.0, false),
        sample("floor", 20, 1, 40_000.0, false),
        sample("floor", 20, 2, 100_000.0, false),
        sample("single", 20, 1, 19_000.0, false),
        sample("single", 20, 2, 19_500.0, true),
        sample("threads", 20, 1, 19_000.0, false),
        sample("threads", 20, 2, 45_000.0, false),
    ];
    BenchReport {
        scenario: "fixture".into(),
        about: "a fixed report".into(),
        date: "2026-11-23".into(),
        command: "fiblab bench fixture".into(),
        machine: Machine {
            cpu: "Test CPU".into(),
            cpus: 2,
            kernel: "6.0".into(),
            pinning: "none".into(),
        },
        duration_s: 1.0,
        warmup_s: 0.2,
        repetitions: 1,
        cells: report::aggregate(&samples),
        samples,
        starvation: vec![
            fiblab::bench::StarvationResult {
                variant: "threads".into(),
                heavy_n: 40,
                heavy_s: Some(0.95),
                light_before_rps: 40_000.0,
                light_during_rps: 30_000.0,
                kept: 0.75,
                timeline: vec![4000; 40],
                heavy_at_s: 1.5,
            },
            fiblab::bench::StarvationResult {
                variant: "tokio-current".into(),
                heavy_n: 40,
                heavy_s: Some(0.97),
                light_before_rps: 38_000.0,
                light_during_rps: 0.0,
                kept: 0.0,
                timeline: vec![0; 40],
                heavy_at_s: 1.5,
            },
        ],
        findings: vec![],
    }
}

#[test]
fn markdown_matches_golden_output() {
    let mut fixture = fixture();
    fixture.findings = fiblab::bench::findings::findings(&fixture);
    let actual = report::render_markdown(&fixture);
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/bench_tables.md");
    if std::env::var_os("FIBLAB_BLESS").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "bench_tables.md differs; if intended, FIBLAB_BLESS=1 cargo test --test bench\n{actual}"
    );
}
