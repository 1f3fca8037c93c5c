//! Seed 004's probe, shared by every experiment that asks how much a model keeps
//! serving light requests while one heavy request is in it (the starvation experiment,
//! the GIL's rows): sizing the heavy request on this machine or on a peer, and running
//! the light closed loop around it through the measuring path.

use std::io::{self, BufReader};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Run;
use crate::bench::results::StarvationResult;
use crate::bench::scenario::Starvation;
use crate::load::mix::{Class, Mix};
use crate::load::{Hooks, LoadSpec, Stop};

/// The `n` whose naive fib takes about `seconds` here: fib(n) timed in this process
/// for growing n until one takes an eighth of the target, then scaled by the golden
/// ratio per step of n (the last few steps only, where the scaling is reliable), and
/// kept within what servers allow.
pub fn calibrate_heavy_n(seconds: f64) -> u32 {
    let phi = (1.0 + 5f64.sqrt()) / 2.0;
    let mut n = 25;
    loop {
        let started = Instant::now();
        std::hint::black_box(crate::fib::fib(std::hint::black_box(n)));
        let took = started.elapsed().as_secs_f64().max(1e-9);
        if took >= seconds / 8.0 || n >= crate::service::DEFAULT_MAX_N {
            let steps = (seconds / took).ln() / phi.ln();
            return ((f64::from(n) + steps).round() as u32)
                .clamp(25, crate::service::DEFAULT_MAX_N);
        }
        n += 1;
    }
}

/// The `n` whose fib takes about `seconds` on a server someone else runs (a peer may
/// be 100x slower than fiblab): fib(n) requests for growing n, timed over the wire, until
/// one takes an eighth of the target, then scaled as [`calibrate_heavy_n`] does.
pub fn calibrate_remote(addr: SocketAddr, seconds: f64) -> io::Result<u32> {
    use std::io::{BufRead as _, Write as _};
    let phi = (1.0 + 5f64.sqrt()) / 2.0;
    let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs_f64(seconds.max(0.1) * 4.0)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    for n in 15..=crate::service::DEFAULT_MAX_N {
        let started = Instant::now();
        writer.write_all(format!("{n}\n").as_bytes())?;
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::other(format!(
                "{addr} closed the connection while timing fib({n})"
            )));
        }
        let took = started.elapsed().as_secs_f64().max(1e-9);
        if took >= seconds / 8.0 {
            let steps = (seconds / took).ln() / phi.ln();
            return Ok(
                ((f64::from(n) + steps).round() as u32).clamp(n, crate::service::DEFAULT_MAX_N)
            );
        }
    }
    Ok(crate::service::DEFAULT_MAX_N)
}

/// Seed 004's experiment against the server at `addr` (called `label`): one client
/// asks fib(`experiment.light_n`) in a closed loop for `experiment.length`, on the
/// regime's client CPUs; `experiment.at` into it a second connection asks
/// fib(`heavy_n`). What the light client got before and while the heavy request was
/// in the server is the model's isolation.
///
/// # Errors
/// The light client's load could not run.
pub fn heavy_among_light(
    run: &Run<'_>,
    addr: SocketAddr,
    label: &str,
    experiment: &Starvation,
    heavy_n: u32,
) -> io::Result<StarvationResult> {
    use std::io::{BufRead as _, Write as _};
    let light_times = Arc::new(std::sync::Mutex::new(Vec::<Instant>::with_capacity(
        1 << 18,
    )));
    let recorder = light_times.clone();
    let on_reply: crate::load::OnReply = Arc::new(move |_, _, correct, _| {
        if correct {
            recorder
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Instant::now());
        }
    });
    // The heavy client arrives `at` into the run, as in seed 004 (a second terminal
    // typing one request); for a one-client-at-a-time model it then waits its turn.
    let start = Instant::now();
    let at = experiment.at;
    let length = experiment.length;
    let heavy_thread = std::thread::spawn(move || -> Option<(Instant, Instant)> {
        std::thread::sleep(at);
        let mut heavy = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        heavy
            .set_read_timeout(Some(
                length.saturating_sub(at).max(Duration::from_millis(1)),
            ))
            .ok()?;
        let sent = Instant::now();
        heavy.write_all(format!("{heavy_n}\n").as_bytes()).ok()?;
        let mut line = String::new();
        std::io::BufReader::new(heavy).read_line(&mut line).ok()?;
        (!line.is_empty()).then(|| (sent, Instant::now()))
    });
    let mix = Mix::new(vec![Class::fib(experiment.light_n, 1, true)]).map_err(io::Error::other)?;
    let spec = LoadSpec {
        stop: Stop::After(experiment.length),
        warmup: Duration::ZERO,
        timeout: experiment.length,
        threads: 1,
        ..run.spec(addr, mix, 1)
    };
    run.load(
        &spec,
        Hooks {
            on_reply: Some(on_reply),
            ..Hooks::default()
        },
    )?;
    let heavy_span = heavy_thread.join().ok().flatten();
    let times = light_times
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let end = start + experiment.length;
    let count =
        |from: Instant, to: Instant| times.iter().filter(|&&t| t >= from && t < to).count() as f64;
    let sent_at = start + at;
    let (during_from, during_to) = heavy_span.map_or((sent_at, end), |(s, e)| (s, e.min(end)));
    let rate = |n: f64, span: Duration| {
        if span.is_zero() {
            0.0
        } else {
            n / span.as_secs_f64()
        }
    };
    let light_before_rps = rate(count(start, sent_at), at);
    let light_during_rps = rate(
        count(during_from, during_to),
        during_to.saturating_duration_since(during_from),
    );
    let bins = (experiment.length.as_millis() / 100) as usize;
    let mut timeline = vec![0u64; bins];
    for t in &times {
        let bin = (t.saturating_duration_since(start).as_millis() / 100) as usize;
        if let Some(slot) = timeline.get_mut(bin) {
            *slot += 1;
        }
    }
    Ok(StarvationResult {
        regime: String::new(),
        variant: label.to_string(),
        heavy_n,
        heavy_s: heavy_span.map(|(s, e)| ((e - s).as_secs_f64() * 1000.0).round() / 1000.0),
        light_before_rps: light_before_rps.round(),
        light_during_rps: light_during_rps.round(),
        kept: if light_before_rps > 0.0 {
            ((light_during_rps / light_before_rps) * 1000.0).round() / 1000.0
        } else {
            0.0
        },
        timeline,
        heavy_at_s: at.as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_is_monotonic_and_bounded() {
        let short = calibrate_heavy_n(0.001);
        let long = calibrate_heavy_n(0.05);
        assert!(short <= long, "{short} > {long}");
        assert!((25..=crate::service::DEFAULT_MAX_N).contains(&long));
    }
}
