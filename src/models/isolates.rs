//! `isolates` — the seeds' `subinterpreters_server.py` (seeds 000, 001).
//!
//! The seed gives each connection its own Python sub-interpreter: fib runs inside it,
//! the interpreter shares no objects with any other, and the result comes back to the
//! connection's thread through a channel. fiblab makes that literal with WebAssembly:
//! fib is written in WebAssembly text ([`FIB_WAT`]), assembled once at start, and
//! each connection instantiates it in its own `wasmi` store, an *interpreter* with
//! its own memory and stack, run on its own thread. The connection thread talks to
//! it only through two channels, one for `n`, one for the result. The module's one
//! import is a `check` it calls at every n >= 24, through which a client that resets
//! its connection stops the interpreter (the call is trapped).
//!
//! ```text
//! accept ─► spawn connection thread ─► spawn isolate thread (own wasmi Store + Instance)
//! connection thread:  read "30" ─► send 30 ──channel──► isolate: fib(30) interpreted
//!                     write reply ◄──channel── send 832040 ◄┘
//! ```
//!
//! Primitives (docs/PRIMITIVES.md): one isolated interpreter per connection (no data
//! shared), its results passed back through a channel (a queue).
//!
//! Waiting (`--downstream`): a blocking call on the connection's thread, outside the
//! isolate; only the fib after the wait runs in it.
//!
//! Good at: isolation, the point of sub-interpreters (and of V8 isolates, Wasm
//! sandboxes, actor runtimes): a connection's code cannot touch another's state, and
//! the code could come from an untrusted tenant. Bad at: speed. An interpreter runs
//! fib many times slower than native code, and every request pays two channel hops
//! and thread wake-ups. The seeds measured the same on Python (4,000 req/s against
//! 12,000 for threads at n=1; 350 against 400 at n=20). Prediction: about like
//! `threads` at n=1 minus the channel hops, and far behind every native model at
//! n=20, where the interpreter's overhead dominates.
//!
//! Cost model (`CostModel::Isolated`, `src/models/cost.rs`): `threads`' formula with a
//! hand-off to the isolate's thread and back (calibrated on one CPU) added to every
//! request, and fib(n) timed in the same interpreter at calibration.
//!
//! One connection costs: one descriptor, two threads (the connection's and its
//! isolate's) and an interpreter store with its own memory: the most of any model,
//! since isolation is paid in memory.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd as _;

use std::sync::{Arc, mpsc};

use wasmi::{Caller, Engine, Linker, Module, Store, TypedFunc};

use crate::connection::serve_blocking_with;
use crate::probe::is_gone;
use crate::server::Config;
use crate::service::Rejection;
use crate::shutdown::Shutdown;

/// fib(n) by naive recursion, in WebAssembly text: the same algorithm as
/// [`crate::fib::fib`]. The i64 sum wraps exactly like u64 addition, so reading the
/// result's bits as u64 gives fib(n) for every n up to 93. Like [`crate::fib::fib_until`],
/// it asks its host at every n >= 24 whether its client is still there (`check`, which
/// traps the call when not): the one door out of the isolate, and a cheap one.
pub const FIB_WAT: &str = r#"
(module
  (import "client" "check" (func $check))
  (func $fib (export "fib") (param $n i32) (result i64)
    (if (i32.ge_u (local.get $n) (i32.const 24))
      (then (call $check)))
    (if (result i64) (i32.lt_u (local.get $n) (i32.const 2))
      (then (i64.extend_i32_u (local.get $n)))
      (else
        (i64.add
          (call $fib (i32.sub (local.get $n) (i32.const 1)))
          (call $fib (i32.sub (local.get $n) (i32.const 2))))))))
"#;

/// The assembled fib module, ready to instantiate any number of times.
#[derive(Clone)]
pub struct FibModule {
    engine: Engine,
    module: Module,
}

impl FibModule {
    /// Assembles and validates [`FIB_WAT`].
    pub fn assemble() -> io::Result<FibModule> {
        let engine = Engine::default();
        let module = Module::new(&engine, FIB_WAT)
            .map_err(|e| io::Error::other(format!("cannot assemble the fib module: {e}")))?;
        Ok(FibModule { engine, module })
    }

    /// A fresh interpreter instance with its own store: shares nothing with others.
    /// `gone` answers the module's `check`: true once its client has gone.
    pub fn instantiate(&self, gone: Gone) -> io::Result<Isolate> {
        let wasm_err = |e: wasmi::Error| io::Error::other(format!("cannot instantiate fib: {e}"));
        let mut store = Store::new(&self.engine, Client { gone, left: false });
        let mut linker = Linker::<Client>::new(&self.engine);
        linker
            .func_wrap(
                "client",
                "check",
                |mut caller: Caller<'_, Client>| -> Result<(), wasmi::Error> {
                    let client = caller.data_mut();
                    client.left = client.left || (client.gone)();
                    match client.left {
                        true => Err(wasmi::Error::new("the client has gone")),
                        false => Ok(()),
                    }
                },
            )
            .map_err(|e| io::Error::other(format!("cannot link fib's host check: {e}")))?;
        let instance = linker
            .instantiate_and_start(&mut store, &self.module)
            .map_err(wasm_err)?;
        let fib = instance
            .get_typed_func::<u32, i64>(&store, "fib")
            .map_err(wasm_err)?;
        Ok(Isolate { store, fib })
    }
}

/// Says whether an isolate's client has gone ([`crate::probe::gone_probe`]).
pub type Gone = Box<dyn FnMut() -> bool + Send>;

/// What an isolate's store holds: the one thing it may ask of the outside.
pub struct Client {
    gone: Gone,
    /// `gone` said yes: the call was trapped to stop it.
    left: bool,
}

/// One interpreter instance of the fib module.
pub struct Isolate {
    store: Store<Client>,
    fib: TypedFunc<u32, i64>,
}

impl Isolate {
    /// fib(n), interpreted; `None` when the client went meanwhile and the work stopped.
    pub fn fib(&mut self, n: u32) -> Result<Option<u64>, wasmi::Error> {
        match self.fib.call(&mut self.store, n) {
            // Same bits: the wasm i64 add wraps like u64 add.
            Ok(value) => Ok(Some(value as u64)),
            Err(_) if self.store.data().left => Ok(None),
            Err(e) => Err(e),
        }
    }
}

pub fn serve(listener: TcpListener, config: &Config, shutdown: Shutdown) -> io::Result<()> {
    let module = FibModule::assemble()?;
    // The `threads` model, with fib computed by the connection's own isolate.
    super::threads::serve_with(
        listener,
        config,
        shutdown,
        2,
        move |stream, peer, config| {
            handle(stream, peer, config, &module);
        },
    )
}

/// The connection thread: starts its isolate, then serves the connection with every
/// fib request sent to the isolate and its reply awaited.
fn handle(stream: Arc<TcpStream>, peer: SocketAddr, config: &Config, module: &FibModule) {
    let (requests, isolate_requests) = mpsc::channel::<u32>();
    let (isolate_replies, replies) = mpsc::channel::<Result<u64, Rejection>>();
    let module = module.clone();
    // The isolate asks about its client as it computes: a reset stops its work.
    // The isolate asks the connection's own socket, shared: no duplicate descriptor.
    let watched = stream.clone();
    let mut probe: Gone = Box::new(move || is_gone(watched.as_fd()));
    // `--gil`: the isolate's interpreter lock, the process's or its own; the module's
    // `check` is its eval breaker too.
    let gil = crate::gil::for_interpreter();
    let breaker = gil.clone();
    let gone: Gone = Box::new(move || {
        if let Some(gil) = &breaker {
            gil.check();
        }
        probe()
    });
    let isolate = std::thread::Builder::new()
        .name(format!("isolate-{peer}"))
        .spawn(move || {
            let mut isolate = match module.instantiate(gone) {
                Ok(isolate) => isolate,
                Err(e) => return tracing::warn!(%peer, error = %e, "isolate failed to start"),
            };
            // Ends when the connection thread drops its sender.
            for n in isolate_requests {
                let held = gil.as_deref().map(crate::gil::Gil::hold);
                let result = isolate.fib(n);
                drop(held);
                let reply = match result {
                    Ok(Some(value)) => Ok(value),
                    Ok(None) => Err(Rejection::ClientGone),
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "fib trapped in the isolate");
                        Err(Rejection::ServerBusy)
                    }
                };
                if isolate_replies.send(reply).is_err() {
                    return;
                }
            }
        });
    let isolate = match isolate {
        Ok(handle) => handle,
        Err(e) => return tracing::warn!(%peer, error = %e, "cannot spawn the isolate thread"),
    };
    let mut through_isolate = |n: u32| {
        requests.send(n).map_err(|_| Rejection::ServerBusy)?;
        replies.recv().map_err(|_| Rejection::ServerBusy)?
    };
    serve_blocking_with(stream, peer, config, Some(&mut through_isolate));
    drop(requests);
    let _ = isolate.join();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::fib;

    #[test]
    fn wasm_fib_equals_native_fib() {
        let mut isolate = FibModule::assemble()
            .unwrap()
            .instantiate(Box::new(|| false))
            .unwrap();
        // Naive recursion: 0..=32 takes well under a second interpreted. Past it the
        // algorithm is the same and only the i64 sum could differ, which wraps like u64.
        for n in 0..=32 {
            assert_eq!(isolate.fib(n).unwrap(), Some(fib(n)), "n = {n}");
        }
    }

    #[test]
    fn isolates_share_nothing_and_agree() {
        let module = FibModule::assemble().unwrap();
        let (mut a, mut b) = (
            module.instantiate(Box::new(|| false)).unwrap(),
            module.instantiate(Box::new(|| false)).unwrap(),
        );
        assert_eq!(a.fib(20).unwrap(), Some(6765));
        assert_eq!(b.fib(20).unwrap(), Some(6765));
    }

    #[test]
    fn a_gone_client_stops_the_interpreter() {
        let module = FibModule::assemble().unwrap();
        let mut asked = 0;
        let mut isolate = module
            .instantiate(Box::new(move || {
                asked += 1;
                asked > 2
            }))
            .unwrap();
        assert_eq!(isolate.fib(20).unwrap(), Some(6765), "small n never asks");
        assert_eq!(isolate.fib(40).unwrap(), None, "stopped at the third check");
    }
}
