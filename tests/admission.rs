//! Admission, called as a library: every model whose `serve` holds clients at once,
//! given `max_conns = 2` in its `Config`, answers two clients and tells the third
//! `ERR server busy` and closes it; once one leaves, the next is served. `serve` alone
//! applies the limit (no caller has to set it elsewhere), through the one admission
//! rule (`Shutdown::admit`).
//!
//! Generated from the registry: one trial per model, so a new model is checked with no
//! new test code. `prefork` is left out: its clients are spread over processes, each of
//! which serves one at a time, so a limit on one process's connections says nothing.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use fiblab::models::{Clients, MODELS, Model};
use fiblab::server::Config;
use fiblab::shutdown::Shutdown;
use libtest_mimic::{Arguments, Trial};

fn main() {
    fiblab::process::use_fiblab_exe(common::fiblab_bin().into());
    let trials = MODELS
        .iter()
        .filter(|m| m.clients == Clients::Concurrent)
        .map(|model: &'static Model| {
            Trial::test(
                format!("{}::third_client_turned_away", model.name),
                move || third_client_turned_away(model).map_err(Into::into),
            )
            .with_ignored_flag(!common::runs_here(model.name))
        })
        .collect();
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}

struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(common::REPLY_TIMEOUT))
            .unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    fn ask(&mut self, line: &str) -> String {
        self.reader.get_mut().write_all(line.as_bytes()).unwrap();
        let mut reply = String::new();
        let _ = self.reader.read_line(&mut reply);
        reply
    }

    /// The first line the server sends unasked, then whether it closed.
    fn told(&mut self) -> (String, bool) {
        let mut line = String::new();
        let _ = self.reader.read_line(&mut line);
        let mut rest = Vec::new();
        let closed = self.reader.read_to_end(&mut rest).is_ok();
        (line, closed)
    }
}

fn third_client_turned_away(model: &'static Model) -> Result<(), String> {
    let listener = fiblab::server::bind_with("127.0.0.1:0".parse().unwrap(), model.reuse_port)
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().unwrap();
    let config = fiblab::models::defaults_for(
        model,
        Config {
            max_conns: 2,
            grace: Duration::from_secs(2),
            ..Config::default()
        },
    );
    let shutdown = Shutdown::new().unwrap();
    let serving = {
        let (shutdown, serve) = (shutdown.clone(), model.serve);
        std::thread::spawn(move || serve(listener, &config, shutdown))
    };
    let outcome = (|| {
        let mut first = Client::connect(addr);
        let mut second = Client::connect(addr);
        for (name, client) in [("first", &mut first), ("second", &mut second)] {
            let reply = client.ask("10\n");
            if reply != "55\n" {
                return Err(format!("the {name} client got {reply:?}, not 55"));
            }
        }
        let mut third = Client::connect(addr);
        let (line, closed) = third.told();
        if line != "ERR server busy\n" || !closed {
            return Err(format!(
                "the third client was told {line:?} (closed: {closed}), not ERR server busy and a close"
            ));
        }
        // A slot freed is a slot to take: the server sees the close, then admits again.
        drop(first);
        let deadline = std::time::Instant::now() + common::REPLY_TIMEOUT;
        loop {
            let mut next = Client::connect(addr);
            match next.ask("10\n").as_str() {
                "55\n" => break,
                "ERR server busy\n" if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return Err(format!("after a client left, a new one got {other:?}")),
            }
        }
        drop(second);
        Ok(())
    })();
    shutdown.trigger();
    let served = serving.join().map_err(|_| "serve panicked".to_string())?;
    outcome?;
    served.map_err(|e| format!("serve failed: {e}"))
}
