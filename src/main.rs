//! The `earlykill` binary: parses the command line and runs the subcommand
//! (the wiring of each is in `cli/`).

mod cli;

fn main() -> anyhow::Result<()> {
    cli::Cli::parse_with_defaults().dispatch()
}
