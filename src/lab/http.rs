//! The lab's HTTP face (`tiny_http`): the page, the event stream, the JSON API. Each
//! request is answered on a thread of its own (an event stream holds its thread for as
//! long as the page is open), at most [`MAX_HANDLERS`] at once.

use std::io::{self, Read, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tiny_http::{Header, Method, Request, Response};

use super::figures::Figures;
use super::state::{Lab, LoadSetting, ServerSetting};

/// Requests answered at once; past it, 503.
const MAX_HANDLERS: usize = 32;

/// Largest request body read.
const MAX_BODY: u64 = 4096;

const PAGE: &str = include_str!("page.html");

/// Answers requests until `interrupt` is set.
pub(super) fn serve(
    server: &tiny_http::Server,
    lab: &Arc<Lab>,
    token: Option<&str>,
    interrupt: &AtomicBool,
) {
    let busy = Arc::new(AtomicUsize::new(0));
    while !interrupt.load(Ordering::Relaxed) {
        let request = match server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "the lab's listener failed");
                break;
            }
        };
        if busy.fetch_add(1, Ordering::AcqRel) >= MAX_HANDLERS {
            busy.fetch_sub(1, Ordering::AcqRel);
            let _ = request.respond(text(503, "too many requests at once; try again"));
            continue;
        }
        let lab = lab.clone();
        let token = token.map(str::to_string);
        let done = busy.clone();
        let spawned = std::thread::Builder::new()
            .name("lab-request".into())
            .spawn(move || {
                answer(request, &lab, token.as_deref());
                done.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            busy.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name, value).ok()
}

fn with_type<R: Read>(mut response: Response<R>, kind: &str) -> Response<R> {
    if let Some(h) = header("Content-Type", kind) {
        response.add_header(h);
    }
    response
}

fn text(status: u16, body: &str) -> Response<io::Cursor<Vec<u8>>> {
    with_type(
        Response::from_string(format!("{body}\n")).with_status_code(status),
        "text/plain; charset=utf-8",
    )
}

fn json_response(status: u16, value: &serde_json::Value) -> Response<io::Cursor<Vec<u8>>> {
    with_type(
        Response::from_string(value.to_string()).with_status_code(status),
        "application/json",
    )
}

/// The token, from `?token=` (the page's event stream cannot set headers) or the
/// `X-Fiblab-Token` header.
fn authorized(request: &Request, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let in_query = request
        .url()
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|kv| kv == format!("token={token}")));
    let in_header = request
        .headers()
        .iter()
        .any(|h| h.field.equiv("X-Fiblab-Token") && h.value.as_str() == token);
    in_query || in_header
}

/// Why a request's body was not read (answered 400 with this text).
#[derive(Debug, thiserror::Error)]
enum BadBody {
    #[error("the body is not UTF-8 text")]
    NotText,
    #[error("the body is longer than {MAX_BODY} bytes")]
    TooLong,
    #[error("the body is not the JSON expected: {0}")]
    Json(#[from] serde_json::Error),
}

fn body<T: for<'de> Deserialize<'de>>(request: &mut Request) -> Result<T, BadBody> {
    let mut text = String::new();
    request
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_string(&mut text)
        .map_err(|_| BadBody::NotText)?;
    if text.len() as u64 > MAX_BODY {
        return Err(BadBody::TooLong);
    }
    Ok(serde_json::from_str(&text)?)
}

fn answer(mut request: Request, lab: &Arc<Lab>, token: Option<&str>) {
    if !authorized(&request, token) {
        let _ = request.respond(text(
            401,
            "this lab needs its token: open the page as /?token=SECRET",
        ));
        return;
    }
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let method = request.method().clone();
    let response = match (method, path.as_str()) {
        (Method::Get, "/") => with_type(
            Response::from_string(PAGE.to_string()),
            "text/html; charset=utf-8",
        ),
        (Method::Get, "/events") => {
            // tiny_http buffers a response body; an event stream must reach the page
            // as each event is written, so the socket is taken over once the headers
            // are out, and the body runs until either side closes.
            let mut response = Response::empty(200);
            for (name, value) in [
                ("Content-Type", "text/event-stream"),
                ("Cache-Control", "no-cache"),
            ] {
                if let Some(h) = header(name, value) {
                    response.add_header(h);
                }
            }
            let mut socket = request.upgrade("fiblab-events", response);
            let mut events = Events::new(lab.clone());
            while let Some(event) = events.next_event() {
                if socket
                    .write_all(&event)
                    .and_then(|()| socket.flush())
                    .is_err()
                {
                    break; // the page went away
                }
            }
            return;
        }
        (Method::Get, "/api/state") => json_response(200, &state(lab)),
        (Method::Post, "/api/server") => match body::<ServerSetting>(&mut request) {
            Err(e) => text(400, &e.to_string()),
            Ok(setting) => match lab.switch(setting) {
                Ok(()) => json_response(200, &state(lab)),
                Err(e) => text(422, &e.to_string()),
            },
        },
        (Method::Post, "/api/server/stop") => {
            lab.stop_server();
            json_response(200, &state(lab))
        }
        (Method::Post, "/api/load") => match body::<LoadSetting>(&mut request) {
            Err(e) => text(400, &e.to_string()),
            Ok(setting) => match lab.set_load(setting) {
                Ok(()) => json_response(200, &state(lab)),
                Err(e) => text(422, &e.to_string()),
            },
        },
        (Method::Post, "/api/heavy") => match lab.heavy() {
            Ok(n) => json_response(200, &json!({ "n": n })),
            Err(e) => text(422, &e.to_string()),
        },
        (Method::Post, "/api/lesson") => {
            #[derive(Deserialize)]
            struct Which {
                id: String,
            }
            match body::<Which>(&mut request) {
                Err(e) => text(400, &e.to_string()),
                Ok(Which { id }) => match super::lessons::start(lab, &id) {
                    Ok(()) => json_response(200, &state(lab)),
                    Err(e) => text(422, &e.to_string()),
                },
            }
        }
        (Method::Post, "/api/ask") => {
            #[derive(Deserialize)]
            struct Line {
                line: String,
            }
            match body::<Line>(&mut request) {
                Err(e) => text(400, &e.to_string()),
                Ok(Line { line }) => match lab.ask(&line) {
                    Ok(reply) => json_response(200, &json!({ "reply": reply })),
                    Err(e) => text(422, &e.to_string()),
                },
            }
        }
        (_, "/" | "/events" | "/api/state") => text(405, "only GET here"),
        (_, p) if p.starts_with("/api/") => text(
            404,
            "no such call: /api/state, /api/server, /api/server/stop, /api/load, /api/heavy, /api/ask, /api/lesson",
        ),
        _ => text(404, "the lab is at /"),
    };
    let _ = request.respond(response);
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
                .wait_timeout(f, Duration::from_secs(1))
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
