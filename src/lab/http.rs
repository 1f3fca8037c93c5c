//! The lab's HTTP face, on [`crate::web`]: the page, the event stream, the JSON API.
//!
//! Who may drive it, checked in this order on every request (see [`crate::web::guard`]):
//! the `Host` is a name the lab answers to (else 403: DNS rebinding), the token (else
//! 401), and for a call that changes anything (`POST /api/...`): from the lab's own
//! origin (else 403) as `application/json` (else 415). Then what it may cost: calls that
//! change the server or the load run one at a time (409 while another is in progress),
//! one heavy request at a time (409), at most [`MAX_ASKS`] lines asked at once and
//! [`LIMITS`]'s streams open at once (503).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

use hyper::body::Bytes;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;

use super::figures::Figures;
use super::state::{Lab, LoadSetting, Refusal, ServerSetting};
use crate::web::guard::{self, AllowedHosts, Denied, Token};
use crate::web::{Method, Request, Response, StatusCode, Streams, json, text, typed};

/// The lab's bounds: a page or two, a teacher's curl, nothing more.
pub(super) const LIMITS: crate::web::Limits = crate::web::Limits {
    max_connections: 256,
    max_streams: 16,
    header_timeout: std::time::Duration::from_secs(10),
    body_timeout: std::time::Duration::from_secs(10),
    max_body: 4096,
    max_header_bytes: 16 * 1024,
    max_requests_per_connection: 1000,
};

/// Lines sent "as nc would" at once (each may wait 10 s for its reply).
const MAX_ASKS: usize = 4;

const PAGE: &str = include_str!("page.html");

/// Who may drive the lab.
#[derive(Debug, Clone)]
pub struct Gate {
    /// `None`: no token (`--no-token`, loopback only).
    pub token: Option<Token>,
    pub hosts: AllowedHosts,
}

struct Api {
    lab: Arc<Lab>,
    gate: Gate,
    /// Held while a call changes the server or the load.
    changing: Mutex<()>,
    asks: Semaphore,
    /// Requests turned away so far, by reason: what the page shows, and what a test of
    /// a page elsewhere checks happened.
    refused: Refused,
}

/// Counts of requests refused by who sent them.
#[derive(Debug, Default)]
struct Refused {
    host: AtomicU64,
    token: AtomicU64,
    cross_origin: AtomicU64,
    not_json: AtomicU64,
}

impl Refused {
    fn count(&self, why: &Denied) {
        let counter = match why {
            Denied::NoHost | Denied::Host(_) => &self.host,
            Denied::Token => &self.token,
            Denied::CrossOrigin(_) => &self.cross_origin,
            Denied::NotJson => &self.not_json,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn json(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "host": get(&self.host),
            "token": get(&self.token),
            "cross_origin": get(&self.cross_origin),
            "not_json": get(&self.not_json),
        })
    }
}

/// The handler [`crate::web::Server`] calls for each request.
pub(super) fn handler(lab: Arc<Lab>, gate: Gate) -> crate::web::Handler {
    let api = Arc::new(Api {
        lab,
        gate,
        changing: Mutex::new(()),
        asks: Semaphore::new(MAX_ASKS),
        refused: Refused::default(),
    });
    Arc::new(move |request, streams| {
        let api = api.clone();
        Box::pin(async move { api.answer(request, streams).await })
    })
}

fn refused(why: &Refusal) -> Response {
    let status = match why.is_busy() {
        true => StatusCode::CONFLICT,
        false => StatusCode::UNPROCESSABLE_ENTITY,
    };
    text(status, &why.to_string())
}

/// Why a request's body was not taken (answered 400 with this text).
#[derive(Debug, thiserror::Error)]
enum BadBody {
    #[error("the body is not the JSON expected: {0}")]
    Json(#[from] serde_json::Error),
}

fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, BadBody> {
    Ok(serde_json::from_slice(bytes)?)
}

impl Api {
    /// Counts and logs a refusal, and answers it.
    fn denied(&self, head: &crate::web::Parts, why: &Denied) -> Response {
        self.refused.count(why);
        tracing::info!(method = %head.method, path = head.uri.path(), "refused: {why}");
        text(why.status(), &why.to_string())
    }

    async fn answer(self: Arc<Self>, request: Request, streams: Streams) -> Response {
        let head = &request.head;
        if let Err(why) = guard::host(head, &self.gate.hosts) {
            return self.denied(head, &why);
        }
        if head.uri.path() == "/favicon.ico" {
            // Browsers ask for it without the page's query: no icon, and no refusal.
            return text(StatusCode::NOT_FOUND, "no icon");
        }
        if let Some(token) = &self.gate.token
            && !token.admits(head)
        {
            return self.denied(head, &Denied::Token);
        }
        let path = head.uri.path().to_string();
        match (&head.method, path.as_str()) {
            (&Method::GET | &Method::HEAD, "/") => page(),
            (&Method::GET, "/events") => self.events(&streams),
            (&Method::GET, "/api/state") => json(StatusCode::OK, &self.state()),
            (&Method::GET, "/api/advise") => json(StatusCode::OK, &self.lab.desk.state_json()),
            (&Method::POST, p) if p.starts_with("/api/") => {
                if let Err(why) = guard::same_origin(head) {
                    return self.denied(head, &why);
                }
                self.change(path, request.body).await
            }
            (_, "/" | "/events" | "/api/state") => {
                text(StatusCode::METHOD_NOT_ALLOWED, "only GET here")
            }
            (_, p) if p.starts_with("/api/") => text(
                StatusCode::METHOD_NOT_ALLOWED,
                "the API's calls are POST (GET /api/state reads)",
            ),
            _ => text(StatusCode::NOT_FOUND, "the lab is at /"),
        }
    }

    /// A `POST /api/...` from the lab's own page: run on a blocking thread (starting a
    /// server waits for it to listen), one change at a time.
    async fn change(self: Arc<Self>, path: String, bytes: Bytes) -> Response {
        if path == "/api/advise" || path == "/api/advise/measure" {
            let api = self.clone();
            return blocking(move || api.advise(&path, &bytes)).await;
        }
        if path == "/api/ask" {
            let Ok(_permit) = self.asks.try_acquire() else {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "{MAX_ASKS} lines are being asked already; try again when one is answered"
                    ),
                );
            };
            let api = self.clone();
            return blocking(move || api.ask(&bytes)).await;
        }
        let api = self.clone();
        blocking(move || {
            let _held = match api.changing.try_lock() {
                Ok(held) => held,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    return text(
                        StatusCode::CONFLICT,
                        "another change (a server starting, the load being set, a lesson starting) is in progress; try again when it ends",
                    );
                }
            };
            api.apply(&path, &bytes)
        })
        .await
    }

    fn apply(&self, path: &str, bytes: &Bytes) -> Response {
        let lab = &self.lab;
        if matches!(lab.desk.state(), super::advice::Measuring::Measuring { .. })
            && path != "/api/server/stop"
        {
            return text(
                StatusCode::CONFLICT,
                "the advice is being measured (its servers and load use the machine's CPUs); try again when it ends",
            );
        }
        let after = |outcome: Result<(), Refusal>| match outcome {
            Ok(()) => json(StatusCode::OK, &self.state()),
            Err(e) => refused(&e),
        };
        match path {
            "/api/server" => match body::<ServerSetting>(bytes) {
                Err(e) => text(StatusCode::BAD_REQUEST, &e.to_string()),
                Ok(setting) => after(lab.switch(setting)),
            },
            "/api/server/stop" => {
                lab.stop_server();
                json(StatusCode::OK, &self.state())
            }
            "/api/load" => match body::<LoadSetting>(bytes) {
                Err(e) => text(StatusCode::BAD_REQUEST, &e.to_string()),
                Ok(setting) => after(lab.set_load(setting)),
            },
            "/api/heavy" => match lab.heavy() {
                Ok(n) => json(StatusCode::OK, &json!({ "n": n })),
                Err(e) => refused(&e),
            },
            "/api/lesson" => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Which {
                    id: String,
                }
                match body::<Which>(bytes) {
                    Err(e) => text(StatusCode::BAD_REQUEST, &e.to_string()),
                    Ok(Which { id }) => after(super::lessons::start(lab, &id)),
                }
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "no such call: /api/state, /api/server, /api/server/stop, /api/load, /api/heavy, /api/ask, /api/lesson, /api/advise, /api/advise/measure",
            ),
        }
    }

    /// The advice form: predicted (`/api/advise`), or its measurement started
    /// (`/api/advise/measure`, 202; `GET /api/advise` follows it).
    fn advise(&self, path: &str, bytes: &Bytes) -> Response {
        let form = match body::<super::advice::AdviceForm>(bytes) {
            Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
            Ok(form) => form,
        };
        let (advice, budget) = match self.lab.desk.predict(&form) {
            Err(e) => return text(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
            Ok(predicted) => predicted,
        };
        if path == "/api/advise" {
            let text = crate::advise::text(&advice);
            return json(StatusCode::OK, &json!({ "advice": advice, "text": text }));
        }
        let lab_busy = self.lab.server().is_some() || self.lab.load().is_some();
        match self.lab.desk.measure(advice, budget, lab_busy) {
            Ok(()) => json(StatusCode::ACCEPTED, &self.lab.desk.state_json()),
            Err(e) => text(StatusCode::CONFLICT, &e.to_string()),
        }
    }

    fn ask(&self, bytes: &Bytes) -> Response {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Line {
            line: String,
        }
        match body::<Line>(bytes) {
            Err(e) => text(StatusCode::BAD_REQUEST, &e.to_string()),
            Ok(Line { line }) => match self.lab.ask(&line) {
                Ok(reply) => json(StatusCode::OK, &json!({ "reply": reply })),
                Err(e) => refused(&e),
            },
        }
    }

    /// The event stream: a thread of its own waits for what is new and sends it, until
    /// the page goes or the lab stops.
    fn events(&self, streams: &Streams) -> Response {
        let Some(permit) = streams.try_take() else {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "{} pages are watching already; close one",
                    LIMITS.max_streams
                ),
            );
        };
        let (sender, response) = crate::web::stream("text/event-stream");
        let lab = self.lab.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut events = Events::new(lab);
            while let Some(event) = events.next_event() {
                if sender.blocking_send(Bytes::from(event)).is_err() {
                    break; // the page went away
                }
            }
        });
        response
    }
}

/// `work` on tokio's blocking threads; a panic in it is answered 500, not a hang.
async fn blocking(work: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the call failed inside the lab: {e}"),
        )
    })
}

/// The page, kept out of frames elsewhere and sending no `Referer` (its URL holds the
/// token).
fn page() -> Response {
    let mut response = typed(StatusCode::OK, PAGE, "text/html; charset=utf-8");
    let headers = response.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "frame-ancestors 'none'; form-action 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        headers.insert(name, hyper::header::HeaderValue::from_static(value));
    }
    response
}

impl Api {
    /// [`state`], and the requests refused so far.
    fn state(&self) -> serde_json::Value {
        let mut state = state(&self.lab);
        state["refused"] = self.refused.json();
        state
    }
}

/// What runs, what the registry offers and the heavy request's size.
fn state(lab: &Lab) -> serde_json::Value {
    let models: Vec<_> = crate::models::MODELS
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "seed": m.seed,
                "summary": m.summary,
                "offload": m.offload,
                "available": (m.available)().is_ok(),
            })
        })
        .collect();
    json!({
        "models": models,
        "server": lab.server().map(|(addr, s)| json!({ "addr": addr.to_string(), "setting": s, "label": s.label() })),
        "load": lab.load(),
        "heavy_n": lab.heavy_n,
        "lessons": super::lessons::LESSONS.iter().map(|l| json!({ "id": l.id, "title": l.title, "seed": l.seed })).collect::<Vec<_>>(),
        "max_clients": super::MAX_CLIENTS,
        "max_n": super::MAX_LOAD_N,
    })
}

/// A server-sent event stream: every new point, mark and `/metrics` reading, as
/// `data: {json}` lines, until the lab stops.
struct Events {
    lab: Arc<Lab>,
    /// Points sent so far (counting those dropped from the front).
    points: usize,
    marks: usize,
    started: bool,
    /// The lesson's progress as last sent.
    lesson: Option<super::figures::Progress>,
}

impl Events {
    fn new(lab: Arc<Lab>) -> Events {
        Events {
            lab,
            points: 0,
            marks: 0,
            started: false,
            lesson: None,
        }
    }

    /// Waits up to a second for something new and returns it as one event (or a
    /// keep-alive comment); `None` once the lab stops.
    fn next_event(&mut self) -> Option<Vec<u8>> {
        if !self.started {
            self.started = true;
            return Some(b"retry: 1000\n\n".to_vec());
        }
        let lab = self.lab.clone();
        let mut f = super::state::lock_figures(&lab);
        if self.fresh(&f) == (0, 0) {
            f = lab
                .changed
                .wait_timeout(f, std::time::Duration::from_secs(1))
                .map_or_else(|p| p.into_inner().0, |(g, _)| g);
        }
        if lab.stopping.load(Ordering::Relaxed) {
            return None;
        }
        let (new_points, new_marks) = self.fresh(&f);
        if (new_points, new_marks) == (0, 0) && f.lesson == self.lesson {
            return Some(b": waiting\n\n".to_vec());
        }
        self.lesson = f.lesson.clone();
        let first = f.points.len() - new_points;
        let event = json!({
            "points": &f.points[first..],
            "marks": &f.marks[self.marks..],
            "server_metrics": f.server_metrics.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "lesson": f.lesson,
        });
        self.points = f.dropped + f.points.len();
        self.marks = f.marks.len();
        Some(format!("data: {event}\n\n").into_bytes())
    }

    fn fresh(&self, f: &Figures) -> (usize, usize) {
        let total = f.dropped + f.points.len();
        (
            total.saturating_sub(self.points).min(f.points.len()),
            f.marks.len().saturating_sub(self.marks),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls that change the server or the load run one at a time: one that comes
    /// while another holds the lab is told so (409), and taken once it is done.
    #[test]
    fn a_change_while_another_is_in_progress_is_told_to_wait() {
        let lab = Lab::start(std::path::PathBuf::from("/nonexistent/fiblab")).unwrap();
        let api = Arc::new(Api {
            lab: lab.clone(),
            gate: Gate {
                token: None,
                hosts: AllowedHosts::new(&[]),
            },
            changing: Mutex::new(()),
            asks: Semaphore::new(MAX_ASKS),
            refused: Refused::default(),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let load = || Bytes::from_static(br#"{"clients":1,"n":1}"#);
        let held = api.changing.lock().unwrap();
        for path in [
            "/api/server",
            "/api/server/stop",
            "/api/load",
            "/api/lesson",
        ] {
            let response = runtime.block_on(api.clone().change(path.into(), load()));
            assert_eq!(response.status(), StatusCode::CONFLICT, "{path}");
        }
        drop(held);
        // Taken now: refused for what it asks (no server runs), not for being busy.
        let response = runtime.block_on(api.clone().change("/api/load".into(), load()));
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        lab.shut_down();
    }
}
