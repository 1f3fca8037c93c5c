//! Framing + service over arbitrary byte streams split at arbitrary points, against
//! the reference model: see `fiblab::fuzzing` for the input layout and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fiblab::fuzzing::check_session(data));
