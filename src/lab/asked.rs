//! What the page asks of the lab (a server, a load), and why the lab may refuse it.

use serde::{Deserialize, Serialize};

use crate::server::Variant;

/// Why the lab refused what the page asked (answered 422 with this text).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("no server runs: start one first")]
    NoServer,
    #[error("model: {0:?} is not in the registry (see `fiblab models`)")]
    UnknownModel(String),
    #[error("gil: {0:?} is none of none, shared, per-interpreter")]
    Gil(String),
    #[error("workers: {0} is outside 1-64")]
    Workers(usize),
    #[error(transparent)]
    Variant(#[from] crate::models::VariantError),
    #[error("cannot serve --model {model} here: {source}")]
    Unavailable {
        model: String,
        source: std::io::Error,
    },
    #[error("the server did not start: {0}")]
    Start(std::io::Error),
    #[error("clients: {asked} is more than the lab allows ({max})")]
    Clients { asked: usize, max: usize },
    #[error("n: {asked} is more than the load may ask ({max}); the heavy request is sent apart")]
    N { asked: u32, max: u32 },
    #[error(transparent)]
    Mix(#[from] crate::load::mix::MixError),
    #[error("one line of at most {0} bytes, without a newline")]
    Line(usize),
    #[error("no reply: {0}")]
    NoReply(std::io::Error),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    #[error("rate: {0} is not a rate the lab sends (more than 0, at most {max} req/s)", max = super::MAX_RATE)]
    Rate(f64),
    #[error("lesson: {0:?} is not one of the lessons (GET /api/state lists them)")]
    Lesson(String),
    #[error("a lesson is running: wait for its end")]
    LessonRunning,
    #[error(
        "the heavy request sent before has not been answered yet: one at a time (it is marked on the chart when it is)"
    )]
    HeavyRunning,
}

impl Refusal {
    /// Whether it refuses because something else is in progress (answered 409: the
    /// same call may work later), rather than because of what was asked (422).
    pub fn is_busy(&self) -> bool {
        matches!(self, Refusal::LessonRunning | Refusal::HeavyRunning)
    }
}

/// The server the page asks for. A field the lab does not know is refused, not
/// ignored: a call is what the page sends, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSetting {
    pub model: String,
    /// `none`, `shared` or `per-interpreter`.
    #[serde(default = "none")]
    pub gil: String,
    #[serde(default)]
    pub offload: bool,
    /// `None`: the model's default.
    #[serde(default)]
    pub workers: Option<usize>,
}

fn none() -> String {
    "none".into()
}

impl ServerSetting {
    /// The label the chart's marks use: `threads --gil`, `epoll+offload`.
    pub fn label(&self) -> String {
        let mut label = Variant {
            model: self.model.clone(),
            offload: self.offload,
        }
        .label();
        if self.gil != "none" {
            label.push_str(&format!(" --gil {}", self.gil));
        }
        if let Some(w) = self.workers {
            label.push_str(&format!(" --workers {w}"));
        }
        label
    }
}

/// The load the page asks for: clients asking fib(n), or a mix of n, in a closed loop
/// or at an open-loop rate.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSetting {
    pub clients: usize,
    pub n: u32,
    /// Open loop: requests per second over all clients, sent on schedule whether or
    /// not replies came back; `None`: a closed loop.
    #[serde(default)]
    pub rate: Option<f64>,
    /// A mix (`1:99,30:1`: n and weight) instead of one `n`.
    #[serde(default)]
    pub mix: Option<String>,
}

impl LoadSetting {
    /// The chart's mark: `2 clients, fib(1)`, `4 clients, mix 1:99,30:1 at 5,000 req/s`.
    pub(super) fn label(&self) -> String {
        let what = match &self.mix {
            Some(mix) => format!("mix {mix}"),
            None => format!("fib({})", self.n),
        };
        let pace = match self.rate {
            Some(rate) => format!(" at {} req/s (open loop)", crate::units::thousands(rate)),
            None => String::new(),
        };
        format!(
            "{} client{}, {what}{pace}",
            self.clients,
            if self.clients == 1 { "" } else { "s" }
        )
    }
}
