//! `fiblab demo [NAME]`: the seeds' concurrency primitives, each shown running.

use std::io::{self, Write as _};

use anyhow::{Result, bail};
use fiblab::demo;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The demo to run; without one, the list.
    pub name: Option<String>,
    /// The child side of a demo that needs a second process (`processes`).
    #[arg(long, hide = true)]
    pub child: Option<String>,
}

pub fn run(args: DemoArgs) -> Result<()> {
    if let Some(role) = args.child {
        // Not locked for the whole run: the child's own threads print too.
        return match role.as_str() {
            "daemon" => Ok(demo::processes::daemon_child(&mut io::stdout())?),
            _ => bail!("no demo child called {role}"),
        };
    }
    let mut out = io::stdout().lock();
    let Some(name) = args.name else {
        demo::list(&mut out)?;
        return Ok(out.flush()?);
    };
    let Some(found) = demo::find(&name) else {
        let names: Vec<&str> = demo::DEMOS.iter().map(|d| d.name).collect();
        bail!("no demo called {name}; the demos are: {}", names.join(", "));
    };
    writeln!(out, "{} — seed {}", found.name, found.seed)?;
    writeln!(out, "in fiblab: {}", found.used_in)?;
    (found.run)(&mut out)?;
    Ok(out.flush()?)
}
