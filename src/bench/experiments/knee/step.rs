//! Measuring one step of a sweep through the bench's measuring path, with the
//! server's cost per request read at the edges of its window.

use super::*;

/// One step of the open loop at `rate`.
pub(super) fn measure_step(
    run: &Run<'_>,
    k: &scenario::Knee,
    served: &Served,
    mix: &Mix,
    rate: f64,
    slo_us: u64,
) -> io::Result<KneeStep> {
    let spec = LoadSpec {
        pipeline: k.pipeline,
        rate: Some(rate),
        stop: Stop::After(k.step),
        warmup: k.warmup,
        timeout: Duration::from_secs(2),
        tick: k.tick,
        protocol: served.protocol(),
        ..run.spec(served.addr, mix.clone(), k.connections)
    };
    // The server's counters at the edges of the measured window, with the replies so
    // far: read while the step's connections are open.
    let measured = run.load_costed(&spec, served.pid)?;
    let server = measured
        .server
        .and_then(|(work, replies)| RequestCost::of(&work, replies));
    let report = measured.report;
    let client = report
        .client
        .window
        .as_ref()
        .and_then(|w| RequestCost::of_client(w, report.requests_ok));
    let merged = merged_histogram(report.classes.iter().map(|c| c.histogram.as_str()));
    let at = |q: f64| merged.as_ref().map_or(0, |h| h.value_at_quantile(q));
    let (p50_us, p99_us, p99_9_us) = (at(0.5), at(0.99), at(0.999));
    let e = &report.errors;
    let failed = e.connect + e.reset + e.err_reply + e.wrong;
    let requests = rate * report.measured_s;
    let client_busy = match spec.spin {
        // A spinning client is always busy; it says nothing of saturation.
        true => 0.0,
        false => report
            .client
            .thread_busy
            .iter()
            .copied()
            .fold(0.0, f64::max),
    };
    Ok(KneeStep {
        offered_rps: rate.round(),
        achieved_rps: report.throughput_rps.round(),
        p50_us,
        p99_us,
        p99_9_us,
        failed,
        timeouts: e.timeout,
        client_busy: (client_busy * 1000.0).round() / 1000.0,
        missed: report.missed,
        server,
        client,
        verdict: judge(
            rate,
            report.throughput_rps,
            requests,
            failed + e.timeout,
            report.missed,
            p99_us,
            client_busy,
            slo_us,
        ),
        histogram: merged
            .as_ref()
            .map_or(String::new(), crate::load::encode_histogram),
    })
}
