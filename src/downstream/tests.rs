use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::thread;

use super::*;

/// A one-connection downstream that answers each line as `answer` says (`None`: closes).
fn downstream(answer: fn(&str) -> Option<String>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        // One connection only: the port closes now, not when the connection does, so a
        // later call is refused rather than caught in a backlog the drop then resets.
        drop(listener);
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            match answer(line.trim_end()) {
                Some(reply) => writer.write_all(reply.as_bytes()).unwrap(),
                None => return,
            }
            line.clear();
        }
    });
    addr
}

fn config(addr: SocketAddr) -> DownstreamConfig {
    DownstreamConfig {
        addr,
        timeout: Duration::from_secs(5),
    }
}

fn refusing() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn socket_errors_name_their_reason() {
    let reason = |kind: io::ErrorKind| Failure::from_io(&kind.into()).to_string();
    assert_eq!(reason(io::ErrorKind::ConnectionRefused), "refused");
    assert_eq!(reason(io::ErrorKind::ConnectionReset), "reset");
    assert_eq!(reason(io::ErrorKind::UnexpectedEof), "closed");
    assert_eq!(reason(io::ErrorKind::WouldBlock), "timed out");
    assert_eq!(reason(io::ErrorKind::PermissionDenied), "failed");
}

#[test]
fn a_reply_is_complete_at_its_newline_whatever_the_pieces() {
    let mut reply = ReplyLine::default();
    assert!(!reply.saw(b"12"));
    assert!(reply.saw(b"3\nextra"));
    assert!(reply.saw(b""), "stays complete");
}

#[test]
fn blocking_calls_reuse_one_connection_and_drop_it_on_failure() {
    // Answers twice (a reply in two pieces the second time), then closes.
    let addr = downstream(|line| match line {
        "1" => Some("one\n".into()),
        "2" => Some("tw".to_string() + "o\n"),
        _ => None,
    });
    let mut blocking = Blocking::new(config(addr));
    assert_eq!(blocking.call(b"1\n"), Ok(()));
    assert_eq!(blocking.call(b"2\n"), Ok(()));
    assert_eq!(blocking.call(b"3\n"), Err(Failure::Closed));
    // The downstream served one connection only: the next call finds nobody.
    assert_eq!(blocking.call(b"4\n"), Err(Failure::Refused));
}

#[test]
fn blocking_call_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap(); // accepts (backlog), never answers
    let mut blocking = Blocking::new(DownstreamConfig {
        addr: listener.local_addr().unwrap(),
        timeout: Duration::from_millis(100),
    });
    let started = std::time::Instant::now();
    assert_eq!(blocking.call(b"1\n"), Err(Failure::TimedOut));
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[test]
fn nonblocking_call_runs_its_states_to_the_reply() {
    let addr = downstream(|_| Some("ok\n".into()));
    let mut call = Nonblocking::new(config(addr));
    assert!(!call.is_calling());
    call.start(b"7\n", std::time::Instant::now());
    assert!(call.take_opened().is_some(), "a new socket to register");
    assert!(call.take_opened().is_none(), "once");
    let outcome = loop {
        if let Some(outcome) = call.progress(std::time::Instant::now()) {
            break outcome;
        }
        assert!(call.interest().is_some(), "waiting on something");
        thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(outcome, Ok(()));
    assert!(!call.is_calling() && call.interest().is_none());
}

#[test]
fn nonblocking_failures_are_reported_once_and_drop_the_socket() {
    let mut call = Nonblocking::new(config(refusing()));
    call.start(b"7\n", std::time::Instant::now());
    let outcome = loop {
        if let Some(outcome) = call.progress(std::time::Instant::now()) {
            break outcome;
        }
        thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(outcome, Err(Failure::Refused));
    assert!(!call.is_calling());
    // A deadline already past: timed out at the next look, without a reply.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut call = Nonblocking::new(config(listener.local_addr().unwrap()));
    let then = std::time::Instant::now();
    call.start(b"7\n", then);
    assert_eq!(
        call.progress(then + Duration::from_secs(6)),
        Some(Err(Failure::TimedOut))
    );
    assert_eq!(
        call.progress(then + Duration::from_secs(7)),
        None,
        "reported once"
    );
}

#[test]
fn async_call_times_out_on_the_executor_clock() {
    struct Net;
    struct Never;
    impl AsyncDownstream for Never {
        async fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            std::future::pending().await
        }
        async fn write_all(&mut self, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
    }
    impl AsyncNet for Net {
        type Conn = Never;
        async fn connect(&self, _: SocketAddr) -> io::Result<Never> {
            Ok(Never)
        }
        async fn sleep(&self, duration: Duration) {
            tokio::time::sleep(duration).await;
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut conn = None;
    let settings = DownstreamConfig {
        addr: refusing(),
        timeout: Duration::from_millis(50),
    };
    let outcome = runtime.block_on(call_async(&Net, &mut conn, settings, b"1\n"));
    assert_eq!(outcome, Err(Failure::TimedOut));
    assert!(conn.is_none(), "a failed connection is not reused");
}
