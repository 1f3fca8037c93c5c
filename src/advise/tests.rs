use super::*;
use crate::calibrate::{FibCost, MachineFacts, Measure};

fn m(us: f64) -> Option<Measure> {
    Some(Measure {
        median_us: us,
        spread: 0.0,
    })
}

/// A 2-CPU machine with round numbers: fib(20) 30 µs (fib(30) about 3.7 ms).
fn machine(descriptor_limit: u64) -> Calibration {
    Calibration {
        schema: crate::calibrate::SCHEMA,
        machine: MachineFacts {
            cpu: "test CPU".into(),
            cpus: 2,
            online_cpus: 2,
            descriptor_limit,
            ..MachineFacts::default()
        },
        rtt_same_cpu: m(15.0),
        rtt_two_cpus: m(60.0),
        rtt_spinning: m(10.0),
        rtt_unpinned: m(40.0),
        rtt_client_spinning: m(30.0),
        loadgen_same_cpu: m(18.0),
        wake_up: m(25.0),
        pipe_round_trip: m(20.0),
        handoff: m(10.0),
        epoll_1: m(0.5),
        select_1: m(1.0),
        fib: vec![FibCost {
            n: 20,
            cost: m(30.0).unwrap(),
        }],
        fib_interpreted: vec![FibCost {
            n: 20,
            cost: m(900.0).unwrap(),
        }],
        ..Calibration::default()
    }
}

fn service(n: u32, wait_ms: f64, clients: usize) -> Service {
    Service {
        n,
        asked_cpu_us: None,
        wait_us: wait_ms * 1e3,
        clients,
        slo_p99_us: None,
    }
}

fn find<'a>(a: &'a Advice, model: &str) -> &'a ModelAdvice {
    a.models.iter().find(|m| m.model == model).unwrap()
}

#[test]
fn every_model_is_predicted_and_the_advised_one_is_in_tier_1() {
    let a = advise(&machine(1 << 20), &service(20, 0.0, 2), "test");
    assert_eq!(a.models.len(), MODELS.len());
    let advised = find(&a, a.advised.unwrap());
    assert_eq!(advised.tier, 1);
    // Best first: nothing below tier 1 is faster than tier 1's best low.
    let best = a
        .models
        .iter()
        .filter(|m| m.tier == 1)
        .map(|m| m.low)
        .fold(0.0, f64::max);
    for m in a.models.iter().filter(|m| m.tier == 2) {
        assert!(m.high < best * (1.0 - THRESHOLD), "{m:?}");
    }
}

#[test]
fn a_model_that_serves_one_client_at_a_time_cannot_serve_two() {
    let a = advise(&machine(1 << 20), &service(20, 0.0, 2), "test");
    let single = find(&a, "single");
    assert_eq!(single.tier, 0);
    assert!(
        single
            .cannot
            .as_ref()
            .unwrap()
            .contains("the other 1 clients are never answered"),
        "{single:?}"
    );
    let alone = advise(&machine(1 << 20), &service(20, 0.0, 1), "test");
    assert!(find(&alone, "single").cannot.is_none());
}

#[test]
fn waits_hold_every_model_to_littles_law() {
    // 100 clients each waiting 10 ms: at most 100 / 10 ms = 10,000 req/s.
    let a = advise(&machine(1 << 20), &service(1, 10.0, 100), "test");
    for m in a.models.iter().filter(|m| m.cannot.is_none()) {
        assert!(m.high <= 10_000.0, "{m:?}");
    }
    let epoll = find(&a, "epoll");
    assert!(epoll.high > 9_000.0, "{epoll:?}");
    assert!(
        epoll.limit.starts_with("Little's law: 100 requests"),
        "{epoll:?}"
    );
    // The mean latency is the wait and the path: N / X.
    assert!(epoll.mean_latency_us[0] >= 10_000.0);
}

#[test]
fn select_is_refused_past_fd_setsize_and_every_model_past_the_descriptor_limit() {
    // 600 clients with waits: 1,200 sockets and the server's own.
    let a = advise(&machine(1 << 20), &service(1, 5.0, 600), "test");
    let select = find(&a, "select");
    assert!(
        select.cannot.as_ref().unwrap().contains("FD_SETSIZE"),
        "{select:?}"
    );
    let tight = advise(&machine(1024), &service(1, 5.0, 600), "test");
    assert!(
        find(&tight, "epoll")
            .cannot
            .as_ref()
            .unwrap()
            .contains("ulimit -n")
    );
    assert!(tight.advised.is_none());
    assert!(
        tight
            .recommendation
            .starts_with("No model serves this load here")
    );
}

#[test]
fn the_advice_says_what_would_change_it() {
    let a = advise(&machine(4096), &service(1, 5.0, 100), "test");
    assert!(
        a.changes
            .iter()
            .any(|c| c.starts_with("From ") && c.contains("clients")),
        "{:?}",
        a.changes
    );
}

#[test]
fn an_objective_the_mean_already_misses_takes_a_model_out() {
    let mut s = service(20, 10.0, 100);
    s.slo_p99_us = Some(5_000.0);
    let a = advise(&machine(1 << 20), &s, "test");
    assert!(a.models.iter().all(|m| m.misses_slo || m.cannot.is_some()));
    assert!(a.advised.is_none());
    assert!(a.recommendation.contains("mean latency over the objective"));
}

#[test]
fn the_same_calibration_gives_the_same_advice() {
    let s = service(25, 2.0, 50);
    assert_eq!(
        advise(&machine(1 << 20), &s, "test"),
        advise(&machine(1 << 20), &s, "test")
    );
}

#[test]
fn bad_descriptions_say_the_range() {
    assert!(
        parse_slo("p95=5ms")
            .unwrap_err()
            .to_string()
            .starts_with("'p95=5ms': write it as p99=50ms")
    );
    assert!(parse_slo("p99=0").is_err());
    assert_eq!(parse_slo("p99=50ms").unwrap(), 50_000.0);
    assert!(
        parse_wait("2m")
            .unwrap_err()
            .to_string()
            .contains("from 0 to 60s")
    );
    assert_eq!(parse_wait("0").unwrap(), Duration::ZERO);
    assert!(
        check_clients(0)
            .unwrap_err()
            .to_string()
            .starts_with("0 clients: give 1 to")
    );
    assert!(check_clients(MOST_CLIENTS + 1).is_err());
}
