//! `fiblab lab`: the page where the seeds' experiments run while you watch.

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result};
use clap::Args;

use fiblab::units::parse_addr;

#[derive(Args)]
pub struct LabArgs {
    /// Where the page is served. Anything but loopback needs --token.
    #[arg(long, default_value = "127.0.0.1:8025", value_parser = parse_addr)]
    addr: SocketAddr,
    /// A secret every request must carry (`?token=` or the X-Fiblab-Token header);
    /// required beyond loopback.
    #[arg(long)]
    token: Option<String>,
}

pub fn run(args: LabArgs) -> Result<()> {
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    // Before any thread exists: only the signal thread sees SIGINT/SIGTERM.
    fiblab::shutdown::on_signals(move || flag.store(true, Ordering::Relaxed))
        .context("cannot handle SIGINT/SIGTERM")?;
    let options = fiblab::lab::LabOptions {
        addr: args.addr,
        token: args.token.clone(),
        exe: fiblab::process::fiblab_exe().context("cannot find the fiblab binary")?,
    };
    let token = args.token;
    fiblab::lab::run(&options, interrupt, |local| {
        let query = token.map(|t| format!("?token={t}")).unwrap_or_default();
        // Written, not printed: a closed stdout is no reason to panic.
        let _ = writeln!(
            io::stdout(),
            "fiblab lab: open http://{local}/{query} (Ctrl-C stops the lab and everything it started)"
        );
        let _ = io::stdout().flush();
    })?;
    Ok(())
}
