//! The lab's advice desk: `fiblab advise` as a form on the page. The same fields as
//! the command's flags, checked by the same parsers (each error names its field), the
//! prediction as a table from a calibration of this machine (measured at the first ask,
//! then kept), and a measurement of it run live, one at a time, its progress and its
//! result read back by the page.
//!
//! ```text
//! POST /api/advise          {"cpu": "300us", "wait": "20ms", "clients": "100", ...}
//!                           -> the advice (predicted), as JSON and as text
//! POST /api/advise/measure  the same form -> the measurement starts (202)
//! GET  /api/advise          -> {"state": "idle" | "measuring" | "done" | "failed", ...}
//! ```

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::advise::{Advice, Service};
use crate::calibrate::Calibration;
use crate::calibrate::work::{choose_n, from_table, parse_cpu, resolve_mix};

/// fib(n) the desk's calibration times: the table's points, extended by φ per step
/// (the interpreter's fib(32) already takes a few hundred milliseconds a run).
const TIMED: [u32; 5] = [1, 10, 20, 25, 30];

/// The longest measurement the page may ask for.
pub const MOST_BUDGET: Duration = Duration::from_secs(120);

/// The form, as the page sends it: every field text, as a person typed it; empty or
/// missing is "not given".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdviceForm {
    pub cpu: String,
    pub n: String,
    pub mix: String,
    pub wait: String,
    pub clients: String,
    pub rate: String,
    pub slo: String,
    /// The measurement's time budget, e.g. 30s (10s to 2m; default 30s).
    pub budget: String,
    /// Also the thread models under CPython's GIL.
    pub gil: bool,
}

/// A form that cannot be advised on: which field, and why (answered 422).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct FormError {
    pub field: &'static str,
    pub why: String,
}

fn bad(field: &'static str, why: impl ToString) -> FormError {
    FormError {
        field,
        why: why.to_string(),
    }
}

fn given(text: &str) -> Option<&str> {
    Some(text.trim()).filter(|t| !t.is_empty())
}

impl AdviceForm {
    /// The service it describes on `calibration`'s machine, and the budget asked.
    ///
    /// # Errors
    /// The first field out of range, or no work / two kinds of work.
    pub fn service(&self, calibration: &Calibration) -> Result<(Service, Duration), FormError> {
        let table: Vec<(u32, f64)> = calibration
            .fib
            .iter()
            .map(|f| (f.n, f.cost.median_us))
            .collect();
        let mut time = from_table(&table);
        let works = [&self.cpu, &self.n, &self.mix]
            .iter()
            .filter(|w| given(w).is_some())
            .count();
        if works != 1 {
            return Err(bad(
                "cpu",
                "give the work per request once: a CPU time (e.g. 300us), n, or a mix",
            ));
        }
        let (n, asked_cpu_us, mix) = if let Some(cpu) = given(&self.cpu) {
            let choice = choose_n(parse_cpu(cpu).map_err(|e| bad("cpu", e))?, &mut time);
            (choice.n, Some(choice.asked_us), Vec::new())
        } else if let Some(n) = given(&self.n) {
            match n.parse::<u32>() {
                Ok(n) if n <= 45 => (n, None, Vec::new()),
                _ => return Err(bad("n", format!("'{n}': give fib(n) for n from 0 to 45"))),
            }
        } else {
            let text = given(&self.mix).unwrap_or_default();
            let (mix, _) = resolve_mix("mix", text, &mut time).map_err(|e| bad("mix", e))?;
            let parsed = crate::load::mix::Mix::parse_fib(&mix, true).map_err(|e| bad("mix", e))?;
            let classes: Vec<(u32, u32)> = parsed
                .classes
                .iter()
                .map(|c| {
                    (
                        c.label.trim_start_matches("n=").parse().unwrap_or(0),
                        c.weight,
                    )
                })
                .collect();
            if let Some((n, _)) = classes.iter().find(|(n, _)| *n > 45) {
                return Err(bad("mix", format!("fib({n}) past 45: give n from 0 to 45")));
            }
            let heaviest = classes.iter().map(|&(n, _)| n).max().unwrap_or(0);
            match classes.len() {
                1 => (heaviest, None, Vec::new()),
                _ => (heaviest, None, classes),
            }
        };
        let wait = match given(&self.wait) {
            Some(w) => crate::advise::parse_wait(w).map_err(|e| bad("wait", e))?,
            None => Duration::ZERO,
        };
        let rate = match given(&self.rate) {
            Some(r) => Some(crate::advise::parse_rate(r).map_err(|e| bad("rate", e))?),
            None => None,
        };
        let clients = match given(&self.clients) {
            Some(c) => {
                let c: usize = c
                    .parse()
                    .map_err(|_| bad("clients", format!("'{c}' is not a whole number")))?;
                crate::advise::check_clients(c).map_err(|e| bad("clients", e))?
            }
            None if rate.is_some() => 64,
            None => 1,
        };
        let slo_p99_us = match given(&self.slo) {
            Some(s) => Some(crate::advise::parse_slo(s).map_err(|e| bad("slo", e))?),
            None => None,
        };
        let budget = match given(&self.budget) {
            Some(b) => match crate::units::parse_duration(b) {
                Ok(d) if (Duration::from_secs(10)..=MOST_BUDGET).contains(&d) => d,
                _ => return Err(bad("budget", format!("'{b}': give 10s to 2m"))),
            },
            None => Duration::from_secs(30),
        };
        Ok((
            Service {
                n,
                asked_cpu_us,
                wait_us: wait.as_secs_f64() * 1e6,
                clients,
                slo_p99_us,
                rate,
                mix,
                gil: self.gil,
            },
            budget,
        ))
    }
}

/// Where the desk's measurement stands.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Measuring {
    Idle,
    Measuring {
        /// Cells done and in all, and the one running.
        done: usize,
        total: usize,
        label: String,
    },
    Done {
        advice: Box<Advice>,
        text: String,
    },
    Failed {
        why: String,
    },
}

/// The desk: the calibration once measured, and the measurement in progress or done.
pub struct Desk {
    exe: PathBuf,
    calibration: Mutex<Option<Arc<Calibration>>>,
    measuring: Arc<Mutex<Measuring>>,
    stop: Arc<AtomicBool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why the desk will not measure now (answered 409).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Busy {
    #[error("a measurement is running: wait for its end (GET /api/advise follows it)")]
    Measuring,
    #[error(
        "the lab's own server or load is running: stop it first, the measurement needs the machine's CPUs to itself"
    )]
    LabRunning,
    #[error("{0}")]
    Unmeasurable(String),
    #[error("cannot start the measurement's thread: {0}")]
    Thread(String),
}

impl Desk {
    /// A desk starting servers from `exe`.
    pub fn new(exe: PathBuf) -> Desk {
        Desk {
            exe,
            calibration: Mutex::new(None),
            measuring: Arc::new(Mutex::new(Measuring::Idle)),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// This machine's calibration, measured at the first call (a few seconds).
    fn calibration(&self) -> Arc<Calibration> {
        let mut held = lock(&self.calibration);
        held.get_or_insert_with(|| Arc::new(Calibration::measure(&self.exe, &TIMED)))
            .clone()
    }

    /// The advice for `form`, predicted.
    ///
    /// # Errors
    /// A field out of range.
    pub fn predict(&self, form: &AdviceForm) -> Result<(Advice, Duration), FormError> {
        let calibration = self.calibration();
        let (service, budget) = form.service(&calibration)?;
        let advice = crate::advise::advise(&calibration, &service, "calibrated here by the lab");
        Ok((advice, budget))
    }

    /// Starts measuring `advice` within `budget` in a thread of its own; `lab_busy`: the
    /// lab's own server or load runs.
    ///
    /// # Errors
    /// See [`Busy`].
    pub fn measure(&self, advice: Advice, budget: Duration, lab_busy: bool) -> Result<(), Busy> {
        if lab_busy {
            return Err(Busy::LabRunning);
        }
        if let Some(why) = crate::advise::confirm::unmeasurable(&advice.service) {
            return Err(Busy::Unmeasurable(why.to_string()));
        }
        let mut state = lock(&self.measuring);
        if matches!(*state, Measuring::Measuring { .. }) {
            return Err(Busy::Measuring);
        }
        *state = Measuring::Measuring {
            done: 0,
            total: 0,
            label: "starting".into(),
        };
        drop(state);
        let (exe, shared, stop) = (self.exe.clone(), self.measuring.clone(), self.stop.clone());
        std::thread::Builder::new()
            .name("lab-advise".into())
            .spawn(move || {
                let mut progress = |step: crate::bench::Step<'_>| {
                    *lock(&shared) = Measuring::Measuring {
                        done: step.done,
                        total: step.total,
                        label: step.label.to_string(),
                    };
                };
                let outcome = crate::advise::confirm::run(
                    &advice,
                    budget,
                    &exe,
                    stop,
                    &mut progress,
                    "fiblab lab: advice measured".into(),
                );
                *lock(&shared) = match outcome {
                    Ok(confirmation) => {
                        let mut advice = advice;
                        advice.confirmation = Some(confirmation);
                        let text = crate::advise::text(&advice);
                        Measuring::Done {
                            advice: Box::new(advice),
                            text,
                        }
                    }
                    Err(e) => Measuring::Failed { why: e.to_string() },
                };
            })
            .map(|_| ())
            .map_err(|e| {
                *lock(&self.measuring) = Measuring::Idle;
                Busy::Thread(e.to_string())
            })
    }

    /// Where the measurement stands.
    pub fn state(&self) -> Measuring {
        lock(&self.measuring).clone()
    }

    /// [`Desk::state`] as JSON.
    pub fn state_json(&self) -> serde_json::Value {
        serde_json::to_value(self.state())
            .unwrap_or_else(|e| serde_json::json!({ "state": "failed", "why": e.to_string() }))
    }

    /// Stops a measurement in progress at its next cell (the lab is stopping).
    pub fn stop(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibrate::{FibCost, Measure};

    fn calibration() -> Calibration {
        Calibration {
            fib: vec![FibCost {
                n: 20,
                cost: Measure {
                    median_us: 30.0,
                    spread: 0.0,
                },
            }],
            ..Calibration::default()
        }
    }

    fn form(f: impl FnOnce(&mut AdviceForm)) -> AdviceForm {
        let mut form = AdviceForm {
            n: "20".into(),
            ..AdviceForm::default()
        };
        f(&mut form);
        form
    }

    #[test]
    fn each_bad_field_is_named() {
        let c = calibration();
        let field = |f: AdviceForm| f.service(&c).unwrap_err().field;
        assert_eq!(field(form(|f| f.n = "46".into())), "n");
        assert_eq!(field(form(|f| f.cpu = "2ms".into())), "cpu", "two works");
        assert_eq!(field(form(|f| f.n = String::new())), "cpu", "no work");
        assert_eq!(field(form(|f| f.wait = "2m".into())), "wait");
        assert_eq!(field(form(|f| f.clients = "0".into())), "clients");
        assert_eq!(field(form(|f| f.clients = "many".into())), "clients");
        assert_eq!(field(form(|f| f.rate = "0/s".into())), "rate");
        assert_eq!(field(form(|f| f.slo = "p50=1ms".into())), "slo");
        assert_eq!(field(form(|f| f.budget = "5s".into())), "budget");
        assert_eq!(
            field(AdviceForm {
                mix: "1:x".into(),
                ..AdviceForm::default()
            }),
            "mix"
        );
    }

    #[test]
    fn a_form_is_the_service_the_flags_would_make() {
        let c = calibration();
        let (s, budget) = form(|f| {
            f.wait = "20ms".into();
            f.clients = "100".into();
            f.slo = "p99=50ms".into();
        })
        .service(&c)
        .unwrap();
        assert_eq!((s.n, s.wait_us, s.clients), (20, 20_000.0, 100));
        assert_eq!((s.slo_p99_us, s.rate), (Some(50_000.0), None));
        assert_eq!(budget, Duration::from_secs(30));
        // An open loop without connections named: 64, as the command's.
        let (s, _) = form(|f| f.rate = "2000/s".into()).service(&c).unwrap();
        assert_eq!((s.rate, s.clients), (Some(2000.0), 64));
        // A CPU time: the n nearest it on the calibrated machine (30 µs: fib(20)).
        let (s, _) = AdviceForm {
            cpu: "30us".into(),
            ..AdviceForm::default()
        }
        .service(&c)
        .unwrap();
        assert_eq!((s.n, s.asked_cpu_us), (20, Some(30.0)));
    }
}
