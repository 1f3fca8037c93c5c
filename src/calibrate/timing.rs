//! The timing primitives behind every [`Calibration`](super::Calibration) figure: the
//! ping-pongs, the readiness calls, the hand-offs and starts, fib(n), each timed in µs.

use std::hint::black_box;
use std::io::{self, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::path::Path;
use std::time::{Duration, Instant};

use super::RUNS;
use crate::cpu;
use crate::fib::fib;

/// [`RUNS`] runs of `one`, each µs; failed runs are left out.
pub(super) fn repeat(mut one: impl FnMut() -> Option<f64>) -> Vec<f64> {
    (0..RUNS).filter_map(|_| one()).collect()
}

/// The mean time of `calls` calls of `f`, µs.
pub(super) fn per_call(calls: u32, mut f: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..calls {
        f();
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(calls)
}

/// Round trips per run of the ping-pong: enough to average out, short enough that
/// the whole calibration takes seconds even where a round trip costs 100 µs.
const ROUND_TRIPS: u32 = 1000;

/// Which side of a ping-pong busy-polls instead of sleeping in `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Spin {
    Neither,
    Client,
    Both,
}

/// The mean 1-byte TCP round trip over loopback, µs, between a client thread on
/// `client_cpu` and a server thread on `server_cpu`; `spin` says who busy-polls.
pub(super) fn round_trip(
    server_cpu: Option<usize>,
    client_cpu: Option<usize>,
    spin: Spin,
) -> io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> io::Result<()> {
        if let Some(cpu) = server_cpu {
            cpu::pin_current_thread(cpu)?;
        }
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(spin == Spin::Both)?;
        let mut byte = [0u8; 1];
        loop {
            match stream.read(&mut byte) {
                Ok(0) => return Ok(()),
                Ok(_) => stream.write_all(&byte)?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::hint::spin_loop(),
                Err(e) => return Err(e),
            }
        }
    });
    let client = std::thread::spawn(move || -> io::Result<f64> {
        if let Some(cpu) = client_cpu {
            cpu::pin_current_thread(cpu)?;
        }
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(spin != Spin::Neither)?;
        let mut byte = [0u8; 1];
        let mut one = |stream: &mut TcpStream| -> io::Result<()> {
            stream.write_all(b"x")?;
            loop {
                match stream.read(&mut byte) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(_) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::hint::spin_loop(),
                    Err(e) => return Err(e),
                }
            }
        };
        for _ in 0..50 {
            one(&mut stream)?; // warm up: connection, caches, CPU frequency
        }
        let started = Instant::now();
        for _ in 0..ROUND_TRIPS {
            one(&mut stream)?;
        }
        Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUND_TRIPS))
    });
    let result = client
        .join()
        .map_err(|_| io::Error::other("the ping-pong client panicked"))?;
    let _ = server.join();
    result
}

/// fiblab's load generator in one thread sleeping in epoll, on `cpus` (`None`:
/// unpinned): `connections` closed loops of fib(1) (a line any echo answers) against
/// `addr`, for a `(warm-up, measured)` time.
fn one_thread_load(
    addr: std::net::SocketAddr,
    connections: usize,
    (warmup, measured): (Duration, Duration),
    cpus: Option<Vec<usize>>,
) -> io::Result<crate::load::report::Report> {
    use crate::load::mix::{Class, Mix, Protocol};
    use crate::load::{Hooks, LoadSpec, Stop};
    let spec = LoadSpec {
        addr,
        mix: Mix::new(vec![Class::fib(1, 1, true)]).map_err(io::Error::other)?,
        connections,
        pipeline: 1,
        rate: None,
        stop: Stop::After(measured),
        warmup,
        timeout: Duration::from_secs(5),
        threads: 1,
        spin: false,
        tick: Duration::ZERO,
        cpus,
        seed: 1,
        agent: None,
        protocol: Protocol::Fiblab,
    };
    crate::load::run(
        &spec,
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        Hooks::default(),
    )
}

/// The mean round trip, µs, of fiblab's load generator (one connection, one thread,
/// sleeping in epoll between replies) against a blocking server that answers every
/// line with `1`, both pinned to `cpu`.
pub(super) fn loadgen_round_trip(cpu: usize) -> io::Result<f64> {
    use std::io::BufRead as _;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> io::Result<()> {
        cpu::pin_current_thread(cpu)?;
        let (stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut writer = stream.try_clone()?;
        let mut reader = io::BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            writer.write_all(b"1\n")?;
        }
    });
    let report = one_thread_load(
        addr,
        1,
        (Duration::from_millis(30), Duration::from_millis(150)),
        Some(vec![cpu]),
    );
    let _ = server.join();
    let report = report?;
    match report.throughput_rps > 0.0 && report.errors.total() == 0 {
        true => Ok(1e6 / report.throughput_rps),
        false => Err(io::Error::other("the load generator got no clean replies")),
    }
}

/// The mean round trip of fib(1) to a procpool worker process over its pipes, µs.
pub(super) fn pipe_round_trip() -> io::Result<f64> {
    let mut worker = crate::models::procpool::Worker::start()?;
    for _ in 0..20 {
        worker.fib(1)?;
    }
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        worker.fib(1)?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUND_TRIPS))
}

pub(super) fn thread_start() {
    let _ = std::thread::spawn(|| black_box(1)).join();
}

/// One start of `exe --version` until it exits, µs.
pub(super) fn process_start(exe: &Path) -> io::Result<f64> {
    let started = Instant::now();
    let status = std::process::Command::new(exe)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        return Err(io::Error::other("--version failed"));
    }
    Ok(started.elapsed().as_secs_f64() * 1e6)
}

/// `count` idle descriptors to wait on: both ends of socket pairs nobody writes to,
/// all below select's FD_SETSIZE so both calls watch the same set.
fn idle_descriptors(count: usize) -> io::Result<Vec<std::os::unix::net::UnixStream>> {
    let mut fds = Vec::with_capacity(count + 1);
    while fds.len() < count {
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        if b.as_raw_fd() as usize >= nix::sys::select::FD_SETSIZE {
            return Err(io::Error::other("descriptors past FD_SETSIZE"));
        }
        fds.push(a);
        fds.push(b);
    }
    fds.truncate(count);
    Ok(fds)
}

/// One `epoll_wait` with no timeout over `count` idle descriptors, µs.
pub(super) fn epoll_wait(count: usize) -> io::Result<f64> {
    use mio::unix::SourceFd;
    let fds = idle_descriptors(count)?;
    let mut poll = mio::Poll::new()?;
    for (i, read) in fds.iter().enumerate() {
        poll.registry().register(
            &mut SourceFd(&read.as_raw_fd()),
            mio::Token(i),
            mio::Interest::READABLE,
        )?;
    }
    let mut events = mio::Events::with_capacity(16);
    Ok(per_call(2000, || {
        let _ = poll.poll(&mut events, Some(Duration::ZERO));
    }))
}

/// One `select` with no timeout over `count` idle descriptors, µs.
pub(super) fn select_call(count: usize) -> io::Result<f64> {
    use nix::sys::select::{FdSet, select};
    use nix::sys::time::TimeVal;
    let fds = idle_descriptors(count)?;
    let nfds = fds.iter().map(|f| f.as_raw_fd()).max().unwrap_or(0) + 1;
    // The set is built anew each call, as a select loop must (select overwrites it).
    Ok(per_call(2000, || {
        let mut set = FdSet::new();
        for read in &fds {
            set.insert(read.as_fd());
        }
        let mut zero = TimeVal::new(0, 0);
        let _ = select(nfds, &mut set, None, None, &mut zero);
    }))
}

/// One non-blocking `read` on an idle TCP socket, which finds nothing (`EAGAIN`), µs:
/// taken in turn over up to 4096 idle connections, as the `nonblocking` loop takes
/// them, so that no one socket's state stays in the caches.
pub(super) fn read_idle() -> io::Result<f64> {
    crate::server::raise_descriptor_limit();
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft as usize);
    let sockets = (limit.saturating_sub(256) / 2).clamp(1, 4096);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut clients = Vec::with_capacity(sockets);
    let mut servers = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        let client = TcpStream::connect(listener.local_addr()?)?;
        client.set_nonblocking(true)?;
        clients.push(client);
        servers.push(listener.accept()?.0);
    }
    let mut byte = [0u8; 64];
    // The median sweep: a sweep the VM preempted says nothing about a read.
    let mut sweeps: Vec<f64> = (0..21)
        .map(|_| {
            per_call(1, || {
                for client in &mut clients {
                    let _ = black_box(client.read(&mut byte));
                }
            })
        })
        .collect();
    sweeps.sort_by(f64::total_cmp);
    Ok(sweeps[sweeps.len() / 2] / sockets as f64)
}

/// What `idle` idle descriptors add to a round trip through a blocking `select` loop,
/// µs: the loop selects over one active socket and the idle ones, reads a byte and
/// answers it; timed with `idle` descriptors and with none, both threads on `cpu`.
pub(super) fn select_idle(idle: usize, cpu: Option<usize>) -> io::Result<f64> {
    // On a thread of its own, so the pinning ends with it.
    std::thread::spawn(move || {
        let with = select_loop_round_trip(idle, cpu)?;
        let without = select_loop_round_trip(0, cpu)?;
        Ok((with - without).max(0.0))
    })
    .join()
    .map_err(|_| io::Error::other("the select timing panicked"))?
}

fn select_loop_round_trip(idle: usize, cpu: Option<usize>) -> io::Result<f64> {
    use nix::sys::select::{FdSet, select};
    use std::os::unix::net::UnixStream;
    let fds = idle_descriptors(idle)?;
    let (mut client, server) = UnixStream::pair()?;
    if server.as_raw_fd() as usize >= nix::sys::select::FD_SETSIZE {
        return Err(io::Error::other("descriptors past FD_SETSIZE"));
    }
    std::thread::scope(|scope| {
        let looper = scope.spawn(|| -> io::Result<()> {
            if let Some(cpu) = cpu {
                cpu::pin_current_thread(cpu)?;
            }
            let mut server = &server;
            let nfds = fds
                .iter()
                .map(|f| f.as_raw_fd())
                .chain(std::iter::once(server.as_raw_fd()))
                .max()
                .unwrap_or(0)
                + 1;
            let mut byte = [0u8; 1];
            loop {
                let mut set = FdSet::new();
                for fd in &fds {
                    set.insert(fd.as_fd());
                }
                set.insert(server.as_fd());
                select(nfds, &mut set, None, None, None).map_err(io::Error::from)?;
                server.read_exact(&mut byte)?;
                if byte[0] == 0 {
                    return Ok(());
                }
                server.write_all(&byte)?;
            }
        });
        if let Some(cpu) = cpu {
            cpu::pin_current_thread(cpu)?;
        }
        let mut byte = [1u8; 1];
        let took = per_call(2000, || {
            let _ = client.write_all(&[1]);
            let _ = client.read_exact(&mut byte);
        });
        client.write_all(&[0])?;
        looper
            .join()
            .map_err(|_| io::Error::other("the select loop panicked"))??;
        Ok(took)
    })
}

/// The mean round trip of a value to another thread over a channel and back, µs, both
/// threads on `cpu`: the hop a connection thread makes to a helper thread the kernel
/// wakes beside it.
pub(super) fn handoff(cpu: Option<usize>) -> io::Result<f64> {
    // On a thread of its own, so the pinning ends with it.
    std::thread::spawn(move || handoff_on(cpu))
        .join()
        .map_err(|_| io::Error::other("the hand-off caller panicked"))?
}

fn handoff_on(cpu: Option<usize>) -> io::Result<f64> {
    if let Some(cpu) = cpu {
        cpu::pin_current_thread(cpu)?;
    }
    let (to_worker, requests) = std::sync::mpsc::channel::<u32>();
    let (to_caller, replies) = std::sync::mpsc::channel::<u32>();
    let worker = std::thread::spawn(move || {
        if let Some(cpu) = cpu {
            let _ = cpu::pin_current_thread(cpu);
        }
        for n in requests {
            if to_caller.send(n).is_err() {
                return;
            }
        }
    });
    let one = || -> io::Result<()> {
        to_worker
            .send(1)
            .map_err(|_| io::Error::other("the hand-off thread stopped"))?;
        replies
            .recv()
            .map(drop)
            .map_err(|_| io::Error::other("the hand-off thread stopped"))
    };
    for _ in 0..50 {
        one()?;
    }
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        one()?;
    }
    let took = started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUND_TRIPS);
    drop(to_worker);
    let _ = worker.join();
    Ok(took)
}

/// fib(n) in the isolates' interpreter, µs, as `isolates` runs it (one instance).
pub(super) fn fib_interpreted_time(n: u32) -> io::Result<f64> {
    let module = crate::models::isolates::FibModule::assemble()?;
    let mut isolate = module.instantiate(Box::new(|| false))?;
    let mut failed = None;
    let took = batch_time(|| {
        if let Err(e) = isolate.fib(n) {
            failed = Some(e);
        }
    });
    match failed {
        Some(e) => Err(io::Error::other(format!(
            "fib in the interpreter failed: {e}"
        ))),
        None => Ok(took),
    }
}

/// fib(n) on this thread, µs: repeated until the batch takes a few milliseconds.
pub fn fib_time(n: u32) -> f64 {
    batch_time(|| {
        black_box(fib(black_box(n)));
    })
}

/// One call of `f`, µs: calls repeated until the batch takes a few milliseconds.
fn batch_time(mut f: impl FnMut()) -> f64 {
    let mut calls = 1u32;
    loop {
        let started = Instant::now();
        for _ in 0..calls {
            f();
        }
        let took = started.elapsed();
        if took >= Duration::from_millis(5) || calls >= 1 << 24 {
            return took.as_secs_f64() * 1e6 / f64::from(calls);
        }
        calls = calls.saturating_mul(8);
    }
}

/// The CPU a downstream spends per request it answers, µs: `fiblab backend` (in a
/// thread, unpinned, as the bench and `fiblab advise` run it) answering each line after
/// 1 ms, driven by fiblab's load generator over 8 connections for 200 ms. What a
/// waiting request costs the machine's CPUs on the downstream's side (reading the line,
/// arming and firing its timer, writing the answer, the wake-ups between), which a
/// machine shared by server, load generator and downstream pays besides the server's.
pub(super) fn downstream_cpu() -> io::Result<f64> {
    use crate::backend::{BackendConfig, BackendStats, serve};
    use std::sync::atomic::Ordering;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let stats = std::sync::Arc::new(BackendStats::default());
    let shutdown = crate::shutdown::Shutdown::new()?;
    let config = BackendConfig {
        delay: Duration::from_millis(1),
        jitter: Duration::ZERO,
        seed: 1,
        idle_timeout: None,
    };
    let (s, st) = (shutdown.clone(), stats.clone());
    let backend = std::thread::spawn(move || -> io::Result<Option<Duration>> {
        serve(listener, config, s, st)?;
        Ok(cpu::thread_time())
    });
    // The backend echoes any line; a fib line is one.
    let report = one_thread_load(addr, 8, (Duration::ZERO, Duration::from_millis(200)), None);
    shutdown.trigger();
    let used = backend
        .join()
        .map_err(|_| io::Error::other("the backend's thread panicked"))??;
    report?;
    let answered = stats.answered.load(Ordering::SeqCst);
    match (used, answered) {
        (Some(cpu), answered) if answered > 0 => Ok(cpu.as_secs_f64() * 1e6 / answered as f64),
        _ => Err(io::Error::other("the backend answered nothing")),
    }
}

/// The CPU HAProxy spends per request it forwards, µs: `mode tcp`, one thread, in front
/// of `fiblab serve --model epoll` answering from a table (from `exe`), driven by one
/// load thread over 8 connections for 200 ms; its process's CPU (every thread's, from
/// `/proc`) over the replies.
pub(super) fn balancer_cpu(exe: &Path) -> io::Result<f64> {
    use crate::service::{Service, ServiceKind};
    let config = crate::server::Config {
        service: Service {
            kind: ServiceKind::Lookup,
            ..Service::default()
        },
        ..crate::server::Config::default()
    };
    let server = crate::process::ServerProcess::start(
        exe,
        &crate::server::Variant::plain("epoll"),
        &config,
        &[],
    )?;
    let frontend = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let haproxy = crate::balancer::Haproxy::start(
        crate::balancer::Config {
            frontend,
            copies: vec![server.addr],
            balance: crate::balancer::Balance::LeastConn,
            threads: 1,
            max_conns: 64,
            check_every: Duration::from_secs(2),
            stats_socket: std::path::PathBuf::new(),
        },
        &[],
    )?;
    let before = crate::process::WorkReading::of_tree(haproxy.pid())?.total();
    let report = one_thread_load(
        frontend,
        8,
        (Duration::ZERO, Duration::from_millis(200)),
        None,
    );
    let after = crate::process::WorkReading::of_tree(haproxy.pid())?.total();
    haproxy.stop();
    server.stop();
    let report = report?;
    match report.requests_ok {
        0 => Err(io::Error::other("nothing came back through HAProxy")),
        ok => Ok(after.cpu_ns.saturating_sub(before.cpu_ns) as f64 / 1e3 / ok as f64),
    }
}

/// Resident memory a thread per connection costs, KiB: `fiblab serve --model threads`
/// (from `exe`) holding 200 idle connections that each had one reply, its VmRSS after
/// less before, over 200: the connection thread's stack pages and buffers and its share
/// of the allocator, as the C10K experiment measures each model (kernel memory, the
/// socket buffers and the thread's kernel stack, is not in it).
pub(super) fn thread_resident_kib(exe: &Path) -> io::Result<f64> {
    use crate::load::hold::{HoldSpec, hold};
    const IDLE: usize = 200;
    let config = crate::server::Config {
        max_conns: IDLE + 64,
        ..crate::server::Config::default()
    };
    let server = crate::process::ServerProcess::start(
        exe,
        &crate::server::Variant::split("threads"),
        &config,
        &[],
    )?;
    let rss = || crate::process::Usage::of_tree(server.pid()).map(|u| u.rss_kib as f64);
    // One connection first: whatever the server starts lazily is in the baseline.
    drop(hold(&HoldSpec::fib1(server.addr, 1))?);
    std::thread::sleep(Duration::from_millis(50));
    let before = rss()?;
    let held = hold(&HoldSpec::fib1(server.addr, IDLE))?;
    std::thread::sleep(Duration::from_millis(100));
    let after = rss()?;
    let open = held.open();
    drop(held);
    server.stop();
    match open {
        0 => Err(io::Error::other("no connection held")),
        open => Ok(((after - before) / open as f64).max(0.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_measure_something() {
        assert!(round_trip(None, None, Spin::Neither).unwrap() > 0.0);
        assert!(round_trip(None, None, Spin::Client).unwrap() > 0.0);
        assert!(epoll_wait(1).unwrap() > 0.0);
        assert!(select_call(10).unwrap() > 0.0);
        let fast = fib_time(10);
        let slow = fib_time(20);
        assert!(slow > fast * 10.0, "fib(20) {slow} µs, fib(10) {fast} µs");
    }
}
