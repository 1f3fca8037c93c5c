use super::*;

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
        waited_ms: 10.0,
        most_waiting: clients as u64,
        backend_cpu_us: Some(9.0),
        concurrency_cap: cap,
        cpus,
        server_cpu_us: cpu_us,
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
    assert_eq!(work_cpus(find("epoll"), false, 8), 1);
    assert_eq!(work_cpus(find("epoll"), true, 8), 8);
    assert_eq!(work_cpus(find("tokio"), false, 8), 8);
}
