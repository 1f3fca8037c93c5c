//! Cost models: each model's closed-loop throughput, predicted from the machine's
//! primitive costs (`fiblab calibrate`), the client count and the CPUs.
//!
//! A closed loop of `c` clients, each waiting for its reply before sending again, runs
//! at (Little's law)
//!
//! ```text
//! X = min( c_served / L ,  capacity )
//!     L        = one request's path: a round trip + fib(n) + the model's own steps
//!     capacity = what the server's threads can do when they never wait:
//!                threads that can run fib at once / CPU time per request
//! ```
//!
//! The round trip is where the machine shows. Three are calibrated:
//!
//! ```text
//! local   both threads on one CPU: two context switches, no wake-up of an idle CPU
//! cross   on two CPUs, the receiver asleep: each reply wakes an idle (v)CPU
//! spin    on two CPUs, nobody asleep: the loopback and the socket calls alone
//! ```
//!
//! With one client the kernel runs client and server on two CPUs, so every request
//! pays `cross`. Once there is a client/server *pair per CPU* (thread-per-connection
//! models, clients >= CPUs, clients sharing the server's CPUs) the kernel keeps each
//! pair on one CPU and requests pay `local`: on a small VM that is 5-10x cheaper, and
//! why a second client multiplies the throughput of `threads` but not of a one-thread
//! event loop, whose one thread cannot sit beside two clients.
//!
//! Where the outcome depends on placement the formula cannot know (which worker a
//! work-stealing runtime wakes, which process the kernel's `SO_REUSEPORT` hash picks)
//! a prediction is a range with no point: [`Prediction::rps`] is `None`.
//!
//! Pinned apart (server and load generator on CPUs of their own, as the scale
//! experiment and the 16-core run in `../shared/data/16-core/` are), every hop between
//! threads crosses CPUs, and more terms hold at scale:
//!
//! ```text
//! thread per connection   + a wake-up per request on the server's CPUs (the thread
//!                           blocks in read between requests)
//! isolates                + 2 wake-ups (connection thread <-> isolate thread)
//! process pool            + 3 wake-ups per request on the server's CPUs (4 with more
//!                           clients than workers); on one request's path, 2 (the
//!                           worker and the connection's thread wake each other)
//! thread pool               min(c, workers) clients served: a worker holds a connection
//!                           for its whole life, the others wait in the queue
//! work stealing (tokio)   + a hand-off and a wake-up (a parked worker takes the task),
//!                           from 2 clients and 2 workers on
//! one-thread loop         a range: woken once per batch of requests, or never asleep
//! load generator          its CPUs / (socket calls + its work + a wake-up shared by the
//!                           replies one wake brings in: a batch from loops, one from a
//!                           thread per connection)   (Costs::client_capacity)
//! ```
//!
//! Every prediction is held to the load generator's capacity
//! ([`Prediction::within_client`]).
//!
//! The formulas are deliberately small: every term is a calibrated primitive, and a
//! cell they miss by more than the report's threshold is listed with its terms
//! (`fiblab bench`), never tuned away here.

use serde::Serialize;

/// How a model's throughput follows from the machine's costs: the registry's
/// [`super::Model::cost`]. Each model's module docs say why its formula is this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostModel {
    /// One connection at a time (`single`): `X = 1 / (cross + fib)`; further clients
    /// are not served at all.
    OneAtATime,
    /// A blocking thread per connection (`threads`, `threadpool`, the floor):
    /// `X = c / (cross + fib)` below a pair per CPU, `X = CPUs / (local + fib)` from
    /// there on.
    ThreadPerConnection,
    /// A fixed pool of `--workers` threads, each holding one connection for the
    /// connection's whole life (`threadpool`): [`CostModel::ThreadPerConnection`] for the
    /// `min(c, workers)` clients a worker holds; the rest wait in the queue, unanswered,
    /// and add nothing to a closed loop's throughput.
    ConnectionPool,
    /// A thread per connection handing each request to its own interpreter thread
    /// (`isolates`): as [`CostModel::ThreadPerConnection`] plus a thread hand-off, with
    /// fib interpreted.
    Isolated,
    /// One thread multiplexing every connection with a readiness call (`epoll`,
    /// `select`, `coroutines`, `tokio-current`):
    /// `X = min(c / (cross + fib + wait), 1 / (socket calls + fib + wait))`.
    EventLoop(Readiness),
    /// One thread that never sleeps, trying every socket (`nonblocking`): only the
    /// client wakes, `X = min(c / (spin + client wake-up + fib), 1 / (socket calls + fib))`.
    SpinLoop,
    /// Worker threads that steal each other's ready connections (`tokio`): between a
    /// one-thread loop (every request crosses CPUs) and thread-per-connection pairs.
    WorkStealing,
    /// A thread per connection sending fib to a worker process over pipes
    /// (`procpool`): client, connection thread and worker are three threads, so no
    /// pair shares a CPU: `X = min(c / (cross + pipe + fib), workers / (socket calls + pipe + fib))`.
    ProcessPool,
    /// One event loop per core, the kernel hashing connections onto them (`per-core`):
    /// between one loop serving every client and `min(c, cores)` loops each serving its
    /// share.
    PerCore,
    /// Copies of `single`, the kernel hashing connections onto them (`prefork`):
    /// `single` when every client lands on one copy, thread-per-connection when they
    /// spread.
    Prefork,
}

/// The call an event loop waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Epoll,
    Select,
    /// `io_uring_enter`, which also submits the turn's operations: not calibrated
    /// apart, so taken at `epoll_wait`'s cost (the `uring` model).
    Completion,
}

/// Everything a prediction reads: one cell (clients, fib) under one regime (which
/// round trips it pays, which CPUs the server has), µs unless named otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Costs {
    pub clients: usize,
    /// CPUs the server may run on.
    pub cpus: usize,
    /// The clients run on the server's CPUs too, so a client/server pair can share one.
    pub shared: bool,
    /// `--workers`: pool threads or processes, tokio workers, prefork children.
    pub workers: usize,
    /// fib runs in an `--offload` pool, not on the loop.
    pub offload: bool,
    /// The load generator busy-polls: a reply never wakes it, and a second client's
    /// request is back before a one-thread server could fall asleep.
    pub client_spins: bool,
    /// Round trip with both threads on one CPU.
    pub rtt_local: f64,
    /// Round trip across CPUs with a blocking server, as this regime's client waits
    /// (asleep: two wake-ups; spinning: one).
    pub rtt_cross: f64,
    /// Round trip with neither side asleep: loopback and socket calls only.
    pub rtt_spin: f64,
    /// One wake-up of a thread asleep on another CPU.
    pub wake_up: f64,
    pub epoll_wait: f64,
    pub select: f64,
    /// Request and reply through a worker process's pipes.
    pub pipe: f64,
    /// A value sent to another thread and one sent back (a channel round trip).
    pub handoff: f64,
    /// The load generator's own work per request (its round trip less the bare one).
    pub client_work: f64,
    /// CPUs the load generator has to itself (pinned apart from the server); 0 where it
    /// shares the server's CPUs, whose capacity the server's formulas already count.
    pub client_cpus: usize,
    pub fib: f64,
    /// fib(n) in the isolates' WebAssembly interpreter.
    pub fib_interpreted: f64,
}

impl Costs {
    /// The server's CPU time in one request's socket calls: half a spinning round trip.
    fn socket_calls(&self) -> f64 {
        self.rtt_spin / 2.0
    }

    /// Clients and server can pair up, one pair per CPU.
    fn paired(&self) -> bool {
        self.shared && self.clients >= self.cpus
    }

    /// A one-thread loop never sleeps: a spinning client always has the next request
    /// there before the loop runs out of work.
    fn loop_never_sleeps(&self) -> bool {
        self.client_spins && self.clients >= 2
    }
}

/// One term of a request's path, µs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Term {
    pub what: &'static str,
    pub us: f64,
}

/// What limits the predicted throughput.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Limit {
    /// Each client waits for its reply: `clients / path`.
    Latency,
    /// The server's threads are busy all the time: `threads / CPU time per request`.
    Capacity,
    /// Every CPU runs a client/server pair back to back: `CPUs / local path`.
    Cpus,
    /// The load generator's CPUs are busy the whole time: `its CPUs / its CPU time per
    /// request`.
    LoadGenerator,
}

impl Limit {
    pub fn describe(self) -> &'static str {
        match self {
            Limit::Latency => "each client waits out one request's path",
            Limit::Capacity => "the server's threads are busy the whole time",
            Limit::Cpus => "every CPU runs a client/server pair back to back",
            Limit::LoadGenerator => "the load generator's own CPUs are busy the whole time",
        }
    }
}

/// A cell's predicted throughput.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// Requests per second; `None` when placement decides and only the range is known.
    pub rps: Option<f64>,
    /// The range: every placement the formula allows, requests per second.
    pub low: f64,
    pub high: f64,
    /// The path behind `rps` (or behind `low` for a range): what each request spends.
    pub terms: Vec<Term>,
    pub limit: Limit,
    /// The formula, in words and symbols.
    pub rule: &'static str,
}

impl Prediction {
    /// The term that costs most, and the whole path, µs.
    pub fn dominant(&self) -> Option<(&Term, f64)> {
        let total = self.terms.iter().map(|t| t.us).sum();
        self.terms
            .iter()
            .max_by(|a, b| a.us.total_cmp(&b.us))
            .map(|t| (t, total))
    }
}

const ROUND_TRIP_LOCAL: &str = "round trip on one CPU (socket calls, two context switches)";
const LOOPBACK: &str = "loopback and socket calls";
const WAKE_UPS: &str = "waking the sleeping side on another CPU";
const FIB: &str = "fib(n)";
const CLIENT: &str = "the load generator's own work";

fn cross(c: &Costs) -> Vec<Term> {
    with(
        vec![
            Term {
                what: LOOPBACK,
                us: c.rtt_spin.min(c.rtt_cross),
            },
            Term {
                what: WAKE_UPS,
                us: (c.rtt_cross - c.rtt_spin).max(0.0),
            },
        ],
        &[(CLIENT, c.client_work)],
    )
}

fn awake(c: &Costs) -> Vec<Term> {
    with(
        vec![Term {
            what: LOOPBACK,
            us: c.rtt_spin,
        }],
        &[(CLIENT, c.client_work)],
    )
}

fn local(c: &Costs) -> Vec<Term> {
    with(
        vec![Term {
            what: ROUND_TRIP_LOCAL,
            us: c.rtt_local,
        }],
        &[(CLIENT, c.client_work)],
    )
}

fn with(mut path: Vec<Term>, more: &[(&'static str, f64)]) -> Vec<Term> {
    path.extend(
        more.iter()
            .filter(|(_, us)| *us > 0.0)
            .map(|&(what, us)| Term { what, us }),
    );
    path
}

fn total(path: &[Term]) -> f64 {
    path.iter().map(|t| t.us).sum::<f64>().max(1e-3)
}

/// `min(served / path, capacity)`, with which of the two won.
fn closed(served: f64, path: Vec<Term>, capacity: f64, rule: &'static str) -> Prediction {
    let latency_bound = served * 1e6 / total(&path);
    let (rps, limit) = match latency_bound <= capacity {
        true => (latency_bound, Limit::Latency),
        false => (capacity, Limit::Capacity),
    };
    Prediction {
        rps: Some(rps),
        low: rps,
        high: rps,
        terms: path,
        limit,
        rule,
    }
}

/// `threads` CPUs, each running one request's `path` after another, as req/s.
fn per_cpu(threads: f64, path: &[Term]) -> f64 {
    threads * 1e6 / total(path)
}

impl CostModel {
    /// The predicted throughput of a closed-loop cell; see the module docs.
    pub fn predict(self, c: &Costs) -> Prediction {
        let clients = c.clients.max(1) as f64;
        let cpus = c.cpus.max(1) as f64;
        let fib = [(FIB, c.fib)];
        match self {
            CostModel::OneAtATime => {
                let mut p = closed(
                    1.0,
                    with(cross(c), &fib),
                    f64::INFINITY,
                    "1 / (cross-CPU round trip + fib): one client is served, the others wait",
                );
                if c.shared {
                    p.high = per_cpu(1.0, &with(local(c), &fib));
                }
                p
            }
            CostModel::ThreadPerConnection => per_connection(
                c,
                &fib,
                "c / (round trip + fib), or CPUs / (one-CPU round trip + fib) once a client/server pair fills every CPU",
            ),
            CostModel::ConnectionPool => per_connection(
                &Costs {
                    clients: c.clients.min(c.workers.max(1)),
                    ..*c
                },
                &fib,
                "min(c, workers) / (round trip + fib): a worker holds one connection for its whole life, the clients beyond the pool wait in its queue unanswered",
            ),
            CostModel::Isolated => per_connection(
                c,
                &[
                    ("hand-off to the isolate's thread and back", c.handoff),
                    // Apart from the clients, with CPUs to spread over, the two threads
                    // need not share one: the hop each way wakes the other.
                    (
                        "waking the isolate's thread and the connection's",
                        match !c.shared && c.cpus > 1 {
                            false => 0.0,
                            true => 2.0 * c.wake_up,
                        },
                    ),
                    ("fib(n), interpreted", c.fib_interpreted),
                ],
                "as threads, plus a thread hand-off, with fib interpreted",
            ),
            CostModel::EventLoop(readiness) => {
                let wait = match readiness {
                    Readiness::Epoll => ("epoll_wait", c.epoll_wait),
                    Readiness::Select => ("select", c.select),
                    Readiness::Completion => ("io_uring_enter (as epoll_wait)", c.epoll_wait),
                };
                event_loop(c, wait, clients)
            }
            CostModel::SpinLoop => {
                let path = vec![
                    Term {
                        what: LOOPBACK,
                        us: c.rtt_spin,
                    },
                    Term {
                        what: "waking the client (the server never sleeps)",
                        us: match c.client_spins {
                            false => c.wake_up,
                            // The client spins too: nobody sleeps.
                            true => 0.0,
                        },
                    },
                    Term {
                        what: FIB,
                        us: c.fib,
                    },
                    Term {
                        what: CLIENT,
                        us: c.client_work,
                    },
                ];
                closed(
                    clients,
                    path,
                    per_cpu(1.0, &[socket_calls(c), fib_term(c)]),
                    "min(c / (spinning round trip + client wake-up + fib), 1 / (socket calls + fib))",
                )
            }
            CostModel::WorkStealing => {
                let wait = ("epoll_wait", c.epoll_wait);
                // Apart from the clients, with other workers to hand to and other
                // clients keeping a worker busy, a ready connection's task is handed to a
                // worker that was parked: a hand-off between threads and a wake-up per
                // request. One client's task stays on the worker that polled it.
                let spread = !c.shared && c.clients > 1 && c.workers.min(c.cpus) > 1;
                let (handed, woken) = match spread {
                    false => (0.0, 0.0),
                    true => (c.handoff, c.wake_up),
                };
                let stolen = [
                    ("hand-off of the task to another worker", handed),
                    ("waking a parked worker", woken),
                ];
                let threads = (c.workers.max(1) as f64).min(cpus);
                let round_trip = match c.loop_never_sleeps() {
                    true => awake(c),
                    false => cross(c),
                };
                let mut low = closed(
                    clients,
                    with(with(round_trip, &[wait]), &stolen)
                        .into_iter()
                        .chain([fib_term(c)])
                        .collect(),
                    per_cpu(threads, &with(vec![socket_calls(c), fib_term(c)], &stolen)),
                    "between c / (cross-CPU round trip + fib) and CPUs / (one-CPU round trip + fib): which worker runs a connection decides",
                );
                if c.paired() {
                    // The paired bound may fall below the loop's (a cheap one-CPU round
                    // trip but fib dominating): the range is between the two, whichever
                    // is lower.
                    let paired = per_cpu(cpus, &with(local(c), &[wait, (FIB, c.fib)]));
                    (low.low, low.high) = (low.low.min(paired), low.low.max(paired));
                    if low.high > low.low * 1.3 {
                        low.rps = None;
                    }
                }
                low
            }
            CostModel::ProcessPool => {
                let pipe = ("pipe round trip to the worker process", c.pipe);
                let threads = (c.workers.max(1) as f64).min(cpus).min(clients);
                // Apart from the clients, every hop of a request wakes a blocked thread
                // on the server's CPUs: the connection's thread (its client's request),
                // the worker process (the request on its pipe), the connection's thread
                // again (the reply), and, with more clients than workers, a connection
                // thread waiting for a worker to be given back.
                let wakes = match (c.shared, c.clients > c.workers) {
                    (true, _) => 0.0,
                    (false, false) => 3.0,
                    (false, true) => 4.0,
                };
                let woken = ("waking the blocked thread at each hop", wakes * c.wake_up);
                // On a request's path, apart from the clients and with CPUs to spread
                // over, the worker process and the connection's thread sit on CPUs of
                // their own: the hop each way wakes the other (16 cores, 8 + 8, one
                // client: 31.9k req/s predicted without it, 20.0k measured).
                let hop = (
                    "waking the worker process and the connection's thread",
                    match !c.shared && c.cpus > 1 {
                        false => 0.0,
                        true => 2.0 * c.wake_up,
                    },
                );
                let mut p = closed(
                    clients,
                    with(cross(c), &[pipe, hop, (FIB, c.fib)]),
                    per_cpu(
                        threads,
                        &with(vec![socket_calls(c), fib_term(c)], &[pipe, woken]),
                    ),
                    "min(c / (cross-CPU round trip + pipe + fib), workers / (socket calls + pipe + fib)): three threads per request, none paired",
                );
                if c.shared {
                    // Paired with its clients on one CPU each, or, where fib dominates,
                    // below the unpaired point: the range spans the two.
                    let paired = per_cpu(clients.min(cpus), &with(local(c), &[pipe, (FIB, c.fib)]));
                    (p.low, p.high) = (p.low.min(paired), p.low.max(paired));
                }
                p
            }
            CostModel::PerCore => {
                let one = CostModel::EventLoop(Readiness::Epoll).predict(c);
                if c.clients <= 1 {
                    return one;
                }
                let loops = (c.workers.max(1) as f64).min(cpus).min(clients);
                let wait = ("epoll_wait", c.epoll_wait);
                let spread = closed(
                    clients,
                    with(cross(c), &[wait, (FIB, c.fib)]),
                    per_cpu(loops, &[socket_calls(c), fib_term(c)]),
                    "",
                );
                let limit = one.limit;
                placement_range(
                    one.low.min(spread.low),
                    spread.high.max(one.high),
                    one.terms,
                    limit,
                    "between one loop serving every client (the SO_REUSEPORT hash put them on one core) and min(c, cores) loops each serving its share: the hash decides",
                )
            }
            CostModel::Prefork => {
                let single = CostModel::OneAtATime.predict(c);
                if c.clients <= 1 {
                    return single;
                }
                let spread = per_connection(
                    &Costs {
                        clients: c.clients.min(c.workers.max(1)),
                        ..*c
                    },
                    &fib,
                    "",
                );
                placement_range(
                    single.low.min(spread.low),
                    spread.high.max(single.low),
                    single.terms,
                    Limit::Latency,
                    "between single (every client hashed onto one copy) and threads (each on its own copy): the kernel's SO_REUSEPORT hash decides",
                )
            }
        }
    }
}

/// A prediction the kernel's `SO_REUSEPORT` hash decides, between `low` (every client
/// hashed onto one copy) and `high` (spread): a point only where both placements give
/// about the same figure (one server CPU), else the range.
fn placement_range(
    low: f64,
    high: f64,
    terms: Vec<Term>,
    limit: Limit,
    rule: &'static str,
) -> Prediction {
    Prediction {
        rps: (high <= low * 1.3).then_some(low),
        low,
        high,
        terms,
        limit,
        rule,
    }
}

/// What a model keeps of one client's light throughput while one heavy request runs
/// (seed 004): `during / before`, and why, in words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kept {
    pub ratio: f64,
    /// The other outcome where placement decides (`prefork`: both connections hashed
    /// onto one child, which then serves the light client alone).
    pub or: Option<f64>,
    pub why: String,
}

impl CostModel {
    /// The light throughput one client keeps while a heavy request holds one of the
    /// server's threads, `c` being the light client's cell (1 client, the light n).
    ///
    /// ```text
    /// one thread (no --offload)     0: the heavy fib holds the only thread
    /// one at a time                 1: the heavy client waits its turn, the light one goes on
    /// threads, 2 shared CPUs        cross / local: before, each light reply woke the other
    ///                               CPU; during, the heavy request holds one CPU and the
    ///                               light pair shares the other, with no wake-up to pay
    /// one server CPU (pinned)       1/2: the light thread shares its CPU with the heavy one
    /// otherwise                     1: a CPU is left for the light thread
    /// ```
    pub fn kept(self, c: &Costs) -> Kept {
        let one_thread = matches!(self, CostModel::EventLoop(_) | CostModel::SpinLoop);
        if one_thread && !c.offload {
            return Kept {
                ratio: 0.0,
                or: None,
                why: "one thread: the heavy fib holds it, no light request is read until it ends"
                    .into(),
            };
        }
        if self == CostModel::PerCore && !c.offload {
            return Kept {
                ratio: 0.0,
                or: Some(1.0),
                why: "the heavy request holds its core's loop: a light client hashed onto the same core gets nothing, one on another core goes on".into(),
            };
        }
        if self == CostModel::OneAtATime {
            return Kept {
                ratio: 1.0,
                or: None,
                why: "one client at a time: the heavy request waits behind the light client and never runs".into(),
            };
        }
        // What each light request does besides its round trip: the pipe to a worker
        // process, or the hand-off to its isolate's thread.
        let pipe = match self {
            CostModel::ProcessPool => c.pipe,
            CostModel::Isolated => c.handoff,
            _ => 0.0,
        };
        let or = match self {
            CostModel::Prefork => Some(1.0),
            _ => None,
        };
        match (c.shared, c.cpus) {
            (true, 2) => {
                let before = total(&with(cross(c), &[("pipe", pipe)]));
                let during = total(&with(local(c), &[("pipe", pipe)]));
                Kept {
                    ratio: before / during,
                    or,
                    why: format!(
                        "before, each light request crossed CPUs ({before:.0} µs: a wake-up each way); during, the heavy request holds one CPU and the light client and its thread share the other ({during:.0} µs, no wake-up), so light throughput rises{}",
                        match or {
                            Some(_) => "; or 1.00, when the kernel hashes both connections onto one child (which then never serves the heavy one)",
                            None => "",
                        }
                    ),
                }
            }
            (false, 1) => Kept {
                ratio: 0.5,
                or,
                why: "the server's one CPU is shared with the heavy request: about half of it is left".into(),
            },
            _ => Kept {
                ratio: 1.0,
                or,
                why: "another CPU is free for the light client's thread".into(),
            },
        }
    }
}

fn socket_calls(c: &Costs) -> Term {
    Term {
        what: "the server's socket calls",
        us: c.socket_calls(),
    }
}

fn fib_term(c: &Costs) -> Term {
    Term {
        what: FIB,
        us: c.fib,
    }
}

/// A thread per connection with `work` per request (fib, or what replaces it).
fn per_connection(c: &Costs, work: &[(&'static str, f64)], rule: &'static str) -> Prediction {
    let clients = c.clients.max(1) as f64;
    let cpus = c.cpus.max(1) as f64;
    let paired = per_cpu(cpus, &with(local(c), work));
    if c.paired() {
        return Prediction {
            rps: Some(paired),
            low: paired,
            high: paired,
            terms: with(local(c), work),
            limit: Limit::Cpus,
            rule,
        };
    }
    // A connection's thread blocks in `read` between requests and is woken for each:
    // on CPUs apart from the clients that wake-up is paid on the server's CPUs, however
    // many clients keep them busy (16 cores, 8 + 8: 1.64M req/s predicted without it,
    // 0.78-0.83M measured).
    let woken: &[(&'static str, f64)] = match c.shared {
        true => &[],
        false => &[(WAKE_THREAD, c.wake_up)],
    };
    let mut p = closed(
        clients,
        with(cross(c), work),
        per_cpu(
            clients.min(cpus),
            &with(with(vec![socket_calls(c)], woken), work),
        ),
        rule,
    );
    if c.shared {
        p.high = per_cpu(clients.min(cpus), &with(local(c), work));
    }
    p
}

const WAKE_THREAD: &str = "waking the connection's thread for each request";

impl Costs {
    /// The load generator's capacity, req/s, where it has CPUs of its own
    /// ([`Costs::client_cpus`]): each request costs it its socket calls, its own work
    /// and, when it sleeps between replies, a wake-up shared by the replies that wake
    /// brings in (`replies_per_wake`: one from a thread per connection, which answers
    /// each client on its own; a batch from an event loop, which answers every ready
    /// connection in one turn). `None` where it shares the server's CPUs.
    pub fn client_capacity(&self, replies_per_wake: f64) -> Option<f64> {
        (self.client_cpus > 0 && !self.shared).then(|| {
            let wake = match self.client_spins {
                true => 0.0,
                false => self.wake_up / replies_per_wake.max(1.0),
            };
            per_cpu(
                self.client_cpus as f64,
                &[
                    socket_calls(self),
                    Term {
                        what: CLIENT,
                        us: self.client_work + wake,
                    },
                ],
            )
        })
    }
}

impl CostModel {
    /// Replies one wake-up of a load generator thread brings in, `c.clients` spread over
    /// `c.client_cpus` threads: loops (one, one per core, or tokio's workers) answer every
    /// ready connection in a turn, so a client thread's connections come back together,
    /// one wake for all of them; a thread per connection answers each on its own
    /// schedule, and each reply finds the client asleep.
    pub fn replies_per_wake(self, c: &Costs) -> f64 {
        match self {
            CostModel::EventLoop(_)
            | CostModel::SpinLoop
            | CostModel::PerCore
            | CostModel::WorkStealing => (c.clients as f64 / c.client_cpus.max(1) as f64).max(1.0),
            _ => 1.0,
        }
    }

    /// The fewest load generator threads the clients a pool holds can sit on, where
    /// that is fewer than they could spread over: a [`CostModel::ConnectionPool`] with
    /// more clients than workers serves whichever `workers` connections it accepted
    /// first, and the `c.clients` are dealt over `c.client_cpus` threads, so those
    /// `workers` may all belong to `ceil(workers / clients per thread)` threads (16
    /// cores, 8 + 8, 12 workers, 64 clients: 2 threads of 8) or to as many as
    /// `min(workers, client threads)`. `None` for every other model, and where the
    /// clients share the server's CPUs.
    pub fn crowded_client_threads(self, c: &Costs) -> Option<usize> {
        let workers = c.workers.max(1);
        let held = self == CostModel::ConnectionPool && !c.shared && c.client_cpus > 0;
        if !held || c.clients <= workers {
            return None;
        }
        let per_thread = c.clients.div_ceil(c.client_cpus);
        let fewest = workers.div_ceil(per_thread);
        (fewest < workers.min(c.client_cpus)).then_some(fewest)
    }
}

impl Prediction {
    /// This prediction where the clients it serves may crowd onto fewer load generator
    /// threads, whose capacity is `cap` (req/s; [`CostModel::crowded_client_threads`]):
    /// the range runs down to `cap`, and with no point once it spans more than the
    /// report's threshold, since the server's accept order decides.
    pub fn crowded(mut self, cap: Option<f64>) -> Prediction {
        let Some(cap) = cap.filter(|&cap| cap < self.low) else {
            return self;
        };
        self.low = cap;
        if self.high > self.low * 1.3 {
            self.rps = None;
            self.rule = "between min(c, workers) / (round trip + fib) and the capacity of the fewest load generator threads the held clients can sit on: the pool serves the connections it accepted first, and which load threads own them decides";
        }
        self
    }

    /// This prediction held to the load generator's capacity `cap` (req/s): where the
    /// client cannot send as fast as the server could serve, the client is the limit.
    pub fn within_client(mut self, cap: Option<f64>) -> Prediction {
        let Some(cap) = cap else {
            return self;
        };
        if let Some(rps) = self.rps
            && rps > cap
        {
            self.rps = Some(cap);
            self.limit = Limit::LoadGenerator;
        }
        if self.low > cap {
            self.low = cap;
            if self.rps.is_none() {
                self.limit = Limit::LoadGenerator;
            }
        }
        self.high = self.high.min(cap).max(self.low);
        if self.rps.is_none() && self.high <= self.low * 1.3 {
            self.rps = Some(self.low);
        }
        self
    }
}

/// One thread, waiting in `wait` between batches of ready connections.
fn event_loop(c: &Costs, wait: (&'static str, f64), clients: f64) -> Prediction {
    let round_trip = match c.loop_never_sleeps() {
        true => awake(c),
        false => cross(c),
    };
    // Apart from the clients, the loop may run out of ready connections and sleep, to be
    // woken for the next batch of requests (a batch at least what one load generator
    // thread sends after one wake of its own, its share of the connections), or find
    // the next request ready and never sleep. Which one, the timing decides: the
    // prediction is the range between the two.
    // (A spinning client has the next request there before the loop could sleep.)
    let apart = !c.shared && c.client_cpus > 0 && !c.offload && !c.loop_never_sleeps();
    let woken = match apart {
        false => 0.0,
        true => c.wake_up / (clients / c.client_cpus as f64).max(1.0),
    };
    let woken = ("waking the loop, once per batch of requests", woken);
    let mut p = match c.offload {
        false => closed(
            clients,
            with(round_trip.clone(), &[wait, (FIB, c.fib)]),
            per_cpu(
                1.0,
                &with(vec![socket_calls(c), fib_term(c)], &[wait, woken]),
            ),
            "min(c / (cross-CPU round trip + wait + fib), 1 / (socket calls + wait + fib)): one thread for every client",
        ),
        true => {
            let handoff = ("hand-off to the pool and back", c.handoff);
            let pool = (c.workers.max(1) as f64)
                .min(c.cpus.max(1) as f64)
                .min(clients);
            let loop_capacity = per_cpu(1.0, &with(vec![socket_calls(c)], &[wait, handoff]));
            closed(
                clients,
                with(round_trip.clone(), &[wait, handoff, (FIB, c.fib)]),
                loop_capacity.min(per_cpu(pool, &[fib_term(c)])),
                "min(c / (cross-CPU round trip + wait + hand-off + fib), the loop's and the pool's capacity)",
            )
        }
    };
    if c.shared {
        p.high = p.low.max(
            (clients * 1e6 / total(&with(local(c), &[wait, (FIB, c.fib)]))).min(per_cpu(
                1.0,
                &with(vec![socket_calls(c), fib_term(c)], &[wait]),
            )),
        );
    }
    if apart && woken.1 > 0.0 {
        let never_sleeps = (clients * 1e6 / total(&with(round_trip, &[wait, (FIB, c.fib)]))).min(
            per_cpu(1.0, &with(vec![socket_calls(c), fib_term(c)], &[wait])),
        );
        p.high = p.high.max(never_sleeps);
        if p.high > p.low * 1.3 {
            p.rps = None;
        }
    }
    p
}

#[cfg(test)]
mod tests;
