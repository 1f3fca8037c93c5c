use super::*;
use crate::bench::results::BenchReport;

fn record(
    clients: usize,
    cap: Option<usize>,
    cpus: usize,
    cpu_us: Option<f64>,
    rps: f64,
) -> WaitingRecord {
    WaitingRecord {
        regime: "shared".into(),
        row: "m".into(),
        model: "m".into(),
        delay_ms: 10.0,
        clients,
        throughput_rps: rps,
        per_second: vec![rps * 0.98, rps, rps * 1.02],
        p50_us: 10_000,
        p99_us: 12_000,
        errors: 0,
        err_replies: 0,
        waited_ms: 10.0,
        most_waiting: clients as u64,
        backend_cpu_us: Some(9.0),
        concurrency_cap: cap,
        cpus,
        server_cpu_us: cpu_us,
        client_cpu_us: None,
        shared_cpus: None,
        threads: None,
        rss_kib: None,
    }
}

#[test]
fn the_bound_is_littles_law_then_the_cap_then_the_cpus() {
    // 100 clients waiting 10 ms: at most 10,000 req/s.
    let (b, limit) = bound(&record(100, None, 1, Some(20.0), 9_000.0));
    assert!(
        (b - 10_000.0).abs() < 1e-6 && limit == Limit::Waits,
        "{b} {limit:?}"
    );
    // A pool of 6 workers lets 6 wait: 600 req/s.
    let (b, limit) = bound(&record(100, Some(6), 2, Some(20.0), 590.0));
    assert!((b - 600.0).abs() < 1e-6 && limit == Limit::Cap);
    // 1,000 clients, one CPU at 200 µs a reply: 5,000 req/s, under N / W = 100,000.
    let (b, limit) = bound(&record(1000, None, 1, Some(200.0), 4_900.0));
    assert!((b - 5_000.0).abs() < 1e-6 && limit == Limit::Cpu);
    // Sharing 2 CPUs with the load generator (10 µs) and the downstream (5 µs): 2 CPUs /
    // 35 µs, under N / W and under the model's own 100,000.
    let shared = WaitingRecord {
        client_cpu_us: Some(10.0),
        backend_cpu_us: Some(5.0),
        shared_cpus: Some(2),
        ..record(1000, None, 2, Some(20.0), 50_000.0)
    };
    let (b, limit) = bound(&shared);
    assert!(
        (b - 2e6 / 35.0).abs() < 1e-6 && limit == Limit::Machine,
        "{b} {limit:?}"
    );
    // A cap above the clients does not bind.
    let (_, limit) = bound(&record(4, Some(6), 2, None, 390.0));
    assert_eq!(limit, Limit::Waits);
}

#[test]
fn the_share_carries_the_seconds_interval() {
    let s = share(&record(100, None, 1, None, 9_500.0));
    assert!((s.estimate - 0.95).abs() < 1e-9);
    assert!(s.ci_low < 0.95 && s.ci_high > 0.95, "{s:?}");
}

#[test]
fn caps_and_cpus_come_from_the_registry() {
    let find = |name| crate::models::find(name).unwrap();
    assert_eq!(concurrency_cap(find("single"), 8), Some(1));
    assert_eq!(concurrency_cap(find("prefork"), 2), Some(2));
    assert_eq!(concurrency_cap(find("threadpool"), 6), Some(6));
    assert_eq!(concurrency_cap(find("threads"), 6), None);
    assert_eq!(concurrency_cap(find("epoll"), 6), None);
    assert_eq!(find("epoll").work_cpus(false, 8), 1);
    assert_eq!(find("epoll").work_cpus(true, 8), 8);
    assert_eq!(find("tokio").work_cpus(false, 8), 8);
}

/// A report holding `rows` at 10 ms, each with one client (at 1 / W) and with 100 at
/// its req/s.
fn report(rows: &[(&str, Option<usize>, f64)]) -> BenchReport {
    let mut r = crate::bench::results::tests::report_of(Vec::new());
    let cell = |row: &str, clients, cap, rps| WaitingRecord {
        row: row.into(),
        model: row.trim_end_matches(" --gil").into(),
        regime: String::new(),
        ..record(clients, cap, 1, Some(10.0), rps)
    };
    r.waiting = Some(WaitingRecords {
        n: 1,
        duration_s: 3.0,
        jitter: 0.0,
        records: rows
            .iter()
            .flat_map(|&(row, cap, rps)| [cell(row, 1, cap, 99.0), cell(row, 100, cap, rps)])
            .collect(),
    });
    r
}

#[test]
fn the_findings_follow_the_cells() {
    use crate::bench::results::Verdict;
    let verdict = |r: &BenchReport, source: &str| {
        render::findings(r)
            .into_iter()
            .find(|f| f.source.starts_with(source))
            .map(|f| f.verdict)
            .unwrap()
    };
    // Threads overlap 100 waits, prefork two: threads win by far, and the GIL costs nothing.
    let good = report(&[
        ("threads", None, 9_500.0),
        ("threads --gil", None, 9_400.0),
        ("prefork", Some(2), 195.0),
        ("epoll", None, 9_600.0),
    ]);
    assert_eq!(verdict(&good, "seed 002, 多进程"), Verdict::Reproduces);
    assert_eq!(verdict(&good, "seed 002, GIL"), Verdict::Reproduces);
    // The I/O half holds; without the seed tables' CPU-bound cells it cannot be decided.
    assert_eq!(verdict(&good, "seed 003"), Verdict::Undecided);
    // A GIL held while waiting would serialize the waits.
    let held = report(&[("threads", None, 9_500.0), ("threads --gil", None, 95.0)]);
    assert_eq!(verdict(&held, "seed 002, GIL"), Verdict::Contradicts);
    // A loop that does not overlap the waits contradicts seed 003.
    let blocking_loop = report(&[("epoll", None, 95.0)]);
    assert_eq!(verdict(&blocking_loop, "seed 003"), Verdict::Contradicts);
    assert_eq!(
        verdict(&report(&[]), "seed 002, 多进程"),
        Verdict::NotMeasured
    );
}

#[test]
fn tables_name_every_row_and_the_limit() {
    let r = report(&[("threads", None, 9_500.0), ("prefork", Some(2), 195.0)]);
    let (tables, notes) = render::tables(r.waiting.as_ref().unwrap());
    assert_eq!(tables.len(), 2, "one per delay, and the detail");
    let detail = &tables[1];
    assert!(
        detail
            .rows
            .iter()
            .any(|row| row[0] == "`prefork`" && row[4] == "cap / W")
    );
    assert!(notes[0].contains("never the limit"), "{notes:?}");
}
