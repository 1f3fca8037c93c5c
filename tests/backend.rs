//! `fiblab backend`: each line answered with itself after the delay, in order on each
//! connection, many waiting at once without waiting for each other.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod common;

use common::downstream::Backend;

#[test]
fn pipelined_lines_come_back_in_order_after_the_delay() {
    let backend = Backend::start(Duration::from_millis(30), Duration::from_millis(20));
    let mut stream = TcpStream::connect(backend.addr).unwrap();
    let started = Instant::now();
    let lines: Vec<String> = (0..50).map(|i| format!("line {i}")).collect();
    stream
        .write_all((lines.join("\n") + "\r\n").as_bytes())
        .unwrap();
    let mut reader = BufReader::new(stream);
    for (i, want) in lines.iter().enumerate() {
        let mut got = String::new();
        reader.read_line(&mut got).unwrap();
        assert_eq!(got.trim_end(), want, "reply {i}");
        if i == 0 {
            assert!(started.elapsed() >= Duration::from_millis(30));
        }
    }
    // Counted once written: the client may read the last line a moment before.
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.stats.answered.load(Ordering::Relaxed) < 50 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(backend.stats.answered.load(Ordering::Relaxed), 50);
    assert_eq!(backend.stats.waiting.load(Ordering::Relaxed), 0);
}

#[test]
fn many_waiting_requests_wait_together() {
    // 500 connections, one line each, 200 ms: one after the other would take 100 s.
    let backend = Backend::start(Duration::from_millis(200), Duration::ZERO);
    let started = Instant::now();
    let mut streams: Vec<TcpStream> = (0..500)
        .map(|i| {
            let mut s = TcpStream::connect(backend.addr).unwrap();
            s.write_all(format!("{i}\n").as_bytes()).unwrap();
            s
        })
        .collect();
    for (i, s) in streams.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = String::new();
        BufReader::new(s).read_line(&mut got).unwrap();
        assert_eq!(got, format!("{i}\n"));
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(
        took < Duration::from_secs(5),
        "waited one after another: {took:?}"
    );
    assert!(backend.stats.most_waiting.load(Ordering::Relaxed) > 100);
    // The wait each line got, measured by the backend: never under the delay asked.
    let wait = backend.stats.mean_wait().unwrap();
    assert!(
        wait >= Duration::from_millis(200) && wait < Duration::from_secs(3),
        "{wait:?}"
    );
    assert_eq!(backend.stats.connections.load(Ordering::Relaxed), 500);
}

#[test]
fn an_overlong_line_closes_only_its_connection() {
    let backend = Backend::start(Duration::from_millis(1), Duration::ZERO);
    let mut bad = TcpStream::connect(backend.addr).unwrap();
    bad.write_all(&vec![b'x'; fiblab::backend::MAX_LINE + 10])
        .unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = String::new();
    assert_eq!(BufReader::new(&bad).read_line(&mut got).unwrap_or(0), 0);
    let mut good = TcpStream::connect(backend.addr).unwrap();
    good.write_all(b"still here\n").unwrap();
    let mut got = String::new();
    BufReader::new(&good).read_line(&mut got).unwrap();
    assert_eq!(got, "still here\n");
}

/// A client that sends without ever reading its echoes: the backend stops reading it at
/// its bound of waiting lines (its memory stays flat), and lets them all go when it
/// leaves.
#[test]
fn a_client_that_never_reads_is_held_at_its_bound() {
    use std::io::ErrorKind;
    let backend = Backend::start(Duration::ZERO, Duration::ZERO);
    let client = TcpStream::connect(backend.addr).unwrap();
    client.set_nonblocking(true).unwrap();
    let lines = b"1\n".repeat(4096);
    let until = Instant::now() + Duration::from_secs(10);
    // Write until every buffer on the way is full: the backend has stopped reading.
    let mut stalled_since: Option<Instant> = None;
    while Instant::now() < until {
        match (&client).write(&lines) {
            Ok(_) => stalled_since = None,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let since = *stalled_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(300) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(stalled_since.is_some(), "the backend never stopped reading");
    let most = backend.stats.most_waiting.load(Ordering::Relaxed);
    assert!(
        // The channel's lines, the one being answered, and the one read but not yet
        // queued.
        most <= fiblab::backend::MAX_WAITING_PER_CONNECTION as u64 + 2,
        "{most} lines waiting at once"
    );
    drop(client);
    let until = Instant::now() + Duration::from_secs(10);
    while backend.stats.waiting.load(Ordering::Relaxed) > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(backend.stats.waiting.load(Ordering::Relaxed), 0);
}

#[test]
fn a_line_held_open_without_its_newline_is_closed_at_the_idle_timeout() {
    let backend = Backend::start_with(fiblab::backend::BackendConfig {
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        seed: 1,
        idle_timeout: Some(Duration::from_millis(300)),
    });
    let mut held = TcpStream::connect(backend.addr).unwrap();
    let started = Instant::now();
    held.write_all(b"12").unwrap();
    held.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = String::new();
    assert_eq!(BufReader::new(&held).read_line(&mut got).unwrap_or(0), 0);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
}
