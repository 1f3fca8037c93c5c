//! `fiblab bench` end to end on a tiny scenario (with a peer row and every output), and
//! its exporters (markdown, JSON, HTML, findings) against golden output.

mod common;

use std::process::Command;

use fiblab::bench::export::{html, json, markdown};
use fiblab::bench::results::PlotLink;
use fiblab::bench::{BenchReport, Machine, Sample, experiments};

#[test]
fn tiny_scenario_end_to_end() {
    let dir = std::env::temp_dir().join(format!("fiblab-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("tiny.toml");
    std::fs::write(
        &scenario,
        "name = 'tiny'\nabout = 'smoke'\nmodels = ['single', 'epoll']\nworkloads = [1]\nclients = [1, 2]\nduration = '200ms'\nwarmup = '50ms'\nrepetitions = 2\nagents = 2\n[starvation]\nlight_n = 1\nheavy_seconds = 0.3\nat = '500ms'\nlength = '1500ms'\n",
    )
    .unwrap();
    let json = dir.join("tiny.json");
    let out_dir = dir.join("out");
    // A peer: a server the bench did not start (here another fiblab, as the seeds'
    // Python servers would be), measured as a row of the same tables.
    let peer = common::Server::start("tokio", &[]);
    let out = Command::new(common::fiblab_bin())
        .args([
            "bench",
            scenario.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--target",
            &format!("peer={}", peer.addr),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "report.md",
        "report.json",
        "report.html",
        "throughput-n1.svg",
        "latency-n1-c2.svg",
        "starvation.svg",
    ] {
        let text = std::fs::read_to_string(out_dir.join(file))
            .unwrap_or_else(|e| panic!("{file} not written: {e}"));
        assert!(text.len() > 100, "{file} is nearly empty");
    }
    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(
        html.contains("<code>peer</code> †"),
        "the peer row is marked"
    );
    let tables = String::from_utf8_lossy(&out.stdout);
    for row in [
        "| `floor` |",
        "| `single` |",
        "| `epoll` |",
        "| `peer` † |",
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
        4 * 2 * 2,
        "4 rows x 2 client counts x 2 repetitions"
    );
    assert_eq!(
        report["starvation"].as_array().unwrap().len(),
        3,
        "single, epoll and the peer"
    );
    // Two clients' load split across two agents (one client each) and merged.
    assert_eq!(report["agents"], 2);
    assert!(tables.contains("split across 2 load agents"), "{tables}");
    assert!(
        report["cells"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["median_rps"].as_f64().unwrap() > 0.0)
    );
    // Drawn again from its JSON, the report is the same, measuring nothing.
    let replot_dir = dir.join("replot");
    let replot = Command::new(common::fiblab_bin())
        .args(["bench", "--replot"])
        .arg(out_dir.join("report.json"))
        .arg("--out")
        .arg(&replot_dir)
        .output()
        .unwrap();
    assert!(
        replot.status.success(),
        "{}",
        String::from_utf8_lossy(&replot.stderr)
    );
    // Drawn again, the report is the same but for the one note that says it was.
    let replot_note = "Drawn again by `fiblab bench --replot";
    let md = std::fs::read_to_string(replot_dir.join("report.md")).unwrap();
    assert_eq!(md.matches(replot_note).count(), 1, "{md}");
    let without_note = |text: &str| {
        text.lines()
            .filter(|l| !l.contains(replot_note))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        without_note(&md),
        without_note(&std::fs::read_to_string(out_dir.join("report.md")).unwrap()),
        "report.md drawn again differs"
    );
    let json = |dir: &std::path::Path| {
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap())
                .unwrap();
        if let Some(notes) = v["notes"].as_array_mut() {
            notes.retain(|n| !n.as_str().unwrap_or("").starts_with("Drawn again by"));
        }
        v
    };
    assert_eq!(
        json(&replot_dir),
        json(&out_dir),
        "report.json drawn again differs"
    );
    assert_eq!(
        std::fs::read_to_string(replot_dir.join("starvation.svg")).unwrap(),
        std::fs::read_to_string(out_dir.join("starvation.svg")).unwrap(),
        "starvation.svg drawn again differs"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn fixture() -> BenchReport {
    let sample = |variant: &str, n: u32, clients: usize, rps: f64, starved: bool| Sample {
        regime: String::new(),
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
        histogram: String::new(),
        client: Some(fiblab::bench::results::ClientUse {
            cpu_us_per_request: 6.5,
            busiest: if variant == "go" && clients == 2 {
                0.95
            } else {
                0.4
            },
        }),
    };
    let base = vec![
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
        sample("go", 1, 1, 30_000.0, false),
        sample("go", 1, 2, 60_000.0, false),
        sample("go", 20, 1, 18_000.0, false),
        sample("go", 20, 2, 35_000.0, false),
    ];
    // Three repetitions of every cell, a few percent apart, so that every interval,
    // ratio interval and tier has something to show.
    let samples: Vec<Sample> = [1.0, 0.97, 1.04]
        .iter()
        .enumerate()
        .flat_map(|(repetition, scale)| {
            base.iter().map(move |s| Sample {
                repetition,
                throughput_rps: (s.throughput_rps * scale).round(),
                ..s.clone()
            })
        })
        .collect();
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
        repetitions: 3,
        agents: 1,
        rate: None,
        cells: fiblab::bench::results::aggregate(&samples),
        samples,
        starvation: vec![
            fiblab::bench::StarvationResult {
                regime: String::new(),
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
                regime: String::new(),
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
        peers: vec!["go=127.0.0.1:50000".parse().unwrap()],
        notes: vec![],
        settings: vec!["`threadpool` 6 workers, queue 64".into()],
        calibration: None,
        regimes: vec![],
        python: None,
        connections: Some(connections_fixture()),
        knee: Some(knee_fixture()),
        waiting: None,
        scaleout: None,
        race: None,
    }
}

/// Two models holding 100 and 1,000 idle connections, with 1 and 16 active clients.
fn connections_fixture() -> fiblab::bench::results::ConnectionRecords {
    use fiblab::bench::results::{ActiveLoad, ConnectionRecord, ConnectionRecords};
    let active = |clients: usize, p50: u64| ActiveLoad {
        clients,
        throughput_rps: 1e6 / p50 as f64 * clients as f64,
        requests_ok: 10_000,
        p50_us: p50,
        p99_us: p50 * 2,
        p99_9_us: p50 * 3,
        timeouts: 0,
        err_replies: 0,
        failed: 0,
        histogram: String::new(),
    };
    let record = |row: &str, idle: usize, p50: u64, rss: f64, threads: f64| ConnectionRecord {
        regime: String::new(),
        row: row.into(),
        model: row.into(),
        stack_size: None,
        idle,
        held: idle,
        waiting: 0,
        outcome: format!("{idle} answered"),
        stopped: None,
        open_s: idle as f64 / 10_000.0,
        descriptors: Some(1.0),
        rss_kib: Some(rss),
        vsz_kib: Some(if threads > 0.0 { 2100.0 } else { rss }),
        threads: Some(threads),
        idle_read_us: Some(0.3),
        active: vec![active(1, p50), active(16, p50 * 2)],
    };
    ConnectionRecords {
        n: 1,
        duration_s: 1.0,
        limits: vec!["descriptors per process: 20,000 (hard 20,000)".into()],
        records: vec![
            record("threads", 100, 80, 25.0, 1.0),
            record("threads", 1000, 82, 19.0, 1.0),
            record("tokio-current", 100, 70, 1.2, 0.0),
            record("tokio-current", 1000, 71, 1.8, 0.0),
        ],
    }
}

/// A knee sweep for a model and the peer at n=1.
fn knee_fixture() -> fiblab::bench::results::KneeRecords {
    use fiblab::bench::results::{
        KneeRecords, KneeStep, KneeSweep, KneeWorkloadRecord, RequestCost, StepVerdict,
    };
    let step = |offered: f64, p99: u64, verdict: StepVerdict| KneeStep {
        offered_rps: offered,
        achieved_rps: offered,
        p50_us: 80,
        p99_us: p99,
        p99_9_us: p99 * 2,
        failed: 0,
        timeouts: 0,
        missed: 0,
        client_busy: 0.3,
        // Fewer sleeps per request at higher rates: the next request is often waiting.
        server: Some(RequestCost {
            cpu_us: 4.0,
            sleeps: 16_000.0 / offered / 4.0,
            preempted: 0.0,
            calls: None,
        }),
        client: None,
        verdict,
        histogram: String::new(),
    };
    let sweep = |row: &str, knee: f64, round: usize| KneeSweep {
        regime: String::new(),
        row: row.into(),
        workload: "n=1".into(),
        round,
        steps: vec![
            step(knee / 2.0, 300, StepVerdict::Sustained),
            step(knee, 800, StepVerdict::Sustained),
            step(knee * 2.0, 4000, StepVerdict::Tail),
        ],
        ended: format!(
            "at {} req/s offered: p99 above the SLO (p99 4,000 µs)",
            knee * 2.0
        ),
        set_aside: false,
    };
    KneeRecords {
        tick_us: 0.0,
        connections: 64,
        pipeline: 1,
        step_s: 1.0,
        workloads: vec![KneeWorkloadRecord {
            label: "n=1".into(),
            mix: "1".into(),
            slo_us: 1000,
        }],
        // Three sweeps each, interleaved as the experiment runs them.
        sweeps: [1.0, 0.9, 1.2]
            .iter()
            .enumerate()
            .flat_map(|(round, scale)| {
                [
                    sweep("threads", 32_000.0 * scale, round),
                    sweep("go", 16_000.0 * scale, round),
                ]
            })
            .collect(),
    }
}

fn fixture_with_findings() -> BenchReport {
    let mut fixture = fixture();
    fixture.findings = experiments::findings(&fixture);
    fixture
}

#[test]
fn markdown_matches_golden_output() {
    let links = [PlotLink {
        title: "fib(1): requests per second against clients".into(),
        href: "bench/throughput-n1.svg".into(),
    }];
    common::golden(
        "bench_tables.md",
        &markdown::render(&fixture_with_findings(), &links),
    );
}

#[test]
fn json_matches_golden_output() {
    common::golden(
        "bench_report.json",
        &(json::render(&fixture_with_findings()) + "\n"),
    );
}

#[test]
fn html_matches_golden_output_and_embeds_every_plot() {
    let fixture = fixture_with_findings();
    let plots = experiments::plots(&fixture).unwrap();
    let html = html::render(&fixture, &plots);
    for p in &plots {
        assert!(
            html.contains(&format!(
                "<figure id=\"{}\">",
                p.file.trim_end_matches(".svg")
            )),
            "{} not embedded",
            p.file
        );
    }
    assert_eq!(html.matches("<svg").count(), plots.len());
    // The page without the SVGs (plotters' output may change between its versions).
    let without_svg: String = html
        .split("<svg")
        .enumerate()
        .map(|(i, part)| match i {
            0 => part.to_string(),
            _ => format!("<svg/>{}", part.split_once("</svg>").map_or("", |p| p.1)),
        })
        .collect();
    common::golden("bench_report.html", &without_svg);
}

/// `--replot` prints the pools that ran for every experiment's rows, not only the seed
/// tables': a knee report's models are in its sweeps alone.
#[test]
fn replot_settings_name_the_pools_of_every_experiments_rows() {
    let mut report = fixture();
    report.cells.clear();
    report.connections = None;
    let mut knee = knee_fixture();
    for sweep in &mut knee.sweeps {
        if sweep.row == "threads" {
            sweep.row = "threadpool".into();
        }
    }
    report.knee = Some(knee);
    let settings = fiblab::bench::settings_of_report(&report);
    assert!(
        settings.iter().any(|s| s.starts_with("`threadpool` ")),
        "{settings:?}"
    );
    // `go`, a peer, is no server of fiblab's own.
    assert!(settings.iter().all(|s| !s.contains("go")), "{settings:?}");
}

/// `--dry-run` says what `quick` would do, measuring nothing: its regimes, the probes
/// and where they run, the race and the whole command's budget; and a report path that
/// cannot be written is refused before anything runs.
#[test]
fn a_dry_run_says_the_plan_and_unwritable_outputs_fail_at_once() {
    let started = std::time::Instant::now();
    let out = Command::new(common::fiblab_bin())
        .args(["bench", "quick", "--dry-run"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for needed in [
        "dry run",
        "seed tables",
        "waiting",
        "connections",
        "race",
        "285 s",
    ] {
        assert!(text.contains(needed), "{needed} missing from:\n{text}");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let out = Command::new(common::fiblab_bin())
        .args(["bench", "quick", "--out", "/proc/fiblab-no"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(error.contains("--out"), "{error}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "refused late"
    );
}
