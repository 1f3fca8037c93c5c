//! The human summary of a load report, in the spirit of wrk and oha.

use std::fmt::Write as _;

use super::*;

/// The human summary, in the spirit of wrk and oha.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    let mode = match r.rate {
        Some(rate) => format!("open loop at {rate:.0} req/s"),
        None => format!("closed loop, {} in flight per connection", r.pipeline),
    };
    let pinning = match &r.cpus {
        Some(cpus) => format!("pinned to CPUs {cpus:?}"),
        None => "unpinned".to_string(),
    };
    let _ = writeln!(
        out,
        "fiblab load {}: {mode}, {} connections, {} threads{}{}, {pinning}",
        r.target,
        r.connections,
        r.threads,
        if r.spin { ", spinning" } else { "" },
        match r.tick_us > 0.0 {
            true => format!(", on a {} µs tick", r.tick_us),
            false => String::new(),
        }
    );
    let _ = writeln!(
        out,
        "  {:.2} s measured after {:.2} s warm-up: {} ok, {} failed, {:.0} req/s",
        r.measured_s,
        r.warmup_s,
        r.requests_ok,
        r.errors.failed_requests(),
        r.throughput_rps
    );
    let (starved, thin) = r.starved();
    if starved + thin > 0 {
        let _ = writeln!(
            out,
            "  STARVED: {starved} of {} connections got no reply at all{}: the server served the others while these waited (a pool's queue, one client at a time); the figures below describe the ones it served",
            r.connections,
            match thin {
                0 => String::new(),
                n => format!(", and {n} got under a tenth of their fair share"),
            }
        );
    }
    let e = &r.errors;
    if e.total() > 0 {
        let _ = writeln!(
            out,
            "  errors: failed connection attempts {}, requests lost to a reset {}, timeouts {}, ERR replies {}, wrong replies {}",
            e.connect, e.reset, e.timeout, e.err_reply, e.wrong
        );
    }
    if r.rate.is_some() && r.missed > 0 {
        let _ = writeln!(
            out,
            "  not sent though due (the open loop's schedule ran ahead of the connections): {}",
            r.missed
        );
    }
    if r.unfinished > 0 {
        let _ = writeln!(
            out,
            "  in flight at the end: {} (sent, not yet answered when the measured time ended; neither ok nor failed)",
            r.unfinished
        );
    }
    let _ = writeln!(
        out,
        "\n  latency (µs)          {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "p50", "p90", "p99", "p99.9", "p99.99", "max", "ok"
    );
    let row = |out: &mut String, label: &str, p: &Percentiles, ok: u64| {
        let _ = writeln!(
            out,
            "  {label:<21} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            p.p50, p.p90, p.p99, p.p99_9, p.p99_99, p.max, ok
        );
    };
    for c in &r.classes {
        if r.rate.is_some() {
            row(
                &mut out,
                &format!("{} (intended)", c.label),
                &c.latency_us,
                c.requests_ok,
            );
            row(
                &mut out,
                &format!("{} (sent)", c.label),
                &c.latency_sent_us,
                c.requests_ok,
            );
        } else {
            row(&mut out, &c.label, &c.latency_us, c.requests_ok);
        }
    }
    if r.rate.is_some() {
        let _ = writeln!(
            out,
            "  (intended: from when the request was due, corrected for coordinated omission;\n   sent: from when it was written)"
        );
    }
    let busy: Vec<String> = r
        .client
        .thread_busy
        .iter()
        .map(|b| format!("{:.0}%", b * 100.0))
        .collect();
    let _ = writeln!(out, "\n  client CPU per thread: {}", busy.join(" "));
    if let (Some(cpu), Some(sleeps)) = (r.client.cpu_us_per_request, r.client.sleeps_per_request) {
        let _ = writeln!(
            out,
            "  client per request: {cpu:.1} µs CPU, {sleeps:.2} sleeps{} (its threads, over the measured window)",
            r.client.calls_per_request.map_or(String::new(), |c| format!(
                ", {:.2} system calls ({:.2} send, {:.2} receive, {:.2} poll, {:.2} sleep, {:.2} timer)",
                c.total, c.send, c.receive, c.poll, c.sleep, c.timer
            ))
        );
    }
    if let Some(server) = &r.server {
        let _ = writeln!(
            out,
            "  server per request: {:.1} µs CPU, {:.2} sleeps, {:.2} preemptions (process {}, its threads and children, over the measured window)",
            server.cpu_us_per_request,
            server.sleeps_per_request,
            server.preempted_per_request,
            server.pid
        );
        if let Some(ratio) = server.client_over_server {
            let _ = writeln!(
                out,
                "  client / server CPU per request: {ratio:.2}{}",
                match ratio > 1.0 {
                    true =>
                        ": the load generator spent more on each request than the server, so these figures measure it as much as the server",
                    false => "",
                }
            );
        }
    }
    for note in &r.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    out
}
