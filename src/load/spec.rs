//! What a load run is asked to do ([`LoadSpec`], checked by [`LoadSpec::validate`]),
//! when it stops, and how a caller watches it ([`Hooks`], [`Tick`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::mix::{Mix, Protocol};

/// When a run stops sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this long (after the warm-up).
    After(Duration),
    /// After exactly this many requests (after the warm-up).
    Requests(u64),
}

/// Everything a run needs to know.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    pub mix: Mix,
    pub connections: usize,
    /// Requests in flight per connection (at least 1). Closed loop: always this many.
    /// Open loop: at most this many; a request that falls due while its connection
    /// is full is sent as soon as there is room, and measured from when it was due.
    pub pipeline: usize,
    /// Open loop: requests per second over all connections.
    pub rate: Option<f64>,
    pub stop: Stop,
    pub warmup: Duration,
    /// A request without a reply for this long counts as a timeout; its connection
    /// is closed and opened again.
    pub timeout: Duration,
    pub threads: usize,
    pub spin: bool,
    /// Open loop: act on a grid of this period instead of at each request's due time
    /// (zero: at each due time). The loop sleeps to the next tick and sends everything
    /// due by then, and reads replies at the ticks with the kernel's arrival stamp
    /// (`SO_TIMESTAMPNS`), so a reply's time stays exact while wake-ups fall from about
    /// one per request to at most one per tick. A request is sent up to one tick late,
    /// and measured from when it was due, so the lateness is in its latency.
    pub tick: Duration,
    pub cpus: Option<Vec<usize>>,
    pub seed: u64,
    /// Which reply lines are errors.
    pub protocol: Protocol,
    /// This run is one agent of a load split across several; `None`: the whole load.
    pub agent: Option<Agent>,
}

/// One agent's part of a load split across processes or hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agent {
    pub segment: Segment,
    /// When every agent starts its warm-up (wall clock): the schedules line up only if
    /// the agents start together. `None`: at once.
    pub start_at: Option<std::time::SystemTime>,
}

/// An execution segment (k6's term): of a run's `connections`, an agent runs those
/// whose index is `index` modulo `count`, each on the schedule it has in the whole run
/// (interval `connections / rate`, phase `index / connections` of it), so the agents'
/// sends interleave exactly as one client's would and together offer exactly the rate
/// asked. Written `I/N`, agent I of N, counting from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// 0-based.
    pub index: usize,
    pub count: usize,
}

impl Segment {
    /// `I/N`, 1 <= I <= N.
    ///
    /// # Errors
    /// Not two numbers with a slash, or I outside 1..=N.
    pub fn parse(text: &str) -> Result<Segment, SpecError> {
        let bad = || SpecError::BadSegment(text.to_string());
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (i, n): (usize, usize) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || i == 0 || i > n {
            return Err(bad());
        }
        Ok(Segment {
            index: i - 1,
            count: n,
        })
    }

    /// The whole load, as one segment.
    pub const WHOLE: Segment = Segment { index: 0, count: 1 };

    /// Whether connection `index` (of the whole run) is this segment's.
    pub fn owns(&self, connection: usize) -> bool {
        connection % self.count.max(1) == self.index
    }

    /// How many of `connections` are this segment's.
    pub fn share_of(&self, connections: usize) -> usize {
        (0..connections).filter(|&c| self.owns(c)).count()
    }
}

impl std::fmt::Display for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

impl LoadSpec {
    /// This run's segment: the whole load unless it is an agent's part.
    pub fn segment(&self) -> Segment {
        self.agent.map_or(Segment::WHOLE, |a| a.segment)
    }

    /// The connections this run opens, by their index in the whole load.
    pub fn own_connections(&self) -> Vec<usize> {
        let segment = self.segment();
        (0..self.connections).filter(|&c| segment.owns(c)).collect()
    }
}

/// A load that cannot run as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("--conns and --pipeline must be at least 1")]
    NoConnections,
    #[error(
        "--no-newline needs --pipeline 1: unterminated requests sent back to back run together (30 30 arrives as 3030)"
    )]
    UnterminatedPipeline,
    #[error("--timeout must be more than 0")]
    NoTimeout,
    #[error("--rate must be a positive number of requests per second")]
    BadRate,
    #[error("--threads must be at least 1")]
    NoThreads,
    #[error("--segment {0}: write agent I of N as I/N, with 1 <= I <= N")]
    BadSegment(String),
    #[error(
        "--pipeline {0} is more than {MAX_PIPELINE} requests in flight per connection: no server holds that many, and each costs the client memory; pick a smaller one"
    )]
    PipelineTooDeep(usize),
    #[error(
        "--conns {0} is more than {MAX_CONNECTIONS} connections: more than any descriptor limit allows; pick a smaller one"
    )]
    TooManyConnections(usize),
    #[error(
        "--segment {0} of {1} connections leaves this agent none: use at most as many agents as --conns"
    )]
    SegmentWithoutConnections(String, usize),
}

/// The most requests in flight per connection `--pipeline` takes: each is a slot in
/// the connection's queue, sized before the run.
pub const MAX_PIPELINE: usize = 4096;

/// The most connections one load opens (`--conns`): past any descriptor limit.
pub const MAX_CONNECTIONS: usize = 1 << 20;

impl LoadSpec {
    /// A closed loop of `connections` on one thread, one request in flight on each,
    /// asking `mix` of fiblab's protocol until `stop`: no warm-up, a 30 s timeout,
    /// unpinned, seed 1. The clients built on the engine (`perf1`, `perf2`, `soak`,
    /// the lab) start from it and change what they need.
    pub fn closed_loop(addr: SocketAddr, mix: Mix, connections: usize, stop: Stop) -> LoadSpec {
        LoadSpec {
            addr,
            mix,
            connections,
            pipeline: 1,
            rate: None,
            stop,
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(30),
            threads: 1,
            spin: false,
            tick: Duration::ZERO,
            cpus: None,
            seed: 1,
            agent: None,
            protocol: Protocol::Fiblab,
        }
    }

    /// Checks what the types alone do not: a run this spec describes can start.
    ///
    /// # Errors
    /// No connections or pipeline, unterminated requests pipelined, a zero timeout, a
    /// rate that is not a positive number, no threads.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.connections == 0 || self.pipeline == 0 {
            return Err(SpecError::NoConnections);
        }
        if self.pipeline > MAX_PIPELINE {
            return Err(SpecError::PipelineTooDeep(self.pipeline));
        }
        if self.connections > MAX_CONNECTIONS {
            return Err(SpecError::TooManyConnections(self.connections));
        }
        if self.pipeline > 1 && self.mix.classes.iter().any(|c| !c.terminated()) {
            return Err(SpecError::UnterminatedPipeline);
        }
        if self.timeout.is_zero() {
            return Err(SpecError::NoTimeout);
        }
        if self.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            return Err(SpecError::BadRate);
        }
        if let Some(agent) = self.agent
            && agent.segment.share_of(self.connections) == 0
        {
            return Err(SpecError::SegmentWithoutConnections(
                agent.segment.to_string(),
                self.connections,
            ));
        }
        if self.threads == 0 {
            return Err(SpecError::NoThreads);
        }
        Ok(())
    }
}

/// Called on a worker thread for every measured reply: (latency from send, reply
/// line, correct, the connection's index in the whole load).
pub type OnReply = Arc<dyn Fn(Duration, &[u8], bool, usize) + Send + Sync>;

/// What the run did in one measured second, for live views.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// Seconds since the measurement started (0 = the first second).
    pub second: u64,
    /// Correct replies in this second, all classes.
    pub ok: u64,
    /// Errors so far.
    pub errors: u64,
    /// Correct replies in this second, per class.
    pub class_ok: Vec<u64>,
    /// p99 latency (µs, from the intended send time) per class, of the most recent
    /// second every thread has finished (one or two seconds behind).
    pub class_p99_us: Vec<u64>,
}

/// Callbacks for the clients built on the engine (`perf1`, `perf2`, the live views).
#[derive(Default)]
pub struct Hooks<'a> {
    /// Once a second, on the calling thread.
    pub on_second: Option<&'a mut dyn FnMut(&Tick)>,
    /// Checked every few milliseconds on the calling thread; returning true stops the
    /// run as Ctrl-C does (a live view's quit key).
    pub should_stop: Option<&'a mut dyn FnMut() -> bool>,
    pub on_reply: Option<OnReply>,
    /// At the edges of the measured window, on the calling thread, with the correct
    /// replies so far (warm-up included): once when the warm-up ends, and, for a run
    /// of fixed duration ([`Stop::After`]), once [`WINDOW_END_MARGIN`] before it ends,
    /// while every connection is still open. What someone reads from outside at both
    /// edges (a server's CPU time, its threads' wake-ups), divided by the difference of
    /// the two counts, is a cost per reply.
    pub on_window: Option<&'a mut dyn FnMut(Edge, u64)>,
}

/// An edge of the measured window; see [`Hooks::on_window`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Start,
    End,
}

/// How long before a fixed-duration run ends [`Edge::End`] is called: the engine looks
/// every 5 ms, and the connections must still be open (a thread-per-connection
/// server's threads still alive) when the end is read.
pub const WINDOW_END_MARGIN: std::time::Duration = std::time::Duration::from_millis(20);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::mix::Class;

    fn spec(class: Class) -> LoadSpec {
        LoadSpec {
            addr: "127.0.0.1:1".parse().unwrap(),
            mix: Mix::new(vec![class]).unwrap(),
            connections: 1,
            pipeline: 1,
            rate: None,
            stop: Stop::Requests(1),
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(1),
            threads: 1,
            spin: false,
            tick: Duration::ZERO,
            cpus: None,
            seed: 1,
            agent: None,
            protocol: Protocol::Fiblab,
        }
    }

    #[test]
    fn validate_refuses_what_cannot_run() {
        let ok = spec(Class::fib(1, 1, true));
        assert_eq!(ok.validate(), Ok(()));
        let none = LoadSpec {
            connections: 0,
            ..ok.clone()
        };
        assert_eq!(none.validate(), Err(SpecError::NoConnections));
        let glued = LoadSpec {
            pipeline: 2,
            ..spec(Class::fib(1, 1, false))
        };
        assert_eq!(glued.validate(), Err(SpecError::UnterminatedPipeline));
        let hasty = LoadSpec {
            timeout: Duration::ZERO,
            ..ok.clone()
        };
        assert_eq!(hasty.validate(), Err(SpecError::NoTimeout));
        let wild = LoadSpec {
            rate: Some(f64::NAN),
            ..ok.clone()
        };
        assert_eq!(wild.validate(), Err(SpecError::BadRate));
        let idle = LoadSpec { threads: 0, ..ok };
        assert_eq!(idle.validate(), Err(SpecError::NoThreads));
    }
}
