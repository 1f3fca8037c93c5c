//! The advice as text (the terminal) and markdown (a file): the same table and
//! paragraphs in both.

use super::words::{duration_us, latency, rate};
use super::{Advice, ModelAdvice};
use crate::units::thousands;

/// The service in one line.
fn described(a: &Advice) -> String {
    let s = &a.service;
    let cpu = match s.asked_cpu_us {
        Some(asked) => format!(
            "fib({}) for the {} of CPU asked ({} on the calibrated machine)",
            s.n,
            duration_us(asked),
            duration_us(a.cpu_us)
        ),
        None if !s.mix.is_empty() => format!(
            "the mix {} ({} of CPU per request on average)",
            s.mix_text(),
            duration_us(a.cpu_us)
        ),
        None => format!("fib({}) ({} of CPU)", s.n, duration_us(a.cpu_us)),
    };
    let wait = match s.wait_us > 0.0 {
        true => format!(", waiting {} on a downstream", duration_us(s.wait_us)),
        false => String::new(),
    };
    let slo = s.slo_p99_us.map_or(String::new(), |slo| {
        format!(", p99 under {}", duration_us(slo))
    });
    match s.rate {
        Some(r) => format!(
            "{cpu}{wait}, {} req/s in an open loop over {} connection{}{slo}",
            thousands(r),
            thousands(s.clients as f64),
            if s.clients == 1 { "" } else { "s" }
        ),
        None => format!(
            "{cpu}{wait}, {} client{} in a closed loop{slo}",
            thousands(s.clients as f64),
            if s.clients == 1 { "" } else { "s" }
        ),
    }
}

fn row(a: &ModelAdvice) -> [String; 8] {
    let tier = match a.tier {
        0 => "—".to_string(),
        t => t.to_string(),
    };
    let why = match (&a.cannot, a.misses_slo) {
        (Some(why), _) => format!("cannot serve: {why}"),
        (None, true) => format!(
            "{}; its {} is already over the p99 objective",
            a.limit,
            match a.p99_us {
                Some(_) => "predicted p99",
                None => "mean latency",
            }
        ),
        (None, false) => a.limit.clone(),
    };
    [
        tier,
        a.model.to_string(),
        rate(a),
        match a.p99_us {
            Some(p99) => format!("{} (p99 {})", latency(a.mean_latency_us), latency(p99)),
            None => latency(a.mean_latency_us),
        },
        match a.processes {
            1 => thousands(a.threads as f64),
            p => format!("{} ({p} processes)", thousands(a.threads as f64)),
        },
        thousands(a.descriptors as f64),
        super::words::memory_kib(a.memory_kib),
        why,
    ]
}

const HEADER: [&str; 8] = [
    "tier",
    "model",
    "predicted req/s",
    "mean latency",
    "threads",
    "descriptors",
    "memory",
    "what limits it",
];

/// The advice for a terminal: aligned columns, the paragraph, what changes it.
pub fn text(a: &Advice) -> String {
    let rows: Vec<[String; 8]> = a.models.iter().map(row).collect();
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([HEADER[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..7).map(width).collect();
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            match i < 7 {
                true => {
                    let pad = widths[i].saturating_sub(cell.chars().count());
                    match i {
                        0 | 1 => out.push_str(&format!("{cell}{}  ", " ".repeat(pad))),
                        _ => out.push_str(&format!("{}{cell}  ", " ".repeat(pad))),
                    }
                }
                false => out.push_str(cell),
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = format!(
        "Advice for {}.\n{}: {} ({}).\n\n",
        described(a),
        measured_or_not(a),
        a.calibration,
        a.machine
    );
    out.push_str(&line(HEADER.to_vec()));
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out.push_str(&format!("\n{}\n", a.recommendation));
    if !a.changes.is_empty() {
        out.push_str("\nWhat would change it:\n");
        for c in &a.changes {
            out.push_str(&format!("- {c}.\n"));
        }
    }
    if let Some(c) = &a.confirmation {
        out.push_str("\nMeasured here:\n");
        let rows: Vec<[String; 7]> = c.rows.iter().map(measured_row).collect();
        out.push_str(&aligned(&MEASURED_HEADER, &rows));
        for r in c.rows.iter().filter(|r| !r.within) {
            out.push_str(&format!(
                "- `{}` off its prediction: {}.\n",
                r.model,
                r.reason.as_deref().unwrap_or("")
            ));
        }
        out.push_str(&format!("\n{}\n", c.verdict));
    }
    out.push_str(&rules(a));
    out
}

fn measured_or_not(a: &Advice) -> &'static str {
    match a.confirmation {
        Some(_) => "Predicted, then measured here (below)",
        None => "Predicted, not measured",
    }
}

const MEASURED_HEADER: [&str; 7] = [
    "tier",
    "model",
    "measured req/s",
    "p99",
    "errors",
    "predicted req/s",
    "measured / predicted",
];

fn measured_row(m: &super::confirm::Measured) -> [String; 7] {
    let predicted = match (m.predicted[1] - m.predicted[0]) / m.predicted[1].max(1e-9) < 0.005 {
        true => thousands(m.predicted[1]),
        false => format!(
            "{}–{}",
            thousands(m.predicted[0]),
            thousands(m.predicted[1])
        ),
    };
    [
        m.tier.map_or("-".to_string(), |t| t.to_string()),
        m.model.clone(),
        format!(
            "{} [{}–{}]",
            thousands(m.rps.estimate),
            thousands(m.rps.ci_low),
            thousands(m.rps.ci_high)
        ),
        format!(
            "{}{}{}",
            duration_us(m.p99_us as f64),
            m.predicted_p99_us.map_or(String::new(), |p| format!(
                " ({} predicted)",
                duration_us(p)
            )),
            if m.misses_slo { " (over)" } else { "" }
        ),
        thousands(m.errors as f64),
        predicted,
        format!(
            "{:.2}{}",
            m.ratio,
            if m.within { "" } else { " (outside 30%)" }
        ),
    ]
}

/// Rows under a header, columns padded, the last left ragged.
fn aligned(header: &[&str; 7], rows: &[[String; 7]]) -> String {
    let widths: Vec<usize> = (0..7)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            out.push_str(&format!("{cell}{}  ", " ".repeat(pad)));
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// How every figure was computed, printed under the table.
fn rules(a: &Advice) -> String {
    let mut out = "\nEach figure: the model's cost formula at this many clients (the bench's \
predictions; docs/SCALE.md says how often they land within 30%), held to Little's law, \
min(clients, the model's cap) / (wait + one request's path), and to the machine's CPUs \
shared by server, load generator and downstream"
        .to_string();
    match a.service.rate {
        Some(_) => out.push_str(
            ": the capacity. In an open loop a model serves the rate offered if it is under \
its capacity; latency = one request's path + wait + the queue (M/G/c, Allen-Cunneen, Poisson \
arrivals; `fiblab load --rate` sends evenly and queues less). Tier 1: every model that serves the rate \
(within its objective).",
        ),
        None => out.push_str(
            "; mean latency = clients / throughput. Tier 1: within 30% of the best that can \
serve.",
        ),
    }
    out.push_str(
        " Memory: each thread beyond the first at the calibrated resident memory a thread \
per connection costs, and each connection at the model's per-connection target \
(the C10K experiment's).",
    );
    out.push_str(" docs/ADVISE.md says more.\n");
    out
}

/// The advice as markdown: the same table and paragraphs.
pub fn markdown(a: &Advice) -> String {
    let mut out = format!(
        "# Advice\n\nFor {}.\n\n{}: {} ({}).\n\n| {} |\n|{}|\n",
        described(a),
        measured_or_not(a),
        a.calibration,
        a.machine,
        HEADER.join(" | "),
        ["---"; 8].join("|")
    );
    for r in a.models.iter().map(row) {
        out.push_str(&format!("| {} |\n", r.join(" | ").replace('`', "")));
    }
    out.push_str(&format!("\n{}\n", a.recommendation));
    if !a.changes.is_empty() {
        out.push_str("\n## What would change it\n\n");
        for c in &a.changes {
            out.push_str(&format!("- {c}.\n"));
        }
    }
    if let Some(c) = &a.confirmation {
        out.push_str(&format!(
            "\n## Measured here\n\n| {} |\n|{}|\n",
            MEASURED_HEADER.join(" | "),
            ["---"; 7].join("|")
        ));
        for r in c.rows.iter().map(measured_row) {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        out.push('\n');
        for r in c.rows.iter().filter(|r| !r.within) {
            out.push_str(&format!(
                "- {} off its prediction: {}.\n",
                r.model,
                r.reason.as_deref().unwrap_or("")
            ));
        }
        out.push_str(&format!("\n{}\n", c.verdict.replace('`', "")));
    }
    out.push_str(&rules(a));
    out
}

/// `&`, `<`, `>` and `"` escaped; `` `code` `` as `<code>`.
fn html_text(text: &str) -> String {
    crate::output::escape_html(text)
        .split('`')
        .enumerate()
        .map(|(i, part)| match i % 2 {
            1 => format!("<code>{part}</code>"),
            _ => part.to_string(),
        })
        .collect()
}

/// A table of `header` and `rows`, escaped.
fn html_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut out = String::from("<table><tr>");
    for h in header {
        out.push_str(&format!("<th>{}</th>", html_text(h)));
    }
    out.push_str("</tr>\n");
    for r in rows {
        out.push_str("<tr>");
        for cell in r {
            out.push_str(&format!("<td>{}</td>", html_text(cell)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

/// The advice as one self-contained HTML page: the same table and paragraphs as
/// [`markdown`].
pub fn html(a: &Advice) -> String {
    let mut out = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>fiblab advise</title>\n\
         <style>body{{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d232b}}\
         table{{border-collapse:collapse;margin:8px 0}}td,th{{border-bottom:1px solid #dde2e8;\
         padding:3px 8px;text-align:left;font-variant-numeric:tabular-nums}}\
         code{{background:#f1f3f5;padding:0 3px}}</style></head><body>\n\
         <h1>Advice</h1>\n<p>For {}.</p>\n<p>{}: {} ({}).</p>\n",
        html_text(&described(a)),
        measured_or_not(a),
        html_text(&a.calibration),
        html_text(&a.machine)
    );
    let rows: Vec<[String; 8]> = a.models.iter().map(row).collect();
    out.push_str(&html_table(&HEADER, &rows));
    out.push_str(&format!("<p>{}</p>\n", html_text(&a.recommendation)));
    if !a.changes.is_empty() {
        out.push_str("<h2>What would change it</h2>\n<ul>\n");
        for c in &a.changes {
            out.push_str(&format!("<li>{}.</li>\n", html_text(c)));
        }
        out.push_str("</ul>\n");
    }
    if let Some(c) = &a.confirmation {
        out.push_str("<h2>Measured here</h2>\n");
        let rows: Vec<[String; 7]> = c.rows.iter().map(measured_row).collect();
        out.push_str(&html_table(&MEASURED_HEADER, &rows));
        out.push_str("<ul>\n");
        for r in c.rows.iter().filter(|r| !r.within) {
            out.push_str(&format!(
                "<li><code>{}</code> off its prediction: {}.</li>\n",
                html_text(&r.model),
                html_text(r.reason.as_deref().unwrap_or(""))
            ));
        }
        out.push_str(&format!(
            "</ul>\n<p><strong>{}</strong></p>\n",
            html_text(&c.verdict)
        ));
    }
    out.push_str(&format!(
        "<p>{}</p>\n</body></html>\n",
        html_text(rules(a).trim())
    ));
    out
}
