//! `fiblab serve`: one model on one listening socket until SIGINT/SIGTERM.

use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, Result};
use clap::Args;

use fiblab::models::{self, MODELS};
use fiblab::server::{self, ConfigArgs, Variant};
use fiblab::shutdown::{self, Shutdown};

#[derive(Args)]
pub struct ServeArgs {
    /// The concurrency model (see `fiblab models`).
    #[arg(short, long, default_value = "threads", value_parser = clap::builder::PossibleValuesParser::new(MODELS.iter().map(|m| m.name)))]
    model: String,
    /// Address to listen on; anything but loopback exposes the server to the network.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Port to listen on; 0 picks a free one (printed at start).
    #[arg(short, long, default_value_t = 25000)]
    port: u16,
    /// Address and port together (HOST:PORT, as `load`, `perf1`, `perf2`, `backend`
    /// and `lab` take them), instead of --bind and --port.
    #[arg(long, value_name = "HOST:PORT", value_parser = fiblab::units::parse_addr, conflicts_with_all = ["bind", "port"])]
    addr: Option<SocketAddr>,
    /// Serve on the listening socket passed as standard input (how prefork starts its
    /// processes) instead of binding one.
    #[arg(long, hide = true)]
    inherited_listener: bool,
    /// For a model that binds with SO_REUSEPORT (`per-core`, `prefork`): share a port
    /// that other SO_REUSEPORT listeners of this user already hold, on purpose; the kernel
    /// then splits new clients between the servers. Without it such a port is refused.
    #[arg(long)]
    join_port: bool,
    /// Serve Prometheus metrics on http://ADDR/metrics (requests, errors, service time,
    /// connections, the GIL, the process tree's CPU and memory). Off by default; a
    /// non-loopback ADDR exposes them to the network.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Count as --metrics does, and keep rewriting FILE with the exposition instead of
    /// serving it (how prefork's copies report to their parent's endpoint).
    #[arg(long, hide = true, value_name = "FILE")]
    metrics_publish: Option<std::path::PathBuf>,
    #[command(flatten)]
    config: ConfigArgs,
}

pub fn run(mut args: ServeArgs) -> Result<()> {
    if let Some(addr) = args.addr {
        (args.bind, args.port) = (addr.ip(), addr.port());
    }
    let defaults = models::find(&args.model).map_or(1, |m| m.workers.default_here());
    let config = args.config.into_config(args.port == 0, defaults)?;
    let variant = Variant {
        model: args.model,
        offload: config.offload,
    };
    let model = models::check_config(&variant, &config)?;
    if args.join_port && !model.reuse_port {
        anyhow::bail!(
            "--join-port needs a model that binds with SO_REUSEPORT ({}); --model {} binds its port alone",
            MODELS
                .iter()
                .filter(|m| m.reuse_port)
                .map(|m| m.name)
                .collect::<Vec<_>>()
                .join(", "),
            model.name
        );
    }
    (model.available)().with_context(|| format!("cannot serve --model {}", model.name))?;
    if let Some(mode) = config.gil {
        fiblab::gil::install(mode, config.switch_interval);
    }
    if let Some(path) = &config.gil_stats {
        fiblab::gil::publish(path, std::time::Duration::from_millis(50)).with_context(|| {
            format!(
                "cannot write the lock's counters to {}; give --gil-stats a writable path",
                path.display()
            )
        })?;
    }
    server::raise_descriptor_limit();
    // Before any thread exists, so that every thread inherits the mask and only the
    // signal thread ever sees SIGINT/SIGTERM.
    let shutdown = Shutdown::new().context("cannot set up shutdown handling")?;
    let trigger = shutdown.clone();
    shutdown::on_signals(move || trigger.trigger()).context("cannot handle SIGINT/SIGTERM")?;
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = if args.inherited_listener {
        fiblab::process::inherited_listener()?
    } else {
        match server::bind_model(addr, model.reuse_port, args.join_port) {
            Ok(listener) => listener,
            Err(e @ server::BindError::PortHeld { .. }) => {
                return Err(e).with_context(|| format!("cannot listen on {addr}"));
            }
            Err(server::BindError::Io(e)) => {
                return Err(e).with_context(|| {
                    format!("cannot listen on {addr}; is another server using the port? Pick another with --port")
                });
            }
        }
    };
    let local = listener.local_addr()?;
    fiblab::downstream::check_not_itself(config.downstream, local)?;
    // Started before the model, so that the first request is counted; stopped (dropped)
    // after it returns.
    if let Some(path) = args.metrics_publish {
        fiblab::metrics::publish(path).context("cannot start publishing the metrics")?;
    }
    let metrics = match args.metrics {
        None => None,
        Some(at) => {
            let info = fiblab::exposition::ServerInfo {
                model: variant.model.clone(),
                service: config.service.kind.to_string(),
                gil: config.gil.map_or("none".to_string(), |g| g.to_string()),
                offload: config.offload,
                workers: config.workers,
            };
            let endpoint = fiblab::exposition::Endpoint::start(at, &info).with_context(|| {
                format!("cannot serve --metrics on {at}; pick a free address, or port 0")
            })?;
            if !at.ip().is_loopback() {
                tracing::warn!(addr = %endpoint.local_addr(), "--metrics beyond loopback: anyone who can reach it reads the server's counters");
            }
            tracing::info!(url = %format!("http://{}/metrics", endpoint.local_addr()), "serving metrics");
            Some(endpoint)
        }
    };
    if !args.bind.is_loopback() {
        tracing::warn!(
            %local,
            max_conns = config.max_conns,
            idle_timeout = ?config.idle_timeout,
            max_n = config.service.max_n,
            max_line = config.max_line,
            "listening beyond loopback: anyone who can reach this address can load the server, within these limits"
        );
        if config.idle_timeout.is_none() {
            tracing::warn!(
                "--idle-timeout 0 beyond loopback: silent connections hold their slots for good"
            );
        }
    }
    // Written, not printed: a closed stdout is an error to report, not a panic.
    writeln!(
        io::stdout(),
        "{}",
        server::listening_line(
            &variant,
            &config,
            local,
            model.workers.used(variant.offload)
        )
    )?;
    io::stdout().flush()?;
    (model.serve)(listener, &config, shutdown)
        .with_context(|| format!("model {} failed", model.name))?;
    drop(metrics);
    tracing::info!("stopped");
    Ok(())
}
