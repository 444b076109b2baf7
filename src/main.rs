//! The `earlykill` binary: parses the command line and runs the subcommand
//! (the wiring of each is in `cli/`).

mod cli;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    cli::Cli::parse().dispatch()
}
