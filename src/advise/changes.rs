//! What would change the advice: the service's clients, work and wait moved one way
//! and the other until another model is advised, and why.

use super::{
    FibCosts, MOST_CLIENTS, MOST_RATE, MOST_WAIT, ModelAdvice, On, Service, advised, predict_all,
    words,
};

/// The loads, works and waits at which the advice becomes another model: clients
/// doubled (and halved) until it changes, n one step up and down (φ = 1.62x the CPU
/// each), the wait doubled from 1 ms (and halved to none). One sentence per direction
/// that changes it within reach. With no model advised now, where one would be.
pub fn what_changes(on: &On<'_>, service: &Service, now: Option<&'static str>) -> Vec<String> {
    let mut out = Vec::new();
    let advised_at = |s: &Service| {
        let models = predict_all(on, s);
        advised(&models).map(|a| a.model)
    };
    let mut scan = |what: &str, steps: Vec<Service>, describe: &dyn Fn(&Service) -> String| {
        let mut last = service.clone();
        for s in steps {
            if advised_at(&s) != now {
                // Doubling found the change between `last` and `s`: bisect the clients
                // or the wait to where it happens (n moves one step at a time already).
                let mut changed = s;
                for _ in 0..40 {
                    let mut mid = changed.clone();
                    let (r0, r1) = (last.rate.unwrap_or(0.0), changed.rate.unwrap_or(0.0));
                    if (r1 - r0).abs() > 0.01 * r1.max(1.0) {
                        mid.rate = Some((r0 + r1) / 2.0);
                    } else if changed.clients.abs_diff(last.clients) > 1 {
                        mid.clients = (changed.clients + last.clients) / 2;
                    } else if (changed.wait_us - last.wait_us).abs()
                        > 0.01 * changed.wait_us.max(1.0)
                    {
                        mid.wait_us = (changed.wait_us + last.wait_us) / 2.0;
                    } else {
                        break;
                    }
                    match advised_at(&mid) == now {
                        true => last = mid,
                        false => changed = mid,
                    }
                }
                let models = predict_all(on, &changed);
                let other = advised(&models);
                out.push(format!(
                    "{what} {}: {} ({})",
                    describe(&changed),
                    other.map_or("no model".to_string(), |a| format!("`{}`", a.model)),
                    why_changed(&models, now, other)
                ));
                return;
            }
            last = s;
        }
    };
    let with = |f: &dyn Fn(&mut Service)| {
        let mut s = service.clone();
        f(&mut s);
        s
    };
    let clients_up: Vec<Service> = std::iter::successors(Some(service.clients * 2), |c| {
        (*c < MOST_CLIENTS).then_some(c * 2)
    })
    .map(|c| with(&|s| s.clients = c.min(MOST_CLIENTS)))
    .collect();
    let clients_down: Vec<Service> =
        std::iter::successors(Some(service.clients / 2), |c| (*c > 1).then_some(c / 2))
            .filter(|&c| c >= 1)
            .map(|c| with(&|s| s.clients = c))
            .collect();
    let rate_up: Vec<Service> = match service.rate {
        Some(r) => std::iter::successors(Some(r * 2.0), |r| (*r < MOST_RATE).then_some(r * 2.0))
            .map(|r| with(&|s| s.rate = Some(r.min(MOST_RATE))))
            .collect(),
        None => Vec::new(),
    };
    let rate_down: Vec<Service> = match service.rate {
        Some(r) => std::iter::successors(Some(r / 2.0), |r| (*r > 2.0).then_some(r / 2.0))
            .map(|r| with(&|s| s.rate = Some(r.max(1.0))))
            .collect(),
        None => Vec::new(),
    };
    // A mix moves as a whole: its classes' n are the user's, not one step of work.
    let steps = if service.mix.is_empty() { 12 } else { 0 };
    let n_up: Vec<Service> = (service.n + 1..=(service.n + steps).min(45))
        .map(|n| with(&|s| s.n = n))
        .collect();
    let n_down: Vec<Service> = (service.n.saturating_sub(steps)..service.n)
        .rev()
        .map(|n| with(&|s| s.n = n))
        .collect();
    let wait_up: Vec<Service> =
        std::iter::successors(Some((service.wait_us * 2.0).max(1_000.0)), |w| {
            (*w < MOST_WAIT.as_secs_f64() * 1e6).then_some(w * 2.0)
        })
        .map(|w| with(&|s| s.wait_us = w))
        .collect();
    let wait_down: Vec<Service> = match service.wait_us > 0.0 {
        true => std::iter::successors(Some(service.wait_us / 2.0), |w| {
            (*w > 1_000.0).then_some(w / 2.0)
        })
        .chain([0.0])
        .map(|w| with(&|s| s.wait_us = w))
        .collect(),
        false => Vec::new(),
    };
    let cpu = |s: &Service| {
        FibCosts::of(on.calibration)
            .native(s.n)
            .map_or(String::new(), |us| {
                format!(" ({} of CPU)", words::duration_us(us))
            })
    };
    let clients = |s: &Service| match s.clients {
        1 => "1 client".to_string(),
        c => format!("{} clients", crate::units::thousands(c as f64)),
    };
    let rate = |s: &Service| format!("{} req/s", crate::units::thousands(s.rate.unwrap_or(0.0)));
    scan("Offered more, from", rate_up, &rate);
    scan("Offered less, at", rate_down, &rate);
    let connections = |s: &Service| match s.clients {
        1 => "1 connection".to_string(),
        c => format!("{} connections", crate::units::thousands(c as f64)),
    };
    let clients: &dyn Fn(&Service) -> String = match service.rate {
        Some(_) => &connections,
        None => &clients,
    };
    scan("From", clients_up, clients);
    scan("Down at", clients_down, clients);
    scan("With more work, from", n_up, &|s: &Service| {
        format!("fib({}){}", s.n, cpu(s))
    });
    scan("With less work, at", n_down, &|s: &Service| {
        format!("fib({}){}", s.n, cpu(s))
    });
    scan("Waiting longer, from", wait_up, &|s: &Service| {
        words::duration_us(s.wait_us)
    });
    scan(
        "Waiting less, at",
        wait_down,
        &|s: &Service| match s.wait_us > 0.0 {
            true => words::duration_us(s.wait_us),
            false => "no wait".to_string(),
        },
    );
    out
}

/// Why the advice moved from `now` to `other` among `models`: what the model advised
/// before lost, or what the new one gained.
fn why_changed(models: &[ModelAdvice], now: Option<&str>, other: Option<&ModelAdvice>) -> String {
    let was = now.and_then(|m| models.iter().find(|a| a.model == m));
    match (was, other) {
        (Some(w), _) if w.cannot.is_some() => {
            format!("`{}` {}", w.model, w.cannot.as_deref().unwrap_or(""))
        }
        (Some(w), _) if w.misses_slo => match w.p99_us {
            Some(p99) => format!(
                "`{}`'s predicted p99, {}, is over the objective",
                w.model,
                words::latency(p99)
            ),
            None => format!(
                "`{}`'s mean latency, {}, is over the objective",
                w.model,
                words::latency(w.mean_latency_us)
            ),
        },
        (Some(w), Some(o)) if w.tier != 1 => format!(
            "`{}` falls out of tier 1: {} req/s against `{}`'s {}",
            w.model,
            words::rate(w),
            o.model,
            words::rate(o)
        ),
        (Some(w), Some(o))
            if o.threads + o.processes == w.threads + w.processes
                && o.descriptors == w.descriptors =>
        {
            match (o.capacity, w.capacity) {
                (Some(oc), Some(wc)) => format!(
                    "`{}` costs as little and has more headroom: capacity {} req/s against `{}`'s {}",
                    o.model,
                    words::capacity(oc),
                    w.model,
                    words::capacity(wc)
                ),
                _ if o.middle() > w.middle() * 1.005 => format!(
                    "`{}` costs as little and is faster: {} req/s against `{}`'s {}",
                    o.model,
                    words::rate(o),
                    w.model,
                    words::rate(w)
                ),
                _ => format!(
                    "`{}` joins tier 1 as fast and as cheap as `{}` ({} req/s, {} thread(s), {} descriptors): a tie, and the advice takes the first of the tied in the registry's order",
                    o.model,
                    w.model,
                    words::rate(o),
                    crate::units::thousands((o.threads) as f64),
                    crate::units::thousands(o.descriptors as f64)
                ),
            }
        }
        (Some(w), Some(o)) => format!(
            "`{}` joins tier 1 at a lower cost: {} thread(s) and {} descriptors against {} and {}",
            o.model,
            crate::units::thousands(o.threads as f64),
            crate::units::thousands(o.descriptors as f64),
            crate::units::thousands(w.threads as f64),
            crate::units::thousands(w.descriptors as f64)
        ),
        (None, Some(o)) => format!(
            "it serves {} req/s, mean latency {}",
            words::rate(o),
            words::latency(o.mean_latency_us)
        ),
        _ => "none can".to_string(),
    }
}
