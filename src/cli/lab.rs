//! `fiblab lab`: the page where the seeds' experiments run while you watch.

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use fiblab::units::parse_addr;
use fiblab::web::guard::Token;

/// The environment variable a token may come in (kept out of `ps`, unlike `--token`).
const TOKEN_ENV: &str = "FIBLAB_LAB_TOKEN";

#[derive(Args)]
pub struct LabArgs {
    /// Where the page is served. Beyond loopback, share the printed URL only with
    /// those who may start servers and load on this machine.
    #[arg(long, default_value = "127.0.0.1:8025", value_parser = parse_addr)]
    addr: SocketAddr,
    /// The secret every request must carry (`?token=` or the X-Fiblab-Token header).
    /// Without it (and without --token-file or $FIBLAB_LAB_TOKEN) a random one is
    /// made at each start and printed in the URL. Visible in `ps`: prefer
    /// --token-file or $FIBLAB_LAB_TOKEN.
    #[arg(long, conflicts_with_all = ["token_file", "no_token"])]
    token: Option<String>,
    /// Read the token from this file (its first line).
    #[arg(long, value_name = "PATH", conflicts_with = "no_token")]
    token_file: Option<PathBuf>,
    /// No token at all: any program on this machine (not a page elsewhere) may drive
    /// the lab. Loopback only.
    #[arg(long)]
    no_token: bool,
    /// A host name the page may be opened at, besides localhost and IP addresses
    /// (repeatable; `*` allows any name, as behind a proxy that checks names itself).
    /// Other names are refused: a page elsewhere could otherwise reach the lab through
    /// DNS rebinding.
    #[arg(long, value_name = "NAME")]
    allow_host: Vec<String>,
}

/// The token asked for, in order: `--token`, `--token-file`, `$FIBLAB_LAB_TOKEN`, a
/// random one; `None` with `--no-token`.
fn token_of(args: &LabArgs) -> Result<Option<Token>> {
    if args.no_token {
        return Ok(None);
    }
    let given = if let Some(token) = &args.token {
        Some(token.clone())
    } else if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --token-file {}", path.display()))?;
        Some(text.lines().next().unwrap_or("").trim().to_string())
    } else {
        std::env::var(TOKEN_ENV).ok()
    };
    let token = match given {
        Some(secret) => Token::new(&secret).context("the lab's token")?,
        None => Token::generate().context("cannot make a token")?,
    };
    Ok(Some(token))
}

pub fn run(args: LabArgs) -> Result<()> {
    let token = token_of(&args)?;
    if token.is_none() {
        if !args.addr.ip().is_loopback() {
            bail!(
                "--no-token on {}: beyond loopback anyone who can reach it could start servers and load; drop --no-token",
                args.addr
            );
        }
        eprintln!(
            "fiblab lab: WARNING: --no-token: every program on this machine, any user's, can start servers and load through the lab (pages elsewhere still cannot)"
        );
    }
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    // Before any thread exists: only the signal thread sees SIGINT/SIGTERM.
    fiblab::shutdown::on_signals(move || flag.store(true, Ordering::Relaxed))
        .context("cannot handle SIGINT/SIGTERM")?;
    let query = token
        .as_ref()
        .map(|t| format!("?token={}", t.query_value()))
        .unwrap_or_default();
    let options = fiblab::lab::LabOptions {
        addr: args.addr,
        token,
        allow_hosts: args.allow_host,
        exe: fiblab::process::fiblab_exe().context("cannot find the fiblab binary")?,
    };
    fiblab::lab::run(&options, interrupt, |local| {
        // Written, not printed: a closed stdout is no reason to panic.
        let _ = writeln!(
            io::stdout(),
            "fiblab lab: open http://{local}/{query} (Ctrl-C stops the lab and everything it started)"
        );
        let _ = io::stdout().flush();
    })?;
    Ok(())
}
