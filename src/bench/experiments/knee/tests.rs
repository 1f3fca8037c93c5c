//! The knee's sweep policy, verdicts, tables, tiers and ranking on fixed records.

use super::*;

pub(crate) fn step(offered: f64, achieved: f64, p99: u64, verdict: StepVerdict) -> KneeStep {
    KneeStep {
        offered_rps: offered,
        achieved_rps: achieved,
        p50_us: p99 / 3,
        p99_us: p99,
        p99_9_us: p99 * 2,
        failed: 0,
        timeouts: 0,
        missed: 0,
        client_busy: 0.4,
        // A fixed cost whose sleeps grow with the tail, so rows differ.
        server: Some(RequestCost {
            cpu_us: 5.0,
            sleeps: p99 as f64 / 1200.0,
            preempted: 0.0,
            calls: None,
        }),
        client: None,
        verdict,
        histogram: String::new(),
    }
}

#[test]
fn a_step_whose_client_spent_more_than_the_server_is_marked() {
    let cost = |cpu_us| {
        Some(RequestCost {
            cpu_us,
            sleeps: 1.0,
            preempted: 0.0,
            calls: Some(2.6),
        })
    };
    let lean = KneeStep {
        client: cost(2.5),
        ..step(1000.0, 1000.0, 100, StepVerdict::Sustained)
    };
    let heavy = KneeStep {
        client: cost(9.0),
        ..lean.clone()
    };
    assert_eq!(
        server_cell(&lean),
        "5.0 µs CPU, 0.08 sleeps, 0.00 preempted; client 2.5 µs CPU, 1.00 sleeps, 2.60 system calls"
    );
    assert!(server_cell(&heavy).ends_with("client 9.0 µs CPU, 1.00 sleeps, 2.60 system calls ¤"));
    let sweep = KneeSweep {
        regime: String::new(),
        row: "epoll".into(),
        workload: "n=1".into(),
        round: 0,
        steps: vec![heavy],
        ended: String::new(),
        set_aside: false,
    };
    assert!(client_note(&[&sweep]).contains("¤ where it spent more CPU"));
    assert_eq!(client_note(&[]), "");
}

#[test]
fn a_sweep_the_client_ended_says_what_each_side_spent_there() {
    let cost = |cpu_us| {
        Some(RequestCost {
            cpu_us,
            sleeps: 0.1,
            preempted: 0.0,
            calls: None,
        })
    };
    let sustained = KneeStep {
        client: cost(9.0),
        ..step(64_000.0, 64_000.0, 100, StepVerdict::Sustained)
    };
    let saturated = KneeStep {
        client: cost(7.4),
        server: cost(7.0),
        ..step(128_000.0, 120_000.0, 900, StepVerdict::ClientLimit)
    };
    let mut sweep = KneeSweep {
        regime: String::new(),
        row: "epoll".into(),
        workload: "n=1".into(),
        round: 0,
        steps: vec![sustained, saturated],
        ended: String::new(),
        set_aside: false,
    };
    assert_eq!(
        client_share(&sweep).unwrap(),
        "there the client spent 7.4 µs of CPU per request and the server 7.0 (1.06x): alike, as on loopback each side's write runs the other's receive, so one client CPU loads about one server CPU"
    );
    // A server woken for every request makes its client pay the waking.
    sweep.steps[1].server = Some(RequestCost {
        sleeps: 1.0,
        ..cost(2.8).unwrap()
    });
    assert!(
        client_share(&sweep)
            .unwrap()
            .ends_with("(2.64x): the server slept 1.00 times per request, and on loopback the client's write runs its receive and wakes it"),
        "{:?}",
        client_share(&sweep)
    );
    // Far apart for no reason the figures give: the figures alone.
    sweep.steps[1].server = cost(2.8);
    assert!(client_share(&sweep).unwrap().ends_with("(2.64x)"));
    // A sweep the server ended, or a step without the client's cost, says nothing.
    sweep.steps[1].verdict = StepVerdict::Behind;
    assert_eq!(client_share(&sweep), None);
    sweep.steps[1].verdict = StepVerdict::ClientLimit;
    sweep.steps[1].client = None;
    assert_eq!(client_share(&sweep), None);
}

/// A server that sustains up to `capacity` req/s with a p99 of 100 µs, and a client
/// that saturates at `client` req/s.
fn server(capacity: f64, client: f64) -> impl FnMut(f64) -> io::Result<KneeStep> {
    move |rate| {
        let achieved = rate.min(capacity);
        let busy = (rate / client).min(1.0);
        let p99 = if rate <= capacity { 100 } else { 5_000 };
        let verdict = judge(rate, achieved, rate, 0, 0, p99, busy, 1000);
        Ok(KneeStep {
            client_busy: busy,
            server: None,
            ..step(rate, achieved, p99, verdict)
        })
    }
}

const PLAN: Plan = Plan {
    start: 1000.0,
    factor: 2.0,
    refine: 2,
    max: 1_000_000.0,
};

#[test]
fn a_tail_while_the_server_idles_does_not_end_the_climb() {
    // Every reply wakes the server below 4,000 req/s (a 3 ms p99 at 20 µs of CPU per
    // request: 2-6% busy); from there it stays awake and sustains up to 10,000.
    let server = |rate: f64| {
        let achieved = rate.min(10_000.0);
        let p99 = match rate {
            r if r < 4000.0 => 3_000,
            r if r <= 10_000.0 => 100,
            _ => 5_000,
        };
        let verdict = judge(rate, achieved, rate, 0, 0, p99, 0.3, 1000);
        Ok(KneeStep {
            server: Some(RequestCost {
                cpu_us: 20.0,
                sleeps: if rate < 4000.0 { 1.0 } else { 0.2 },
                preempted: 0.0,
                calls: None,
            }),
            ..step(rate, achieved, p99, verdict)
        })
    };
    let (steps, ended) = sweep(PLAN, server).unwrap();
    let swept = KneeSweep {
        regime: String::new(),
        row: "x".into(),
        workload: "n=1".into(),
        round: 0,
        steps,
        ended: ended.clone(),
        set_aside: false,
    };
    let knee = swept.knee().unwrap().offered_rps;
    assert!((8000.0..=10_000.0).contains(&knee), "{knee}: {ended}");
    // No lower rates tried: below the start the server idles even more.
    assert!(swept.steps.iter().all(|s| s.offered_rps >= 1000.0));
    assert!(
        ended.contains("below the knee, not sustained: p99 3,000 µs at 1,000 req/s"),
        "{ended}"
    );
    assert!(
        ended.contains("at most 4% busy and slept 1.00-1.00 times per request"),
        "{ended}"
    );
    // A busy server's tail still ends the climb.
    let busy = |rate: f64| {
        let verdict = judge(rate, rate, rate, 0, 0, 3_000, 0.3, 1000);
        Ok(KneeStep {
            server: Some(RequestCost {
                cpu_us: 900.0,
                sleeps: 0.0,
                preempted: 0.0,
                calls: None,
            }),
            ..step(rate, rate, 3_000, verdict)
        })
    };
    let (steps, _) = sweep(PLAN, busy).unwrap();
    assert!(steps.iter().all(|s| s.offered_rps <= 1000.0), "{steps:?}");
}

#[test]
fn a_sweep_doubles_until_a_step_fails_then_refines_between() {
    let (steps, ended) = sweep(PLAN, server(10_000.0, 1e9)).unwrap();
    let offered: Vec<f64> = steps.iter().map(|s| s.offered_rps.round()).collect();
    // 1k, 2k, 4k, 8k sustained; 16k behind; refined at sqrt(8k x 16k) and between.
    assert_eq!(offered[..5], [1000.0, 2000.0, 4000.0, 8000.0, 16000.0]);
    assert_eq!(steps.len(), 7);
    let knee = KneeSweep {
        regime: String::new(),
        row: "x".into(),
        workload: "n=1".into(),
        round: 0,
        steps,
        ended: ended.clone(),
        set_aside: false,
    };
    let best = knee.knee().unwrap().offered_rps;
    assert!((8000.0..=10_000.0).contains(&best), "{best}");
    assert!(
        ended.starts_with("at 11,314 req/s offered: fell behind"),
        "{ended}"
    );
}

#[test]
fn one_tail_at_a_low_rate_does_not_end_the_climb() {
    let mut noisy = server(10_000.0, 1e9);
    let mut stalled = false;
    let (steps, ended) = sweep(PLAN, move |rate| {
        let mut s = noisy(rate)?;
        // One stall, at 2,000 req/s: its second measurement is clean.
        if rate == 2000.0 && !stalled {
            stalled = true;
            s.p99_us = 1500;
            s.verdict = StepVerdict::Tail;
        }
        Ok(s)
    })
    .unwrap();
    let knee = steps
        .iter()
        .filter(|s| s.verdict == StepVerdict::Sustained)
        .map(|s| s.offered_rps)
        .fold(0.0, f64::max);
    assert!(knee >= 8000.0, "{knee}");
    assert!(
        ended.contains("below the knee, not sustained: p99 1,500 µs at 2,000 req/s"),
        "{ended}"
    );
}

#[test]
fn a_saturated_client_ends_the_sweep_as_the_clients_limit() {
    let (steps, ended) = sweep(PLAN, server(1e9, 5000.0)).unwrap();
    assert_eq!(steps.last().unwrap().verdict, StepVerdict::ClientLimit);
    assert!(
        ended.starts_with("the load generator was saturated at 8,000 req/s offered"),
        "{ended}"
    );
    assert!(ended.contains("the server's knee is above"), "{ended}");
    // Never reported as the server's knee: the last sustained step is below it.
    assert_eq!(
        steps
            .iter()
            .filter(|s| s.verdict == StepVerdict::Sustained)
            .count(),
        3
    );
}

#[test]
fn a_slow_server_is_tried_lower_and_a_fast_one_stops_at_the_top() {
    let (steps, _) = sweep(PLAN, server(300.0, 1e9)).unwrap();
    let offered: Vec<f64> = steps.iter().map(|s| s.offered_rps.round()).collect();
    assert_eq!(offered, [1000.0, 500.0, 250.0, 354.0, 297.0]);
    let (steps, ended) = sweep(
        Plan {
            max: 4000.0,
            ..PLAN
        },
        server(1e9, 1e9),
    )
    .unwrap();
    assert_eq!(steps.len(), 3);
    assert!(
        ended.starts_with("sustained the sweep's top rate"),
        "{ended}"
    );
}

#[test]
fn judging_puts_the_client_first_then_errors_pace_and_tail() {
    let j = |achieved, failed, missed, p99, busy| {
        judge(1000.0, achieved, 1000.0, failed, missed, p99, busy, 100)
    };
    assert_eq!(j(1000.0, 0, 0, 10, 0.95), StepVerdict::ClientLimit);
    assert_eq!(j(1000.0, 2, 0, 10, 0.5), StepVerdict::Errors);
    assert_eq!(j(1000.0, 1, 1, 10, 0.5), StepVerdict::Sustained);
    assert_eq!(j(980.0, 0, 0, 10, 0.5), StepVerdict::Behind);
    assert_eq!(j(1000.0, 0, 5, 10, 0.5), StepVerdict::Behind);
    assert_eq!(j(995.0, 0, 0, 101, 0.5), StepVerdict::Tail);
}

pub(crate) fn records() -> KneeRecords {
    let sweep = |row: &str, workload: &str, knee: f64, broke: StepVerdict| KneeSweep {
        regime: String::new(),
        row: row.into(),
        workload: workload.into(),
        round: 0,
        steps: vec![
            step(knee / 2.0, knee / 2.0, 200, StepVerdict::Sustained),
            step(knee, knee, 600, StepVerdict::Sustained),
            step(knee * 2.0, knee * 1.2, 9_000, broke),
        ],
        ended: format!(
            "at {} req/s offered: {}",
            thousands(knee * 2.0),
            broke.label()
        ),
        set_aside: false,
    };
    KneeRecords {
        tick_us: 0.0,
        connections: 16,
        pipeline: 8,
        step_s: 1.0,
        workloads: vec![
            KneeWorkloadRecord {
                label: "n=1".into(),
                mix: "1".into(),
                slo_us: 1000,
            },
            KneeWorkloadRecord {
                label: "mix 1:99,30:1".into(),
                mix: "1:99,30:1".into(),
                slo_us: 10_000,
            },
        ],
        sweeps: vec![
            sweep("threads", "n=1", 64_000.0, StepVerdict::Tail),
            sweep("epoll", "n=1", 128_000.0, StepVerdict::Behind),
            sweep("redis", "n=1", 100_000.0, StepVerdict::Tail),
            sweep("threads", "mix 1:99,30:1", 16_000.0, StepVerdict::Behind),
            sweep("epoll", "mix 1:99,30:1", 2_000.0, StepVerdict::Tail),
        ],
    }
}

#[test]
fn a_break_the_floor_shares_is_the_machines() {
    let mut k = records();
    let floor = KneeSweep {
        regime: String::new(),
        row: FLOOR.into(),
        workload: "n=1".into(),
        round: 0,
        steps: vec![
            step(100_000.0, 100_000.0, 500, StepVerdict::Sustained),
            step(200_000.0, 200_000.0, 3_000, StepVerdict::Tail),
        ],
        ended: String::new(),
        set_aside: false,
    };
    k.sweeps.push(floor);
    let threads = k
        .sweeps
        .iter()
        .find(|s| s.row == "threads" && s.workload == "n=1")
        .unwrap();
    // threads broke at 128,000: the floor sustained 100,000, the nearest below.
    assert_eq!(machine_share(&k, threads), None);
    let epoll = k
        .sweeps
        .iter()
        .find(|s| s.row == "epoll" && s.workload == "n=1")
        .unwrap();
    // epoll broke at 256,000: the floor failed at 200,000.
    let why = machine_share(&k, epoll).unwrap();
    assert!(
        why.starts_with("the floor failed there too (p99 3,000 µs at 200,000 req/s)"),
        "{why}"
    );
}

#[test]
fn the_ranking_is_computed_and_names_the_peer_comparison() {
    let mut r = crate::bench::results::tests::report_of(Vec::new());
    r.peers.push(crate::bench::results::Target {
        name: "redis".into(),
        addr: "127.0.0.1:6379".parse().unwrap(),
        ping: true,
    });
    r.knee = Some(records());
    let tables = Knee.tables(&r).0;
    assert_eq!(tables.len(), 3);
    assert_eq!(tables[0].rows[1][1], "128,000");
    assert_eq!(tables[0].rows[1][6], "-", "no calibration, no capacity");
    assert_eq!(
        tables[0].rows[1][8],
        "5.0 µs CPU, 0.50 sleeps, 0.00 preempted"
    );
    r.calibration = Some(crate::bench::predict::tests::calibration());
    let tables = Knee.tables(&r).0;
    let threads = &tables[0].rows[0];
    assert_ne!(threads[6], "-", "{threads:?}");
    assert_eq!(
        tables[1].rows[0][6], "-",
        "a mix has no single n to predict"
    );
    let ranking = tables.last().unwrap();
    let order: Vec<(&str, &str)> = ranking
        .rows
        .iter()
        .map(|row| (row[0].as_str(), row[2].as_str()))
        .collect();
    assert_eq!(
        order,
        [
            ("n=1", "`epoll`"),
            ("n=1", "`redis` †"),
            ("n=1", "`threads`"),
            ("mix 1:99,30:1", "`threads`"),
            ("mix 1:99,30:1", "`epoll`")
        ]
    );
    assert!(
        ranking.intro.contains("n=1: fiblab's best, `epoll`, sustains 128,000 req/s with p99 under 1 ms; `redis` 100,000 req/s: fiblab ahead (1.28x); per request, `epoll` at 64,000 req/s against `redis` at 100,000: CPU 5.0 vs 5.0 µs, sleeps 0.17 vs 0.50"),
        "{}",
        ranking.intro
    );
    let plots = Knee.plots(&r).unwrap();
    assert_eq!(plots.len(), 2);
    assert!(plots[0].svg.contains("SLO 1 ms"));
}

/// `records()` swept three times: each knee scaled by the round's factor.
fn three_sweeps(scales: [f64; 3]) -> KneeRecords {
    let one = records();
    let mut k = records();
    k.sweeps = scales
        .iter()
        .enumerate()
        .flat_map(|(round, &scale)| {
            one.sweeps.iter().map(move |s| KneeSweep {
                round,
                steps: s
                    .steps
                    .iter()
                    .map(|x| KneeStep {
                        offered_rps: x.offered_rps * scale,
                        ..x.clone()
                    })
                    .collect(),
                ..s.clone()
            })
        })
        .collect();
    k
}

#[test]
fn three_sweeps_give_a_median_knee_its_range_and_tiers() {
    let mut r = crate::bench::results::tests::report_of(Vec::new());
    r.knee = Some(three_sweeps([1.0, 0.97, 1.03]));
    let tables = Knee.tables(&r).0;
    let epoll = &tables[0].rows[1];
    assert_eq!(epoll[1], "128,000 [124,160–131,840] (range, 75%)");
    assert_eq!(epoll[2], "128,000 / 124,160 / 131,840");
    let ranking = tables.last().unwrap();
    let tiers: Vec<(&str, &str)> = ranking
        .rows
        .iter()
        .filter(|row| row[0] == "n=1")
        .map(|row| (row[1].as_str(), row[2].as_str()))
        .collect();
    // 128k, 100k and 64k, 3% apart between sweeps; but each sweep broke at twice its
    // knee, so a knee is known only within a factor of 2: 128k and 100k cannot be told
    // apart, 128k and 64k can.
    assert_eq!(
        tiers,
        [("1", "`epoll`"), ("1", "`redis`"), ("2", "`threads`")]
    );
    // Sweeps as far apart as the rows: one tier.
    r.knee = Some(three_sweeps([1.0, 0.5, 2.0]));
    let tables = Knee.tables(&r).0;
    let ranking = tables.last().unwrap();
    assert!(
        ranking
            .rows
            .iter()
            .filter(|row| row[0] == "n=1")
            .all(|row| row[1] == "1"),
        "{:?}",
        ranking.rows
    );
}

#[test]
fn a_knee_at_the_client_limit_ties_with_every_row_above() {
    let mut k = three_sweeps([1.0, 0.97, 1.03]);
    for s in k.sweeps.iter_mut().filter(|s| s.row == "threads") {
        s.steps.last_mut().unwrap().verdict = StepVerdict::ClientLimit;
    }
    let mut r = crate::bench::results::tests::report_of(Vec::new());
    r.knee = Some(k);
    let tables = Knee.tables(&r).0;
    let ranking = tables.last().unwrap();
    let threads = ranking
        .rows
        .iter()
        .find(|row| row[0] == "n=1" && row[2] == "`threads`")
        .unwrap();
    assert_eq!(threads[1], "1");
    assert!(threads[3].starts_with("≥ 64,000"), "{threads:?}");
}

/// A round in which every row's knee fell together (the machine moved) is found, and
/// once set aside its sweeps leave the knees; a round within the noise is not.
#[test]
fn a_round_where_every_knee_fell_at_once_is_set_aside() {
    use super::records::disturbed_round;
    let calm = three_sweeps([1.0, 0.8, 1.1]);
    assert_eq!(disturbed_round(&calm.sweeps), None);
    let mut shaken = three_sweeps([1.0, 0.05, 1.02]);
    let (round, effect) = disturbed_round(&shaken.sweeps).expect("round 2 fell");
    assert_eq!(round, 1);
    assert!(effect < 0.1, "{effect}");
    let row = shaken.sweeps[0].row.clone();
    let workload = shaken.sweeps[0].workload.clone();
    assert_eq!(knees(&shaken, &row, &workload).len(), 3);
    for s in shaken.sweeps.iter_mut().filter(|s| s.round == 1) {
        s.set_aside = true;
    }
    assert_eq!(knees(&shaken, &row, &workload).len(), 2, "set aside");
    assert_eq!(
        disturbed_round(&shaken.sweeps),
        None,
        "two rounds left: no more"
    );
}

/// The knee's race: in tier 1, the rows the sweeps could not yet separate from the
/// leader by more than the indifference zone are swept again, with the leader; a row
/// already ruled out is not, nor a gap inside the zone.
#[test]
fn the_knee_races_only_an_open_tier_1() {
    let k = three_sweeps([1.0, 0.97, 1.03]);
    let open = contenders(&k, 0.05);
    assert_eq!(
        open,
        vec![
            ("epoll".to_string(), "n=1".to_string()),
            ("redis".to_string(), "n=1".to_string())
        ],
        "threads is 2x below, in tier 2; the mix is decided"
    );
    assert!(contenders(&k, 0.5).is_empty(), "1.28x is inside a 50% zone");
}
