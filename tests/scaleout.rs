//! Copies of a server behind HAProxy, `SO_REUSEPORT` and one accept queue
//! (`fiblab bench scaleout`, `src/bench/measure/copies.rs`, `src/balancer/`): the
//! generated HAProxy configuration as HAProxy reads it, a bench cell of two copies
//! behind HAProxy end to end, and a killed copy's lost requests counted exactly.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use fiblab::balancer::{self, Balance, Way};
use fiblab::bench::measure::{Run, Step};
use fiblab::bench::scenario::Scenario;
use fiblab::downstream::DownstreamConfig;
use fiblab::load::mix::{Class, Mix};
use fiblab::load::{Hooks, LoadSpec, Stop};
use fiblab::server::Variant;

/// Whether `haproxy` runs here; under CI it must (`.ci/run` installs it).
fn haproxy_here(test: &str) -> bool {
    match balancer::available() {
        Ok(_) => true,
        Err(why) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must install haproxy (.ci/run installs Debian's haproxy): {why}"
            );
            eprintln!("SKIPPED {test}: {why}");
            false
        }
    }
}

/// A bench run of `scenario` with this test build's fiblab, reporting no progress.
fn run_of<'a>(scenario: &'a Scenario, progress: &'a mut dyn FnMut(Step<'_>)) -> Run<'a> {
    let exe = Path::new(common::fiblab_bin());
    Run::new(
        scenario,
        &[],
        exe,
        Arc::new(AtomicBool::new(false)),
        progress,
        0,
    )
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fiblab-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn haproxy_accepts_the_generated_configuration() {
    if !haproxy_here("haproxy_accepts_the_generated_configuration") {
        return;
    }
    let dir = temp_dir("haproxy-check");
    for balance in [Balance::LeastConn, Balance::RoundRobin] {
        let config = balancer::Config {
            frontend: "127.0.0.1:1".parse().unwrap(),
            copies: vec!["127.0.0.1:2".parse().unwrap(), "[::1]:3".parse().unwrap()],
            balance,
            threads: 2,
            max_conns: 1000,
            check_every: balancer::CHECK_EVERY,
            stats_socket: dir.join("stats.sock"),
        };
        let file = dir.join(format!("{}.cfg", balance.keyword()));
        std::fs::write(&file, config.render()).unwrap();
        balancer::check(&file).unwrap();
    }
    // And it refuses what is not a configuration, saying why.
    let bad = dir.join("bad.cfg");
    std::fs::write(&bad, "frontend x\n    bind nowhere:port\n").unwrap();
    assert!(
        balancer::check(&bad)
            .unwrap_err()
            .to_string()
            .contains("haproxy -c")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_copies_behind_haproxy_serve_a_bench_cell() {
    if !haproxy_here("two_copies_behind_haproxy_serve_a_bench_cell") {
        return;
    }
    let dir = temp_dir("scaleout-cell");
    let scenario = dir.join("cell.toml");
    std::fs::write(
        &scenario,
        "name = 'cell'\nabout = 'two copies behind HAProxy'\nmodels = []\nworkloads = [1]\nclients = [1]\nduration = '100ms'\nwarmup = '50ms'\nrepetitions = 1\n\
         [scaleout]\nmodels = ['epoll']\nworkloads = [1]\nclients_per_server_cpu = [2]\ncopies = [2]\nways = ['haproxy-leastconn']\nduration = '400ms'\nwarmup = '100ms'\nrepetitions = 2\n",
    )
    .unwrap();
    let out_dir = dir.join("out");
    let out = Command::new(common::fiblab_bin())
        .args(["bench", scenario.to_str().unwrap(), "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    let records = report["scaleout"]["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    let cell = &records[0];
    assert_eq!(cell["way"], "haproxy-leastconn");
    assert_eq!(
        cell["throughput_rps"].as_array().unwrap().len(),
        2,
        "two repetitions"
    );
    assert!(
        cell["throughput_rps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x.as_f64().unwrap() > 0.0)
    );
    assert_eq!(cell["errors"], 0);
    // Both copies served, by their own counts and by HAProxy's.
    for key in ["per_copy", "sessions_per_copy"] {
        let counts: Vec<u64> = cell[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .collect();
        assert_eq!(counts.len(), 2, "{key}: {counts:?}");
        assert!(counts.iter().all(|&c| c > 0), "{key}: {counts:?}");
    }
    assert!(
        !cell["balancer_cpu_us"].as_array().unwrap().is_empty(),
        "HAProxy's CPU read"
    );
    let tables = String::from_utf8_lossy(&out.stdout);
    assert!(tables.contains("| `haproxy-leastconn ×2` |"), "{tables}");
    assert!(
        tables.contains("share the CPUs") || tables.contains("pinned"),
        "{tables}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Eight clients each wait on a downstream that answers in 30 s, over two copies on one
/// `SO_REUSEPORT` port; the copy holding more of them is killed: the requests lost are exactly those it had in
/// flight, and every request sent is accounted for.
#[test]
fn a_killed_copys_requests_in_flight_are_counted_lost_exactly() {
    let backend = common::downstream::Backend::start(Duration::from_secs(30), Duration::ZERO);
    let scenario = Scenario::parse(
        "name = 't'\nmodels = ['threads']\nworkloads = [1]\nclients = [1]\nduration = '1s'\nwarmup = '0s'\nrepetitions = 1\n",
    )
    .unwrap();
    let mut progress = |_: Step<'_>| {};
    let run = run_of(&scenario, &mut progress);
    let mut deployment = run
        .deploy_with(&Variant::plain("threads"), Way::ReusePort, 2, 8, |config| {
            config.downstream = Some(DownstreamConfig {
                addr: backend.addr,
                timeout: Duration::from_secs(60),
            });
            // At the end its threads still wait: stop without waiting for them.
            config.grace = Duration::from_millis(200);
        })
        .unwrap();
    let spec = LoadSpec {
        stop: Stop::After(Duration::from_millis(1500)),
        warmup: Duration::ZERO,
        timeout: Duration::from_secs(10),
        ..run.spec(
            deployment.addr,
            Mix::new(vec![Class::fib(1, 1, true)]).unwrap(),
            8,
        )
    };
    let start = Instant::now();
    let mut in_flight = None;
    let mut should_stop = || {
        // Past the copies' 100 ms publishing period, every request is waiting.
        if in_flight.is_none() && start.elapsed() >= Duration::from_millis(700) {
            let waiting = deployment.published("fiblab_requests_in_flight");
            assert_eq!(
                waiting.iter().sum::<u64>(),
                8,
                "every client waits: {waiting:?}"
            );
            // The copy the kernel's hash gave more clients (it gave one at least 4).
            let busiest = (0..waiting.len()).max_by_key(|&i| waiting[i]).unwrap();
            in_flight = Some(waiting[busiest]);
            deployment.kill(busiest).unwrap();
        }
        false
    };
    let report = fiblab::load::run(
        &spec,
        Arc::new(AtomicBool::new(false)),
        Hooks {
            should_stop: Some(&mut should_stop),
            ..Hooks::default()
        },
    )
    .unwrap();
    deployment.stop();
    let in_flight = in_flight.expect("the copy was killed");
    assert_eq!(
        report.errors.reset, in_flight,
        "lost = in flight on the killed copy: {report:?}"
    );
    assert_eq!(report.requests_ok, 0);
    // The clients that lost theirs reconnected to the other copy and wait again: all 8
    // are unfinished at the end.
    assert_eq!(report.unfinished, 8, "{report:?}");
    assert_eq!(report.sent, 8 + in_flight);
    assert_eq!(report.unaccounted(), 0);
}

/// `--netns`: two copies, each in a network namespace of its own, behind HAProxy on
/// this side: both serve, at their hosts' addresses over the veth pairs, and the
/// namespaces are gone afterwards. Needs root and iproute2; skips loudly elsewhere.
#[test]
fn copies_in_network_namespaces_serve_behind_haproxy() {
    if !haproxy_here("copies_in_network_namespaces_serve_behind_haproxy") {
        return;
    }
    if let Err(e) = fiblab::netns::Hosts::create(1) {
        eprintln!(
            "SKIPPED copies_in_network_namespaces_serve_behind_haproxy: this machine refuses network namespaces ({e}); run as root with iproute2"
        );
        return;
    }
    let scenario = Scenario::parse(
        "name = 't'\nmodels = []\nworkloads = [1]\nclients = [1]\nduration = '1s'\nwarmup = '0s'\nrepetitions = 1\n\
         [scaleout]\nmodels = ['epoll']\nworkloads = [1]\nclients_per_server_cpu = [2]\nduration = '300ms'\nwarmup = '0ms'\nrepetitions = 1\nnetns = true\n",
    )
    .unwrap();
    let mut progress = |_: Step<'_>| {};
    let run = run_of(&scenario, &mut progress);
    let deployment = run
        .deploy(
            &Variant::plain("epoll"),
            Way::Haproxy(Balance::RoundRobin),
            2,
            4,
        )
        .unwrap();
    let hosts: Vec<String> = deployment
        .copy_addrs
        .iter()
        .map(|a| a.ip().to_string())
        .collect();
    assert_eq!(
        hosts,
        ["10.79.0.2", "10.79.1.2"],
        "each copy on its own host"
    );
    let spec = LoadSpec {
        stop: Stop::After(Duration::from_millis(400)),
        warmup: Duration::ZERO,
        ..run.spec(
            deployment.addr,
            Mix::new(vec![Class::fib(1, 1, true)]).unwrap(),
            4,
        )
    };
    let report = run.load(&spec, Hooks::default()).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let served = deployment.requests();
    deployment.stop();
    assert!(
        report.requests_ok > 0 && report.errors.total() == 0,
        "{report:?}"
    );
    assert!(
        served.iter().all(|&n| n > 0),
        "both copies served: {served:?}"
    );
    let left = Command::new("ip").args(["-o", "link"]).output().unwrap();
    // This process's sets of hosts are named fhs{pid % 1000}00{set}x{i}.
    let tag = format!("fhs{}", (std::process::id() % 1000) * 100);
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains(&tag),
        "the veth pairs are removed with the hosts"
    );
}
