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
fn a_reply_is_the_echo_whatever_the_pieces_and_nothing_else() {
    let mut reply = Echo::of(b"123\n");
    assert_eq!(reply.saw(b"12"), Ok(false));
    assert_eq!(reply.saw(b"3\n"), Ok(true));
    assert_eq!(reply.saw(b""), Ok(true), "stays complete");
    assert_eq!(reply.saw(b"1"), Err(Failure::Desync), "a byte after it");
    // A carriage return before the newline is the same line.
    assert_eq!(Echo::of(b"7\r\n").saw(b"7\r\n"), Ok(true));
    assert_eq!(Echo::of(b"7\n").saw(b"7\r\n"), Ok(true));
    // Another line, a longer one, two answers at once: a desync at the first wrong byte,
    // so an endless line of `x` fails at its first byte.
    assert_eq!(Echo::of(b"8\n").saw(b"9\n"), Err(Failure::Desync));
    assert_eq!(Echo::of(b"8\n").saw(b"88"), Err(Failure::Desync));
    assert_eq!(Echo::of(b"8\n").saw(b"8\n8\n"), Err(Failure::Desync));
    assert_eq!(Echo::of(b"8\n").saw(&[b'x'; 4096]), Err(Failure::Desync));
}

#[test]
fn blocking_calls_reuse_one_connection_and_drop_it_on_failure() {
    // Echoes twice, then closes.
    let addr = downstream(|line| match line {
        "1" | "2" => Some(format!("{line}\n")),
        _ => None,
    });
    let mut blocking = Blocking::new(config(addr));
    assert_eq!(blocking.call(b"1\n"), Ok(()));
    assert_eq!(blocking.call(b"2\n"), Ok(()));
    assert_eq!(blocking.call(b"3\n"), Err(Failure::Closed));
    // The downstream served one connection only: the next call finds nobody.
    assert_eq!(blocking.call(b"4\n"), Err(Failure::Refused));
}

/// A downstream that echoes each connection's first line and closes it, for as many
/// connections as come: the keep-alive race.
fn echo_once_then_close() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().take(8).flatten() {
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut line).unwrap_or(0) > 0 {
                let _ = (&stream).write_all(line.as_bytes());
            }
        }
    });
    addr
}

#[test]
fn a_connection_closed_while_idle_is_replaced_before_the_request_goes() {
    let addr = echo_once_then_close();
    let mut blocking = Blocking::new(config(addr));
    for n in 0..3 {
        assert_eq!(
            blocking.call(format!("{n}\n").as_bytes()),
            Ok(()),
            "call {n}"
        );
        // The downstream's FIN arrives while the connection is idle.
        thread::sleep(Duration::from_millis(30));
    }
    let mut call = Nonblocking::new(config(addr));
    for n in 0..2 {
        call.start(format!("{n}\n").as_bytes(), std::time::Instant::now());
        let outcome = loop {
            if let Some(outcome) = call.progress(std::time::Instant::now()) {
                break outcome;
            }
            thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(outcome, Ok(()), "call {n}");
        thread::sleep(Duration::from_millis(30));
    }
}

#[test]
fn a_downstream_that_answers_twice_is_a_desync_never_a_reply() {
    let addr = downstream(|line| Some(format!("{line}\n{line}\n")));
    let mut blocking = Blocking::new(config(addr));
    let (first, second) = (blocking.call(b"1\n"), blocking.call(b"2\n"));
    assert!(
        first == Err(Failure::Desync) || second == Err(Failure::Desync),
        "{first:?} {second:?}"
    );
    assert!(
        first.is_err() || second.is_err(),
        "the stale line answered nothing"
    );
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
    let addr = downstream(|line| Some(format!("{line}\n")));
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
    struct Never(std::net::UdpSocket);
    impl std::os::fd::AsFd for Never {
        fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
            self.0.as_fd()
        }
    }
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
            std::net::UdpSocket::bind("127.0.0.1:0").map(Never)
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

#[test]
fn a_downstream_that_is_the_server_itself_or_port_0_is_refused() {
    let at = |s: &str| s.parse::<SocketAddr>().unwrap();
    let down = |s: &str| {
        Some(DownstreamConfig {
            addr: at(s),
            timeout: Duration::from_secs(1),
        })
    };
    let local = at("127.0.0.1:25000");
    assert!(check_not_itself(down("127.0.0.1:25000"), local).is_err());
    assert!(check_not_itself(down("0.0.0.0:25000"), local).is_err());
    assert!(check_not_itself(down("127.0.0.1:25001"), local).is_ok());
    assert!(check_not_itself(None, local).is_ok());
    let everywhere = at("0.0.0.0:25000");
    assert!(check_not_itself(down("127.0.0.1:25000"), everywhere).is_err());
    let six = at("[::1]:25000");
    assert!(check_not_itself(down("[::1]:25000"), six).is_err());
    assert!(check_not_itself(down("127.0.0.1:25000"), six).is_ok());
    let error = parse_addr("127.0.0.1:0").unwrap_err().to_string();
    assert!(error.contains("port 0"), "{error}");
    assert_eq!(parse_addr("127.0.0.1:9").unwrap(), at("127.0.0.1:9"));
}
