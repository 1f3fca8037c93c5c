//! What cancellation costs: naive fib(30) plain, and with a cancel check that polls a
//! real socket (as the servers do), timed side by side, interleaved, in one run.
//!
//! `cargo run --release --example cancel_overhead [N] [ROUNDS]` (default 30 and 200).
//! The check runs only at nodes with n >= `fiblab::fib::CANCEL_CHECK_FROM`, so fib(30)
//! asks 33 times; the figure to watch is the median ratio, which should stay under 1.03.
//!
//! A second line does the same for the `isolates` model, whose WebAssembly fib asks its
//! host at the same nodes: fib(N - 5) interpreted by the model's isolate, with a probe
//! that never says yes and with the real socket probe.

use std::hint::black_box;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd as _;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback socket");
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (_server_side, _) = listener.accept().expect("accept");
    let mut gone = fiblab::probe::gone_probe(client.as_fd()).expect("probe");
    let mut plain = Vec::new();
    let mut checked = Vec::new();
    let mut asked = 0u64;
    for _ in 0..rounds {
        let t = Instant::now();
        black_box(fiblab::fib::fib(black_box(n)));
        plain.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut probe = || {
            asked += 1;
            gone()
        };
        black_box(fiblab::fib::fib_until(black_box(n), &mut probe));
        checked.push(t.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let wasm_n = n.saturating_sub(5);
    let module = fiblab::models::isolates::FibModule::assemble().expect("the model's module");
    let mut unprobed = module.instantiate(Box::new(|| false)).expect("an isolate");
    let mut probed = module
        .instantiate(Box::new(
            fiblab::probe::gone_probe(client.as_fd()).expect("probe"),
        ))
        .expect("an isolate");
    let (mut wasm_plain, mut wasm_fuel) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        black_box(unprobed.fib(black_box(wasm_n)).expect("fib"));
        wasm_plain.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        black_box(probed.fib(black_box(wasm_n)).expect("fib"));
        wasm_fuel.push(t.elapsed().as_secs_f64());
    }
    let (wp, wf) = (median(&mut wasm_plain), median(&mut wasm_fuel));
    let (p, c) = (median(&mut plain), median(&mut checked));
    println!(
        "fib({n}), {rounds} rounds interleaved: plain {:.3} ms, with cancel checks {:.3} ms (median); ratio {:.4}; {} checks per call",
        p * 1e3,
        c * 1e3,
        c / p,
        asked / rounds as u64
    );
    println!(
        "isolates: fib({wasm_n}) interpreted, {rounds} rounds interleaved: checks answered no {:.3} ms, checks polling the socket {:.3} ms (median); ratio {:.4}",
        wp * 1e3,
        wf * 1e3,
        wf / wp
    );
}
