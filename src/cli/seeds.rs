//! `fiblab seeds`: the seeds' own programs, listed or extracted.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Subcommand;

use fiblab::seeds;

#[derive(Subcommand)]
pub enum SeedsCommand {
    /// List the programs found in the seed documents.
    List {
        /// Folder of the seed documents (default: $FIBLAB_SEEDS or ../shared/seeds).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Write every program to OUT/<seed>/<name>.
    Extract {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

pub fn run(command: SeedsCommand) -> Result<()> {
    match command {
        SeedsCommand::List { dir } => {
            for p in seeds::load(&dir.unwrap_or_else(seeds::default_dir))? {
                super::print(&format!(
                    "{}/{}  ({} lines)\n",
                    p.seed,
                    p.name,
                    p.code.lines().count()
                ))?;
            }
        }
        SeedsCommand::Extract { out, dir } => {
            for p in seeds::load(&dir.unwrap_or_else(seeds::default_dir))? {
                let folder = out.join(&p.seed);
                std::fs::create_dir_all(&folder)
                    .with_context(|| format!("cannot create {}", folder.display()))?;
                let path = folder.join(&p.name);
                // A document may show a program twice (a fix, then the fixed one): keep the first.
                if !path.exists() {
                    std::fs::write(&path, &p.code)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    super::print(&format!("{}\n", path.display()))?;
                }
            }
        }
    }
    Ok(())
}
