//! Tests of merging agents' reports.

use super::*;

/// A report of one class whose latencies are `samples`, µs.
fn report(samples: &[u64], segment: &str, started: f64) -> Report {
    let mut h = histogram(3);
    for &s in samples {
        h.record(s).unwrap();
    }
    let p = super::super::report::percentiles_of(&h);
    Report {
        schema: super::super::report::SCHEMA_VERSION,
        target: "127.0.0.1:25000".into(),
        mode: "open".into(),
        connections: 2,
        pipeline: 1,
        rate: Some(1000.0),
        threads: 1,
        spin: false,
        tick_us: 0.0,
        cpus: None,
        seed: 1,
        warmup_s: 0.0,
        measured_s: 1.0,
        throughput_rps: samples.len() as f64,
        requests_ok: samples.len() as u64,
        errors: super::super::stats::Errors {
            timeout: 1,
            ..Default::default()
        },
        unfinished: 2,
        sent: 0,
        missed: 3,
        classes: vec![ClassReport {
            label: "n=1".into(),
            weight: 1,
            requests_ok: samples.len() as u64,
            err_replies: 0,
            wrong: 0,
            latency_us: Percentiles {
                min: *samples.iter().min().unwrap(),
                max: *samples.iter().max().unwrap(),
                ..p.clone()
            },
            latency_sent_us: p,
            histogram: encode_histogram(&h),
            histogram_sent: encode_histogram(&h),
        }],
        per_connection: vec![samples.len() as u64, 0],
        per_second: vec![SecondReport {
            second: 0,
            span_s: 1.0,
            classes: vec![SecondClass {
                label: "n=1".into(),
                requests_ok: samples.len() as u64,
                p99_us: *samples.iter().max().unwrap(),
                errors: 0,
            }],
        }],
        // 10 µs of client CPU and one sleep per reply, in each agent.
        client: super::super::report::ClientCost::new(
            vec![0.5],
            false,
            Some(crate::load::ThreadCost {
                cpu_s: samples.len() as f64 * 10e-6,
                sleeps: samples.len() as u64,
                preempted: 0,
                calls: crate::load::report::Calls {
                    send: samples.len() as u64,
                    receive: 2 * samples.len() as u64,
                    ..Default::default()
                },
            }),
            samples.len() as u64,
        ),
        server: None,
        notes: Vec::new(),
        segment: Some(segment.into()),
        started_unix_s: Some(started),
        merged_from: 0,
    }
}

#[test]
fn merged_percentiles_are_those_of_one_histogram_of_every_sample() {
    // Two agents with very different latencies: an average of their p99s would be
    // far from the p99 of all samples.
    let fast: Vec<u64> = (1..=990).map(|i| 100 + i % 50).collect();
    let slow: Vec<u64> = (1..=10).map(|i| 20_000 + i * 100).collect();
    let a = report(&fast, "1/2", 1000.0);
    let b = report(&slow, "2/2", 1000.0);
    let merged = merge(&[a.clone(), b.clone()]).unwrap();
    let all: Vec<u64> = fast.iter().chain(&slow).copied().collect();
    let one = report(&all, "1/1", 1000.0);
    assert_eq!(merged.classes[0].latency_us, one.classes[0].latency_us);
    assert_eq!(merged.requests_ok, 1000);
    assert_eq!(merged.errors.timeout, 2);
    assert_eq!((merged.unfinished, merged.missed), (4, 6));
    assert_eq!(merged.rate, Some(2000.0));
    assert_eq!(merged.connections, 4);
    assert_eq!(merged.per_connection, [1000, 0]);
    assert_eq!(merged.merged_from, 2);
    // The client's cost: the agents' windows summed, over all their replies.
    assert_eq!(merged.client.cpu_us_per_request, Some(10.0));
    assert_eq!(merged.client.sleeps_per_request, Some(1.0));
    let calls = merged.client.calls_per_request.unwrap();
    assert_eq!((calls.total, calls.send, calls.receive), (3.0, 1.0, 2.0));
    assert_eq!(
        merged.client.window.unwrap().calls.receive,
        2 * merged.requests_ok
    );
    let avg_p99 = (a.classes[0].latency_us.p99 + b.classes[0].latency_us.p99) / 2;
    assert_ne!(merged.classes[0].latency_us.p99, avg_p99);
}

#[test]
fn seconds_line_up_on_the_wall_clock() {
    let a = report(&[100; 10], "1/2", 1000.0);
    let b = report(&[100; 20], "2/2", 1001.0);
    let merged = merge(&[a, b]).unwrap();
    let seconds: Vec<(u64, u64)> = merged
        .per_second
        .iter()
        .map(|s| (s.second, s.classes[0].requests_ok))
        .collect();
    assert_eq!(seconds, [(0, 10), (1, 20)]);
    assert!(
        merged
            .notes
            .iter()
            .any(|n| n.contains("started 1000.0 ms apart"))
    );
}

#[test]
fn reports_of_different_loads_are_refused() {
    let a = report(&[100], "1/2", 0.0);
    let mut b = report(&[100], "2/2", 0.0);
    b.mode = "closed".into();
    assert_eq!(
        merge(&[a.clone(), b]),
        Err(MergeError::Mismatch("open or closed loop"))
    );
    assert_eq!(merge(&[]), Err(MergeError::Empty));
    let mut c = report(&[100], "2/2", 0.0);
    c.classes[0].histogram = "not base64!".into();
    assert!(matches!(
        merge(&[a, c]),
        Err(MergeError::BadHistogram(2, _, _))
    ));
}

#[test]
fn only_the_parts_of_one_whole_are_merged() {
    let names: Vec<String> = ["a.json", "b.json", "c.json"].map(String::from).into();
    let a = report(&[100], "1/2", 0.0);
    let b = report(&[200], "2/2", 0.0);
    // The same report twice.
    let err = merge_named(&names, &[a.clone(), a.clone()], false).unwrap_err();
    assert_eq!(
        err,
        MergeError::Duplicate {
            first: "a.json".into(),
            second: "b.json".into()
        }
    );
    assert!(
        err.to_string()
            .contains("b.json is the same report as a.json")
    );
    // Two runs of agent 1/2 (different samples).
    let a2 = report(&[150], "1/2", 0.0);
    let err = merge_named(&names, &[a.clone(), a2], false).unwrap_err();
    assert!(matches!(err, MergeError::SameSegment { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("a.json and b.json are both agent 1/2")
    );
    // Agents of different splits.
    let third = report(&[100], "1/3", 0.0);
    let err = merge_named(&names, &[a.clone(), third], false).unwrap_err();
    assert!(
        err.to_string()
            .contains("a.json is agent 1/2 and b.json agent 1/3"),
        "{err}"
    );
    // Two whole loads are not two parts of one.
    let (mut w1, mut w2) = (a.clone(), b.clone());
    (w1.segment, w2.segment) = (None, None);
    assert!(matches!(
        merge(&[w1.clone(), w2]),
        Err(MergeError::SameSegment { .. })
    ));
    assert_eq!(merge(&[w1]).unwrap().requests_ok, 1);
    // An incomplete set only when asked, and then the report says so.
    let err = merge_named(&names[..1], std::slice::from_ref(&a), false).unwrap_err();
    assert!(
        err.to_string()
            .contains("agent 2/2 of the split is missing"),
        "{err}"
    );
    assert!(err.to_string().contains("a.json (agent 1/2)"), "{err}");
    let merged = merge_named(&names[..1], std::slice::from_ref(&a), true).unwrap();
    assert!(
        merged
            .notes
            .iter()
            .any(|n| n.contains("agent 2/2 of 2 missing")),
        "{:?}",
        merged.notes
    );
    // The whole, in any order.
    assert_eq!(merge_named(&names, &[b, a], false).unwrap().requests_ok, 2);
}
