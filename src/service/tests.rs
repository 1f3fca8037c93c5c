//! Tests of what a line means: every request and its reply, errors included.

use super::*;

fn fib_service(max_n: u32) -> Service {
    Service {
        kind: ServiceKind::Fib,
        max_n,
    }
}

fn replies(service: Service, chunks: &[&[u8]]) -> String {
    let mut session = Session::new(service, 32, Work::Inline);
    let mut out = Vec::new();
    for chunk in chunks {
        assert_eq!(session.feed(chunk, &mut out).consumed, chunk.len());
        session.on_idle(&mut out);
    }
    session.on_eof(&mut out);
    String::from_utf8(out).unwrap()
}

/// The same through `Work::Handed`, computing each handed request "elsewhere".
fn replies_handed(service: Service, chunks: &[&[u8]]) -> String {
    let mut session = Session::new(service, 32, Work::Handed);
    let mut out = Vec::new();
    let compute = |handoff: Handoff| match handoff {
        Handoff::Compute(n) => Ok(crate::fib::fib(n)),
        Handoff::Wait => Err(Rejection::WorkerDied),
    };
    for chunk in chunks {
        let mut rest = *chunk;
        loop {
            let fed = session.feed(rest, &mut out);
            rest = &rest[fed.consumed..];
            match fed.handed {
                Some(n) => Session::write_reply(compute(n), &mut out),
                None => break,
            }
        }
        if let Some(n) = session.on_idle(&mut out) {
            Session::write_reply(compute(n), &mut out);
        }
    }
    if let Some(n) = session.on_eof(&mut out) {
        Session::write_reply(compute(n), &mut out);
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn a_gone_client_gets_no_more_work() {
    let mut session = Session::new(fib_service(44), 32, Work::Inline);
    let mut asked = 0;
    session.set_probe(move || {
        asked += 1;
        asked > 1
    });
    let mut out = Vec::new();
    session.feed(b"10\n30\n1\n", &mut out);
    assert_eq!(
        out, b"55\n",
        "fib(30) stopped at its second check; nothing after it"
    );
    assert!(session.is_cancelled());
    session.feed(b"2\n", &mut out);
    assert_eq!(out, b"55\n");
}

#[test]
fn handed_work_gives_the_same_replies_in_order() {
    let s = fib_service(40);
    for chunks in [
        &[&b"1\n2\nx\n10\n\n-1\n20\n"[..]][..],
        &[b"30"],
        &[b"5\n", b"6", b"\n7"],
    ] {
        assert_eq!(replies_handed(s, chunks), replies(s, chunks), "{chunks:?}");
    }
}

#[test]
fn fib_replies() {
    let s = fib_service(40);
    assert_eq!(
        replies(s, &[b"0\n1\n2\n10\n20\n30\n"]),
        "0\n1\n1\n55\n6765\n832040\n"
    );
    assert_eq!(replies(s, &[b" \t10 \t\r\n"]), "55\n");
    assert_eq!(replies(s, &[b"007\n"]), "13\n");
    assert_eq!(replies(s, &[b"-0\n"]), "0\n");
}

#[test]
fn fib_rejections() {
    let s = fib_service(35);
    assert_eq!(replies(s, &[b"abc\n"]), "ERR not a number\n");
    assert_eq!(replies(s, &[b"1 2\n"]), "ERR not a number\n");
    assert_eq!(replies(s, &[b"+5\n"]), "ERR not a number\n");
    assert_eq!(replies(s, &[b"-\n"]), "ERR not a number\n");
    assert_eq!(replies(s, &[b"\xff\x00\n"]), "ERR not a number\n");
    assert_eq!(replies(s, &[b"-5\n"]), "ERR negative\n");
    assert_eq!(replies(s, &[b"36\n"]), "ERR above max-n 35\n");
    assert_eq!(
        replies(s, &[b"99999999999999999999999999\n"]),
        "ERR above max-n 35\n"
    );
    assert_eq!(
        replies(s, &[&[b'1'; 40], b"\n7\n"]),
        "ERR line too long\n13\n"
    );
}

#[test]
fn max_n_is_capped_at_u64_range() {
    assert_eq!(
        replies(fib_service(200), &[b"94\n"]),
        "ERR above max-n 93\n"
    );
}

#[test]
fn blank_lines_get_no_reply() {
    assert_eq!(replies(fib_service(40), &[b"\n\r\n \t \n5\n"]), "5\n");
    let upper = Service {
        kind: ServiceKind::Upper,
        max_n: 0,
    };
    assert_eq!(replies(upper, &[b"\n  \nab\n"]), "AB\n");
}

#[test]
fn rejection_keeps_the_connection_usable() {
    assert_eq!(
        replies(fib_service(40), &[b"x\n", b"10\n"]),
        "ERR not a number\n55\n"
    );
}

#[test]
fn unterminated_requests_like_the_seeds_clients() {
    // perf1.py of seed 004 sends b'30' and waits; then b'30' again.
    assert_eq!(
        replies(fib_service(40), &[b"30", b"30"]),
        "832040\n832040\n"
    );
}

#[test]
fn upper_service() {
    let upper = Service {
        kind: ServiceKind::Upper,
        max_n: 0,
    };
    assert_eq!(
        replies(upper, &[b"hello w\xc3\xb6rld\r\n"]),
        "HELLO W\u{d6}RLD\n"
    );
    assert_eq!(replies(upper, &[b"stra\xc3\x9fe\n"]), "STRASSE\n");
    assert_eq!(replies(upper, &[b"a\n", b"b", b"\n"]), "A\nB\n");
    assert_eq!(replies(upper, &[b"\xff\n"]), "ERR not utf-8\n");
    assert_eq!(replies(upper, &[b"abc"]), "ABC\n");
}

#[test]
fn lookup_answers_like_fib_without_the_work() {
    let lookup = Service {
        kind: ServiceKind::Lookup,
        max_n: 93,
    };
    assert_eq!(
        replies(lookup, &[b"0\n30\n93\n"]),
        "0\n832040\n12200160415121876738\n"
    );
    assert_eq!(
        replies(lookup, &[b"x\n-1\n"]),
        "ERR not a number\nERR negative\n"
    );
}

#[test]
fn split_request_after_first_line() {
    assert_eq!(replies(fib_service(40), &[b"1\n2", b"0\n"]), "1\n6765\n");
}

#[test]
fn with_a_downstream_valid_requests_wait_and_invalid_ones_do_not() {
    let mut session = Session::new(fib_service(44), 32, Work::Inline).with_downstream(true);
    let mut out = Vec::new();
    let fed = session.feed(b"abc\n 10 \n20\n", &mut out);
    assert_eq!(out, b"ERR not a number\n", "answered at once");
    assert_eq!(fed.handed, Some(Handoff::Wait));
    assert_eq!(session.downstream_line(), b" 10 \n", "the line as it came");
    assert_eq!(session.downstream_replied(Ok(()), &mut out, None), None);
    let rest = &b"abc\n 10 \n20\n"[fed.consumed..];
    assert_eq!(session.feed(rest, &mut out).handed, Some(Handoff::Wait));
    let failed = Err(crate::downstream::Failure::TimedOut);
    assert_eq!(session.downstream_replied(failed, &mut out, None), None);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "ERR not a number\n55\nERR downstream timed out\n"
    );
    // With work handed elsewhere, a wait is followed by the computation.
    let mut session = Session::new(fib_service(44), 32, Work::Handed).with_downstream(true);
    let mut out = Vec::new();
    assert_eq!(session.feed(b"12\n", &mut out).handed, Some(Handoff::Wait));
    let next = session.downstream_replied(Ok(()), &mut out, None);
    assert_eq!(next, Some(Handoff::Compute(12)));
}

#[test]
fn metrics_classes_and_reasons_name_every_request_and_rejection() {
    use crate::metrics::{CLASSES, REASONS};
    assert_eq!(CLASSES[Request::Fib(1).metrics_class()], "n 0-9");
    assert_eq!(CLASSES[Request::Fib(36).metrics_class()], "n 30-39");
    assert_eq!(CLASSES[Request::Fib(90).metrics_class()], "n 40+");
    assert_eq!(CLASSES[Request::Upper("a").metrics_class()], "upper");
    for rejection in [
        Rejection::NotANumber,
        Rejection::Negative,
        Rejection::AboveMaxN { max_n: 44 },
        Rejection::LineTooLong,
        Rejection::NotUtf8,
        Rejection::ServerBusy,
        Rejection::WorkerDied,
        Rejection::ClientGone,
        Rejection::Downstream(crate::downstream::Failure::Refused),
        Rejection::Downstream(crate::downstream::Failure::Closed),
        Rejection::Downstream(crate::downstream::Failure::Reset),
        Rejection::Downstream(crate::downstream::Failure::TimedOut),
        Rejection::Downstream(crate::downstream::Failure::Unavailable),
        Rejection::Downstream(crate::downstream::Failure::Failed),
        Rejection::Downstream(crate::downstream::Failure::Desync),
    ] {
        let reason = REASONS[rejection.metrics_reason()];
        assert!(
            rejection.to_string().starts_with(reason),
            "{rejection} vs {reason}"
        );
    }
}
