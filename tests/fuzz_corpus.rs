//! Replays the fuzz corpus (`fuzz/corpus/session/`, inputs libFuzzer found to reach new
//! code) through the fuzz oracle on every `cargo test`, so what the fuzzer learned keeps
//! being checked where no fuzzer runs.

#[test]
fn corpus_replays_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/session");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/session is in the repository") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| fiblab::fuzzing::check_session(&data));
        assert!(outcome.is_ok(), "{} breaks an invariant", path.display());
        replayed += 1;
    }
    assert!(
        replayed >= 20,
        "only {replayed} corpus inputs in {}",
        dir.display()
    );
}
