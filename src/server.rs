//! What every model is given: its [`Config`], and a listener bound by [`bind`]; and the
//! process boundary's vocabulary: the one parser of a server's flags ([`ConfigArgs`]),
//! its inverse ([`Config::to_args`]), the [`Variant`] a server runs, and the line a
//! server prints once it listens ([`listening_line`], [`parse_listening_line`]).
//!
//! A server started by another fiblab process (`prefork`'s children, the bench's
//! servers, the soak's) gets its settings as argv from `to_args`, and reads them with
//! the same parser as a person's command line; a test turns every field round, so a
//! new setting cannot be forgotten on the way.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::downstream::DownstreamConfig;
use crate::fib::MAX_N_FITS_U64;
use crate::gil::GilMode;
use crate::service::{DEFAULT_MAX_LINE, DEFAULT_MAX_N, Service, ServiceKind};
use crate::units::{format_duration, parse_duration};

mod listen;
pub use listen::{BindError, bind, bind_model, bind_with};

/// Settings shared by every model. Models ignore the fields that do not apply to them
/// (`single` has no pool), so one `serve` signature fits all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub service: Service,
    /// Longest request line, terminator excluded.
    pub max_line: usize,
    /// Pool size: worker threads (`threadpool`), runtime threads (`tokio`).
    pub workers: usize,
    /// Connections that may wait for a free worker (`threadpool`) before new ones are
    /// turned away with `ERR server busy`.
    pub queue: usize,
    /// How long shutdown waits for open connections before cutting them.
    pub grace: Duration,
    /// `prefork`: one port per process (the seed's form) instead of one shared port.
    pub ports: bool,
    /// `prefork`: one listening socket, one accept queue shared by the copies, instead
    /// of a `SO_REUSEPORT` socket each (see `models/prefork.rs`).
    pub one_queue: bool,
    /// The server was asked for `--port 0`: extra listeners (`prefork --ports`) take
    /// free ports too, instead of the ports after the first.
    pub free_ports: bool,
    /// Connections served at once; past it, new ones get `ERR server busy` and are closed.
    pub max_conns: usize,
    /// A connection that sends nothing (or reads none of its replies) for this long is
    /// closed; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Run fib in a bounded worker pool (`--workers` threads, `--queue` waiting jobs)
    /// instead of on the loop; only models whose registry entry allows it.
    pub offload: bool,
    /// `--gil`: CPython's interpreter lock, emulated ([`crate::gil`]); `None`: no lock
    /// (Rust, or free-threaded Python).
    pub gil: Option<GilMode>,
    /// `--switch-interval`: how long a thread waits for the lock before it asks the
    /// holder to drop it.
    pub switch_interval: Duration,
    /// `--gil-stats`: a file the server keeps rewriting with its lock counters.
    pub gil_stats: Option<PathBuf>,
    /// `--stack-size`: bytes of stack for each connection thread of the
    /// thread-per-connection models (`threads`, `isolates`, `procpool`); `None`: Rust's
    /// default (2 MiB, or `RUST_MIN_STACK`).
    pub stack_size: Option<usize>,
    /// `--max-inflight`: at most this many fib computations at once (a counting
    /// semaphore); the others wait for a permit. `threads` only.
    pub max_inflight: Option<usize>,
    /// `--downstream`: every valid request waits on this service first
    /// ([`crate::downstream`]); `None`: requests never wait.
    pub downstream: Option<DownstreamConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            service: Service::default(),
            max_line: DEFAULT_MAX_LINE,
            workers: default_workers(),
            queue: DEFAULT_QUEUE,
            max_conns: DEFAULT_MAX_CONNS,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            grace: DEFAULT_GRACE,
            offload: false,
            ports: false,
            one_queue: false,
            free_ports: false,
            gil: None,
            switch_interval: crate::gil::DEFAULT_SWITCH_INTERVAL,
            gil_stats: None,
            stack_size: None,
            max_inflight: None,
            downstream: None,
        }
    }
}

/// Default `--queue`: connections (threadpool) or jobs (`--offload`) that may wait for
/// a worker; a few per core on any machine fiblab runs on, so a burst queues briefly and
/// a flood is told `ERR server busy` instead of waiting without bound.
pub const DEFAULT_QUEUE: usize = 64;

/// Default `--grace`: long enough for in-flight requests up to `--max-n` to finish.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// Default `--max-conns`: above the bench's largest scenario (1000 clients), far below
/// what the descriptor limit fiblab raises itself to allows, and small enough that a
/// thread-per-connection model's stacks stay a modest reservation.
pub const DEFAULT_MAX_CONNS: usize = 1024;

/// Default `--idle-timeout`: long enough for a person typing into `nc`, short enough
/// that silent connections (slowloris) do not hold their slots for good.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// One worker per CPU this process may run on.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A server holds one descriptor per client; the usual soft limit of 1024 would refuse
/// clients long before the machine runs out. Raises it to the hard limit, as most
/// servers do; a failure is logged and the server goes on with the limit it has.
pub fn raise_descriptor_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(error = %e, soft, "cannot raise the descriptor limit");
    }
}

/// The smallest `--stack-size`: a connection thread's frames (the session, fib's
/// recursion to `--max-n`, formatting) need well under this, with room for a debug build.
pub const MIN_STACK_SIZE: usize = 64 << 10;

/// A server setting that cannot be used as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--max-n {0} is too large: fib(n) fits in 64 bits only up to n = {MAX_N_FITS_U64}")]
    MaxNTooLarge(u32),
    #[error("--workers must be at least 1")]
    NoWorkers,
    #[error(
        "--stack-size {0} is too small: a connection thread needs at least {MIN_STACK_SIZE} bytes (64KiB)"
    )]
    StackTooSmall(usize),
}

/// The flags of `fiblab serve` that make a [`Config`]: the one parser of a server's
/// settings, for a person's command line and a parent's argv alike.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct ConfigArgs {
    /// What each request line means.
    #[arg(long, value_enum, default_value_t = ServiceKind::Fib)]
    pub service: ServiceKind,
    /// Connections served at once; past it a new connection gets `ERR server busy` and
    /// is closed (it is accepted to be told, rather than left waiting in the backlog).
    /// 1024: above the bench's largest scenario (1000 clients), far below the descriptor
    /// limit the server raises itself to.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_conns: usize,
    /// A connection silent this long (or not reading its replies) is closed; 0: never.
    /// 300s: long enough for a person typing into nc, short enough that silent
    /// connections (slowloris) do not hold their slots for good.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Largest n a request may ask for (at most 93, where u64 ends). 44: naive fib(44)
    /// takes about 2 s on a small VM, so no request holds a worker for long.
    #[arg(long, default_value_t = DEFAULT_MAX_N)]
    pub max_n: u32,
    /// Longest request line in bytes, terminator excluded.
    #[arg(long, default_value_t = DEFAULT_MAX_LINE)]
    pub max_line: usize,
    /// Pool size. Default, per model: min(32, CPUs + 4) threadpool workers (Python's
    /// ThreadPoolExecutor, the seeds' pool: each worker holds a whole connection, so one
    /// per CPU would leave clients queued on a small machine); one per CPU for tokio's
    /// runtime threads, the --offload pool and prefork's and procpool's processes (more
    /// would only take turns on the same cores).
    #[arg(short, long)]
    pub workers: Option<usize>,
    /// threadpool: connections that may wait for a worker; --offload: jobs that may wait
    /// for a worker. Past it: `ERR server busy` (an answer beats an unbounded wait). 64:
    /// a burst queues briefly, a flood is told at once.
    #[arg(long, default_value_t = DEFAULT_QUEUE)]
    pub queue: usize,
    /// Run fib in a bounded pool of --workers threads (at most --queue waiting) so the
    /// event loop stays free; for the models that have one (see `fiblab models`).
    #[arg(long)]
    pub offload: bool,
    /// prefork: one port per process (the seed's form), from --port up, instead of one
    /// shared SO_REUSEPORT port.
    #[arg(long)]
    pub ports: bool,
    /// prefork: one listening socket, one accept queue for all processes (an idle one
    /// takes the next client, as Apache's prefork does) instead of a SO_REUSEPORT each.
    #[arg(long, conflicts_with = "ports")]
    pub one_queue: bool,
    /// On SIGINT/SIGTERM, how long open connections get to finish (e.g. 5s, 500ms). 5s:
    /// room for a request up to --max-n to finish.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Emulate CPython's global interpreter lock: a thread holds it while it parses,
    /// computes fib and formats a reply, and releases it around every socket call.
    /// `shared` (the default when given alone): one lock per process, isolates included
    /// (CPython to 3.11); `per-interpreter`: each isolate its own (3.12, PEP 684).
    /// Processes (procpool workers, prefork children) always have their own.
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "shared")]
    pub gil: Option<GilMode>,
    /// --gil: how long a thread waits for the lock before it asks the holder to drop
    /// it (CPython's sys.getswitchinterval(), 5 ms).
    #[arg(long, default_value = "5ms", value_parser = parse_duration)]
    pub switch_interval: Duration,
    /// --gil: keep rewriting this file with the lock's counters (JSON: acquisitions,
    /// waits, drop requests, forced switches), every 50 ms.
    #[arg(long)]
    pub gil_stats: Option<PathBuf>,
    /// Stack of each connection thread in the thread-per-connection models (threads,
    /// isolates, procpool), e.g. 256KiB; at least 64KiB. Default: Rust's, 2 MiB. A
    /// thread's stack is reserved address space; only the pages it touches are
    /// resident, so a smaller stack lets more threads fit in the address space but
    /// saves little memory (see the `connections` bench experiment).
    #[arg(long, value_parser = crate::units::parse_bytes)]
    pub stack_size: Option<usize>,
    /// At most K fib computations at once (the seeds' Semaphore(K)); the other
    /// connections' requests wait for a permit. `threads` only: a thread per
    /// connection is the model with nothing else to cap them.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_inflight: Option<u32>,
    /// I/O-bound work that waits: send each valid request line to this HOST:PORT (a
    /// `fiblab backend`, say) and answer only once its one-line reply is back. Each
    /// model waits in its own style (PROTOCOL.md, "Waiting on a downstream").
    #[arg(long, value_name = "HOST:PORT", value_parser = crate::downstream::parse_addr)]
    pub downstream: Option<SocketAddr>,
    /// --downstream: how long a request waits for the downstream (connect, send and
    /// reply) before it is answered `ERR downstream timed out`.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub downstream_timeout: Duration,
}

impl ConfigArgs {
    /// The settings these flags give; `free_ports` says the server was asked for port 0,
    /// `default_workers` is the model's `--workers` when none is given.
    ///
    /// # Errors
    /// `--max-n` past what u64 holds, `--workers 0`.
    pub fn into_config(
        self,
        free_ports: bool,
        default_workers: usize,
    ) -> Result<Config, ConfigError> {
        if self.max_n > MAX_N_FITS_U64 {
            return Err(ConfigError::MaxNTooLarge(self.max_n));
        }
        if self.workers == Some(0) {
            return Err(ConfigError::NoWorkers);
        }
        if let Some(size) = self.stack_size.filter(|&s| s < MIN_STACK_SIZE) {
            return Err(ConfigError::StackTooSmall(size));
        }
        Ok(Config {
            service: Service {
                kind: self.service,
                max_n: self.max_n,
            },
            max_line: self.max_line.max(1),
            workers: self.workers.unwrap_or(default_workers),
            queue: self.queue,
            max_conns: self.max_conns,
            idle_timeout: (!self.idle_timeout.is_zero()).then_some(self.idle_timeout),
            grace: self.grace,
            offload: self.offload,
            ports: self.ports,
            one_queue: self.one_queue,
            free_ports,
            gil: self.gil,
            switch_interval: self.switch_interval,
            gil_stats: self.gil_stats,
            stack_size: self.stack_size,
            max_inflight: self.max_inflight.map(|k| k as usize),
            downstream: self.downstream.map(|addr| DownstreamConfig {
                addr,
                timeout: self.downstream_timeout,
            }),
        })
    }
}

impl Config {
    /// The flags that give this config back through [`ConfigArgs`]: how a parent
    /// passes its settings to a child server. Every field is named here, so a new one
    /// does not compile until it is passed on; `free_ports` travels as `--port 0`.
    pub fn to_args(&self) -> Vec<String> {
        let Config {
            service: Service { kind, max_n },
            max_line,
            workers,
            queue,
            grace,
            ports,
            one_queue,
            free_ports: _,
            max_conns,
            idle_timeout,
            offload,
            gil,
            switch_interval,
            ref gil_stats,
            stack_size,
            max_inflight,
            downstream,
        } = *self;
        let mut args = vec![
            format!("--service={kind}"),
            format!("--max-n={max_n}"),
            format!("--max-line={max_line}"),
            format!("--workers={workers}"),
            format!("--queue={queue}"),
            format!("--grace={}", format_duration(grace)),
            format!("--max-conns={max_conns}"),
            format!(
                "--idle-timeout={}",
                format_duration(idle_timeout.unwrap_or(Duration::ZERO))
            ),
        ];
        if ports {
            args.push("--ports".into());
        }
        if one_queue {
            args.push("--one-queue".into());
        }
        if offload {
            args.push("--offload".into());
        }
        if let Some(mode) = gil {
            args.push(format!("--gil={mode}"));
            args.push(format!(
                "--switch-interval={}",
                format_duration(switch_interval)
            ));
        }
        if let Some(path) = gil_stats {
            args.push(format!("--gil-stats={}", path.display()));
        }
        if let Some(bytes) = stack_size {
            args.push(format!(
                "--stack-size={}",
                crate::units::format_bytes(bytes)
            ));
        }
        if let Some(k) = max_inflight {
            args.push(format!("--max-inflight={k}"));
        }
        if let Some(DownstreamConfig { addr, timeout }) = downstream {
            args.push(format!("--downstream={addr}"));
            args.push(format!("--downstream-timeout={}", format_duration(timeout)));
        }
        args
    }
}

/// A model as a server runs it: `epoll`, or `epoll+offload` for its `--offload`
/// variant. Plain data: the registry ([`crate::models::check`]) says whether the model
/// exists and has the variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Variant {
    pub model: String,
    pub offload: bool,
}

impl Variant {
    /// A model without `--offload`.
    pub fn plain(model: &str) -> Variant {
        Variant {
            model: model.to_string(),
            offload: false,
        }
    }

    /// `epoll` or `epoll+offload`, the name the tables and `--models` use.
    pub fn label(&self) -> String {
        self.to_string()
    }

    /// Splits `epoll+offload` into model and variant; the registry is not asked.
    pub fn split(text: &str) -> Variant {
        match text.strip_suffix("+offload") {
            Some(model) => Variant {
                model: model.to_string(),
                offload: true,
            },
            None => Variant::plain(text),
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let suffix = if self.offload { "+offload" } else { "" };
        write!(f, "{}{suffix}", self.model)
    }
}

/// The line `fiblab serve` prints on standard output once it listens: the first line a
/// parent reads, with [`parse_listening_line`]. `pooled`: the model (or its
/// `--offload` pool) runs `--workers`, which the line then names.
pub fn listening_line(
    variant: &Variant,
    config: &Config,
    local: SocketAddr,
    pooled: bool,
) -> String {
    format!(
        "fiblab serve: model={}{}{} service={} max-n={}{} listening on {local}",
        variant.model,
        if variant.offload { " (offload)" } else { "" },
        config
            .gil
            .map_or(String::new(), |mode| format!(" (gil {mode})")),
        config.service.kind,
        config.service.max_n,
        match pooled {
            true => format!(" workers={}", config.workers),
            false => String::new(),
        }
    )
}

/// The address in a line printed by [`listening_line`]; `None` for any other line.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    line.strip_prefix("fiblab serve: ")?
        .split("listening on ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Thread stack sizes as a file gives them (`["128KiB"]`), each at least
/// [`MIN_STACK_SIZE`]: for serde's `deserialize_with`.
///
/// # Errors
/// A size that does not parse, or one below the minimum.
pub fn deserialize_stack_sizes<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<usize>, D::Error> {
    use serde::Deserialize as _;
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| {
            let bytes = crate::units::parse_bytes(text).map_err(serde::de::Error::custom)?;
            match bytes >= MIN_STACK_SIZE {
                true => Ok(bytes),
                false => Err(serde::de::Error::custom(format!(
                    "thread stack {text} is below the servers' minimum of 64KiB"
                ))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        config: ConfigArgs,
    }

    fn parse(args: &[String]) -> Config {
        let argv = std::iter::once("fiblab".to_string()).chain(args.iter().cloned());
        Flags::try_parse_from(argv)
            .unwrap()
            .config
            .into_config(false, default_workers())
            .unwrap()
    }

    #[test]
    fn every_field_survives_to_args_and_back() {
        // Every field differs from its default, so a field that to_args forgot would
        // come back as the default and fail.
        let config = Config {
            service: Service {
                kind: ServiceKind::Upper,
                max_n: 77,
            },
            max_line: 99,
            workers: 7,
            queue: 3,
            grace: Duration::from_millis(1234),
            ports: true,
            one_queue: false,
            free_ports: false,
            max_conns: 5,
            idle_timeout: Some(Duration::from_micros(2_500_001)),
            offload: true,
            gil: Some(GilMode::PerInterpreter),
            switch_interval: Duration::from_millis(7),
            gil_stats: Some(PathBuf::from("/tmp/gil.json")),
            stack_size: Some(192 << 10),
            max_inflight: Some(3),
            downstream: Some(DownstreamConfig {
                addr: "127.0.0.1:25001".parse().unwrap(),
                timeout: Duration::from_millis(750),
            }),
        };
        let defaults = Config::default();
        assert_ne!(config.service.kind, defaults.service.kind);
        assert_ne!(config.service.max_n, defaults.service.max_n);
        assert_ne!(config.max_line, defaults.max_line);
        assert_ne!(config.workers, defaults.workers);
        assert_ne!(config.queue, defaults.queue);
        assert_ne!(config.grace, defaults.grace);
        assert_ne!(config.ports, defaults.ports);
        assert_ne!(config.max_conns, defaults.max_conns);
        assert_ne!(config.idle_timeout, defaults.idle_timeout);
        assert_ne!(config.offload, defaults.offload);
        assert_eq!(parse(&config.to_args()), config);
        let never_idle = Config {
            idle_timeout: None,
            ..defaults.clone()
        };
        assert_eq!(parse(&never_idle.to_args()), never_idle);
        // `--one-queue` excludes `--ports`: a config of its own.
        let one_queue = Config {
            one_queue: true,
            ..defaults.clone()
        };
        assert_ne!(one_queue.one_queue, defaults.one_queue);
        assert_eq!(parse(&one_queue.to_args()), one_queue);
        assert_eq!(parse(&defaults.to_args()), defaults);
    }

    #[test]
    fn settings_past_their_limits_are_refused() {
        let argv = ["fiblab", "--max-n", "94"];
        let args = Flags::try_parse_from(argv).unwrap().config;
        assert_eq!(
            args.into_config(false, 1),
            Err(ConfigError::MaxNTooLarge(94))
        );
        let args = Flags::try_parse_from(["fiblab", "-w", "0"]).unwrap().config;
        assert_eq!(args.into_config(false, 1), Err(ConfigError::NoWorkers));
        let args = Flags::try_parse_from(["fiblab", "--stack-size", "16KiB"])
            .unwrap()
            .config;
        assert_eq!(
            args.into_config(false, 1),
            Err(ConfigError::StackTooSmall(16 << 10))
        );
    }

    #[test]
    fn listening_line_round_trip() {
        let addr: SocketAddr = "127.0.0.1:40123".parse().unwrap();
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        let variant = Variant::split("epoll+offload");
        let config = Config::default();
        assert_eq!(
            parse_listening_line(&listening_line(&variant, &config, addr, true)),
            Some(addr)
        );
        assert_eq!(
            parse_listening_line(&listening_line(
                &Variant::plain("threads"),
                &config,
                v6,
                false
            )),
            Some(v6)
        );
        assert_eq!(parse_listening_line("listening on 1.2.3.4:5"), None);
        // Workers only where the model has a pool (issue 47: `threads` said workers=2).
        let line = |pooled| listening_line(&Variant::plain("threads"), &config, addr, pooled);
        assert!(!line(false).contains("workers="), "{}", line(false));
        assert!(line(true).contains("workers="));
    }

    #[test]
    fn variants_print_as_they_parse() {
        for text in ["epoll", "epoll+offload", "tokio-current+offload"] {
            assert_eq!(Variant::split(text).label(), text);
        }
    }

    #[test]
    fn bind_port_zero_then_rebind_same_port() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        drop(first);
        let again = bind(addr).unwrap();
        assert_eq!(again.local_addr().unwrap(), addr);
    }
}
