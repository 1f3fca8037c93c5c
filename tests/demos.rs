//! `fiblab demo`: every demo runs through the binary, and each demo's outcome is what
//! the seed says it is (lost updates without a lock and none with one, a detected
//! deadlock, a zombie seen and reaped, never more than K inside a semaphore). No timing
//! assertions: the figures are printed, the outcomes checked.

mod common;

use std::process::Command;

fn demo(args: &[&str]) -> std::process::Output {
    Command::new(common::fiblab_bin())
        .arg("demo")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn every_demo_runs_and_prints_its_figures() {
    let list = String::from_utf8_lossy(&demo(&[]).stdout).into_owned();
    for d in fiblab::demo::DEMOS {
        assert!(list.lines().any(|l| l.starts_with(d.name)), "{list}");
        let out = demo(&[d.name]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}",
            d.name,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.starts_with(&format!("{} — seed ", d.name)), "{text}");
        assert!(text.lines().count() >= 3, "{}: {text}", d.name);
    }
    let out = demo(&["nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the demos are: processes, race"));
}

#[test]
fn without_a_lock_updates_are_lost() {
    if fiblab::cpu::allowed_cpus().len() < 2 {
        eprintln!(
            "SKIPPED without_a_lock_updates_are_lost: one CPU, the two threads never overlap"
        );
        return;
    }
    let r = fiblab::demo::race::measure(1_000_000);
    assert!(r.lost_unlocked > 0, "{r:?}");
    assert_eq!(r.lost_mutex, 0);
    assert_eq!(r.lost_atomic, 0);
}

#[test]
fn a_zombie_is_seen_then_reaped_and_fiblab_leaves_no_orphan() {
    let r = fiblab::demo::processes::measure(std::path::Path::new(common::fiblab_bin())).unwrap();
    assert_eq!(r.zombie_state, Some('Z'), "{r:?}");
    assert!(r.reaped, "{r:?}");
    assert_ne!(r.orphan_parent_after, Some(r.orphan_parent_before), "{r:?}");
    assert_eq!(r.fiblab_child_signal, Some(9), "{r:?}");
    assert!(
        r.daemon_ticks > 0 && r.joined_thread_finished && r.process_ended,
        "{r:?}"
    );
}

#[test]
fn the_semaphore_never_lets_more_than_k_run() {
    let exe = std::path::Path::new(common::fiblab_bin());
    let r = fiblab::demo::semaphore::measure_server(exe, 2, 6, 27).unwrap();
    assert_eq!(r.answered, 6, "{r:?}");
    let most = r
        .most_at_once
        .expect("the server logs the most computations at once");
    assert!((1..=2).contains(&most), "{r:?}");
    // Only `threads` has the flag; the others say so.
    let out = Command::new(common::fiblab_bin())
        .args([
            "serve",
            "--model",
            "epoll",
            "--port",
            "0",
            "--max-inflight",
            "2",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Models that can: threads"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
