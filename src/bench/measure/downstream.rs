//! A downstream for the bench's waiting requests: `fiblab backend` in a thread of the
//! bench, on the load generator's CPUs (it is the load's side of the machine), counted
//! apart so a report can say it was not the limit.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use super::Run;
use crate::backend::{BackendConfig, BackendStats, serve};
use crate::shutdown::Shutdown;

/// A running backend; [`stop`](Downstream::stop) says what it did.
pub struct Downstream {
    pub addr: SocketAddr,
    pub stats: Arc<BackendStats>,
    shutdown: Shutdown,
    thread: std::thread::JoinHandle<io::Result<Option<Duration>>>,
}

/// What a backend did over its life.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DownstreamUse {
    pub answered: u64,
    pub most_waiting: u64,
    /// Its mean wait per answered line.
    pub mean_wait: Option<Duration>,
    /// The CPU time of its thread; `None` where the kernel cannot say.
    pub cpu: Option<Duration>,
}

impl Run<'_> {
    /// Starts a backend answering each line after `delay` plus a uniform share of
    /// `jitter`, pinned to the first of the
    /// regime's client CPUs (unpinned when the regime pins nothing).
    ///
    /// # Errors
    /// No port, or no thread.
    pub fn downstream(&self, delay: Duration, jitter: Duration) -> io::Result<Downstream> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(BackendStats::default());
        let shutdown = Shutdown::new()?;
        let config = BackendConfig {
            delay,
            jitter,
            seed: 1,
            idle_timeout: None,
        };
        let cpu = self.client_cpus().and_then(|cpus| cpus.first().copied());
        let (s, st) = (shutdown.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("downstream".into())
            .spawn(move || {
                if let Some(cpu) = cpu {
                    crate::cpu::pin_current_thread(cpu)?;
                }
                serve(listener, config, s, st)?;
                Ok(crate::cpu::thread_time())
            })?;
        Ok(Downstream {
            addr,
            stats,
            shutdown,
            thread,
        })
    }
}

impl Downstream {
    /// Stops it and says what it did.
    ///
    /// # Errors
    /// It failed while serving.
    pub fn stop(self) -> io::Result<DownstreamUse> {
        self.shutdown.trigger();
        let cpu = self
            .thread
            .join()
            .map_err(|_| io::Error::other("the downstream's thread panicked"))??;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::SeqCst);
        Ok(DownstreamUse {
            answered: load(&self.stats.answered),
            most_waiting: load(&self.stats.most_waiting),
            mean_wait: self.stats.mean_wait(),
            cpu,
        })
    }
}
