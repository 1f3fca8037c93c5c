//! The process models under faults: a `procpool` worker or a `prefork` child killed
//! with SIGKILL is replaced while the other clients keep getting correct replies, and
//! no process of either model outlives the server, whether it is stopped with SIGTERM
//! or killed outright (the seeds' multiprocessing pool leaves orphans that hold the port).

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Client, Server, fiblab_bin};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Live (not zombie) processes whose parent is `parent`.
fn children_of(parent: Pid) -> Vec<Pid> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may contain spaces, so split after ')'.
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let (state, ppid) = (
            fields.next(),
            fields.next().and_then(|p| p.parse::<i32>().ok()),
        );
        if ppid == Some(parent.as_raw()) && state != Some("Z") {
            if let Some(pid) = head.split_whitespace().next().and_then(|p| p.parse().ok()) {
                children.push(Pid::from_raw(pid));
            }
        }
    }
    children.sort();
    children
}

fn is_alive(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

fn is_running(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('R'))
        })
        .unwrap_or(false)
}

/// CPU ticks (user + system) `pid` has used.
fn cpu_ticks(pid: Pid) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = stat.rsplit_once(") ")?.1.split(' ').collect::<Vec<_>>();
            Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// Polls `check` for up to `limit`.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

fn wait_for_children(server: &Server, count: usize) -> Vec<Pid> {
    let mut found = Vec::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            found = children_of(server.pid());
            found.len() == count
        }),
        "expected {count} child processes, found {found:?}"
    );
    found
}

#[test]
fn procpool_worker_killed_mid_request_is_replaced() {
    let server = Server::start("procpool", &["--workers", "2", "--max-n", "44"]);
    let workers = wait_for_children(&server, 2);
    let mut holder = server.connect();
    let mut other = server.connect();
    assert_eq!(other.ask("10\n"), "55");

    holder.send(b"42\n");
    // The worker computing fib(42) is the one whose CPU time grows: a glance at the
    // process state alone can catch an idle worker that is briefly runnable.
    let before: Vec<u64> = workers.iter().map(|&w| cpu_ticks(w)).collect();
    let mut busy = None;
    assert!(
        eventually(Duration::from_secs(5), || {
            busy = workers
                .iter()
                .zip(&before)
                .find(|&(&w, &b)| cpu_ticks(w) >= b + 10 && is_running(w))
                .map(|(&w, _)| w);
            busy.is_some()
        }),
        "no worker started computing fib(42)"
    );
    let busy = busy.unwrap();
    kill(busy, Signal::SIGKILL).unwrap();

    assert_eq!(
        holder.line(),
        "ERR worker died",
        "the held request's documented outcome"
    );
    assert_eq!(holder.ask("12\n"), "144", "the connection stays usable");
    for _ in 0..50 {
        assert_eq!(other.ask("20\n"), "6765", "other clients see nothing");
    }
    let now = wait_for_children(&server, 2);
    assert!(
        !now.contains(&busy),
        "the killed worker {busy} is still listed: {now:?}"
    );
}

#[test]
fn procpool_leaves_no_process_behind() {
    // Stopped gracefully.
    let mut server = Server::start("procpool", &["--workers", "3"]);
    let workers = wait_for_children(&server, 3);
    assert_eq!(server.connect().ask("25\n"), "75025");
    let status = server
        .terminate(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status}");
    assert!(
        eventually(Duration::from_secs(2), || workers
            .iter()
            .all(|&w| !is_alive(w))),
        "orphan workers: {workers:?}"
    );
    TcpListener::bind(server.addr).expect("port free after exit");

    // Killed outright: the workers must still die with it.
    let server = Server::start("procpool", &["--workers", "3"]);
    let workers = wait_for_children(&server, 3);
    kill(server.pid(), Signal::SIGKILL).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || workers
            .iter()
            .all(|&w| !is_alive(w))),
        "orphan workers after SIGKILL: {workers:?}"
    );
    let addr = server.addr;
    drop(server);
    TcpListener::bind(addr).expect("port free after the server was killed");
}

#[test]
fn prefork_child_killed_is_replaced_on_a_shared_port() {
    let server = Server::start("prefork", &["--workers", "3"]);
    let children = wait_for_children(&server, 3);
    kill(children[0], Signal::SIGKILL).unwrap();
    // Clients keep being served; each connection lands on some live child.
    for i in 0..20u32 {
        let mut c = server.connect();
        let n = i % 25;
        assert_eq!(
            c.ask(&format!("{n}\n")),
            fiblab::fib::fib_fast(n).unwrap().to_string()
        );
    }
    let now = wait_for_children(&server, 3);
    assert!(!now.contains(&children[0]), "{now:?}");
}

/// A prefork child is a whole `fiblab serve`: every limit the parent was given reaches
/// it through the one argv both share (`Config::to_args`, parsed by `ConfigArgs`), only
/// the settings that describe the processes themselves change.
#[test]
fn prefork_children_get_every_setting_of_the_parent() {
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct Serve {
        #[arg(long)]
        model: String,
        #[arg(long)]
        inherited_listener: bool,
        #[command(flatten)]
        config: fiblab::server::ConfigArgs,
    }
    let server = Server::start(
        "prefork",
        &[
            "--workers",
            "2",
            "--max-conns",
            "7",
            "--idle-timeout",
            "9s",
            "--max-n",
            "40",
            "--max-line",
            "100",
            "--grace",
            "3s",
            "--service",
            "upper",
        ],
    );
    for child in wait_for_children(&server, 2) {
        let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap();
        let argv: Vec<String> = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let serve = Serve::try_parse_from(&argv[1..]).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        assert_eq!(serve.model, "single");
        assert!(serve.inherited_listener);
        let config = serve.config.into_config(false, 1).unwrap();
        assert_eq!(config.max_conns, 7, "{argv:?}");
        assert_eq!(config.idle_timeout, Some(Duration::from_secs(9)));
        assert_eq!(config.service.max_n, 40);
        assert_eq!(config.max_line, 100);
        assert_eq!(config.grace, Duration::from_secs(3));
        assert_eq!(config.service.kind, fiblab::service::ServiceKind::Upper);
    }
    let mut c = server.connect();
    assert_eq!(
        c.ask("abc\n"),
        "ABC",
        "the children serve the parent's service"
    );
}

#[test]
fn prefork_serves_clients_on_several_children_at_once() {
    let server = Server::start("prefork", &["--workers", "4"]);
    wait_for_children(&server, 4);
    // Eight clients stay connected; each child serves the first that landed on it.
    let mut clients: Vec<Client> = (0..8).map(|_| server.connect()).collect();
    let answered = clients
        .iter_mut()
        .filter_map(|c| {
            c.send(b"1\n");
            c.line_within(Duration::from_millis(300)).ok()
        })
        .count();
    assert!(
        answered >= 2,
        "only {answered} of 8 clients served at once by 4 children"
    );
}

/// prefork --one-queue: the children share one accept queue, so each idle child takes
/// the next client: four children serve exactly four of eight clients at once, and a
/// heavy request on one child never holds a new client while another child idles (the
/// `SO_REUSEPORT` hash of the default can put both on one child).
#[test]
fn prefork_one_queue_gives_each_idle_child_the_next_client() {
    let server = Server::start("prefork", &["--workers", "4", "--one-queue"]);
    wait_for_children(&server, 4);
    let mut clients: Vec<Client> = (0..8).map(|_| server.connect()).collect();
    for c in &mut clients {
        c.send(b"1\n");
    }
    let answered = clients
        .iter_mut()
        .filter_map(|c| c.line_within(Duration::from_millis(500)).ok())
        .count();
    assert_eq!(
        answered, 4,
        "four children, one queue: four clients served at once"
    );
    drop(clients);
    let server = Server::start("prefork", &["--workers", "2", "--one-queue"]);
    wait_for_children(&server, 2);
    let mut heavy = server.connect();
    heavy.send(b"32\n");
    std::thread::sleep(Duration::from_millis(100));
    for attempt in 0..6 {
        let mut light = server.connect();
        light.send(b"10\n");
        assert_eq!(
            light.line_within(Duration::from_secs(2)).as_deref().ok(),
            Some("55"),
            "try {attempt}: a new client waited behind the heavy request"
        );
    }
}

/// prefork --ports: start it by hand to read the children's ports from its log.
#[test]
fn prefork_one_port_per_child_and_replaced_child_keeps_its_port() {
    let mut child = Command::new(fiblab_bin())
        .args([
            "serve",
            "--model",
            "prefork",
            "--ports",
            "--workers",
            "3",
            "--port",
            "0",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let parent = Pid::from_raw(child.id() as i32);
    // A watchdog, so that a server that never logs its ports fails the test instead
    // of hanging it (the read below would wait forever).
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        let _ = kill(parent, Signal::SIGKILL);
    });
    let mut log = BufReader::new(child.stderr.take().unwrap());
    let mut ports: Vec<SocketAddr> = Vec::new();
    let mut line = String::new();
    while ports.len() < 3 {
        line.clear();
        assert!(
            log.read_line(&mut line).unwrap() > 0,
            "log ended before the ports"
        );
        if let Some(addr) = line
            .split("addr=")
            .nth(1)
            .and_then(|a| a.split_whitespace().next())
        {
            ports.push(addr.parse().unwrap());
        }
    }
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in log.lines() {});
    let distinct: std::collections::HashSet<u16> = ports.iter().map(|a| a.port()).collect();
    assert_eq!(distinct.len(), 3, "{ports:?}");

    let mut started = Vec::new();
    assert!(eventually(Duration::from_secs(10), || {
        started = children_of(parent);
        started.len() == 3
    }));
    for addr in &ports {
        assert_eq!(Client::connect(*addr).ask("10\n"), "55", "{addr}");
    }
    kill(started[1], Signal::SIGKILL).unwrap();
    assert!(eventually(Duration::from_secs(10), || {
        let now = children_of(parent);
        now.len() == 3 && !now.contains(&started[1])
    }));
    for addr in &ports {
        assert_eq!(
            Client::connect(*addr).ask("20\n"),
            "6765",
            "{addr} after a restart"
        );
    }

    kill(parent, Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let last = children_of(parent);
    assert!(last.is_empty(), "{last:?}");
    for addr in ports {
        TcpListener::bind(addr).expect("every port free after exit");
    }
}

#[test]
fn prefork_children_die_with_the_parent() {
    let mut server = Server::start("prefork", &["--workers", "2"]);
    let children = wait_for_children(&server, 2);
    let status = server
        .terminate(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status}");
    assert!(
        eventually(Duration::from_secs(2), || children
            .iter()
            .all(|&c| !is_alive(c))),
        "{children:?}"
    );
    TcpListener::bind(server.addr).expect("port free after exit");

    let server = Server::start("prefork", &["--workers", "2"]);
    let children = wait_for_children(&server, 2);
    kill(server.pid(), Signal::SIGKILL).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || children
            .iter()
            .all(|&c| !is_alive(c))),
        "orphans: {children:?}"
    );
}

/// Drives `server` for 3 s (4 connections, fib(20) and fib(1), pipelined), killing one
/// of its child processes a second in; returns the load's report.
fn load_while_killing_a_child(server: &Server, children: &[Pid]) -> fiblab::load::report::Report {
    use fiblab::load::mix::Mix;
    use fiblab::load::{Hooks, LoadSpec, Stop};
    let spec = LoadSpec {
        addr: server.addr,
        mix: Mix::parse_fib("1:1,20:1", true).unwrap(),
        connections: 4,
        pipeline: 4,
        rate: None,
        stop: Stop::After(Duration::from_secs(3)),
        warmup: Duration::ZERO,
        timeout: Duration::from_secs(10),
        threads: 2,
        spin: false,
        tick: Duration::ZERO,
        cpus: None,
        seed: 3,
        agent: None,
        protocol: fiblab::load::mix::Protocol::Fiblab,
    };
    let victim = children[0];
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        kill(victim, Signal::SIGKILL).unwrap();
    });
    let interrupt = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let report = fiblab::load::run(&spec, interrupt, Hooks::default()).unwrap();
    killer.join().unwrap();
    report
}

#[test]
fn procpool_worker_killed_under_load_gives_no_wrong_reply() {
    let server = Server::start("procpool", &["--workers", "2"]);
    let workers = wait_for_children(&server, 2);
    let report = load_while_killing_a_child(&server, &workers);
    assert_eq!(report.errors.wrong, 0, "a wrong reply: {:?}", report.errors);
    assert_eq!(
        report.errors.timeout, 0,
        "a lost reply: {:?}",
        report.errors
    );
    assert_eq!(
        report.errors.reset, 0,
        "connections survive a worker's death"
    );
    // At most the requests the killed worker held get `ERR worker died`.
    assert!(report.errors.err_reply <= 1, "{:?}", report.errors);
    assert!(report.requests_ok > 1000, "{} replies", report.requests_ok);
    wait_for_children(&server, 2);
}

#[test]
fn prefork_child_killed_under_load_gives_no_wrong_reply() {
    let server = Server::start("prefork", &["--workers", "2"]);
    let children = wait_for_children(&server, 2);
    let report = load_while_killing_a_child(&server, &children);
    assert_eq!(report.errors.wrong, 0, "a wrong reply: {:?}", report.errors);
    assert_eq!(report.errors.err_reply, 0, "{:?}", report.errors);
    // The killed child's connections are reset (their requests in flight lost, and
    // counted); the load reconnects, and the replacement serves the same port.
    assert!(report.requests_ok > 1000, "{} replies", report.requests_ok);
    wait_for_children(&server, 2);
    assert_eq!(server.connect().ask("20\n"), "6765");
}
