//! What the lab holds: the server it started, the load it runs, and the figures both
//! produce, sampled every [`TICK`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use super::asked::{LoadSetting, Refusal, ServerSetting};
use super::figures::{Figures, Mark, Point, TICK};
use super::wire::{about_a_second, ask, free_port, read_metrics};
use crate::load::{LoadSpec, Stop};
use crate::process::ServerProcess;
use crate::server::{Config, Variant};

/// Points kept (the last ten minutes at four a second).
const KEPT: usize = 2400;

/// The replies of the tick in progress, filled by the load engine's threads.
#[derive(Debug)]
struct Window {
    replies: u64,
    /// The load engine's errors so far in this load (wrong replies, `ERR` lines,
    /// timeouts), once a second, and how many of them are in points already.
    errors: u64,
    errors_taken: u64,
    per_connection: Vec<u64>,
    latency: hdrhistogram::Histogram<u64>,
}

struct Running {
    process: ServerProcess,
    setting: ServerSetting,
    metrics: SocketAddr,
}

struct LoadRun {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    setting: LoadSetting,
}

/// Everything the lab's requests read and change; see the module docs.
pub struct Lab {
    exe: PathBuf,
    started: Instant,
    /// fib(n) that takes about a second here (measured at start).
    pub heavy_n: u32,
    server: Mutex<Option<Running>>,
    load: Mutex<Option<LoadRun>>,
    window: Arc<Mutex<Window>>,
    pub(super) figures: Mutex<Figures>,
    /// Notified at every new point or mark.
    pub(super) changed: Condvar,
    pub(super) stopping: AtomicBool,
    sampler: Mutex<Option<JoinHandle<()>>>,
    /// A heavy request is out: the next waits for its reply (one fib of a second at a
    /// time, whoever asks).
    heavy_out: Arc<AtomicBool>,
    /// The advice form's desk: `fiblab advise` on the page.
    pub(super) desk: super::advice::Desk,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Lab {
    /// A lab with nothing running yet, and its sampler thread.
    ///
    /// # Errors
    /// The sampler thread cannot start.
    pub fn start(exe: PathBuf) -> std::io::Result<Arc<Lab>> {
        let lab = Arc::new(Lab {
            desk: super::advice::Desk::new(exe.clone()),
            exe,
            started: Instant::now(),
            heavy_n: about_a_second(),
            server: Mutex::new(None),
            load: Mutex::new(None),
            window: Arc::new(Mutex::new(Window {
                replies: 0,
                errors: 0,
                errors_taken: 0,
                per_connection: Vec::new(),
                latency: hdrhistogram::Histogram::new(3).map_err(std::io::Error::other)?,
            })),
            figures: Mutex::new(Figures::default()),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
            sampler: Mutex::new(None),
            heavy_out: Arc::new(AtomicBool::new(false)),
        });
        let sampling = lab.clone();
        let thread = std::thread::Builder::new()
            .name("lab-sampler".into())
            .spawn(move || sampling.sample())?;
        *lock(&lab.sampler) = Some(thread);
        Ok(lab)
    }

    /// Seconds since the lab started: the chart's time.
    pub(super) fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The points taken between `from` and `to` (seconds since the lab started).
    pub(super) fn points_between(&self, from: f64, to: f64) -> Vec<Point> {
        lock(&self.figures)
            .points
            .iter()
            .filter(|p| p.t > from && p.t <= to + TICK.as_secs_f64() / 2.0)
            .cloned()
            .collect()
    }

    /// Starts showing `progress`; false while another lesson runs.
    pub(super) fn begin_lesson(&self, progress: super::figures::Progress) -> bool {
        let mut f = lock(&self.figures);
        let running = f
            .lesson
            .as_ref()
            .is_some_and(|p| p.observed.is_empty() && p.failed.is_none());
        if !running {
            f.lesson = Some(progress);
        }
        drop(f);
        self.changed.notify_all();
        !running
    }

    /// Changes the lesson's progress and tells the pages.
    pub(super) fn update_lesson(&self, change: impl FnOnce(&mut super::figures::Progress)) {
        if let Some(p) = lock(&self.figures).lesson.as_mut() {
            change(p);
        }
        self.changed.notify_all();
    }

    /// Draws a line across the chart.
    pub fn mark(&self, what: impl Into<String>) {
        let mark = Mark {
            t: self.now(),
            what: what.into(),
        };
        lock(&self.figures).marks.push(mark);
        self.changed.notify_all();
    }

    /// Every [`TICK`]: the window's replies become a point; every fourth, the server's
    /// `/metrics` are read.
    fn sample(&self) {
        let mut ticks = 0u64;
        while !self.stopping.load(Ordering::Relaxed) {
            std::thread::sleep(TICK);
            let clients = lock(&self.load).as_ref().map_or(0, |l| l.setting.clients);
            let (replies, errors, p, mut shares) = {
                let mut w = lock(&self.window);
                let q = |q: f64| w.latency.value_at_quantile(q);
                let p = (q(0.5), q(0.99), q(0.999));
                let shares = std::mem::take(&mut w.per_connection);
                let taken = (
                    w.replies,
                    w.errors.saturating_sub(w.errors_taken),
                    p,
                    shares,
                );
                w.replies = 0;
                w.errors_taken = w.errors;
                w.latency.reset();
                taken
            };
            shares.resize(clients, 0);
            let point = Point {
                t: self.now(),
                rps: replies as f64 / TICK.as_secs_f64(),
                p50: p.0,
                p99: p.1,
                p999: p.2,
                errors,
                clients,
                shares,
            };
            ticks += 1;
            let metrics = match ticks % 4 {
                0 => self
                    .metrics_addr()
                    .map(|a| read_metrics(a).unwrap_or_default()),
                _ => None,
            };
            let mut f = lock(&self.figures);
            f.points.push(point);
            if f.points.len() > KEPT {
                f.points.remove(0);
                f.dropped += 1;
            }
            if let Some(m) = metrics {
                f.server_metrics = m;
            }
            drop(f);
            self.changed.notify_all();
        }
    }

    fn metrics_addr(&self) -> Option<SocketAddr> {
        lock(&self.server).as_ref().map(|r| r.metrics)
    }

    /// Where the running server listens, and what it is.
    pub fn server(&self) -> Option<(SocketAddr, ServerSetting)> {
        lock(&self.server)
            .as_ref()
            .map(|r| (r.process.addr, r.setting.clone()))
    }

    /// The load running now.
    pub fn load(&self) -> Option<LoadSetting> {
        lock(&self.load).as_ref().map(|l| l.setting.clone())
    }

    /// Stops the running server (and the load, which has nothing left to drive) and
    /// starts `setting`'s, validated as `fiblab serve` validates its flags; the load is
    /// started again against the new server.
    ///
    /// # Errors
    /// What `fiblab serve` would say about the model or its flags, or why it did not
    /// start.
    pub fn switch(&self, setting: ServerSetting) -> Result<(), Refusal> {
        let config = config_of(&setting)?;
        let variant = Variant {
            model: setting.model.clone(),
            offload: setting.offload,
        };
        let model = crate::models::check_config(&variant, &config)?;
        (model.available)().map_err(|source| Refusal::Unavailable {
            model: model.name.to_string(),
            source,
        })?;
        let load = self.stop_load();
        self.stop_server();
        let metrics = free_port().map_err(Refusal::Start)?;
        let extra = vec!["--metrics".to_string(), metrics.to_string()];
        let process = ServerProcess::start_with(&self.exe, &variant, &config, &[], &extra)
            .map_err(Refusal::Start)?;
        self.mark(format!("server: {}", setting.label()));
        *lock(&self.server) = Some(Running {
            process,
            setting,
            metrics,
        });
        if let Some(load) = load {
            self.set_load(load)?;
        }
        Ok(())
    }

    /// Stops the server, if one runs (and the load with it).
    pub fn stop_server(&self) {
        self.stop_load();
        if let Some(running) = lock(&self.server).take() {
            running.process.stop();
            self.mark("server stopped");
        }
    }

    /// Runs `setting` against the server (0 clients: no load).
    ///
    /// # Errors
    /// No server runs, or the setting is out of bounds.
    pub fn set_load(&self, setting: LoadSetting) -> Result<(), Refusal> {
        if setting.clients > super::MAX_CLIENTS {
            return Err(Refusal::Clients {
                asked: setting.clients,
                max: super::MAX_CLIENTS,
            });
        }
        if setting.n > super::MAX_LOAD_N {
            return Err(Refusal::N {
                asked: setting.n,
                max: super::MAX_LOAD_N,
            });
        }
        if let Some(rate) = setting.rate
            && !(rate > 0.0 && rate <= super::MAX_RATE)
        {
            return Err(Refusal::Rate(rate));
        }
        let mix = match &setting.mix {
            None => {
                crate::load::mix::Mix::new(vec![crate::load::mix::Class::fib(setting.n, 1, true)])?
            }
            Some(text) => {
                let mix = crate::load::mix::Mix::parse_fib(text, true)?;
                let largest = mix
                    .classes
                    .iter()
                    .filter_map(|c| c.label.strip_prefix("n=")?.parse::<u32>().ok())
                    .max()
                    .unwrap_or(0);
                if largest > super::MAX_LOAD_N {
                    return Err(Refusal::N {
                        asked: largest,
                        max: super::MAX_LOAD_N,
                    });
                }
                mix
            }
        };
        let (addr, _) = self.server().ok_or(Refusal::NoServer)?;
        self.stop_load();
        if setting.clients == 0 {
            self.mark("load: none");
            return Ok(());
        }
        // One thread (the load generator leaves the other CPUs to the server), for
        // an hour at most: a lab runs until it is told otherwise.
        let spec = LoadSpec {
            timeout: Duration::from_secs(10),
            rate: setting.rate,
            ..LoadSpec::closed_loop(
                addr,
                mix,
                setting.clients,
                Stop::After(Duration::from_secs(3600)),
            )
        };
        let stop = Arc::new(AtomicBool::new(false));
        let window = self.window.clone();
        {
            // A new load counts its errors from zero.
            let mut w = lock(&window);
            w.errors = 0;
            w.errors_taken = 0;
        }
        let on_second_window = self.window.clone();
        let interrupt = stop.clone();
        let thread = std::thread::Builder::new()
            .name("lab-load".into())
            .spawn(move || {
                let on_reply: crate::load::OnReply =
                    // Wrong replies are counted by the engine, with its timeouts
                    // (`on_second` below).
                    Arc::new(move |latency, _, _, connection| {
                        let mut w = lock(&window);
                        w.replies += 1;
                        if connection < super::MAX_CLIENTS {
                            if w.per_connection.len() <= connection {
                                w.per_connection.resize(connection + 1, 0);
                            }
                            w.per_connection[connection] += 1;
                        }
                        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                        let _ = w.latency.record(us.max(1));
                    });
                let errors = on_second_window.clone();
                let mut on_second = move |tick: &crate::load::Tick| {
                    lock(&errors).errors = tick.errors;
                };
                let hooks = crate::load::Hooks {
                    on_reply: Some(on_reply),
                    on_second: Some(&mut on_second),
                    ..Default::default()
                };
                if let Err(e) = crate::load::run(&spec, interrupt, hooks) {
                    tracing::warn!(error = %e, "the lab's load stopped");
                }
            })
            .map_err(Refusal::Thread)?;
        self.mark(format!("load: {}", setting.label()));
        *lock(&self.load) = Some(LoadRun {
            stop,
            thread,
            setting,
        });
        Ok(())
    }

    /// Stops the load without a mark (a lesson about to set its own).
    pub(super) fn stop_load_quietly(&self) {
        self.stop_load();
    }

    /// Stops the load, if one runs, and returns what it was.
    fn stop_load(&self) -> Option<LoadSetting> {
        let run = lock(&self.load).take()?;
        run.stop.store(true, Ordering::Relaxed);
        let _ = run.thread.join();
        Some(run.setting)
    }

    /// Sends fib([`Lab::heavy_n`]) on a connection of its own, marking when it is sent
    /// and when its reply comes back.
    ///
    /// # Errors
    /// No server runs, or the heavy request sent before is still out.
    pub fn heavy(self: &Arc<Self>) -> Result<u32, Refusal> {
        let (addr, _) = self.server().ok_or(Refusal::NoServer)?;
        if self.heavy_out.swap(true, Ordering::AcqRel) {
            return Err(Refusal::HeavyRunning);
        }
        let n = self.heavy_n;
        self.mark(format!("heavy: fib({n}) sent"));
        let lab = self.clone();
        let out = self.heavy_out.clone();
        std::thread::Builder::new()
            .name("lab-heavy".into())
            .spawn(move || {
                // Cleared however the thread ends.
                struct Clear(Arc<AtomicBool>);
                impl Drop for Clear {
                    fn drop(&mut self) {
                        self.0.store(false, Ordering::Release);
                    }
                }
                let _clear = Clear(out);
                let started = Instant::now();
                let what = match ask(addr, &n.to_string(), Duration::from_secs(30)) {
                    Ok(reply) => format!(
                        "heavy: fib({n}) answered in {:.2} s ({})",
                        started.elapsed().as_secs_f64(),
                        reply.trim_end()
                    ),
                    Err(e) => format!("heavy: fib({n}) got no reply ({e})"),
                };
                lab.mark(what);
            })
            .map_err(|e| {
                self.heavy_out.store(false, Ordering::Release);
                Refusal::Thread(e)
            })?;
        Ok(n)
    }

    /// Sends `line` to the server as `nc` would, and returns its reply line.
    ///
    /// # Errors
    /// No server runs, the line is too long or holds a newline, or no reply came in 10 s.
    pub fn ask(&self, line: &str) -> Result<String, Refusal> {
        self.ask_within(line, Duration::from_secs(10))
    }

    /// [`Lab::ask`], waiting up to `limit` for the reply.
    ///
    /// # Errors
    /// As [`Lab::ask`].
    pub fn ask_within(&self, line: &str, limit: Duration) -> Result<String, Refusal> {
        if line.len() > super::MAX_LINE || line.contains(['\n', '\r']) {
            return Err(Refusal::Line(super::MAX_LINE));
        }
        let (addr, _) = self.server().ok_or(Refusal::NoServer)?;
        ask(addr, line, limit).map_err(Refusal::NoReply)
    }

    /// Stops the load, the server and the sampler.
    pub fn shut_down(&self) {
        self.desk.stop();
        self.stop_server();
        self.stopping.store(true, Ordering::Relaxed);
        self.changed.notify_all();
        if let Some(thread) = lock(&self.sampler).take() {
            let _ = thread.join();
        }
    }
}

/// The server settings of `setting`, validated as the command line would.
fn config_of(setting: &ServerSetting) -> Result<Config, Refusal> {
    let gil = match setting.gil.as_str() {
        "none" => None,
        "shared" => Some(crate::gil::GilMode::Shared),
        "per-interpreter" => Some(crate::gil::GilMode::PerInterpreter),
        other => return Err(Refusal::Gil(other.to_string())),
    };
    if let Some(w) = setting.workers
        && !(1..=64).contains(&w)
    {
        return Err(Refusal::Workers(w));
    }
    let model = crate::models::find(&setting.model)
        .ok_or_else(|| Refusal::UnknownModel(setting.model.clone()))?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(Config {
        gil,
        offload: setting.offload,
        workers: setting
            .workers
            .unwrap_or_else(|| model.workers.default_for(cpus)),
        ..Config::default()
    })
}

/// The figures, for the event stream to wait on with [`Lab::changed`].
pub(super) fn lock_figures(lab: &Lab) -> MutexGuard<'_, Figures> {
    lock(&lab.figures)
}
