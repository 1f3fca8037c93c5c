//! The HTTP/1.1 server both of fiblab's HTTP surfaces stand on: `fiblab serve
//! --metrics` (scraped by Prometheus, often from another host) and `fiblab lab` (which
//! starts processes and drives load). hyper does the protocol; this module sets every
//! bound a listener on a shared machine needs, once, for both:
//!
//! ```text
//! accept ─┬─ over max_connections: "503", closed (at most TURN_AWAY at once, else dropped)
//!         ├─ EMFILE / ENFILE / ENOMEM: pause accept::Backoff::PAUSE, retry (never exit)
//!         └─ a task per connection (hyper http1, keep-alive)
//!              head:  header_timeout from the first byte and between requests (closed),
//!                     more than max_header_bytes: 431, more than MAX_HEADERS lines: 431
//!              body:  Content-Length above max_body: 413 at once (nothing is read);
//!                     read whole within body_timeout (408), at most max_body (413)
//!              then the surface's handler gets the head and the body as bytes
//!              every max_requests_per_connection-th response: "Connection: close"
//! ```
//!
//! A handler that answers with a stream (the lab's server-sent events) takes a
//! [`Streams`] permit first: streams are bounded apart from the connections, so open
//! pages cannot lock the API out.
//!
//! Everything runs on one current-thread tokio runtime in a thread of its own
//! ([`Server::start`]), apart from the threads of any model the process serves: the
//! fib service's throughput does not move when `/metrics` is on. [`guard`] holds the
//! checks of who may drive a surface (Host, Origin, `Sec-Fetch-Site`, the token).

pub mod guard;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full, Limited, combinators::BoxBody};
use hyper::body::Bytes;
use hyper::header::{CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use hyper::http::request::Parts;
pub use hyper::{Method, StatusCode};

/// A response's body: bytes at once, or a stream (see [`stream`]).
pub type Body = BoxBody<Bytes, Infallible>;

/// A response as handlers return it.
pub type Response = hyper::Response<Body>;

/// Most header lines one request may carry; past it, 431.
pub const MAX_HEADERS: usize = 64;

/// Connections past the bound that are answered 503 at once; past these too, a new
/// connection is closed without a word (a flood must not cost a task each).
const TURN_AWAY: usize = 64;

/// How long a turned-away client gets to take its 503.
const TURN_AWAY_WRITE: Duration = Duration::from_secs(1);

/// The bounds of one surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; the next is answered 503 and closed.
    pub max_connections: usize,
    /// Long-lived responses ([`Streams`]) at once; the handler answers 503 past it.
    pub max_streams: usize,
    /// From a connection's first byte, or the end of its last response, to the end of
    /// the next request's head; past it the connection is closed. It is also the
    /// longest an idle keep-alive connection is kept.
    pub header_timeout: Duration,
    /// From the end of the head to the end of the body; past it, 408.
    pub body_timeout: Duration,
    /// Largest body, bytes; past it, 413.
    pub max_body: usize,
    /// Largest request head (request line and headers), bytes; past it, 431.
    pub max_header_bytes: usize,
    /// Requests on one connection before it is closed.
    pub max_requests_per_connection: u64,
}

/// A request with its body read whole (at most [`Limits::max_body`] bytes).
#[derive(Debug)]
pub struct Request {
    pub head: Parts,
    pub body: Bytes,
}

/// What a surface does with a request: any future that ends in a response.
pub type Handler =
    Arc<dyn Fn(Request, Streams) -> Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync>;

/// The permits for long-lived responses ([`Limits::max_streams`]).
#[derive(Debug, Clone)]
pub struct Streams(Arc<Semaphore>);

impl Streams {
    /// A permit to hold for as long as the stream runs; `None` when all are taken.
    pub fn try_take(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().try_acquire_owned().ok()
    }
}

/// A plain-text response: `body` and a newline.
pub fn text(status: StatusCode, body: &str) -> Response {
    with_type(
        hyper::Response::new(full(format!("{body}\n"))),
        status,
        "text/plain; charset=utf-8",
    )
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    with_type(
        hyper::Response::new(full(value.to_string())),
        status,
        "application/json",
    )
}

/// A response of `body` as `kind` (`text/html; charset=utf-8`).
pub fn typed(status: StatusCode, body: impl Into<Bytes>, kind: &'static str) -> Response {
    with_type(hyper::Response::new(full(body)), status, kind)
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

fn with_type(mut response: Response, status: StatusCode, kind: &'static str) -> Response {
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    response
}

/// A streamed response of `kind`: each chunk sent on the returned channel reaches the
/// client as it is sent; the response ends when the sender is dropped, and a send
/// fails once the client has gone.
pub fn stream(kind: &'static str) -> (tokio::sync::mpsc::Sender<Bytes>, Response) {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(4);
    let mut response = with_type(
        hyper::Response::new(Chunks(receiver).boxed()),
        StatusCode::OK,
        kind,
    );
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    (sender, response)
}

/// A body whose frames are the chunks a channel receives.
struct Chunks(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(hyper::body::Frame::data(bytes))))
    }
}

/// A running surface; dropping it stops it (open connections are closed).
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `listener` with `handler` under `limits` from a thread named `name`.
    ///
    /// # Errors
    /// The listener cannot be made non-blocking, or the thread or its runtime cannot
    /// start.
    pub fn start(
        name: &str,
        listener: std::net::TcpListener,
        limits: Limits,
        handler: Handler,
    ) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => accept_loop(listener, limits, handler, stopped).await,
                        Err(e) => tracing::error!(error = %e, "the HTTP listener failed"),
                    }
                });
                // Streams' producers may sit in a blocking wait; they end on their own.
                runtime.shutdown_timeout(Duration::from_secs(2));
            })?;
        Ok(Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where it listens (the port filled in where port 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    limits: Limits,
    handler: Handler,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let turning_away = Arc::new(Semaphore::new(TURN_AWAY));
    let streams = Streams(Arc::new(Semaphore::new(limits.max_streams)));
    let mut backoff = crate::accept::Backoff::default();
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, _)) => {
                backoff.recovered();
                if let Ok(permit) = connections.clone().try_acquire_owned() {
                    let (handler, streams) = (handler.clone(), streams.clone());
                    tokio::spawn(connection(socket, permit, limits, handler, streams));
                } else if let Ok(permit) = turning_away.clone().try_acquire_owned() {
                    tokio::spawn(turn_away(socket, permit));
                }
            }
            // Out of descriptors or memory, or a client that reset first: the next
            // accept may work; the open connections go on meanwhile.
            Err(e) => {
                if crate::accept::is_transient(&e) {
                    backoff.failed(&e);
                } else {
                    tracing::warn!(error = %e, "accept failed; retrying");
                }
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(crate::accept::Backoff::PAUSE) => {}
                }
            }
        }
    }
}

/// Answers a connection past [`Limits::max_connections`] with 503 and closes it.
async fn turn_away(mut socket: tokio::net::TcpStream, _permit: OwnedSemaphorePermit) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: 51\r\n\r\ntoo many connections at once; try again in a while\n";
    let _ = tokio::time::timeout(TURN_AWAY_WRITE, socket.write_all(BUSY)).await;
}

async fn connection(
    socket: tokio::net::TcpStream,
    _permit: OwnedSemaphorePermit,
    limits: Limits,
    handler: Handler,
    streams: Streams,
) {
    let _ = socket.set_nodelay(true);
    let served = Arc::new(AtomicU64::new(0));
    let service = service_fn(move |request| {
        let (handler, streams, served) = (handler.clone(), streams.clone(), served.clone());
        async move {
            let nth = served.fetch_add(1, Ordering::Relaxed) + 1;
            Ok::<_, Infallible>(answer(request, nth, limits, &handler, streams).await)
        }
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(MIN_BUFFER))
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    // Errors here are the client's (a bad head, a timeout, a reset): hyper has answered
    // what can be answered; nothing is left to do but close.
    if let Err(e) = http.serve_connection(TokioIo::new(socket), service).await {
        tracing::debug!(error = %e, "HTTP connection ended");
    }
}

/// hyper's smallest read buffer (`max_buf_size` panics below it).
const MIN_BUFFER: usize = 8192;

/// Reads the body within the limits and hands the request to the surface.
async fn answer(
    request: hyper::Request<hyper::body::Incoming>,
    nth: u64,
    limits: Limits,
    handler: &Handler,
    streams: Streams,
) -> Response {
    let (head, body) = request.into_parts();
    let declared = head
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut close = nth >= limits.max_requests_per_connection;
    let mut response = if declared.is_some_and(|length| length > limits.max_body as u64) {
        // Nothing of it is read: the connection closes after the answer.
        close = true;
        too_large(limits.max_body)
    } else {
        let read = Limited::new(body, limits.max_body).collect();
        match tokio::time::timeout(limits.body_timeout, read).await {
            Err(_) => {
                close = true;
                text(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!(
                        "the request's body did not arrive within {} s",
                        limits.body_timeout.as_secs_f64()
                    ),
                )
            }
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                close = true;
                too_large(limits.max_body)
            }
            Ok(Err(e)) => {
                close = true;
                text(
                    StatusCode::BAD_REQUEST,
                    &format!("the request's body could not be read: {e}"),
                )
            }
            Ok(Ok(collected)) => {
                let body = collected.to_bytes();
                handler(Request { head, body }, streams).await
            }
        }
    };
    if close {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn too_large(max: usize) -> Response {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the request's body is larger than the {max} bytes taken here"),
    )
}
