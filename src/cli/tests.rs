//! The command line as a whole: every flag of every subcommand parses.

use crate::Cli;
use clap::Parser as _;

#[test]
fn cli_is_well_formed() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}

/// A value for every flag that takes one and has no default, with any flag it
/// needs beside it. A new flag without a default fails the test below until it has
/// a sample here: every flag is parsed, into its real type, at least once.
fn sample(id: &str) -> Option<&'static [&'static str]> {
    Some(match id {
        "n" => &["7"],
        "mix" => &["1:99,30:1"],
        "request" => &["PING"],
        "expect" => &["+PONG", "--request", "PING"],
        "expect_prefix" => &["VERSION", "--request", "version"],
        "rate" => &["2000"],
        "duration" => &["1500ms"],
        "requests" => &["10"],
        "threads" | "workers" | "repetitions" | "count" | "agents" => &["2"],
        "cpus" | "server_cpus" | "client_cpus" => &["0-1"],
        "regimes" => &["shared,pinned-spinning"],
        "gil" => &["per-interpreter"],
        "gil_stats" => &["/tmp/fiblab-gil.json"],
        "stack_size" => &["256KiB"],
        "max_error_rate" | "fail_on_regression" | "precision" => &["1%"],
        "time_budget" => &["5m"],
        "addr" => &["127.0.0.1:0"],
        "json" | "csv" | "markdown" | "html" => &["-"],
        "out" | "dir" => &["/tmp/fiblab-flags"],
        "replot" => &["/tmp/fiblab-flags/report.json"],
        "targets" => &["peer=127.0.0.1:1"],
        "models" => &["threads,epoll+offload"],
        "workloads" => &["1,20"],
        "clients" => &["1,2,16"],
        "warmup" => &["100ms"],
        "child" => &["daemon"],
        "max_inflight" => &["2"],
        "downstream" => &["127.0.0.1:25001"],
        "metrics" => &["127.0.0.1:0"],
        "token" => &["secret"],
        "token_file" => &["/tmp/fiblab-flags/token"],
        "allow_host" => &["fiblab.test"],
        "server_pid" => &["1"],
        "metrics_publish" => &["/tmp/fiblab-flags/copy.prom"],
        "segment" => &["2/2", "--conns", "2"],
        "start_at" => &["1", "--segment", "1/1"],
        "cpu" => &["2ms"],
        "slo" => &["p99=50ms"],
        "calibration" => &["/tmp/fiblab-flags/calibration.json"],
        "regime" => &["shared", "--calibration", "/tmp/fiblab-flags/report.json"],
        _ => return None,
    })
}

#[test]
fn every_flag_of_every_subcommand_parses() {
    use clap::CommandFactory;
    let mut missing = Vec::new();
    let mut checked = 0;
    let mut stack = vec![(Vec::<String>::new(), Cli::command())];
    while let Some((path, command)) = stack.pop() {
        if command.has_subcommands() {
            for sub in command.get_subcommands() {
                let mut p = path.clone();
                p.push(sub.get_name().to_string());
                stack.push((p, sub.clone()));
            }
            continue;
        }
        let required: Vec<String> = command
            .get_arguments()
            .filter(|a| a.is_required_set())
            .flat_map(|a| {
                let value = sample(a.get_id().as_str()).unwrap_or(&["x"]);
                // A positional (`compare OLD NEW`) is its value alone.
                a.get_long()
                    .map(|long| format!("--{long}"))
                    .into_iter()
                    .chain(value.iter().map(|v| v.to_string()))
            })
            .collect();
        // A required group (`advise`'s `--cpu` or `--n`): one member beside every
        // flag that is not in it.
        let groups: Vec<Vec<String>> = command
            .get_groups()
            .filter(|g| g.is_required_set())
            .map(|g| g.get_args().map(|id| id.as_str().to_string()).collect())
            .collect();
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            let Some(long) = arg.get_long() else {
                continue; // the positional scenario: it has a default
            };
            if matches!(id, "help" | "version" | "verbose") {
                continue;
            }
            let mut argv = vec!["fiblab".to_string()];
            argv.extend(path.iter().cloned());
            if !arg.is_required_set() {
                argv.extend(required.iter().cloned());
            }
            for members in groups.iter().filter(|m| !m.iter().any(|m| m == id)) {
                let first = &members[0];
                let member = command
                    .get_arguments()
                    .find(|a| a.get_id().as_str() == first)
                    .and_then(|a| a.get_long());
                if let (Some(long), Some(value)) = (member, sample(first)) {
                    argv.push(format!("--{long}"));
                    argv.extend(value.iter().map(|v| v.to_string()));
                }
            }
            argv.push(format!("--{long}"));
            // `advise --clients` is one closed loop's count, not the bench's list.
            let sampled = match (path.as_slice(), id) {
                ([command], "clients") if command == "advise" => Some(&["100"][..]),
                _ => sample(id),
            };
            if arg.get_action().takes_values() {
                match (sampled, arg.get_default_values().first()) {
                    (Some(value), _) => argv.extend(value.iter().map(|v| v.to_string())),
                    (None, Some(default)) => argv.push(default.to_string_lossy().into()),
                    (None, None) => {
                        missing.push(format!("{} --{long}", path.join(" ")));
                        continue;
                    }
                }
            }
            if let Err(e) = Cli::try_parse_from(&argv) {
                panic!("{argv:?} does not parse: {e}");
            }
            checked += 1;
        }
    }
    assert!(missing.is_empty(), "add a sample value for: {missing:?}");
    assert!(checked > 60, "only {checked} flags checked");
}

/// `fiblab bench --help` names every shipped scenario (the list is typed in the flag's
/// doc comment; this keeps it true).
#[test]
fn bench_help_names_every_shipped_scenario() {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let bench = command
        .find_subcommand_mut("bench")
        .expect("a bench subcommand");
    let help = bench
        .get_arguments()
        .find(|a| a.get_id() == "scenario")
        .and_then(|a| a.get_help())
        .expect("the scenario argument's help")
        .to_string();
    let (list, _) = help
        .split_once(')')
        .expect("the shipped scenarios in parentheses");
    let named: Vec<&str> = list
        .trim_start_matches("A shipped scenario (")
        .split(", ")
        .map(str::trim)
        .collect();
    let shipped: Vec<&str> = fiblab::bench::scenario::SHIPPED
        .iter()
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(named, shipped, "{help}");
}

#[test]
fn a_start_time_is_a_finite_time_within_a_day() {
    use super::load::parse_start_at;
    for bad in ["inf", "nan", "-5", "1e20", "soon"] {
        assert!(parse_start_at(bad).is_err(), "{bad}");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(parse_start_at(&format!("{}", now + 3.0)).is_ok());
    assert!(
        parse_start_at("1").is_ok(),
        "a time past: the agent is late"
    );
}
