//! The seeds' lessons as guided steps: each switches the server and sets the load as a
//! teacher would, measures every step from the lab's own points, and ends with what
//! was observed, computed from those figures, beside the seed's conclusion (its
//! Chinese text and an English line).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::figures::{Measured, Point, Progress};
use super::state::{Lab, LoadSetting, Refusal, ServerSetting};
use crate::units::thousands;

/// How long a step lets the load settle before it measures.
const SETTLE: Duration = Duration::from_millis(1000);

/// One step: a server, a load, and how long it is measured (or the heavy request).
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub model: &'static str,
    pub gil: bool,
    pub offload: bool,
    pub clients: usize,
    pub n: u32,
    /// Measured for this long; with `heavy`, the heavy request is sent after it and the
    /// step lasts until its reply.
    pub seconds: f64,
    pub heavy: bool,
    /// Idle connections held open beside the load while it is measured (each asked
    /// fib(1) once, then silent).
    pub idle: usize,
}

/// A lesson of the seeds; see the module docs.
#[derive(Debug)]
pub struct Lesson {
    pub id: &'static str,
    pub title: &'static str,
    /// Which seed, and where in it.
    pub seed: &'static str,
    /// The seed's conclusion, as it was written.
    pub quote: &'static str,
    /// The same, in English.
    pub english: &'static str,
    pub steps: &'static [Step],
    /// What the measured steps show, computed.
    pub observe: fn(&[Measured]) -> Vec<String>,
}

const fn step(model: &'static str, clients: usize, n: u32) -> Step {
    Step {
        model,
        gil: false,
        offload: false,
        clients,
        n,
        seconds: 3.0,
        heavy: false,
        idle: 0,
    }
}

/// The lessons the page offers, in the seeds' order.
pub const LESSONS: &[Lesson] = &[
    Lesson {
        id: "two-clients",
        title: "One client, then two: single and threads",
        seed: "seed 004, 总结 2-3",
        quote: "受限于 accpet、recv、send 均为 socket 的阻塞调用，只有当前请求的 socket 拆链后，才能服务于下一个请求；引入线程模块，使得每一个请求都可以得到同时享受到服务",
        english: "accept, recv and send block, so the next client is served only once the current one disconnects; with a thread per connection every client is served at once.",
        steps: &[
            step("single", 1, 1),
            step("single", 2, 1),
            step("threads", 1, 1),
            step("threads", 2, 1),
        ],
        observe: observe_two_clients,
    },
    Lesson {
        id: "gil",
        title: "The GIL: threads --gil at a CPU-bound n, one then two clients, beside procpool",
        seed: "seed 000, 总结 4",
        quote: "CPU密集型情况下使用Python多进程会获得性能上的提升，多线程由于GIL性能不会提升，反而可能因为线程切换导致性能降低",
        english: "CPU-bound, Python's processes raise throughput; threads do not, because of the GIL, and switching between them may even lower it.",
        steps: &[
            Step {
                gil: true,
                ..step("threads", 1, 25)
            },
            Step {
                gil: true,
                ..step("threads", 2, 25)
            },
            step("procpool", 1, 25),
            step("procpool", 2, 25),
        ],
        observe: observe_gil,
    },
    Lesson {
        id: "heavy",
        title: "One heavy request on epoll, then on epoll --offload",
        seed: "seed 000, 总结 5",
        quote: "Python协程可以替代多线程在IO密集场景下，且协程更轻量级，CPU密集情况下协程会阻塞，这个时候需要用到多进程",
        english: "Coroutines can replace threads for I/O-bound work and are lighter; CPU-bound work blocks them, and then a pool of processes is needed.",
        steps: &[
            Step {
                seconds: 2.0,
                heavy: true,
                ..step("epoll", 1, 1)
            },
            Step {
                offload: true,
                seconds: 2.0,
                heavy: true,
                ..step("epoll", 1, 1)
            },
        ],
        observe: observe_heavy,
    },
    Lesson {
        id: "idle",
        title: "Idle connections: one active client on select and on epoll, alone then beside 900 idle ones",
        seed: "seed 003, select",
        quote: "select 监管机制是操作系统提供的；将 socket 对象交给 select 监管机制，如果有连接进来的时候，就回返回数据",
        english: "select's watching is done by the operating system: hand it the sockets, and it returns those with data. (The seed shows select, then selectors' epoll, without measuring either.)",
        steps: &[
            step("select", 1, 1),
            Step {
                idle: IDLE,
                ..step("select", 1, 1)
            },
            step("epoll", 1, 1),
            Step {
                idle: IDLE,
                ..step("epoll", 1, 1)
            },
        ],
        observe: observe_idle,
    },
];

/// Idle connections of the idle lesson: below select's FD_SETSIZE (1024) with room
/// for the listener, the active client and the lab's own.
const IDLE: usize = 900;

/// Starts lesson `id` on a thread of its own.
///
/// # Errors
/// No such lesson, or one is running.
pub fn start(lab: &Arc<Lab>, id: &str) -> Result<(), Refusal> {
    let lesson = LESSONS
        .iter()
        .find(|l| l.id == id)
        .ok_or_else(|| Refusal::Lesson(id.to_string()))?;
    if !lab.begin_lesson(progress_of(lesson)) {
        return Err(Refusal::LessonRunning);
    }
    let lab = lab.clone();
    std::thread::Builder::new()
        .name("lab-lesson".into())
        .spawn(move || {
            let outcome = run(&lab, lesson);
            lab.update_lesson(|p| match outcome {
                Ok(observed) => {
                    p.observed = observed;
                    p.doing = "done".into();
                }
                Err(e) => p.failed = Some(e.to_string()),
            });
            lab.mark(format!("lesson {}: done", lesson.id));
        })
        .map_err(Refusal::Thread)?;
    Ok(())
}

fn progress_of(lesson: &'static Lesson) -> Progress {
    Progress {
        id: lesson.id,
        title: lesson.title,
        seed: lesson.seed,
        quote: lesson.quote,
        english: lesson.english,
        step: 0,
        steps: lesson.steps.len(),
        doing: "starting".into(),
        measured: Vec::new(),
        observed: Vec::new(),
        failed: None,
    }
}

fn label(step: &Step) -> String {
    let mut label = step.model.to_string();
    if step.offload {
        label.push_str("+offload");
    }
    if step.gil {
        label.push_str(" --gil");
    }
    format!(
        "{label}, {} client{}, fib({})",
        step.clients,
        if step.clients == 1 { "" } else { "s" },
        step.n
    )
}

fn run(lab: &Arc<Lab>, lesson: &Lesson) -> Result<Vec<String>, Refusal> {
    let mut measured = Vec::new();
    for (i, step) in lesson.steps.iter().enumerate() {
        let label = label(step);
        lab.update_lesson(|p| {
            p.step = i + 1;
            p.doing = label.clone();
        });
        let setting = ServerSetting {
            model: step.model.to_string(),
            gil: if step.gil { "shared" } else { "none" }.into(),
            offload: step.offload,
            workers: None,
        };
        if lab.server().map(|(_, s)| s) != Some(setting.clone()) {
            // Stopped first, so the switch does not start the last step's load again
            // on the new server before this step's is set.
            lab.stop_load_quietly();
            lab.switch(setting)?;
        }
        // Held before the load starts, so the active client's index stays 0; dropped
        // (reset) at the end of the step.
        let held = match step.idle {
            0 => None,
            idle => {
                let (addr, _) = lab.server().ok_or(Refusal::NoServer)?;
                lab.stop_load_quietly();
                let held = crate::load::hold::hold(&crate::load::hold::HoldSpec::fib1(addr, idle))
                    .map_err(Refusal::NoReply)?;
                lab.mark(format!("{} idle connections held", held.open()));
                Some(held)
            }
        };
        lab.set_load(LoadSetting {
            clients: step.clients,
            n: step.n,
            ..LoadSetting::default()
        })?;
        std::thread::sleep(SETTLE);
        let from = lab.now();
        std::thread::sleep(Duration::from_secs_f64(step.seconds));
        let mut result = summarize(&label, &lab.points_between(from, lab.now()));
        result.idle = held.as_ref().map_or(0, |h| h.open());
        if result.idle > 0 {
            result.label = format!("{label}, beside {} idle", result.idle);
        }
        if step.heavy {
            let sent = lab.now();
            let started = Instant::now();
            lab.mark(format!("heavy: fib({}) sent", lab.heavy_n));
            lab.ask_within(&lab.heavy_n.to_string(), Duration::from_secs(60))?;
            let took = started.elapsed().as_secs_f64();
            lab.mark(format!(
                "heavy: fib({}) answered in {took:.2} s",
                lab.heavy_n
            ));
            // Let the last tick of the heavy request's time be sampled.
            std::thread::sleep(super::TICK * 2);
            let during = summarize(&label, &lab.points_between(sent, sent + took));
            result.during_heavy = Some((during.rps, took));
        }
        drop(held);
        lab.update_lesson(|p| p.measured.push(result.clone()));
        measured.push(result);
    }
    lab.set_load(LoadSetting::default())?;
    Ok((lesson.observe)(&measured))
}

/// The median throughput and the connections' shares of `points`.
fn summarize(label: &str, points: &[Point]) -> Measured {
    let rps: Vec<f64> = points.iter().map(|p| p.rps).collect();
    let p50: Vec<f64> = points
        .iter()
        .filter(|p| p.p50 > 0)
        .map(|p| p.p50 as f64)
        .collect();
    let clients = points.iter().map(|p| p.shares.len()).max().unwrap_or(0);
    let mut replies = vec![0u64; clients];
    for p in points {
        for (total, n) in replies.iter_mut().zip(&p.shares) {
            *total += n;
        }
    }
    let all: u64 = replies.iter().sum();
    Measured {
        label: label.to_string(),
        rps: crate::stats::median(&rps),
        p50_us: crate::stats::median(&p50),
        idle: 0,
        shares: replies
            .iter()
            .map(|&r| if all == 0 { 0.0 } else { r as f64 / all as f64 })
            .collect(),
        during_heavy: None,
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn shares(m: &Measured) -> String {
    m.shares
        .iter()
        .map(|s| format!("{:.0}%", s * 100.0))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// `single`: the second client's share is (close to) nothing and the throughput stays
/// one client's; `threads`: both are served and the throughput grows.
fn observe_two_clients(m: &[Measured]) -> Vec<String> {
    let [s1, s2, t1, t2] = m else {
        return vec!["the lesson did not measure its four steps".into()];
    };
    let starved = |m: &Measured| m.shares.iter().filter(|&&s| s < 0.01).count();
    vec![
        format!(
            "single: two clients {} req/s, {:.2}x one client's {}; the replies went {} ({} client{} got none: it waits until the first leaves)",
            thousands(s2.rps),
            ratio(s2.rps, s1.rps),
            thousands(s1.rps),
            shares(s2),
            starved(s2),
            if starved(s2) == 1 { "" } else { "s" }
        ),
        format!(
            "threads: two clients {} req/s, {:.2}x one client's {}; the replies went {} (every client served at once)",
            thousands(t2.rps),
            ratio(t2.rps, t1.rps),
            thousands(t1.rps),
            shares(t2)
        ),
    ]
}

/// `threads --gil`: a second CPU-bound client adds (almost) nothing; `procpool`: it
/// adds what a second CPU can.
fn observe_gil(m: &[Measured]) -> Vec<String> {
    let [g1, g2, p1, p2] = m else {
        return vec!["the lesson did not measure its four steps".into()];
    };
    let gil = ratio(g2.rps, g1.rps);
    let pool = ratio(p2.rps, p1.rps);
    vec![
        format!(
            "threads --gil, fib(25): two clients {} req/s, {gil:.2}x one client's {}: one thread computes at a time",
            thousands(g2.rps),
            thousands(g1.rps)
        ),
        format!(
            "procpool, fib(25): two clients {} req/s, {pool:.2}x one client's {}: each worker process has its own interpreter",
            thousands(p2.rps),
            thousands(p1.rps)
        ),
        format!(
            "a second CPU-bound client: {:.2}x more with processes than with GIL-bound threads{}",
            ratio(pool, gil),
            match std::thread::available_parallelism().map_or(1, |n| n.get()) {
                1 | 2 =>
                    " (on this 2-CPU machine the load generator takes its share of the CPUs too)",
                _ => "",
            }
        ),
    ]
}

/// `epoll`: the light client stops while fib(heavy) runs on the loop; `--offload`: it
/// goes on.
fn observe_heavy(m: &[Measured]) -> Vec<String> {
    let [inline, pooled] = m else {
        return vec!["the lesson did not measure its two steps".into()];
    };
    let line = |m: &Measured, name: &str, why: &str| match m.during_heavy {
        Some((during, took)) => format!(
            "{name}: while the heavy request ran ({took:.2} s) the light client got {} req/s, {:.2}x its {} before: {why}",
            thousands(during),
            ratio(during, m.rps),
            thousands(m.rps)
        ),
        None => format!("{name}: the heavy request was not measured"),
    };
    vec![
        line(
            inline,
            "epoll",
            "the one loop computes it and answers no one else",
        ),
        line(
            pooled,
            "epoll --offload",
            "a worker computes it and the loop goes on",
        ),
    ]
}

/// One active client's p50 alone and beside the idle connections: `select` pays a
/// scan of every descriptor per wait, `epoll` reports only the ready one.
fn observe_idle(m: &[Measured]) -> Vec<String> {
    let [s0, s1, e0, e1] = m else {
        return vec!["the lesson did not measure its four steps".into()];
    };
    let line = |name: &str, alone: &Measured, beside: &Measured| {
        let added = beside.p50_us - alone.p50_us;
        format!(
            "{name}: one client's p50 {:.0} µs alone, {:.0} µs beside {} idle connections: {:+.0} µs, {:+.1} µs per 1,000 idle; {} req/s, {:.2}x",
            alone.p50_us,
            beside.p50_us,
            beside.idle,
            added,
            if beside.idle == 0 {
                0.0
            } else {
                added * 1000.0 / beside.idle as f64
            },
            thousands(beside.rps),
            ratio(beside.rps, alone.rps)
        )
    };
    vec![line("select", s0, s1), line("epoll", e0, e1), {
        let (select, epoll) = (s1.p50_us - s0.p50_us, e1.p50_us - e0.p50_us);
        // Below a microsecond (or negative: the machine moved) is no cost at all.
        match epoll >= 1.0 {
            true => format!(
                "the idle connections cost select {:.1}x what they cost epoll per request",
                ratio(select.max(0.0), epoll)
            ),
            false => format!(
                "the idle connections cost select {select:+.0} µs per request and epoll nothing measurable ({epoll:+.0} µs)"
            ),
        }
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(rps: f64, shares: &[f64], during: Option<(f64, f64)>) -> Measured {
        Measured {
            label: String::new(),
            rps,
            p50_us: 20.0,
            shares: shares.to_vec(),
            idle: 0,
            during_heavy: during,
        }
    }

    #[test]
    fn observations_are_computed_from_the_figures() {
        let two = observe_two_clients(&[
            m(40_000.0, &[1.0], None),
            m(39_000.0, &[1.0, 0.0], None),
            m(40_000.0, &[1.0], None),
            m(70_000.0, &[0.5, 0.5], None),
        ]);
        assert!(
            two[0].contains("0.97x") && two[0].contains("1 client got none"),
            "{two:?}"
        );
        assert!(
            two[1].contains("1.75x") && two[1].contains("50% / 50%"),
            "{two:?}"
        );
        let gil = observe_gil(&[
            m(2_000.0, &[1.0], None),
            m(2_000.0, &[0.5, 0.5], None),
            m(2_000.0, &[1.0], None),
            m(3_600.0, &[0.5, 0.5], None),
        ]);
        assert!(
            gil[0].contains("1.00x") && gil[1].contains("1.80x"),
            "{gil:?}"
        );
        assert!(
            gil[2].starts_with("a second CPU-bound client: 1.80x"),
            "{gil:?}"
        );
        let heavy = observe_heavy(&[
            m(40_000.0, &[1.0], Some((0.0, 1.1))),
            m(30_000.0, &[1.0], Some((24_000.0, 1.2))),
        ]);
        assert!(heavy[0].contains("0.00x"), "{heavy:?}");
        assert!(heavy[1].contains("0.80x"), "{heavy:?}");
        assert_eq!(
            observe_heavy(&[]),
            vec!["the lesson did not measure its two steps"]
        );
        let idle = |p50_us, idle| Measured {
            p50_us,
            idle,
            ..m(10_000.0, &[1.0], None)
        };
        let seen = observe_idle(&[
            idle(20.0, 0),
            idle(110.0, 900),
            idle(20.0, 0),
            idle(25.0, 900),
        ]);
        assert!(
            seen[0].contains("+90 µs, +100.0 µs per 1,000 idle"),
            "{seen:?}"
        );
        assert!(seen[1].contains("+5 µs"), "{seen:?}");
        assert!(seen[2].contains("18.0x"), "{seen:?}");
        let moved = observe_idle(&[
            idle(20.0, 0),
            idle(110.0, 900),
            idle(23.0, 0),
            idle(14.0, 900),
        ]);
        assert!(
            moved[2].contains("epoll nothing measurable (-9 µs)"),
            "{moved:?}"
        );
    }

    #[test]
    fn every_lesson_names_registry_models_and_a_seed() {
        for lesson in LESSONS {
            assert!(lesson.seed.starts_with("seed 0"), "{}", lesson.id);
            assert!(
                !lesson.quote.is_ascii(),
                "{}: the seed's own words",
                lesson.id
            );
            for step in lesson.steps {
                assert!(crate::models::find(step.model).is_some(), "{}", step.model);
                assert!(step.n <= super::super::MAX_LOAD_N);
            }
        }
    }
}
