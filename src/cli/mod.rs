//! The binary's side of each subcommand: its flags (clap) and the glue from them to
//! the library, with `anyhow` contexts that say what to do. Rules that check a value
//! belong to the library type the value fills, not here.

pub mod advise;
pub mod backend;
pub mod bench;
pub mod calibrate;
pub mod clients;
pub mod compare;
pub mod demo;
pub mod lab;
pub mod load;
pub mod seeds;
pub mod serve;

use std::io::{self, Write as _};
use std::net::SocketAddr;

use anyhow::Result;

/// Writes `text` to standard output.
/// Checks, before anything is measured, that every output path given can be written
/// (`fiblab::output::check_file`), naming the flag of the first that cannot.
///
/// # Errors
/// A path in a missing or read-only folder, a folder, `/proc/...`.
pub fn check_outputs(outputs: &[(&str, &Option<std::path::PathBuf>)]) -> Result<()> {
    use anyhow::Context as _;
    for (flag, path) in outputs {
        if let Some(path) = path {
            fiblab::output::check_file(path).with_context(|| {
                format!(
                    "cannot write {flag} {}; give a path in a writable folder",
                    path.display()
                )
            })?;
        }
    }
    Ok(())
}

/// `n`, or with `--cpu` the fib(n) that costs it here (timed now), the choice said on
/// stderr so the run's output stays the seed client's.
pub fn n_or_cpu(n: u32, cpu: Option<std::time::Duration>) -> u32 {
    match cpu {
        Some(cpu) => {
            let choice = fiblab::calibrate::work::choose_n(cpu, fiblab::calibrate::fib_time);
            eprintln!("{}", choice.describe("--cpu", "here"));
            choice.n
        }
        None => n,
    }
}

/// A `--mix` whose classes may be CPU times (`300us:99,5ms:1`), in n, each choice said
/// on stderr.
pub fn mix_in_n(text: &str) -> Result<String> {
    let (mix, choices) =
        fiblab::calibrate::work::resolve_mix("--mix", text, fiblab::calibrate::fib_time)?;
    for choice in choices {
        eprintln!("{}", choice.describe("--mix", "here"));
    }
    Ok(mix)
}

pub fn print(text: &str) -> Result<()> {
    io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

pub fn connect_hint(addr: SocketAddr) -> String {
    format!("talking to {addr} failed; is a server running there? Start one with `fiblab serve`")
}

#[cfg(test)]
mod tests;
