//! A copy killed under load: SIGKILL to copy 0, `at` into the measured window of a
//! closed loop, and everything the clients saw, counted.
//!
//! ```text
//! window opens ──── at ──► SIGKILL copy 0 ─────────────────────── window ends
//!   replies per 10 ms:  ▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇ ▁▁ ▃▅▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇▇
//!                                          gap  recovered
//! ```
//!
//! The load generator counts each request as it makes it (`sent`) and each outcome
//! apart (answered, `ERR`, wrong, lost with its connection, timed out, unfinished), so
//! `sent − the outcomes` is a check, not a definition: 0 means every request is
//! accounted for. A connection that breaks loses the request in flight on it; the client
//! reconnects after a short pause (and the kernel or HAProxy sends it to a live copy).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::records::{KillRecord, TIMELINE_MS};
use super::settings::Kill;
use crate::balancer::Way;
use crate::bench::experiments::Run;
use crate::load::mix::{Class, Mix};
use crate::load::{Edge, Hooks, LoadSpec, Stop};
use crate::server::Variant;

/// Warm-up before the measured window.
const WARMUP: Duration = Duration::from_millis(300);

/// Measures one kill cell.
///
/// # Errors
/// The copies, HAProxy or the load cannot start, or the copy cannot be killed.
pub(super) fn measure(run: &Run<'_>, k: &Kill, way: Way, clients: usize) -> io::Result<KillRecord> {
    let variant = Variant::plain(&k.model);
    let mut deployment = run.deploy(&variant, way, k.copies, clients)?;
    let mix = Mix::new(vec![Class::fib(k.n, 1, true)]).map_err(io::Error::other)?;
    let spec = LoadSpec {
        stop: Stop::After(k.duration),
        warmup: WARMUP,
        timeout: Duration::from_secs(2),
        ..run.spec(deployment.addr, mix, clients)
    };
    let bin = Duration::from_secs_f64(TIMELINE_MS / 1e3);
    let origin = Instant::now();
    let slots =
        ((WARMUP + k.duration + Duration::from_secs(3)).as_secs_f64() / bin.as_secs_f64()) as usize;
    let bins: Arc<Vec<AtomicU32>> = Arc::new((0..slots).map(|_| AtomicU32::new(0)).collect());
    let counted = bins.clone();
    let on_reply: crate::load::OnReply = Arc::new(move |_, _, correct, _| {
        let i = (origin.elapsed().as_secs_f64() / bin.as_secs_f64()) as usize;
        if let Some(slot) = counted.get(i).filter(|_| correct) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    });
    let window = std::cell::Cell::new(None::<Instant>);
    let mut on_window = |edge: Edge, _: u64| {
        if edge == Edge::Start {
            window.set(Some(Instant::now()));
        }
    };
    let mut killed = None::<Instant>;
    // The killed copy's connections: each has one request outstanding.
    let mut held = 0;
    let mut taken_out = None::<Instant>;
    let mut polled = origin;
    let mut kill_error = None;
    let mut should_stop = || {
        let now = Instant::now();
        match (window.get(), killed) {
            (Some(opened), None) if now >= opened + k.at => {
                held = deployment
                    .published("fiblab_connections_open")
                    .first()
                    .copied()
                    .unwrap_or(0);
                match deployment.kill(0) {
                    Ok(at) => killed = Some(at),
                    Err(e) => kill_error = Some(e),
                }
                kill_error.is_some()
            }
            (_, Some(_)) if taken_out.is_none() && now >= polled + bin => {
                polled = now;
                let down = deployment
                    .balancer
                    .as_ref()
                    .and_then(|b| b.stats().ok())
                    .and_then(|s| s.first().map(|c| !c.up));
                if down == Some(true) {
                    taken_out = Some(now);
                }
                false
            }
            _ => false,
        }
    };
    let report = run.load(
        &spec,
        Hooks {
            on_reply: Some(on_reply),
            on_window: Some(&mut on_window),
            should_stop: Some(&mut should_stop),
            ..Hooks::default()
        },
    )?;
    if let Some(e) = kill_error {
        return Err(e);
    }
    let redispatched = deployment
        .balancer
        .as_ref()
        .and_then(|b| b.stats().ok())
        .map(|s| s.iter().map(|c| c.redispatched).sum());
    deployment.stop();
    let (Some(opened), Some(killed)) = (window.get(), killed) else {
        return Err(io::Error::other(
            "the copy was not killed: the measured window ended first (is `at` within `duration`?)",
        ));
    };
    let first = ((opened - origin).as_secs_f64() / bin.as_secs_f64()) as usize;
    let len = (k.duration.as_secs_f64() / bin.as_secs_f64()) as usize;
    let timeline: Vec<u32> = bins
        .iter()
        .skip(first)
        .take(len)
        .map(|b| b.load(Ordering::Relaxed))
        .collect();
    let at_bin = ((killed - opened).as_secs_f64() / bin.as_secs_f64()) as usize;
    let shape = Shape::of(&timeline, at_bin);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(KillRecord {
        regime: String::new(),
        model: k.model.clone(),
        way,
        copies: k.copies,
        n: k.n,
        clients,
        killed_at_s: (killed - opened).as_secs_f64(),
        sent: report.sent,
        answered: report.requests_ok,
        err_replies: report.errors.err_reply,
        wrong: report.errors.wrong,
        lost: report.errors.reset,
        timeouts: report.errors.timeout,
        unfinished: report.unfinished,
        unaccounted: report.unaccounted(),
        connect_errors: report.errors.connect,
        connections_on_killed: held,
        before_rps: shape.before_rps,
        after_rps: shape.after_rps,
        gap_ms: shape.gap_ms,
        recovered_ms: shape.recovered_ms,
        taken_out_ms: taken_out.map(|t| ms(t - killed)),
        redispatched,
        timeline,
    })
}

/// What a timeline of replies per [`TIMELINE_MS`] shows around a kill at bin `at`.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub before_rps: f64,
    pub after_rps: f64,
    pub gap_ms: f64,
    pub recovered_ms: Option<f64>,
}

impl Shape {
    /// Before: the rate up to the kill; after: over the last second (or what follows
    /// the kill, if less); the gap: the longest run of empty bins from the kill on;
    /// recovered: from the kill to the first 100 ms whose replies reach 90% of `after`.
    pub fn of(timeline: &[u32], at: usize) -> Shape {
        let per_s = 1e3 / TIMELINE_MS;
        let rate = |bins: &[u32]| match bins.len() {
            0 => 0.0,
            n => bins.iter().map(|&b| b as f64).sum::<f64>() / n as f64 * per_s,
        };
        let at = at.min(timeline.len());
        let last = timeline.len().saturating_sub(per_s as usize).max(at);
        let (before_rps, after_rps) = (rate(&timeline[..at]), rate(&timeline[last..]));
        let mut gap = 0usize;
        let mut run = 0usize;
        for &b in &timeline[at..] {
            run = if b == 0 { run + 1 } else { 0 };
            gap = gap.max(run);
        }
        let window = (100.0 / TIMELINE_MS) as usize;
        let recovered = (at..timeline.len().saturating_sub(window - 1))
            .find(|&t| after_rps > 0.0 && rate(&timeline[t..t + window]) >= 0.9 * after_rps)
            .map(|t| (t - at) as f64 * TIMELINE_MS);
        Shape {
            before_rps,
            after_rps,
            gap_ms: gap as f64 * TIMELINE_MS,
            recovered_ms: recovered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeline_gives_the_gap_and_the_recovery() {
        // 1 s at 10 per bin, a kill, 50 ms of nothing, 100 ms at 4, then 10 again.
        let mut t = vec![10u32; 100];
        t.extend([0; 5]);
        t.extend([4; 10]);
        t.extend(vec![10; 200]);
        let s = Shape::of(&t, 100);
        assert_eq!(s.before_rps, 1000.0);
        assert_eq!(s.after_rps, 1000.0);
        assert_eq!(s.gap_ms, 50.0);
        // The first 100 ms reaching 900/s starts 140 ms after the kill (bin 114: one
        // bin at 4 and nine at 10; from bin 113, two at 4 and eight at 10 make 880/s).
        assert_eq!(s.recovered_ms, Some(140.0));
    }

    #[test]
    fn a_kill_nothing_notices_recovers_at_once() {
        let s = Shape::of(&[4; 300], 100);
        assert_eq!((s.gap_ms, s.recovered_ms), (0.0, Some(0.0)));
    }
}
