//! `select` at its descriptor ceiling: a connection whose descriptor is past
//! FD_SETSIZE (1024) is told `ERR server busy` and closed, the clients below it keep
//! working, and a new client is admitted again once descriptors free up. See
//! `src/models/select.rs` for why.

mod common;

use std::time::Duration;

use common::{Client, Server};

const CLIENTS: usize = 1100;

#[test]
fn past_fd_setsize_clients_are_turned_away_then_admitted_again() {
    if !raise_own_descriptor_limit(CLIENTS as u64 + 200) {
        // Loud, not silent: this machine cannot open enough sockets for the test.
        eprintln!(
            "SKIPPED select ceiling test: cannot raise RLIMIT_NOFILE above {}",
            CLIENTS + 200
        );
        return;
    }
    let server = Server::start("select", &[]);
    let mut clients: Vec<Client> = Vec::with_capacity(CLIENTS);
    let (mut served, mut busy) = (0, 0);
    for i in 0..CLIENTS {
        let mut c = server.connect();
        match c.ask("1\n").as_str() {
            "1" => {
                served += 1;
                assert_eq!(busy, 0, "client {i} served after others were turned away");
            }
            "ERR server busy" => {
                busy += 1;
                c.assert_closed_within(Duration::from_secs(5));
            }
            other => panic!("client {i}: unexpected reply {other:?}"),
        }
        clients.push(c);
    }
    assert!(
        served >= 1000,
        "only {served} clients served below the ceiling"
    );
    assert!(busy >= CLIENTS - 1024, "only {busy} clients turned away");

    // Every admitted client still works.
    for c in clients.iter_mut().take(served).step_by(97) {
        assert_eq!(c.ask("10\n"), "55");
    }
    // Free some descriptors: a new client fits again.
    clients.truncate(served - 50);
    std::thread::sleep(Duration::from_millis(200));
    let mut late = server.connect();
    assert_eq!(late.ask("20\n"), "6765", "admitted again below the ceiling");
}

fn raise_own_descriptor_limit(wanted: u64) -> bool {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return false;
    };
    soft >= wanted || (hard >= wanted && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok())
}
