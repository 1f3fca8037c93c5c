//! `fiblab lab`: one page in the browser where a server runs, its model switches, load
//! comes and goes, and the figures move while you watch (seeds 000-004 as a class
//! would see them).
//!
//! ```text
//! browser ── GET /          the page (page.html: plain HTML, JavaScript, canvas)
//!         ── GET /events    server-sent events: a point every 250 ms, the marks, the
//!                           server's own /metrics figures
//!         ── POST /api/...  start / stop / switch the server, set the load, send the
//!                           heavy request, send one line as nc would
//!         ── /api/advise    the advice form: `fiblab advise` predicted, and measured
//!                           live (advice.rs)
//!
//! lab ── a `fiblab serve --metrics` child (process::ServerProcess: the bench's process
//!        boundary; only registry models with validated flags)
//!     ── the load engine (load::run) in a thread of its own, closed loop, its replies
//!        counted into 250 ms windows (throughput, p50 / p99 / p99.9, errors)
//! ```
//!
//! Safe by default: it binds loopback; every request needs a token (random per start,
//! in the URL it prints) unless `--no-token` on loopback; it answers only to its own
//! host names and changes nothing for a page of another origin (see `http.rs` and
//! [`crate::web::guard`]); its HTTP is bounded ([`crate::web`]); it starts only
//! registry models, bounds clients, n, request lines and heavy requests, answers a
//! malformed request with a 4xx that says what is wrong, and its children die with it,
//! even on SIGKILL ([`crate::process`]).

pub mod advice;
mod asked;
mod figures;
mod http;
pub mod lessons;
mod state;
mod wire;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use figures::{Measured, Point, Progress, TICK};
pub use state::{Lab, LoadSetting, Refusal, ServerSetting};

use crate::web::guard::{AllowedHosts, Token};

/// Most closed-loop clients the page may ask for.
pub const MAX_CLIENTS: usize = 256;

/// Largest `n` of the load (the heavy request is sized apart).
pub const MAX_LOAD_N: u32 = 32;

/// Highest open-loop rate the page may ask for, req/s.
pub const MAX_RATE: f64 = 200_000.0;

/// Longest line the page may send as `nc` would.
pub const MAX_LINE: usize = 1024;

/// How the lab is reached and what it starts.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub addr: SocketAddr,
    /// Every request must carry it; `None` only on loopback (`--no-token`).
    pub token: Option<Token>,
    /// Host names the lab answers to besides `localhost` and IP addresses
    /// (`--allow-host`; `*`: any).
    pub allow_hosts: Vec<String>,
    /// The fiblab binary the servers are started from.
    pub exe: PathBuf,
}

/// Why the lab cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "{0} is not a loopback address: anyone who can reach it could start servers and load; drop --no-token (a random token is made) or give one with --token-file"
    )]
    NeedsToken(SocketAddr),
    #[error("cannot listen on {addr}: {why}; pick another with --addr")]
    Bind { addr: SocketAddr, why: String },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Serves the lab on `options.addr` until `interrupt` is set, then stops the load and
/// the server it started. `ready` is called with the address it listens on.
///
/// # Errors
/// See [`LabError`].
pub fn run(
    options: &LabOptions,
    interrupt: Arc<AtomicBool>,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), LabError> {
    if !options.addr.ip().is_loopback() && options.token.is_none() {
        return Err(LabError::NeedsToken(options.addr));
    }
    let listener = std::net::TcpListener::bind(options.addr).map_err(|e| LabError::Bind {
        addr: options.addr,
        why: e.to_string(),
    })?;
    let lab = Lab::start(options.exe.clone())?;
    let gate = http::Gate {
        token: options.token.clone(),
        hosts: AllowedHosts::new(&options.allow_hosts),
    };
    let server = crate::web::Server::start(
        "lab-http",
        listener,
        http::LIMITS,
        http::handler(lab.clone(), gate),
    )?;
    ready(server.local_addr());
    while !interrupt.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nothing new is taken while the lab stops what it started.
    drop(server);
    lab.shut_down();
    Ok(())
}
